"""Inference: load a bundle, decode with the training decode path, classify in fixed-shape batches.

Video files (video.py) are classified frame by frame at a sampling rate, one Prediction
per sampled frame.

Imports jax and the pure network only: no flax, optax or orbax, so a cold start stays short.
"""

from __future__ import annotations

import gc
import glob
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncli.data.decode import DecodeError, Resize, decode_image
from cnncli.data.scan import IMAGE_EXTENSIONS
from cnncli.inference.bundle import Bundle


@dataclass
class Prediction:
    """One input's outcome: probabilities over the bundle's classes, or an error. For a
    video, one per sampled frame, with the frame's index and time in seconds."""

    path: str
    probs: np.ndarray | None = None
    error: str | None = None
    frame: int | None = None
    time: float | None = None


def collect_inputs(inputs: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files, folders (recursive) and globs into image paths, in a stable order.

    Returns (paths, problems) where problems are (input, reason) for inputs matching nothing.
    """
    paths: list[str] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        if p not in seen:
            seen.add(p)
            paths.append(p)

    for item in inputs:
        if os.path.isdir(item):
            found = []
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [
                    os.path.join(dirpath, f)
                    for f in filenames
                    if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
                ]
            if not found:
                problems.append((item, "folder holds no images"))
            for p in sorted(found):
                add(p)
        elif os.path.exists(item) or os.path.islink(item):
            add(item)
        elif glob.has_magic(item):
            matches = sorted(m for m in glob.glob(item, recursive=True) if os.path.isfile(m))
            if not matches:
                problems.append((item, "pattern matches no files"))
            for p in matches:
                add(p)
        else:
            problems.append((item, "no such file or folder"))
    return paths, problems


def make_classifier(
    bundle: Bundle, batch_size: int, tta: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """A compiled function uint8 batch (batch_size, S, S, C) -> class probabilities.

    Softmax over the classes, or for a multi-label model one sigmoid per label.
    """
    with _gc_paused():
        import jax

        from cnncli.model import network

        cfg = bundle.model

        def activation(logits):
            if bundle.multi_label:
                return jax.nn.sigmoid(logits)
            return jax.nn.softmax(logits, axis=-1)

        def classify(weights, images_u8):
            params, stats = weights
            x = network.normalize(images_u8, cfg)
            logits, _ = network.forward(params, stats, cfg, x)
            probs = activation(logits)
            if tta:
                flipped, _ = network.forward(params, stats, cfg, x[:, :, ::-1, :])
                probs = 0.5 * (probs + activation(flipped))
            return probs

        # Weights go in as arguments, not closed-over constants: constants would be baked
        # into the program (slower compiles, no reuse from jax's persistent compilation
        # cache). device_put moves them once and, unlike jnp.asarray, compiles nothing.
        weights = jax.device_put((bundle.params, bundle.stats))
        shape = (batch_size, *bundle.image_hw, bundle.channels)
        compiled = jax.jit(classify).lower(weights, jax.ShapeDtypeStruct(shape, np.uint8)).compile()

    def run(batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n < batch_size:  # pad to the compiled shape; padded rows are dropped
            pad = np.zeros((batch_size - n, *batch.shape[1:]), np.uint8)
            batch = np.concatenate([batch, pad])
        return np.asarray(compiled(weights, batch))[:n]

    return run


@contextmanager
def _gc_paused():
    """Pause garbage collection while jax is imported and the classifier compiled.

    Both make ~10^6 objects that all live on and no garbage; the collections they would
    trigger cost ~10% of the CPU time of a one-image `cnn predict`.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def classifier_of(bundle, batch_size: int, tta: bool = False):
    """uint8 batch -> probabilities for a bundle (make_classifier) or an exported model
    (cnncli/inference/exported.py, its own classifier)."""
    if hasattr(bundle, "classifier"):
        return bundle.classifier(batch_size, tta)
    return make_classifier(bundle, batch_size, tta)


def predict_paths(
    bundle: Bundle,
    paths: list[str],
    *,
    batch_size: int = 64,
    tta: bool = False,
    fps: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Prediction]:
    """Classify every path; undecodable files come back with `error` set, in input order.

    A video file (video.VIDEO_EXTENSIONS) gives one Prediction per frame sampled at fps.
    """
    from cnncli.inference.video import expected_frames, is_video

    videos = [p for p in paths if is_video(p)]
    images = [p for p in paths if not is_video(p)]
    count = len(images) + sum(expected_frames(p, fps) for p in videos)
    # A short list pads up to a power of two: fewer distinct shapes to compile (and to keep
    # in jax's compilation cache) across runs with different numbers of images.
    batch_size = max(1, min(batch_size, 1 << max(0, count - 1).bit_length()))
    classify = classifier_of(bundle, batch_size, tta)
    results: list[Prediction] = []
    done = 0
    for chunk in _decoded_chunks(images, batch_size, bundle.resize, bundle.channels):
        good = [(Prediction(path), image) for path, image in chunk if not isinstance(image, str)]
        results.extend(
            Prediction(path, error=image) for path, image in chunk if isinstance(image, str)
        )
        if good:
            probs = classify(np.stack([image for _, image in good]))
            for (pred, _), p in zip(good, probs, strict=True):
                pred.probs = p
            results.extend(pred for pred, _ in good)
        done += len(chunk)
        if progress:
            progress(done, len(paths))
    for path in videos:
        results.extend(_video_predictions(bundle, path, classify, batch_size, fps))
        done += 1
        if progress:
            progress(done, len(paths))
    order = {p: i for i, p in enumerate(paths)}
    results.sort(key=lambda r: order[r.path])  # stable: a video's frames stay in order
    return results


def _video_predictions(bundle, path: str, classify, batch_size: int, fps: float):
    """One Prediction per sampled frame, or one with the error for the whole file."""
    from cnncli.inference.video import VideoError, classify_video

    try:
        frames = classify_video(path, classify, batch_size, fps, bundle.resize, bundle.channels)
    except VideoError as exc:
        return [Prediction(path, error=exc.reason)]
    return [Prediction(path, probs, frame=f.index, time=f.time) for f, probs in frames]


DECODE_THREADS = 2  # background decode threads of predict_paths (at most one per core)


def _decoded_chunks(
    paths: list[str], batch_size: int, resize: Resize, channels: int
) -> Iterator[list[tuple[str, np.ndarray | str]]]:
    """Yield the paths batch by batch as (path, uint8 image or error reason) pairs.

    The next batch decodes in background threads while the caller classifies this one:
    Pillow releases the GIL while it decodes and resizes, and the compiled forward runs
    outside Python, so they overlap (docs/performance.md, "Prediction throughput"). The
    decode is decode_image, the same as in training.
    """

    def decode(path: str) -> tuple[str, np.ndarray | str]:
        try:
            return path, decode_image(path, resize, channels)
        except DecodeError as exc:
            return path, exc.reason if hasattr(exc, "reason") else str(exc)

    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    if len(chunks) <= 1:
        yield from ([decode(path) for path in chunk] for chunk in chunks)
        return
    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, min(DECODE_THREADS, os.cpu_count() or 1))
    with ThreadPoolExecutor(threads, thread_name_prefix="cnn-decode") as pool:
        pending = [pool.submit(decode, path) for path in chunks[0]]
        for following in [*chunks[1:], None]:
            ready = [future.result() for future in pending]
            if following is not None:
                pending = [pool.submit(decode, path) for path in following]
            yield ready


def label_of(probs: np.ndarray, classes: list[str], threshold: float | None) -> tuple[str, float]:
    """(label, confidence); 'unknown' when the top probability is below threshold."""
    i = int(np.argmax(probs))
    conf = float(probs[i])
    if threshold is not None and conf < threshold:
        return "unknown", conf
    return classes[i], conf


def label_set(
    probs: np.ndarray, classes: list[str], thresholds: list[float]
) -> list[tuple[str, float]]:
    """Multi-label: (label, probability) for every label at or above its threshold, most
    probable first."""
    chosen = [(c, float(p)) for c, p, t in zip(classes, probs, thresholds, strict=True) if p >= t]
    return sorted(chosen, key=lambda pair: -pair[1])


def top_k(probs: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    """The k most likely (class, probability) pairs, best first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(classes[i], float(probs[i])) for i in order]


def sort_into(
    predictions: list[Prediction], labels: list[str | list[str]], out_dir: str | Path
) -> list[tuple[str, str]]:
    """Copy each predicted image into out_dir/<label>/ (never move, never overwrite).

    A list of labels (multi-label) copies the image into each of their folders; video frames
    are skipped. Returns (source, destination) pairs. Class names are sanitised so none can
    write outside out_dir.
    """
    import shutil

    from cnncli.safepath import child_path, unique_destination

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    pairs = [
        (pred, name)
        for pred, label in zip(predictions, labels, strict=True)
        for name in ([label] if isinstance(label, str) else label)
    ]
    for pred, label in pairs:
        if pred.error is not None or pred.frame is not None:  # video frames are not files
            continue
        folder = child_path(out_dir, label)
        folder.mkdir(exist_ok=True)
        dest = unique_destination(folder, Path(pred.path).name)
        # Copy to a temp name, then link into place: an existing file is never replaced.
        tmp = folder / f".{dest.name}.partial"
        shutil.copyfile(pred.path, tmp)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            dest = unique_destination(folder, Path(pred.path).name)
            os.link(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        copies.append((pred.path, str(dest)))
    return copies


def evaluate_items(
    bundle: Bundle,
    root: Path,
    items: list[tuple[str, int | tuple[int, ...]]],
    *,
    batch_size: int = 64,
    tta: bool = False,
    progress: Callable[[int, int], None] | None = None,
):
    """Run the bundle over labelled (relative path, label) items.

    Returns (scores, labels, paths, skipped) for the images that decoded: for a single-label
    model log-probabilities (N, C) and class indices (N,); for a multi-label model (labels
    are tuples of class indices) sigmoid probabilities (N, C) and multi-hot targets (N, C).
    """
    paths = [str(root / rel) for rel, _ in items]
    preds = predict_paths(bundle, paths, batch_size=batch_size, tta=tta, progress=progress)
    label_of_path = {str(root / rel): label for rel, label in items}
    good = [p for p in preds if p.error is None]
    skipped = [(p.path, p.error) for p in preds if p.error is not None]
    classes = len(bundle.classes)
    if bundle.multi_label:
        from cnncli.inference.multilabel import multi_hot

        targets = multi_hot([label_of_path[p.path] for p in good], classes)
        probs = np.stack([p.probs for p in good]) if good else np.zeros((0, classes))
        return probs.astype(np.float64), targets, [p.path for p in good], skipped
    if not good:
        return np.zeros((0, classes)), np.zeros(0, np.int64), [], skipped
    probs = np.stack([p.probs for p in good]).astype(np.float64)
    labels = np.array([label_of_path[p.path] for p in good], np.int64)
    return np.log(np.clip(probs, 1e-12, 1.0)), labels, [p.path for p in good], skipped
