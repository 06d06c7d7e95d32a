"""The names of the files in a run folder, shared by the code that writes them (training)
and the code that reads them (inference, reporting)."""

CONFIG_FILE = "config.toml"
MANIFEST_FILE = "split.csv"
METRICS_FILE = "metrics.csv"
RUN_FILE = "run.json"
RECIPE_FILE = "recipe.json"
ATTEMPTS_FILE = "attempts.json"
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
