// Every result read from Node, through better-sqlite3 (the most used Node
// driver, with its own current SQLite; built from source at test time by
// tests/clients/run.sh) or through node-sqlite3 (Debian's package, on the
// system's libsqlite3): CLIENT_DRIVER names the one, its module resolved
// from NODE_PATH.
//
//   CLIENT_DRIVER=better-sqlite3 node tests/clients/clients.mjs [build/gpt.so]
//   (tests/clients/run.sh runs it once for each driver it finds)
//
// Loads the extension, imports a random model made by build/mkmodel (as
// tests/python/test_clients.py does) and reads a representative set of results
// on CJK, emoji, English and random-byte inputs: gpt_detokenize against
// gpt_detokenize_bytes on ids that spell invalid UTF-8, gpt_generate against
// gpt_generate_bytes over many seeds at temperature 1, the tables gpt_tokens,
// gpt_next_tokens, gpt_generate_tokens, gpt_attention and gpt_batch, gpt_embed,
// gpt_logprob, gpt_perplexity, gpt_chat_prompt, gpt_chat, gpt_summarize, and
// errors. Node replaces invalid UTF-8 in a TEXT value silently, so each TEXT
// is also read as CAST(... AS BLOB): those bytes must be valid UTF-8, be the
// string's UTF-8, and the string must equal the WHATWG decoding (TextDecoder,
// U+FFFD per maximal subpart, as Python's errors='replace') of the exact-bytes
// BLOB. The bytes columns are Buffers and concatenate to the input's or the
// generation's bytes.
//
// Ends with "N passed, N failed" and exits 1 on any failure.
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const DRIVER = process.env.CLIENT_DRIVER || "sqlite3";
const driver = require(DRIVER);

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BUILD = join(ROOT, "build");
const EXT = resolve(process.argv[2] || join(BUILD, "gpt.so"));

const counts = { passed: 0, failed: 0 };
function check(name, ok, detail = "") {
  if (ok) {
    counts.passed++;
  } else {
    counts.failed++;
    console.log(`  ${name}... FAILED ${detail}`);
  }
}

const lenient = new TextDecoder("utf-8");
const strict = new TextDecoder("utf-8", { fatal: true });
// the text a TEXT result must hold for the exact bytes b
const decode = (b) => lenient.decode(b);
function isUtf8(b) {
  try {
    strict.decode(b);
    return true;
  } catch {
    return false;
  }
}
// s (a string read from a TEXT value) against raw (the same value read as
// CAST(... AS BLOB)): the bytes are valid UTF-8 and are s's
const sameText = (s, raw) =>
  typeof s === "string" && Buffer.isBuffer(raw) && isUtf8(raw) && Buffer.from(s, "utf8").equals(raw);
const show = (b) => (Buffer.isBuffer(b) ? `<${b.toString("hex")}>` : JSON.stringify(b));

// a seeded generator (mulberry32), so the random inputs are the same each run
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The two drivers behind one promise-shaped surface. better-sqlite3 binds
// ?NNN parameters by number from an object.
const better = DRIVER === "better-sqlite3";
function open() {
  if (better) return Promise.resolve(new driver(":memory:"));
  return new Promise((ok, ko) => {
    const db = new driver.Database(":memory:", (e) => (e ? ko(e) : ok(db)));
  });
}
function load(db, path) {
  if (better) return Promise.resolve(db.loadExtension(path));
  return new Promise((ok, ko) => db.loadExtension(path, (e) => (e ? ko(e) : ok())));
}
function allBetter(db, sql, params) {
  const st = db.prepare(sql);
  const args = /\?\d/.test(sql) ? [Object.fromEntries(params.map((v, i) => [i + 1, v]))] : params;
  if (!st.reader) {
    st.run(...args);
    return [];
  }
  return st.all(...args);
}
const all = (db, sql, params = []) =>
  better ? new Promise((ok) => ok(allBetter(db, sql, params)))
         : new Promise((ok, ko) => db.all(sql, params, (e, rows) => (e ? ko(e) : ok(rows))));
const get = async (db, sql, params = []) => (await all(db, sql, params))[0];
// the error a statement raises, or null
const error = (db, sql, params = []) => all(db, sql, params).then(() => null, (e) => e);
const close = (db) => (better ? Promise.resolve(db.close()) : new Promise((ok) => db.close(ok)));

function modelDir(name, ...args) {
  const d = join(BUILD, "models", name);
  mkdirSync(d, { recursive: true });
  execFileSync(join(BUILD, "mkmodel"), [d, ...args], { stdio: ["ignore", "ignore", "inherit"] });
  return d;
}

async function main() {
  const t0 = Date.now();
  const secs = () => ((Date.now() - t0) / 1000).toFixed(1);
  const db = await open();
  await load(db, EXT);
  const version = (await get(db, "SELECT sqlite_version() AS v")).v;
  console.log(`clients.mjs: Node ${process.versions.node}, ${DRIVER} ` +
              `${require(`${DRIVER}/package.json`).version}, SQLite ${version}`);

  // the decoder itself: Python's bytes.decode('utf-8', 'replace') on the
  // maximal-subpart cases
  for (const [hex, want] of [["e280", "\ufffd"], ["e28061", "\ufffda"], ["eda080", "\ufffd\ufffd\ufffd"],
                             ["f09f99", "\ufffd"], ["f0808080", "\ufffd\ufffd\ufffd\ufffd"],
                             ["c0af", "\ufffd\ufffd"], ["f4908080", "\ufffd\ufffd\ufffd\ufffd"],
                             ["f18080e282ac", "\ufffd\u20ac"], ["f1808080", "\u{40000}"], ["e0a080", "\u0800"]]) {
    check(`decoder ${hex}`, decode(Buffer.from(hex, "hex")) === want, JSON.stringify(decode(Buffer.from(hex, "hex"))));
  }

  const demo = modelDir("nodeclients", "--layers", "2", "--heads", "4", "--embd", "64",
                        "--ctx", "128", "--seed", "7");
  const summary = (await get(db, "SELECT gpt_import('demo', ?) AS s", [demo])).s;
  check("import", typeof summary === "string" && summary.includes("demo"), JSON.stringify(summary));

  // ------------------------------------------------ bytes <-> token ids
  // one token per byte in GPT-2's byte-level vocabulary: any byte string can
  // be spelled as ids
  const byteId = new Map();
  for (const r of await all(db, "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c " +
                                "WHERE i < 511) SELECT i, gpt_detokenize_bytes('[' || i || ']') AS b FROM c")) {
    if (Buffer.isBuffer(r.b) && r.b.length === 1 && !byteId.has(r.b[0])) byteId.set(r.b[0], r.i);
  }
  check("byte-tokens", byteId.size === 256, `${byteId.size} single-byte tokens`);
  const idsOf = (b) => JSON.stringify([...b].map((x) => byteId.get(x)));

  const r447 = await get(db, "SELECT gpt_detokenize('[447]') AS t, CAST(gpt_detokenize('[447]') AS BLOB) AS raw, " +
                             "gpt_detokenize_bytes('[447]') AS b");
  check("detokenize-447", r447.t === "\ufffd" && sameText(r447.t, r447.raw) &&
        Buffer.from("e280", "hex").equals(r447.b), `${show(r447.t)} ${show(r447.raw)} ${show(r447.b)}`);

  const crafted = ["", "61", "e280", "e280a6", "e28061", "c0af", "eda080", "ed9fbf", "f09f99", "f09f9982",
                   "f4908080", "f48fbfbf", "e08080", "e0a080", "f0808080", "f580", "fffe", "808080", "c2",
                   "61e697a5e69c", "f18080", "f1808080e282ac", "00e200"].map((h) => Buffer.from(h, "hex"));
  crafted.push(Buffer.from("日本語 🙂"));
  const pieces = [];
  for (let b = 0; b < 256; b++) pieces.push(Buffer.from([b]));
  for (const s of ["é", "日", "🙂", "€"]) pieces.push(Buffer.from(s));
  for (const h of ["e280", "f09f", "eda0", "f490", "e09f"]) pieces.push(Buffer.from(h, "hex"));
  const rnd = rng(11);
  const randoms = [];
  for (let i = 0; i < 1000; i++) {
    const n = 1 + Math.floor(rnd() * 12);
    randoms.push(Buffer.concat(Array.from({ length: n }, () => pieces[Math.floor(rnd() * pieces.length)])));
  }
  let nInvalid = 0;
  for (const bs of [...crafted, ...randoms]) {
    const ids = idsOf(bs);
    const r = await get(db, "SELECT gpt_detokenize(?1) AS t, CAST(gpt_detokenize(?1) AS BLOB) AS raw, " +
                            "gpt_detokenize_bytes(?1) AS b", [ids]);
    check(`detokenize ${show(bs)}`, bs.equals(r.b) && sameText(r.t, r.raw) && r.t === decode(bs),
          `${show(r.t)} ${show(r.raw)} ${show(r.b)}`);
    if (!isUtf8(bs)) nInvalid++;
  }
  console.log(`  detokenize: ${crafted.length + randoms.length} byte strings, ${nInvalid} not UTF-8 (${secs()} s)`);
  check("detokenize-exercises-repair", nInvalid > 500, `${nInvalid}`);

  // ------------------------------------------------ tokenizer table
  // text inputs, and random bytes passed as TEXT (CAST of a BLOB parameter)
  const texts = ["日本語 🙂", "こんにちは世界", "🙂🙃🎉 emoji 👩‍👩‍👧", "Hello, world", "naïve café — “quotes”",
                 "한국어 텍스트", "\u0000nul", ""].map((s) => Buffer.from(s));
  for (let i = 0; i < 20; i++) texts.push(randoms[i * 37]);
  for (const t of texts) {
    const rows = await all(db, "SELECT pos, token_id, token, CAST(token AS BLOB) AS raw, bytes " +
                               "FROM gpt_tokens(CAST(? AS TEXT))", [t]);
    check(`tokens ${show(t)} bytes`, rows.every((r) => Buffer.isBuffer(r.bytes)) &&
          Buffer.concat(rows.map((r) => r.bytes)).equals(t), JSON.stringify(rows));
    check(`tokens ${show(t)} text`, rows.every((r) => sameText(r.token, r.raw) && r.token === decode(r.bytes)));
    check(`tokens ${show(t)} positions`, rows.every((r, i) => r.pos === i && Number.isInteger(r.token_id)));
  }

  // rowids are safe JavaScript integers, so a call's rows keep distinct ones
  // (they were hashes up to 2^63, which the driver rounded onto each other)
  for (const sql of ["SELECT rowid AS r FROM gpt_tokens('hello world foo bar')",
                     "SELECT rowid AS r FROM gpt_next_tokens('hello world', 20)",
                     "SELECT rowid AS r FROM gpt_attention('hello world')"]) {
    const rows = await all(db, sql, []);
    check(`rowids of ${sql}`, rows.length > 1 && rows.every((r) => Number.isSafeInteger(r.r)) &&
          new Set(rows.map((r) => r.r)).size === rows.length, JSON.stringify(rows.slice(0, 4)));
  }

  // ------------------------------------------------ generations
  // gpt_generate and gpt_generate_bytes of one call each: the CTE is
  // materialized so each function runs once
  const prompts = ["日本語 🙂", "日本", "The cat sat", "こんにちは", "🙂", "", "Once upon a time", "中文测试：",
                   "ok \u00e9t\u00e9"].map((s) => Buffer.from(s));
  prompts.push(Buffer.from("41e280ff42f09f99", "hex"));
  let nGen = 0, nGenInvalid = 0, nStop = 0;
  for (let seed = 1; seed <= 20; seed++) {
    for (const p of prompts) {
      const opt = JSON.stringify({ temperature: 1, seed, max_tokens: 32, threads: 1 });
      const r = await get(db, "WITH g AS MATERIALIZED (SELECT gpt_generate(CAST(?1 AS TEXT), ?2) AS t, " +
                              "gpt_generate_bytes(CAST(?1 AS TEXT), ?2) AS b) " +
                              "SELECT t, CAST(t AS BLOB) AS raw, b FROM g", [p, opt]);
      nGen++;
      check(`generate ${show(p)} ${seed}`, Buffer.isBuffer(r.b) && sameText(r.t, r.raw) && r.t === decode(r.b),
            `${show(r.t)} ${show(r.raw)} ${show(r.b)}`);
      if (!Buffer.isBuffer(r.b)) continue;
      if (!isUtf8(r.b)) nGenInvalid++;
      const rows = await all(db, "SELECT step, token_id, token, CAST(token AS BLOB) AS raw, logprob, finish_reason, " +
                                 "bytes FROM gpt_generate_tokens(CAST(? AS TEXT), ?)", [p, opt]);
      check(`generate_tokens ${show(p)} ${seed} bytes`,
            Buffer.concat(rows.map((x) => x.bytes)).equals(r.b), JSON.stringify(rows));
      check(`generate_tokens ${show(p)} ${seed} text`,
            rows.every((x) => sameText(x.token, x.raw) && x.token === decode(x.bytes) &&
                              typeof x.logprob === "number" && x.logprob <= 0));
      check(`generate_tokens ${show(p)} ${seed} finish`, rows.length === 0 ||
            (rows.slice(0, -1).every((x) => x.finish_reason === null) &&
             ["eos", "stop", "length", "context"].includes(rows[rows.length - 1].finish_reason)));
      // a stop string cuts the exact bytes where it first occurs
      const ascii = [...new Set([...r.b.subarray(1)].filter((c) => c >= 0x21 && c < 0x7f))].sort((a, b) => a - b);
      if (ascii.length) {
        const stop = String.fromCharCode(ascii[seed % ascii.length]);
        const sopt = JSON.stringify({ temperature: 1, seed, max_tokens: 32, threads: 1, stop });
        const cut = (await get(db, "SELECT gpt_generate_bytes(CAST(? AS TEXT), ?) AS b", [p, sopt])).b;
        const want = r.b.subarray(0, r.b.indexOf(Buffer.from(stop)));
        check(`stop ${show(p)} ${seed} ${stop}`, Buffer.isBuffer(cut) && cut.equals(want), `${show(cut)} ${show(want)}`);
        nStop++;
      }
    }
  }
  console.log(`  generate: ${nGen} generations, ${nGenInvalid} not UTF-8 as bytes, ${nStop} with a stop ` +
              `string (${secs()} s)`);
  check("generations-exercise-repair", nGenInvalid > 0, "no generation produced invalid UTF-8: the check proves nothing");

  // ------------------------------------------------ tables of the model
  for (const p of ["日本語 🙂", "The cat sat", "🙂"]) {
    const rows = await all(db, "SELECT rank, token_id, token, CAST(token AS BLOB) AS raw, logit, prob, bytes " +
                               "FROM gpt_next_tokens(?, 1000)", [p]);
    const total = rows.reduce((s, r) => s + r.prob, 0);
    check(`next_tokens ${p}`, rows.length === 1000 &&
          rows.every((r, i) => sameText(r.token, r.raw) && r.token === decode(r.bytes) &&
                               (i === 0 || r.prob <= rows[i - 1].prob)) && total > 0 && total <= 1 + 1e-6,
          `${rows.length} rows, total ${total}`);
    const toks = await all(db, "SELECT bytes FROM gpt_tokens(?)", [p]);
    const att = await all(db, "SELECT query_pos, key_pos, query_token, key_token, CAST(query_token AS BLOB) AS qraw, " +
                              "CAST(key_token AS BLOB) AS kraw, weight FROM gpt_attention(?)", [p]);
    const n = toks.length;
    check(`attention ${p}`, att.length === 2 * 4 * n * (n + 1) / 2 &&
          att.every((r) => sameText(r.query_token, r.qraw) && sameText(r.key_token, r.kraw) &&
                           r.query_token === decode(toks[r.query_pos].bytes) &&
                           r.key_token === decode(toks[r.key_pos].bytes) && r.weight >= 0 && r.weight <= 1),
          `${att.length} rows for ${n} tokens`);
  }
  const svg = await get(db, "SELECT gpt_attention_svg(CAST(?1 AS TEXT)) AS t, " +
                            "CAST(gpt_attention_svg(CAST(?1 AS TEXT)) AS BLOB) AS raw", [randoms[5]]);
  check("attention_svg random bytes", sameText(svg.t, svg.raw) && svg.t.endsWith("</svg>\n"));

  // ------------------------------------------------ many rows at once
  // gpt_batch's rows equal gpt_generate's greedy text and bytes; keys keep
  // their type
  await all(db, "CREATE TEMP TABLE docs(id, body)");
  const bodies = ["日本語 🙂", "The cat sat", "🙂", "x".repeat(40), null, "Hello", "こんにちは"];
  for (let i = 0; i < bodies.length; i++) {
    await all(db, "INSERT INTO docs VALUES (?, ?)", [i % 2 ? i : `k${i}`, bodies[i]]);
  }
  const gopt = JSON.stringify({ max_tokens: 8, temperature: 0 });
  const batch = await all(db, "SELECT *, CAST(output AS BLOB) AS raw FROM gpt_batch('SELECT id, body FROM docs', ?)", [gopt]);
  check("batch rows", batch.length === bodies.length, `${batch.length} rows`);
  for (const r of batch) {
    const body = (await get(db, "SELECT body FROM docs WHERE id = ?", [r.key])).body;
    const w = await get(db, "SELECT gpt_generate(?1, ?2) AS t, gpt_generate_bytes(?1, ?2) AS b", [body, gopt]);
    const bytesOk = r.bytes === null ? w.b === null : Buffer.isBuffer(r.bytes) && r.bytes.equals(w.b);
    check(`batch ${r.key}`, r.output === w.t && bytesOk &&
          (r.output === null || (sameText(r.output, r.raw) && r.output === decode(r.bytes))),
          `${show(r.output)} ${show(r.bytes)} vs ${show(w.t)} ${show(w.b)}`);
  }
  check("batch keys", batch.every((r) => typeof r.key === (/^k/.test(String(r.key)) ? "string" : "number")));

  // ------------------------------------------------ scores and aggregates
  for (const p of ["日本語 🙂", "The cat sat on the mat", "🙂🙃"]) {
    const r = await get(db, "SELECT gpt_logprob(?1) AS lp, typeof(gpt_logprob(?1)) AS lt, gpt_perplexity(?1) AS ppl, " +
                            "typeof(gpt_perplexity(?1)) AS pt, gpt_embed(?1) AS e", [p]);
    check(`logprob ${p}`, r.lt === "real" && Number.isFinite(r.lp) && r.lp <= 0, `${r.lt} ${r.lp}`);
    check(`perplexity ${p}`, r.pt === "real" && Number.isFinite(r.ppl) && r.ppl >= 1, `${r.pt} ${r.ppl}`);
    const ok = Buffer.isBuffer(r.e) && r.e.length === 64 * 4;
    const floats = ok ? Array.from({ length: 64 }, (_, i) => r.e.readFloatLE(4 * i)) : [];
    check(`embed ${p}`, ok && floats.every(Number.isFinite) && floats.some((x) => x !== 0),
          ok ? floats.slice(0, 4).join(",") : show(r.e));
  }
  await all(db, "CREATE TEMP TABLE notes(grp, body)");
  for (let i = 0; i < 12; i++) {
    await all(db, "INSERT INTO notes VALUES (?, CAST(? AS TEXT))", [i % 3, i % 4 ? Buffer.from(bodies[i % 4].repeat(1 + i % 3)) : randoms[i]]);
  }
  for (let seed = 1; seed <= 4; seed++) {
    const opt = JSON.stringify({ seed, max_tokens: 12, threads: 1 });
    const rows = await all(db, "SELECT grp, s, CAST(s AS BLOB) AS raw FROM (SELECT grp, gpt_summarize(body, ?) AS s " +
                               "FROM notes GROUP BY grp)", [opt]);
    check(`summarize ${seed}`, rows.length === 3 && rows.every((r) => sameText(r.s, r.raw)), JSON.stringify(rows));
  }

  // ------------------------------------------------ chat (the generated
  // GPT-2 model has no template: one is given)
  const tpl = JSON.stringify({ template: "{% for m in messages %}{{ m.content }}\n{% endfor %}" });
  for (let seed = 1; seed <= 5; seed++) {
    for (const p of ["日本語 🙂", "🙂", "Hello"]) {
      const msgs = JSON.stringify([{ role: "user", content: p }]);
      const opt = JSON.stringify({ ...JSON.parse(tpl), seed, max_tokens: 24, threads: 1 });
      const r = await get(db, "SELECT gpt_chat_prompt(?1, ?2) AS p, CAST(gpt_chat_prompt(?1, ?2) AS BLOB) AS praw, " +
                              "c, CAST(c AS BLOB) AS craw FROM (SELECT gpt_chat(?1, ?3) AS c)", [msgs, tpl, opt]);
      check(`chat ${p} ${seed}`, r.p === p + "\n" && sameText(r.p, r.praw) && sameText(r.c, r.craw),
            `${show(r.p)} ${show(r.c)}`);
    }
  }

  // ------------------------------------------------ errors reach the client
  // as errors naming the function, and the connection works on
  for (const [sql, want] of [
    ["SELECT gpt_generate('Hi', '{\"model\": \"nope\"}')", "gpt_generate: no model named 'nope'"],
    ["SELECT gpt_generate_bytes('Hi', '{\"model\": \"nope\"}')", "gpt_generate_bytes: no model named 'nope'"],
    ["SELECT gpt_detokenize('[9999999]')", "gpt_detokenize: "],
    ["SELECT gpt_chat_prompt('[{\"role\": \"user\", \"content\": \"hi\"}]')", "gpt_chat_prompt: "],
    ["SELECT * FROM gpt_generate_tokens('Hi', '{\"temperature\": \"hot\"}')", "gpt_generate_tokens: "],
    ["SELECT * FROM gpt_batch('SELECT nope FROM nowhere')", "gpt_batch: "],
  ]) {
    const e = await error(db, sql);
    check(`error ${want}`, e instanceof Error && e.message.includes(want), e ? e.message : "no error");
  }
  check("after errors", (await get(db, "SELECT gpt_token_count('ok') AS n")).n === 1);

  await close(db);
  console.log(`  done (${secs()} s)`);
}

try {
  await main();
} catch (e) {
  // a throw is a failure, not a crash of the run
  console.log(e && e.stack ? e.stack : String(e));
  check("clients.mjs", false, String(e));
}
console.log(`clients.mjs: ${counts.passed} passed, ${counts.failed} failed`);
process.exit(counts.failed ? 1 : 0);
