#!/usr/bin/env bash
# ament_develop.sh PREFIX — make the editable (pip -e) install of fusionsam_ros look like an
# installed ROS 2 package under PREFIX (the venv), so `ros2 run|launch|pkg` find it with
# AMENT_PREFIX_PATH=PREFIX: the ament index marker, the executables in lib/fusionsam_ros/
# (links to the console scripts pip put in bin/) and share/fusionsam_ros/{package.xml,launch,config}
# as links to the source files — edits to code, launch and config files take effect at once.
set -euo pipefail
prefix=$(cd "${1:?usage: ament_develop.sh PREFIX}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
pkg=fusionsam_ros
mkdir -p "$prefix/lib/$pkg" "$prefix/share/$pkg" "$prefix/share/ament_index/resource_index/packages"
cp "$src/resource/$pkg" "$prefix/share/ament_index/resource_index/packages/$pkg"
for exe in "$prefix"/bin/fusionsam_* "$prefix"/bin/fusionsam-*; do
  [ -e "$exe" ] && ln -sfn "../../bin/$(basename "$exe")" "$prefix/lib/$pkg/$(basename "$exe")"
done
ln -sfn "$src/package.xml" "$prefix/share/$pkg/package.xml"
# real directories of per-file links: ros2 launch walks share/<pkg> without following
# directory links (a file added to launch/ or config/ needs `make venv` / this script again)
for dir in launch config; do
  rm -rf "${prefix:?}/share/$pkg/$dir"
  mkdir -p "$prefix/share/$pkg/$dir"
  for f in "$src/$dir"/*; do ln -s "$f" "$prefix/share/$pkg/$dir/$(basename "$f")"; done
done
echo "ament: $pkg registered in $prefix (executables in lib/$pkg, share files linked to $src)"
