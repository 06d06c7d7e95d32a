"""The networks: layers as pure functions over a flat dict of arrays, the shape arithmetic
((W - F + 2P) / S + 1) and layer tables (no jax), one module per architecture family (the
configurable CNN in network.py, ResNet, EfficientNet-Lite: a spec and a trunk each), and
the pretrained weights readers and registry (pretrained/). Knows nothing of files of
images, runs or the command line."""
