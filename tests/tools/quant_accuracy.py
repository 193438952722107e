#!/usr/bin/python3
"""Accuracy cost of gpt_quantize's dtypes: top-1 agreement and KL divergence
of the next-token distribution against the f32 model, over a fixed text.

    /usr/bin/python3 tests/tools/quant_accuracy.py [BUILD_DIR] [STEPS]

Models: the demo model (models/shakespeare.db, trained, stored in f16: the
reference is that model as stored) and two generated test
models with random weights, a GPT-2 (n_embd 64) and a Llama (n_embd 256,
where q4_k and q6_k apply to every matrix). Steps: the first STEPS (40)
word prefixes of tests/data/tinyshakespeare.txt from character 3000 on (a
fixed, repeatable text; the demo model trained on it). At
each step the compact model's top-1 next token is compared with f32's, and
KL(f32 || compact) is computed over the full vocabulary in float64.
Prints one Markdown row per (model, dtype): what README.md shows.
"""
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile

build = sys.argv[1] if len(sys.argv) > 1 else "build"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 40
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def connect(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(os.path.join(build, "gpt"))
    return db


def dist(db, model, prompt, vocab):
    rows = db.execute("SELECT token_id, logit FROM gpt_next_tokens(?, ?, json_object('model', ?))",
                      (prompt, vocab, model)).fetchall()
    logits = {t: l for t, l in rows if l is not None and l > -1e30}
    mx = max(logits.values())
    lse = mx + math.log(sum(math.exp(l - mx) for l in logits.values()))
    top = max(logits, key=logits.get)
    return top, {t: l - lse for t, l in logits.items()}


def measure(db, ref, model, prompts, vocab):
    agree, kls = 0, []
    for p in prompts:
        t0, lp = dist(db, ref, p, vocab)
        t1, lq = dist(db, model, p, vocab)
        agree += t0 == t1
        kls.append(sum(math.exp(a) * (a - lq.get(t, -1e9)) for t, a in lp.items()))
    return agree / len(prompts), sum(kls) / len(kls), max(kls)


def main():
    with open(os.path.join(root, "tests", "data", "tinyshakespeare.txt")) as f:
        text = f.read()[3000:9000]
    words = re.findall(r"\S+", text)
    prompts = [" ".join(words[:i + 1]) for i in range(steps)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "acc.db")
        shutil.copyfile(os.path.join(root, "models", "shakespeare.db"), path)
        db = connect(path)
        models = [("demo (trained, n_embd 192)", "shakespeare", 1024)]
        for name, args in (
                ("gpt2 (random, n_embd 64)", ["--layers", "2", "--heads", "4", "--embd", "64",
                                              "--ctx", "128", "--seed", "82"]),
                ("llama (random, n_embd 256)", ["--arch", "llama", "--layers", "2", "--heads",
                                                "4", "--kv-heads", "2", "--embd", "256",
                                                "--ffn", "512", "--ctx", "128", "--seed", "5"])):
            folder = os.path.join(tmp, name.split()[0])
            subprocess.run([os.path.join(build, "mkmodel"), folder] + args, check=True,
                           stdout=subprocess.DEVNULL)
            db.execute("SELECT gpt_import(?, ?)", (name.split()[0], folder))
            models.append((name, name.split()[0], 50260))
        print("| model | dtype | bytes of weights | top-1 agreement | mean KL | max KL |")
        print("|---|---|---:|---:|---:|---:|")
        for label, name, vocab in models:
            ref = name
            for dt in ("q8_0", "q4_k", "q4_0"):
                db.execute("SELECT gpt_quantize(?, ?, ?)", (name, f"{name}-{dt}", dt))
                nbytes = db.execute("SELECT sum(length(data)) FROM gpt_tensors WHERE model = ?",
                                    (f"{name}-{dt}",)).fetchone()[0]
                top1, kl, klmax = measure(db, ref, f"{name}-{dt}", prompts, vocab)
                print(f"| {label} | {dt} | {nbytes} | {top1:.3f} | {kl:.4f} | {klmax:.4f} |")


if __name__ == "__main__":
    main()
