"""Deployment: ONNX export of the three graphs and the TensorRT engine cache."""
