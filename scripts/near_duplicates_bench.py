"""How well `cnn doctor` finds near-duplicate images in real photo folders.

Copies a real folder to a temporary one, adds known near-duplicates of a fraction of its
images (each an edited copy of one original, in the original's class folder: re-encoded at
another JPEG quality, resized, cropped 5-10 %, rotated a few degrees, brightened or darkened,
or framed like a screenshot), runs `cnn doctor DIR --json` and compares the near-duplicate
pairs it reports with the made ones: precision, recall, the largest group and wall time.

    python scripts/near_duplicates_bench.py --keep /tmp/ndb \
        hymenoptera=/work/shared/data/hymenoptera_data trashnet=/work/bench/trashnet

Pairs that doctor lists between two original images are the set's own near-duplicates
(the same object shot twice, a resized copy in the source): they are counted apart, never as
made pairs, and printed so a person can look at them (--show-own N). --code DIR runs another
cnn source tree on the same sets (the old perceptual hash: `git archive REV | tar -x -C DIR`).
Prints one JSON line and one Markdown table row per set, for docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.near_copies import EDITS, save_near_copy  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def images_under(root: Path) -> list[Path]:
    """Image files under root (SOURCE.md and other files left out), sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def make_set(src: Path, out: Path, fraction: float, seed: int) -> list[tuple[str, str, str]]:
    """Copy src to out and add near-duplicates of `fraction` of its images.

    Returns (original, copy, edit) with paths relative to out; each copy sits in the
    original's folder as nd_<edit>_<name>.jpg.
    """
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.md"))
    originals = images_under(out)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(originals)), round(fraction * len(originals))))
    made = []
    for n, i in enumerate(chosen):
        kind = EDITS[n % len(EDITS)]
        copy = save_near_copy(originals[i], kind, rng)
        made.append((str(originals[i].relative_to(out)), str(copy.relative_to(out)), kind))
    return made


# Runs `cnn` from the source tree in argv[1]: an editable install's import hook would
# otherwise load the checked-out cnncli whatever PYTHONPATH says.
_OTHER_TREE = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
    "if 'editable' not in str(getattr(f, '__module__', ''))]; "
    "sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'cnn'; "
    "from cnncli.cli import main; main()"
)


def run_doctor(folder: Path, extra: list[str], code: Path | None) -> tuple[dict, float]:
    """`cnn doctor folder --json` (from the source tree `code` if given): report, seconds."""
    run = (
        [sys.executable, "-c", _OTHER_TREE, str(code)] if code else [sys.executable, "-m", "cnncli"]
    )
    start = time.perf_counter()
    done = subprocess.run(
        [*run, "doctor", str(folder), "--json", "--quiet", *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"cnn doctor failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout), seconds


def near_groups(report: dict) -> list[tuple[list[str], set[frozenset[str]]]]:
    """Each near-duplicate group: its files and the pairs it lists (every pair of its files
    when it lists none, as the old linked groups meant)."""
    out = []
    for group in report["duplicates"]:
        if group["kind"] != "near":
            continue
        paths = [f["path"] for f in group["files"]]
        listed = {frozenset((p["a"], p["b"])) for p in group.get("pairs", [])}
        out.append((paths, listed or {frozenset(c) for c in combinations(paths, 2)}))
    return out


def score(made: list[tuple[str, str, str]], report: dict) -> dict:
    """Recall and precision of the made pairs; the set's own pairs counted apart.

    A made pair is found when its two files share a group. Each listed pair is one of:
    made; own (two original images: the set's own near-duplicates); following (a copy
    with a picture its original is listed with, or shares a group with); wrong (the rest).
    """
    truth = {frozenset((a, b)): kind for a, b, kind in made}
    copy_of = {b: a for a, b, _ in made}
    groups = near_groups(report)
    group_of = {path: k for k, (paths, _) in enumerate(groups) for path in paths}
    listed = set().union(*(pairs for _, pairs in groups)) if groups else set()
    own = {p for p in listed if not any(x in copy_of for x in p)}

    def follows(pair: frozenset[str]) -> bool:
        a, b = sorted(pair, key=lambda x: x not in copy_of)  # the copy first
        original = copy_of[a]
        if original == copy_of.get(b):
            return True  # two copies of one original
        if frozenset((original, copy_of.get(b, b))) in own:
            return True
        return group_of.get(original) is not None and group_of.get(original) == group_of.get(b)

    hits = {p for p in truth if len({group_of.get(x, -1 - i) for i, x in enumerate(p)}) == 1}
    made_listed = listed & set(truth)
    rest = listed - own - made_listed
    following = {p for p in rest if follows(p)}
    wrong = rest - following
    missed = sorted(kind for p, kind in truth.items() if p not in hits)
    sizes = [len(paths) for paths, _ in groups]
    with_made = len(made_listed) + len(wrong)
    return {
        "made": len(truth),
        "listed": len(listed),
        "hits": len(hits),
        "own": sorted(tuple(sorted(p)) for p in own),
        "following": len(following),
        "wrong": sorted(tuple(sorted(p)) for p in wrong),
        "missed": missed,
        "recall": len(hits) / len(truth) if truth else 1.0,
        "precision": len(made_listed) / with_made if with_made else 1.0,
        "largest_group": max(sizes, default=0),
        "groups": len(groups),
        "identical_groups": sum(g["kind"] != "near" for g in report["duplicates"]),
        "exit_code_reason": report.get("hurts_training"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", help="name=folder of a real image set")
    parser.add_argument("--fraction", type=float, default=0.08, help="images given a copy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show-own", type=int, default=5, help="own pairs to print")
    parser.add_argument("--keep", type=Path, help="build the sets here and keep them")
    parser.add_argument("--code", type=Path, help="run this cnn source tree instead")
    parser.add_argument("--doctor-args", default="", help="extra doctor flags, one string")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="near-dup-bench-") as tmp:
        base = args.keep or Path(tmp)
        for spec in args.sets:
            name, _, src = spec.partition("=")
            folder = base / name
            if not (folder / "made.json").exists():
                shutil.rmtree(folder, ignore_errors=True)
                made = make_set(Path(src), folder / "images", args.fraction, args.seed)
                (folder / "made.json").write_text(json.dumps(made))
            made = [tuple(m) for m in json.loads((folder / "made.json").read_text())]
            report, seconds = run_doctor(folder / "images", args.doctor_args.split(), args.code)
            result = score(made, report)
            images = len(images_under(folder / "images"))
            result.update(name=name, images=images, seconds=seconds)
            rows.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "own"}), flush=True)
            for a, b in result["own"][: args.show_own]:
                print(f"  own pair: {a}  {b}")
    print()
    print(
        "| set | images | made pairs | found | recall | listed pairs | made | own | "
        "following | wrong | precision | groups | largest | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        made_listed = r["listed"] - len(r["own"]) - r["following"] - len(r["wrong"])
        print(
            f"| {r['name']} | {r['images']} | {r['made']} | {r['hits']} | {r['recall']:.3f} | "
            f"{r['listed']} | {made_listed} | {len(r['own'])} | {r['following']} | "
            f"{len(r['wrong'])} | {r['precision']:.3f} | {r['groups']} | "
            f"{r['largest_group']} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
