"""The running node (``fusionsam_node`` = ``node.main``) and its parts: parameters, pairing,
image conversion and compressed input (also used by the bag reader and the evaluator, so
they decode as the node does), time jumps, transport events, shutdown, diagnostics, the
latest-pair mailbox, label info, launch arguments. Imports nothing itself."""
