#!/usr/bin/python3
"""Writes tests/golden/NAME.json: float64 reference results for the test models.

  tests/ref/make_goldens.py            all models (builds build/mkmodel first)
  tests/ref/make_goldens.py small f16  some of them
  tests/ref/make_goldens.py --search small [FIRST LAST]
                                       try seeds, print their margins

Each model is generated with build/mkmodel into build/models/NAME, from the
arguments in MODELS below; the golden file records them, and the Tcl harness
(test_model_dir NAME) regenerates the model from the golden file, so the two
always agree. Models are not committed; the goldens are.

Golden JSON schema (floats have 9 significant digits):
{
  "schema": 1,
  "model": "small",
  "mkmodel_args": ["--layers","2",...],   arguments after OUTDIR
  "config": {"n_layer","n_head","n_embd","n_ctx","vocab_size",
             "layer_norm_epsilon","dtype","lm_head","prefix","legacy"},
  "n_params": 3460480,        weights held (tied head once, no legacy buffers)
  "min_gap": 0.05,            smallest "min_gap" of the cases
  "cases": [{
    "prompt": "Hello, my dog is a little",
    "ids": [15496, ...],      reference GPT-2 tokenization of prompt
    "top": [{"id","logit","prob"} x 20],  next token after the prompt,
                              logit order; prob = full softmax at T=1
    "top_min_gap": 0.01,      smallest gap between neighbours of top (and
                              the 21st): how far the top-20 order can be trusted
    "lse": 12.3,              log-sum-exp of the last logits
    "probe": [[id, logit], ...]  last logits at fixed ids (0, 50256, ...)
    "greedy": [ids],          argmax continuation, not stopped at 50256:
                              min(32, n_ctx - len(ids)) tokens
    "greedy_text": "...",     decoded greedy ids before the first 50256
                              (invalid UTF-8 as U+FFFD)
    "greedy_hex": "...",      the same bytes, upper-case hex (as SQL hex())
    "min_gap": 0.03,          smallest top1-top2 logit gap along the greedy
                              path (first step included)
    "logprob": -41.2,         sum over tokens 2..n of log p(id_i | ids before)
    "token_logprobs": [...],  those n-1 terms
    "perplexity": 900.1,      exp(-logprob/(n-1)); null for a 1-token prompt
    "embed_mean": [C floats], ln_f output averaged over the prompt's tokens
    "embed_last": [C floats], ln_f output of the last token
    "attention": [layer][head][query][key]   softmax probabilities, causal
                              rows (query q has q+1 keys); one case per model
  }, ...]
}
"""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

ROOT = R.ROOT
MKMODEL = os.path.join(ROOT, "build", "mkmodel")

# name -> mkmodel arguments. Seeds were picked (--search) so that every greedy
# step has a top1-top2 margin well above f32 error.
MODELS = {
    "small":   "--layers 2 --heads 4 --embd 64 --ctx 128 --dtype f32 --prefix --legacy --seed 82",
    "hd16":    "--layers 3 --heads 3 --embd 48 --ctx 64 --dtype f32 --lm-head --eps 0.001 --seed 104",
    "tinyctx": "--layers 1 --heads 2 --embd 32 --ctx 16 --dtype f32 --seed 4",
    "f16":     "--layers 2 --heads 2 --embd 64 --ctx 64 --dtype f16 --seed 78",
    "bf16":    "--layers 2 --heads 2 --embd 64 --ctx 64 --dtype bf16 --seed 131",
}

ONE_TOKEN = "Hello"
ATTN_PROMPT = "Hello, my dog is a little"
PROMPTS = [
    ONE_TOKEN,
    "The dog",
    ATTN_PROMPT,
    "The quick brown fox jumps over the lazy dog.",
    "café 🦙",
    "SQLite is a C-language library that implements a small, fast SQL database engine.",
    "Führer, naïve — “quotes” 日本語 и кириллица 🚀",
    " leading space,\ttab and\nnew line",
]
PROBE_IDS = [0, 1, 13, 198, 220, 464, 1000, 10000, 30000, 50255, 50256]
N_TOP = 20
N_GREEDY = 32
MIN_GAP = 1e-2


def gen_model(name, args):
    out = os.path.join(ROOT, "build", "models", name)
    os.makedirs(out, exist_ok=True)
    subprocess.run([MKMODEL, out] + args, check=True)
    # Same stamp as the Tcl harness writes, so it will not regenerate.
    with open(os.path.join(out, "mkmodel.args"), "w") as f:
        f.write(" ".join(args) + "\n")
    return out


def top2_gap(z):
    a, b = np.partition(z, -2)[-2:]
    return float(abs(b - a))


def greedy(m, ids):
    n = min(N_GREEDY, m.n_ctx - len(ids))
    seq, gaps = list(ids), []
    for _ in range(n):
        z = m.forward(seq, last_only=True)[0][-1]
        gaps.append(top2_gap(z))
        seq.append(int(np.argmax(z)))
    return seq[len(ids):], gaps


def model_prompts(m):
    # Leave room for a few greedy steps in small contexts.
    return [p for p in PROMPTS if len(m.tok.encode(p)) <= m.n_ctx - 4]


def run_case(m, prompt, want_attention):
    ids = m.tok.encode(prompt)
    logits, hf, attn = m.forward(ids, want_attention)
    last = logits[-1]
    lp, lse = R.log_softmax(last)
    order = np.argsort(-last, kind="stable")
    top = [{"id": int(i), "logit": float(last[i]), "prob": math.exp(lp[i])} for i in order[:N_TOP]]
    top_gap = float(min(last[order[k]] - last[order[k + 1]] for k in range(N_TOP)))
    lps_all, _ = R.log_softmax(logits)
    tlp = [float(lps_all[i - 1][ids[i]]) for i in range(1, len(ids))]
    g, gaps = greedy(m, ids)
    eos = g.index(50256) if 50256 in g else len(g)
    gbytes = m.tok.decode_bytes(g[:eos])
    case = {
        "prompt": prompt,
        "ids": ids,
        "top": top,
        "top_min_gap": top_gap,
        "lse": float(lse),
        "probe": [[i, float(last[i])] for i in PROBE_IDS if i < m.vocab_size],
        "greedy": g,
        "greedy_text": gbytes.decode("utf-8", errors="replace"),
        "greedy_hex": gbytes.hex().upper(),
        "min_gap": min(gaps),
        "logprob": float(sum(tlp)),
        "token_logprobs": tlp,
        "perplexity": math.exp(-sum(tlp) / len(tlp)) if tlp else None,
        "embed_mean": [float(x) for x in hf.mean(axis=0)],
        "embed_last": [float(x) for x in hf[-1]],
    }
    if want_attention:
        case["attention"] = [[[[float(x) for x in a[q, :q + 1]] for q in range(len(ids))]
                              for a in layer] for layer in attn]
    return case


def golden(name, args):
    m = R.Model(gen_model(name, args))
    flag = lambda f: f in args
    g = {
        "schema": 1,
        "model": name,
        "mkmodel_args": args,
        "config": {
            "n_layer": m.n_layer, "n_head": m.n_head, "n_embd": m.n_embd, "n_ctx": m.n_ctx,
            "vocab_size": m.vocab_size, "layer_norm_epsilon": m.eps,
            "dtype": args[args.index("--dtype") + 1] if flag("--dtype") else "f32",
            "lm_head": flag("--lm-head"), "prefix": flag("--prefix"), "legacy": flag("--legacy"),
        },
        "n_params": m.n_params(),
        "min_gap": None,
        "cases": [run_case(m, p, p == ATTN_PROMPT) for p in model_prompts(m)],
    }
    g["min_gap"] = min(c["min_gap"] for c in g["cases"])
    return g

# ---------------------------------------------------------------- JSON output

def fmt(x, depth=0):
    """Compact JSON: scalar lists on one line, floats to 9 digits."""
    ind = "  " * depth
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError("non-finite float in golden")
        return repr(float(f"{x:.9g}"))
    if isinstance(x, (bool, int, str)) or x is None:
        return json.dumps(x, ensure_ascii=False)
    if isinstance(x, dict):
        if all(not isinstance(v, (list, dict)) for v in x.values()):
            return "{" + ", ".join(f"{json.dumps(k)}: {fmt(v)}" for k, v in x.items()) + "}"
        items = [f"{ind}  {json.dumps(k)}: {fmt(v, depth + 1)}" for k, v in x.items()]
        return "{\n" + ",\n".join(items) + "\n" + ind + "}"
    if isinstance(x, list):
        if all(not isinstance(v, (list, dict)) for v in x):
            return "[" + ", ".join(fmt(v) for v in x) + "]"
        if all(isinstance(v, list) and len(v) <= 2 and all(not isinstance(e, (list, dict)) for e in v) for v in x):
            return "[" + ", ".join(fmt(v) for v in x) + "]"  # pairs such as probe
        return "[\n" + ",\n".join(ind + "  " + fmt(v, depth + 1) for v in x) + "\n" + ind + "]"
    raise TypeError(type(x))


def search(name, first, last):
    base = [a for a in MODELS[name].split()]
    i = base.index("--seed")
    for seed in range(first, last + 1):
        args = base[:i + 1] + [str(seed)] + base[i + 2:]
        m = R.Model(gen_model(f"{name}-search{os.getpid()}", args))
        gaps, distinct = [], []
        for p in model_prompts(m):
            g, gp = greedy(m, m.tok.encode(p))
            gaps.append(min(gp))
            distinct.append(len(set(g)))
        print(f"{name} seed {seed}: min_gap {min(gaps):.4f} distinct greedy ids {distinct}", flush=True)
    shutil.rmtree(os.path.join(ROOT, "build", "models", f"{name}-search{os.getpid()}"))


def main(argv):
    subprocess.run(["make", "-C", ROOT, "build/mkmodel"], check=True, stdout=subprocess.DEVNULL)
    if argv[1:2] == ["--search"]:
        first, last = (int(argv[3]), int(argv[4])) if len(argv) > 4 else (1, 20)
        search(argv[2], first, last)
        return 0
    if not R.tokenizer_check():
        return 1
    names = argv[1:] or list(MODELS)
    bad = 0
    os.makedirs(os.path.join(ROOT, "tests", "golden"), exist_ok=True)
    for name in names:
        g = golden(name, MODELS[name].split())
        path = os.path.join(ROOT, "tests", "golden", name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(fmt(g) + "\n")
        cfg = g["config"]
        print(f"{name:8s} L{cfg['n_layer']} H{cfg['n_head']} C{cfg['n_embd']} ctx{cfg['n_ctx']} "
              f"{cfg['dtype']:4s} params {g['n_params']:>8d}  cases {len(g['cases'])}  "
              f"min_gap {g['min_gap']:.4f}  top_min_gap "
              f"{min(c['top_min_gap'] for c in g['cases']):.2e}  -> tests/golden/{name}.json")
        for c in g["cases"]:
            print(f"    {len(c['ids']):2d} tok  gap {c['min_gap']:.4f}  {c['prompt'][:40]!r} -> {c['greedy_text'][:50]!r}")
        if g["min_gap"] <= MIN_GAP:
            print(f"  {name}: min_gap {g['min_gap']:.4f} <= {MIN_GAP}: pick another seed (--search)")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
