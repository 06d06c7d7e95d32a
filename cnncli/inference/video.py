"""Video files for `cnn predict`: frames sampled at a rate, decoded by PyAV (the optional
`video` extra; its wheels carry ffmpeg) and each put through the image decode path."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncli.data.decode import Resize, decode_array

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})
VIDEO_HINT = "pip install 'cnn[video]'"
# A frame counts as due when it starts within this many seconds of the sample time
# (container clocks round, e.g. 1/10 s stored as 0.0999...).
TIME_SLACK = 1e-3
# Frames that stop this much (or 3 frames, if longer) before the duration the header
# declares mean a truncated file: FFmpeg itself just stops at the end of the data.
TRUNCATED_SLACK = 0.5


class VideoError(Exception):
    """A video file cannot be read; `reason` is one line without the path."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


@dataclass
class Frame:
    """One sampled frame: its index among the decoded frames, its time from the first
    frame in seconds, and the uint8 image the model takes."""

    index: int
    time: float
    image: np.ndarray


def is_video(path: str | Path) -> bool:
    """Whether the file's extension is one of VIDEO_EXTENSIONS."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _av(path: str | Path):
    try:
        import av
    except ImportError:
        raise VideoError(path, f"reading video files needs PyAV ({VIDEO_HINT})") from None
    return av


def expected_frames(path: str | Path, fps: float) -> int:
    """About how many frames sample_frames yields (from the container's duration; 1 when
    unknown), to size the batches."""
    try:
        av = _av(path)
        with av.open(str(path)) as container:
            seconds = (container.duration or 0) / 1_000_000  # AV_TIME_BASE units
    except Exception:  # an unreadable file is reported when it is decoded
        return 1
    return max(1, math.ceil(seconds * fps))


def sample_frames(
    path: str | Path, fps: float, resize: Resize | int, channels: int
) -> Iterator[Frame]:
    """Decode the first video stream and yield the frame due at 0, 1/fps, 2/fps ... seconds
    (the first frame starting at or after each time), resized like any image.

    Raises VideoError (missing PyAV, no video stream, unreadable or truncated data) after
    the frames read so far.
    """
    av = _av(path)
    step = 1.0 / fps
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(path, "not a readable video (no video stream; truncated?)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or 25)
            start = time = None
            due = 0.0
            for index, frame in enumerate(container.decode(stream)):
                stamp = frame.time if frame.time is not None else index / rate
                start = stamp if start is None else start
                time = stamp - start
                if time + TIME_SLACK < due:
                    continue
                yield Frame(index, round(time, 6), decode_array(frame.to_image(), resize, channels))
                due = (math.floor((time + TIME_SLACK) / step) + 1) * step
            if time is None:
                raise VideoError(path, "not a readable video (no frame could be decoded)")
            declared = _declared_seconds(container, stream)
            if declared and time + 1 / rate < declared - max(TRUNCATED_SLACK, 3 / rate):
                raise VideoError(
                    path,
                    f"truncated video: frames stop at {time:.1f} s of the {declared:.1f} s "
                    "its header declares",
                )
    except av.error.FFmpegError as exc:
        raise VideoError(path, f"not a readable video ({_ffmpeg_reason(exc)})") from None


def _declared_seconds(container, stream) -> float | None:
    """The video stream's duration as its header states it, when it does: the stream's own
    (MP4, MOV, AVI), Matroska's DURATION tag, or the file's when it holds only this stream."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION", "")  # MKV, WebM: "00:00:03.000000000"
    parts = tag.split(":")
    if len(parts) == 3:
        try:
            return int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
        except ValueError:
            pass
    if len(container.streams) == 1 and container.duration:
        return container.duration / 1_000_000
    return None


def _ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's own words, without the file name PyAV appends."""
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]


def classify_video(
    path: str,
    classify: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    fps: float,
    resize: Resize | int,
    channels: int,
) -> list[tuple[Frame, np.ndarray]]:
    """(frame, probabilities) for each sampled frame, classified batch_size at a time.

    Raises VideoError; frames already classified are then dropped with the file.
    """
    out: list[tuple[Frame, np.ndarray]] = []
    pending: list[Frame] = []

    def flush() -> None:
        probs = classify(np.stack([f.image for f in pending]))
        out.extend(zip(pending, probs, strict=True))
        pending.clear()

    for frame in sample_frames(path, fps, resize, channels):
        pending.append(frame)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    for frame, _ in out:
        frame.image = None  # keep only the answers, not every decoded frame
    return out
