"""Checking a folder of images before and after training: `cnn doctor` (unreadable,
identical and near-duplicate files, leaks across classes and splits) and likely-mislabeled
images (confident learning)."""
