// Greedy tokens of llama.cpp for a GGUF file, through node-llama-cpp's
// prebuilt CPU binary (tests/gguf.test installs it into build/ at test time).
//
//   node tests/tools/gguf_llamacpp.mjs NODE_MODULES MODEL.gguf N '[ids]'
//
// Evaluates the prompt ids and prints the next N greedy token ids as a JSON
// array (ids, not text, so the tokenizers play no part).
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, modelPath, nText, idsJson] = process.argv.slice(2);
const entry = pathToFileURL(path.join(modules, "node-llama-cpp", "dist", "index.js")).href;
const { getLlama, LlamaLogLevel } = await import(entry);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: 128, threads: 1 });
const sequence = context.getSequence();
const out = [];
const n = Number(nText);
for await (const token of sequence.evaluate(JSON.parse(idsJson), { temperature: 0 })) {
  out.push(token);
  if (out.length >= n) break;
}
console.log(JSON.stringify(out));
await context.dispose();
await model.dispose();
await llama.dispose();
