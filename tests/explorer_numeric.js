// Runs the explorer's forward passes under Node: node explorer_numeric.js CORE.js CASE.json
// CASE.json: {"model": <model spec>, "x": [[...D]...], "z": [[...latent]...], "labels": [...]}
"use strict";
const fs = require("fs");
const { makeModel } = require(process.argv[2]);
const data = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const model = makeModel(data.model);
const label = (i) => (data.labels ? data.labels[i] : 0);
const encoded = data.x.map((x, i) => model.encode(x, label(i)));
console.log(JSON.stringify({
  mean: encoded.map((e) => Array.from(e.mean)),
  log_var: encoded.map((e) => Array.from(e.logVar)),
  decoded: data.z.map((z, i) => Array.from(model.decode(z, label(i)))),
}));
