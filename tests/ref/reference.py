#!/usr/bin/python3
"""Independent float64 reference for GPT-2-family models, in NumPy.

Shares no code with the C engine: it parses safetensors itself, has its own
GPT-2 tokenizer (OpenAI's encoder.py algorithm) and runs the forward pass in
float64, so the engine's f32 results can be checked against it.

  tests/ref/reference.py MODEL_DIR "prompt"      top tokens and a greedy run
  tests/ref/reference.py --tokenizer-check       tests/data/tokenizer-cases.*

The golden files made from it (tests/golden/*.json) are described in
make_goldens.py.
"""
import json
import math
import os
import struct
import sys
from functools import lru_cache

import numpy as np
import regex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ---------------------------------------------------------------- safetensors

def read_safetensors(path):
    """name -> float64 array (or the raw array for BOOL/U8), names as stored."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[b:e]
        shape = tuple(info["shape"])
        dt = info["dtype"]
        if dt == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dt == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float64)  # exact
        elif dt == "BF16":
            # bfloat16 is the top half of an f32: widening is exact.
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32).astype(np.float64)
        elif dt in ("BOOL", "U8"):
            a = np.frombuffer(raw, dtype=np.uint8)
        else:
            raise ValueError(f"{name}: unsupported dtype {dt}")
        out[name] = a.reshape(shape)
    return out


class Model:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        self.n_layer = cfg["n_layer"]
        self.n_head = cfg["n_head"]
        self.n_embd = cfg["n_embd"]
        self.n_ctx = cfg.get("n_positions", cfg.get("n_ctx"))
        self.vocab_size = cfg["vocab_size"]
        self.eps = cfg.get("layer_norm_epsilon", 1e-5)
        w = {}
        for name, a in read_safetensors(os.path.join(folder, "model.safetensors")).items():
            if name.startswith("transformer."):
                name = name[len("transformer."):]
            # Old checkpoints' causal-mask buffers are not weights.
            if name.endswith(".attn.bias") and a.ndim == 4 or name.endswith(".attn.masked_bias"):
                continue
            w[name] = a
        self.w = w
        self.has_lm_head = "lm_head.weight" in w
        self.head = w["lm_head.weight"] if self.has_lm_head else w["wte.weight"]
        self.tok = Tokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))

    def n_params(self):
        n = sum(a.size for k, a in self.w.items())
        return int(n)

    def forward(self, ids, want_attention=False, last_only=False):
        """ids -> (logits (T,V), ln_f output (T,C), attention [l][h] (T,T)).
        last_only: logits of the last position only, as a (1,V) array."""
        T = len(ids)
        assert 0 < T <= self.n_ctx, T
        w, C, H = self.w, self.n_embd, self.n_head
        hd = C // H
        x = w["wte.weight"][ids] + w["wpe.weight"][:T]
        mask = np.triu(np.ones((T, T), dtype=bool), 1)
        attn_all = []
        for l in range(self.n_layer):
            p = f"h.{l}."
            h = self.layer_norm(x, p + "ln_1")
            qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
            q, k, v = (qkv[:, i * C:(i + 1) * C].reshape(T, H, hd).transpose(1, 0, 2) for i in range(3))
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            s[:, mask] = -np.inf
            s = s - s.max(axis=-1, keepdims=True)
            a = np.exp(s)
            a /= a.sum(axis=-1, keepdims=True)
            if want_attention:
                attn_all.append(a)
            y = (a @ v).transpose(1, 0, 2).reshape(T, C)
            x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
            h = self.layer_norm(x, p + "ln_2")
            h = gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
            x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        hf = self.layer_norm(x, "ln_f")
        logits = (hf[-1:] if last_only else hf) @ self.head.T
        return logits, hf, attn_all

    def layer_norm(self, x, p):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[p + ".weight"] + self.w[p + ".bias"]


def gelu(x):
    # GPT-2's "gelu_new": the tanh approximation.
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
    return z - lse, lse[..., 0]

# ---------------------------------------------------------------- tokenizer

def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


class Tokenizer:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        self.decoder = {v: k for k, v in self.encoder.items()}
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(l.split()) for l in lines[1:] if l.strip()]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bpe = lru_cache(maxsize=None)(self._bpe)

    def _bpe(self, token):
        word = tuple(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            a, b = best
            out, i = [], 0
            while i < len(word):
                try:
                    j = word.index(a, i)
                except ValueError:
                    out.extend(word[i:])
                    break
                out.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        return word

    def encode(self, text):
        ids = []
        for piece in PAT.findall(text):
            piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(piece))
        return ids

    def decode_bytes(self, ids):
        return bytes(self.byte_decoder[c] for i in ids for c in self.decoder[i])

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def tokenizer_check():
    """Checks the tokenizer against tests/data/tokenizer-cases.{inp,out}."""
    tok = Tokenizer(os.path.join(ROOT, "tests/data/vocab.json"), os.path.join(ROOT, "tests/data/merges.txt"))
    with open(os.path.join(ROOT, "tests/data/tokenizer-cases.inp"), encoding="utf-8") as f:
        cases = f.read().split("\n__ggml_vocab_test__\n")[:-1]
    with open(os.path.join(ROOT, "tests/data/tokenizer-cases.out"), encoding="utf-8") as f:
        outs = f.read().split("\n")[:len(cases)]
    bad = 0
    for text, want in zip(cases, outs):
        got = tok.encode(text)
        if got != [int(x) for x in want.split()]:
            bad += 1
            print(f"MISMATCH {text!r}: {got} != {want}")
        if tok.decode(got) != text:
            bad += 1
            print(f"ROUND TRIP {text!r}")
    extra = {"hello world": [31373, 995], "The dog": [464, 3290], "": [],
             "Hello, my dog is a little": [15496, 11, 616, 3290, 318, 257, 1310],
             "0000000000": [8269, 405], "From the day forth, my arm": [4863, 262, 1110, 6071, 11, 616, 3211]}
    for text, want in extra.items():
        if tok.encode(text) != want:
            bad += 1
            print(f"MISMATCH {text!r}: {tok.encode(text)} != {want}")
    print(f"tokenizer: {len(cases) + len(extra)} cases, {bad} mismatches")
    return bad == 0


def main(argv):
    if argv[1:] == ["--tokenizer-check"]:
        return 0 if tokenizer_check() else 1
    if len(argv) != 3:
        print(__doc__)
        return 2
    m = Model(argv[1])
    ids = m.tok.encode(argv[2])
    logits, _, _ = m.forward(ids)
    lp, lse = log_softmax(logits[-1])
    print(f"ids {ids}  lse {lse:.6f}  logit std {logits[-1].std():.3f}")
    for i in np.argsort(-logits[-1], kind="stable")[:10]:
        print(f"  {i:6d} {logits[-1][i]:10.5f} {math.exp(lp[i]):.5f} {m.tok.decode([i])!r}")
    seq = list(ids)
    while len(seq) < min(len(ids) + 32, m.n_ctx + 1):
        seq.append(int(np.argmax(m.forward(seq[-m.n_ctx:], last_only=True)[0][-1])))
    print("greedy", seq[len(ids):], repr(m.tok.decode(seq[len(ids):])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
