"""Estimating the thermal-to-RGB homography from recorded pairs: the algorithms (targetless,
checkerboard), the folder-pair reader and the overlay picture. The ``fusionsam-calibrate``
command is ``fusionsam_ros.tools.calibrate`` (it also reads bags); nothing here imports
``fusionsam_ros``."""
