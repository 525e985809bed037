// vaelab explorer: the VAE's forward passes in plain JavaScript (browser and Node).
// Weights come as base64 little-endian float32; a dense layer is y = x·W + b with W
// stored row-major as (inputs, outputs), the layout Keras uses.
"use strict";

function b64ToFloat32(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Float32Array(bytes.buffer);
}

function dense(x, layer) {
  const [nIn, nOut] = layer.shape;
  const y = Float64Array.from(layer.bias);
  for (let i = 0; i < nIn; i++) {
    const xi = x[i];
    if (xi === 0) continue;
    const row = i * nOut;
    for (let j = 0; j < nOut; j++) y[j] += xi * layer.kernel[row + j];
  }
  if (layer.activation === "relu") for (let j = 0; j < nOut; j++) y[j] = y[j] > 0 ? y[j] : 0;
  return y;
}

function chain(x, layers) {
  return layers.reduce((h, layer) => dense(h, layer), x);
}

// spec: {likelihood, encoder: [trunk layers], mean, log_var, decoder: [layers]}, each layer
// {shape: [inputs, outputs], kernel, bias (base64 float32), activation: "relu" | "linear"}.
function makeModel(spec) {
  const load = (w) => ({ shape: w.shape, kernel: b64ToFloat32(w.kernel), bias: b64ToFloat32(w.bias),
                         activation: w.activation });
  const encoder = spec.encoder.map(load), decoder = spec.decoder.map(load);
  const mean = load(spec.mean), logVar = load(spec.log_var);
  return {
    latentDim: mean.shape[1],
    likelihood: spec.likelihood,
    // x: pixels in [0, 1] -> {mean, logVar}, each latentDim long
    encode(x) {
      const h = chain(x, encoder);
      return { mean: dense(h, mean), logVar: dense(h, logVar) };
    },
    // z -> the decoder's raw output: means (gaussian) or logits (bernoulli)
    decode(z) {
      return chain(z, decoder);
    },
    // raw decoder output -> pixels in [0, 1]
    toPixels(out) {
      if (spec.likelihood === "bernoulli") return out.map((v) => 1 / (1 + Math.exp(-v)));
      return out.map((v) => Math.min(1, Math.max(0, v)));
    },
  };
}

// rgba: a square canvas's RGBA bytes, width W -> side*side pixels in [0, 1] (red channel).
// Each image pixel averages the block of canvas pixels it covers; blocks differ by at most
// one pixel in size when W is not a multiple of side.
function downsample(rgba, W, side) {
  const edge = (k) => Math.round((k * W) / side);
  const x = new Float64Array(side * side);
  for (let r = 0; r < side; r++) for (let c = 0; c < side; c++) {
    let s = 0, n = 0;
    for (let i = edge(r); i < Math.max(edge(r + 1), edge(r) + 1); i++)
      for (let j = edge(c); j < Math.max(edge(c + 1), edge(c) + 1); j++) { s += rgba[4 * (i * W + j)]; n++; }
    x[r * side + c] = s / (255 * n);
  }
  return x;
}

if (typeof module !== "undefined") module.exports = { b64ToFloat32, dense, makeModel, downsample };
