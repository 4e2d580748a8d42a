"""Pure numpy geometry: calibration and projection."""

from pu_ros.geometry.calibration import Calibration

__all__ = ['Calibration']
