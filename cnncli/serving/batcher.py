"""Dynamic batching: images from requests that arrive together run as one compiled batch.

One worker thread owns the model. It takes the first waiting image, then every other image
already queued (up to the largest compiled batch), and runs them at once. No timer holds a
lone request back: while one batch runs, the requests arriving meanwhile queue up and form
the next, so batches grow with the load and a single client waits for nobody.
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
    """Queue images, run them in batches of up to max_batch on one worker thread."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int) -> None:
        self._run = run
        self._max_batch = max_batch
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
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, stop = [first], False
            while len(items) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                items.append(item)
            self._run_batch(items)
            if stop:
                return

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
