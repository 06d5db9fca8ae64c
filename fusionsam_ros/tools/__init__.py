"""Command-line tools on top of the node, bags and evaluation: demo, node bench, calibrate."""
