"""ROS 2 side of FusionSAM: the node, image conversion, synchronisation and bag tools."""
