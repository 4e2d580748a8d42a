"""pu_ros.networks.segmentation."""
