"""The pretrained recipe: which folders start from ImageNet's EfficientNet-Lite0, in which mode."""

from __future__ import annotations

from cnncli.data.stats import DatasetStats, add_header_stats
from cnncli.training.recipe_pretrained import pretrained_recipe


def _stats(counts, size=(500, 375), mode="RGB", multi_label=False) -> DatasetStats:
    classes = [f"c{i}" for i in range(len(counts))]
    stats = DatasetStats(classes=classes, train_counts=list(counts), multi_label=multi_label)
    return add_header_stats(stats, [(*size, mode, "JPEG")] * 50)


def test_a_few_hundred_photos_get_frozen_features():
    recipe = pretrained_recipe(_stats([124, 121]))
    values = recipe.values()
    assert values["train.init"] == "efficientnet_lite0" and values["train.freeze"] is True
    assert "train.tune_blocks" not in values
    assert (
        "ships with cnn" in recipe.choices[0].reason and "--init none" in recipe.choices[0].reason
    )


def test_thousands_of_photos_tune_the_top_blocks_on_a_cpu_and_everything_on_a_gpu():
    stats = _stats([300] * 10)
    values = pretrained_recipe(stats).values()
    assert values["train.tune_blocks"] == 5 and "train.freeze" not in values
    assert values["train.epochs"] == 5
    assert pretrained_recipe(stats, accelerator=True).values()["train.tune_blocks"] == 0
    assert pretrained_recipe(_stats([3000] * 10)).values()["train.freeze"] is True


def test_small_grey_digits_and_multi_label_data_train_from_scratch():
    assert pretrained_recipe(_stats([500] * 10, size=(28, 28), mode="L")) is None
    assert pretrained_recipe(_stats([500] * 10, size=(32, 32))) is None  # CIFAR-sized colour
    assert pretrained_recipe(_stats([100] * 3, multi_label=True)) is None
    assert pretrained_recipe(_stats([1, 1])) is None  # too few to fit even a head


def test_large_grey_scans_are_photos_too():
    recipe = pretrained_recipe(_stats([1100, 1100], size=(224, 224), mode="L"))
    assert recipe is not None and "grey images" in recipe.choices[0].reason
