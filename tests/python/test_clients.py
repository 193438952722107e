#!/usr/bin/python3
"""Every result read from Python: the standard sqlite3 module, default text
factory (TEXT must be valid UTF-8 or the fetch raises).

    /usr/bin/python3 tests/python/test_clients.py       (run by make test)

Loads build/gpt.so into Debian's python3, imports a demo-sized random model
(build/mkmodel) and reads every registered function's and table's results
on CJK, emoji, English and random-byte inputs, and on many random-model
generations (temperature 1, many seeds). Every TEXT value must equal
Python's bytes.decode('utf-8', 'replace') of the matching exact-bytes BLOB
(gpt_generate_bytes, gpt_detokenize_bytes, the bytes columns), the bytes of
gpt_tokens must concatenate to the input's and those of gpt_generate_tokens
to the generation's, and a stop string must cut the exact bytes where it
first occurs. Run with GPT_EXPECT_SQLITE=3.53.2 (make test-sqlite-latest),
it first checks that the SQLite in use is that version.

Ends with "N passed, N failed" and exits 1 on any failure.
"""
import json
import tempfile
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, fail, finish, skip  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
EXT = os.path.join(BUILD, "gpt")




def decode(b):
    """The text a TEXT result must hold for the exact bytes b."""
    return b.decode("utf-8", errors="replace")


def model_dir(name, *args):
    """Generates a test model with build/mkmodel (as the Tcl suite does)."""
    d = os.path.join(BUILD, "models", name)
    os.makedirs(d, exist_ok=True)
    subprocess.run([os.path.join(BUILD, "mkmodel"), d, *args], check=True,
                   stdout=subprocess.DEVNULL)
    return d


def connect():
    """A connection with the extension loaded and the demo model imported."""
    db = sqlite3.connect(":memory:")
    db.enable_load_extension(True)
    db.load_extension(EXT)
    db.enable_load_extension(False)
    return db


def main():
    want = os.environ.get("GPT_EXPECT_SQLITE")
    print(f"test_clients.py: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    if want:
        check("version", sqlite3.sqlite_version == want,
              f"expected SQLite {want}, got {sqlite3.sqlite_version}")
        if sqlite3.sqlite_version != want:
            return

    t_start = time.time()
    db = connect()
    check("version-inside", db.execute("SELECT sqlite_version()").fetchone()[0]
          == sqlite3.sqlite_version)
    demo = model_dir("pyclients", "--layers", "2", "--heads", "4", "--embd", "64",
                     "--ctx", "128", "--seed", "7")
    summary = db.execute("SELECT gpt_import('demo', ?)", (demo,)).fetchone()[0]
    check("import", isinstance(summary, str) and "demo" in summary, repr(summary))
    covered = {"gpt_import"}

    # ------------------------------------------------ bytes <-> token ids
    # GPT-2's byte-level vocabulary has one token per byte: any byte string
    # can be spelled, so gpt_detokenize is checked against Python's decoder
    # on crafted sequences (the maximal-subpart cases) and random bytes.
    byte_id = {}
    for i in range(512):
        b = db.execute("SELECT gpt_detokenize_bytes(?)", (f"[{i}]",)).fetchone()[0]
        if isinstance(b, bytes) and len(b) == 1:
            byte_id.setdefault(b[0], i)
    check("byte-tokens", len(byte_id) == 256, f"{len(byte_id)} single-byte tokens")

    def ids_of(bs):
        return json.dumps([byte_id[x] for x in bs])

    crafted = [b"", b"a", b"\xe2\x80", b"\xe2\x80\xa6", b"\xe2\x80a", b"\xc0\xaf",
               b"\xed\xa0\x80", b"\xed\x9f\xbf", b"\xf0\x9f\x99", b"\xf0\x9f\x99\x82",
               b"\xf4\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xe0\x80\x80", b"\xe0\xa0\x80",
               b"\xf0\x80\x80\x80", b"\xf5\x80", b"\xff\xfe", b"\x80\x80\x80", b"\xc2",
               b"a\xe6\x97\xa5\xe6\x9c", b"\xf1\x80\x80", b"\xf1\x80\x80\xe2\x82\xac",
               b"\x00\xe2\x00", "日本語 🙂".encode()]
    pieces = [bytes([b]) for b in range(256)] + [
        "é".encode(), "日".encode(), "🙂".encode(), "€".encode(), b"\xe2\x80",
        b"\xf0\x9f", b"\xed\xa0", b"\xf4\x90", b"\xe0\x9f"]
    rnd = random.Random(11)
    randoms = [b"".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 12)))
               for _ in range(3000)]
    n_invalid = 0
    for bs in crafted + randoms:
        ids = ids_of(bs)
        text, exact = db.execute("SELECT gpt_detokenize(?), gpt_detokenize_bytes(?)",
                                 (ids, ids)).fetchone()
        check(f"detokenize {bs!r}", exact == bs and text == decode(bs),
              f"text {text!r} bytes {exact!r}")
        try:
            bs.decode("utf-8")
        except UnicodeDecodeError:
            n_invalid += 1
    print(f"  detokenize: {len(crafted) + len(randoms)} byte strings, {n_invalid} not UTF-8 "
          f"({time.time() - t_start:.1f} s)")
    check("detokenize-447", db.execute("SELECT gpt_detokenize('[447]'), "
                                       "gpt_detokenize_bytes('[447]')").fetchone()
          == ("\ufffd", b"\xe2\x80"))
    covered |= {"gpt_detokenize", "gpt_detokenize_bytes"}

    # ------------------------------------------------ tokenizer functions
    texts = ["日本語 🙂", "日本", "こんにちは世界", "🙂🙃🎉 emoji 👩‍👩‍👧", "Hello, world",
             "naïve café — “quotes”", "한국어 텍스트", "\u0000nul", ""]
    for t in texts:
        rows = db.execute("SELECT pos, token_id, token, bytes, text, options "
                          "FROM gpt_tokens(?)", (t,)).fetchall()
        check(f"tokens {t!r} bytes", b"".join(r[3] for r in rows) == t.encode(),
              repr(rows))
        check(f"tokens {t!r} text", all(r[2] == decode(r[3]) for r in rows), repr(rows))
        check(f"tokens {t!r} hidden", all(r[4] == t and r[5] is None for r in rows))
        ids = db.execute("SELECT gpt_tokenize(?)", (t,)).fetchone()[0]
        check(f"tokenize {t!r}", json.loads(ids) == [r[1] for r in rows])
        check(f"token_count {t!r}",
              db.execute("SELECT gpt_token_count(?)", (t,)).fetchone()[0] == len(rows))
        check(f"roundtrip {t!r}",
              db.execute("SELECT gpt_detokenize(gpt_tokenize(?))", (t,)).fetchone()[0] == t)
    covered |= {"gpt_tokens", "gpt_tokenize", "gpt_token_count"}

    # ------------------------------------------------ generations
    prompts = ["日本語 🙂", "日本", "The cat sat", "こんにちは", "🙂", "", "Once upon a time",
               "中文测试：", "ok \xe9t\xe9"]
    n_gen = n_gen_invalid = n_stop = 0
    for seed in range(1, 26):
        for p in prompts:
            # one thread: the output is the same for any count, and on a
            # shared 2-core machine the tiny model runs twice as fast so
            opt = json.dumps({"temperature": 1, "seed": seed, "max_tokens": 32, "threads": 1})
            text, exact = db.execute("SELECT gpt_generate(?, ?), gpt_generate_bytes(?, ?)",
                                     (p, opt, p, opt)).fetchone()
            n_gen += 1
            check(f"generate {p!r} {seed}", isinstance(exact, bytes) and text == decode(exact),
                  f"{text!r} {exact!r}")
            try:
                exact.decode("utf-8")
            except UnicodeDecodeError:
                n_gen_invalid += 1
            rows = db.execute("SELECT step, token_id, token, logprob, finish_reason, bytes, "
                              "prompt, options FROM gpt_generate_tokens(?, ?)",
                              (p, opt)).fetchall()
            check(f"generate_tokens {p!r} {seed} bytes",
                  b"".join(r[5] for r in rows) == exact, repr(rows))
            check(f"generate_tokens {p!r} {seed} text",
                  all(r[2] == decode(r[5]) and r[6] == p and r[7] == opt for r in rows))
            # a stop string cuts the exact bytes where it first occurs
            ascii_chars = sorted({chr(c) for c in exact[1:] if 0x21 <= c < 0x7f})
            if ascii_chars:
                stop = ascii_chars[seed % len(ascii_chars)]
                sopt = json.dumps({"temperature": 1, "seed": seed, "max_tokens": 32,
                                   "threads": 1, "stop": stop})
                cut = db.execute("SELECT gpt_generate_bytes(?, ?)", (p, sopt)).fetchone()[0]
                want = exact[:exact.find(stop.encode())]
                check(f"stop {p!r} {seed} {stop!r}", cut == want, f"{cut!r} vs {want!r}")
                srows = db.execute("SELECT bytes, token FROM gpt_generate_tokens(?, ?)",
                                   (p, sopt)).fetchall()
                check(f"stop-tokens {p!r} {seed}", b"".join(r[0] for r in srows) == want)
                n_stop += 1
    print(f"  generate: {n_gen} generations, {n_gen_invalid} not UTF-8 as bytes, "
          f"{n_stop} with a stop string ({time.time() - t_start:.1f} s)")
    check("generations-exercise-repair", n_gen_invalid > 0,
          "no generation produced invalid UTF-8: the check proves nothing")
    covered |= {"gpt_generate", "gpt_generate_bytes", "gpt_generate_tokens"}

    # ------------------------------------------------ tables of the model
    for p in ["日本語 🙂", "The cat sat", "🙂"]:
        rows = db.execute("SELECT rank, token_id, token, logit, prob, bytes, prompt, k, options "
                          "FROM gpt_next_tokens(?, 1000)", (p,)).fetchall()
        check(f"next_tokens {p!r}", len(rows) == 1000 and
              all(r[2] == decode(r[5]) and r[6] == p and r[7] == 1000 for r in rows))
        rows = db.execute("SELECT layer, head, query_pos, key_pos, query_token, key_token, "
                          "weight, text FROM gpt_attention(?)", (p,)).fetchall()
        n = len(db.execute("SELECT 1 FROM gpt_tokens(?)", (p,)).fetchall())
        check(f"attention {p!r}", len(rows) == 2 * 4 * n * (n + 1) // 2 and
              all(r[7] == p for r in rows))
        toks = {r[0]: r[1] for r in db.execute("SELECT pos, bytes FROM gpt_tokens(?)", (p,))}
        check(f"attention-tokens {p!r}",
              all(r[4] == decode(toks[r[2]]) and r[5] == decode(toks[r[3]]) for r in rows))
    rows = db.execute("SELECT query_token, key_token FROM gpt_attention('日本', "
                      "'{\"generate\": 16, \"seed\": 3}')").fetchall()
    check("attention-generate", len(rows) > 0)
    # the picture: valid UTF-8 TEXT whatever the text's bytes (labels of
    # split characters show U+FFFD), one panel per head
    for p in ["日本語 🙂", "The cat sat", "🙂", "a\x00b\n<&>"]:
        doc = db.execute("SELECT gpt_attention_svg(?, '{\"head\": \"all\", \"layer\": 1}')",
                         (p,)).fetchone()[0]
        check(f"attention_svg {p!r}", isinstance(doc, str) and doc.endswith("</svg>\n") and
              doc.count('<g class="head" ') == 4)
    doc = db.execute("SELECT gpt_attention_svg(CAST(? AS TEXT))",
                     (bytes(random.Random(5).randrange(256) for _ in range(40)),)).fetchone()[0]
    check("attention_svg random bytes", isinstance(doc, str) and "\ufffd" in doc)
    covered |= {"gpt_next_tokens", "gpt_attention", "gpt_attention_svg"}

    # ------------------------------------------------ many rows at once
    # gpt_batch through Python: every row's text is valid UTF-8 and equals
    # gpt_generate's greedy text, its bytes the exact bytes; keys keep their
    # type
    db.execute("CREATE TEMP TABLE pdocs(k, body)")
    bodies = ["日本語 🙂", "The cat sat", "🙂", "x" * 40, None, "Hello"]
    db.executemany("INSERT INTO pdocs VALUES (?, ?)",
                   [(i if i % 2 else f"k{i}", b) for i, b in enumerate(bodies)])
    gopt = json.dumps({"max_tokens": 24, "temperature": 0})
    bopt = json.dumps({"max_tokens": 24, "temperature": 0, "batch": 4})
    rows = db.execute("SELECT key, output, bytes, finish_reason FROM gpt_batch("
                      "'SELECT k, body FROM pdocs', ?)", (bopt,)).fetchall()
    want = {k: (db.execute("SELECT gpt_generate(?, ?)", (b, gopt)).fetchone()[0],
                db.execute("SELECT gpt_generate_bytes(?, ?)", (b, gopt)).fetchone()[0])
            for k, b in db.execute("SELECT k, body FROM pdocs").fetchall()}
    check("batch rows", sorted(map(str, (r[0] for r in rows))) == sorted(map(str, want)))
    check("batch = generate", all(want[r[0]] == (r[1], r[2]) for r in rows),
          f"{rows!r} vs {want!r}")
    check("batch text = decoded bytes",
          all(r[1] is None or r[1] == decode(r[2]) for r in rows))
    covered.add("gpt_batch")

    # ------------------------------------------------ scores and aggregates
    for p in ["日本語 🙂", "The cat sat on the mat", "🙂🙃"]:
        lp, ppl, emb = db.execute("SELECT gpt_logprob(?), gpt_perplexity(?), gpt_embed(?)",
                                  (p, p, p)).fetchone()
        check(f"scores {p!r}", isinstance(lp, float) and isinstance(ppl, float) and
              isinstance(emb, bytes) and len(emb) == 64 * 4)
    db.execute("CREATE TABLE docs(grp, body)")
    db.executemany("INSERT INTO docs VALUES (?, ?)",
                   [(i % 3, prompts[i % len(prompts)] * (1 + i % 4)) for i in range(30)])
    n_sum = 0
    for seed in range(1, 11):
        opt = json.dumps({"seed": seed, "max_tokens": 12, "threads": 1})
        rows = db.execute("SELECT grp, gpt_summarize(body, ?) FROM docs GROUP BY grp",
                          (opt,)).fetchall()
        n_sum += len(rows)
        check(f"summarize {seed}", len(rows) == 3 and all(isinstance(r[1], str) for r in rows))
    print(f"  summarize: {n_sum} summaries ({time.time() - t_start:.1f} s)")
    covered |= {"gpt_logprob", "gpt_perplexity", "gpt_embed", "gpt_summarize"}

    # ------------------------------------------------ chat (a template given:
    # the generated GPT-2 model has none)
    tpl = json.dumps("{% for m in messages %}{{ m.content }}\n{% endfor %}")
    n_chat = 0
    for seed in range(1, 11):
        for p in ["日本語 🙂", "🙂", "Hello"]:
            msgs = json.dumps([{"role": "user", "content": p}])
            opt = f'{{"template": {tpl}, "seed": {seed}, "max_tokens": 24, "threads": 1}}'
            prompt, reply = db.execute("SELECT gpt_chat_prompt(?, ?), gpt_chat(?, ?)",
                                       (msgs, f'{{"template": {tpl}}}', msgs, opt)).fetchone()
            n_chat += 1
            check(f"chat {p!r} {seed}", prompt == p + "\n" and isinstance(reply, str),
                  f"{prompt!r} {reply!r}")
    print(f"  chat: {n_chat} replies")
    covered |= {"gpt_chat", "gpt_chat_prompt"}

    # ------------------------------------------------ the rest of the surface
    check("version", db.execute("SELECT gpt_version()").fetchone()[0].startswith("sqlite-gpt"))
    check("debug", json.loads(db.execute("SELECT gpt_debug()").fetchone()[0])["sqlite"]
          == sqlite3.sqlite_version)
    q = db.execute("SELECT gpt_quantize('demo', 'demo8', 'q8_0')").fetchone()[0]
    check("quantize", isinstance(q, str))
    g8 = db.execute("SELECT gpt_generate('日本', '{\"model\": \"demo8\"}')").fetchone()[0]
    check("generate-q8_0", isinstance(g8, str))
    check("drop", db.execute("SELECT gpt_drop('demo8')").fetchone() is not None)
    covered |= {"gpt_version", "gpt_debug", "gpt_quantize", "gpt_drop"}

    # ------------------------------------------------ GGUF out and back in
    gguf = os.path.join(tempfile.mkdtemp(prefix="gpt-gguf-"), "demo.gguf")
    e = db.execute("SELECT gpt_export('demo', ?)", (gguf,)).fetchone()[0]
    check("export", isinstance(e, str) and e.startswith("exported 'demo'"), repr(e))
    i = db.execute("SELECT gpt_import('demo-gguf', ?)", (gguf,)).fetchone()[0]
    check("import-gguf", isinstance(i, str) and "GGUF v3" in i, repr(i))
    same = db.execute(
        "SELECT count(*) FROM gpt_tensors a JOIN gpt_tensors b USING (name) WHERE "
        "a.model = 'demo' AND b.model = 'demo-gguf' AND a.data = b.data").fetchone()[0]
    check("gguf tensors bit-identical", same == db.execute(
        "SELECT count(*) FROM gpt_tensors WHERE model = 'demo'").fetchone()[0], str(same))
    g1, g2 = (db.execute("SELECT gpt_generate('Hi', ?)", (
        json.dumps({"model": m, "temperature": 0, "max_tokens": 8}),)).fetchone()[0]
        for m in ("demo", "demo-gguf"))
    check("gguf same greedy text", g1 == g2, f"{g1!r} {g2!r}")
    try:
        db.execute("SELECT gpt_export('demo', ?)", (gguf,)).fetchone()
        check("export refuses an existing file", False)
    except sqlite3.OperationalError as err:
        check("export refuses an existing file", "exists" in str(err), str(err))
    db.execute("SELECT gpt_drop('demo-gguf')").fetchone()
    os.unlink(gguf)

    # ------------------------------------------------ names and paths as given
    # Summaries and error messages echo names, paths and options: ill-formed
    # UTF-8 in them reads back as U+FFFD (Python raised on the whole fetch),
    # and a new model's name must be valid UTF-8 with no NUL (a NUL cut
    # 'a\0b' to 'a').
    bad = b"x\xff\xfe"
    odd = os.path.join(os.path.dirname(gguf).encode(), b"demo-\xff.gguf")
    e = db.execute("SELECT gpt_export('demo', CAST(? AS TEXT))", (odd,)).fetchone()[0]
    check("export odd path", isinstance(e, str) and e.endswith(
        f"to {os.path.dirname(gguf)}/demo-\ufffd.gguf (GGUF v3, gpt2)"), repr(e))
    # the path kept in gpt_models.source reads back too (its raw bytes had
    # made Python raise on the fetch). Found by review.
    db.execute("SELECT gpt_import('demo-odd', CAST(? AS TEXT))", (odd,)).fetchone()
    src = db.execute("SELECT source FROM gpt_models WHERE name = 'demo-odd'").fetchone()[0]
    check("import odd path source", src.endswith("/demo-\ufffd.gguf"), repr(src))
    db.execute("SELECT gpt_drop('demo-odd')").fetchone()
    os.unlink(odd)
    os.rmdir(os.path.dirname(gguf))
    for what, sql, args, want in [
        ("quantize", "SELECT gpt_quantize('demo', CAST(? AS TEXT), 'f16')", (bad,),
         "gpt_quantize: the destination model name must be valid UTF-8 with no NUL character"),
        ("quantize-nul", "SELECT gpt_quantize('demo', 'a' || char(0) || 'b', 'f16')", (),
         "gpt_quantize: the destination model name must be valid UTF-8 with no NUL character"),
        ("import", "SELECT gpt_import(CAST(? AS TEXT), ?)", (bad, demo),
         "gpt_import: the model name must be valid UTF-8 with no NUL character"),
        ("generate", "SELECT gpt_generate('Hi', CAST(? AS TEXT))",
         (b'{"model": "x\xff"}',), "gpt_generate: no model named 'x\ufffd' in gpt_models"),
        ("tokens", "SELECT * FROM gpt_tokens('Hi', CAST(? AS TEXT))",
         (b'{"model": "x\xff"}',), "gpt_tokens: no model named 'x\ufffd' in gpt_models"),
        ("export", "SELECT gpt_export(CAST(? AS TEXT), 'nowhere.gguf')", (bad,),
         "gpt_export: the model name must be valid UTF-8 with no NUL character"),
        # a name cut at its NUL had named another model: gpt_drop dropped 'demo'
        ("drop-nul", "SELECT gpt_drop('demo' || char(0) || 'x')", (),
         "gpt_drop: the model name must be valid UTF-8 with no NUL character"),
        ("quantize-src-nul", "SELECT gpt_quantize('demo' || char(0) || 'x', 'q', 'f16')", (),
         "gpt_quantize: the source model name must be valid UTF-8 with no NUL character"),
        ("export-nul", "SELECT gpt_export('demo' || char(0) || 'x', 'nowhere.gguf')", (),
         "gpt_export: the model name must be valid UTF-8 with no NUL character")]:
        try:
            db.execute(sql, args).fetchall()
            check(f"name {what}", False, "no error")
        except sqlite3.OperationalError as err:
            check(f"name {what}", str(err) == want, repr(str(err)))
    # a text file over the connection's length limit is named with the limit
    # (SQLite's JSON functions cannot read it: it read as "not valid JSON")
    low = connect()
    low.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 200000)
    try:
        low.execute("SELECT gpt_import('m', ?)", (demo,)).fetchall()
        check("import under a length limit", False, "no error")
    except sqlite3.Error as err:
        check("import under a length limit", str(err).startswith(
            "gpt_import: model 'm': vocab.json: ") and str(err).endswith(
            "bytes is over this connection's SQLITE_LIMIT_LENGTH of 200000") and
            getattr(err, "sqlite_errorcode", None) == 18, f"{type(err).__name__} {err}")
    # so is a safetensors header, read before the tokenizer (it read as
    # "not valid JSON", SQLITE_ERROR)
    small = model_dir("pyheader", "--arch", "llama", "--layers", "1", "--heads", "2", "--embd",
                      "32", "--ctx", "64", "--vocab", "600")
    with open(os.path.join(small, "model.safetensors"), "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    low.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, header - 1)
    try:
        low.execute("SELECT gpt_import('m', ?)", (small,)).fetchall()
        check("header under a length limit", False, "no error")
    except sqlite3.Error as err:
        check("header under a length limit", str(err) ==
              f"gpt_import: model 'm': model.safetensors: a header of {header} bytes is over "
              f"this connection's SQLITE_LIMIT_LENGTH of {header - 1}" and
              getattr(err, "sqlite_errorcode", None) == 18, f"{type(err).__name__} {err}")
    # a result over the limit is SQLITE_TOOBIG (18), not out of memory
    low.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 20)
    try:
        low.execute("SELECT gpt_debug()").fetchall()
        check("debug over the length limit", False, "no error")
    except sqlite3.Error as err:
        check("debug over the length limit", getattr(err, "sqlite_errorcode", None) == 18,
              f"{type(err).__name__} {err} {getattr(err, 'sqlite_errorcode', None)}")
    # token lists, text, generations and embeddings longer than the limit name
    # the function, model and limit (generations and embeddings gave SQLite's
    # bare "string or blob too big"; a message is a string too: at a limit of
    # 20 SQLite drops it)
    low.close()
    gen = '{"max_tokens": 300, "temperature": 0}'
    batch = "SELECT 1, 'ROMEO:'"
    ids = "[" + ",".join(["50256"] * 40) + "]"
    old_limit = db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 400)
    for what, sql, args, limit in [
            ("gpt_tokenize", "SELECT gpt_tokenize(?)", ("a b " * 90,), 400),
            ("gpt_detokenize", "SELECT gpt_detokenize(?)", (ids,), 400),
            ("gpt_detokenize_bytes", "SELECT gpt_detokenize_bytes(?)", (ids,), 400),
            ("gpt_generate", "SELECT gpt_generate('ROMEO:', ?)", (gen,), 400),
            ("gpt_generate_bytes", "SELECT gpt_generate_bytes('ROMEO:', ?)", (gen,), 400),
            ("gpt_batch", "SELECT output FROM gpt_batch(?, ?)", (batch, gen), 400),
            ("gpt_batch", "SELECT bytes FROM gpt_batch(?, ?)", (batch, gen), 400),
            ("gpt_embed", "SELECT gpt_embed('x')", (), 200)]:  # 64 floats are 256 bytes
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)
        try:
            db.execute(sql, args).fetchall()
            check(f"{what} over the length limit", False, "no error")
        except sqlite3.Error as err:
            check(f"{what} over the length limit",
                  str(err) == f"{what}: model 'demo': the result is over SQLite's length "
                  f"limit of {limit} bytes (SQLITE_LIMIT_LENGTH)" and
                  getattr(err, "sqlite_errorcode", None) == 18, str(err))
    db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, old_limit)
    check("names stay valid", db.execute(
        "SELECT count(*) FROM gpt_models WHERE name NOT IN ('demo')").fetchone()[0] == 0)
    covered.add("gpt_export")

    # ------------------------------------------------ interrupts
    # Connection.interrupt() from another thread while one call generates
    # (a window of 1024): the call stops with its own "interrupted"
    # error within a token step, and the connection works on. On SQLite 3.41+
    # the extension asks sqlite3_is_interrupted(); on 3.40 it runs a trivial
    # statement (tests/hostile.test also interrupts there from a progress
    # handler, which cannot fire inside a call on 3.41+).
    big = model_dir("pyinterrupt", "--layers", "2", "--heads", "4", "--embd", "64",
                    "--ctx", "1024", "--seed", "7")
    idb = connect()
    idb.execute("SELECT gpt_import('big', ?)", (big,))
    idb.execute("SELECT gpt_generate('Hello', '{\"max_tokens\": 1}')")  # weights loaded
    # the interrupt comes at a fifth of an uninterrupted run's time (at most
    # 0.3 s), so it lands inside the generation on a machine of any speed
    t_full = time.time()
    idb.execute("SELECT gpt_generate('Hello', '{\"max_tokens\": 1000}')").fetchone()
    delay = max(0.02, min(0.3, (time.time() - t_full) / 5))
    rows_many = ("(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 4000) "
              "SELECT 'row ' || i || ' of text to summarize' AS value FROM c)")
    for f, sql, exact in [
        ("gpt_generate", "SELECT gpt_generate('Hello', '{\"max_tokens\": 1000}')", True),
        ("gpt_generate_bytes", "SELECT gpt_generate_bytes('Hi', '{\"max_tokens\": 1000}')", True),
        ("gpt_generate_tokens",
         "SELECT count(*) FROM gpt_generate_tokens('Hello', '{\"max_tokens\": 1000}')", True),
        ("gpt_attention", "SELECT count(*) FROM gpt_attention('Hello', '{\"generate\": 1000}')",
         False),
        ("gpt_attention_svg", "SELECT gpt_attention_svg('Hello', '{\"generate\": 1000}')", True),
        ("gpt_summarize", f"SELECT gpt_summarize(value, '{{\"max_tokens\": 480}}') FROM {rows_many}",
         False),
        ("gpt_batch", "SELECT count(*) FROM gpt_batch('SELECT 1, ''Hello'' UNION ALL "
         "SELECT 2, ''Hi''', '{\"max_tokens\": 1000}')", True),
        # one word of 3 MB: seconds of BPE, which the tokenizer interrupts
        ("gpt_token_count", "SELECT gpt_token_count(printf('%.*c', 3000000, 'a'))", True)]:
        timer = threading.Timer(delay, idb.interrupt)
        t0 = time.time()
        timer.start()
        try:
            idb.execute(sql).fetchall()
            outcome = "finished"
        except sqlite3.OperationalError as ex:
            outcome = str(ex)
        timer.join()
        dt = time.time() - t0
        # the table and the aggregate may also be stopped by SQLite between rows
        pattern = f"{f}: model 'big': interrupted" if exact else f"({f}: (model 'big': )?)?interrupted"
        check(f"interrupt {f}", re.fullmatch(pattern, outcome) is not None and dt < 5.0,
              f"{outcome!r} after {dt:.2f} s")
        check(f"after interrupt {f}",
              idb.execute("SELECT gpt_token_count('ok')").fetchone()[0] == 1)
    idb.close()
    covered.add("interrupts")
    print(f"  interrupts: 8 calls ({time.time() - t_start:.1f} s)")

    # ------------------------------------------------ the "threads" option
    # {"threads": 1} keeps the pool's workers idle in the scoring functions
    # too: CPU time of this process's other threads, from /proc (Linux only)
    if os.path.isdir("/proc/self/task"):
        def worker_ticks():
            total = 0
            for tid in os.listdir("/proc/self/task"):
                if int(tid) == threading.get_native_id():
                    continue
                try:
                    with open(f"/proc/self/task/{tid}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()
                total += int(fields[11]) + int(fields[12])
            return total
        wide = model_dir("pythreads", "--layers", "2", "--heads", "4", "--embd", "256",
                         "--ctx", "512", "--seed", "7")
        tdb = connect()
        tdb.execute("SELECT gpt_import('wide', ?)", (wide,))
        with open(os.path.join(ROOT, "tests", "data", "tinyshakespeare.txt")) as f:
            verse = f.read(6000)
        for f in ["gpt_logprob", "gpt_perplexity"]:
            tdb.execute(f"SELECT {f}('warm up', '{{\"model\": \"wide\"}}')").fetchone()
            before = worker_ticks()
            t0 = time.process_time()
            tdb.execute(f"SELECT {f}(?, '{{\"model\": \"wide\", \"threads\": 1}}')",
                        (verse,)).fetchone()
            spent = time.process_time() - t0
            idle = worker_ticks() - before
            check(f"threads 1 in {f}", idle <= 2 and spent > 0.2,
                  f"workers {idle} ticks while the call took {spent:.2f} s of CPU")
        tdb.close()
    else:
        skip("the threads option's check", "no /proc/self/task")

    # ------------------------------------------------ fork
    # A child forked after the parent's passes started the pool's workers
    # (multiprocessing's default start method, a forking server) has none
    # of them: its 2-thread pass waited for them forever. It must give the
    # parent's text.
    fdb = connect()
    fdb.execute("SELECT gpt_import('f', ?)", (model_dir("pyfork", "--layers", "2", "--heads", "4",
                                                         "--embd", "64", "--ctx", "64"),))
    q = "SELECT gpt_generate('Hello world', '{\"max_tokens\": 8, \"temperature\": 0, \"threads\": 2}')"
    want = fdb.execute(q).fetchone()[0]
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(rfd)
            got = fdb.execute(q).fetchone()[0]
            os.write(wfd, got.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    deadline = time.time() + 60
    status = None
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    got = os.read(rfd, 1 << 16).decode()
    os.close(rfd)
    check("fork: the child's pass", status == 0 and got == want, f"status {status}, {got!r} vs {want!r}")
    fdb.close()

    # ------------------------------------------------ an untrusted schema
    # A file whose CHECK calls gpt_generate (written as an attacker would,
    # through writable_schema without the extension), opened with the
    # extension loaded through the C API before any statement, as
    # sqlite3.Connection.load_extension does: SQLite 3.50+ refuses the
    # schema ('malformed database schema'); older versions accept it and an
    # INSERT runs the model (README, Security). Measured on 3.40.1 and 3.53.2.
    evil = os.path.join(BUILD, "testdb", "python-evil.db")
    os.makedirs(os.path.dirname(evil), exist_ok=True)
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(evil + suffix):
            os.remove(evil + suffix)
    e = sqlite3.connect(evil)
    e.execute("CREATE TABLE checked(x)")
    e.execute("PRAGMA writable_schema = ON")
    e.execute("UPDATE sqlite_schema SET sql = 'CREATE TABLE checked(x CHECK "
              "(gpt_generate(x) IS NOT NULL))' WHERE name = 'checked'")
    e.commit()
    e.close()
    e = sqlite3.connect(evil)
    e.enable_load_extension(True)
    e.load_extension(EXT)
    new_sqlite = tuple(int(x) for x in sqlite3.sqlite_version.split(".")) >= (3, 50, 0)
    try:
        e.execute("INSERT INTO checked VALUES ('x')")
        e.commit()
        outcome = "ran"
    except sqlite3.DatabaseError as ex:
        outcome = str(ex)
    e.close()
    if new_sqlite:
        check("untrusted-check", outcome ==
              "malformed database schema (checked) - unsafe use of gpt_generate()", outcome)
    else:
        # the CHECK called gpt_generate, which found no model in that file
        check("untrusted-check", outcome.startswith("gpt_generate: no model"), outcome)

    # A generated column that calls gpt_drop, in a schema read before the
    # extension is loaded (a PRAGMA first, as journal_mode=WAL): SQLite
    # checks DIRECTONLY only as it resolves a name, and there the name was
    # none yet, so a plain SELECT of the column dropped the model. The
    # extension has the connection read its schema again as it loads, which
    # refuses it, on every version.
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(evil + suffix):
            os.remove(evil + suffix)
    e = sqlite3.connect(evil)
    e.enable_load_extension(True)
    e.load_extension(EXT)
    e.execute("SELECT gpt_import('m', ?)", (model_dir("pyevil", "--layers", "1", "--heads", "2", "--embd", "16", "--ctx", "32"),))
    e.execute("CREATE TABLE t(a)")
    e.execute("INSERT INTO t VALUES (1)")
    e.execute("PRAGMA writable_schema = ON")
    e.execute("UPDATE sqlite_schema SET sql = 'CREATE TABLE t(a, g AS (gpt_drop(''m'')))' "
              "WHERE name = 't'")
    e.commit()
    e.close()
    def select_t_after_load(first):
        """SELECT * FROM t of the evil file, the extension loaded after the
        statement first ran (stepped once, left open): its rows or error."""
        conn = sqlite3.connect(evil)
        cur = conn.execute(first)
        cur.fetchone()
        conn.enable_load_extension(True)
        conn.load_extension(EXT)
        try:
            got = repr(conn.execute("SELECT * FROM t").fetchall())
        except sqlite3.DatabaseError as ex:
            got = str(ex)
        cur.close()
        conn.close()
        return got
    outcome = select_t_after_load("PRAGMA journal_mode")  # reads the schema, then ends
    e = sqlite3.connect(evil)
    models = e.execute("SELECT count(*) FROM gpt_models").fetchone()[0]
    e.close()
    check("untrusted-gencol", outcome.startswith("malformed database schema (t)") and models == 1,
          f"{outcome}; models left {models}")
    # Loaded while a cursor of the connection is still open, the schema is
    # not read again (the cursor's statement runs on it): a writer called from
    # such a generated column refuses, and the file it names is untouched.
    victim = evil + ".victim"
    with open(victim, "w") as f:
        f.write("precious")
    e = sqlite3.connect(evil)
    e.execute("PRAGMA writable_schema = ON")
    e.execute("UPDATE sqlite_schema SET sql = 'CREATE TABLE t(a, g AS (gpt_export(''m'', ' || "
              "quote(?) || ', ''{\"replace\": true}'')))' WHERE name = 't'", (victim,))
    e.commit()
    e.close()
    # a statement still running as the extension loads
    outcome = select_t_after_load("SELECT name FROM sqlite_schema")
    with open(victim) as f:
        kept = f.read()
    check("untrusted-gencol-cursor", outcome.startswith(
        "gpt_export: model 'm': the schema's main.t calls a function that writes") and
        kept == "precious", f"{outcome}; file {kept!r}")
    # the same with a row writer: gpt_drop refuses under its write lock (a
    # read of the schema before the lock kept it from waiting out another
    # connection's), and the model's rows stay (they had been dropped); its
    # name quoted and a comment before the parenthesis (the scan had read
    # text, and a comment there got past it)
    e = sqlite3.connect(evil)
    e.execute("PRAGMA writable_schema = ON")
    e.execute("UPDATE sqlite_schema SET sql = 'CREATE TABLE t(a, g AS (\"gpt_drop\"/**/(''m'')))' "
              "WHERE name = 't'")
    e.commit()
    e.close()
    outcome = select_t_after_load("SELECT name FROM sqlite_schema")
    e = sqlite3.connect(evil)
    models = e.execute("SELECT count(*) FROM gpt_models").fetchone()[0]
    e.close()
    check("untrusted-gencol-cursor-drop", outcome.startswith(
        "gpt_drop: model 'm': the schema's main.t calls a function that writes") and
        models == 1, f"{outcome}; models left {models}")

    # ------------------------------------------------ training
    # a byte-level BPE and a 1-layer model learned from CJK and emoji rows:
    # the summaries, and the new model's text, read as str
    tdb = connect()
    tdb.execute("CREATE TABLE lines(body TEXT)")
    tdb.executemany("INSERT INTO lines VALUES (?)",
                    [(f"line {i}: the cat sat on the mat, 日本語のテキスト 🙂 café",) for i in range(200)])
    summary = tdb.execute(
        "SELECT gpt_train_tokenizer('tk', 'SELECT body FROM lines', 300)").fetchone()[0]
    check("gpt_train_tokenizer", isinstance(summary, str) and "tk" in summary, repr(summary))
    summary = tdb.execute(
        "SELECT gpt_train('tm', 'SELECT body FROM lines', '{\"tokenizer\": \"tk\", "
        "\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 16, \"n_ctx\": 16, \"steps\": 4, "
        "\"batch_size\": 2, \"checkpoint_every\": 2}')").fetchone()[0]
    check("gpt_train", isinstance(summary, str) and "steps 0 to 4 of 4" in summary, repr(summary))
    text = tdb.execute("SELECT gpt_generate('日本', '{\"model\": \"tm\", \"max_tokens\": 8, "
                       "\"seed\": 3}')").fetchone()[0]
    check("gpt_train model generates", isinstance(text, str), repr(text))
    tdb.close()
    covered.update({"gpt_train", "gpt_train_tokenizer"})

    registered = {r[0] for r in db.execute(
        "SELECT name FROM pragma_function_list WHERE name LIKE 'gpt%' "
        "UNION SELECT name FROM pragma_module_list WHERE name LIKE 'gpt%'")}
    check("every function read", registered <= covered,
          f"not read here: {sorted(registered - covered)}")
    db.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a raise is a failure, not a crash of make test
        import traceback
        traceback.print_exc()
        fail("test_clients.py", repr(e))
    finish("test_clients.py")
