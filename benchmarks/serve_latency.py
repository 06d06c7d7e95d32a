"""Serving: latency and throughput of `cnn serve` answering POST /predict over HTTP.

Each model is served by a real `cnn serve` process on 127.0.0.1; this process is the load
generator (Python threads with http.client, keep-alive connections), on the same machine,
so on a 2-core machine the server and the clients share the cores. One image per request:

  p50 / p99    one client sending requests one after another: milliseconds per request
  1 client     that client's requests/s
  16 clients   requests/s of 16 threads each sending one request at a time; the server's
               dynamic batching runs what arrives together as one batch (mean batch shown)
  cores        the server process's CPU time over the wall time (from /proc), 1 and 16
               clients: how much of the machine it got

Rounds alternate which of the two goes first; latencies are pooled over the rounds,
throughputs are the rounds' medians.

    .venv/bin/python benchmarks/serve_latency.py [--rounds 3] [--requests 400]
        [--image FILE] [--run RUN] [--lite RUN]

The small CNN is the default CNN at 64x64 (conv 32/64/128, dense 128) with seeded random
weights (speed does not depend on what the weights learned); --run adds a trained run and
--lite an EfficientNet-Lite run (e.g. `cnn train sample_data`, which fine-tunes Lite0).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "hymenoptera_data" / "val" / "ants"
FALLBACK_IMAGE = ROOT / "sample_data" / "circle" / "circle_000.png"
CLIENTS = 16


def write_small_cnn(directory: Path) -> Path:
    """A model/ bundle of the default CNN at 64x64 with seeded random weights."""
    from cnncli.config import DataConfig, RunConfig
    from cnncli.inference.bundle import save_bundle
    from cnncli.model.flax_module import init_weights

    cfg = RunConfig(data=DataConfig(image_size=64, channels=3))
    params, stats = init_weights(cfg.model, image_size=64, channels=3, num_classes=3, seed=0)
    save_bundle(directory, cfg, ["circle", "square", "triangle"], params, stats)
    return directory


def start_server(model: Path, env: dict) -> tuple[subprocess.Popen, int]:
    """A `cnn serve MODEL --port 0` process and its port, once it says it is serving."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnncli", "serve", str(model), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    for line in proc.stdout:
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", line)
        if found:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining
            return proc, int(found.group(1))
    raise SystemExit(f"cnn serve {model} did not start (exit {proc.wait()})")


def post(conn: http.client.HTTPConnection, image: bytes) -> None:
    conn.request("POST", "/predict", body=image, headers={"Content-Type": "image/jpeg"})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}: {body[:200]!r}")


def one_client(port: int, image: bytes, requests: int) -> tuple[list[float], float]:
    """(milliseconds of each request, requests/s) for one client, one request at a time."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    start = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        post(conn, image)
        times.append(1000 * (time.perf_counter() - t0))
    seconds = time.perf_counter() - start
    conn.close()
    return times, requests / seconds


def many_clients(port: int, image: bytes, requests: int, clients: int = CLIENTS) -> float:
    """Requests/s of `clients` threads sharing `requests` requests."""

    def client(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for _ in range(count):
            post(conn, image)
        conn.close()

    threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (requests // clients) * clients / (time.perf_counter() - start)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def health(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/health")
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data


def measure(name: str, model: Path, image: bytes, args, env: dict) -> dict:
    """One model's row: pooled latencies and median throughputs over alternating rounds."""
    proc, port = start_server(model, env)
    try:
        one_client(port, image, 50)  # warm-up: connections, allocator, caches
        many_clients(port, image, 4 * CLIENTS)
        latencies, single, multi, batch = [], [], [], []
        cores: dict[str, list[float]] = {"one": [], "many": []}
        for r in range(args.rounds):
            order = ("one", "many") if r % 2 == 0 else ("many", "one")
            for which in order:
                cpu, start = cpu_seconds(proc.pid), time.perf_counter()
                if which == "one":
                    times, rate = one_client(port, image, args.requests)
                    latencies += times
                    single.append(rate)
                else:
                    before = health(port)
                    multi.append(many_clients(port, image, args.requests))
                    after = health(port)
                    batch.append(
                        (after["images"] - before["images"])
                        / max(1, after["batches"] - before["batches"])
                    )
                used = cpu_seconds(proc.pid) - cpu
                cores[which].append(used / (time.perf_counter() - start))
        card = json.loads(_get(port, "/model"))
    finally:
        proc.terminate()
        proc.wait()
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    one, many = statistics.median(single), statistics.median(multi)
    print(
        f"  {name}: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, 1 client {one:.0f}/s, "
        f"16 clients {many:.0f}/s ({[round(m) for m in multi]})",
        flush=True,
    )
    size = card["input"]
    return {
        "name": name,
        "input": f"{size['height']}x{size['width']}",
        "p50": p(0.5),
        "p99": p(0.99),
        "one": one,
        "many": many,
        "batch": statistics.median(batch),
        "cores": (statistics.median(cores["one"]), statistics.median(cores["many"])),
    }


def _without_httptools(tmp: Path, env: dict) -> dict:
    """An environment whose Python cannot import httptools, so uvicorn falls back to h11."""
    shadow = tmp / "no-httptools"
    (shadow / "httptools").mkdir(parents=True)
    (shadow / "httptools" / "__init__.py").write_text(
        'raise ImportError("hidden by benchmarks/serve_latency.py --h11")\n'
    )
    path = os.pathsep.join(p for p in (str(shadow), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400, help="per round and setting")
    parser.add_argument("--image", type=Path, help="the image sent (default: an ants JPEG)")
    parser.add_argument("--run", type=Path, help="also serve this trained run")
    parser.add_argument("--lite", type=Path, help="also serve this EfficientNet-Lite run")
    parser.add_argument(
        "--h11",
        action="store_true",
        help="also serve the small CNN with uvicorn's pure-Python HTTP parser (h11), httptools "
        "hidden from the server, to compare with the default (httptools when installed)",
    )
    args = parser.parse_args()
    image_path = args.image
    if image_path is None:
        jpegs = sorted(DEFAULT_IMAGE.glob("*.jpg")) if DEFAULT_IMAGE.is_dir() else []
        image_path = jpegs[0] if jpegs else FALLBACK_IMAGE
    image = image_path.read_bytes()
    with tempfile.TemporaryDirectory(prefix="cnn-serve-bench-") as tmp:
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        small = write_small_cnn(Path(tmp) / "model")
        models = [("small CNN (random weights)", small, env)]
        if args.h11:
            models.append(("small CNN, h11 parser", small, _without_httptools(Path(tmp), env)))
        if args.run:
            models.append((f"run {args.run.name}", args.run, env))
        if args.lite:
            models.append((f"Lite run {args.lite.name}", args.lite, env))
        print(
            f"{os.cpu_count()} cores; image {image_path.name} ({len(image) / 1024:.0f} KiB); "
            f"{args.rounds} rounds x {args.requests} requests per setting; load average "
            f"{os.getloadavg()[0]:.1f}",
            flush=True,
        )
        rows = [measure(name, path, image, args, menv) for name, path, menv in models]
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}\n")
    print(
        "| model | input | p50 ms | p99 ms | 1 client req/s | 16 clients req/s | 16 / 1 "
        "| mean batch (16) | server cores (1 / 16) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['name']} | {r['input']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['one']:.0f} "
            f"| {r['many']:.0f} | {r['many'] / r['one']:.2f}x | {r['batch']:.1f} "
            f"| {r['cores'][0]:.2f} / {r['cores'][1]:.2f} |"
        )


if __name__ == "__main__":
    main()
