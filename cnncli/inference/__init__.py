"""Using a trained model: the saved bundle, predict, evaluate (and multi-label metrics),
Grad-CAM explanations, export and exported models (ONNX, StableHLO). Imports no
training-only package (optax, orbax)."""
