"""Scoring: confusion-matrix segmentation metrics."""
