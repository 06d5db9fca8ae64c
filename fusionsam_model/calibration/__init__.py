"""Estimating the thermal-to-RGB homography from recorded pairs (``fusionsam-calibrate``)."""
