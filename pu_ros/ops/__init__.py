"""pu_ros.ops."""
