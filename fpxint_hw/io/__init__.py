"""Importers and exporters: arrays (.npz), networks (ONNX, PyTorch state_dict)."""
