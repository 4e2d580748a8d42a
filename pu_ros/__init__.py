"""pu_ros: LiDAR/camera point-cloud sampling, upsampling and segmentation for ROS 2.

Importing this package pulls in neither rclpy nor torch; those load inside the modules that need them.
"""

__version__ = '0.1.0'
