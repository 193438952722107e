#!/usr/bin/python3
"""Converts a Hugging Face test folder into GGUF the way llama.cpp's
convert_hf_to_gguf.py lays it out, with NumPy only (no code shared with the C
importer), so the tests can check that the two imports give the same numbers.

  tests/ref/gguf_convert.py FOLDER OUT.gguf [--pad-type N]

What it follows from convert_hf_to_gguf.py and gguf-py:
  - names: token_embd, position_embd, blk.N.attn_norm, attn_qkv (GPT-2),
    attn_q/k/v, attn_q_norm/attn_k_norm, attn_output, ffn_norm,
    ffn_gate/up/down, output_norm, output (MODEL_TENSOR names);
  - GPT2Model: drops attn.bias / attn.masked_bias, transposes the Conv1D
    weights (c_attn, c_proj, c_fc) to (out, in), and writes output as a copy
    of token_embd (GPT-2's head is tied);
  - LlamaModel.permute of q_proj and k_proj (llama only; qwen2 and qwen3 are
    not permuted), and the rope_freqs tensor of Llama 3.1 scaling computed
    in float32 as generate_extra_tensors does;
  - 1-D tensors as F32; 2-D tensors keep the folder's dtype (F32, F16, BF16);
  - dims written innermost first (ne[0] is the last NumPy axis);
  - the vocabulary padded to vocab_size with "[PADi]" unused tokens (type 5,
    as get_vocab_base writes them now; older converters wrote them
    user-defined, type 4: --pad-type 4), added special tokens as control tokens (type 3), other added tokens as
    user-defined (type 4), merges as "a b";
  - tokenizer.ggml.pre by the pre-tokenizer's regex: gpt-2, llama-bpe, qwen2
    or smollm (the real converter hashes the tokenizer's output instead).
"""
import json
import math
import os
import struct
import sys

import numpy as np

from gpt2_bytes import bytes_to_unicode  # noqa: E402,F401 (mkseed_gguf.py imports it from here)

QWEN2_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}"
            "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
LLAMA3_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s"
             "\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")



GGML = {"F32": 0, "F16": 1, "BF16": 30}
NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def read_safetensors(path):
    """name -> (dtype, numpy array of the raw elements, shape as stored)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__" or e["dtype"] not in NP:   # GPT-2's bool mask buffers
            continue
        b, end = e["data_offsets"]
        a = np.frombuffer(data[b:end], dtype=NP[e["dtype"]]).reshape(e["shape"])
        out[name] = (e["dtype"], a)
    return out


def read_folder(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(os.path.join(folder, "model.safetensors")) and os.path.exists(index):
        out = {}
        for shard in sorted(set(json.load(open(index))["weight_map"].values())):
            out.update(read_safetensors(os.path.join(folder, shard)))
        return out
    return read_safetensors(os.path.join(folder, "model.safetensors"))


def permute(w, n_head, n_head_kv):
    """LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(hp):
    rs = hp["rope_scaling"]
    base = hp.get("rope_theta", 10000.0)
    dim = hp.get("head_dim", hp["hidden_size"] // hp["num_attention_heads"])
    freqs = (np.float32(1.0) / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32)
                                                      / np.float32(dim)))).astype(np.float32)
    factor = rs.get("factor", 8.0)
    low = rs.get("low_freq_factor", 1.0)
    high = rs.get("high_freq_factor", 4.0)
    old = rs.get("original_max_position_embeddings", 8192)
    low_wave, high_wave = old / low, old / high
    out = []
    for f in freqs:
        wave = np.float32(2 * math.pi) / f
        if wave < high_wave:
            out.append(1)
        elif wave > low_wave:
            out.append(factor)
        else:
            s = np.float32((old / wave - low) / (high - low))
            out.append(np.float32(1) / ((np.float32(1) - s) / np.float32(factor) + s))
    return np.array(out, dtype=np.float32)


class Writer:
    def __init__(self):
        self.kv = []
        self.tensors = []

    def add(self, key, vtype, value):
        self.kv.append((key, vtype, value))

    def tensor(self, name, ttype, a):
        self.tensors.append((name, ttype, np.ascontiguousarray(a)))

    @staticmethod
    def s(z):
        b = z.encode("utf-8") if isinstance(z, str) else z
        return struct.pack("<Q", len(b)) + b

    def value(self, vtype, v):
        if vtype == "str":
            return struct.pack("<I", 8) + self.s(v)
        if vtype == "u32":
            return struct.pack("<II", 4, v)
        if vtype == "f32":
            return struct.pack("<If", 6, v)
        if vtype == "bool":
            return struct.pack("<IB", 7, 1 if v else 0)
        if vtype == "strs":
            return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(self.s(x) for x in v)
        if vtype == "i32s":
            return struct.pack("<IIQ", 9, 5, len(v)) + struct.pack(f"<{len(v)}i", *v)
        raise ValueError(vtype)

    def write(self, path):
        out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)))
        for key, vtype, v in self.kv:
            out += self.s(key) + self.value(vtype, v)
        off = 0
        offsets = []
        for name, ttype, a in self.tensors:
            dims = list(reversed(a.shape))
            out += self.s(name) + struct.pack("<I", len(dims))
            out += b"".join(struct.pack("<Q", d) for d in dims)
            out += struct.pack("<IQ", ttype, off)
            offsets.append(off)
            off += (a.nbytes + 31) // 32 * 32
        out += b"\0" * ((32 - len(out) % 32) % 32)
        for name, ttype, a in self.tensors:
            b = a.tobytes()
            out += b + b"\0" * ((32 - len(b) % 32) % 32)
        with open(path, "wb") as f:
            f.write(out)


def tokenizer(folder, w, hp, vocab_size, pad_type):
    tj = os.path.join(folder, "tokenizer.json")
    tc = {}
    if os.path.exists(os.path.join(folder, "tokenizer_config.json")):
        tc = json.load(open(os.path.join(folder, "tokenizer_config.json")))
    if os.path.exists(tj):
        t = json.load(open(tj))
        vocab = dict(t["model"]["vocab"])
        merges = [m if isinstance(m, str) else " ".join(m) for m in t["model"]["merges"]]
        added = {a["id"]: a for a in t.get("added_tokens", [])}
        pre = t["pre_tokenizer"]
        stages = pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]
        kinds = [s["type"] for s in stages]
        if kinds == ["Split", "ByteLevel"]:
            rx = stages[0]["pattern"]["Regex"]
            pre_name = {LLAMA3_RE: "llama-bpe", QWEN2_RE: "qwen2"}[rx]
        elif kinds == ["Digits", "ByteLevel"]:
            pre_name = "smollm"
        else:
            pre_name = "gpt-2"
        post = t.get("post_processor") or {}
        procs = post.get("processors", []) if post.get("type") == "Sequence" else [post]
        first = {}
        for pp in procs:
            if pp.get("type") == "TemplateProcessing":
                first = (pp.get("single") or [{}])[0]
        add_bos = tc.get("add_bos_token", "SpecialToken" in first)
    else:
        vocab = json.load(open(os.path.join(folder, "vocab.json")))
        merges = [l for l in open(os.path.join(folder, "merges.txt"), encoding="utf-8")
                  .read().split("\n") if l and not l.startswith("#version")]
        added = {50256: {"id": 50256, "content": "<|endoftext|>", "special": True}}
        pre_name = "gpt-2"
        add_bos = False
    rev = {i: s for s, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(3 if added[i].get("special") else 4)
        elif i in rev:
            tokens.append(rev[i])
            types.append(1)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(pad_type)
    text_id = {a["content"]: i for i, a in added.items()}

    def tok_id(v):
        v = v.get("content") if isinstance(v, dict) else v
        return text_id.get(v, vocab.get(v)) if v is not None else None
    bos = tok_id(tc.get("bos_token")) if tc else hp.get("bos_token_id")
    eos = tok_id(tc.get("eos_token")) if tc else hp.get("eos_token_id")
    w.add("tokenizer.ggml.model", "str", "gpt2")
    w.add("tokenizer.ggml.pre", "str", pre_name)
    w.add("tokenizer.ggml.tokens", "strs", tokens)
    w.add("tokenizer.ggml.token_type", "i32s", types)
    w.add("tokenizer.ggml.merges", "strs", merges)
    if bos is not None:
        w.add("tokenizer.ggml.bos_token_id", "u32", bos)
    if eos is not None:
        w.add("tokenizer.ggml.eos_token_id", "u32", eos)
    w.add("tokenizer.ggml.add_bos_token", "bool", bool(add_bos))
    if tc.get("chat_template"):
        w.add("tokenizer.chat_template", "str", tc["chat_template"])


GPT2_NAMES = [("ln_1", "attn_norm"), ("attn.c_attn", "attn_qkv"), ("attn.c_proj", "attn_output"),
              ("ln_2", "ffn_norm"), ("mlp.c_fc", "ffn_up"), ("mlp.c_proj", "ffn_down")]
LLAMA_NAMES = [("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"),
               ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
               ("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm"),
               ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "ffn_norm"),
               ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
               ("mlp.down_proj", "ffn_down")]


def convert(folder, out, pad_type=5):
    hp = json.load(open(os.path.join(folder, "config.json")))
    arch = hp.get("model_type", "gpt2")
    ts = read_folder(folder)
    w = Writer()
    w.add("general.architecture", "str", arch)
    w.add("general.name", "str", os.path.basename(folder.rstrip("/")))

    def put(name, dtype, a):
        if a.ndim <= 1 and dtype != "F32":
            a = (a.astype(np.float32) if dtype == "F16"
                 else (a.astype(np.uint32) << 16).view(np.float32))
            dtype = "F32"
        w.tensor(name, GGML[dtype], a)

    if arch == "gpt2":
        w.add("gpt2.context_length", "u32", hp.get("n_positions", hp.get("n_ctx")))
        w.add("gpt2.embedding_length", "u32", hp["n_embd"])
        w.add("gpt2.feed_forward_length", "u32", 4 * hp["n_embd"])
        w.add("gpt2.block_count", "u32", hp["n_layer"])
        w.add("gpt2.attention.head_count", "u32", hp["n_head"])
        w.add("gpt2.attention.layer_norm_epsilon", "f32", hp.get("layer_norm_epsilon", 1e-5))
        w.add("general.file_type", "u32", 0)
        vocab_size = hp["vocab_size"]
        ts = {k[12:] if k.startswith("transformer.") else k: v for k, v in ts.items()}
        put("token_embd.weight", *ts["wte.weight"])
        put("position_embd.weight", *ts["wpe.weight"])
        for l in range(hp["n_layer"]):
            for hf, gg in GPT2_NAMES:
                for kind in ("weight", "bias"):
                    dt, a = ts[f"h.{l}.{hf}.{kind}"]
                    if kind == "weight" and hf != "ln_1" and hf != "ln_2":
                        a = a.transpose(1, 0)
                    put(f"blk.{l}.{gg}.{kind}", dt, a)
        put("output_norm.weight", *ts["ln_f.weight"])
        put("output_norm.bias", *ts["ln_f.bias"])
        put("output.weight", *ts.get("lm_head.weight", ts["wte.weight"]))
    else:
        n_head = hp["num_attention_heads"]
        n_kv = hp.get("num_key_value_heads", n_head)
        hd = hp.get("head_dim", hp["hidden_size"] // n_head)
        w.add(f"{arch}.context_length", "u32", hp["max_position_embeddings"])
        w.add(f"{arch}.embedding_length", "u32", hp["hidden_size"])
        w.add(f"{arch}.block_count", "u32", hp["num_hidden_layers"])
        w.add(f"{arch}.feed_forward_length", "u32", hp["intermediate_size"])
        w.add(f"{arch}.attention.head_count", "u32", n_head)
        w.add(f"{arch}.attention.head_count_kv", "u32", n_kv)
        w.add(f"{arch}.rope.freq_base", "f32", hp.get("rope_theta", 10000.0))
        w.add(f"{arch}.attention.layer_norm_rms_epsilon", "f32", hp["rms_norm_eps"])
        if arch == "qwen3" or "head_dim" in hp:
            w.add(f"{arch}.attention.key_length", "u32", hd)
            w.add(f"{arch}.attention.value_length", "u32", hd)
        if arch == "llama":
            w.add("llama.vocab_size", "u32", hp["vocab_size"])
            w.add("llama.rope.dimension_count", "u32", hd)
        w.add("general.file_type", "u32", 0)
        vocab_size = hp["vocab_size"]
        put("token_embd.weight", *ts["model.embed_tokens.weight"])
        for l in range(hp["num_hidden_layers"]):
            for hf, gg in LLAMA_NAMES:
                for kind in ("weight", "bias"):
                    key = f"model.layers.{l}.{hf}.{kind}"
                    if key not in ts:
                        continue
                    dt, a = ts[key]
                    if arch == "llama" and hf == "self_attn.q_proj":
                        a = permute(a, n_head, n_head)
                    if arch == "llama" and hf == "self_attn.k_proj":
                        a = permute(a, n_head, n_kv)
                    put(f"blk.{l}.{gg}.{kind}", dt, a)
        put("output_norm.weight", *ts["model.norm.weight"])
        if not hp.get("tie_word_embeddings", False) and "lm_head.weight" in ts:
            put("output.weight", *ts["lm_head.weight"])
        rs = hp.get("rope_scaling")
        if rs and rs.get("rope_type", rs.get("type", "")).lower() == "llama3":
            put("rope_freqs.weight", "F32", llama3_rope_factors(hp))
    tokenizer(folder, w, hp, vocab_size, pad_type)
    w.write(out)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[3] == "--pad-type":
        convert(sys.argv[1], sys.argv[2], int(sys.argv[4]))
    elif len(sys.argv) == 3:
        convert(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
