# Two commands: `make demo` (set up + run the node on the bundled synthetic drive)
# and `make test` (set up + run the test suite). Both create .venv on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# With a sourced ROS 2 install (ROS_DISTRO set) the system rclpy is used: the venv
# sees system site-packages and the ROS wheels are not installed.
ifdef ROS_DISTRO
VENV_FLAGS := --system-site-packages
REQS := requirements.txt
else
VENV_FLAGS :=
REQS := requirements.txt requirements-ros.txt
endif
# ROS 2 launch / CLI / message_filters / cv_bridge wheels (../shared/ros2-wheels/README.md),
# installed into the venv when present and no ROS 2 install is sourced.
ROS_WHEELS := $(wildcard $(CURDIR)/../shared/ros2-wheels/install.sh)
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_camera_profile.xml
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
# the venv is an ament prefix (scripts/ament_develop.sh): ros2 run/launch find fusionsam_ros there
export AMENT_PREFIX_PATH := $(abspath $(VENV))$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))

# vision_msgs (LabelInfo, VisionClass) is built from these without a sourced ROS 2 install
VISION_MSGS := scripts/build_vision_msgs.sh $(wildcard interfaces/vision_msgs/CMakeLists.txt \
	interfaces/vision_msgs/package.xml interfaces/vision_msgs/msg/*.msg)

.PHONY: venv test demo lint format clean-venv

venv: $(STAMP)

# Reinstalls only when a requirements file or setup.py changed since the last install.
$(STAMP): requirements.txt requirements-ros.txt requirements-sam2.txt setup.py scripts/ament_develop.sh $(ROS_WHEELS) $(VISION_MSGS)
	@if ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		echo "creating $(VENV) (Python 3.11)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV_FLAGS) $(VENV); fi
	$(PY) -m pip install --quiet $(addprefix -r ,$(REQS))
	@# sam2 is source-only: built without its CUDA extension, against the venv's torch
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --quiet --no-build-isolation -r requirements-sam2.txt
ifndef ROS_DISTRO
	$(if $(ROS_WHEELS),bash $(ROS_WHEELS) $(VENV),@echo "no ../shared/ros2-wheels: ros2 launch/run tools not installed (their tests skip)")
	@# vision_msgs/LabelInfo for fusionsam/label_info, from interfaces/vision_msgs (10-20 s)
	bash scripts/build_vision_msgs.sh $(VENV)
endif
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@# editable install + ament index / lib / share links: `ros2 run|launch fusionsam_ros ...` with AMENT_PREFIX_PATH=$(VENV)
	bash scripts/ament_develop.sh $(VENV)
	@touch $(STAMP)
	@echo "venv ready: $(VENV)"

test: $(STAMP)
	$(PY) -m pytest -q

# Synthetic drive -> rosbag2 -> fusionsam_node -> streaming evaluation, all under runs/demo.
demo: $(STAMP)
	$(PY) -m fusionsam_ros.tools.demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean-venv:
	rm -rf $(VENV)
