"""CPU latency of an export's model.onnx against its model.int8.onnx (onnxruntime), batch 1
and 32 of real images, rounds interleaved so both see the same machine load; the table in
docs/performance.md ("int8 ONNX") came from it.

    python benchmarks/int8_latency.py RUN/model/export IMAGE_DIR [ROUNDS] [THREADS]

THREADS 0 (default) leaves onnxruntime's default (one per core).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnncli.data.decode import decode_image, resize_from_spec  # noqa: E402

folder, images_dir = Path(sys.argv[1]), Path(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 0  # 0: onnxruntime default (one per core)
pre = json.loads((folder / "preprocess.json").read_text())
resize, channels = resize_from_spec(pre, "p"), pre["channels"]
paths = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[
    :32
]
batch32 = np.stack([decode_image(p, resize, channels) for p in paths])
sessions = {}
for name in ("model.onnx", "model.int8.onnx"):
    o = ort.SessionOptions()
    o.log_severity_level = 3
    o.intra_op_num_threads = threads
    sessions[name] = ort.InferenceSession(str(folder / name), o, providers=["CPUExecutionProvider"])


def per_image_ms(sess, batch, seconds):
    sess.run(None, {"images": batch})  # warm-up
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        sess.run(None, {"images": batch})
        times.append(time.perf_counter() - t)
    return np.median(times) * 1000 / len(batch)


res = {(n, b): [] for n in sessions for b in (1, 32)}
for _ in range(rounds):  # interleaved rounds: both models see the same machine load
    for n, s in sessions.items():
        for b in (1, 32):
            res[(n, b)].append(per_image_ms(s, batch32[:b], 1.0))
print(
    f"onnxruntime {ort.__version__}, intra-op threads {threads or 'default'}, {len(paths)} images from {images_dir}"
)
for (n, b), v in res.items():
    print(
        f"{n:16s} batch {b:2d}: median {np.median(v):7.3f} best {min(v):7.3f} ms/image, rounds {[round(float(x), 3) for x in v]}"
    )
for b in (1, 32):
    ratios = [
        f / q for f, q in zip(res[("model.onnx", b)], res[("model.int8.onnx", b)], strict=True)
    ]
    print(
        f"batch {b:2d}: float/int8 time per round {[round(float(r), 2) for r in ratios]}, median {np.median(ratios):.2f}x"
    )
