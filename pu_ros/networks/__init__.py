"""pu_ros.networks."""
