"""Labels files (cnncli.data.labelfile, cnncli.data.labels): hostile rows, formats,
encodings, splits and the manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli.data.labelfile import read_label_file
from cnncli.data.labels import (
    LabelOptions,
    labels_dataset,
    load_dataset,
    load_labelled,
    skipped_rows,
)
from cnncli.data.scan import DatasetError, manifest_text, parse_manifest, scan_dataset
from tests.imagefactory import make_class_tree


def _images(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _images(root, [f"img/{i}.png" for i in range(8)] + ["img/a,b.png", "img/é ñ.png"])
    return root


def test_hostile_csv_rows_are_skipped_one_line_each(folder, tmp_path):
    outside = tmp_path / "secret.png"
    _images(tmp_path, ["secret.png"])
    os.symlink(outside, folder / "img" / "escape.png")
    (folder / "img" / "sub").mkdir()
    rows = [
        "path,labels,split",
        "img/0.png,dog,train",
        "img/1.png,cat,train",
        "./img//2.png,dog;cat,train",  # normalised; two labels -> multi-label
        '"img/a,b.png",dog,val',  # a quoted comma inside the path
        "img/3.png,cat,val",
        "img/é ñ.png,dog,test",
        "img/missing.png,dog,train",
        "../data/img/4.png,dog,train",
        "img/../img/4.png,dog,train",
        f"{folder}/img/4.png,dog,train",
        "img/escape.png,cat,train",
        "img/sub,cat,train",
        "img/0.png,cat,train",  # duplicate
        "img/5.png,,train",  # empty label
        "img/6.png, ; ,train",  # only delimiters
        "img/7.png,dog,holdout",
        "img/7.png,dog,",
        "img/a,b.png,dog,train",  # an unquoted comma: one field too many
        "notes.txt,dog,train",
        "",
    ]
    (folder / "notes.txt").write_text("x")
    # UTF-8 with a byte-order mark and Windows line ends, as Excel writes it.
    (tmp_path / "labels.csv").write_bytes(("\ufeff" + "\r\n".join(rows)).encode("utf-8"))
    parsed = read_label_file(tmp_path / "labels.csv", folder)
    assert parsed.encoding == "utf-8-sig" and parsed.has_split
    assert [(r.line, r.path, r.labels, r.split) for r in parsed.rows] == [
        (2, "img/0.png", ("dog",), "train"),
        (3, "img/1.png", ("cat",), "train"),
        (4, "img/2.png", ("cat", "dog"), "train"),
        (5, "img/a,b.png", ("dog",), "val"),
        (6, "img/3.png", ("cat",), "val"),
        (7, "img/é ñ.png", ("dog",), "test"),
    ]
    reasons = {line: reason for line, _, reason in parsed.skipped}
    assert reasons == {
        8: "file not found",
        9: "path leaves the data folder ('..')",
        10: "path leaves the data folder ('..')",
        11: "absolute path; give it relative to the data folder",
        12: "symlink to outside the data folder (--follow-symlinks to use)",
        13: "a folder, not an image file",
        14: "duplicate path (first on line 2)",
        15: "empty label",
        16: "empty label",
        17: "unknown split 'holdout' (use train, val or test)",
        18: "empty split (use train, val or test)",
        19: "4 fields but the header has 3 (an unquoted comma?)",
        20: "not an image (file extension)",
    }
    dataset = labels_dataset(folder, LabelOptions(tmp_path / "labels.csv"))
    assert dataset.multi_label and dataset.classes == ["cat", "dog"]
    assert dataset.splits["train"] == [
        ("img/0.png", (1,)),
        ("img/1.png", (0,)),
        ("img/2.png", (0, 1)),
    ]
    assert dataset.splits["test"] == [("img/é ñ.png", (1,))]
    lines = skipped_rows(dataset)
    assert len(lines) == 13 and lines[0] == "labels.csv line 8 (img/missing.png): file not found"
    # --follow-symlinks lets the escaping link in, as for class folders.
    followed = read_label_file(tmp_path / "labels.csv", folder, follow_symlinks=True)
    assert "img/escape.png" in [r.path for r in followed.rows]


def test_manifest_records_the_label_source_and_round_trips(folder, tmp_path):
    (tmp_path / "l.csv").write_text(
        "file,tags,split\n"
        + "".join(
            f"img/{i}.png,{'a;b' if i % 2 else 'b'},{'train' if i < 6 else 'val'}\n"
            for i in range(8)
        )
        + "img/missing.png,a,train\n"
    )
    dataset = labels_dataset(folder, LabelOptions(tmp_path / "l.csv"))
    text = manifest_text(dataset)
    assert "# multi_label: true\n" in text and "# layout: labels\n" in text
    source = json.loads(text.split("# labels: ", 1)[1].split("\n", 1)[0])
    assert source["file"] == str((tmp_path / "l.csv").resolve())
    assert source["columns"] == {"path": "file", "labels": "tags", "split": "split"}
    assert source["rows"] == 9 and source["used"] == 8
    assert source["skipped"] == [[10, "img/missing.png", "file not found"]]
    assert "train,0;1,a;b,img/1.png\n" in text
    assert parse_manifest(text, folder) == dataset


def test_tsv_one_hot_columns(folder, tmp_path):
    lines = ["image\tred\tgreen\tblue\tsubset"]
    lines += [
        f"img/{i}.png\t{i % 2}\t{int(i < 4)}\t{'yes' if i == 7 else 'no'}\ttrain" for i in range(8)
    ]
    lines += ["img/a,b.png\t1\tmaybe\t0\ttrain", "img/é ñ.png\t0\t0\t-1\ttrain"]
    (tmp_path / "l.tsv").write_text("\n".join(lines) + "\n")
    parsed = read_label_file(tmp_path / "l.tsv", folder)
    assert parsed.columns == {
        "path": "image",
        "one_hot": ["red", "green", "blue"],
        "split": "subset",
    }
    assert [(r.path, r.labels) for r in parsed.rows] == [
        ("img/0.png", ("green",)),
        ("img/1.png", ("green", "red")),
        ("img/2.png", ("green",)),
        ("img/3.png", ("green", "red")),
        ("img/5.png", ("red",)),
        ("img/7.png", ("blue", "red")),
    ]
    assert {line: reason for line, _, reason in parsed.skipped} == {
        6: "empty label",  # all zeros
        8: "empty label",
        10: "column 'green': 'maybe' is not 0 or 1",
        11: "empty label",  # -1 counts as 0
    }


def test_json_lines_labels_as_string_list_or_one_hot(folder, tmp_path):
    lines = [
        json.dumps({"path": "img/0.png", "labels": ["dog", "cat"]}),
        json.dumps({"path": "img/1.png", "label": "dog"}),
        json.dumps({"path": "img/2.png", "labels": "cat|dog"}),
        "{not json",
        json.dumps(["img/3.png", "dog"]),
        json.dumps({"path": 3, "label": "dog"}),
        json.dumps({"path": "img/4.png", "labels": [1, 2]}),
        json.dumps({"filename": "img/5.png", "cat": True, "dog": 0, "size": 640}),
        json.dumps({"label": "dog"}),
    ]
    (tmp_path / "l.jsonl").write_text("\n".join(lines) + "\n\n")
    parsed = read_label_file(tmp_path / "l.jsonl", folder, delimiter="|")
    assert [(r.path, r.labels) for r in parsed.rows] == [
        ("img/0.png", ("cat", "dog")),
        ("img/1.png", ("dog",)),
        ("img/2.png", ("cat", "dog")),
        ("img/5.png", ("cat",)),
    ]
    reasons = [reason for _, _, reason in parsed.skipped]
    assert reasons[:2] == ["not valid JSON", "not a JSON object"]
    assert reasons[2].startswith("path must be a string")
    assert reasons[3].startswith("labels must be a string or a list of strings")
    assert reasons[4].startswith("no path key")


def test_odd_encodings_and_line_ends(folder, tmp_path):
    # Windows-1252 (not UTF-8): the path decodes to the same name; CR-only line ends.
    body = "path,label\rimg/é ñ.png,chien\rimg/0.png,café\r"
    (tmp_path / "cp.csv").write_bytes(body.encode("cp1252"))
    parsed = read_label_file(tmp_path / "cp.csv", folder)
    assert parsed.encoding == "cp1252"
    assert [(r.path, r.labels) for r in parsed.rows] == [
        ("img/é ñ.png", ("chien",)),
        ("img/0.png", ("café",)),
    ]
    (tmp_path / "u16.csv").write_bytes("path,label\nimg/1.png,a\n".encode("utf-16"))
    assert read_label_file(tmp_path / "u16.csv", folder).rows[0].labels == ("a",)
    (tmp_path / "bin.csv").write_bytes(b"path,label\nimg/1.png,a\x00\n")
    with pytest.raises(DatasetError, match="NUL bytes"):
        read_label_file(tmp_path / "bin.csv", folder)


def test_unusable_label_files_are_one_line_errors(folder, tmp_path):
    cases = {
        "l.xlsx": ("path,label\n", "unknown labels file type"),
        "nopath.csv": ("name,label\nimg/0.png,a\n", "no image path column"),
        "nolabel.csv": ("path,split\nimg/0.png,train\n", "no label column"),
        "one.csv": ("path,label\nimg/0.png,a\nimg/1.png,a\n", "found 1 label"),
        "empty.csv": ("", "empty labels file"),
        "allbad.csv": (
            "path,label\nimg/x.png,a\n",
            "no usable rows .1 skipped; line 2: file not found",
        ),
        "notrain.csv": (
            "path,label,split\nimg/0.png,a,val\nimg/1.png,b,val\n",
            "no rows with split 'train'",
        ),
        "unseen.csv": (
            "path,label,split\nimg/0.png,a,train\nimg/1.png,a,train\nimg/2.png,b,val\n",
            "label 'b' .val image img/2.png. has no training images",
        ),
        "single.csv": (
            "path,label\nimg/0.png,a\nimg/1.png,a\nimg/2.png,b\n",
            "label 'b' has 1 image",
        ),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DatasetError, match=message):
            labels_dataset(folder, LabelOptions(tmp_path / name))
    with pytest.raises(DatasetError, match="cannot read labels file"):
        labels_dataset(folder, LabelOptions(tmp_path / "absent.csv"))


def test_headerless_csv_is_path_then_label(folder, tmp_path):
    (tmp_path / "l.csv").write_text("img/0.png,a\nimg/1.png,b\n")
    parsed = read_label_file(tmp_path / "l.csv", folder)
    assert [(r.path, r.labels) for r in parsed.rows] == [
        ("img/0.png", ("a",)),
        ("img/1.png", ("b",)),
    ]


def test_a_csv_of_a_class_folder_tree_makes_the_same_split(tmp_path):
    """The same images labelled by a file or by folders: the same classes and the same split."""
    root = tmp_path / "photos"
    make_class_tree(root, {"blue": 7, "green": 5, "red": 9}, size=8)
    folders = scan_dataset(root, val_fraction=0.3, seed=4)
    rows = [
        f"{path},{folders.classes[label]}\n"
        for items in folders.splits.values()
        for path, label in reversed(items)
    ]
    (tmp_path / "l.csv").write_text("path,label\n" + "".join(rows))
    from_file = load_dataset(root, LabelOptions(tmp_path / "l.csv"), val_fraction=0.3, seed=4)
    assert not from_file.multi_label and from_file.layout == "labels"
    assert from_file.classes == folders.classes and from_file.splits == folders.splits
    # --multi-label on class folders keeps their split, one label per image.
    forced = load_dataset(root, LabelOptions(multi_label=True), val_fraction=0.3, seed=4)
    assert forced.multi_label
    assert forced.splits["val"] == [(p, (i,)) for p, i in folders.splits["val"]]


def test_labelled_eval_rows_are_the_test_rows_else_all(folder, tmp_path):
    (tmp_path / "s.csv").write_text(
        "path,label,split\nimg/0.png,a,train\nimg/1.png,b,train\nimg/2.png,b,test\nimg/3.png,a,val\n"
    )
    assert load_labelled(folder, LabelOptions(tmp_path / "s.csv")).splits == {
        "eval": [("img/2.png", 1)]
    }
    (tmp_path / "n.csv").write_text("path,label\nimg/0.png,a\nimg/1.png,b\n")
    assert load_labelled(folder, LabelOptions(tmp_path / "n.csv")).splits == {
        "eval": [("img/0.png", 0), ("img/1.png", 1)]
    }


def test_semicolon_separated_csv_as_spreadsheets_write_it(folder, tmp_path):
    (tmp_path / "l.csv").write_text('Path;Label\nimg/0.png;a\nimg/1.png;"a;b"\nimg/2.png;b\n')
    parsed = read_label_file(tmp_path / "l.csv", folder)
    assert parsed.columns["field_delimiter"] == ";"
    assert [(r.path, r.labels) for r in parsed.rows] == [
        ("img/0.png", ("a",)),
        ("img/1.png", ("a", "b")),
        ("img/2.png", ("b",)),
    ]
