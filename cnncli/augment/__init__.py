"""Augmentation: pure JAX image ops keyed by PRNG, run batched on the device during training
(ops.py: the op table, sampling and apply_params; geometry.py and colour.py: the ops), and
the offline folder expander behind `cnn augment` (expand.py: paths checked in expand_paths,
jobs planned in expand_plan, augmented on the device in expand_device, written with the
manifest in expand_output, previewed in expand_preview)."""
