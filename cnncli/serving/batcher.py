"""Dynamic batching: images from requests that arrive together run as one compiled batch.

One worker thread owns the model. It takes every image already queued (up to the largest
compiled batch size) and runs the largest compiled batch size they fill; the rest go first
in the next batch. No timer holds a lone request back: while one batch runs, the requests
arriving meanwhile queue up and form the next, so batches grow with the load and a single
client waits for nobody. Batches are never padded: 9 waiting images run as 8, then 1, not
as 16 (padding would spend a slow model's time on blank images).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np


@dataclass
class BatchStats:
    """What the worker has done since start-up (GET /health)."""

    batches: int = 0
    images: int = 0
    largest: int = 0


class Batcher:
    """Queue images, run them on one worker thread in batches of the given sizes."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], sizes: tuple[int, ...]) -> None:
        self._run = run
        self._sizes = sorted(sizes)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="cnn-batcher", daemon=True)
        self.stats = BatchStats()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the queued work, then end the worker."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, images: list[np.ndarray]) -> list[Future]:
        """One future per image, resolved to its probabilities (or the batch's exception)."""
        futures = []
        for image in images:
            future: Future = Future()
            self._queue.put((image, future))
            futures.append(future)
        return futures

    def _work(self) -> None:
        waiting: list = []
        stopping = False
        while waiting or not stopping:
            if not waiting:
                item = self._queue.get()
                if item is None:
                    return
                waiting.append(item)
            while not stopping and len(waiting) < self._sizes[-1]:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    waiting.append(item)
            take = max(size for size in self._sizes if size <= len(waiting))
            self._run_batch(waiting[:take])
            waiting = waiting[take:]

    def _run_batch(self, items: list[tuple[np.ndarray, Future]]) -> None:
        # A future whose request went away (client gone, server stopping) is skipped.
        live = [(image, f) for image, f in items if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            probs = self._run(np.stack([image for image, _ in live]))
        except Exception as exc:  # handed to each waiting request, which answers 500
            for _, future in live:
                future.set_exception(exc)
            return
        stats = self.stats
        stats.batches += 1
        stats.images += len(live)
        stats.largest = max(stats.largest, len(live))
        for (_, future), row in zip(live, probs, strict=True):
            future.set_result(row)
