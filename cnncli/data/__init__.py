"""Data layer: scan folders, decode images, cache arrays, make batches."""
