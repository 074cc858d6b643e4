"""Launch depth_node: ros2 launch depth_node depth.launch.py [arguments].

Arguments (``ros2 launch depth_node depth.launch.py --show-args``):
  namespace, params_file, model_path, image, camera_info, points, use_sim_time, fastdds_profile,
  log_level, rviz.

Every argument is checked before anything starts (``depth_node.ros.launch_args``): a
``params_file`` that does not exist or has no section for the node, or ``rviz:=true`` without
rviz2, fails the launch with the reason. ``model_path`` and ``use_sim_time`` override the
params file only when given.

``rviz:=true`` also starts rviz2 with ``config/depth.rviz`` (camera, coloured depth, metric
cloud, LiDAR, keyframes; fixed frame ``base_link``). The config names the topics of the
defaults without a namespace (``/image_rect``, ``/points``, ``/depth/...``); rviz2 gets
remappings to wherever ``namespace``, ``image`` and ``points`` put them.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from depth_node.ros.launch_args import find_rviz2, launch_plan

_PERFORMED = ('namespace', 'params_file', 'model_path', 'image', 'points', 'use_sim_time',
              'rviz')


def generate_launch_description():
    share = get_package_share_directory('depth_node')
    profile = os.path.join(share, 'config', 'fastdds_large_messages.xml')
    args = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its relative topics.'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'depth.yaml'),
                              description='YAML file with the node parameters.'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='Depth Anything V2 HF folder or .pth; overrides '
                                          'estimator.model_path when set.'),
        DeclareLaunchArgument('image', default_value='image_rect',
                              description='Rectified camera image topic.'),
        DeclareLaunchArgument('camera_info', default_value='camera_info',
                              description='CameraInfo topic of that image.'),
        DeclareLaunchArgument('points', default_value='points',
                              description='LiDAR PointCloud2 topic.'),
        DeclareLaunchArgument('use_sim_time', default_value='',
                              description='true: use /clock (rosbag replay); overrides the '
                                          "params file's use_sim_time when set."),
        DeclareLaunchArgument('fastdds_profile', default_value='true',
                              description='Apply the shipped Fast DDS profile for large '
                                          'messages (see README).'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='Logger level of the node.'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='Also start rviz2 with config/depth.rviz.'),
    ]
    use_profile = IfCondition(LaunchConfiguration('fastdds_profile'))
    # Fast DDS 3 (Kilted and newer) reads FASTDDS_*; Humble and Jazzy read FASTRTPS_* (newer
    # ones warn that it is deprecated, so it is set only where it is needed).
    variable = ('FASTRTPS_DEFAULT_PROFILES_FILE'
                if os.environ.get('ROS_DISTRO', '') in ('humble', 'iron', 'jazzy')
                else 'FASTDDS_DEFAULT_PROFILES_FILE')
    env = [SetEnvironmentVariable(variable, profile, condition=use_profile)]
    return LaunchDescription(args + env + [OpaqueFunction(function=_start)])


def _start(context):
    """Check every argument first (raising stops the launch before anything started), then
    the node and, with rviz:=true, rviz2."""
    performed = {name: LaunchConfiguration(name).perform(context) for name in _PERFORMED}
    plan = launch_plan(performed, find_rviz2())
    actions = [Node(
        package='depth_node',
        executable='depth_node',
        name='depth_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=plan.parameters,
        remappings=[
            ('image', LaunchConfiguration('image')),
            ('camera_info', LaunchConfiguration('camera_info')),
            ('points', LaunchConfiguration('points')),
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
    )]
    if plan.rviz:
        config = os.path.join(get_package_share_directory('depth_node'), 'config',
                              'depth.rviz')
        actions.append(Node(
            package='rviz2',
            executable='rviz2',
            name='rviz2',
            output='screen',
            arguments=['-d', config],
            parameters=[{'use_sim_time': plan.rviz_use_sim_time}],
            remappings=plan.rviz_remappings,
        ))
    return actions
