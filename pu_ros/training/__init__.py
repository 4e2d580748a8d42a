"""pu_ros.training."""
