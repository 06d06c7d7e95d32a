"""Build the bench of real public image-classification sets from fetched GitHub mirrors.

Each entry of SETS names a public repository, the commit it is pinned to, its licence and how
to turn its files into the class-folder layout that `cnn` reads:

    OUT_ROOT/<name>/train/<class>/*   [OUT_ROOT/<name>/val|validation/<class>/*]
    OUT_ROOT/<name>/test/<class>/*    (when the set has a held-out test split)
    OUT_ROOT/<name>/<class>/*         (flat, when it has none)
    OUT_ROOT/<name>/SOURCE.md         (repo@commit, licence, counts, sizes, skipped files)

The files are read straight from the mirror's git directory at the pinned commit
(`git ls-tree` and `git cat-file --batch`); the mirror is never modified. Image bytes are
written unchanged. A file is skipped (and listed) when it is a Git LFS pointer or the
snapshot lacks its blob (both before any cap, so caps still fill up), or when Pillow cannot
decode it (found while writing, so its class ends one short). Files whose bytes are identical (same
git blob) are kept once: the copy in the earliest split (train, then val, then test), or none
when the copies carry different classes. Per-class caps and held-out splits are
deterministic: files are ordered by sha256("<seed>:<path>"), so a rebuild gives the same
files.

Usage (mirrors come from the `fetch` tool, which puts them under /work/.mirror):

    python scripts/bench_sets.py /work/.mirror /work/bench            # every set
    python scripts/bench_sets.py /work/.mirror /work/bench --only weather shapes
    python scripts/bench_sets.py /work/.mirror /work/bench --list     # the table, nothing built

A set's folder is rebuilt from scratch (written next to it, then swapped in). Needs Python
3.11, Pillow and numpy; see docs/bench_sets.md for the table and the fetch commands.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import re
import shutil
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # trusted, pinned sources; some X-rays are large

IMG = r"\.(?i:jpe?g|png|bmp|tiff?)"  # image extensions the sources use
SPLIT_ORDER = ("train", "val", "validation", "test")
NEAR_LISTED = 40  # near-duplicate groups across classes/splits listed in SOURCE.md


@dataclass(frozen=True)
class Csv:
    """Classes (and membership) from CSV files in the repo: one row per image."""

    files: tuple[str, ...]
    path_col: int = 0
    label_col: int = 1
    header: bool = False
    # where a row's file lies in the repo; {basename} is the last part of the row's path
    # (either slash), {path} the row's path as written
    path_template: str = "{path}"


@dataclass(frozen=True)
class BenchSet:
    name: str
    kind: str
    repo: str
    commit: str
    licence: str
    about: str
    # split name -> regex (on the repo path, with a (?P<cls>...) group) or a Csv
    splits: dict[str, str | Csv]
    # per-class cap for each split (after de-duplication); a missing split is uncapped
    cap: dict[str, int] = field(default_factory=dict)
    # when > 0: the single split "all" is capped, then this fraction of each class is held
    # out as test/ (seeded), the rest is train/
    test_fraction: float = 0.0
    seed: int = 0
    extra_files: tuple[str, ...] = ()  # copied as-is (licence texts)
    notes: str = ""


HDS_VAL = "crt|il1|lts|mrt|nae"  # the HDS author's validation and test users
HDS_TEST = "u01|u17|u18|u19"  # (processing/classify/notebooks/hds_shapes_1_etl.ipynb)

SETS: tuple[BenchSet, ...] = (
    BenchSet(
        name="clothing",
        kind="clothing photos (mixed backgrounds)",
        repo="alexeygrigorev/clothing-dataset-small",
        commit="11961516512414bf9f6c150a832cfd21b54a6b54",
        licence="LICENSE: CC0 1.0 Universal (SPDX CC0-1.0)",
        about="Clothing photos (10 classes) from the Clothing dataset (Alexey Grigorev), "
        "the source's own train/validation/test split kept.",
        splits={s: rf"^{s}/(?P<cls>[^/]+)/[^/]+{IMG}$" for s in ("train", "validation", "test")},
        extra_files=("LICENSE", "README.md"),
    ),
    BenchSet(
        name="trashnet",
        kind="product photos, plain background",
        repo="congduytran12/Trash-Classification-",
        commit="00212f2c18dcdb9045c74481eaae5baaf72537df",
        licence="none stated in this repo (no LICENSE file, README silent). The images are "
        "TrashNet's dataset-resized (Gary Thung, Mindy Yang); TrashNet's own repo "
        "garythung/trashnet is MIT (LICENSE, 'Copyright (c) 2017 Gary Thung'), but its "
        "snapshot lacks the data zip",
        about="TrashNet: single objects (cardboard, glass, metal, paper, plastic, trash) "
        "photographed on a white poster board, 512x384 as in TrashNet's dataset-resized.",
        splits={"all": rf"^dataset-resized/(?P<cls>[^/]+)/[^/]+{IMG}$"},
        test_fraction=0.2,
    ),
    BenchSet(
        name="weather",
        kind="outdoor scenes",
        repo="talalahmad27/Image-Classification-Using-Pretrained-models",
        commit="08bb03a6165370207878969e4b64538c141c35e4",
        licence="none stated in this repo (no LICENSE file). The images are the Multi-class "
        "Weather Dataset (Ajayi 2018, Mendeley Data doi:10.17632/4drtyfjtfy.1), published "
        "there under CC BY 4.0",
        about="Outdoor photos of four weather conditions (cloudy, rain, shine, sunrise); "
        "class and train/test membership from the repo's CSVs (my_training + my_validation "
        "-> train, my_test -> test).",
        splits={
            "train": Csv(
                ("my_training.csv", "my_validation.csv"), path_template="dataset2/{basename}"
            ),
            "test": Csv(("my_test.csv",), path_template="dataset2/{basename}"),
        },
        notes="Pinned to the commit that holds the images: the repo's later commits turned "
        "dataset2/ into Git LFS pointers.",
    ),
    BenchSet(
        name="flowers",
        kind="plants",
        repo="martinwestin/flower_classification",
        commit="c169e7e4038bc0e0e2fe80090b6dc8919539816f",
        licence="none stated (no LICENSE file, README silent). The photos look like the "
        "Kaggle 'Flowers Recognition' collection (Flickr/Google/Yandex images), whose licence "
        "is unclear",
        about="Flower photos of five kinds (daisy, dandelion, rose, sunflower, tulip), "
        "already resized by the repo author to 128x128.",
        splits={"all": rf"^flowers/(?P<cls>[^/]+)/[^/]+{IMG}$"},
        cap={"all": 600},
        test_fraction=0.2,
    ),
    BenchSet(
        name="bloodcells",
        kind="microscope (blood smear cells)",
        repo="shall-it/machine-learning-zoomcamp",
        commit="8084d0a5d73dea908a63d469595b2a71c561ddbb",
        licence="no LICENSE file; capstone-project/README.md states the dataset is under "
        "CC BY 4.0 (SPDX CC-BY-4.0), created by Sumith Singh Kothwal (Kaggle "
        "'blood-cell-images-for-cancer-detection')",
        about="Single blood cells (basophil, erythroblast, monocyte, myeloblast, "
        "segmented neutrophil) from smear microscopy; the repo's own train/test split "
        "(its val/ is left out).",
        splits={
            s: rf"^capstone-project/blood-cell-images-for-cancer-detection-prepared/{s}/"
            rf"(?P<cls>[^/]+)/[^/]+{IMG}$"
            for s in ("train", "test")
        },
        cap={"train": 400, "test": 200},
    ),
    BenchSet(
        name="shapes",
        kind="hand-drawn sketches",
        repo="frobertpixto/hand-drawn-shapes-dataset",
        commit="a01f80248c156c56a83b2678453e410bdcc6a342",
        licence="README.md 'Licenses': the data, Hand-drawn Shapes (HDS) Dataset (c) 2022 "
        "Francois Robert, is CC BY 4.0 (SPDX CC-BY-4.0); the notebooks are MIT "
        "(processing/LICENSE.txt)",
        about="Hand-drawn shapes (ellipse, rectangle, triangle, other) drawn on a phone by "
        "people aged 7 to 87, 70x70 grey. Split by person as the author does: validation "
        f"users {HDS_VAL.replace('|', ', ')}; test users {HDS_TEST.replace('|', ', ')}.",
        splits={
            "train": rf"^data/user\.(?!(?:{HDS_VAL}|{HDS_TEST})/)[^/]+/images/(?P<cls>[^/]+)/"
            rf"[^/]+{IMG}$",
            "val": rf"^data/user\.(?:{HDS_VAL})/images/(?P<cls>[^/]+)/[^/]+{IMG}$",
            "test": rf"^data/user\.(?:{HDS_TEST})/images/(?P<cls>[^/]+)/[^/]+{IMG}$",
        },
        cap={"train": 450, "val": 150, "test": 150},
        notes="The author stored up to 3 versions of each ellipse/rectangle/triangle drawing "
        "(as drawn, wider, narrower), so a random validation split of train/ would leak; "
        "val/ is therefore given, split by person.",
    ),
    BenchSet(
        name="xray",
        kind="grey X-ray",
        repo="waliatushar/ai-pneumonia-detection",
        commit="362d6d1be840461d0f26253972ec86bbc8533772",
        licence="none stated in this repo (no LICENSE file). The images are the paediatric "
        "Chest X-Ray Images (Pneumonia) of Kermany et al. 2018 (Mendeley Data "
        "doi:10.17632/rscbjbr9sj), published there under CC BY 4.0",
        about="Paediatric chest X-rays, NORMAL vs PNEUMONIA, the source's train/test split; "
        "the repo author resized every image to 224x224 (aspect not kept) and saved it RGB.",
        splits={s: rf"^dataset/{s}/(?P<cls>[^/]+)/[^/]+{IMG}$" for s in ("train", "test")},
        cap={"train": 1100},
        notes="train/ is capped at 1,100 per class (the source has 1,341 NORMAL, 3,875 "
        "PNEUMONIA), so it is balanced; test/ keeps the source's 234/390.",
    ),
)


# ---------------------------------------------------------------------------- git access


def git_dir(mirror_root: Path, repo: str) -> Path:
    """The git directory of a fetched mirror: MIRROR_ROOT/owner+name/repo[/.git]."""
    base = mirror_root / repo.replace("/", "+") / "repo"
    for cand in (base / ".git", base):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    raise SystemExit(f"{repo}: no mirror at {base}; fetch github:{repo} first")


def git(gdir: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", f"--git-dir={gdir}", *args], check=True, capture_output=True
    ).stdout


@dataclass(frozen=True)
class Entry:
    path: str
    blob: str
    size: int | None  # None: the snapshot lacks the object


def list_tree(gdir: Path, commit: str) -> dict[str, Entry]:
    out = git(gdir, "ls-tree", "-r", "-z", "--long", "--full-tree", commit)
    entries = {}
    for rec in out.split(b"\0"):
        if not rec:
            continue
        meta, path = rec.split(b"\t", 1)
        _mode, kind, blob, size = meta.split()
        if kind != b"blob":
            continue
        p = path.decode("utf-8", "surrogateescape")
        # ls-tree prints "BAD" (or "-") as the size of an object the snapshot lacks
        entries[p] = Entry(p, blob.decode(), int(size) if size.isdigit() else None)
    return entries


class BlobReader:
    """Reads blobs through one `git cat-file --batch` process."""

    def __init__(self, gdir: Path):
        self.proc = subprocess.Popen(
            ["git", f"--git-dir={gdir}", "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def read(self, blob: str) -> bytes | None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(blob.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) < 3 or header[1] != b"blob":
            return None  # "<sha> missing"
        data = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)  # trailing newline
        return data

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait()


# ---------------------------------------------------------------------------- selection


def order_key(seed: int, path: str) -> str:
    return hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()


def csv_members(
    gdir: Path, s: BenchSet, spec: Csv, tree: dict[str, Entry]
) -> list[tuple[str, str]]:
    found = []
    for name in spec.files:
        text = git(gdir, "show", f"{s.commit}:{name}").decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
        for row in rows[1 if spec.header else 0 :]:
            if not row:
                continue
            raw = row[spec.path_col].strip()
            base = re.split(r"[\\/]", raw)[-1]
            path = spec.path_template.format(path=raw, basename=base)
            if path not in tree:
                raise SystemExit(f"{s.name}: {name} names {raw!r} -> {path}, not in the tree")
            found.append((path, row[spec.label_col].strip()))
    return found


def unusable(entry: Entry, reader: BlobReader) -> str | None:
    """Why a file cannot be an image (blob absent, LFS pointer), before any cap is applied."""
    if entry.size is None:
        return "blob missing from the snapshot"
    if entry.size < 1024:
        data = reader.read(entry.blob)
        if data is None:
            return "blob missing from the snapshot"
        if data.startswith(b"version https://git-lfs"):
            return "Git LFS pointer, not the image"
    return None


def select(
    gdir: Path, s: BenchSet, tree: dict[str, Entry], reader: BlobReader, skipped: list[str]
) -> tuple[dict, list[str]]:
    """split -> class -> [paths], after de-duplication and caps; plus de-dup notes.

    Files that are absent or LFS pointers are left out (and added to `skipped`) first, so a
    cap still fills up from the files that are there.
    """
    members: dict[str, list[tuple[str, str]]] = {}
    for split, spec in s.splits.items():
        if isinstance(spec, Csv):
            found = csv_members(gdir, s, spec, tree)
        else:
            rx = re.compile(spec)
            found = [(p, m["cls"]) for p in sorted(tree) if (m := rx.match(p)) is not None]
        if not found:
            raise SystemExit(f"{s.name}: split {split!r} matches no file at {s.commit}")
        members[split] = []
        for path, cls in found:
            why = unusable(tree[path], reader)
            if why is None:
                members[split].append((path, cls))
            else:
                skipped.append(f"{path}: {why}")

    # identical bytes (same blob): keep the copy in the earliest split, none on a class clash
    rank = {sp: i for i, sp in enumerate(SPLIT_ORDER)}
    by_blob: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for split, items in members.items():
        for path, cls in items:
            by_blob[tree[path].blob].append((split, path, cls))
    dropped: set[tuple[str, str]] = set()
    notes = []
    for copies in by_blob.values():
        if len(copies) < 2:
            continue
        copies.sort(key=lambda c: (rank.get(c[0], 9), c[1]))
        if len({c[2] for c in copies}) > 1:
            dropped.update((sp, p) for sp, p, _ in copies)
            notes.append(
                "class clash, all dropped: " + ", ".join(f"{sp}/{c}:{p}" for sp, p, c in copies)
            )
        else:
            dropped.update((sp, p) for sp, p, _ in copies[1:])
            notes.append(
                f"kept {copies[0][0]}:{copies[0][1]}; dropped "
                + ", ".join(f"{sp}:{p}" for sp, p, _ in copies[1:])
            )

    chosen: dict[str, dict[str, list[str]]] = {}
    for split, items in members.items():
        per_class: dict[str, list[str]] = defaultdict(list)
        for path, cls in items:
            if (split, path) not in dropped:
                per_class[cls].append(path)
        cap = s.cap.get(split)
        for paths in per_class.values():
            paths.sort(key=lambda p: order_key(s.seed, p))
            if cap is not None:
                del paths[cap:]
        chosen[split] = dict(per_class)

    if s.test_fraction > 0:
        assert list(chosen) == ["all"], f"{s.name}: test_fraction needs the single split 'all'"
        train: dict[str, list[str]] = {}
        test: dict[str, list[str]] = {}
        for cls, paths in chosen["all"].items():
            n_test = round(len(paths) * s.test_fraction)
            test[cls], train[cls] = paths[:n_test], paths[n_test:]
        chosen = {"train": train, "test": test}
    return chosen, notes


# ---------------------------------------------------------------------------- writing


def dhash(img: Image.Image) -> int:
    """64-bit difference hash of the grey image (near-duplicate report only)."""
    a = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def out_layout(s: BenchSet, chosen: dict) -> dict[str, str]:
    """split -> folder under OUT_ROOT/<name>/ ('' = flat)."""
    if list(chosen) == ["all"]:
        return {"all": ""}
    return {split: split for split in chosen}


def build(s: BenchSet, mirror_root: Path, out_root: Path) -> dict:
    gdir = git_dir(mirror_root, s.repo)
    try:
        git(gdir, "cat-file", "-e", f"{s.commit}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(
            f"{s.name}: commit {s.commit} is not in {gdir}; fetch github:{s.repo}"
        ) from None
    tree = list_tree(gdir, s.commit)
    reader = BlobReader(gdir)
    skipped: list[str] = []
    try:
        chosen, dedup_notes = select(gdir, s, tree, reader, skipped)
    except BaseException:
        reader.close()
        raise
    layout = out_layout(s, chosen)

    final = out_root / s.name
    tmp = out_root / f".{s.name}.building"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    counts: dict[str, Counter] = {sp: Counter() for sp in chosen}
    sizes: list[tuple[int, int]] = []
    modes: Counter = Counter()
    hashes: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    try:
        for split, per_class in chosen.items():
            for cls in sorted(per_class):
                folder = tmp / layout[split] / cls
                folder.mkdir(parents=True, exist_ok=True)
                for path in sorted(per_class[cls]):
                    data = reader.read(tree[path].blob)
                    if data is None:
                        skipped.append(f"{path}: blob missing from the snapshot")
                        continue
                    try:
                        with Image.open(io.BytesIO(data)) as im:
                            im.load()
                            sizes.append(im.size)
                            modes[im.mode] += 1
                            h = dhash(im)
                    except Exception as exc:  # noqa: BLE001 - any decoder failure skips the file
                        skipped.append(
                            f"{path}: Pillow cannot decode it ({type(exc).__name__}: {exc})"
                        )
                        continue
                    dest = folder / PurePosixPath(path).name
                    if dest.exists():
                        raise SystemExit(f"{s.name}: two files named {dest.name} in {split}/{cls}")
                    dest.write_bytes(data)
                    counts[split][cls] += 1
                    hashes[h].append((split, cls, path))
    finally:
        reader.close()
    for name in s.extra_files:
        (tmp / PurePosixPath(name).name).write_bytes(git(gdir, "show", f"{s.commit}:{name}"))

    near, near_groups = near_duplicates(hashes)
    info = dict(
        counts=counts,
        skipped=skipped,
        sizes=sizes,
        modes=modes,
        near=near,
        near_groups=near_groups,
        dedup=dedup_notes,
        layout=layout,
    )
    (tmp / "SOURCE.md").write_text(source_md(s, info))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return info


def near_duplicates(
    hashes: dict[int, list[tuple[str, str, str]]],
) -> tuple[dict[str, int], list[str]]:
    """Groups of images with the same dHash: counts by what they straddle, and those groups."""
    out: Counter = Counter()
    listed = []
    for group in hashes.values():
        if len(group) < 2:
            continue
        out["groups"] += 1
        classes = len({cls for _, cls, _ in group}) > 1
        splits = len({sp for sp, _, _ in group}) > 1
        out["across classes"] += classes
        out["across splits"] += splits
        if classes or splits:
            listed.append(", ".join(f"{sp}/{cls}: {p}" for sp, cls, p in sorted(group)))
    return dict(out), sorted(listed)


def size_summary(sizes: list[tuple[int, int]]) -> str:
    if not sizes:
        return "-"
    common = Counter(sizes).most_common(1)[0]
    ws, hs = [w for w, _ in sizes], [h for _, h in sizes]
    if len(set(sizes)) == 1:
        return f"all {common[0][0]}x{common[0][1]}"
    return (
        f"most common {common[0][0]}x{common[0][1]} ({common[1]}/{len(sizes)}); "
        f"width {min(ws)}-{max(ws)} (median {statistics.median(ws):g}), "
        f"height {min(hs)}-{max(hs)} (median {statistics.median(hs):g})"
    )


def source_md(s: BenchSet, info: dict) -> str:
    counts: dict[str, Counter] = info["counts"]
    classes = sorted({c for cnt in counts.values() for c in cnt})
    splits = list(counts)
    lines = [
        f"# {s.name}",
        "",
        f"Built by `scripts/bench_sets.py` (cnn repository) from github.com/{s.repo} at commit",
        f"`{s.commit}`. Do not edit; rebuild with",
        "",
        f"    python scripts/bench_sets.py /work/.mirror <OUT_ROOT> --only {s.name}",
        "",
        f"- Source: https://github.com/{s.repo}/tree/{s.commit}",
        f"- Kind: {s.kind}",
        f"- Licence: {s.licence}",
        f"- What: {s.about}",
    ]
    if s.notes:
        lines.append(f"- Note: {s.notes}")
    caps = ", ".join(f"{k} {v}/class" for k, v in s.cap.items()) or "none"
    lines.append(f"- Per-class caps (seed {s.seed}): {caps}")
    if s.test_fraction:
        lines.append(
            f"- Held-out test: {s.test_fraction:.0%} of each class (seed {s.seed}); "
            "the source has no split"
        )
    layout = ", ".join(f"{v or '.'}/<class>/" for v in info["layout"].values())
    lines += [
        f"- Layout: {layout}",
        f"- Image sizes: {size_summary(info['sizes'])}",
        "- Pillow modes: " + ", ".join(f"{m} {n}" for m, n in info["modes"].most_common()),
        "",
        "| class | " + " | ".join(splits) + " |",
        "|---|" + "---:|" * len(splits),
    ]
    for c in classes:
        lines.append(f"| {c} | " + " | ".join(str(counts[sp][c]) for sp in splits) + " |")
    lines.append(
        "| **total** | " + " | ".join(str(sum(counts[sp].values())) for sp in splits) + " |"
    )
    near = info["near"]
    lines += [
        "",
        f"Near-duplicates (same 64-bit dHash): {near.get('groups', 0)} groups, "
        f"{near.get('across classes', 0)} across classes, "
        f"{near.get('across splits', 0)} across splits (reported, not removed; a shared "
        "dHash often means a resized or re-encoded copy, sometimes just a plain image).",
        "",
        *[f"- {g}" for g in info["near_groups"][:NEAR_LISTED]],
        *(
            [f"- ... and {len(info['near_groups']) - NEAR_LISTED} more"]
            if len(info["near_groups"]) > NEAR_LISTED
            else []
        ),
        "",
        f"## Exact duplicates removed ({len(info['dedup'])})",
        "",
        *([f"- {n}" for n in info["dedup"]] or ["none"]),
        "",
        f"## Skipped files ({len(info['skipped'])})",
        "",
        *([f"- {n}" for n in info["skipped"]] or ["none"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mirror_root", type=Path, help="where fetch put the mirrors (/work/.mirror)")
    ap.add_argument("out_root", type=Path, help="where the sets go (e.g. /work/bench)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="build only these sets")
    ap.add_argument("--list", action="store_true", help="print the table and exit")
    args = ap.parse_args(argv)

    names = [s.name for s in SETS]
    unknown = set(args.only or ()) - set(names)
    if unknown:
        ap.error(f"unknown set(s) {sorted(unknown)}; known: {', '.join(names)}")
    todo = [s for s in SETS if not args.only or s.name in args.only]
    if args.list:
        for s in todo:
            print(f"{s.name:11} {s.kind:38} {s.repo}@{s.commit[:12]}  {s.licence[:60]}")
        return 0
    args.out_root.mkdir(parents=True, exist_ok=True)
    for s in todo:
        info = build(s, args.mirror_root, args.out_root)
        total = {sp: sum(c.values()) for sp, c in info["counts"].items()}
        print(
            f"{s.name}: {total}, {len(info['counts'][next(iter(info['counts']))])} classes, "
            f"{len(info['dedup'])} exact duplicates removed, {len(info['skipped'])} skipped, "
            f"near-duplicate groups {info['near']}"
        )
        for line in info["skipped"]:
            print(f"  skipped {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
