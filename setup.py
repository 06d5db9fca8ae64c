"""ament_python package that also installs with plain pip (``pip install -e .``).

colcon puts the data files under ``share/fusionsam_ros``; pip puts them under the
venv's ``share/fusionsam_ros`` too, and the code finds config files either there or
in the source tree (see ``fusionsam_ros.paths``).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fusionsam_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["fusionsam_model*", "fusionsam_ros*", "training*"]),
    package_data={"fusionsam_model": ["weights/*.pt"], "training": ["configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # the launch files and the helper they import from beside them (launch/_fusionsam_node.py)
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py") + ["launch/_fusionsam_node.py"]),
        (
            f"share/{PACKAGE}/config",
            glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz"),
        ),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="FusionSAM ROS 2 team",
    maintainer_email="dev@fusionsam-ros.invalid",
    description="ROS 2 RGB-thermal FusionSAM segmentation node, training, evaluation and export",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "fusionsam_node = fusionsam_ros.node.node:main",
            "fusionsam-synth = fusionsam_model.data.synth:main",
            "fusionsam-bench = fusionsam_model.runtime.bench:main",
            "fusionsam-export = fusionsam_model.deploy.export_cli:main",
            "fusionsam-build-engine = fusionsam_model.deploy.engine_cache:main",
            "fusionsam-make-bag = fusionsam_ros.bags.writer:main",
            "fusionsam-play = fusionsam_ros.bags.player:main",
            "fusionsam-evaluate = fusionsam_ros.evaluation.stream_evaluator:main",
            "fusionsam-fusion-eval = fusionsam_model.evaluation.fusion_benchmark:main",
            "fusionsam-calibrate = fusionsam_ros.tools.calibrate:main",
        ],
    },
)
