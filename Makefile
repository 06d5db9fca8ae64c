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
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_camera_profile.xml
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: venv test demo lint format clean-venv

venv: $(STAMP)

# Reinstalls only when a requirements file or setup.py changed since the last install.
$(STAMP): requirements.txt requirements-ros.txt setup.py
	@if ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		echo "creating $(VENV) (Python 3.11)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV_FLAGS) $(VENV); fi
	$(PY) -m pip install --quiet $(addprefix -r ,$(REQS))
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "venv ready: $(VENV)"

test: $(STAMP)
	$(PY) -m pytest -q

# Synthetic drive -> rosbag2 -> fusionsam_node -> streaming evaluation, all under runs/demo.
demo: $(STAMP)
	$(PY) -m fusionsam_ros.demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean-venv:
	rm -rf $(VENV)
