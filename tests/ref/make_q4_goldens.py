#!/usr/bin/python3
"""Writes tests/golden/q4_blocks.txt: float64 reference values of ggml's
block formats q4_0, q4_K and q6_K, for build/q4_test.

  tests/ref/make_q4_goldens.py

The blocks are random bytes (seeded, so the file is reproducible) with the
f16 scales set to chosen finite values, edge cases included (a subnormal
scale, q6_K's int8 scale -128, 6-bit scales and mins of 63). Each value is
decoded here from the format's definition, independently of the engine:

  q4_0 (18 bytes, 32 values): d = f16 bytes 0-1; byte 2+j holds value j in
      its low nibble and value j+16 in its high nibble; value = d * (n - 8).
  q4_K (144 bytes, 256 values): d = f16 bytes 0-1, dmin = f16 bytes 2-3,
      12 bytes of packed 6-bit scales and mins (sub-block s < 4: scale = byte
      s & 63, min = byte s+4 & 63; s >= 4: scale = (byte s+4 & 15) | (byte
      s-4 >> 6) << 4, min = (byte s+4 >> 4) | (byte s >> 6) << 4), then 128
      bytes of nibbles: 32 bytes per pair of sub-blocks (2p low nibbles,
      2p+1 high); value = d * scale * n - dmin * min.
  q6_K (210 bytes, 256 values): ql[128], qh[64], int8 scales[16], f16 d;
      per half h of 128 values (ql + 64h, qh + 32h), value l + 32g (g < 4,
      l < 32) has low bits from ql[l + 32 (g & 1)] (low nibble for g < 2,
      high otherwise) and high bits (qh[l] >> 2g) & 3; value i =
      d * scales[i / 16] * (q - 32).

The file also holds an activation x (int8 values q times 2^-7, with 127 or
-127 in every block of 32, so that the engine's q8 quantization of x is
exact) and, for each format, the float64 dot product of every row with x.

Format (whitespace-separated, '#' lines are comments):
  x K q_0 ... q_{K-1}                   x[k] = q_k / 128
  block NAME ROWS K HEX                 ROWS rows of K values
  values v_0 ...                        ROWS * K float64 values, row-major
  dots d_0 ... d_{ROWS-1}
"""
import os
import random
import struct

import numpy as np

K = 512
ROWS = 3


def f16(h):
    """The value of IEEE half bits h, as a Python float (exact)."""
    return float(np.frombuffer(struct.pack('<H', h), dtype='<f2')[0])


def f16_bits(v):
    return struct.unpack('<H', np.float16(v).tobytes())[0]


def dequant_q4_0(b):
    d = f16(b[0] | b[1] << 8)
    out = [0.0] * 32
    for j in range(16):
        out[j] = d * ((b[2 + j] & 15) - 8)
        out[j + 16] = d * ((b[2 + j] >> 4) - 8)
    return out


def scale_min_k4(s, sc):
    if s < 4:
        return sc[s] & 63, sc[s + 4] & 63
    return (sc[s + 4] & 15) | (sc[s - 4] >> 6) << 4, (sc[s + 4] >> 4) | (sc[s] >> 6) << 4


def dequant_q4_k(b):
    d = f16(b[0] | b[1] << 8)
    dmin = f16(b[2] | b[3] << 8)
    sc = b[4:16]
    qs = b[16:144]
    out = []
    for s in range(8):
        scale, mn = scale_min_k4(s, sc)
        for l in range(32):
            byte = qs[32 * (s // 2) + l]
            n = byte & 15 if s % 2 == 0 else byte >> 4
            out.append(d * scale * n - dmin * mn)
    return out


def dequant_q6_k(b):
    ql, qh = b[0:128], b[128:192]
    scales = struct.unpack('<16b', bytes(b[192:208]))
    d = f16(b[208] | b[209] << 8)
    out = [0.0] * 256
    for h in range(2):
        for g in range(4):
            for l in range(32):
                low = ql[64 * h + l + 32 * (g & 1)]
                low = low & 15 if g < 2 else low >> 4
                high = (qh[32 * h + l] >> (2 * g)) & 3
                i = 128 * h + 32 * g + l
                out[i] = d * scales[i // 16] * ((low | high << 4) - 32)
    return out


FORMATS = {
    'q4_0': (32, 18, dequant_q4_0),
    'q4_k': (256, 144, dequant_q4_k),
    'q6_k': (256, 210, dequant_q6_k),
}


def make_blocks(rng, name, n):
    nval, nbytes, _ = FORMATS[name]
    blocks = []
    for i in range(n):
        b = bytearray(rng.getrandbits(8) for _ in range(nbytes))
        scale = rng.uniform(0.002, 0.05)
        if i == 1:
            scale = 3e-6  # a subnormal f16 scale
        if name == 'q4_0':
            b[0:2] = struct.pack('<H', f16_bits(scale if i % 2 else -scale))
        elif name == 'q4_k':
            b[0:2] = struct.pack('<H', f16_bits(scale / 16))
            b[2:4] = struct.pack('<H', f16_bits(rng.uniform(0, 0.003)))
            if i == 2:
                b[4:16] = bytes([0xff] * 12)  # every scale and min 63
        else:
            b[208:210] = struct.pack('<H', f16_bits(scale / 32))
            if i == 2:
                b[192] = 0x80  # scale -128
        blocks.append(b)
    return blocks


def main():
    rng = random.Random(20240415)
    xq = [rng.randint(-127, 127) for _ in range(K)]
    for b in range(K // 32):
        xq[32 * b + rng.randrange(32)] = 127 if b % 2 else -127
    x = np.array(xq, dtype=np.float64) / 128.0
    lines = ['# written by tests/ref/make_q4_goldens.py; do not edit',
             'x %d %s' % (K, ' '.join(str(v) for v in xq))]
    for name, (nval, nbytes, dequant) in FORMATS.items():
        blocks = make_blocks(rng, name, ROWS * K // nval)
        values = []
        for b in blocks:
            values.extend(dequant(b))
        w = np.array(values, dtype=np.float64).reshape(ROWS, K)
        dots = w @ x
        lines.append('block %s %d %d %s' % (name, ROWS, K, b''.join(blocks).hex()))
        lines.append('values ' + ' '.join(repr(float(v)) for v in values))
        lines.append('dots ' + ' '.join(repr(float(v)) for v in dots))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'golden',
                       'q4_blocks.txt')
    with open(out, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('wrote', os.path.normpath(out))


if __name__ == '__main__':
    main()
