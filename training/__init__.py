"""Offline training and evaluation of FusionSAM (``train.py``, ``evaluate.py``)."""
