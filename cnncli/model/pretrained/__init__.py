"""Pretrained weights: the named registry, the Hub download (only when asked), the
safetensors and pinned legacy-.pth readers, and the mapping onto cnn's array names."""
