"""Using a trained model: the bundle, prediction on new raw samples, the HTTP endpoint and ONNX export."""
