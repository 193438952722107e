#!/usr/bin/python3
"""gpt_summarize when a summary does not re-encode into the tokens it was
made of (run by make test).

    /usr/bin/python3 tests/python/test_summarize.py

A Qwen2-style model with the NFC normalizer, whose stored rows are edited as
a hostile database could be: ignore_merges on, no merges, and tokens whose
NFC form is longer than they are (U+1D160 is 4 bytes, 12 after NFC), with
weights that sample them. A summary carried into the next chunk is then cut
by decoding its first tokens, which gave more bytes than the summary had:
they were copied over it (a heap overflow that aborted the process), and the
tokens of summary, separator and template did not add up (the next prompt
went over the window). Each of 12 seeds must now give a summary.

Ends with "N passed, N failed" and exits 1 on any failure.
"""
import json
import os
import sqlite3
import struct
import subprocess
import sys
import unicodedata
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, finish  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"))
from gpt2_bytes import bytes_to_unicode  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")


def byte_level(s):
    """GPT-2's byte-to-unicode spelling of s's UTF-8 bytes (vocab.json form)."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in s.encode())


def main():
    d = os.path.join(BUILD, "models", "pysummarize")
    os.makedirs(d, exist_ok=True)
    subprocess.run([os.path.join(BUILD, "mkmodel"), d, "--arch", "qwen2", "--untied", "--nfc",
                    "--pattern", "llama3", "--vocab", "300", "--ctx", "128", "--seed", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(os.path.join(BUILD, "gpt"))
    db.execute("SELECT gpt_import('nfc', ?)", (d,))
    c = "\U0001D160"
    grow, spaces = "a" + c * 10, " x" * 32
    composed = unicodedata.normalize("NFC", c * 10)
    db.execute("BEGIN")
    db.execute("DELETE FROM gpt_merges WHERE model = 'nfc'")
    for tid, s in [(256, grow), (257, spaces), (258, composed)]:
        db.execute("UPDATE gpt_vocab SET token = ? WHERE model = 'nfc' AND token_id = ?",
                   (byte_level(s), tid))
    cfg = json.loads(db.execute("SELECT config FROM gpt_tokenizer WHERE model = 'nfc'")
                     .fetchone()[0])
    cfg["ignore_merges"] = True
    db.execute("UPDATE gpt_tokenizer SET config = ? WHERE model = 'nfc'", (json.dumps(cfg),))

    def edit(name, fn):
        blob = db.execute("SELECT data FROM gpt_tensors WHERE model = 'nfc' AND name = ?",
                          (name,)).fetchone()[0]
        v = list(struct.unpack(f"<{len(blob) // 4}f", blob))
        fn(v, len(v) // 300 if name.endswith(("embed_tokens.weight", "lm_head.weight")) else 0)
        db.execute("UPDATE gpt_tensors SET data = ? WHERE model = 'nfc' AND name = ?",
                   (struct.pack(f"<{len(v)}f", *v), name))

    def zero(v, _):
        v[:] = [0.0] * len(v)

    def embed(v, c):
        for t in range(300):
            v[t * c] = 100.0

    def norm(v, _):
        v[:] = [1.0] + [0.0] * (len(v) - 1)

    def head(v, c):
        for t in range(300):
            v[t * c] = -5.0
        v[256 * c], v[257 * c] = 2.0, 1.6  # the growing token, mostly

    edit("model.layers.0.self_attn.o_proj.weight", zero)
    edit("model.layers.0.mlp.down_proj.weight", zero)
    edit("model.embed_tokens.weight", embed)
    edit("model.norm.weight", norm)
    edit("lm_head.weight", head)
    db.execute("COMMIT")
    top = db.execute("SELECT token_id FROM gpt_next_tokens('Hello', 1, '{\"model\": \"nfc\"}')")
    check("the growing token leads", top.fetchone()[0] == 256)
    db.execute("CREATE TEMP TABLE d(v)")
    db.executemany("INSERT INTO d VALUES (?)",
                   [(f"Row {i}: the cat sat on the mat and then ran away quickly.",)
                    for i in range(12)])
    for seed in range(1, 13):
        opt = json.dumps({"model": "nfc", "temperature": 1, "max_tokens": 32, "seed": seed,
                          "template": "{text}\nTL;DR:"})
        try:
            s = db.execute("SELECT gpt_summarize(v, ?) FROM d", (opt,)).fetchone()[0]
            check(f"summary seed {seed}", isinstance(s, str) and len(s) > 0, repr(s))
        except sqlite3.Error as e:
            check(f"summary seed {seed}", False, str(e))


if __name__ == "__main__":
    main()
    finish("test_summarize.py")
