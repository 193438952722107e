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

Llama-family goldens (llama, qwen2, qwen3; LLAMA_MODELS below) have
"schema": 2 and the same cases, with these differences:
  "arch": "qwen3", "covers": "...",   what the model is there to test
  "config": {"model_type","n_layer","n_head","n_kv_head","head_dim","n_embd",
             "ffn","n_ctx","vocab_size","n_tokens","rms_norm_eps","rope_theta",
             "rope_scaling","dtype","tied","shards","qkv_bias","qk_norm","bos"}
  "n_tokens": 50259,          ids with a token (vocab_size may be larger: the
                              rest have no token, logits -inf, probability 0)
  "stop_ids": [50256, 50258], <|endoftext|> and eos (<|im_end|>): greedy_text
                              and greedy_hex stop before the first of them
  ids                         Hugging Face's tokenizer(prompt).input_ids for
                              the folder's tokenizer.json (BOS included with
                              --bos); no special tokens occur in the prompts.
                              reference.HFTokenizer made them; transformers.js
                              (npm @lenml/tokenizers 3.7.2) gives the same ids
                              for every golden prompt
  "greedy": 16 tokens, "top" over ids with a token only,
  "attention": [layer][query head][query][key]; query head h reads KV head
                              h // (n_head / n_kv_head)
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

# Llama-family models: name -> (mkmodel arguments, what the model covers).
# Hidden size 64 (32 for the untied f32 one), so a model is 6-13 MB.
LLAMA_MODELS = {
    "llama-gqa2": (
        "--arch llama --layers 2 --heads 4 --kv-heads 2 --embd 64 --ffn 160 --ctx 256 "
        "--dtype f32 --tied --seed 4",
        "llama, GQA ratio 2 (4 heads, 2 KV heads), head_dim 16, rope_theta 10000, tied, f32, "
        "Qwen2 pre-tokenizer, no BOS"),
    "llama3-mqa": (
        "--arch llama --layers 2 --heads 4 --kv-heads 1 --embd 64 --ffn 128 --ctx 131072 "
        "--rope-theta 500000 --rope-scaling llama3 --bos --pattern llama3 --untied "
        "--dtype bf16 --seed 10",
        "llama 3 style: MQA (1 KV head), llama3 rope_scaling (factor 32, theta 500000: "
        "all three frequency bands), 131072 positions, BOS by TemplateProcessing, "
        "Llama 3 pre-tokenizer, untied lm_head, bf16"),
    "llama-hd24": (
        "--arch llama --layers 2 --heads 4 --head-dim 24 --embd 64 --ffn 96 --dtype f16 "
        "--shards 3 --merge-pairs --eps 0.001 --seed 4",
        "llama, GQA ratio 1 (MHA), explicit head_dim 24 != 64/4, rms_norm_eps 1e-3, f16, 3 shards with an "
        "index, merges as pairs, tied"),
    "qwen2-gqa4": (
        "--arch qwen2 --layers 2 --heads 8 --kv-heads 2 --embd 64 --ffn 128 --vocab 50304 "
        "--nfc --dtype f32 --seed 3",
        "qwen2: q/k/v biases, GQA ratio 4, head_dim 8, vocab_size 50304 > 50259 tokens "
        "(padding), NFC normalizer, rope_theta 1e6, eps 1e-6, tied, f32"),
    "qwen3-hd32": (
        "--arch qwen3 --layers 2 --heads 4 --kv-heads 2 --head-dim 32 --embd 32 --ffn 96 "
        "--untied --shards 2 --lnf-gain 3 --dtype f32 --seed 14",
        "qwen3: q_norm/k_norm, head_dim 32 != 32/4 (q width 128 > hidden 32), GQA 2, "
        "untied lm_head, 2 shards, f32"),
    "qwen3-bf16": (
        "--arch qwen3 --layers 3 --heads 8 --kv-heads 2 --head-dim 16 --embd 64 --ffn 128 "
        "--vocab 51200 --dtype bf16 --seed 7",
        "qwen3: q_norm/k_norm, GQA ratio 4, head_dim 16 != 64/8, 3 layers, vocab_size 51200 "
        "(941 ids without a token), tied, bf16"),
}
LLAMA_N_GREEDY = 16
LLAMA_PROBE_IDS = [0, 1, 13, 198, 220, 464, 1000, 10000, 30000, 50255, 50256, 50257, 50258, 50259]

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

# ---------------------------------------------------------------- Llama family

def stop_ids(m):
    return [m.tok.added["<|endoftext|>"], m.tok.added["<|im_end|>"]]


def llama_greedy(m, ids, n=LLAMA_N_GREEDY):
    n = min(n, m.n_ctx - len(ids))
    seq, gaps = list(ids), []
    for _ in range(n):
        z = m.forward(seq, last_only=True)[0][-1]
        gaps.append(top2_gap(z))
        seq.append(int(np.argmax(z)))
    return seq[len(ids):], gaps


def llama_prompts(m):
    return [p for p in PROMPTS if len(m.tok.encode(p)) <= m.n_ctx - 4]


def llama_case(m, prompt, want_attention):
    ids = m.tok.encode(prompt)
    logits, hf, attn = m.forward(ids, want_attention)
    last = logits[-1]
    lp, lse = R.log_softmax(last)
    order = np.argsort(-last, kind="stable")
    top = [{"id": int(i), "logit": float(last[i]), "prob": math.exp(lp[i])} for i in order[:N_TOP]]
    top_gap = float(min(last[order[k]] - last[order[k + 1]] for k in range(N_TOP)))
    lps_all, _ = R.log_softmax(logits)
    tlp = [float(lps_all[i - 1][ids[i]]) for i in range(1, len(ids))]
    g, gaps = llama_greedy(m, ids)
    stops = stop_ids(m)
    end = min([g.index(s) for s in stops if s in g] + [len(g)])
    gbytes = m.tok.decode_bytes(g[:end])
    case = {
        "prompt": prompt,
        "ids": ids,
        "top": top,
        "top_min_gap": top_gap,
        "lse": float(lse),
        "probe": [[i, float(last[i])] for i in LLAMA_PROBE_IDS if i < m.n_tokens],
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


def llama_golden(name, args, covers):
    m = R.LlamaModel(gen_model(name, args))
    flag = lambda f: f in args
    g = {
        "schema": 2,
        "model": name,
        "arch": m.arch,
        "covers": covers,
        "mkmodel_args": args,
        "config": {
            "model_type": m.arch, "n_layer": m.n_layer, "n_head": m.n_head,
            "n_kv_head": m.n_kv_head, "head_dim": m.head_dim, "n_embd": m.n_embd, "ffn": m.ffn,
            "n_ctx": m.n_ctx, "vocab_size": m.vocab_size, "n_tokens": m.n_tokens,
            "rms_norm_eps": m.eps, "rope_theta": float(m.theta), "rope_scaling": m.rope_scaling,
            "dtype": args[args.index("--dtype") + 1] if flag("--dtype") else "f32",
            "tied": not m.has_lm_head,
            "shards": int(args[args.index("--shards") + 1]) if flag("--shards") else 1,
            "qkv_bias": m.arch == "qwen2", "qk_norm": m.arch == "qwen3", "bos": flag("--bos"),
        },
        "n_params": m.n_params(),
        "n_tokens": m.n_tokens,
        "stop_ids": stop_ids(m),
        "min_gap": None,
        "cases": [llama_case(m, p, p == ATTN_PROMPT) for p in llama_prompts(m)],
    }
    g["min_gap"] = min(c["min_gap"] for c in g["cases"])
    return g, m


def f32_deviation(name, g):
    """Largest |logit| and attention differences between the reference run in
    float32 and in float64, over the golden's cases (what f32 arithmetic
    alone costs, whatever the engine)."""
    m32 = R.LlamaModel(os.path.join(ROOT, "build", "models", name), np.float32)
    worst_logit = worst_attn = 0.0
    for c in g["cases"]:
        logits, _, attn = m32.forward(c["ids"], "attention" in c, last_only=True)
        for t in c["top"]:
            worst_logit = max(worst_logit, abs(float(logits[-1][t["id"]]) - t["logit"]))
        if "attention" in c:
            for l, layer in enumerate(c["attention"]):
                for h, rows in enumerate(layer):
                    for q, row in enumerate(rows):
                        d = np.abs(attn[l][h][q, :q + 1].astype(np.float64) - np.array(row)).max()
                        worst_attn = max(worst_attn, float(d))
    return worst_logit, worst_attn

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
    if name in LLAMA_MODELS:
        return llama_search(name, first, last)
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


def llama_search(name, first, last):
    base = LLAMA_MODELS[name][0].split()
    i = base.index("--seed")
    for seed in range(first, last + 1):
        args = base[:i + 1] + [str(seed)] + base[i + 2:]
        tmp = f"{name}-search{os.getpid()}"
        m = R.LlamaModel(gen_model(tmp, args))
        gaps, distinct, nstop = [], [], 0
        for p in llama_prompts(m):
            g, gp = llama_greedy(m, m.tok.encode(p))
            gaps.append(min(gp))
            distinct.append(len(set(g)))
            nstop += any(s in g for s in stop_ids(m))
        z = m.forward(m.tok.encode(ATTN_PROMPT), last_only=True)[0][-1][:m.n_tokens]
        print(f"{name} seed {seed}: min_gap {min(gaps):.4f} logit std {z.std():.2f} stops {nstop} "
              f"distinct greedy ids {distinct}", flush=True)
        shutil.rmtree(os.path.join(ROOT, "build", "models", tmp))


def main(argv):
    subprocess.run(["make", "-C", ROOT, "build/mkmodel"], check=True, stdout=subprocess.DEVNULL)
    if argv[1:2] == ["--search"]:
        first, last = (int(argv[3]), int(argv[4])) if len(argv) > 4 else (1, 20)
        search(argv[2], first, last)
        return 0
    if not R.tokenizer_check():
        return 1
    names = argv[1:] or list(MODELS) + list(LLAMA_MODELS)
    bad = 0
    os.makedirs(os.path.join(ROOT, "tests", "golden"), exist_ok=True)
    for name in names:
        if name in LLAMA_MODELS:
            bad += write_llama(name)
            continue
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


def write_llama(name):
    g, m = llama_golden(name, LLAMA_MODELS[name][0].split(), LLAMA_MODELS[name][1])
    path = os.path.join(ROOT, "tests", "golden", name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(fmt(g) + "\n")
    cfg = g["config"]
    dl, da = f32_deviation(name, g)
    print(f"{name:10s} {cfg['model_type']} L{cfg['n_layer']} H{cfg['n_head']}/{cfg['n_kv_head']} "
          f"hd{cfg['head_dim']} C{cfg['n_embd']} F{cfg['ffn']} {cfg['dtype']:4s} "
          f"params {g['n_params']:>8d} cases {len(g['cases'])} min_gap {g['min_gap']:.4f} "
          f"top_min_gap {min(c['top_min_gap'] for c in g['cases']):.2e} "
          f"f32-vs-f64 logit {dl:.2e} attn {da:.2e} -> tests/golden/{name}.json")
    for c in g["cases"]:
        print(f"    {len(c['ids']):2d} tok  gap {c['min_gap']:.4f}  {c['prompt'][:40]!r} -> "
              f"{c['greedy_text'][:50]!r}")
    bad = 0
    if g["min_gap"] <= MIN_GAP:
        print(f"  {name}: min_gap {g['min_gap']:.4f} <= {MIN_GAP}: pick another seed (--search)")
        bad = 1
    if any(s in c["greedy"] for c in g["cases"] for s in g["stop_ids"]):
        print(f"  {name}: a greedy run reaches a stop id (the comparison is cut there)")
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv))
