"""Streamed evaluation against the running node (``fusionsam-evaluate``) and its plots."""
