"""gpt_quantize's 4-bit dtypes through Python's sqlite3: the trained demo
model quantized to q4_k and q4_0 generates the same greedy text as the
original for its first tokens and agrees on the top next token over a fixed
text; a 4-bit row with a NaN scale is refused with the block named.
Debian's python3 and its sqlite3 module.

    python3 tests/python/test_q4.py BUILD_DIR
"""
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, fail, finish, skip  # noqa: E402

build = sys.argv[1] if len(sys.argv) > 1 else "build"
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "demo.db")
    shutil.copyfile(os.path.join(root, "models", "shakespeare.db"), path)
    db = sqlite3.connect(path, isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(os.path.join(build, "gpt"))
    for dt in ("q4_k", "q4_0"):
        r = db.execute("SELECT gpt_quantize('shakespeare', ?, ?)", ("d-" + dt, dt)).fetchone()[0]
        check(f"quantize {dt}", r.startswith(f"quantized 'shakespeare' to 'd-{dt}' ({dt})"), r)
    g = ("SELECT gpt_generate('ROMEO:', json_object('model', ?, 'temperature', 0, "
         "'max_tokens', 48))")
    ref = db.execute(g, ("shakespeare",)).fetchone()[0]
    check("greedy is text", isinstance(ref, str) and len(ref) > 30, repr(ref))
    with open(os.path.join(root, "tests", "data", "tinyshakespeare.txt")) as f:
        words = f.read(2000).split()
    for dt in ("q4_k", "q4_0"):
        out = db.execute(g, ("d-" + dt,)).fetchone()[0]
        check(f"greedy {dt}", isinstance(out, str) and out[:24] == ref[:24], f"{out!r} {ref!r}")
        agree = 0
        for i in range(1, 31):
            p = " ".join(words[:i + 1])
            q = "SELECT token_id FROM gpt_next_tokens(?, 1, json_object('model', ?))"
            a = db.execute(q, (p, "shakespeare")).fetchone()[0]
            b = db.execute(q, (p, "d-" + dt)).fetchone()[0]
            agree += a == b
        check(f"top-1 {dt}", agree >= 27, f"{agree} of 30")
        print(f"  {dt}: top-1 agrees on {agree} of 30 steps")
    # a NaN d in block 2 of a q4_0 row
    name = "h.0.mlp.c_fc.weight"
    data = bytearray(db.execute("SELECT data FROM gpt_tensors WHERE model = 'd-q4_0' AND name = ?",
                                (name,)).fetchone()[0])
    data[36:38] = struct.pack("<H", 0x7E00)
    db.execute("UPDATE gpt_tensors SET data = ? WHERE model = 'd-q4_0' AND name = ?",
               (bytes(data), name))
    try:
        db.execute(g, ("d-q4_0",)).fetchone()
        check("NaN scale refused", False, "no error")
    except sqlite3.OperationalError as e:
        check("NaN scale refused", str(e) == "gpt_generate: model 'd-q4_0': tensor "
              "h.0.mlp.c_fc.weight: q4_0 block 2 has a non-finite scale", str(e))
    db.close()

def ggml_q8_0(x):
    """ggml's quantize_row_q8_0_ref over rows (n, K) of float32."""
    b = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    d = (np.abs(b).max(-1) / np.float32(127)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    v = (b * inv[..., None]).astype(np.float32)
    q = (np.sign(v) * np.floor(np.abs(v).astype(np.float64) + 0.5)).astype(np.int8)  # roundf
    out = np.zeros(b.shape[:2] + (34,), np.uint8)
    out[..., :2] = d.astype("<f2")[..., None].view(np.uint8)
    out[..., 2:] = q.view(np.uint8)
    return out.tobytes()


def ggml_q4_0(x):
    """ggml's quantize_row_q4_0_ref over rows (n, K) of float32."""
    b = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    mx = np.take_along_axis(b, np.abs(b).argmax(-1)[..., None], -1)[..., 0]  # the first
    d = (mx / np.float32(-8)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(15, np.trunc((b * inv[..., None]).astype(np.float32) + np.float32(8.5)))
    q = q.astype(np.uint8)
    out = np.zeros(b.shape[:2] + (18,), np.uint8)
    out[..., :2] = d.astype("<f2")[..., None].view(np.uint8)
    out[..., 2:] = q[..., :16] | (q[..., 16:] << 4)
    return out.tobytes()


# An interrupt stops gpt_quantize inside one large tensor (a 50,257 x 256
# embedding here; Llama 3 8B's has 525M values): it was read between
# tensors only, 1.9 s late here and 11.8 s on a 51M-value tensor.
with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.join(tmp, "wide")
    subprocess.run([os.path.join(build, "mkmodel"), folder, "--arch", "llama", "--layers", "1",
                    "--heads", "4", "--embd", "256", "--ffn", "512", "--ctx", "64", "--untied"],
                   check=True, stdout=subprocess.DEVNULL)
    db = sqlite3.connect(os.path.join(tmp, "w.db"), isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(os.path.join(build, "gpt"))
    db.execute("SELECT gpt_import('wide', ?)", (folder,))
    # q8_0 and q4_0 bytes are those of ggml's quantize_row_q8_0_ref and
    # quantize_row_q4_0_ref (ported below from their C): q from the f32
    # scale's reciprocal, before its f16 rounding; q4_0 rounds half up
    for dt, port in (("q8_0", ggml_q8_0), ("q4_0", ggml_q4_0)):
        db.execute("SELECT gpt_quantize('wide', ?, ?)", ("wide-" + dt, dt))
        rows = db.execute("SELECT s.shape, s.data, q.data FROM gpt_tensors s JOIN gpt_tensors q "
                          "ON q.name = s.name AND q.model = ? AND q.dtype = ? "
                          "WHERE s.model = 'wide'", ("wide-" + dt, dt)).fetchall()
        same = sum(port(np.frombuffer(f, "<f4").reshape(json.loads(shape))) == q
                   for shape, f, q in rows)
        check(f"{dt} bytes are ggml's", len(rows) >= 8 and same == len(rows),
              f"{same} of {len(rows)} tensors")
    late = []
    for delay in (0.2, 0.5, 0.8, 1.1):
        timer = threading.Timer(delay, db.interrupt)
        t0 = time.monotonic()
        timer.start()
        try:
            db.execute("SELECT gpt_quantize('wide', 'wide-q', 'q4_k')").fetchone()
            late.append((delay, "finished"))
            db.execute("SELECT gpt_drop('wide-q')")
        except sqlite3.OperationalError as e:
            late.append((delay, round(time.monotonic() - t0 - delay, 3), str(e)))
        timer.join()
    check("quantize interrupted inside a tensor",
          all(len(x) == 3 and x[1] < 0.5 and x[2] == "gpt_quantize: model 'wide-q': interrupted"
              for x in late), late)
    db.close()

finish("test_q4.py")
