"""Training: the jitted steps, the fit loop, the recipe chosen from the data, the time
budget race, K-fold, fine-tuning and warm starts, checkpoints, the run folder's life,
multi-host runs, timing and XLA settings. Writes bundles (inference.bundle) and evaluates
with inference's code; reports progress through callbacks, never prints."""
