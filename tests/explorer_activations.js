// node explorer_activations.js CORE.js CASE.json: CASE = {"x": [...], "names": [...]};
// prints {name: activation(x)} as the page computes it (softmax over the whole vector).
"use strict";
const fs = require("fs");
const { activate } = require(process.argv[2]);
const data = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const out = {};
for (const name of data.names) out[name] = Array.from(activate(Float64Array.from(data.x), name));
console.log(JSON.stringify(out));
