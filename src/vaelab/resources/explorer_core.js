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

// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), for the exact GELU.
function erf(x) {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
                 + 0.254829592) * t * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}
const softplus = (v) => (v > 0 ? v + Math.log1p(Math.exp(-v)) : Math.log1p(Math.exp(v)));
const sigmoid = (v) => 1 / (1 + Math.exp(-v));
const hardSigmoid = (v) => Math.min(6, Math.max(0, v + 3)) / 6;
const SELU_SCALE = 1.0507009873554805, SELU_ALPHA = 1.6732632423543772;

// Keras 3's activations with their default arguments, element by element.
const ACTIVATIONS = {
  linear: (v) => v,
  relu: (v) => (v > 0 ? v : 0),
  relu6: (v) => Math.min(6, Math.max(0, v)),
  leaky_relu: (v) => (v > 0 ? v : 0.2 * v),
  elu: (v) => (v > 0 ? v : Math.expm1(v)),
  celu: (v) => (v > 0 ? v : Math.expm1(v)),
  selu: (v) => SELU_SCALE * (v > 0 ? v : SELU_ALPHA * Math.expm1(v)),
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  silu: (v) => v * sigmoid(v),
  hard_silu: (v) => v * hardSigmoid(v),
  mish: (v) => v * Math.tanh(softplus(v)),
  softplus,
  softsign: (v) => v / (1 + Math.abs(v)),
  sparse_plus: (v) => (v <= -1 ? 0 : v >= 1 ? v : (v + 1) * (v + 1) / 4),
  squareplus: (v) => (v + Math.sqrt(v * v + 4)) / 2,
  tanh: Math.tanh,
  tanh_shrink: (v) => v - Math.tanh(v),
  hard_tanh: (v) => Math.min(1, Math.max(-1, v)),
  soft_shrink: (v) => (v > 0.5 ? v - 0.5 : v < -0.5 ? v + 0.5 : 0),
  hard_shrink: (v) => (Math.abs(v) > 0.5 ? v : 0),
  sigmoid,
  hard_sigmoid: hardSigmoid,
  sparse_sigmoid: (v) => (v <= -1 ? 0 : v >= 1 ? 1 : 0.5 * (v + 1)),
  log_sigmoid: (v) => -softplus(-v),
  exponential: Math.exp,
};
ACTIVATIONS.swish = ACTIVATIONS.silu;
ACTIVATIONS.hard_swish = ACTIVATIONS.hard_silu;

function activate(y, name) {
  if (name === "softmax" || name === "log_softmax") {
    let top = -Infinity, total = 0;
    for (const v of y) top = Math.max(top, v);
    for (const v of y) total += Math.exp(v - top);
    for (let j = 0; j < y.length; j++) {
      y[j] = name === "softmax" ? Math.exp(y[j] - top) / total : y[j] - top - Math.log(total);
    }
    return y;
  }
  const f = ACTIVATIONS[name];
  if (f === undefined) throw new Error(`unknown activation ${name}`);
  for (let j = 0; j < y.length; j++) y[j] = f(y[j]);
  return y;
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
  return activate(y, layer.activation || "linear");
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

if (typeof module !== "undefined") module.exports = { b64ToFloat32, dense, makeModel, downsample, activate };
