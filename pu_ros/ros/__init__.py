"""The only sub-package that imports rclpy and ROS message packages."""
