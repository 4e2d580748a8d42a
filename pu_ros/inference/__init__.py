"""pu_ros.inference."""
