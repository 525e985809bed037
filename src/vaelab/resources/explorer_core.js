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

// "same" padding as Keras computes it: the padding before is half the total, rounded down.
function padBefore(inSize, outSize, k, s) {
  return Math.floor(Math.max((outSize - 1) * s + k - inSize, 0) / 2);
}

// x: (H, W, C) row-major; kernel (kh, kw, C, F); output (ceil(H/s), ceil(W/s), F).
function conv2d(x, layer) {
  const [H, W, C] = layer.in_shape, [kh, kw, , F] = layer.shape, [sh, sw] = layer.strides;
  const Ho = Math.ceil(H / sh), Wo = Math.ceil(W / sw);
  const pt = padBefore(H, Ho, kh, sh), pl = padBefore(W, Wo, kw, sw);
  const y = new Float64Array(Ho * Wo * F);
  for (let i = 0; i < Ho; i++) for (let j = 0; j < Wo; j++) {
    const out = (i * Wo + j) * F;
    for (let f = 0; f < F; f++) y[out + f] = layer.bias[f];
    for (let a = 0; a < kh; a++) {
      const r = i * sh + a - pt;
      if (r < 0 || r >= H) continue;
      for (let b = 0; b < kw; b++) {
        const c0 = j * sw + b - pl;
        if (c0 < 0 || c0 >= W) continue;
        for (let c = 0; c < C; c++) {
          const v = x[(r * W + c0) * C + c];
          if (v === 0) continue;
          const k = ((a * kw + b) * C + c) * F;
          for (let f = 0; f < F; f++) y[out + f] += v * layer.kernel[k + f];
        }
      }
    }
  }
  return activate(y, layer.activation || "linear");
}

// The transpose of a "same" conv2d: x (H, W, C), kernel (kh, kw, F, C), output (H·s, W·s, F).
function conv2dTranspose(x, layer) {
  const [H, W, C] = layer.in_shape, [kh, kw, F] = layer.shape, [sh, sw] = layer.strides;
  const Ho = H * sh, Wo = W * sw;
  const pt = padBefore(Ho, H, kh, sh), pl = padBefore(Wo, W, kw, sw);
  const y = new Float64Array(Ho * Wo * F);
  for (let p = 0; p < Ho * Wo; p++) for (let f = 0; f < F; f++) y[p * F + f] = layer.bias[f];
  for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) {
    for (let a = 0; a < kh; a++) {
      const r = i * sh + a - pt;
      if (r < 0 || r >= Ho) continue;
      for (let b = 0; b < kw; b++) {
        const c0 = j * sw + b - pl;
        if (c0 < 0 || c0 >= Wo) continue;
        const out = (r * Wo + c0) * F;
        for (let c = 0; c < C; c++) {
          const v = x[(i * W + j) * C + c];
          if (v === 0) continue;
          for (let f = 0; f < F; f++) y[out + f] += v * layer.kernel[((a * kw + b) * F + f) * C + c];
        }
      }
    }
  }
  return activate(y, layer.activation || "linear");
}

// Layers run one after another on flat arrays; "concat_label" appends the one-hot label.
function chain(x, layers, label) {
  let h = x;
  for (const layer of layers) {
    if (layer.type === "concat_label") {
      const joined = new Float64Array(h.length + label.length);
      joined.set(h); joined.set(label, h.length); h = joined;
    } else if (layer.type === "conv2d") h = conv2d(h, layer);
    else if (layer.type === "conv2d_transpose") h = conv2dTranspose(h, layer);
    else h = dense(h, layer);
  }
  return h;
}

// spec: {likelihood, classes, encoder: [trunk layers], mean, log_var, decoder: [layers]};
// a layer has type (dense | conv2d | conv2d_transpose | concat_label), shape, kernel and
// bias (base64 float32), activation, and for convolutions in_shape and strides.
function makeModel(spec) {
  const load = (w) => (w.type === "concat_label" ? w : {
    ...w, kernel: b64ToFloat32(w.kernel), bias: b64ToFloat32(w.bias) });
  const encoder = spec.encoder.map(load), decoder = spec.decoder.map(load);
  const mean = load(spec.mean), logVar = load(spec.log_var);
  const classes = spec.classes || 0;
  const oneHot = (c) => { const v = new Float64Array(classes); if (classes) v[c] = 1; return v; };
  return {
    latentDim: mean.shape[1],
    classes,
    likelihood: spec.likelihood,
    // x: pixels in [0, 1] (and the class, for a conditional VAE) -> {mean, logVar}
    encode(x, c = 0) {
      const h = chain(x, encoder, oneHot(c));
      return { mean: dense(h, mean), logVar: dense(h, logVar) };
    },
    // z -> the decoder's raw output: means (gaussian) or logits (bernoulli)
    decode(z, c = 0) {
      return chain(z, decoder, oneHot(c));
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
