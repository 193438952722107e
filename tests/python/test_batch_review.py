"""The sampler against a reference, and gpt_batch from a client, on the
shipped demo model (models/shakespeare.db, vocabulary 1,024):

- top_k and top_p keep exactly the tokens Hugging Face's order of filters
  keeps (temperature, then the k most likely, then the smallest prefix of
  those whose mass reaches p of theirs), computed here from gpt_next_tokens'
  full distribution: every draw is in that set, and each token of the set
  likely enough shows up. top_p once measured p against the mass of the
  tokens above its cutoff only, so a nucleus came out one token short;
- an interrupt from another thread stops gpt_batch and gpt_generate;
- a gpt_batch whose query runs its own text again (a TEMP view over it, or a
  query read from a table) is an error, not a stack overflow;
- a million NULL prompts stream;
- rows that begin alike compute the beginning once (cached_tokens), and a
  query with parameters is refused.

Debian's python3 and its sqlite3 module.

    python3 tests/python/test_batch_review.py BUILD_DIR
"""
import json
import math
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, fail, finish  # noqa: E402

build = sys.argv[1] if len(sys.argv) > 1 else "build"
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ext = os.path.join(build, "gpt")


def connect(path, same_thread=True):
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=same_thread)
    db.enable_load_extension(True)
    db.load_extension(ext)
    return db


def reference(dist, temperature, top_k, top_p):
    """{token_id: probability} of the tokens the filters keep, renormalized.
    dist: [(token_id, logit)], the whole vocabulary."""
    mx = max(lg for _, lg in dist)
    w = {t: math.exp((lg - mx) / temperature) for t, lg in dist}
    z = sum(w.values())
    prob = {t: v / z for t, v in w.items()}
    order = sorted(prob, key=lambda t: (-prob[t], t))
    if 0 < top_k < len(order):
        order = order[:top_k]
    mass = sum(prob[t] for t in order)
    if top_p < 1:
        keep, acc = [], 0.0
        for t in order:
            keep.append(t)
            acc += prob[t]
            if acc >= top_p * mass:
                break
        order = keep
    z = sum(prob[t] for t in order)
    return {t: prob[t] / z for t in order}


def first_tokens(db, prompt, opts, seeds):
    """The first sampled token id for each seed (None for an end of text)."""
    out = []
    for s in seeds:
        o = dict(opts, seed=s, max_tokens=1)
        out.append(db.execute("SELECT token_id FROM gpt_generate_tokens(?, ?) WHERE step = 1",
                              (prompt, json.dumps(o))).fetchone()[0])
    return out


def check_sampler(db):
    prompts = ["KING", "First Citizen:\nBefore we proceed any further, hear me", "The"]
    n_draws = 240
    for prompt in prompts:
        dist = db.execute("SELECT token_id, logit FROM gpt_next_tokens(?, 100000)",
                          (prompt,)).fetchall()
        check(f"{prompt!r}: whole vocabulary", len(dist) == 1024, str(len(dist)))
        probs = sorted((math.exp(lg - max(x for _, x in dist)) for _, lg in dist), reverse=True)
        z = sum(probs)
        probs = [p / z for p in probs]
        cum = [sum(probs[:j + 1]) for j in range(len(probs))]
        cases = []
        # p just above the mass of the top one and top two: the nucleus is
        # two and three tokens (a p measured against less than the whole
        # distribution leaves the last one out)
        for j in (0, 1):
            if cum[j] * 1.002 < cum[j + 1] and cum[j] * 1.002 < 1:
                cases.append(dict(temperature=1, top_p=cum[j] * 1.002))
        cases += [
            dict(temperature=1, top_p=0.9),
            dict(temperature=0.7, top_p=0.5),
            dict(temperature=1, top_k=2),
            dict(temperature=1.5, top_k=5),
            dict(temperature=1, top_k=3, top_p=0.95),
        ]
        # top_k above the number of tokens that pass top_p's cutoff: the
        # top-k set's mass includes tokens below it
        cutoff = (1 - 0.6) / 1023
        n_above = sum(1 for p in probs if p >= cutoff)
        k = min(n_above + 40, 1000)
        mass_k = sum(probs[:k])
        for j in (0, 1):
            p = cum[j] * 1.002 / mass_k
            if p < 1 and cum[j] * 1.002 < cum[j + 1]:
                cases.append(dict(temperature=1, top_k=k, top_p=p))
        for opts in cases:
            ref = reference(dist, opts["temperature"], opts.get("top_k", 0), opts.get("top_p", 1))
            got = first_tokens(db, prompt, opts, range(n_draws))
            name = f"{prompt[:12]!r} {json.dumps(opts)}"
            outside = sorted({t for t in got if t not in ref})
            check(f"{name}: draws in the kept set", not outside,
                  f"drawn but not kept: {outside[:5]}; kept {len(ref)}")
            # each kept token of probability >= 6% shows up in 240 draws
            # (missing one by chance: under 1e-6)
            missing = sorted(t for t, q in ref.items() if q >= 0.06 and t not in got)
            check(f"{name}: the kept set is drawn", not missing,
                  f"never drawn: {missing} of {sorted(ref, key=ref.get, reverse=True)[:6]} "
                  f"({[round(ref[t], 3) for t in missing]})")
    # top_k at or above the vocabulary is off, top_p 1 is off: the same draws
    base = {"temperature": 1.0, "max_tokens": 24}
    want = [db.execute("SELECT gpt_generate('KING', ?)", (json.dumps(dict(base, seed=s)),))
            .fetchone()[0] for s in range(4)]
    for extra in ({"top_k": 1024}, {"top_k": 1000000}, {"top_p": 1}, {"top_k": 0}):
        got = [db.execute("SELECT gpt_generate('KING', ?)", (json.dumps(dict(base, seed=s, **extra)),))
               .fetchone()[0] for s in range(4)]
        check(f"{extra} is off", got == want, f"{got} {want}")
    # the extreme seeds are accepted and are different generators
    a, b = (db.execute("SELECT gpt_generate('KING', ?)", (json.dumps(dict(base, seed=s)),))
            .fetchone()[0] for s in (-2**63, 2**63 - 1))
    check("extreme seeds", isinstance(a, str) and isinstance(b, str) and a != b, f"{a!r} {b!r}")
    # a huge temperature is close to uniform: many distinct first tokens
    got = first_tokens(db, "KING", {"temperature": 100}, range(60))
    check("temperature 100 spreads", len(set(got)) > 40, str(len(set(got))))


def check_interrupt(path):
    long_query = ("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
                  "WHERE i < 1000000) SELECT i, 'ROMEO: ' || i FROM c")
    runs = [
        ("gpt_batch", "SELECT count(*) FROM gpt_batch(?, '{\"max_tokens\": 64, \"batch\": 64}')",
         (long_query,), "gpt_batch: model 'shakespeare': interrupted"),
        ("gpt_generate", "SELECT count(gpt_generate('ROMEO: ' || i, '{\"max_tokens\": 64}')) "
         "FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000000) "
         "SELECT i FROM c)", (), "gpt_generate: model 'shakespeare': interrupted"),
    ]
    for name, sql, args, want in runs:
        db = connect(path, same_thread=False)
        res = {}

        def run():
            try:
                res["rows"] = db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                res["err"] = str(e)
            res["t"] = time.monotonic()
        th = threading.Thread(target=run)
        th.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        db.interrupt()
        th.join(30)
        check(f"{name}: interrupted", res.get("err") == want, str(res)[:200])
        check(f"{name}: stops at once", "t" in res and res["t"] - t0 < 2.0,
              f"{res.get('t', t0 + 99) - t0:.2f} s")
        db.close()


def check_recursion(db):
    opts = '{"max_tokens": 2, "temperature": 0}'
    db.execute("CREATE TEMP VIEW selfref AS SELECT key, output FROM gpt_batch("
               "'SELECT * FROM selfref', '{\"max_tokens\": 2}')")
    db.execute("CREATE TEMP TABLE queries(q)")
    db.execute("INSERT INTO queries VALUES('SELECT b.key, b.output FROM queries, gpt_batch(queries.q) b')")
    for name, sql in (("TEMP view", "SELECT * FROM selfref"),
                      ("table of queries", "SELECT key FROM gpt_batch((SELECT q FROM queries))")):
        try:
            db.execute(sql).fetchall()
            check(f"recursion through a {name}", False, "no error")
        except sqlite3.Error as e:
            check(f"recursion through a {name}",
                  "the query calls gpt_batch, gpt_train or gpt_train_tokenizer 9 levels deep" in str(e), str(e)[-200:])
    # nesting that ends is fine: gpt_batch over gpt_batch's outputs, 8 deep
    q = "SELECT 1, 'ROMEO:'"
    for _ in range(8):
        q = f"SELECT key, output FROM gpt_batch('{q.replace(chr(39), chr(39) * 2)}', '{opts}')"
    try:
        rows = db.execute(q).fetchall()
        check("8 levels of gpt_batch", len(rows) == 1 and isinstance(rows[0][1], str), str(rows))
    except sqlite3.Error as e:
        fail("8 levels of gpt_batch", str(e))


def check_stream(db):
    t0 = time.monotonic()
    n, n_out = db.execute(
        "SELECT count(*), count(output) FROM gpt_batch('WITH RECURSIVE c(i) AS (SELECT 1 UNION "
        "ALL SELECT i + 1 FROM c WHERE i < 1000000) SELECT i, NULL FROM c', '{\"batch\": 256}')"
    ).fetchone()
    check("a million NULL prompts", (n, n_out) == (1000000, 0), f"{n} {n_out}")
    check("... stream in seconds", time.monotonic() - t0 < 30, f"{time.monotonic() - t0:.1f} s")


def check_shared(db):
    """Rows that begin alike and arrive together: the first computes the
    beginning, the others copy it (cached_tokens, an int here), with the
    outputs of gpt_generate; a query with parameters is refused."""
    instr = "KING: " + "my lord, " * 35
    db.execute("CREATE TEMP TABLE alike(id INTEGER PRIMARY KEY, body TEXT)")
    db.executemany("INSERT INTO alike(body) VALUES (?)", [(instr + f"row {i}",) for i in range(16)])
    n = db.execute("SELECT gpt_token_count(?)", (instr + "row",)).fetchone()[0] - 1
    opts = json.dumps({"max_tokens": 4, "temperature": 0, "batch": 16})
    rows = db.execute("SELECT b.key, b.cached_tokens, b.output = gpt_generate(a.body, ?2) "
                      "FROM gpt_batch('SELECT id, body FROM alike', ?1) b JOIN alike a ON a.id = b.key "
                      "ORDER BY b.key", (opts, json.dumps({"max_tokens": 4, "temperature": 0}))).fetchall()
    check("16 rows that begin alike", len(rows) == 16 and all(r[2] == 1 for r in rows), str(rows))
    check("... the first computes the beginning, 15 copy it",
          rows[0][1] == 0 and all(isinstance(r[1], int) and r[1] >= n for r in rows[1:]),
          f"{[r[1] for r in rows]} (beginning: {n} tokens)")
    try:
        db.execute("SELECT * FROM gpt_batch('SELECT id, body FROM alike WHERE id > ?')").fetchall()
        fail("a query with a parameter", "no error")
    except sqlite3.Error as e:
        check("a query with a parameter", "the query has a parameter, ?1" in str(e), str(e))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.db")
        shutil.copyfile(os.path.join(root, "models", "shakespeare.db"), path)
        db = connect(path)
        for part in (check_sampler, check_recursion, check_stream, check_shared):
            try:
                part(db)
            except Exception as e:  # noqa: BLE001
                fail(part.__name__, repr(e))
        db.close()
        try:
            check_interrupt(path)
        except Exception as e:  # noqa: BLE001
            fail("check_interrupt", repr(e))


if __name__ == "__main__":
    main()
    finish("test_batch_review.py")
