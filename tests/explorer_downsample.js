// node explorer_downsample.js CORE.js W SIDE: a W x W canvas whose pixel (i, j) has red
// value (i * W + j) % 256, downsampled to SIDE x SIDE; prints the pixels as JSON.
"use strict";
const { downsample } = require(process.argv[2]);
const W = +process.argv[3], side = +process.argv[4];
const rgba = new Uint8ClampedArray(4 * W * W);
for (let k = 0; k < W * W; k++) rgba[4 * k] = k % 256;
console.log(JSON.stringify(Array.from(downsample(rgba, W, side))));
