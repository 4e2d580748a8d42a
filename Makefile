# pu_ros: `make demo` runs the main job, `make test` runs the test suite. Both create .venv when it is missing.
#
# With a sourced ROS 2 (ROS_DISTRO set and its rclpy importable) the venv sees the system packages and no
# ROS wheel (nor numpy) is installed over them; otherwise rclpy and the messages come from PyPI wheels.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

SYSTEM_ROS := $(shell [ -n "$$ROS_DISTRO" ] && $(PYTHON) -c 'import rclpy' >/dev/null 2>&1 && echo 1)
HAVE_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)

ifeq ($(SYSTEM_ROS),1)
  VENV_FLAGS := --system-site-packages
  REQS := requirements/core.txt requirements/dev.txt
  MODE := system-ros
else
  VENV_FLAGS :=
  REQS := requirements/core.txt requirements/numpy.txt requirements/ros-wheels.txt requirements/dev.txt
  MODE := ros-wheels
endif
ifeq ($(HAVE_CUDA),1)
  REQS += requirements/spconv-cuda.txt
else
  REQS += requirements/spconv-cpu.txt
endif

STAMP := $(VENV)/.pu_ros-$(MODE)

# Tests keep every DDS packet on loopback: as root with unshare available they also run in a network namespace
# that has nothing but `lo`, and (where a mount namespace is allowed too) with a /dev/shm of their own, so Fast DDS
# shared memory left on the host by other runs cannot reach them (a half-created segment hangs every participant).
ISOLATE := $(shell [ "$$(id -u)" = 0 ] && unshare -n true >/dev/null 2>&1 && \
  (unshare -n -m sh -c 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm' >/dev/null 2>&1 && echo 2 || echo 1))
ifeq ($(ISOLATE),2)
  RUN_ISOLATED = unshare -n -m sh -c 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && ip link set lo up && exec "$$@"' sh
else ifeq ($(ISOLATE),1)
  RUN_ISOLATED = unshare -n sh -c 'ip link set lo up && exec "$$@"' sh
else
  RUN_ISOLATED =
endif

DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test test-gpu venv lint bench colcon clean

venv: $(STAMP)

$(STAMP): $(REQS) setup.py setup.cfg package.xml \
          $(if $(filter ros-wheels,$(MODE)),requirements/ros-build-tools.txt requirements/build_tf2_msgs.sh)
	@for s in $(VENV)/.pu_ros-*; do if [ -e "$$s" ] && [ "$$s" != "$(STAMP)" ]; then \
	  echo "pu_ros: $(VENV) was made for another set-up ($$s); recreating it"; rm -rf $(VENV); break; fi; done
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install $(foreach r,$(REQS),-r $(r))
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@# No tf2_msgs wheel exists: build it from requirements/tf2_msgs (best effort, pu_ros works without it).
	@if [ "$(MODE)" = ros-wheels ]; then bash requirements/build_tf2_msgs.sh $(VENV) || \
	  echo "pu_ros: warning: continuing without tf2_msgs (/tf_static is not replayed)"; fi
	@rm -f $(VENV)/.pu_ros-*
	@touch $(STAMP)
	@echo "pu_ros: environment ready in $(VENV) ($(MODE))"

demo: venv
	ROS_AUTOMATIC_DISCOVERY_RANGE=$${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST} \
	FASTDDS_DEFAULT_PROFILES_FILE=$${FASTDDS_DEFAULT_PROFILES_FILE:-$(CURDIR)/config/fastdds_profile.xml} \
	$(BIN)/pu-ros demo $(DEMO_ARGS)

test: venv
	$(RUN_ISOLATED) $(BIN)/python -m pytest -ra $(PYTEST_ARGS)

# Only the CUDA tests (marker `gpu`; they skip cleanly without a GPU): one short run on a machine with one.
test-gpu: venv
	$(RUN_ISOLATED) $(BIN)/python -m pytest -ra -m gpu $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check pu_ros test bench launch setup.py

bench: venv
	$(BIN)/python bench/conversions.py
	$(BIN)/python bench/segmentation.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/upsampling.py
	$(BIN)/python bench/sampling.py

clean:
	rm -rf build install log .pytest_cache .ruff_cache
