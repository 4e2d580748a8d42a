"""ament_python package definition for pu_ros (also installable with plain pip)."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'pu_ros'

# ROS executables (``ros2 run pu_ros <name>``) and the one ``pu-ros`` command line.
NODES = {  # pu_ros.ros.launcher catches SIGINT/SIGTERM before the node module's imports
    'player_node': 'pu_ros.ros.launcher:player_node',
    'echo_node': 'pu_ros.ros.launcher:echo_node',
    'segmentation_node': 'pu_ros.ros.launcher:segmentation_node',
    'sampler_node': 'pu_ros.ros.launcher:sampler_node',
    'upsampler_node': 'pu_ros.ros.launcher:upsampler_node',
}


def tree(folder):
    """data_files entries that keep the layout of ``folder`` under share/pu_ros."""
    entries = {}
    for path in glob(os.path.join(folder, '**', '*'), recursive=True):
        if os.path.isfile(path) and '__pycache__' not in path:
            entries.setdefault(os.path.join('share', PACKAGE, os.path.dirname(path)), []).append(path)
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    package_data={PACKAGE: []},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        *tree('launch'),
        *tree('config'),
        *tree('models'),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='pu_ros maintainers',
    maintainer_email='maintainers@pu-ros.invalid',
    description='LiDAR/camera point-cloud sampling, upsampling and segmentation for ROS 2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['pu-ros = pu_ros.cli:main'] + [f'{k} = {v}' for k, v in NODES.items()],
    },
)
