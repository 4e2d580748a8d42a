"""Replay a KITTI rosbag2 (written by ``pu-ros kitti-to-bag``) with the pu_ros bag player.

Needs a sourced ROS 2 installation (``launch`` and ``launch_ros`` have no PyPI wheels; without them use
``pu-ros play BAG`` instead)::

    ros2 launch pu_ros replay.launch.py bag:=/data/kitti00_bag rate:=1.0 loop:=true publish_clock:=true

Parameters come from ``config/player.yaml`` (``params_file:=`` picks another file); the launch arguments below
override it. When the player exits the launch ends; a player error (missing bag: status 2) makes
``ros2 launch`` exit non-zero. For best-effort subscribers of ~2 MB clouds on one machine, export
``FASTDDS_DEFAULT_PROFILES_FILE=$(ros2 pkg prefix pu_ros)/share/pu_ros/config/fastdds_profile.xml`` first.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    """Launch arguments and the ``player_node`` of pu_ros."""
    args = [
        DeclareLaunchArgument('bag', description='rosbag2 folder (or .mcap/.db3 file) to play'),
        DeclareLaunchArgument('rate', default_value='1.0', description='playback speed factor'),
        DeclareLaunchArgument('loop', default_value='false', description='play again at the end'),
        DeclareLaunchArgument('start_offset', default_value='0.0', description='seconds of the bag to skip'),
        DeclareLaunchArgument('publish_clock', default_value='false',
                              description='publish /clock for nodes with use_sim_time'),
        DeclareLaunchArgument('qos', default_value='reliable', description='reliable or sensor (best effort)'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([FindPackageShare('pu_ros'), 'config',
                                                                  'player.yaml']),
                              description='player parameter file'),
    ]
    player = Node(
        package='pu_ros',
        executable='player_node',
        name='bag_player',
        output='screen',
        emulate_tty=True,
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'bag': ParameterValue(LaunchConfiguration('bag'), value_type=str),
                'rate': ParameterValue(LaunchConfiguration('rate'), value_type=float),
                'loop': ParameterValue(LaunchConfiguration('loop'), value_type=bool),
                'start_offset': ParameterValue(LaunchConfiguration('start_offset'), value_type=float),
                'publish_clock': ParameterValue(LaunchConfiguration('publish_clock'), value_type=bool),
                'qos': ParameterValue(LaunchConfiguration('qos'), value_type=str),
            },
        ],
    )
    return LaunchDescription([*args, player,
                              RegisterEventHandler(OnProcessExit(target_action=player, on_exit=_player_exited))])


def _player_exited(event, context):
    """The player is the launch: end with it; an error of its own (a missing bag: status 2) fails the launch."""
    if event.returncode in (0, -2, -15) or getattr(context, 'is_shutdown', False):
        return [EmitEvent(event=Shutdown(reason='bag player finished'))]
    raise RuntimeError(f'bag player exited with status {event.returncode}')
