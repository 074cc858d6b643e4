"""ament_python package definition for depth_node."""

from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'depth_node'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    # The shipped student (estimator.model_path '') and the uncertainty calibration, found
    # next to the package's code.
    package_data={package_name: ['models/student/*', 'calibration/*.json']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        (os.path.join('share', package_name, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', package_name, 'config'),
         glob('config/*.yaml') + glob('config/*.xml') + glob('config/*.rviz')),
        (os.path.join('share', package_name, 'data', 'sample_drive'),
         glob('data/sample_drive/*')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='depth_node maintainers',
    maintainer_email='depth-node@example.org',
    description='Metric depth from a camera, a relative depth model and sparse LiDAR.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'depth_node = depth_node.ros.node:main',
            'demo = depth_node.cli.demo:main',
            'evaluate = depth_node.cli.evaluate:main',
            'pseudo_label = depth_node.cli.pseudo_label:main',
            'make_bag = depth_node.cli.make_bag:main',
            'record = depth_node.ros.recorder:main',
            'train = depth_node.cli.train:main',
            'student_report = depth_node.cli.student_report:main',
            'export_onnx = depth_node.cli.export_onnx:main',
            # benchmark pipeline | backends | keyframes | transport | accuracy | fleet
            'benchmark = depth_node.bench.cli:main',
        ],
    },
)
