"""`cnn serve` as a user meets it: a real server (a `python -m cnncli serve` subprocess on a
free port of 127.0.0.1) on a tiny model trained once for the module, asked over HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from cnncli.cli import app
from tests.imagefactory import make_class_tree, make_odd_images

pytest.importorskip("starlette", reason="cnn serve needs the serve extra")
pytest.importorskip("uvicorn", reason="cnn serve needs the serve extra")

HOSTILE = "<img src=x onerror=alert(1)>"
TOKEN = "s3cret-token"
MAX_UPLOAD_MB = 1
MAX_IMAGES = 4
START_TIMEOUT = 180


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data root, run folder) for a one-epoch tiny model, one class named like HTML."""
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("serve")
    data = base / "photos"
    make_class_tree(data, {"blue": 8, "green": 8, HOSTILE: 8}, size=16)
    run = base / "run"
    flags = ["--recipe", "fixed", "--model", "tiny", "--image-size", "16", "--epochs", "1"]
    result = CliRunner().invoke(
        app, ["train", str(data), "--out", str(run), *flags, "--batch-size", "8"]
    )
    assert result.exit_code == 0, result.output
    return data, run


@pytest.fixture(scope="module")
def samples(trained):
    """{path: `cnn predict --json --top-k 3` row} for two PNGs and a JPEG of each class."""
    from typer.testing import CliRunner

    data, run = trained
    paths = [str(p) for c in sorted(os.listdir(data)) for p in sorted((data / c).iterdir())[1:4]]
    result = CliRunner().invoke(
        app, ["predict", *paths, "--model", str(run), "--json", "--top-k", "3"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {row["path"]: row for row in rows}


class Server:
    """A `cnn serve` subprocess: its URL, its output so far, and a way to stop it."""

    def __init__(self, args: list[str], env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cnncli", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(s), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not any("serving on" in line for line in self.out):
            assert self.proc.poll() is None, f"serve exited: {''.join(self.out + self.err)}"
            assert time.monotonic() < deadline, "serve did not start in time"
            time.sleep(0.1)
        line = next(line for line in self.out if "serving on" in line)
        self.url = re.search(r"(http://[\d.]+:\d+)/", line).group(1)
        self.port = urlsplit(self.url).port

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(trained):
    """The run served with a token (from CNN_SERVE_TOKEN), 1 MB and 4 images per request."""
    _, run = trained
    limits = ["--max-upload-mb", str(MAX_UPLOAD_MB), "--max-images", str(MAX_IMAGES)]
    served = Server([str(run), *limits, "--max-batch", "16"], {"CNN_SERVE_TOKEN": TOKEN})
    yield served
    served.stop()


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data upload of (filename, bytes) files."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def call(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    token: str | None = TOKEN,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one request."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        assert response.getheader("Content-Type", "").startswith("application/json"), raw[:200]
        return response.status, dict(response.getheaders()), json.loads(raw)
    finally:
        if own:
            conn.close()


def predict_files(server: Server, paths: list[str], **kwargs) -> tuple[int, dict]:
    body, kind = multipart([(Path(p).name, Path(p).read_bytes()) for p in paths])
    status, _, data = call(server, "POST", "/predict", body, {"Content-Type": kind}, **kwargs)
    return status, data


def assert_same(result: dict, row: dict) -> None:
    """A server result agrees with `cnn predict --json`: label and probabilities to 1e-5."""
    assert result["label"] == row["label"]
    assert abs(result["confidence"] - row["confidence"]) < 1e-5
    served = [(t["label"], t["p"]) for t in result["top_k"]]
    cli = [(t["label"], t["p"]) for t in row["top_k"]]
    assert [name for name, _ in served] == [name for name, _ in cli]
    assert np.allclose([p for _, p in served], [p for _, p in cli], atol=1e-5, rtol=0)


def test_predict_equals_cnn_predict(server, samples):
    paths = list(samples)
    for start in range(0, len(paths), MAX_IMAGES):  # several images per request
        group = paths[start : start + MAX_IMAGES]
        status, data = predict_files(server, group)
        assert status == 200, data
        assert [r["name"] for r in data["results"]] == [Path(p).name for p in group]
        for path, result in zip(group, data["results"], strict=True):
            assert_same(result, samples[path])
            assert set(result["probs"]) == {"blue", "green", HOSTILE}
    raw = Path(paths[0]).read_bytes()  # the image as the whole body, no content type
    status, _, data = call(server, "POST", "/predict", raw)
    assert status == 200, data
    assert_same(data["results"][0], samples[paths[0]])


def test_model_and_health(server, trained):
    status, headers, card = call(server, "GET", "/model")
    assert status == 200
    assert card["classes"] == sorted(["blue", "green", HOSTILE])
    assert card["input"] == {"height": 16, "width": 16, "channels": 3}
    assert card["preprocessing"]["resize"] == "crop" and card["format"] == "bundle"
    summary = json.loads((trained[1] / "summary.json").read_text())
    assert card["accuracy"]["best_val_acc"] == summary["best_val_acc"]
    assert card["licence"] is None  # trained from scratch: no --init weights
    assert card["server"] == {
        "max_upload_mb": 1.0,
        "max_images": 4,
        "batch_sizes": [1, 2, 4, 8, 16],
    }
    assert headers["x-content-type-options"] == "nosniff"
    status, _, health = call(server, "GET", "/health", token=None)  # open to probes
    assert status == 200 and health["status"] == "ok"


def test_explain_returns_a_gradcam_png(server, samples):
    path = next(iter(samples))
    body, kind = multipart([(Path(path).name, Path(path).read_bytes())])
    status, _, data = call(server, "POST", "/explain", body, {"Content-Type": kind})
    assert status == 200, data
    result = data["results"][0]
    assert_same(result, samples[path])
    assert result["gradcam"]["label"] == samples[path]["label"]
    png = base64.b64decode(result["gradcam"]["png"].split(",", 1)[1])
    assert png.startswith(b"\x89PNG") and len(png) > 100


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """{name: bytes} of make_odd_images' broken files and bombs."""
    folder = tmp_path_factory.mktemp("odd")
    cases = make_odd_images(folder)
    return {name: (folder / name).read_bytes() for name, want in cases.items() if want == "skip"}


def test_bad_input_gets_json_errors_and_the_server_keeps_serving(server, samples, odd):
    expect = {
        "text.jpg": "not_an_image",
        "page.png": "not_an_image",
        "garbage.png": "not_an_image",
        "truncated.png": "corrupt_image",
        "truncated.jpg": "corrupt_image",
        "bomb.png": "image_too_large",
        "bomb_just_over.png": "image_too_large",
    }
    for name, code in expect.items():
        body, kind = multipart([(name, odd[name])])
        status, _, data = call(server, "POST", "/predict", body, {"Content-Type": kind})
        assert (status, data["error"]) == (400, code), (name, data)
        assert name in data["message"]
    good = next(iter(samples))
    status, data = predict_files(server, [good] * (MAX_IMAGES + 1))
    assert (status, data["error"]) == (413, "too_many_images")
    assert call(server, "POST", "/predict", b"")[0] == 400  # no image at all
    status, _, data = call(server, "GET", "/nope")
    assert (status, data["error"]) == (404, "not_found")
    assert call(server, "GET", "/predict")[2]["error"] == "method_not_allowed"
    status, headers, data = call(server, "GET", "/model", token=None)
    assert (status, data["error"], headers["www-authenticate"]) == (401, "unauthorized", "Bearer")
    assert call(server, "POST", "/predict", b"x", token="wrong")[0] == 401
    status, _, data = call(server, "GET", "/health", headers={"Host": "evil.example"}, token=None)
    assert (status, data["error"]) == (400, "bad_host")  # DNS rebinding guard
    assert oversize_declared(server) == 413
    assert oversize_streamed(server) == 413
    status, data = predict_files(server, [good])
    assert status == 200 and data["results"][0]["label"] == samples[good]["label"]


def oversize_declared(server: Server) -> int:
    """A Content-Length over the cap is refused before the body is sent."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.putrequest("POST", "/predict")
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Content-Length", str(MAX_UPLOAD_MB * 2**20 + 1))
        conn.endheaders()
        response = conn.getresponse()
        assert json.loads(response.read())["error"] == "upload_too_large"
        return response.status
    finally:
        conn.close()


def oversize_streamed(server: Server, conn: http.client.HTTPConnection | None = None) -> int:
    """A chunked body (no length) is counted while it arrives and refused past the cap."""
    chunks = [b"\0" * 65536] * (MAX_UPLOAD_MB * 16 + 2)
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request(
            "POST",
            "/predict",
            body=iter(chunks),
            headers={"Authorization": f"Bearer {TOKEN}", "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        assert json.loads(response.read())["error"] == "upload_too_large"
        return response.status
    finally:
        if own:
            conn.close()


def test_load_2000_mixed_requests_from_16_clients(server, samples, odd):
    """Valid images (single and several per request, multipart and raw), corrupt files,
    bombs, oversize and too-many uploads from 16 threads: every valid answer right, every
    bad one a 4xx JSON error, no 5xx, no dropped connection, and the server's memory flat."""
    valid = list(samples)
    corrupt = [n for n in ("text.jpg", "page.png", "garbage.png", "truncated.png", "truncated.jpg")]
    bombs = ["bomb.png", "bomb_just_over.png"]
    files = {p: Path(p).read_bytes() for p in valid}
    problems: list[str] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def one(i: int, conn: http.client.HTTPConnection) -> None:
        kind = i % 20
        if kind == 18:  # oversize: refused from its Content-Length, or counted while read
            status = oversize_declared(server) if i % 40 == 18 else oversize_streamed(server)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
            return
        if kind < 14:  # valid: one image (raw or multipart) or up to MAX_IMAGES
            count = 1 if kind < 10 else 2 + i % (MAX_IMAGES - 1)
            paths = [valid[(i + j) % len(valid)] for j in range(count)]
            if kind < 5:
                status, _, data = call(server, "POST", "/predict", files[paths[0]], conn=conn)
            else:
                body, ctype = multipart([(Path(p).name, files[p]) for p in paths])
                headers = {"Content-Type": ctype}
                status, _, data = call(server, "POST", "/predict", body, headers, conn=conn)
            if status == 200:
                for path, result in zip(paths, data["results"], strict=True):
                    assert_same(result, samples[path])
        else:
            if kind < 16:
                uploads = [(n, odd[n]) for n in corrupt[i % len(corrupt) :][:1]]
            elif kind < 18:
                uploads = [(n, odd[n]) for n in bombs[i % 2 :][:1]]
            else:  # too many images
                uploads = [(Path(valid[0]).name, files[valid[0]])] * (MAX_IMAGES + 1)
            body, ctype = multipart(uploads)
            status, _, data = call(
                server, "POST", "/predict", body, {"Content-Type": ctype}, conn=conn
            )
            assert 400 <= status < 500 and data["error"] and data["message"], data
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    def client(indices: range) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for i in indices:
            try:
                one(i, conn)
            except Exception as exc:  # noqa: BLE001 - every failure is collected and shown
                with lock:
                    problems.append(f"request {i}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.close()

    def burst(total: int, clients: int = 16) -> float:
        start = time.perf_counter()
        threads = [
            threading.Thread(target=client, args=(range(k, total, clients),))
            for k in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - start

    burst(160)  # warm-up: every kind of request once, pools and caches filled
    before = server.rss_mb()
    statuses.clear()
    seconds = burst(2000)
    growth = server.rss_mb() - before
    assert not problems, problems[:10]
    assert sum(statuses.values()) == 2000
    assert all(s == 200 or 400 <= s < 500 for s in statuses), statuses
    assert statuses[200] == 1400 and statuses[413] == 200 and statuses[400] == 400, statuses
    assert growth < 50, f"RSS grew {growth:.1f} MB over 2,000 requests"
    health = call(server, "GET", "/health")[2]
    assert health["largest_batch"] > 1, health  # concurrent requests shared batches
    print(f"2,000 requests in {seconds:.1f} s, RSS {before:.0f} MB -> +{growth:.1f} MB, {health}")


def test_exported_onnx_model_serves_without_jax_and_ctrl_c_stops(trained, samples):
    """--model model.onnx: the same answers as the run (to 1e-5) from a process that never
    loads jax; SIGINT (Ctrl-C) ends it cleanly, exit code 0, no traceback."""
    pytest.importorskip("onnxruntime")
    from typer.testing import CliRunner

    _, run = trained
    result = CliRunner().invoke(app, ["export", str(run), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    onnx = Server(["--model", str(run / "export" / "model.onnx"), "--max-batch", "4"])
    try:
        paths = list(samples)[:MAX_IMAGES]
        status, data = predict_files(onnx, paths, token=None)
        assert status == 200, data
        for path, got in zip(paths, data["results"], strict=True):
            assert_same(got, samples[path])
        assert call(onnx, "GET", "/model", token=None)[2]["format"] == "onnx"
        status, _, data = call(onnx, "POST", "/explain", b"x", token=None)
        assert (status, data["error"]) == (400, "explain_unavailable")
        maps = Path(f"/proc/{onnx.proc.pid}/maps").read_text()
        assert "jaxlib" not in maps and "onnxruntime" in maps
    finally:
        code = onnx.stop()
    assert code == 0, "".join(onnx.err)
    assert "server stopped" in "".join(onnx.out)
    assert "Traceback" not in "".join(onnx.err)


def test_serve_imports_nothing_heavy_until_it_runs():
    """`cnn --help` stays free of jax, flax, optax and starlette; the serving modules that
    an ONNX server runs import no jax."""
    code = (
        "import sys, cnncli.cli; heavy = ('jax', 'flax', 'optax', 'starlette', 'uvicorn');"
        "print(sorted(m for m in heavy if m in sys.modules));"
        "import cnncli.serving.server, cnncli.serving.app, cnncli.serving.engine;"
        "print(sorted(m for m in ('jax', 'flax') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "[]"], done.stdout


def test_missing_extra_is_one_line(monkeypatch, runner):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    result = runner.invoke(app, ["serve", "runs/none"])
    assert result.exit_code == 2
    assert "pip install 'cnn[serve]'" in result.output and "Traceback" not in result.output


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    JSON messages ending in a NUL byte, commands in on fd 3, answers and events out on fd 4)."""

    def __init__(self, profile: Path) -> None:
        from tests.browser import chromium

        to_chrome, self._commands = os.pipe()
        self._answers, from_chrome = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        flags += ["--mute-audio", "--no-first-run", f"--user-data-dir={profile}"]
        # bash (dash takes fds 0-9 only) puts the pipe ends on fds 3 and 4, where Chromium looks for them.
        script = f'exec "$0" "$@" 3<&{to_chrome} 4>&{from_chrome}'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, chromium(), *flags, "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_chrome, from_chrome),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._ready = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attach = {"targetId": target, "flatten": True}
        self.session = self.send("Target.attachToTarget", attach)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", page=True)

    def _read(self) -> None:
        pending = b""
        while chunk := os.read(self._answers, 1 << 16):
            *messages, pending = (pending + chunk).split(b"\0")
            with self._ready:
                for message in map(json.loads, messages):
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._ready.notify_all()

    def send(self, method: str, params: dict | None = None, page: bool = False) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._commands, data) :]
        with self._ready:
            assert self._ready.wait_for(lambda: self._id in self._replies, 60), method
            reply = self._replies.pop(self._id)
        assert "error" not in reply, (method, reply["error"])
        return reply["result"]

    def js(self, expression: str):
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        return self.send("Runtime.evaluate", params, page=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while not (value := self.js(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.1)
        return value

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        self.send("Emulation.setDeviceMetricsOverride", metrics, page=True)

    def choose_files(self, selector: str, paths: list[Path]) -> None:
        """What picking files in the page's file chooser does (fires its change event)."""
        root = self.send("DOM.getDocument", page=True)["root"]["nodeId"]
        found = {"nodeId": root, "selector": selector}
        node = self.send("DOM.querySelector", found, page=True)["nodeId"]
        files = {"nodeId": node, "files": [str(p.resolve()) for p in paths]}
        self.send("DOM.setFileInputFiles", files, page=True)

    def screenshot(self, png: Path, width: int, max_height: int, mobile: bool) -> None:
        """The whole page (up to max_height pixels tall) at this width."""
        self.viewport(width, 800, mobile)
        height = min(max_height, int(self.js("document.documentElement.scrollHeight")))
        self.viewport(width, height, mobile)
        shot = self.send("Page.captureScreenshot", {"format": "png"}, page=True)
        png.write_bytes(base64.b64decode(shot["data"]))

    def problems(self) -> list[str]:
        """Script errors, CSP refusals, console errors and dialogs (an alert() that ran)."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                found.append(str(params["args"]))
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params.get('message')}")
        return found

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._commands)


def test_page_in_headless_chromium(server, samples, tmp_path):
    """The page loads its classes from /model (the hostile name shown as text), classifies an
    image chosen in its file input with the top-1 label of `cnn predict`, draws a Grad-CAM
    on request, and raises no script error or CSP refusal; screenshots at 1280 and 390 px
    (into $CNN_SERVE_SCREENSHOTS when set, e.g. docs/)."""
    browser = DevTools(tmp_path / "profile")
    try:
        browser.viewport(1280, 800)
        browser.send("Page.navigate", {"url": f"{server.url}/#token={TOKEN}"}, page=True)
        browser.wait_for("document.body && document.body.dataset.state === 'ready'")
        classes = browser.js(
            "[...document.querySelectorAll('#classes li')].map(li => li.textContent)"
        )
        assert classes == sorted(["blue", "green", HOSTILE])
        assert browser.js("document.querySelectorAll('#classes img, img[src=\"x\"]').length") == 0
        assert browser.js("location.hash") == ""  # the token leaves the address bar
        path = next(p for p in samples if "blue" in p)
        browser.choose_files("#file", [Path(path)])
        browser.wait_for("document.body.dataset.done === '1'")
        top1 = browser.js("document.querySelector('#results .result .top1').textContent")
        assert top1.split(" \u00b7 ")[0] == samples[path]["label"]
        browser.js("document.getElementById('gradcam').click()")
        hostile = next(p for p in samples if HOSTILE in p)
        browser.choose_files("#file", [Path(hostile)])
        browser.wait_for("document.body.dataset.done === '2'")
        cam = "document.querySelector('#results .result figure img')"
        assert browser.wait_for(f"{cam} && {cam}.complete && {cam}.naturalWidth") == 16
        assert browser.js("document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert browser.problems() == []
        out = Path(os.environ.get("CNN_SERVE_SCREENSHOTS", tmp_path))
        browser.screenshot(out / "serve.png", 1280, 1000, mobile=False)
        browser.screenshot(out / "serve_phone.png", 390, 1600, mobile=True)
        assert browser.js("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    finally:
        browser.close()


def test_batcher_runs_what_waits_together_in_compiled_sizes_without_padding():
    """Images queued while a batch runs form the next one, cut into compiled sizes
    (10 waiting -> 8 then 2), each image's own row coming back to its future."""
    from cnncli.serving.batcher import Batcher

    release, sizes = threading.Event(), []

    def run(batch: np.ndarray) -> np.ndarray:
        release.wait(10)  # the first batch blocks until the rest are queued
        sizes.append(len(batch))
        return batch[:, :1] * 2.0

    batcher = Batcher(run, (1, 2, 4, 8))
    batcher.start()
    futures = batcher.submit([np.full((1,), 0.0)])
    time.sleep(0.2)  # the worker is inside the first batch now
    futures += batcher.submit([np.full((1,), float(i)) for i in range(1, 11)])
    release.set()
    assert [f.result(10)[0] for f in futures] == [2.0 * i for i in range(11)]
    batcher.stop()
    assert sizes == [1, 8, 2]
    assert (batcher.stats.batches, batcher.stats.images, batcher.stats.largest) == (3, 11, 8)


def test_multi_label_answer_has_the_label_set_with_stored_thresholds():
    """A multi-label model answers its label set (each label at or above its own stored
    threshold, most probable first) with the thresholds, not one label."""
    from types import SimpleNamespace

    from cnncli.serving.engine import ServedModel

    model = SimpleNamespace(
        classes=["red", "green", "blue"], multi_label=True, thresholds=[0.5, 0.5, 0.7]
    )
    served = ServedModel(model, (1,), {})
    answer = served.result(np.array([0.6, 0.2, 0.65], np.float32), k=2)
    assert answer["labels"] == ["red"]  # blue's 0.65 is under its 0.7
    assert answer["label_set"] == [{"label": "red", "p": pytest.approx(0.6), "threshold": 0.5}]
    assert [t["label"] for t in answer["top_k"]] == ["blue", "red"]
    assert "label" not in answer and set(answer["probs"]) == {"red", "green", "blue"}


def test_uploads_decode_exactly_like_files(tmp_path):
    """decode_upload (bytes in memory) gives decode_image's pixels for every odd image, and
    refuses what it refuses (truncated, not an image, bombs), for each resize policy."""
    from cnncli.data.decode import DecodeError, Resize, decode_image
    from cnncli.serving.upload import decode_upload

    cases = make_odd_images(tmp_path)
    for resize in (Resize(16, 16), Resize(20, 12, "pad"), Resize(9, 9, "squish")):
        for channels in (1, 3):
            for name, want in cases.items():
                path = tmp_path / name
                if want == "skip":
                    with pytest.raises(DecodeError):
                        decode_image(path, resize, channels)
                    with pytest.raises(DecodeError) as refused:
                        decode_upload(path.read_bytes(), name, resize, channels)
                    assert str(refused.value).startswith(f"{name}: ")
                    continue
                expected = decode_image(path, resize, channels)
                got = decode_upload(path.read_bytes(), name, resize, channels)
                assert np.array_equal(got, expected), (name, resize, channels)
