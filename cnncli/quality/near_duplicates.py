"""Near-duplicate images by pretrained features: which pairs, and groups without chaining.

Every image goes once through the packaged EfficientNet-Lite0 (ImageNet weights) at 128 x
128, the centre 80 % of its shorter side (a frame, a title bar or rotated corners mostly
fall outside it). Two pooled features come out of that one pass: the head's 1280 (what the
picture shows) and stage 5's 112 (its textures and detail). A pair is a near-duplicate when

- the head features agree (cosine >= NearRule.similarity): the same thing, and
- the stage-5 features agree (cosine >= NearRule.detail): the same detail, which two
  different jeans on the same hanger, or two cans on the same white board, do not share, and
- the pair stands out from each image's neighbourhood (head cosine at least
  NearRule.margin above each image's NearRule.neighbours-th nearest neighbour), so a folder
  where everything looks alike (X-rays, cells) does not pair everything with everything, and
- the layouts agree: 16 x 16 grey thumbnails of the same crop correlate (NearRule.layout,
  the best of shifts by one cell); features alone call two upscaled noise images alike.

Groups are stars, never chains: a representative and images that each pass the rule with
it (A ~ B and B ~ C never put A and C together on their own). docs/results.md has the
measurements behind the numbers (scripts/near_duplicates_bench.py). Nothing here prints;
jax is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cnncli.data.decode import DecodeError, Resize, decode_image, open_image

# The input the features are computed on: small enough for ~70 images/s on two CPU cores.
INPUT_SIZE = 128
CENTRE = 0.8  # the part of the shorter side kept (a centred square)
BATCH = 32  # fixed, so the forward compiles once (the last batch is padded)
THUMB = 16  # side of the grey layout thumbnail
_BLOCK = 512  # rows of the similarity matrix computed at a time
_PAIRS = 8192  # candidate pairs whose thumbnails are compared at a time

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class NearRule:
    """When two images count as near-duplicates (cosines of pooled pretrained features)."""

    similarity: float = 0.84  # head features: the same thing
    detail: float = 0.92  # stage-5 features: the same detail
    neighbours: int = 10  # the neighbour a pair must stand out from ...
    margin: float = 0.05  # ... by this much head cosine
    layout: float = 0.5  # correlation of the 16 x 16 grey thumbnails

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class Features:
    """Unit-length pooled features per image; ok is False where a file failed to decode."""

    head: np.ndarray  # float32 (n, 1280)
    detail: np.ndarray  # float32 (n, 112)
    thumbs: np.ndarray  # float32 (n, 16, 16): grey, the same crop
    ok: np.ndarray  # bool (n,)


@dataclass(frozen=True)
class NearPair:
    """Images i and j pass the rule; similarity is their head cosine, detail stage 5's."""

    i: int
    j: int
    similarity: float
    detail: float


def _resize() -> Resize:
    return Resize(INPUT_SIZE, INPUT_SIZE, crop_pct=CENTRE, interpolation="bicubic")


def _decode(path: Path) -> np.ndarray | None:
    try:
        return decode_image(path, _resize(), 3)
    except DecodeError:
        return None


@lru_cache(maxsize=1)
def _forward():
    """The packaged Lite0 weights and a jitted forward: uint8 NHWC -> (head, stage-5) pooled."""
    import jax

    from cnncli.config import ModelConfig
    from cnncli.model import network
    from cnncli.model.pretrained.lite_weights import LITE_CFG, load_packaged

    weights = load_packaged()
    cfg = ModelConfig(
        backbone="efficientnet_lite0",
        dense=[],
        global_pool=True,
        dropout=0.0,
        mean=list(LITE_CFG["mean"]),
        std=list(LITE_CFG["std"]),
    )

    @jax.jit
    def pooled(params, stats, images):
        _, _, maps = network.trunk(params, stats, cfg, network.normalize(images, cfg))
        # maps: stem, stage1..stage7, head; stage 5 (index 5) keeps textures, head the gist.
        return maps[-1].mean(axis=(1, 2)), maps[5].mean(axis=(1, 2))

    return lambda images: pooled(weights.params, weights.stats, images)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def image_features(
    root: str | Path, relpaths: list[str], *, progress: Progress | None = None
) -> Features:
    """Pooled features of every file, decoded on threads while the previous batch runs."""
    n, root = len(relpaths), Path(root)
    forward = _forward()
    heads, details, thumbs = [], [], []
    ok = np.zeros(n, bool)
    starts = list(range(0, n, BATCH))
    with ThreadPoolExecutor(max_workers=2) as pool:

        def submit(start: int):
            return [pool.submit(_decode, root / p) for p in relpaths[start : start + BATCH]]

        pending = submit(starts[0]) if starts else []
        for k, start in enumerate(starts):
            decoded = [f.result() for f in pending]
            if k + 1 < len(starts):
                pending = submit(starts[k + 1])
            batch = np.zeros((BATCH, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
            for row, image in enumerate(decoded):
                if image is not None:
                    batch[row] = image
                    ok[start + row] = True
            head, detail = forward(batch)
            heads.append(np.asarray(head)[: len(decoded)])
            details.append(np.asarray(detail)[: len(decoded)])
            thumbs.append(_thumbs(batch[: len(decoded)]))
            if progress:
                progress(start + len(decoded), n)
    if not n:
        empty = np.zeros((0, 1), np.float32)
        return Features(empty, empty, np.zeros((0, THUMB, THUMB), np.float32), ok)
    return Features(
        _unit(np.concatenate(heads)),
        _unit(np.concatenate(details)),
        np.concatenate(thumbs),
        ok,
    )


def _thumbs(images: np.ndarray) -> np.ndarray:
    """uint8 (n, S, S, 3) -> grey (n, THUMB, THUMB) cell means."""
    n, size = images.shape[0], images.shape[1]
    cell = size // THUMB
    grey = images.astype(np.float32).mean(axis=3)
    return grey.reshape(n, THUMB, cell, THUMB, cell).mean(axis=(2, 4))


def layout_agreement(a: np.ndarray, b: np.ndarray, shift: int = 1) -> np.ndarray:
    """Correlation of thumbnail pairs (m, T, T), the best over shifts of up to `shift` cells.

    A flat thumbnail (no contrast) agrees with nothing (0).
    """
    t = a.shape[1]
    best = np.full(a.shape[0], -1.0, np.float32)
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            x = a[:, max(0, dy) : t + min(0, dy), max(0, dx) : t + min(0, dx)]
            y = b[:, max(0, -dy) : t + min(0, -dy), max(0, -dx) : t + min(0, -dx)]
            x = x - x.mean(axis=(1, 2), keepdims=True)
            y = y - y.mean(axis=(1, 2), keepdims=True)
            num = (x * y).sum(axis=(1, 2))
            den = np.sqrt((x * x).sum(axis=(1, 2)) * (y * y).sum(axis=(1, 2)))
            value = np.where(den > 1e-6, num / np.maximum(den, 1e-12), 0.0)
            best = np.maximum(best, value)
    return best


def similar_pairs(features: Features, rule: NearRule = NearRule()) -> list[NearPair]:
    """Every pair (i < j) of decoded images that passes the rule, most similar first."""
    usable = np.flatnonzero(features.ok)
    head, detail = features.head[usable], features.detail[usable]
    n = len(usable)
    if n < 2:
        return []
    # The neighbours-th nearest neighbour's similarity; with too few images, no margin.
    floor = np.full(n, -np.inf, np.float32)
    candidates: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for lo in range(0, n, _BLOCK):
        block = head[lo : lo + _BLOCK] @ head.T
        rows = np.arange(block.shape[0])
        block[rows, lo + rows] = -np.inf  # not its own neighbour
        if n - 1 > rule.neighbours:
            kth = -np.partition(-block, rule.neighbours - 1, axis=1)[:, rule.neighbours - 1]
            floor[lo : lo + len(rows)] = kth
        i, j = np.nonzero(block >= rule.similarity)
        keep = lo + i < j
        candidates.append((lo + i[keep], j[keep], block[i[keep], j[keep]]))
    i = np.concatenate([c[0] for c in candidates])
    j = np.concatenate([c[1] for c in candidates])
    sim = np.concatenate([c[2] for c in candidates])
    det = np.einsum("kd,kd->k", detail[i], detail[j]) if len(i) else np.zeros(0, np.float32)
    keep = (det >= rule.detail) & (sim >= np.maximum(floor[i], floor[j]) + rule.margin)
    thumbs = features.thumbs[usable]
    survivors = np.flatnonzero(keep)
    for lo in range(0, len(survivors), _PAIRS):
        chunk = survivors[lo : lo + _PAIRS]
        agree = layout_agreement(thumbs[i[chunk]], thumbs[j[chunk]])
        keep[chunk[agree < rule.layout]] = False
    order = np.argsort(-sim[keep], kind="stable")
    i, j, sim, det = i[keep][order], j[keep][order], sim[keep][order], det[keep][order]
    return [
        NearPair(int(usable[a]), int(usable[b]), float(s), float(d))
        for a, b, s, d in zip(i, j, sim, det, strict=True)
    ]


def look_identical(features: Features, floor: float = 0.999) -> list[tuple[int, int]]:
    """Pairs (i < j) whose head and stage-5 features both have cosine > floor: the candidates
    for identical pixels (a full decode decides), whatever the rule says about near pairs."""
    usable = np.flatnonzero(features.ok)
    head, detail = features.head[usable], features.detail[usable]
    out = []
    for lo in range(0, len(usable), _BLOCK):
        i, j = np.nonzero(head[lo : lo + _BLOCK] @ head.T > floor)
        i, j = lo + i[lo + i < j], j[lo + i < j]
        alike = np.einsum("kd,kd->k", detail[i], detail[j]) > floor
        out += [(int(usable[a]), int(usable[b])) for a, b in zip(i[alike], j[alike], strict=True)]
    return out


Star = tuple[int, list[tuple[int, NearPair]]]  # (representative, [(member, its pair), ...])


def same_pixels(a: Path, b: Path) -> bool:
    """Both files decode to the same pixels (full size, no drafting)."""
    try:
        first, second = open_image(a), open_image(b)
    except DecodeError:
        return False
    return first.size == second.size and np.array_equal(np.asarray(first), np.asarray(second))


def find_near(
    root: str | Path,
    relpaths: list[str],
    skip: set[int],
    rule: NearRule = NearRule(),
    progress: Progress | None = None,
) -> tuple[list[tuple[int, int]], list[Star]]:
    """(pairs (i < j) with identical pixels, star groups of near-duplicates), by index into
    relpaths: the comparison `cnn doctor` and the split guard share.

    Every file but those in skip (copies of identical files: the same bytes) goes through
    the network once; a file with the same pixels as an earlier one stands in for nothing
    and is left out of the near pairs, as identical bytes are. Raises WeightsError when the
    packaged weights are missing.
    """
    root = Path(root)
    unique = [i for i in range(len(relpaths)) if i not in skip]
    features = image_features(root, [relpaths[i] for i in unique], progress=progress)
    same = [
        (unique[a], unique[b])
        for a, b in look_identical(features)
        if same_pixels(root / relpaths[unique[a]], root / relpaths[unique[b]])
    ]
    stand_in = {b for _, b in same}
    pairs = [
        NearPair(unique[p.i], unique[p.j], p.similarity, p.detail)
        for p in similar_pairs(features, rule)
        if unique[p.i] not in stand_in and unique[p.j] not in stand_in
    ]
    return same, star_groups(pairs)


def star_groups(pairs: list[NearPair]) -> list[Star]:
    """Groups without chaining: (representative, [(member, its pair with the rep), ...]).

    The image with the most unclaimed partners (then the highest summed similarity, then
    the lowest index) becomes a representative and claims them; repeat while any unclaimed
    image has an unclaimed partner. Every member passes the rule with its representative.
    """
    partners: dict[int, dict[int, NearPair]] = {}
    for pair in pairs:
        partners.setdefault(pair.i, {})[pair.j] = pair
        partners.setdefault(pair.j, {})[pair.i] = pair
    claimed: set[int] = set()
    groups = []
    while True:
        best, best_key = None, None
        for image, links in partners.items():
            if image in claimed:
                continue
            free = [p for other, p in links.items() if other not in claimed]
            if not free:
                continue
            key = (len(free), sum(p.similarity for p in free), -image)
            if best_key is None or key > best_key:
                best, best_key = image, key
        if best is None:
            return groups
        members = sorted(
            ((other, p) for other, p in partners[best].items() if other not in claimed),
            key=lambda m: (-m[1].similarity, m[0]),
        )
        claimed.add(best)
        claimed.update(other for other, _ in members)
        groups.append((best, members))
