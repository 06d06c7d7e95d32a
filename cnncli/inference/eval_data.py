"""What `cnn eval` and the Python API evaluate on: a folder of class folders, a labels file,
or the run's own held-out split, mapped onto the model's class indices."""

from __future__ import annotations

from pathlib import Path


def eval_items(bundle, data_dir: Path | None, labels=None):
    """(root, items with model class indices, notes) for evaluation: DIR (class folders or
    a labels file; `labels` a data.labels.LabelOptions or None), or the run's own held-out
    split when DIR is None. Notes are plain lines for the caller to show."""
    import json
    from dataclasses import replace

    from cnncli.data.labels import LabelOptions, load_labelled, skipped_rows
    from cnncli.data.scan import DatasetError, as_multi_label, read_manifest
    from cnncli.run_files import MANIFEST_FILE, RUN_FILE

    notes: list[str] = []
    if data_dir is None:
        run_dir = bundle.path.parent
        if not (run_dir / MANIFEST_FILE).is_file() or not (run_dir / RUN_FILE).is_file():
            raise DatasetError(
                f"{bundle.path}: not inside a run folder; pass a DIR of class folders to evaluate on"
            )
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
        dataset = read_manifest(run_dir / MANIFEST_FILE, info["data_dir"])
        split = "test" if dataset.splits.get("test") else "val"
        notes.append(f"evaluating on the run's {split} split ({dataset.root})")
        items = dataset.splits[split]
        index = {
            name: bundle.classes.index(name) for name in dataset.classes if name in bundle.classes
        }
        if bundle.multi_label:
            dataset = as_multi_label(dataset)
            items = dataset.splits[split]
            mapped = [(p, tuple(sorted(index[dataset.classes[i]] for i in t))) for p, t in items]
            return dataset.root, mapped, notes
        return dataset.root, [(p, index[dataset.classes[i]]) for p, i in items], notes
    if labels is None:
        labels = LabelOptions()
    dataset = load_labelled(data_dir, replace(labels, multi_label=bundle.multi_label))
    if dataset.multi_label and not bundle.multi_label:
        raise DatasetError(
            f"{labels.file}: images with several labels, but {bundle.path} is a single-label model"
        )
    notes += [f"skipped {line}" for line in skipped_rows(dataset)]
    unknown = [c for c in dataset.classes if c not in bundle.classes]
    if unknown:
        what = "label(s)" if dataset.label_source else "class folder(s)"
        raise DatasetError(
            f"{dataset.root}: {what} unknown to the model: {', '.join(unknown)} "
            f"(model classes: {', '.join(bundle.classes)})"
        )
    missing = [c for c in bundle.classes if c not in dataset.classes]
    if missing:
        notes.append(f"classes with no images in {dataset.root}: {', '.join(missing)}")
    to_model = [bundle.classes.index(name) for name in dataset.classes]
    if bundle.multi_label:
        items = [(p, tuple(sorted(to_model[i] for i in t))) for p, t in dataset.splits["eval"]]
    else:
        items = [(p, to_model[i]) for p, i in dataset.splits["eval"]]
    return dataset.root, items, notes
