"""Pretrained backbone families (ResNet), their weights loader and the named-weights registry."""
