#!/usr/bin/python3
"""Writes a 1-layer qwen2 GGUF for the cases of tests/gguf.test that need
a file of their own. Its q, k and v biases are one fused blk.0.attn_qkv.bias
holding 0, 1, 2, ... (exact in f16), which the import slices into q_proj,
k_proj and v_proj biases.
  --f16       the file also asks for that tensor in f16
              (sqlite_gpt.tensor_dtypes), the path that once read every
              slice from the fused tensor's start;
  --inexact   with --f16: one of its values (element 5, 0.1) is not an
              f16 value, so the file's dtype claim is refused;
  --long-bos  its bos token is a normal token of 2,000 bytes, longer than
              the loader takes as bos text (1,024).

  tests/ref/gguf_qwen2_case.py OUT.gguf [--f16 [--inexact]] [--long-bos]
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_convert import Writer, bytes_to_unicode  # noqa: E402

C, H, KV, HD, F, T = 32, 2, 1, 16, 64, 32


def main(out, narrow, long_bos, inexact):
    rng = np.random.default_rng(11)
    f = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float32)
    ones = lambda n: (1 + rng.standard_normal(n) * 0.1).astype(np.float32)
    w = Writer()
    w.add("general.architecture", "str", "qwen2")
    for k, v in (("context_length", T), ("embedding_length", C), ("feed_forward_length", F),
                 ("block_count", 1), ("attention.head_count", H),
                 ("attention.head_count_kv", KV)):
        w.add(f"qwen2.{k}", "u32", v)
    w.add("qwen2.attention.layer_norm_rms_epsilon", "f32", 1e-6)
    w.add("qwen2.rope.freq_base", "f32", 10000.0)
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)] + ["ab", "<|endoftext|>"]
    types = [1] * 257 + [3]
    if long_bos:
        tokens.append("a" * 2000)
        types.append(1)
        w.add("tokenizer.ggml.bos_token_id", "u32", len(tokens) - 1)
    w.add("tokenizer.ggml.model", "str", "gpt2")
    w.add("tokenizer.ggml.pre", "str", "qwen2")
    w.add("tokenizer.ggml.tokens", "strs", tokens)
    w.add("tokenizer.ggml.token_type", "i32s", types)
    w.add("tokenizer.ggml.merges", "strs", ["a b"])
    if narrow:
        w.add("sqlite_gpt.tensor_dtypes", "str", json.dumps({"blk.0.attn_qkv.bias": "f16"}))
    w.tensor("token_embd.weight", 0, f(len(tokens), C))
    w.tensor("blk.0.attn_norm.weight", 0, ones(C))
    w.tensor("blk.0.attn_q.weight", 0, f(H * HD, C))
    w.tensor("blk.0.attn_k.weight", 0, f(KV * HD, C))
    w.tensor("blk.0.attn_v.weight", 0, f(KV * HD, C))
    bias = np.arange(H * HD + 2 * KV * HD, dtype=np.float32)
    if inexact:
        bias[5] = 0.1
    w.tensor("blk.0.attn_qkv.bias", 0, bias)
    w.tensor("blk.0.attn_output.weight", 0, f(C, H * HD))
    w.tensor("blk.0.ffn_norm.weight", 0, ones(C))
    w.tensor("blk.0.ffn_gate.weight", 0, f(F, C))
    w.tensor("blk.0.ffn_up.weight", 0, f(F, C))
    w.tensor("blk.0.ffn_down.weight", 0, f(C, F))
    w.tensor("output_norm.weight", 0, ones(C))
    w.write(out)


if __name__ == "__main__":
    flags = sys.argv[2:]
    if len(sys.argv) < 2 or any(f not in ("--f16", "--long-bos", "--inexact") for f in flags):
        sys.exit(__doc__)
    main(sys.argv[1], "--f16" in flags, "--long-bos" in flags, "--inexact" in flags)
