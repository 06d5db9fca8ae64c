"""ROS 2 side of FusionSAM (imports fusionsam_model, never the reverse).

- ``node/``: the running node and everything it is made of (parameters, pairing, image
  conversion and compressed input, time jumps, transport events, shutdown, diagnostics,
  the latest-pair mailbox, label info, launch arguments).
- ``bags/``: the rosbag2 writer (``fusionsam-make-bag``), player (``fusionsam-play``) and
  the paired reader the calibration tool uses.
- ``evaluation/``: the streamed evaluator (``fusionsam-evaluate``) and its report plots.
- ``tools/``: the demo, the node bench and ``fusionsam-calibrate``.
- the modules here: plumbing the rooms share (topic names, QoS profiles, ROS time stamps,
  data-file paths, child processes, argparse types).

Sub-package ``__init__`` files import nothing: importing ``fusionsam_ros.node.params``
does not start rclpy's node machinery.
"""
