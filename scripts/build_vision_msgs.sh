#!/usr/bin/env bash
# build_vision_msgs.sh PREFIX — build interfaces/vision_msgs (LabelInfo, VisionClass: the
# upstream vision_msgs types, same fields and type hashes) with the ROS 2 Kilted rosidl
# generators from the package index (requirements-ros.txt) and install it into PREFIX (the
# venv): `import vision_msgs.msg` works there and rclpy publishes the types. For a venv
# without a ROS 2 install; with one sourced (ROS_DISTRO set) the system vision_msgs is used.
# Needs cmake (>= 3.20) and a C/C++ compiler; without them it says so and builds nothing
# (fusionsam_node then runs without fusionsam/label_info). 10-20 s on 2 cores.
set -euo pipefail
prefix=$(cd "${1:?usage: build_vision_msgs.sh PREFIX}" && pwd)
src=$(cd "$(dirname "$0")/../interfaces/vision_msgs" && pwd)
python="$prefix/bin/python"

if [ -n "${ROS_DISTRO:-}" ]; then
  echo "vision_msgs: ROS 2 $ROS_DISTRO sourced, using its vision_msgs (nothing built)"
  exit 0
fi
for tool in cmake cc c++; do
  if ! command -v "$tool" >/dev/null; then
    echo "vision_msgs: '$tool' not found: not built (fusionsam_node runs without label_info)" >&2
    exit 0
  fi
done

start=$(date +%s)
build=$(mktemp -d "${TMPDIR:-/tmp}/vision_msgs_build.XXXXXX")
trap 'rm -rf "$build"' EXIT
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# ament's resource index (the available typesupports) is read from AMENT_PREFIX_PATH
export AMENT_PREFIX_PATH="$prefix${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
log="$build/build.log"
if ! {
  cmake -S "$src" -B "$build" "${generator[@]}" \
    -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_PREFIX_PATH="$prefix" \
    -DPython3_EXECUTABLE="$python" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF &&
    cmake --build "$build" --parallel "$(nproc)" &&
    cmake --install "$build"
} >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "vision_msgs: build failed (the last lines of the build log above)" >&2
  exit 1
fi
# the generated module, its C typesupport and the type hash the generator computed
"$python" - "$prefix/share/vision_msgs/msg/LabelInfo.json" <<'EOF'
import json
import sys

from rclpy.type_support import check_for_type_support
from vision_msgs.msg import LabelInfo

check_for_type_support(LabelInfo)
hashes = json.load(open(sys.argv[1]))["type_hashes"]
print(f"vision_msgs: LabelInfo {hashes[0]['hash_string']}")
EOF
echo "vision_msgs: built and installed into $prefix in $(($(date +%s) - start)) s"
