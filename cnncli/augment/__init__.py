"""Augmentation: pure JAX image ops keyed by PRNG (ops.py, run batched on the device during
training) and the offline folder expander behind `cnn augment` (expand.py)."""
