"""The torch side of compression: the one training loop, checkpoints, learning-rate
schedules, and the bridge between ONNX / torch.export archives and torch modules."""
