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


def thinking():
    """A model that reasons whatever it is told: a bigram chain, its attention
    and MLP silenced (o_proj and down_proj zero), each token's embedding one
    axis of its own and the head mapping that axis to the next token:
    "=" -> "<think>" -> "abc" -> "</think>" -> " xyz" -> " xyz" ..., and ">"
    (the end of a prompt that opens the block) -> "abc". gpt_summarize keeps
    what follows "</think>"; a summary that is all reasoning is an error."""
    d = os.path.join(BUILD, "models", "pythinking")
    os.makedirs(d, exist_ok=True)
    subprocess.run([os.path.join(BUILD, "mkmodel"), d, "--arch", "qwen2", "--untied",
                    "--layers", "1", "--heads", "2", "--embd", "16", "--vocab", "300",
                    "--ctx", "128", "--seed", "2"], check=True, stdout=subprocess.DEVNULL)
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(os.path.join(BUILD, "gpt"))
    db.execute("SELECT gpt_import('think', ?)", (d,))
    V, C = 300, 16

    def byte_id(ch):
        return json.loads(db.execute("SELECT gpt_tokenize(?, '{\"model\": \"think\"}')",
                                     (ch,)).fetchone()[0])[0]

    axis = {byte_id("="): 1, byte_id(">"): 2, 256: 2, 257: 3, 258: 4, 259: 5}
    after = {1: 256, 2: 257, 3: 258, 4: 259, 5: 259, 0: 257}
    db.execute("BEGIN")
    db.execute("DELETE FROM gpt_merges WHERE model = 'think'")
    for tid, text in [(256, "<think>"), (257, "abc"), (258, "</think>"), (259, " xyz")]:
        db.execute("UPDATE gpt_vocab SET token = ? WHERE model = 'think' AND token_id = ?",
                   (byte_level(text), tid))

    def put(name, v):
        db.execute("UPDATE gpt_tensors SET data = ? WHERE model = 'think' AND name = ?",
                   (struct.pack(f"<{len(v)}f", *v), name))

    put("model.layers.0.self_attn.o_proj.weight", [0.0] * (C * C))
    blob = db.execute("SELECT data FROM gpt_tensors WHERE model = 'think' AND "
                      "name = 'model.layers.0.mlp.down_proj.weight'").fetchone()[0]
    put("model.layers.0.mlp.down_proj.weight", [0.0] * (len(blob) // 4))
    embed = [0.0] * (V * C)
    for t in range(V):
        embed[t * C + axis.get(t, 0)] = 100.0
    put("model.embed_tokens.weight", embed)
    put("model.norm.weight", [1.0] * C)
    head = [0.0] * (V * C)
    for a, t in after.items():
        head[t * C + a] = 5.0
    put("lm_head.weight", head)
    db.execute("COMMIT")

    def summary(text, template, max_tokens):
        opt = json.dumps({"model": "think", "temperature": 0, "max_tokens": max_tokens,
                          "template": template})
        try:
            return db.execute("SELECT gpt_summarize(?, ?)", (text, opt)).fetchone()[0]
        except sqlite3.Error as e:
            return "error: " + str(e)

    gen = db.execute("SELECT gpt_generate('A=', ?)", (json.dumps(
        {"model": "think", "temperature": 0, "max_tokens": 5}),)).fetchone()[0]
    check("the chain", gen == "<think>abc</think> xyz xyz", repr(gen))
    got = summary("A", "{text}=", 5)
    check("a reasoning block is dropped", got == "xyz xyz", repr(got))
    got = summary("A", "{text}=<think>", 4)
    check("after a prompt that opens it, all up to </think>", got == "xyz xyz", repr(got))
    got = summary("A", "{text}=", 2)
    want = ("error: gpt_summarize: model 'think': the model reasoned for all of max_tokens (2) "
            "and wrote no summary (\"<think>\" without \"</think>\"); raise max_tokens")
    check("reasoning without its end is an error", got == want, repr(got))
    # the rows of a group summarized chunk by chunk: no reasoning carried
    db.execute("CREATE TEMP TABLE t(v)")
    db.executemany("INSERT INTO t VALUES (?)", [("row %d " % i + "w " * 40,) for i in range(6)])
    opt = json.dumps({"model": "think", "temperature": 0, "max_tokens": 5, "template": "{text}="})
    got = db.execute("SELECT gpt_summarize(v, ?) FROM t", (opt,)).fetchone()[0]
    check("chunks carry the summary, not the reasoning", got == "xyz xyz", repr(got))


if __name__ == "__main__":
    main()
    thinking()
    finish("test_summarize.py")
