"""rosbag2 tools: writer (``fusionsam-make-bag``), player (``fusionsam-play``), paired reader."""
