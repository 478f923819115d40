"""The ONNX layer every ONNX technique builds on: model files (`files`), graph editing
(`edit`), running models on data (`run`) and transformer graphs (`transformer`)."""
