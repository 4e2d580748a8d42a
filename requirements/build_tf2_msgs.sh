#!/usr/bin/env bash
# Build the tf2_msgs messages (requirements/tf2_msgs: TFMessage, TF2Error) from source and install them into a
# venv whose ROS 2 comes from the PyPI wheels (requirements/ros-wheels.txt); there is no tf2_msgs wheel.
#
#   requirements/build_tf2_msgs.sh [VENV]        (default: .venv next to requirements/)
#
# - Exits 0 at once when tf2_msgs already works in VENV (import + CDR round trip of a TFMessage).
# - Otherwise: pip-installs the build tools of requirements/ros-build-tools.txt into VENV, points the wheels'
#   exported CMake targets (built in a manylinux image, they name /opt/python/cp3XX-cp3XX/...) at this
#   interpreter's include dir and numpy's, configures and builds in a temporary folder and installs into VENV
#   (CMAKE_INSTALL_PREFIX=VENV): the Python package goes to VENV/lib/python3.X/site-packages and the shared
#   libraries to VENV/lib, which ros_wheels_bootstrapper puts on LD_LIBRARY_PATH at every interpreter start, so
#   `import tf2_msgs.msg` needs no extra environment variable.
# - Needs cmake (>= 3.20), a C/C++ compiler, and ninja (optional; make otherwise). The full output goes to
#   VENV/tf2_msgs-build.log; the script prints one line: success, or the reason for the failure.
# - Exit status: 0 built or already present, 1 failed (the venv still works, only without tf2_msgs).
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC="$HERE/tf2_msgs"
TOOLS="$HERE/ros-build-tools.txt"
VENV=$(cd "${1:-$HERE/../.venv}" 2>/dev/null && pwd) || {
    echo "build_tf2_msgs: FAILED: venv ${1:-$HERE/../.venv} does not exist" >&2
    exit 1
}
PY="$VENV/bin/python"
LOG="$VENV/tf2_msgs-build.log"

if [ -n "${ROS_DISTRO:-}" ] && [ -x "$PY" ] && "$PY" -c 'import tf2_msgs.msg' >/dev/null 2>&1; then
    echo "build_tf2_msgs: tf2_msgs comes from the sourced ROS 2 ($ROS_DISTRO); nothing to build"
    exit 0
fi
# A clean environment: the venv's own bootstrapper sets LD_LIBRARY_PATH for this venv (not for another one a
# caller may have active), and a half-sourced ROS 2 must not leak its packages into the build.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE LD_LIBRARY_PATH PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH \
    COLCON_PREFIX_PATH ROS_DISTRO ROS_VERSION

CHECK='
from rclpy.serialization import deserialize_message, serialize_message
from tf2_msgs.msg import TFMessage
from geometry_msgs.msg import TransformStamped
t = TransformStamped(child_frame_id="c")
t.header.frame_id = "p"
t.transform.rotation.w = 1.0
back = deserialize_message(serialize_message(TFMessage(transforms=[t])), TFMessage)
assert back.transforms[0].child_frame_id == "c"
'

fail() {
    local where=''
    [ -s "$LOG" ] && where=" (full log: $LOG)"
    echo "build_tf2_msgs: FAILED: $*$where; pu_ros works without tf2_msgs but does not replay /tf_static" >&2
    exit 1
}

[ -x "$PY" ] || fail "no python in $VENV"
if "$PY" -c "$CHECK" >/dev/null 2>&1; then
    echo "build_tf2_msgs: tf2_msgs already works in $VENV"
    exit 0
fi
: >"$LOG"
"$PY" -c 'import rclpy, geometry_msgs.msg' >>"$LOG" 2>&1 \
    || fail "rclpy / geometry_msgs are not importable in $VENV (pip install -r requirements/ros-wheels.txt first)"

START=$(date +%s.%N)
elapsed() { awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
stage() { echo "== [$(elapsed) s] $*" >>"$LOG"; }
command -v cmake >/dev/null || fail 'cmake not found (apt-get install cmake g++ ninja-build)'
command -v c++ >/dev/null || command -v g++ >/dev/null || fail 'no C++ compiler (apt-get install g++)'
if command -v ninja >/dev/null || [ -x "$VENV/bin/ninja" ]; then
    GENERATOR=Ninja
    command -v ninja >/dev/null || export PATH="$VENV/bin:$PATH"
else
    GENERATOR='Unix Makefiles'
fi

stage "pip install -r $TOOLS"
"$PY" -m pip install --disable-pip-version-check -r "$TOOLS" >>"$LOG" 2>&1 \
    || fail "pip install -r requirements/ros-build-tools.txt failed"

# The wheels' exported targets (share/*/cmake/*.cmake) carry the include dirs of the manylinux build image.
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])') || fail 'python include dir unknown'
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())' 2>>"$LOG") || fail 'numpy is not importable'
[ -f "$PYINC/Python.h" ] || fail "Python.h not found in $PYINC (install the python3-dev headers)"
stage "patch /opt/python/cp3XX-cp3XX -> $PYINC, $NPINC"
grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+/(include|lib)/' "$VENV/share" --include='*.cmake' 2>/dev/null \
    | while read -r f; do
        sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$PYINC#g; \
s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$NPINC#g" "$f" \
            && echo "patched $f" >>"$LOG"
    done

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/pu_ros_tf2_msgs.XXXXXX") || fail 'cannot create a temporary folder'
trap 'rm -rf "$BUILD"' EXIT
stage "cmake configure ($GENERATOR) in $BUILD"
cmake -S "$SRC" -B "$BUILD" -G "$GENERATOR" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$VENV" \
    -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$PY" \
    -DPython3_FIND_VIRTUALENV=ONLY \
    -DBUILD_TESTING=OFF >>"$LOG" 2>&1 || fail 'cmake configure failed'
stage "build + install"
cmake --build "$BUILD" --target install >>"$LOG" 2>&1 || fail 'compile or install failed'

stage "check"
"$PY" -c "$CHECK" >>"$LOG" 2>&1 || fail 'built, but tf2_msgs does not work in the venv'
stage "done"
echo "build_tf2_msgs: tf2_msgs built and installed into $VENV in $(elapsed) s"
