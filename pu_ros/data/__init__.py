"""pu_ros.data."""
