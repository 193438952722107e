#!/usr/bin/python3
"""Writes the seeds of fuzz_gguf (tests/fuzz/gguf/): a 1-layer GPT-2 with 8
channels and a 259-token vocabulary (the 256 byte tokens, "ab", "Ġa",
<|endoftext|>) in GGUF, tied (output written again, as llama.cpp's converter
does) and untied, with tests/ref/gguf_convert.py's writer. Deterministic.

  tests/fuzz/mkseed_gguf.py tests/fuzz/gguf
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
from gguf_convert import Writer, bytes_to_unicode  # noqa: E402


def seed(path, untied):
    rng = np.random.default_rng(7)
    C, V, T = 8, 259, 16
    f = lambda *s: (rng.standard_normal(s) * 0.2).astype(np.float32)
    w = Writer()
    w.add("general.architecture", "str", "gpt2")
    for k, v in (("context_length", T), ("embedding_length", C), ("feed_forward_length", 4 * C),
                 ("block_count", 1), ("attention.head_count", 2)):
        w.add(f"gpt2.{k}", "u32", v)
    w.add("gpt2.attention.layer_norm_epsilon", "f32", 1e-5)
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)] + ["ab", "\u0120a", "<|endoftext|>"]
    w.add("tokenizer.ggml.model", "str", "gpt2")
    w.add("tokenizer.ggml.pre", "str", "gpt-2")
    w.add("tokenizer.ggml.tokens", "strs", tokens)
    w.add("tokenizer.ggml.token_type", "i32s", [1] * 258 + [3])
    w.add("tokenizer.ggml.merges", "strs", ["a b", "\u0120 a"])
    w.add("tokenizer.ggml.bos_token_id", "u32", 258)
    w.add("tokenizer.ggml.eos_token_id", "u32", 258)
    emb = f(V, C)
    w.tensor("token_embd.weight", 0, emb)
    w.tensor("position_embd.weight", 0, f(T, C))
    for name, shape in (("attn_norm", (C,)), ("attn_qkv", (3 * C, C)), ("attn_output", (C, C)),
                        ("ffn_norm", (C,)), ("ffn_up", (4 * C, C)), ("ffn_down", (C, 4 * C))):
        w.tensor(f"blk.0.{name}.weight", 0, f(*shape) + (1 if len(shape) == 1 else 0))
        w.tensor(f"blk.0.{name}.bias", 0, f(shape[0]))
    w.tensor("output_norm.weight", 0, f(C) + 1)
    w.tensor("output_norm.bias", 0, f(C))
    w.tensor("output.weight", 0, f(V, C) if untied else emb)
    w.write(path)


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seed(os.path.join(out, "seed-gpt2-tied"), False)
    seed(os.path.join(out, "seed-gpt2-untied"), True)
