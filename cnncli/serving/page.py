"""The page at `/`: drop, paste or choose images, or take a camera snapshot, and see the
top-k bars (and a Grad-CAM overlay on request). Self-contained: no external URL, one inline
style and one inline script allowed by a per-answer CSP nonce; every name the server sends
(class names, file names, messages) enters the page as textContent, never as HTML."""

from __future__ import annotations


def content_security_policy(nonce: str) -> str:
    """Only this page's own inline script and style run; it talks to its own server only."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            f"style-src 'nonce-{nonce}'",
            "img-src 'self' data: blob:",
            "media-src blob: mediastream:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def page_html(nonce: str) -> str:
    """The page with this answer's nonce on its style and script."""
    return (
        _PAGE.replace("__NONCE__", nonce)
        .replace("__STYLE__", _STYLE)
        .replace("__SCRIPT__", _SCRIPT)
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnn serve</title>
<link rel="icon" href="data:,">
<style nonce="__NONCE__">__STYLE__</style>
</head>
<body data-state="loading">
<header>
  <h1>cnn serve <span id="model-name"></span></h1>
  <p id="model-line" class="muted">loading the model&hellip;</p>
</header>
<main>
  <section id="input-panel">
    <label id="drop" class="drop" for="file" tabindex="0">
      <strong>Drop images here</strong>
      <span class="muted">or paste (Ctrl+V), or click to choose files</span>
    </label>
    <input id="file" type="file" accept="image/*" multiple class="offscreen">
    <div class="row">
      <button id="camera-start" type="button">Use the camera</button>
      <label class="check"><input id="gradcam" type="checkbox"> Grad-CAM overlay</label>
    </div>
    <div id="camera" hidden>
      <video id="video" autoplay playsinline muted></video>
      <div class="row">
        <button id="snap" type="button">Snapshot</button>
        <button id="camera-stop" type="button" class="quiet">Stop the camera</button>
      </div>
    </div>
    <p id="notice" class="notice" hidden></p>
    <form id="token-form" hidden>
      <label for="token">This server needs its token:</label>
      <div class="row"><input id="token" type="password" autocomplete="off">
      <button type="submit">Use token</button></div>
    </form>
    <h2>Classes</h2>
    <ul id="classes" class="chips"></ul>
    <dl id="facts"></dl>
  </section>
  <section id="results-panel">
    <h2>Predictions</h2>
    <p id="empty" class="muted">No images yet.</p>
    <div id="results"></div>
  </section>
</main>
<script nonce="__NONCE__">__SCRIPT__</script>
</body>
</html>
"""

_STYLE = """
:root{--fg:#1d2330;--mute:#5b6474;--line:#d9dee7;--bg:#fff;--acc:#2f6fde;--bad:#c8372d;
--soft:#f5f7fa}
*{box-sizing:border-box}[hidden]{display:none!important}
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:1100px;padding:12px}
h1{font-size:1.4em;margin:.3em 0}h2{font-size:1.05em;margin:1em 0 .4em}
#model-name{color:var(--acc)}
.muted{color:var(--mute)}
main{display:grid;grid-template-columns:minmax(0,360px) minmax(0,1fr);gap:24px}
@media (max-width:720px){main{grid-template-columns:minmax(0,1fr)}}
.drop{display:flex;flex-direction:column;align-items:center;justify-content:center;gap:4px;
min-height:150px;border:2px dashed var(--line);border-radius:10px;background:var(--soft);
cursor:pointer;text-align:center;padding:12px}
.drop.over,.drop:focus{border-color:var(--acc);outline:none}
.offscreen{position:absolute;left:-9999px;width:1px;height:1px;opacity:0}
.row{display:flex;flex-wrap:wrap;align-items:center;gap:8px;margin:10px 0}
button{font:inherit;padding:6px 12px;border-radius:6px;border:1px solid var(--acc);
background:var(--acc);color:#fff;cursor:pointer}
button.quiet{background:#fff;color:var(--acc)}
input[type=password]{font:inherit;padding:5px;border:1px solid var(--line);border-radius:6px}
.check{display:flex;align-items:center;gap:4px}
video{width:100%;border-radius:8px;background:#000}
.notice{color:var(--bad)}
.chips{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:6px}
.chips li{border:1px solid var(--line);border-radius:12px;padding:1px 9px;font-size:.9em;
overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;font-size:.9em}
dt{color:var(--mute)}dd{margin:0;overflow-wrap:anywhere}
.result{display:flex;gap:14px;border:1px solid var(--line);border-radius:10px;padding:10px;
margin-bottom:12px}
.pics{display:flex;flex-direction:column;gap:6px;flex:0 0 132px}
.pics img{width:132px;height:132px;object-fit:cover;border-radius:6px;background:var(--soft);
image-rendering:pixelated}
.pics figure{margin:0}
.pics figcaption{font-size:.75em;color:var(--mute);text-align:center}
.info{flex:1;min-width:0}
.name{font-size:.8em;color:var(--mute);overflow-wrap:anywhere}
.top1{font-size:1.3em;font-weight:600;overflow-wrap:anywhere}
.bars{list-style:none;padding:0;margin:6px 0 0}
.bars li{display:grid;grid-template-columns:minmax(0,9em) 1fr 3.6em;gap:8px;align-items:center;
font-size:.9em;margin:3px 0}
.bars .label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar{height:12px;background:var(--soft);border-radius:6px;overflow:hidden}
.fill{display:block;height:100%;background:var(--acc)}
.bars li.chosen .fill{background:#1f9d55}
.pct{text-align:right;font-variant-numeric:tabular-nums}
.error{color:var(--bad);overflow-wrap:anywhere}
@media (max-width:480px){.pics{flex-basis:96px}.pics img{width:96px;height:96px}
.bars li{grid-template-columns:minmax(0,6.5em) 1fr 3.2em;gap:6px}}
"""

_SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("cnn-serve-token") || "", model: null, stream: null };

if (location.hash.startsWith("#token=")) {  // a fragment never reaches the server's logs
  state.token = decodeURIComponent(location.hash.slice(7));
  sessionStorage.setItem("cnn-serve-token", state.token);
  history.replaceState(null, "", location.pathname + location.search);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function notice(message) {
  $("notice").textContent = message;
  $("notice").hidden = !message;
}

async function api(path, options = {}) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const response = await fetch(path, { ...options, headers });
  let data;
  try { data = await response.json(); } catch (e) { data = {}; }
  if (response.status === 401) $("token-form").hidden = false;
  if (!response.ok) throw new Error(data.message || "HTTP " + response.status);
  return data;
}

function percent(p) { return (100 * p).toFixed(1) + "%"; }

function showModel(m) {
  state.model = m;
  $("model-name").textContent = m.name;
  const input = m.input.height + " x " + m.input.width + " x " + m.input.channels;
  $("model-line").textContent = m.classes.length + " classes, input " + input +
    (m.multi_label ? ", multi-label" : "") + " (" + m.format + ")";
  const list = $("classes");
  list.replaceChildren(...m.classes.map((name) => el("li", "", name)));
  const facts = [["resize", m.preprocessing.resize]];
  const acc = m.accuracy || {};
  if (acc.val_acc !== undefined) facts.push(["val accuracy", percent(acc.val_acc)]);
  if (acc.val_map !== undefined) facts.push(["val mAP", percent(acc.val_map)]);
  if (m.licence) facts.push(["weights licence", m.licence]);
  facts.push(["per request", m.server.max_images + " images, " + m.server.max_upload_mb + " MB"]);
  $("facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", "", k), el("dd", "", String(v))]));
  if (!m.explain) {
    $("gradcam").disabled = true;
    $("gradcam").parentElement.title = "Grad-CAM needs a run's model, not an exported file";
  }
  document.body.dataset.state = "ready";
}

async function loadModel() {
  try { showModel(await api("/model")); notice(""); }
  catch (e) { notice("Cannot read the model: " + e.message); }
}

function newCard(file) {
  const card = el("article", "result");
  const pics = el("div", "pics");
  const thumb = el("img");
  thumb.alt = "uploaded image";
  thumb.src = URL.createObjectURL(file);
  pics.append(thumb);
  const info = el("div", "info");
  info.append(el("div", "name", file.name || "image"), el("div", "top1 muted", "classifying\u2026"));
  card.append(pics, info);
  $("results").prepend(card);
  $("empty").hidden = true;
  return card;
}

function showResult(card, r) {
  const info = card.querySelector(".info");
  const top1 = info.querySelector(".top1");
  top1.classList.remove("muted");
  const chosen = new Set(r.labels || [r.label]);
  if (r.labels) top1.textContent = r.labels.length ? r.labels.join(", ") : "(no label)";
  else top1.textContent = r.label + " \u00b7 " + percent(r.confidence);
  const bars = el("ol", "bars");
  for (const { label, p } of r.top_k) {
    const row = el("li", chosen.has(label) ? "chosen" : "");
    const bar = el("span", "bar");
    const fill = el("span", "fill");
    fill.style.width = percent(p);
    bar.append(fill);
    const name = el("span", "label", label);
    name.title = label;
    row.append(name, bar, el("span", "pct", percent(p)));
    bars.append(row);
  }
  info.append(bars);
  if (r.label_set) {
    const set = r.label_set.map((s) => s.label + " " + percent(s.p) + " (threshold " + percent(s.threshold) + ")");
    info.append(el("div", "name", set.join("; ")));
  }
  if (r.gradcam) {
    const figure = el("figure");
    const cam = el("img");
    cam.alt = "Grad-CAM for " + r.gradcam.label;
    cam.src = r.gradcam.png;
    figure.append(cam, el("figcaption", "", "Grad-CAM: " + r.gradcam.label));
    card.querySelector(".pics").append(figure);
  }
}

function showError(card, message) {
  const top1 = card.querySelector(".top1");
  top1.className = "error";
  top1.textContent = message;
}

async function classify(files) {
  files = files.filter(Boolean);
  if (!files.length || !state.model) return;
  const explain = $("gradcam").checked && state.model.explain;
  const per = explain ? 1 : state.model.server.max_images;
  for (let i = 0; i < files.length; i += per) {
    const group = files.slice(i, i + per);
    const cards = group.map(newCard);
    const form = new FormData();
    group.forEach((f) => form.append("image", f, f.name || "image.png"));
    try {
      const data = await api(explain ? "/explain" : "/predict", { method: "POST", body: form });
      data.results.forEach((r, j) => showResult(cards[j], r));
    } catch (e) {
      cards.forEach((card) => showError(card, e.message));
    }
  }
  document.body.dataset.done = String(Number(document.body.dataset.done || 0) + files.length);
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  classify(Array.from(e.dataTransfer.files));
});
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
$("file").addEventListener("change", (e) => { classify(Array.from(e.target.files)); e.target.value = ""; });
document.addEventListener("paste", (e) => {
  const files = Array.from(e.clipboardData.items).filter((i) => i.kind === "file").map((i) => i.getAsFile());
  if (files.length) { e.preventDefault(); classify(files); }
});

$("camera-start").addEventListener("click", async () => {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    notice("The camera needs a secure page: open it as http://localhost:PORT or over https.");
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    $("video").srcObject = state.stream;
    $("camera").hidden = false;
    notice("");
  } catch (e) {
    notice("No camera: " + e.message);
  }
});
$("camera-stop").addEventListener("click", () => {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("camera").hidden = true;
});
$("snap").addEventListener("click", () => {
  const video = $("video");
  if (!video.videoWidth) return;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const stamp = new Date().toTimeString().slice(0, 8);
  canvas.toBlob((blob) => classify([new File([blob], "camera " + stamp + ".jpg", { type: "image/jpeg" })]), "image/jpeg", 0.92);
});

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("cnn-serve-token", state.token);
  $("token-form").hidden = true;
  loadModel();
});

loadModel();
"""
