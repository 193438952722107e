#!/usr/bin/python3
"""Independent float64 reference for GPT-2 and Llama-family models, in NumPy.

Shares no code with the C engine: it parses safetensors (and sharded
checkpoints through model.safetensors.index.json) itself, has its own GPT-2
tokenizer (OpenAI's encoder.py algorithm) and its own reading of Hugging
Face's tokenizer.json (added tokens, NFC, Split regex + ByteLevel, BPE,
TemplateProcessing's BOS), and runs the forward pass in float64, so the
engine's f32 results can be checked against it.

Llama, Qwen2 and Qwen3 follow transformers' modeling_llama / modeling_qwen2 /
modeling_qwen3: RMSNorm x * rsqrt(mean(x^2) + eps) * w; rotary embeddings in
the rotate-half convention, inv_freq = theta^(-2i/head_dim), with the llama3
frequency scaling of modeling_rope_utils._compute_llama3_parameters; grouped
query attention (query head h reads KV head h // (n_head / n_kv_head));
q/k/v biases (qwen2); per-head q_norm/k_norm RMSNorm before RoPE (qwen3);
SwiGLU down(silu(gate(x)) * up(x)); a tied or untied head. Ids at or above
the tokenizer's size (vocab_size padding) have no token: their logits are
-inf, so they are never listed or sampled and take no probability.

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
import unicodedata

from gpt2_bytes import bytes_to_unicode  # noqa: E402 (tests/ref, beside this file)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ---------------------------------------------------------------- safetensors

def read_safetensors(path, want=np.float64):
    """name -> float64 array (or the raw array for BOOL/U8), names as stored.
    want: the float type to widen to (float32 for the precision check)."""
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
            a = np.frombuffer(raw, dtype="<f4").astype(want)
        elif dt == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(want)  # exact
        elif dt == "BF16":
            # bfloat16 is the top half of an f32: widening is exact.
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32).astype(want)
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


def read_checkpoint(folder, want=np.float64):
    """All tensors of a Hugging Face folder: model.safetensors, or the shards
    that model.safetensors.index.json's weight_map names (each checked to be
    a plain file name inside the folder, each tensor where the map says)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(index):
        return read_safetensors(os.path.join(folder, "model.safetensors"), want)
    with open(index) as f:
        wmap = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(wmap.values())):
        if os.path.basename(shard) != shard or shard.startswith("."):
            raise ValueError(f"shard {shard!r} is not inside the folder")
        part = read_safetensors(os.path.join(folder, shard), want)
        for name, a in part.items():
            if wmap.get(name) != shard or name in out:
                raise ValueError(f"{name}: in {shard}, the index says {wmap.get(name)}")
            out[name] = a
    missing = set(wmap) - set(out)
    if missing:
        raise ValueError(f"tensors in the index but in no shard: {sorted(missing)}")
    return out


def llama3_inv_freq(inv_freq, rs):
    """transformers' _compute_llama3_parameters: long wavelengths divided by
    factor, short ones kept, the band between interpolated."""
    factor = rs["factor"]
    low, high = rs["low_freq_factor"], rs["high_freq_factor"]
    old_ctx = rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    out = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, out)


class LlamaModel:
    """Llama, Qwen2 and Qwen3 decoders from a Hugging Face folder.
    dtype: float64 (the reference) or float32 (to measure f32 error)."""

    def __init__(self, folder, dtype=np.float64):
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        self.cfg = cfg
        self.dt = dtype
        self.arch = cfg["model_type"]
        if self.arch not in ("llama", "qwen2", "qwen3"):
            raise ValueError(f"unsupported model_type {self.arch}")
        self.n_layer = cfg["num_hidden_layers"]
        self.n_head = cfg["num_attention_heads"]
        self.n_kv_head = cfg.get("num_key_value_heads") or self.n_head
        self.n_embd = cfg["hidden_size"]
        self.head_dim = cfg.get("head_dim") or self.n_embd // self.n_head
        self.ffn = cfg["intermediate_size"]
        self.n_ctx = cfg["max_position_embeddings"]
        self.vocab_size = cfg["vocab_size"]
        self.eps = cfg["rms_norm_eps"]
        self.theta = cfg.get("rope_theta", 10000.0)
        self.rope_scaling = cfg.get("rope_scaling")
        self.tied = cfg.get("tie_word_embeddings", True)
        self.w = read_checkpoint(folder, dtype)
        self.has_lm_head = "lm_head.weight" in self.w
        if self.tied and self.has_lm_head:
            raise ValueError("tied config with an lm_head.weight")
        self.head = self.w["lm_head.weight"] if self.has_lm_head else self.w["model.embed_tokens.weight"]
        hd = self.head_dim
        inv = 1.0 / (float(self.theta) ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
        if self.rope_scaling:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if kind != "llama3":
                raise ValueError(f"unsupported rope_scaling {kind}")
            inv = llama3_inv_freq(inv, self.rope_scaling)
        self.inv_freq = inv
        self.tok = HFTokenizer(folder)
        # ids without a token: the padding of vocab_size past the tokenizer
        self.n_tokens = min(self.tok.n_ids, self.vocab_size)

    def n_params(self):
        return int(sum(a.size for a in self.w.values()))

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.dt(self.eps)) * w

    def rope(self, x, cos, sin):
        """(T, heads, hd): x * cos + rotate_half(x) * sin, rotate_half(x) =
        [-x2, x1] for the halves x1, x2 (Hugging Face's convention)."""
        h = x.shape[-1] // 2
        rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
        return x * cos[:, None, :] + rot * sin[:, None, :]

    def forward(self, ids, want_attention=False, last_only=False):
        """ids -> (logits (T,V), final norm output (T,C), attention [l][query
        head] (T,T)). Logits of ids without a token are -inf. last_only: the
        last position's logits only, as a (1,V) array."""
        T = len(ids)
        assert 0 < T <= self.n_ctx, T
        w, H, KV, hd, dt = self.w, self.n_head, self.n_kv_head, self.head_dim, self.dt
        group = H // KV
        pos = np.arange(T, dtype=np.float64)[:, None] * self.inv_freq[None, :]
        cos = np.cos(np.concatenate([pos, pos], axis=1)).astype(dt)
        sin = np.sin(np.concatenate([pos, pos], axis=1)).astype(dt)
        x = w["model.embed_tokens.weight"][ids]
        mask = np.triu(np.ones((T, T), dtype=bool), 1)
        scale = dt(1.0 / math.sqrt(hd))
        attn_all = []
        for l in range(self.n_layer):
            p = f"model.layers.{l}."
            h = self.rms(x, w[p + "input_layernorm.weight"])
            proj = {}
            for nm in ("q", "k", "v"):
                y = h @ w[p + f"self_attn.{nm}_proj.weight"].T
                if p + f"self_attn.{nm}_proj.bias" in w:
                    y = y + w[p + f"self_attn.{nm}_proj.bias"]
                proj[nm] = y.reshape(T, -1, hd)
            q, k, v = proj["q"], proj["k"], proj["v"]
            if self.arch == "qwen3":
                q = self.rms(q, w[p + "self_attn.q_norm.weight"])
                k = self.rms(k, w[p + "self_attn.k_norm.weight"])
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            heads, att = [], []
            for hh in range(H):
                kv = hh // group
                s = (q[:, hh, :] @ k[:, kv, :].T) * scale
                s[mask] = -np.inf
                s = s - s.max(axis=-1, keepdims=True)
                a = np.exp(s)
                a /= a.sum(axis=-1, keepdims=True)
                att.append(a)
                heads.append(a @ v[:, kv, :])
            if want_attention:
                attn_all.append(att)
            y = np.concatenate(heads, axis=1)  # (T, H*hd)
            x = x + y @ w[p + "self_attn.o_proj.weight"].T
            h = self.rms(x, w[p + "post_attention_layernorm.weight"])
            g = h @ w[p + "mlp.gate_proj.weight"].T
            u = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "mlp.down_proj.weight"].T
        hf = self.rms(x, w["model.norm.weight"])
        logits = (hf[-1:] if last_only else hf) @ self.head.T
        logits[:, self.n_tokens:] = -np.inf
        return logits, hf, attn_all


def load_model(folder, dtype=np.float64):
    """The reference model of a folder, by config.json's model_type."""
    with open(os.path.join(folder, "config.json")) as f:
        kind = json.load(f).get("model_type", "gpt2")
    return Model(folder) if kind == "gpt2" else LlamaModel(folder, dtype)


def gelu(x):
    # GPT-2's "gelu_new": the tanh approximation.
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
    return z - lse, lse[..., 0]

# ---------------------------------------------------------------- tokenizer



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


class HFTokenizer:
    """A byte-level BPE tokenizer.json as Hugging Face's tokenizers library
    runs it: added tokens split out first (as whole strings), the rest
    normalized (NFC where given), split by the Split regex (Isolated: matches
    and the gaps between them are pieces) or by ByteLevel's own GPT-2 regex,
    mapped to byte characters and merged by rank; a TemplateProcessing
    post-processor adds its special tokens (Llama 3's BOS)."""

    def __init__(self, folder):
        with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        model = tj["model"]
        assert model["type"] == "BPE", model["type"]
        self.encoder = dict(model["vocab"])
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.ignore_merges = model.get("ignore_merges", False)
        self.added = {t["content"]: t["id"] for t in tj["added_tokens"]}
        self.special = {t["content"] for t in tj["added_tokens"] if t["special"]}
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.added_by_id = {i: c for c, i in self.added.items()}
        self.n_ids = max(list(self.decoder) + list(self.added_by_id)) + 1
        norm = tj.get("normalizer")
        self.nfc = norm is not None and norm["type"] == "NFC"
        assert norm is None or self.nfc, norm
        pre = tj["pre_tokenizer"]
        subs = pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]
        self.split = None
        for s in subs:
            if s["type"] == "Split":
                assert s["behavior"] == "Isolated" and not s["invert"], s
                self.split = regex.compile(s["pattern"]["Regex"])
            elif s["type"] == "ByteLevel":
                if s.get("use_regex", True):
                    self.split = PAT
                assert not s.get("add_prefix_space", False), s
            else:
                raise ValueError(f"pre-tokenizer {s['type']}")
        self.prefix, self.suffix = [], []
        post = tj.get("post_processor")
        procs = [] if post is None else post["processors"] if post["type"] == "Sequence" else [post]
        for pp in procs:
            if pp["type"] == "TemplateProcessing":
                seq = [e for e in pp["single"]]
                at = [i for i, e in enumerate(seq) if "Sequence" in e][0]
                ids = lambda es: [i for e in es for i in pp["special_tokens"][e["SpecialToken"]["id"]]["ids"]]
                self.prefix, self.suffix = ids(seq[:at]), ids(seq[at + 1:])
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bpe = lru_cache(maxsize=None)(self._bpe)

    def _bpe(self, token):
        if self.ignore_merges and token in self.encoder:
            return (token,)
        word = tuple(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        return word

    def pieces(self, text):
        """The Isolated split: every match, and every gap between matches."""
        out, at = [], 0
        for m in self.split.finditer(text):
            if m.start() > at:
                out.append(text[at:m.start()])
            if m.end() > m.start():
                out.append(m.group())
            at = m.end()
        if at < len(text):
            out.append(text[at:])
        return out

    def encode_plain(self, text):
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        ids = []
        for piece in self.pieces(text):
            piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(piece))
        return ids

    def encode(self, text, special=True, add_special=True):
        """tokenizer(text).input_ids: added tokens matched as whole strings
        (all of them with special=True, only non-special ones without: the
        engine's plain prompts), then the post-processor's BOS."""
        names = [t for t in self.added if special or t not in self.special]
        ids = list(self.prefix) if add_special else []
        if names:
            alt = regex.compile("|".join(regex.escape(t) for t in sorted(names, key=len, reverse=True)))
            at = 0
            for m in alt.finditer(text):
                ids.extend(self.encode_plain(text[at:m.start()]))
                ids.append(self.added[m.group()])
                at = m.end()
            ids.extend(self.encode_plain(text[at:]))
        else:
            ids.extend(self.encode_plain(text))
        return ids + (list(self.suffix) if add_special else [])

    def decode_bytes(self, ids):
        out = bytearray()
        for i in ids:
            if i in self.added_by_id:
                out += self.added_by_id[i].encode("utf-8")
            else:
                out += bytes(self.byte_decoder[c] for c in self.decoder[i])
        return bytes(out)

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
    m = load_model(argv[1])
    ids = m.tok.encode(argv[2])
    logits, _, _ = m.forward(ids)
    lp, lse = log_softmax(logits[-1])
    finite = logits[-1][np.isfinite(logits[-1])]  # ids past the tokenizer are -inf
    print(f"ids {ids}  lse {lse:.6f}  logit std {finite.std():.3f}")
    for i in np.argsort(-logits[-1], kind="stable")[:10]:
        print(f"  {i:6d} {logits[-1][i]:10.5f} {math.exp(lp[i]):.5f} {m.tok.decode([i])!r}")
    seq = list(ids)
    while len(seq) < min(len(ids) + 32, m.n_ctx + 1):
        seq.append(int(np.argmax(m.forward(seq[-m.n_ctx:], last_only=True)[0][-1])))
    print("greedy", seq[len(ids):], repr(m.tok.decode(seq[len(ids):])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
