"""``explorer.html``: a self-contained page to move through a trained VAE's latent space.

The page embeds the encoder's and decoder's weights (base64 float32) and runs them in
plain JavaScript (``explorer_core.js``; a dense layer is a few lines, so no library is
needed and the page works offline). It shows: one slider per latent dimension, ordered
by KL (most informative first, with its KL and whether it is active) and a "sample
from the prior" button, with the decoded image; a canvas to draw a digit, which is
encoded, reconstructed and placed on the 2-D PCA map of the test set's encoder means
(the same projection as ``latent.png``); and interpolation between two test images.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from vaelab import metrics, runs

CORE_JS = Path(__file__).with_name("explorer_core.js")
LAYERS = ("encoder_hidden", "z_mean", "z_log_var", "decoder_hidden", "decoder_output")
MAP_POINTS = 2000      # test points drawn on the map
INTERPOLATION = 12     # test images offered for interpolation


def _b64(array) -> str:
    return base64.b64encode(np.asarray(array, dtype="<f4").tobytes()).decode("ascii")


def model_spec(vae, likelihood: str) -> dict:
    """The weights the page needs, as ``{"likelihood", "layers": {name: {shape, kernel, bias}}}``."""
    layers = {}
    for name in LAYERS:
        layer = vae.model.get_layer(name)
        kernel, bias = (np.asarray(w) for w in layer.get_weights())
        layers[name] = {"shape": list(kernel.shape), "kernel": _b64(kernel), "bias": _b64(bias)}
    return {"likelihood": likelihood, "layers": layers}


def explorer_data(vae, x_test, y_test, likelihood: str, encoded=None) -> dict:
    """Everything the page embeds: weights, per-dimension KL, the PCA map, test images.

    ``encoded``: the test set's ``(means, log_vars)`` when the caller has them already.
    """
    from vaelab.devices import predict

    means, log_vars = encoded if encoded is not None else predict(vae.encoder, x_test)[:2]
    means, log_vars = np.asarray(means, np.float64), np.asarray(log_vars, np.float64)
    kl = metrics.kl_per_dimension(means, log_vars)
    variances = means.var(axis=0)
    center = means.mean(axis=0)
    _, _, vt = np.linalg.svd(means - center, full_matrices=False)
    components = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])
    projected = (means[:MAP_POINTS] - center) @ components.T
    images = np.round(np.asarray(x_test[:INTERPOLATION]) * 255).astype(np.uint8)
    return {
        "model": model_spec(vae, likelihood),
        "kl": [float(v) for v in kl],
        "active": [bool(v > 0.01) for v in variances],
        "order": [int(i) for i in np.argsort(-kl, kind="stable")],
        "pca": {"center": center.tolist(), "components": components.tolist(),
                "points": np.round(projected, 4).tolist(),
                "labels": [int(v) for v in np.asarray(y_test)[:MAP_POINTS]]},
        "images": [base64.b64encode(image.tobytes()).decode("ascii") for image in images],
        "image_labels": [int(v) for v in np.asarray(y_test)[:INTERPOLATION]],
        "side": int(round(np.sqrt(x_test.shape[1]))),
    }


def render_html(data: dict, title: str) -> str:
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (PAGE.replace("__TITLE__", title)
                .replace("__CORE__", CORE_JS.read_text(encoding="utf-8"))
                .replace("__DATA__", payload))


def write_explorer(run_dir, vae=None, dataset=None, out=None, encoded=None) -> Path:
    """Write the explorer of a run (``out`` defaults to ``RUN_DIR/explorer.html``)."""
    from vaelab.training import load_dataset, read_run_config

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if dataset is None:
        import dataclasses

        dataset = load_dataset(dataclasses.replace(config, train_size=2, batch_size=1))
    if vae is None:
        from vaelab.evaluation import load_run_model

        if not runs.is_complete(run_dir):
            from vaelab.config import UsageError

            raise UsageError(f"{run_dir} is an incomplete run (no finished metrics.json)")
        vae = load_run_model(run_dir, dataset.input_dim)
    data = explorer_data(vae, dataset.x_test, dataset.y_test, config.likelihood, encoded)
    out = Path(out) if out is not None else run_dir / "explorer.html"
    runs.write_text(out, render_html(data, f"vaelab explorer: {run_dir.name}"))
    return out


PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:sans-serif;margin:1em;color:#222}
h1{font-size:1.2em} h2{font-size:1em;margin:.3em 0}
.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.panel{border:1px solid #ccc;border-radius:6px;padding:.7em}
canvas{image-rendering:pixelated;border:1px solid #999;background:#000}
#map{background:#fff}
#sliders{max-height:420px;overflow-y:auto;width:330px}
.slider{display:flex;align-items:center;gap:.4em;font-size:.8em}
.slider input{flex:1}
.inactive{color:#999}
button{margin:.3em .3em .3em 0}
</style></head><body>
<h1>__TITLE__</h1>
<p>Move the sliders to decode a point of the latent space; draw a digit to encode it; pick two
test images to walk between them. Dimensions are ordered by their KL (nats): an inactive one
(encoder-mean variance ≤ 0.01) carries no information, and moving it barely changes the image.</p>
<div class="row">
 <div class="panel"><h2>Decoded z</h2><canvas id="decoded" width="224" height="224"></canvas><br>
  <button id="prior">Sample from the prior</button><button id="zero">All zero</button></div>
 <div class="panel"><h2>Latent dimensions</h2><div id="sliders"></div></div>
 <div class="panel"><h2>Draw a digit</h2><canvas id="draw" width="224" height="224"></canvas><br>
  <button id="clear">Clear</button>
  <h2>Its reconstruction</h2><canvas id="recon" width="112" height="112"></canvas></div>
 <div class="panel"><h2>Test set, encoder means (PCA)</h2>
  <canvas id="map" width="340" height="340"></canvas></div>
 <div class="panel"><h2>Interpolate</h2>
  from <select id="from"></select> to <select id="to"></select><br>
  <input id="t" type="range" min="0" max="1" step="0.01" value="0.5" style="width:220px"><br>
  <canvas id="a" width="84" height="84"></canvas>
  <canvas id="between" width="84" height="84"></canvas>
  <canvas id="b" width="84" height="84"></canvas></div>
</div>
<script>
__CORE__
</script>
<script>
"use strict";
const DATA = __DATA__;
const model = makeModel(DATA.model);
const SIDE = DATA.side, D = SIDE * SIDE, L = model.latentDim;
const COLORS = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
const z = new Float64Array(L);
const $ = (id) => document.getElementById(id);

function show(canvas, pixels) {
  const small = document.createElement("canvas");
  small.width = SIDE; small.height = SIDE;
  const ctx = small.getContext("2d"), img = ctx.createImageData(SIDE, SIDE);
  for (let i = 0; i < D; i++) {
    const v = Math.round(255 * pixels[i]);
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  const big = canvas.getContext("2d");
  big.imageSmoothingEnabled = false;
  big.drawImage(small, 0, 0, canvas.width, canvas.height);
}
function decodeToPixels(latent) { return model.toPixels(model.decode(latent)); }
function renderDecoded() { window.decodedPixels = decodeToPixels(z); show($("decoded"), window.decodedPixels); }

// Sliders, most informative dimension first.
DATA.order.forEach((dim, rank) => {
  const row = document.createElement("div");
  row.className = "slider" + (DATA.active[dim] ? "" : " inactive");
  row.innerHTML = `<span>z${dim}</span><input type="range" id="slider-${rank}" data-dim="${dim}"
    min="-3" max="3" step="0.01" value="0"><span>KL ${DATA.kl[dim].toFixed(2)}
    ${DATA.active[dim] ? "active" : "inactive"}</span>`;
  $("sliders").appendChild(row);
  row.querySelector("input").addEventListener("input", (e) => { z[dim] = +e.target.value; renderDecoded(); });
});
function setSliders() {
  document.querySelectorAll("#sliders input").forEach((s) => { s.value = z[+s.dataset.dim]; });
  renderDecoded();
}
function gaussian() { return Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random()); }
$("prior").onclick = () => { for (let i = 0; i < L; i++) z[i] = gaussian(); setSliders(); };
$("zero").onclick = () => { z.fill(0); setSliders(); };

// The PCA map of the test set.
const P = DATA.pca, xs = P.points.map((p) => p[0]), ys = P.points.map((p) => p[1]);
const lo = [Math.min(...xs), Math.min(...ys)], hi = [Math.max(...xs), Math.max(...ys)];
function project(mean) {
  return P.components.map((c) => c.reduce((s, w, i) => s + w * (mean[i] - P.center[i]), 0));
}
function toMap(p) {
  const m = $("map"), pad = 10;
  return [pad + (p[0] - lo[0]) / (hi[0] - lo[0] || 1) * (m.width - 2 * pad),
          m.height - pad - (p[1] - lo[1]) / (hi[1] - lo[1] || 1) * (m.height - 2 * pad)];
}
function drawMap(marker) {
  const ctx = $("map").getContext("2d");
  ctx.clearRect(0, 0, 340, 340);
  P.points.forEach((p, i) => { const [x, y] = toMap(p); ctx.fillStyle = COLORS[P.labels[i]]; ctx.fillRect(x, y, 2, 2); });
  for (let d = 0; d < 10; d++) { ctx.fillStyle = COLORS[d]; ctx.fillText(String(d), 8 + 12 * d, 12); }
  if (marker) {
    const [x, y] = toMap(marker);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 3; ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
  }
}

// Drawing: a 224-pixel canvas, averaged down to SIDE x SIDE.
const draw = $("draw"), dctx = draw.getContext("2d");
function clearDrawing() { dctx.fillStyle = "#000"; dctx.fillRect(0, 0, draw.width, draw.height); }
let drawing = false;
function point(e) { const r = draw.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
draw.addEventListener("mousedown", (e) => { drawing = true; dctx.beginPath(); dctx.moveTo(...point(e)); });
draw.addEventListener("mousemove", (e) => {
  if (!drawing) return;
  dctx.strokeStyle = "#fff"; dctx.lineWidth = 16; dctx.lineCap = "round"; dctx.lineTo(...point(e)); dctx.stroke();
});
window.addEventListener("mouseup", () => { if (drawing) { drawing = false; encodeDrawing(); } });
function drawingPixels() {
  const data = dctx.getImageData(0, 0, draw.width, draw.height).data, scale = draw.width / SIDE;
  const x = new Float64Array(D);
  for (let r = 0; r < SIDE; r++) for (let c = 0; c < SIDE; c++) {
    let s = 0;
    for (let i = 0; i < scale; i++) for (let j = 0; j < scale; j++) s += data[4 * ((r * scale + i) * draw.width + c * scale + j)];
    x[r * SIDE + c] = s / (255 * scale * scale);
  }
  return x;
}
function encodeDrawing() {
  const { mean } = model.encode(drawingPixels());
  window.lastEncoding = Array.from(mean);
  window.reconPixels = decodeToPixels(mean);
  show($("recon"), window.reconPixels);
  drawMap(project(mean));
  for (let i = 0; i < L; i++) z[i] = mean[i];
  setSliders();
}
$("clear").onclick = () => { clearDrawing(); show($("recon"), new Float64Array(D)); drawMap(); };

// Interpolation between two test images, through their encoder means.
const images = DATA.images.map((b) => Float64Array.from(atob(b), (ch) => ch.charCodeAt(0) / 255));
images.forEach((_, i) => {
  for (const id of ["from", "to"]) {
    const o = document.createElement("option"); o.value = i; o.textContent = `test ${i} (digit ${DATA.image_labels[i]})`;
    $(id).appendChild(o);
  }
});
$("to").value = Math.min(1, images.length - 1);
function interpolate() {
  const a = images[+$("from").value], b = images[+$("to").value], t = +$("t").value;
  const ma = model.encode(a).mean, mb = model.encode(b).mean;
  show($("a"), a); show($("b"), b);
  show($("between"), decodeToPixels(ma.map((v, i) => (1 - t) * v + t * mb[i])));
}
["from", "to", "t"].forEach((id) => $(id).addEventListener("input", interpolate));

clearDrawing(); renderDecoded(); drawMap(); interpolate();
show($("recon"), new Float64Array(D));
window.explorerReady = true;
</script></body></html>
"""
