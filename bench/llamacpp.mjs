// llama.cpp's speed on a GGUF file, through node-llama-cpp's prebuilt CPU
// binary, for build/bench --llamacpp (which exports the bench's models with
// gpt_export and installs the package into build/llamacpp):
//
//   node bench/llamacpp.mjs NODE_MODULES MODEL.gguf THREADS RUNS
//
// Prints one JSON object: pp512 (tok/s of a 512-token prompt evaluated in one
// batch, as llama-bench's pp512) and tg128 (tok/s of 128 greedy tokens after a
// 1-token prompt, one decode step each, as llama-bench's tg128), each the
// median of RUNS runs.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, modelPath, threadsText, runsText] = process.argv.slice(2);
const entry = pathToFileURL(path.join(modules, "node-llama-cpp", "dist", "index.js")).href;
const { getLlama, LlamaLogLevel } = await import(entry);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const threads = Number(threadsText), runs = Number(runsText);
const context = await model.createContext({ contextSize: 1024, batchSize: 512, threads });
const sequence = context.getSequence();
const median = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
const ids = Array.from({ length: 512 }, (_, i) => 100 + ((i * 7919) % 20000));

const pp = [], tg = [];
for (let r = 0; r <= runs; r++) {
  await sequence.clearHistory();
  let t0 = performance.now();
  await sequence.evaluateWithoutGeneratingNewTokens(ids);
  const t = (performance.now() - t0) / 1000;
  if (r > 0) pp.push(512 / t); // the first run warms up
  await sequence.clearHistory();
  await sequence.evaluateWithoutGeneratingNewTokens([ids[0]]);
  t0 = performance.now();
  // one decode step a token, without node-llama-cpp's sampling in JavaScript
  for (let i = 1; i <= 128; i++) await sequence.evaluateWithoutGeneratingNewTokens([ids[i]]);
  if (r > 0) tg.push(128 / ((performance.now() - t0) / 1000));
}
console.log(JSON.stringify({ pp512: median(pp), tg128: median(tg) }));
await context.dispose();
await model.dispose();
await llama.dispose();
