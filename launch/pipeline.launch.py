"""The pu_ros pipeline: [bag player ->] [sampler ->] [upsampler ->] segmentation [-> RViz].

Needs a sourced ROS 2 installation with ``launch`` and ``launch_ros`` (no PyPI wheels: without them use
``pu-ros pipeline``)::

    ros2 launch pu_ros pipeline.launch.py bag:=/data/kitti00_bag rviz:=true
    ros2 launch pu_ros pipeline.launch.py bag:=/data/kitti00_bag sampler:=true upsampler:=true device:=cuda

Topics: the bag's ``/kitti/velo/pointcloud`` (and camera topics) feed the first enabled stage; each stage's
``~/output/points`` is remapped to the next stage's ``~/input/points``; the segmentation node publishes
``/pu_ros/labelled_points`` (and, when a stage resampled the cloud, ``/pu_ros/labelled_resampled_points``, pairing
the resampled cloud with the original one by stamp). Parameters come from ``config/pipeline.yaml``
(``config:=`` picks another file); the arguments below override it. Every pipeline node is required: if one exits
with an error (or the player cannot open the bag) the whole launch shuts down with a non-zero status. For
best-effort ~2 MB clouds, export ``FASTDDS_DEFAULT_PROFILES_FILE=$(ros2 pkg prefix pu_ros)/share/pu_ros/config/
fastdds_profile.xml`` first.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'pu_ros'
RAW_POINTS = '/kitti/velo/pointcloud'
IMAGE = '/kitti/camera_color_left/image_raw'
CAMERA_INFO = '/kitti/camera_color_left/camera_info'
SAMPLED = '/pu_ros/sampled_points'
DENSE = '/pu_ros/dense_points'
LABELLED = '/pu_ros/labelled_points'
LABELLED_RESAMPLED = '/pu_ros/labelled_resampled_points'

ARGUMENTS = {  # name: (default, description)
    'config': (None, 'parameter file of the pipeline nodes (default: share/pu_ros/config/pipeline.yaml)'),
    'use_sim_time': ('false', 'follow /clock (set true when replaying a bag with publish_clock)'),
    'bag': ('', 'rosbag2 to replay into the pipeline with pu_ros player_node (empty: do not start a player)'),
    'rate': ('1.0', 'playback speed factor of the bag'),
    'rviz': ('false', 'start RViz with config/pu_ros.rviz'),
    'sampler': ('false', 'enable the sampler stage (downsampling before segmentation)'),
    'upsampler': ('false', 'enable the upsampler stage (PU-Flow densification before segmentation)'),
    'fused': ('false', 'camera-fused segmentation (image + camera_info; needs a checkpoint with the 2D branch)'),
    'device': ('auto', 'torch device of every stage: auto (cuda when present), cpu or cuda'),
}


def _true(context, name: str) -> bool:
    return LaunchConfiguration(name).perform(context).strip().lower() in ('1', 'true', 'yes', 'on')


def _stop_on_failure(event, context):
    """A required process died on its own with an error: fail the whole launch (non-zero status)."""
    code = event.returncode
    if getattr(context, 'is_shutdown', False) or code in (0, -2, -15):
        return None
    raise RuntimeError(f'required process {event.action.name} exited with status {code}: stopping the pipeline')


def stage_chain(sampler: bool, upsampler: bool) -> list[tuple[str, str, str]]:
    """``(executable, input topic, output topic)`` of the enabled stages, in order, ending with segmentation."""
    chain, topic = [], RAW_POINTS
    for enabled, exe, out in ((sampler, 'sampler_node', SAMPLED), (upsampler, 'upsampler_node', DENSE)):
        if enabled:
            chain.append((exe, topic, out))
            topic = out
    chain.append(('segmentation_node', topic, LABELLED))
    return chain


def _nodes(context):
    config = LaunchConfiguration('config').perform(context)
    sim = _true(context, 'use_sim_time')
    device = LaunchConfiguration('device').perform(context)
    resampled = _true(context, 'sampler') or _true(context, 'upsampler')
    actions = []
    for exe, src, dst in stage_chain(_true(context, 'sampler'), _true(context, 'upsampler')):
        section = {'sampler_node': 'sampler', 'upsampler_node': 'upsampler'}.get(exe, 'segmentation')
        overrides = {'use_sim_time': sim, f'{section}.device': device}
        remaps = [('~/input/points', src), ('~/output/points', dst)]
        if exe == 'segmentation_node':
            overrides.update({'segmentation.fused': _true(context, 'fused'), 'resample.use_original': resampled})
            remaps += [('~/input/original_points', RAW_POINTS), ('~/input/image', IMAGE),
                       ('~/input/camera_info', CAMERA_INFO), ('~/output/resampled_points', LABELLED_RESAMPLED)]
        actions.append(Node(package=PACKAGE, executable=exe, name=exe, output='screen', emulate_tty=True,
                            parameters=[config, overrides], remappings=remaps))
    bag = LaunchConfiguration('bag').perform(context)
    if bag:
        player_yaml = PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'player.yaml'])
        actions.append(Node(package=PACKAGE, executable='player_node', name='bag_player', output='screen',
                            emulate_tty=True,
                            parameters=[player_yaml, {'bag': bag, 'publish_clock': sim, 'wait_for_subscribers': 30.0,
                                                      'rate': float(LaunchConfiguration('rate').perform(context))}]))
    for action in list(actions):
        actions.append(RegisterEventHandler(OnProcessExit(target_action=action, on_exit=_stop_on_failure)))
    if _true(context, 'rviz'):
        rviz = PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'pu_ros.rviz'])
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', arguments=['-d', rviz],
                            parameters=[{'use_sim_time': sim}]))
    return actions


def generate_launch_description():
    """Launch arguments and an OpaqueFunction that builds the enabled stages with their remappings."""
    default_config = PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'pipeline.yaml'])
    args = [DeclareLaunchArgument(name, default_value=default if default is not None else default_config,
                                  description=description)
            for name, (default, description) in ARGUMENTS.items()]
    return LaunchDescription([*args, OpaqueFunction(function=_nodes)])
