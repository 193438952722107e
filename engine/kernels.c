/*
** The kernel sets of kernels.h: portable C, AVX2 and AVX-512.
**
** How it works: each set is a table of function pointers. The x86 sets are
** compiled with GCC target attributes, so this file builds with the default
** flags and the CPU is asked at run time (__builtin_cpu_supports) which sets
** it can run. Gemv kernels take a range of output rows; f32 goes up to four
** rows per pass over x, as f16 and q8_0 do on AVX-512 (on AVX2 they take
** one row a pass: see avx2_gemv_f16), each row with its own accumulators:
** a row's result is the same whether it was computed in a group of four or
** alone, so any split of the rows over threads gives identical output.
** The products of several tokens (gemm_f32, gemm_q8) tile rows by tokens
** with each value's arithmetic the gemv's, so a prefill gives the decode's
** numbers bit for bit. f16 rows are widened to f32 (exactly) for gemm_f32,
** whose arithmetic is gemv_f16's too.
**
** q8_0 rows are multiplied with activations quantized the same way (int8 per
** block of 32 with an f32 scale): per block, the 32 int8 products are summed
** exactly in integers (maddubs/madd on |x| and sign-adjusted weights, as in
** llama.cpp), then scaled by d_w * d_x and accumulated in f32.
*/
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"
#include "kernels.h"
#include "kernels_q4.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GPT_X86 1
#include <cpuid.h>
#include <immintrin.h>
#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define VNNI_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
/* only where kernels_q4.c has checked for VBMI too (its VNNI set) */
#define VBMI_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define ALWAYS_INLINE inline __attribute__((always_inline))
#endif

/* 512-bit vectors a chunk of a repacked token and a repacked row take (the
** VNNI q8_0 kernels): slices 0-7, then (token) -128 times each block's sum
** and the scales, or (row) the scales, all in lane order. */
#define Q8_TOKEN_VECS 10
#define Q8_ROW_VECS 9

/* Loops over the rows of a group must be unrolled, at -O2 too: otherwise
** the per-row accumulators live in memory and every step waits on a store.
** (About twice the speed of the q8_0 kernel.) */
#define UNROLL_ROWS _Pragma("GCC unroll 4")

/* The f16 and q8_0 gemv kernels, which spend more instructions per byte
** than f32, prefetch ahead of where they read: f16 touches each row's next
** row as it goes (AVX-512: PF_F16_BYTES ahead); q8_0, whose 34-byte blocks cost
** the most per byte, reads PF_Q8_BYTES ahead in the weight stream instead,
** which from memory on Zen 3 runs near the speed of a plain read (2
** threads: 27.4 -> 29.2 GB/s against 29.9 for the read; 1 thread: 17.0 ->
** 19.8 against 21.5); 2-16 KB ahead all do about as well.
** The AVX2 f32 kernel reads faster without (the hardware prefetcher keeps
** up, and prefetches cost load slots). Prefetches never fault, and those past
** the end of W are dropped. The AVX-512 q8_0 gemv reads four rows a pass
** (kernels_q8_tile.h) and touches each row PF_Q8_TILE_BYTES ahead: from
** memory on Zen 5, 1 thread, 0.68-0.77 of a plain read 4 KB ahead, 0.90-1.14
** 8-16 KB ahead. Touching it both 8 and 16 KB ahead read the SmolLM2-shaped
** decode step's products 1.14-1.26x as fast on 1 thread, 1.05x on 2
** (medians of interleaved runs; 8, 16 and 24 KB ahead: 0.9x of 8 and 16;
** the AVX2 kernel, one row a pass, is slower with a second distance).
**
** The AVX-512 kernels prefetch into L2 (PREFETCH_L2, prefetcht1), not L1:
** rows touched kilobytes ahead, four at a time, filled the 32 KB L1 with
** lines not needed yet and pushed out those in use. Zen 4, interleaved
** runs: the q8_0 gemv from memory on 2 threads 0.71 -> 0.93 of a plain read
** (means of 8); the SmolLM2-shaped decode in q8_0 137.5 -> 183.6 tok/s on 2
** threads (medians of 5), 85.6 -> 139.2 on 1; in f16 on 1 thread 55.9 ->
** 70.4; the f32 gemm at 16 tokens from memory, K 768 63-68 -> 71-78
** GFLOP/s, K 3072 54-56 -> 63-69; prefill unchanged. The AVX2 kernels, one
** row a pass, keep L1: into L2, their q8_0 decode ran 0.89x on 1 thread.
** Into L2, the AVX-512 f32 gemv gains from touching its rows too, 16 KB
** ahead (PF_F32_BYTES): the SmolLM2-shaped f32 decode on Zen 4 went from
** 24.2-27.1 to 31.5-36.6 tok/s on 1 thread and 40.5-48.5 to 48.6-63.5 on 2
** (interleaved; 8 KB: 29.6-32.8 and 44.2-62.0; 32 KB: 31.6-34.4 and 46.2-48.8). */
#define PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
#define PREFETCH_L2(p) __builtin_prefetch((const void *)(p), 0, 2)
#define PF_Q8_BYTES 4096
#define PF_Q8_TILE_BYTES 8192
/* The AVX-512 f16 gemv on eighths (Zen 4; avx512_gemv) touches its streams
** 8 KB ahead. Touching the next row instead (1-2 KB ahead at the models' K),
** the SmolLM2-shaped decode step's products from memory on Zen 5 read
** 0.78-0.95x as fast on 1 thread, 0.83-1.0x on 2 (before the gemv read
** quarters untouched there). (The AVX2 kernel keeps the next row, chosen on
** Zen 3; on Zen 5 8 KB ahead read 1.15-1.24x on 1 thread, 0.95-1.03x on 2.)
** Into L2 on Zen 4, 4 and 16 KB ahead did no better than 8. */
#define PF_F16_BYTES 8192
#define PF_F32_BYTES 16384

static void p_q8_quantize_act(GPTQ8Act *out, const float *x, int K);

/* The f16 scale at the head of a q8_0 block. */
static inline uint16_t q8_scale_bits(const uint8_t *blk) {
  return (uint16_t)(blk[0] | (blk[1] << 8));
}

/* ------------------------------------------------------------ portable */

/* Dot product of two f32 rows with 8 partial sums (which compilers can
** keep in one vector register without reordering any sum). */
static float p_dot(const float *a, const float *b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; j++) acc[j] += a[k + j] * b[k + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; k < n; k++) s += a[k] * b[k];
  return s;
}

/* Stores t = dot + bias into y[r] as mode says. */
static inline void store_row(float *y, int r, float dot, const float *bias, int mode) {
  float t = dot + (bias ? bias[r] : 0.0f);
  if (mode == GPT_GEMV_ADD) y[r] += t;
  else y[r] = t;
}

static void p_gemv_f32(float *y, const float *W, const float *x, const float *bias,
                       int r0, int r1, int K, int mode) {
  for (int r = r0; r < r1; r++) store_row(y, r, p_dot(W + (size_t)r * K, x, K), bias, mode);
}

static void p_gemm_f32(float *out, size_t ldo, const float *W, const float *X, size_t ldx,
                       int T, const float *bias, int r0, int r1, int K, int mode) {
  for (int t = 0; t < T; t++)
    p_gemv_f32(out + (size_t)t * ldo, W, X + (size_t)t * ldx, bias, r0, r1, K, mode);
}

static void p_gemv_f16(float *y, const uint16_t *W, const float *x, const float *bias,
                       int r0, int r1, int K, int mode) {
  for (int r = r0; r < r1; r++) {
    const uint16_t *w = W + (size_t)r * K;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int k = 0;
    for (; k + 8 <= K; k += 8)
      for (int j = 0; j < 8; j++) acc[j] += gpt_f16_to_f32(w[k + j]) * x[k + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; k < K; k++) s += gpt_f16_to_f32(w[k]) * x[k];
    store_row(y, r, s, bias, mode);
  }
}

/* ---- packed q8_0 rows (kernels.h), read and written a block at a time ---- */

/* The dword lane of block j of a chunk: lane L holds block 4 (L % 4) + L / 4,
** a mapping that is its own inverse. */
static inline int q8p_lane(int j) { return 4 * (j % 4) + j / 4; }

/* Block b of a packed row of nb blocks: its 32 values into q, its scale's
** bits returned. */
static uint16_t q8p_block(const uint8_t *row, int nb, int b, int8_t q[GPT_Q8_BLOCK]) {
  int nc = nb / 16;
  if (b < 16 * nc) {
    const uint8_t *chunk = row + (size_t)(b / 16) * 16 * GPT_Q8_BYTES;
    int L = q8p_lane(b % 16);
    for (int k = 0; k < GPT_Q8_BLOCK; k++)
      q[k] = (int8_t)(chunk[64 * (k / 4) + 4 * L + k % 4] ^ 0x80);
    return q8_scale_bits(chunk + 512 + 2 * L);
  }
  const uint8_t *tail = row + (size_t)nc * 16 * GPT_Q8_BYTES;
  int t = b - 16 * nc, nt = nb - 16 * nc;
  const uint8_t *v = tail + 2 * nt + GPT_Q8_BLOCK * t;
  for (int k = 0; k < GPT_Q8_BLOCK; k++) q[k] = (int8_t)(v[k] ^ 0x80);
  return q8_scale_bits(tail + 2 * t);
}

/* Rows (n, K) of stored blocks into packed rows, in place: a chunk, or the
** row's tail, is copied out, then written back rearranged. */
void gpt_q8_pack_rows(uint8_t *W, int64_t n, int K) {
  int nb = K / GPT_Q8_BLOCK, nc = nb / 16;
  size_t ld = (size_t)nb * GPT_Q8_BYTES;
  uint8_t tmp[16 * GPT_Q8_BYTES];
  for (int64_t r = 0; r < n; r++) {
    uint8_t *row = W + (size_t)r * ld;
    for (int c = 0; c < nc; c++) {
      uint8_t *chunk = row + (size_t)c * sizeof tmp;
      memcpy(tmp, chunk, sizeof tmp);
      for (int j = 0; j < 16; j++) {
        const uint8_t *blk = tmp + j * GPT_Q8_BYTES;
        int L = q8p_lane(j);
        for (int s = 0; s < 8; s++) {
          uint32_t v;
          memcpy(&v, blk + 2 + 4 * s, 4);
          v ^= 0x80808080u;
          memcpy(chunk + 64 * s + 4 * L, &v, 4);
        }
        chunk[512 + 2 * L] = blk[0];
        chunk[513 + 2 * L] = blk[1];
      }
    }
    uint8_t *tail = row + (size_t)nc * sizeof tmp;
    int nt = nb - 16 * nc;
    memcpy(tmp, tail, (size_t)nt * GPT_Q8_BYTES);
    for (int t = 0; t < nt; t++) {
      memcpy(tail + 2 * t, tmp + t * GPT_Q8_BYTES, 2);
      for (int k = 0; k < GPT_Q8_BLOCK; k++)
        tail[2 * nt + GPT_Q8_BLOCK * t + k] = tmp[t * GPT_Q8_BYTES + 2 + k] ^ 0x80;
    }
  }
}

size_t gpt_q8_sliced_bytes(int K) {
  /* q8_slice_token's layout: the chunks, and at most 8 pairs of 3 vectors;
  ** enough for any K' <= K */
  return ((size_t)(K / GPT_Q8_BLOCK / 16) * Q8_TOKEN_VECS + 8 * 3) * 64;
}

void gpt_q8_packed_to_f32(float *dst, const uint8_t *row, int K, int b0, int n) {
  int nb = K / GPT_Q8_BLOCK;
  int8_t q[GPT_Q8_BLOCK];
  for (int b = b0; b < b0 + n && b < nb; b++, dst += GPT_Q8_BLOCK) {
    float d = gpt_f16_to_f32(q8p_block(row, nb, b, q));
    for (int j = 0; j < GPT_Q8_BLOCK; j++) dst[j] = d * (float)q[j];
  }
}

/* Block b of a row as stored: its 32 values into q, its scale's bits
** returned (q8p_block's counterpart). */
static uint16_t q8_block(const uint8_t *row, int b, int8_t q[GPT_Q8_BLOCK]) {
  const uint8_t *blk = row + (size_t)b * GPT_Q8_BYTES;
  memcpy(q, blk + 2, GPT_Q8_BLOCK);
  return q8_scale_bits(blk);
}

/* The portable q8_0 gemv on rows as stored or packed: each block's exact
** integer sum times d_w d_x, added in block order. A set whose own kernels
** read packed rows gives its own bits; the portable reading of packed rows
** serves a set chosen after a model was packed, and tests. */
static void p_gemv_q8_rows(float *y, const uint8_t *W, int packed, const GPTQ8Act *x,
                           const float *bias, int r0, int r1, int K, int mode) {
  int nb = K / GPT_Q8_BLOCK;
  int8_t q[GPT_Q8_BLOCK];
  for (int r = r0; r < r1; r++) {
    const uint8_t *row = W + (size_t)r * nb * GPT_Q8_BYTES;
    float s = 0.0f;
    for (int b = 0; b < nb; b++) {
      float d = gpt_f16_to_f32(packed ? q8p_block(row, nb, b, q) : q8_block(row, b, q));
      const int8_t *xq = x->q + b * GPT_Q8_BLOCK;
      int32_t isum = 0;
      for (int j = 0; j < GPT_Q8_BLOCK; j++) isum += (int32_t)q[j] * xq[j];
      s += d * x->d[b] * (float)isum;
    }
    store_row(y, r, s, bias, mode);
  }
}

static void p_gemm_q8_rows(float *out, size_t ldo, const uint8_t *W, int packed,
                           const GPTQ8Act *X, int T, const float *bias, int r0, int r1, int K,
                           int mode) {
  for (int t = 0; t < T; t++) {
    GPTQ8Act x = gpt_q8_act_token(X, t, K);
    p_gemv_q8_rows(out + (size_t)t * ldo, W, packed, &x, bias, r0, r1, K, mode);
  }
}

static void p_gemv_q8(float *y, const uint8_t *W, const GPTQ8Act *x, const float *bias,
                      int r0, int r1, int K, int mode) {
  p_gemv_q8_rows(y, W, 0, x, bias, r0, r1, K, mode);
}

static void p_gemm_q8(float *out, size_t ldo, const uint8_t *W, const GPTQ8Act *X, int T,
                      const float *bias, int r0, int r1, int K, int mode) {
  p_gemm_q8_rows(out, ldo, W, 0, X, T, bias, r0, r1, K, mode);
}

static void p_gemv_q8p(float *y, const uint8_t *W, const GPTQ8Act *x, const float *bias,
                       int r0, int r1, int K, int mode) {
  p_gemv_q8_rows(y, W, 1, x, bias, r0, r1, K, mode);
}

static void p_gemm_q8p(float *out, size_t ldo, const uint8_t *W, const GPTQ8Act *X, int T,
                       const float *bias, int r0, int r1, int K, int mode) {
  p_gemm_q8_rows(out, ldo, W, 1, X, T, bias, r0, r1, K, mode);
}

static void p_f16_to_f32(float *dst, const uint16_t *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = gpt_f16_to_f32(src[i]);
}

static void p_q8_to_f32(float *dst, const uint8_t *src, size_t nb) {
  for (size_t b = 0; b < nb; b++, src += GPT_Q8_BYTES, dst += GPT_Q8_BLOCK) {
    float d = gpt_f16_to_f32(q8_scale_bits(src));
    for (int j = 0; j < GPT_Q8_BLOCK; j++) dst[j] = d * (float)(int8_t)src[2 + j];
  }
}

/* out = silu(g) u with libm's expf (the reference the vector sets match to
** 1e-5 relative, kernels_test). */
static void p_silu_mul(float *out, const float *g, const float *u, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void p_gelu(float *x, size_t n) {
  const float s = 0.7978845608028654f; /* sqrt(2/pi) */
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    x[i] = 0.5f * v * (1.0f + tanhf(s * (v + 0.044715f * v * v * v)));
  }
}

static float p_exp_sum(float *x, int n, float mx, float scale) {
  double sum = 0;
  for (int j = 0; j < n; j++) { x[j] = expf((x[j] - mx) * scale); sum += x[j]; }
  return (float)sum;
}

static float p_max(const float *x, int n) {
  float m = -INFINITY;
  for (int i = 0; i < n; i++)
    if (x[i] > m) m = x[i];
  return m;
}

static double p_sum_exp(const float *x, int n, float mx) {
  double sum = 0;
  for (int i = 0; i < n; i++) sum += expf(x[i] - mx);
  return sum;
}

static void p_att_scores(float *scores, const float *q, const float *k, size_t ld, int n,
                         int hd, float scale) {
  for (int j = 0; j < n; j++) scores[j] = p_dot(q, k + (size_t)j * ld, hd) * scale;
}

static void p_att_values(float *out, const float *p, const float *v, size_t ld, int n, int hd) {
  for (int d = 0; d < hd; d++) out[d] = 0.0f;
  for (int j = 0; j < n; j++)
    for (int d = 0; d < hd; d++) out[d] += p[j] * v[(size_t)j * ld + d];
}

/* In tiles of 64 rows by 16 columns, so that both sides stay in cache. */
static void p_transpose_f32(float *dst, size_t ldd, const float *src, size_t lds, int rows,
                            int cols) {
  for (int rb = 0; rb < rows; rb += 64) {
    int rEnd = rb + 64 < rows ? rb + 64 : rows;
    for (int cb = 0; cb < cols; cb += 16) {
      int cEnd = cb + 16 < cols ? cb + 16 : cols;
      for (int c = cb; c < cEnd; c++)
        for (int r = rb; r < rEnd; r++) dst[c * ldd + r] = src[r * lds + c];
    }
  }
}

static void p_transpose_u16(uint16_t *dst, size_t ldd, const uint16_t *src, size_t lds,
                            int rows, int cols) {
  for (int rb = 0; rb < rows; rb += 64) {
    int rEnd = rb + 64 < rows ? rb + 64 : rows;
    for (int cb = 0; cb < cols; cb += 16) {
      int cEnd = cb + 16 < cols ? cb + 16 : cols;
      for (int c = cb; c < cEnd; c++)
        for (int r = rb; r < rEnd; r++) dst[c * ldd + r] = src[r * lds + c];
    }
  }
}

/* att_scores_n and att_values_n for a set whose kernels take one query: a
** query at a time (every set has both, so the engine has one path). */
#define ATT_N_BY_QUERY(prefix, FN)                                                          \
  FN static void prefix##_att_scores_n(float *scores, size_t lds, const float *q, size_t ldq, \
                                       int nq, const float *k, size_t ld, int n, int causal,  \
                                       int hd, float scale) {                                 \
    for (int t = 0; t < nq; t++)                                                            \
      prefix##_att_scores(scores + (size_t)t * lds, q + (size_t)t * ldq, k, ld,             \
                          n + (causal ? t : 0), hd, scale);                                 \
  }                                                                                         \
  FN static void prefix##_att_values_n(float *out, size_t ldo, const float *p, size_t ldp,  \
                                       int nq, const float *v, size_t ld, int n, int causal,  \
                                       int hd) {                                              \
    for (int t = 0; t < nq; t++)                                                            \
      prefix##_att_values(out + (size_t)t * ldo, p + (size_t)t * ldp, v, ld,                \
                          n + (causal ? t : 0), hd);                                        \
  }
ATT_N_BY_QUERY(p, )

static const GPTKernels kPortable = {
  "portable", 0, p_gemv_f32, p_gemv_f16, p_gemv_q8, p_gemm_f32, p_gemm_q8, p_f16_to_f32, p_q8_to_f32,
  p_gelu, p_silu_mul, p_exp_sum, p_att_scores, p_att_values, p_transpose_f32, p_transpose_u16,
  p_max, p_sum_exp, p_q8_quantize_act, p_att_scores_n, p_att_values_n, NULL, p_gemv_q8p,
  p_gemm_q8p, NULL,
};

/* ---------------------------------------------------------------- AVX2 */
#ifdef GPT_X86
AVX2_FN static void avx2_q8_quantize_act(GPTQ8Act *out, const float *x, int K);

AVX2_FN static ALWAYS_INLINE float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* R rows of an f32 matrix (row stride ld) against x: two accumulators per
** row over 16 columns a step, one more step of 8, then a scalar tail. */
AVX2_FN static ALWAYS_INLINE void avx2_rows_f32(float *res, const float *W, size_t ld,
                                                const float *x, int K, int R) {
  __m256 a0[4], a1[4];
  UNROLL_ROWS for (int i = 0; i < R; i++) a0[i] = a1[i] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
    UNROLL_ROWS for (int i = 0; i < R; i++) {
      const float *w = W + i * ld + k;
      a0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(w), x0, a0[i]);
      a1[i] = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8), x1, a1[i]);
    }
  }
  if (k + 8 <= K) {
    __m256 x0 = _mm256_loadu_ps(x + k);
    UNROLL_ROWS for (int i = 0; i < R; i++) a0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(W + i * ld + k), x0, a0[i]);
    k += 8;
  }
  UNROLL_ROWS for (int i = 0; i < R; i++) {
    float s = hsum256(_mm256_add_ps(a0[i], a1[i]));
    for (int kk = k; kk < K; kk++) s += W[i * ld + kk] * x[kk];
    res[i] = s;
  }
}

AVX2_FN static void avx2_gemv_f32(float *y, const float *W, const float *x, const float *bias,
                                  int r0, int r1, int K, int mode) {
  float res[4];
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    avx2_rows_f32(res, W + (size_t)r * K, (size_t)K, x, K, 4);
    for (int i = 0; i < 4; i++) store_row(y, r + i, res[i], bias, mode);
  }
  for (; r < r1; r++) {
    avx2_rows_f32(res, W + (size_t)r * K, (size_t)K, x, K, 1);
    store_row(y, r, res[0], bias, mode);
  }
}

/* R rows (ld apart) against NT tokens (ldx apart), R, NT <= 2: for each
** pair exactly avx2_rows_f32's arithmetic (two accumulators over 16
** columns a step, one step of 8, a scalar tail), so a token's value is the
** one gemv gives it. res (NT, R). */
AVX2_FN static ALWAYS_INLINE void avx2_tile_f32(float *res, const float *W, size_t ld,
                                                const float *X, size_t ldx, int K, int R,
                                                int NT) {
  __m256 a0[2][2], a1[2][2];
  _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) a0[t][i] = a1[t][i] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    __m256 x0[2], x1[2];
    _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
      x0[t] = _mm256_loadu_ps(X + t * ldx + k);
      x1[t] = _mm256_loadu_ps(X + t * ldx + k + 8);
    }
    _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) {
      __m256 w0 = _mm256_loadu_ps(W + i * ld + k), w1 = _mm256_loadu_ps(W + i * ld + k + 8);
      _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
        a0[t][i] = _mm256_fmadd_ps(w0, x0[t], a0[t][i]);
        a1[t][i] = _mm256_fmadd_ps(w1, x1[t], a1[t][i]);
      }
    }
  }
  if (k + 8 <= K) {
    _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
      __m256 x0 = _mm256_loadu_ps(X + t * ldx + k);
      _Pragma("GCC unroll 2") for (int i = 0; i < R; i++)
        a0[t][i] = _mm256_fmadd_ps(_mm256_loadu_ps(W + i * ld + k), x0, a0[t][i]);
    }
    k += 8;
  }
  _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
    _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) {
      float s = hsum256(_mm256_add_ps(a0[t][i], a1[t][i]));
      for (int kk = k; kk < K; kk++) s += W[i * ld + kk] * X[t * ldx + kk];
      res[t * 2 + i] = s;
    }
  }
}

/* Stores an (nt, R) block of dot products (res rows stride rs) into out at
** row r, token rows ldo apart, as store_row does. */
static inline void store_block(float *out, size_t ldo, int r, const float *res, int rs, int nt,
                               int R, const float *bias, int mode) {
  for (int t = 0; t < nt; t++)
    for (int i = 0; i < R; i++) store_row(out + (size_t)t * ldo, r + i, res[t * rs + i], bias, mode);
}

/* Tokens in sweeps (gemm_sweep): their rows of X stay in cache while every
** group of W's rows meets them, and each group of rows stays in cache while
** it meets the sweep's tokens, a tile at a time. */
#define GEMM_SWEEP_BYTES ((size_t)384 << 10)
/* Tokens a sweep takes of tokens of esz bytes a value, K values each (f32:
** 4; quantized: 2, the int8 values and their magnitudes): as many as fill
** GEMM_SWEEP_BYTES (a third of a 1 MB L2), 8 to 96 of them, a multiple of 4. */
static inline int gemm_sweep(int K, size_t esz) {
  size_t n = GEMM_SWEEP_BYTES / ((size_t)K * esz + 1);
  n = n < 8 ? 8 : n > 96 ? 96 : n;
  return (int)n / 4 * 4;
}

AVX2_FN static void avx2_gemm_f32(float *out, size_t ldo, const float *W, const float *X,
                                  size_t ldx, int T, const float *bias, int r0, int r1, int K,
                                  int mode) {
  float res[4];
  int sweep = gemm_sweep(K, 4);
  for (int t0 = 0; t0 < T; t0 += sweep) {
    int t1 = t0 + sweep < T ? t0 + sweep : T;
    for (int r = r0; r < r1; r += 2) {
      const float *w = W + (size_t)r * K;
      int R = r1 - r < 2 ? r1 - r : 2;
      for (int t = t0; t < t1; t += 2) {
        const float *x = X + (size_t)t * ldx;
        int nt = t1 - t < 2 ? t1 - t : 2;
        if (R == 2 && nt == 2) avx2_tile_f32(res, w, (size_t)K, x, ldx, K, 2, 2);
        else if (R == 2) avx2_tile_f32(res, w, (size_t)K, x, ldx, K, 2, 1);
        else if (nt == 2) avx2_tile_f32(res, w, (size_t)K, x, ldx, K, 1, 2);
        else avx2_tile_f32(res, w, (size_t)K, x, ldx, K, 1, 1);
        store_block(out + (size_t)t * ldo, ldo, r, res, 2, nt, R, bias, mode);
      }
    }
  }
}

AVX2_FN static ALWAYS_INLINE __m256 avx2_load_f16(const uint16_t *p) {
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* One row of f16 weights (K,) against x, touching the next row as it goes. */
AVX2_FN static ALWAYS_INLINE float avx2_row_f16(const uint16_t *w, const float *x, int K) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    if ((k & 31) == 0) PREFETCH(w + K + k);
    a0 = _mm256_fmadd_ps(avx2_load_f16(w + k), _mm256_loadu_ps(x + k), a0);
    a1 = _mm256_fmadd_ps(avx2_load_f16(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
  }
  if (k + 8 <= K) {
    a0 = _mm256_fmadd_ps(avx2_load_f16(w + k), _mm256_loadu_ps(x + k), a0);
    k += 8;
  }
  float s = hsum256(_mm256_add_ps(a0, a1));
  for (; k < K; k++) s += gpt_f16_to_f32(w[k]) * x[k];
  return s;
}

/* One row a pass, not four: the weights then stream from memory in order,
** which the prefetchers follow best (Zen 3, 2 threads, from memory: f16 25
** -> 31 GB/s, q8_0 21 -> 28 GB/s; the f32 kernel gains nothing). */
AVX2_FN static void avx2_gemv_f16(float *y, const uint16_t *W, const float *x, const float *bias,
                                  int r0, int r1, int K, int mode) {
  for (int r = r0; r < r1; r++) store_row(y, r, avx2_row_f16(W + (size_t)r * K, x, K), bias, mode);
}

/* The f32 value of a q8_0 block's scale. */
AVX2_FN static ALWAYS_INLINE float avx2_q8_scale(const uint8_t *blk) {
  return _cvtsh_ss(q8_scale_bits(blk));
}

/* The same scale times dx in all eight lanes: the block's first four bytes
** go into a register with one load (vcvtph2ps reads the low two), which
** costs fewer instructions than building the 16-bit value. */
AVX2_FN static ALWAYS_INLINE __m256 avx2_q8_dscale(const uint8_t *blk, __m256 dx) {
  uint32_t u;
  memcpy(&u, blk, 4);
  __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128((int)u));
  return _mm256_mul_ps(_mm256_broadcastss_ps(d), dx);
}

/* Eight int32 partial sums of one block: sum of q_w * q_x over 32 int8,
** computed as |q_x| * (q_w with q_x's sign), exact in 16 then 32 bits. */
AVX2_FN static ALWAYS_INLINE __m256 avx2_q8_block(const uint8_t *blk, __m256i xq, __m256i axq) {
  __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 2));
  __m256i p16 = _mm256_maddubs_epi16(axq, _mm256_sign_epi8(w, xq));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* One row of nb q8_0 blocks against x, a block a step: the block's scale
** d_w * d_x is one scalar product (F16C widens d_w), then a broadcast and
** an FMA onto the row's eight partial sums. (Gathering eight scales of a
** row into one vcvtph2ps costs more than it saves.) */
AVX2_FN static ALWAYS_INLINE float avx2_row_q8(const uint8_t *row, const GPTQ8Act *x, int nb) {
  __m256 acc = _mm256_setzero_ps();
  for (int b = 0; b < nb; b++) {
    const uint8_t *blk = row + (size_t)b * GPT_Q8_BYTES;
    __m256i xq = _mm256_loadu_si256((const __m256i *)(x->q + b * GPT_Q8_BLOCK));
    __m256i axq = _mm256_loadu_si256((const __m256i *)(x->aq + b * GPT_Q8_BLOCK));
    PREFETCH(blk + PF_Q8_BYTES);
    __m256 d = avx2_q8_dscale(blk, _mm256_broadcast_ss(x->d + b));
    acc = _mm256_fmadd_ps(d, avx2_q8_block(blk, xq, axq), acc);
  }
  return hsum256(acc);
}

AVX2_FN static void avx2_gemv_q8(float *y, const uint8_t *W, const GPTQ8Act *x, const float *bias,
                                 int r0, int r1, int K, int mode) {
  int nb = K / GPT_Q8_BLOCK;
  size_t ld = (size_t)nb * GPT_Q8_BYTES;
  for (int r = r0; r < r1; r++) store_row(y, r, avx2_row_q8(W + (size_t)r * ld, x, nb), bias, mode);
}

/* R rows (ld bytes apart) against NT quantized tokens, R, NT <= 2: for each
** pair exactly avx2_row_q8's arithmetic. res (NT, 2). */
AVX2_FN static ALWAYS_INLINE void avx2_tile_q8(float *res, const uint8_t *W, size_t ld,
                                               const GPTQ8Act *X, int t0, int K, int R, int NT) {
  int nb = K / GPT_Q8_BLOCK;
  __m256 acc[2][2];
  _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) acc[t][i] = _mm256_setzero_ps();
  for (int b = 0; b < nb; b++) {
    _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++) {
      size_t o = (size_t)(t0 + t) * K + (size_t)b * GPT_Q8_BLOCK;
      __m256i xq = _mm256_loadu_si256((const __m256i *)(X->q + o));
      __m256i axq = _mm256_loadu_si256((const __m256i *)(X->aq + o));
      __m256 dx = _mm256_broadcast_ss(X->d + (size_t)(t0 + t) * nb + b);
      _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) {
        const uint8_t *blk = W + i * ld + (size_t)b * GPT_Q8_BYTES;
        acc[t][i] = _mm256_fmadd_ps(avx2_q8_dscale(blk, dx), avx2_q8_block(blk, xq, axq), acc[t][i]);
      }
    }
  }
  _Pragma("GCC unroll 2") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 2") for (int i = 0; i < R; i++) res[t * 2 + i] = hsum256(acc[t][i]);
}

AVX2_FN static void avx2_gemm_q8(float *out, size_t ldo, const uint8_t *W, const GPTQ8Act *X,
                                 int T, const float *bias, int r0, int r1, int K, int mode) {
  size_t ld = (size_t)(K / GPT_Q8_BLOCK) * GPT_Q8_BYTES;
  float res[4];
  int sweep = gemm_sweep(K, 2);
  for (int t0 = 0; t0 < T; t0 += sweep) {
    int t1 = t0 + sweep < T ? t0 + sweep : T;
    for (int r = r0; r < r1; r += 2) {
      const uint8_t *w = W + (size_t)r * ld;
      int R = r1 - r < 2 ? r1 - r : 2;
      for (int t = t0; t < t1; t += 2) {
        int nt = t1 - t < 2 ? t1 - t : 2;
        if (R == 2 && nt == 2) avx2_tile_q8(res, w, ld, X, t, K, 2, 2);
        else if (R == 2) avx2_tile_q8(res, w, ld, X, t, K, 2, 1);
        else if (nt == 2) avx2_tile_q8(res, w, ld, X, t, K, 1, 2);
        else avx2_tile_q8(res, w, ld, X, t, K, 1, 1);
        store_block(out + (size_t)t * ldo, ldo, r, res, 2, nt, R, bias, mode);
      }
    }
  }
}

AVX2_FN static void avx2_f16_to_f32(float *dst, const uint16_t *src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, avx2_load_f16(src + i));
  for (; i < n; i++) dst[i] = gpt_f16_to_f32(src[i]);
}

AVX2_FN static void avx2_q8_to_f32(float *dst, const uint8_t *src, size_t nb) {
  for (size_t b = 0; b < nb; b++, src += GPT_Q8_BYTES, dst += GPT_Q8_BLOCK) {
    __m256 d = _mm256_set1_ps(avx2_q8_scale(src));
    for (int j = 0; j < GPT_Q8_BLOCK; j += 8) {
      __m128i q = _mm_loadl_epi64((const __m128i *)(src + 2 + j));
      _mm256_storeu_ps(dst + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    }
  }
}

/* exp(x) for 8 lanes: Cephes' expf (range reduction by ln 2 in two parts,
** degree-6 polynomial), within 2 ulp; inputs are clamped to [-87.3, 88.7]. */
AVX2_FN static ALWAYS_INLINE __m256 avx2_exp(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* gelu(v) = 0.5 v (1 + tanh(u)) = v / (1 + exp(-2u)), u = sqrt(2/pi) (v + 0.044715 v^3),
** which keeps full relative precision for every sign of u. */
AVX2_FN static ALWAYS_INLINE __m256 avx2_gelu8(__m256 v) {
  __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
  __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                           _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), v3, v));
  __m256 e = avx2_exp(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
  return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

AVX2_FN static void avx2_gelu(float *x, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, avx2_gelu8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(t, x + i, (n - i) * sizeof(float));
    _mm256_storeu_ps(t, avx2_gelu8(_mm256_loadu_ps(t)));
    memcpy(x + i, t, (n - i) * sizeof(float));
  }
}

/* silu(g) u = g / (1 + exp(-g)) u, exp clamped as avx2_exp does (so -g
** past 88.7 gives g / 3e38, about -0, and never inf / inf). */
AVX2_FN static ALWAYS_INLINE __m256 avx2_silu_mul8(__m256 g, __m256 u) {
  __m256 e = avx2_exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

/* out (n,) = silu(g) u, eight at a time; the tail through a zeroed block. */
AVX2_FN static void avx2_silu_mul(float *out, const float *g, const float *u, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, avx2_silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
  if (i < n) {
    float tg[8] = {0}, tu[8] = {0};
    memcpy(tg, g + i, (n - i) * sizeof(float));
    memcpy(tu, u + i, (n - i) * sizeof(float));
    _mm256_storeu_ps(tg, avx2_silu_mul8(_mm256_loadu_ps(tg), _mm256_loadu_ps(tu)));
    memcpy(out + i, tg, (n - i) * sizeof(float));
  }
}

AVX2_FN static float avx2_exp_sum(float *x, int n, float mx, float scale) {
  __m256 m = _mm256_set1_ps(mx), sc = _mm256_set1_ps(scale), acc = _mm256_setzero_ps();
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 e = avx2_exp(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), m), sc));
    _mm256_storeu_ps(x + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  float s = hsum256(acc);
  if (j < n) {
    float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int r = n - j;
    memcpy(t, x + j, (size_t)r * sizeof(float));
    _mm256_storeu_ps(t, avx2_exp(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(t), m), sc)));
    memcpy(x + j, t, (size_t)r * sizeof(float));
    for (int i = 0; i < r; i++) s += t[i];
  }
  return s;
}

/* max_ps returns its second operand when either is NaN: with the running
** maximum second, a NaN in x is passed over, as in the portable loop. */
AVX2_FN static float avx2_max(const float *x, int n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + i), m);
  float t[8], r = -INFINITY;
  _mm256_storeu_ps(t, m);
  for (int j = 0; j < 8; j++)
    if (t[j] > r) r = t[j];
  for (; i < n; i++)
    if (x[i] > r) r = x[i];
  return r;
}

/* The exps in float (avx2_exp, within 2 ulp), their sum in four double
** lanes per half. */
AVX2_FN static double avx2_sum_exp(const float *x, int n, float mx) {
  __m256 m = _mm256_set1_ps(mx);
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = avx2_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  double t[4], s = 0;
  _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
  s = (t[0] + t[1]) + (t[2] + t[3]);
  if (i < n) {
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < n - i; j++) v[j] = x[i + j] - mx;
    _mm256_storeu_ps(v, avx2_exp(_mm256_loadu_ps(v)));
    for (int j = 0; j < n - i; j++) s += v[j];
  }
  return s;
}

/* Four keys a pass over q, as the gemv kernels do rows. */
AVX2_FN static void avx2_att_scores(float *scores, const float *q, const float *k, size_t ld,
                                    int n, int hd, float scale) {
  float res[4];
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    avx2_rows_f32(res, k + (size_t)j * ld, ld, q, hd, 4);
    for (int i = 0; i < 4; i++) scores[j + i] = res[i] * scale;
  }
  for (; j < n; j++) {
    avx2_rows_f32(res, k + (size_t)j * ld, ld, q, hd, 1);
    scores[j] = res[0] * scale;
  }
}

/* The output stays in registers, 64 columns at a time, while the value
** rows stream past: one FMA per eight values, no stores in the loop. */
AVX2_FN static void avx2_att_values(float *out, const float *p, const float *v, size_t ld, int n,
                                    int hd) {
  int d0 = 0;
  for (; d0 + 64 <= hd; d0 += 64) {
    __m256 acc[8];
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int j = 0; j < n; j++) {
      const float *row = v + (size_t)j * ld + d0;
      __m256 a = _mm256_set1_ps(p[j]);
      _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
        acc[i] = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + 8 * i), acc[i]);
    }
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + d0 + 8 * i, acc[i]);
  }
  for (; d0 + 8 <= hd; d0 += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int j = 0; j < n; j++)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + (size_t)j * ld + d0), acc);
    _mm256_storeu_ps(out + d0, acc);
  }
  for (; d0 < hd; d0++) {
    float acc = 0.0f;
    for (int j = 0; j < n; j++) acc = fmaf(p[j], v[(size_t)j * ld + d0], acc);
    out[d0] = acc;
  }
}

/* 8 x 8 blocks transposed in registers; the edges one value at a time. */
AVX2_FN static void avx2_transpose_f32(float *dst, size_t ldd, const float *src, size_t lds,
                                       int rows, int cols) {
  int r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int r = 0; r < r8; r += 8) {
    for (int c = 0; c < c8; c += 8) {
      const float *s = src + r * lds + c;
      __m256 a0 = _mm256_loadu_ps(s), a1 = _mm256_loadu_ps(s + lds);
      __m256 a2 = _mm256_loadu_ps(s + 2 * lds), a3 = _mm256_loadu_ps(s + 3 * lds);
      __m256 a4 = _mm256_loadu_ps(s + 4 * lds), a5 = _mm256_loadu_ps(s + 5 * lds);
      __m256 a6 = _mm256_loadu_ps(s + 6 * lds), a7 = _mm256_loadu_ps(s + 7 * lds);
      __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
      __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
      __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
      __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
      __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float *o = dst + c * ldd + r;
      _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(o + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(o + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(o + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(o + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(o + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(o + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(o + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (int c = c8; c < cols; c++)
      for (int i = 0; i < 8; i++) dst[c * ldd + r + i] = src[(r + i) * lds + c];
  }
  for (int r = r8; r < rows; r++)
    for (int c = 0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
}

/* 8 x 8 blocks of 16-bit values transposed in SSE registers (three rounds
** of unpacks); the edges one value at a time. */
AVX2_FN static void avx2_transpose_u16(uint16_t *dst, size_t ldd, const uint16_t *src,
                                       size_t lds, int rows, int cols) {
  int r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int r = 0; r < r8; r += 8) {
    for (int c = 0; c < c8; c += 8) {
      const uint16_t *s = src + r * lds + c;
      __m128i a[8], b[8], d[8];
      for (int i = 0; i < 8; i++) a[i] = _mm_loadu_si128((const __m128i *)(s + i * lds));
      for (int i = 0; i < 4; i++) {
        b[2 * i] = _mm_unpacklo_epi16(a[2 * i], a[2 * i + 1]);
        b[2 * i + 1] = _mm_unpackhi_epi16(a[2 * i], a[2 * i + 1]);
      }
      /* b0: r0r1 cols 0-3, b1: r0r1 cols 4-7, b2: r2r3 0-3, ... */
      d[0] = _mm_unpacklo_epi32(b[0], b[2]); d[1] = _mm_unpackhi_epi32(b[0], b[2]);
      d[2] = _mm_unpacklo_epi32(b[1], b[3]); d[3] = _mm_unpackhi_epi32(b[1], b[3]);
      d[4] = _mm_unpacklo_epi32(b[4], b[6]); d[5] = _mm_unpackhi_epi32(b[4], b[6]);
      d[6] = _mm_unpacklo_epi32(b[5], b[7]); d[7] = _mm_unpackhi_epi32(b[5], b[7]);
      /* d0: r0-3 cols 0-1, d1: r0-3 cols 2-3, d2: cols 4-5, d3: cols 6-7; d4-7 rows 4-7 */
      uint16_t *o = dst + c * ldd + r;
      for (int i = 0; i < 4; i++) {
        _mm_storeu_si128((__m128i *)(o + (2 * i) * ldd), _mm_unpacklo_epi64(d[i], d[i + 4]));
        _mm_storeu_si128((__m128i *)(o + (2 * i + 1) * ldd), _mm_unpackhi_epi64(d[i], d[i + 4]));
      }
    }
    for (int c = c8; c < cols; c++)
      for (int i = 0; i < 8; i++) dst[c * ldd + r + i] = src[(r + i) * lds + c];
  }
  for (int r = r8; r < rows; r++)
    for (int c = 0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
}

ATT_N_BY_QUERY(avx2, AVX2_FN)

static const GPTKernels kAvx2 = {
  "avx2", 0, avx2_gemv_f32, avx2_gemv_f16, avx2_gemv_q8, avx2_gemm_f32, avx2_gemm_q8, avx2_f16_to_f32,
  avx2_q8_to_f32,
  avx2_gelu, avx2_silu_mul, avx2_exp_sum, avx2_att_scores, avx2_att_values, avx2_transpose_f32, avx2_transpose_u16,
  avx2_max, avx2_sum_exp, avx2_q8_quantize_act, avx2_att_scores_n, avx2_att_values_n, NULL,
  p_gemv_q8p, p_gemm_q8p, NULL,
};

/* ------------------------------------------------------------- AVX-512 */

/* The AVX-512 f32 arithmetic of the gemv and the gemm: one 16-lane
** accumulator per (row, token) over steps of 16 columns, summed by
** avx512_hsum (a tile's together), then the last K % 16 columns in order. One
** accumulator rather than two lets a gemm tile hold 24 of them (6 rows by 4
** tokens: 10 loads for 24 FMAs; two allowed 6 by 2, 16 loads for 24 FMAs,
** about 0.8 of the speed); the gemv keeps FMAs in flight by taking four rows
** a pass.
**
** f16 rows take the same arithmetic on their values widened to f32 (exact),
** so that their gemm is the f32 gemm on rows widened. Until rows were
** touched ahead into L2, the f16 gemv read one row a pass with two
** accumulators, which streamed faster than four rows; their gemm's 6 by 2
** tiles ran the SmolLM2-shaped prefill at 0.62-0.76 of sgemm on Zen 4. */
AVX512_FN static ALWAYS_INLINE __m512 avx512_load_f16(const uint16_t *p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* v, held in a register from here on. The empty asm hides where v came
** from, so GCC cannot fold a load of it into each use: in tiles that use a
** loaded vector for several tokens it loaded it again for every token, and
** the loads, not the arithmetic, set the pace. GCC only: clang builds the
** fuzz targets, and has no need of it there. */
#if defined(__clang__)
#define AVX512_IN_REG(v) (void)0
#else
#define AVX512_IN_REG(v) __asm__("" : "+v"(v))
#endif
AVX512_FN static ALWAYS_INLINE __m512i avx512_in_reg(__m512i v) {
  AVX512_IN_REG(v);
  return v;
}
AVX512_FN static ALWAYS_INLINE __m512 avx512_in_reg_ps(__m512 v) {
  AVX512_IN_REG(v);
  return v;
}

/* x's 16 lanes summed in the order of GCC's _mm512_reduce_add_ps (halves
** of 8, of 4, then lanes 0 + 2 and 1 + 3, then those two), spelled out so
** that avx512_hsum_n, which sums many vectors at once with the same
** additions, gives the same bits under any compiler. */
AVX512_FN static ALWAYS_INLINE float avx512_hsum(__m512 x) {
  __m256 h8 = _mm256_add_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)),
                            _mm512_castps512_ps256(x));
  __m128 h4 = _mm_add_ps(_mm256_extractf128_ps(h8, 1), _mm256_castps256_ps128(h8));
  __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

/* Lane j = avx512_hsum(v[j]) for j < n <= 16, bit for bit, the vectors
** summed together: each step adds halves of two vectors in one
** instruction, so sixteen sums take 31 shuffles and 15 adds where one at a
** time takes about 130 instructions. Lane 4q + m of the last step holds
** v[4m + q]. (A gemm tile's sums: 1.04x the f32 gemm, 1.13x the q8_0 gemm
** at K 768 in cache on Zen 5.) */
AVX512_FN static ALWAYS_INLINE __m512 avx512_hsum16_vec(const __m512 *v, int n) {
  const __m512 z = _mm512_setzero_ps();
  __m512 c[8], e[4], k[2];
  _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
    __m512 b = 2 * j + 1 < n ? v[2 * j + 1] : z;
    c[j] = 2 * j >= n ? z
                      : _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * j], b, 0x44),
                                      _mm512_shuffle_f32x4(v[2 * j], b, 0xEE));
  }
  _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
    e[j] = 4 * j >= n ? z
                      : _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * j], c[2 * j + 1], 0x88),
                                      _mm512_shuffle_f32x4(c[2 * j], c[2 * j + 1], 0xDD));
  _Pragma("GCC unroll 2") for (int j = 0; j < 2; j++)
    k[j] = 8 * j >= n ? z
                      : _mm512_add_ps(_mm512_shuffle_ps(e[2 * j], e[2 * j + 1], 0x44),
                                      _mm512_shuffle_ps(e[2 * j], e[2 * j + 1], 0xEE));
  __m512 r = _mm512_add_ps(_mm512_shuffle_ps(k[0], k[1], 0x88), _mm512_shuffle_ps(k[0], k[1], 0xDD));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, r);
}

/* avx512_hsum16_vec's sums stored: out[j], j < n. */
AVX512_FN static ALWAYS_INLINE void avx512_hsum16(float *out, const __m512 *v, int n) {
  float all[16];
  _mm512_storeu_ps(all, avx512_hsum16_vec(v, n));
  _Pragma("GCC unroll 16") for (int j = 0; j < n; j++) out[j] = all[j];
}

/* avx512_hsum16 of any n, sixteen at a time. */
AVX512_FN static ALWAYS_INLINE void avx512_hsum_n(float *out, const __m512 *v, int n) {
  _Pragma("GCC unroll 2") for (int j = 0; j < n; j += 16)
    avx512_hsum16(out + j, v + j, n - j < 16 ? n - j : 16);
}

/* A tile's sums: res[t * rs + i] = avx512_hsum(acc[t * as + i]) for t <
** NT, i < R (NT R <= 24). */
AVX512_FN static ALWAYS_INLINE void avx512_hsum_tile(float *res, int rs, const __m512 *acc, int as,
                                                     int NT, int R) {
  __m512 v[24];
  float sum[24];
  _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 6") for (int i = 0; i < R; i++) v[t * R + i] = acc[t * as + i];
  avx512_hsum_n(sum, v, NT * R);
  _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 6") for (int i = 0; i < R; i++) res[t * rs + i] = sum[t * R + i];
}

/* A tile's sums in registers, a vector a token: lane i of rows[t] =
** avx512_hsum(acc[t * as + i]) for t < NT, i < R (NT R <= 24, R <= 8), as
** avx512_hsum_tile's. Stored one float at a time and read back as a vector,
** the sums stalled every load on a store it could not be forwarded from
** (the q8_0 gemm at K 768 spent a fifth of its time there). */
AVX512_FN static ALWAYS_INLINE void avx512_tile_rows(__m256 *rows, const __m512 *acc, int as,
                                                     int NT, int R) {
  __m512 v[24];
  int n = NT * R;
  _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 6") for (int i = 0; i < R; i++) v[t * R + i] = acc[t * as + i];
  __m512 lo = avx512_hsum16_vec(v, n < 16 ? n : 16);
  __m512 hi = n > 16 ? avx512_hsum16_vec(v + 16, n - 16) : _mm512_setzero_ps();
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  /* sum t R + i: lane t R + i of lo, or of hi less 16 (bit 4 of the index) */
  _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
    rows[t] = _mm512_castps512_ps256(
        _mm512_permutex2var_ps(lo, _mm512_add_epi32(iota, _mm512_set1_epi32(t * R)), hi));
}

/* Where a tile's sums go: rows r.. of out (T, ldo) from token row 0, plus
** bias, as mode says (kernels.h's GPT_GEMV_*). */
typedef struct TileStore {
  float *out;
  size_t ldo;
  int r;
  const float *bias;
  int mode;
} TileStore;

/* store_block from avx512_tile_rows' vectors: a masked vector a token, the
** same additions as store_row's. */
AVX512_FN static ALWAYS_INLINE void avx512_store_rows(const TileStore *o, const __m256 *rows,
                                                      int NT, int R) {
  __mmask8 m = (__mmask8)((1u << R) - 1);
  __m256 b = o->bias ? _mm256_maskz_loadu_ps(m, o->bias + o->r) : _mm256_setzero_ps();
  _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) {
    float *y = o->out + (size_t)t * o->ldo + o->r;
    __m256 v = _mm256_add_ps(rows[t], b);
    if (o->mode == GPT_GEMV_ADD) v = _mm256_add_ps(_mm256_maskz_loadu_ps(m, y), v);
    _mm256_mask_storeu_ps(y, m, v);
  }
}

/* Value k of row i of W (ld apart), f32 or f16 (F16), as f32: 16 lanes,
** or one. */
AVX512_FN static ALWAYS_INLINE __m512 avx512_load_w(const void *W, int F16, size_t at) {
  return F16 ? avx512_load_f16((const uint16_t *)W + at) : _mm512_loadu_ps((const float *)W + at);
}
static inline float w_value(const void *W, int F16, size_t at) {
  return F16 ? gpt_f16_to_f32(((const uint16_t *)W)[at]) : ((const float *)W)[at];
}

/* R <= 8 rows (ld apart; f32, or f16 with F16) against x: res (R,). With
** TOUCH, each row touched ahead into L2, PF_F32_BYTES or PF_F16_BYTES. */
AVX512_FN static ALWAYS_INLINE void avx512_rows(float *res, const void *W, int F16, size_t ld,
                                                const float *x, int K, int R, int TOUCH) {
  const size_t esz = F16 ? sizeof(uint16_t) : sizeof(float);
  const size_t ahead = F16 ? PF_F16_BYTES : PF_F32_BYTES;
  __m512 a[8];
  _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) a[i] = _mm512_setzero_ps();
  int k = 0;
  if (F16) /* a line a step: one 64-byte load, its halves widened, fmas in k order */
    for (; k + 32 <= K; k += 32) {
      __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
      _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) {
        const uint16_t *p = (const uint16_t *)W + i * ld + k;
        if (TOUCH) PREFETCH_L2((const char *)p + ahead);
        __m512i h = _mm512_loadu_si512((const void *)p);
        a[i] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), x0, a[i]);
        a[i] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), x1, a[i]);
      }
    }
  for (; k + 16 <= K; k += 16) {
    __m512 x0 = _mm512_loadu_ps(x + k);
    _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) {
      /* a line a step (16 f32) */
      if (TOUCH && !F16) PREFETCH_L2((const char *)W + (i * ld + k) * esz + ahead);
      a[i] = _mm512_fmadd_ps(avx512_load_w(W, F16, i * ld + k), x0, a[i]);
    }
  }
  _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) {
    float s = avx512_hsum(a[i]);
    for (int kk = k; kk < K; kk++) s += w_value(W, F16, i * ld + kk) * x[kk];
    res[i] = s;
  }
}

/* Rows r.. as S streams far apart, q rows each: pass j takes row j of
** each stream (touched ahead with TOUCH). */
AVX512_FN static ALWAYS_INLINE void avx512_gemv_streams(float *y, const void *W, int F16,
                                                        const float *x, const float *bias, int r,
                                                        int q, int S, int K, int mode,
                                                        int TOUCH) {
  const size_t esz = F16 ? sizeof(uint16_t) : sizeof(float);
  float res[8];
  for (int j = 0; j < q; j++) {
    avx512_rows(res, (const char *)W + (size_t)(r + j) * K * esz, F16, (size_t)q * K, x, K, S,
                TOUCH);
    for (int i = 0; i < S; i++) store_row(y, r + j + i * q, res[i], bias, mode);
  }
}

/* y[r0..r1) of W (f32, or f16 with F16) against x, as streams far apart:
** from 64 rows a pass takes row j of each quarter of them, and with
** EIGHTHS, from 128 rows, row j of each eighth, touched ahead. Streams far
** apart keep more lines in flight than adjacent rows, which the core reads
** as one stream; how many, and whether touches help, depends on the core:
** - Zen 4: eighths, touched (gpt2-shaped f32 decode, 1 thread: 46.7 ->
**   51.4-53.5 tok/s against quarters; quarters against 4 adjacent rows:
**   41.7-42.7 -> 48.5-49.1);
** - Zen 5: quarters, untouched (a plain read of 64 MB on 1 thread: 34-41
**   GB/s as four streams, 23-31 as eight; gpt2-shaped f16 decode, 1 thread:
**   101-111 tok/s on eighths, 113-129 on quarters). Quarters untouched:
**   the gemv of 768 x 768 from memory, 1 thread, f32 40-42 -> 44-46 GB/s,
**   f16 37.5-39 -> 39-44; decode, 1 thread: f32 gpt2-shaped 63-73 -> 78-82
**   tok/s, SmolLM2-shaped 62-66 -> 69-72; f16 gpt2-shaped 121-124 ->
**   140-148, SmolLM2-shaped 115-124 -> 120-137 (2 threads: 198-204 ->
**   192-203).
** Each row's sums are the same either way. */
AVX512_FN static ALWAYS_INLINE void avx512_gemv(float *y, const void *W, int F16, const float *x,
                                                const float *bias, int r0, int r1, int K,
                                                int mode, int EIGHTHS) {
  int r = r0;
  if (EIGHTHS && r1 - r0 >= 128) {
    int q = (r1 - r0) / 8;
    avx512_gemv_streams(y, W, F16, x, bias, r, q, 8, K, mode, EIGHTHS);
    r += 8 * q;
  }
  if (r1 - r >= 64) {
    int q = (r1 - r) / 4;
    avx512_gemv_streams(y, W, F16, x, bias, r, q, 4, K, mode, EIGHTHS);
    r += 4 * q;
  }
  for (; r + 4 <= r1; r += 4) avx512_gemv_streams(y, W, F16, x, bias, r, 1, 4, K, mode, EIGHTHS);
  for (; r < r1; r++) avx512_gemv_streams(y, W, F16, x, bias, r, 1, 1, K, mode, EIGHTHS);
}

AVX512_FN static void avx512_gemv_f32(float *y, const float *W, const float *x,
                                      const float *bias, int r0, int r1, int K, int mode) {
  avx512_gemv(y, W, 0, x, bias, r0, r1, K, mode, 0);
}

AVX512_FN static void avx512_gemv_f16(float *y, const uint16_t *W, const float *x,
                                      const float *bias, int r0, int r1, int K, int mode) {
  avx512_gemv(y, W, 1, x, bias, r0, r1, K, mode, 0);
}

AVX512_FN static void avx512_gemv_f32_eighths(float *y, const float *W, const float *x,
                                              const float *bias, int r0, int r1, int K,
                                              int mode) {
  avx512_gemv(y, W, 0, x, bias, r0, r1, K, mode, 1);
}

AVX512_FN static void avx512_gemv_f16_eighths(float *y, const uint16_t *W, const float *x,
                                              const float *bias, int r0, int r1, int K,
                                              int mode) {
  avx512_gemv(y, W, 1, x, bias, r0, r1, K, mode, 1);
}

/* R <= 6 f32 rows (ld apart) against NT <= 4 tokens (ldx apart), over
** k0..k1 of their K values: for each pair exactly the gemv's arithmetic, so
** that a token's value is the one the gemv gives it. The accumulators start
** from zero (k0 = 0) or from save, and go back to save (k1 < K) or are
** summed, with the scalar tail, and stored through o (k1 = K); k0 and, but
** at K, k1 are multiples of 16. pf: npf rows (pld apart) further on,
** touched a line a step at k - k0, so that a decode step of a few tokens
** reads each row from memory once.
** The k loop walks pointers: one for rows 0-2 and one for rows 3-5 (the
** others one and two strides on), two for the tokens, so that its
** addresses take 9 registers; and it runs in a function of its own
** (avx512_tiles): inlined into the gemm's loops, GCC kept the row offsets
** and the touch tests on the stack, and read them every step (16 tokens of
** K 768 in cache: 74-88 -> 88-96 GFLOP/s a core). */
AVX512_FN static ALWAYS_INLINE void avx512_tile(const TileStore *o, __m512 *save, const float *W,
                                                size_t ld, const float *X, size_t ldx, int k0,
                                                int k1, int K, int R, int NT, const float *pf,
                                                size_t pld, int npf) {
  __m512 a[4][6];
  _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
    _Pragma("GCC unroll 6") for (int i = 0; i < R; i++)
      a[t][i] = k0 == 0 ? _mm512_setzero_ps() : save[t * 6 + i];
  const size_t ldb = ld * sizeof(float), ldxb = ldx * sizeof(float), pldb = pld * sizeof(float);
  const char *w0 = (const char *)(W + k0), *w3 = w0 + 3 * ldb;
  const char *x0 = (const char *)(X + k0), *x2 = x0 + 2 * ldxb;
  const char *p = (const char *)pf;
  int k = k0;
  for (; k + 16 <= k1; k += 16) {
    __m512 x[4];
    _Pragma("GCC unroll 6") for (int j = 0; j < 6; j++) if (j < npf) PREFETCH_L2(p + j * pldb);
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
      x[t] = _mm512_loadu_ps((const float *)((t < 2 ? x0 : x2) + (t & 1) * ldxb));
    _Pragma("GCC unroll 6") for (int i = 0; i < R; i++) {
      __m512 w = _mm512_loadu_ps((const float *)((i < 3 ? w0 : w3) + (i % 3) * ldb));
      if (NT > 1) w = avx512_in_reg_ps(w); /* loaded once for the NT tokens */
      _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        a[t][i] = _mm512_fmadd_ps(w, x[t], a[t][i]);
    }
    w0 += 64, w3 += 64, x0 += 64, x2 += 64, p += 64;
  }
  if (k1 < K) {
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
      _Pragma("GCC unroll 6") for (int i = 0; i < R; i++) save[t * 6 + i] = a[t][i];
    return;
  }
  if (k == K) {
    __m256 rows[4];
    avx512_tile_rows(rows, &a[0][0], 6, NT, R);
    avx512_store_rows(o, rows, NT, R);
    return;
  }
  /* K not a multiple of 16: the scalar tail, a value at a time */
  float res[24];
  avx512_hsum_tile(res, 6, &a[0][0], 6, NT, R);
  for (int t = 0; t < NT; t++)
    for (int i = 0; i < R; i++) {
      for (int kk = k; kk < K; kk++) res[t * 6 + i] += W[i * ld + kk] * X[t * ldx + kk];
      store_row(o->out + (size_t)t * o->ldo, o->r + i, res[t * 6 + i], o->bias, o->mode);
    }
}

/* store_block for a tile of the AVX-512 q8_0 gemm on rows as stored (res
** (nt, rs), nt <= 4, R <= 8): each token's sums loaded as a vector and
** stored by avx512_store_rows (one float at a time, with the mode test in
** the loop, it took 5% of the f32 gemm when that stored through res too). */
AVX512_FN static void avx512_store_block(float *out, size_t ldo, int r, const float *res, int rs,
                                         int nt, int R, const float *bias, int mode) {
  __mmask8 m = (__mmask8)((1u << R) - 1);
  TileStore o = {out, ldo, r, bias, mode};
  __m256 rows[4];
  for (int t = 0; t < nt; t++) rows[t] = _mm256_maskz_loadu_ps(m, res + t * rs);
  avx512_store_rows(&o, rows, nt, R);
}

typedef void (*Avx512Tile)(const TileStore *o, __m512 *save, const float *W, size_t ld,
                           const float *X, size_t ldx, int k0, int k1, int K, const float *pf,
                           size_t pld, int npf);

/* avx512_tile with R and NT constant, so that its loops unroll into
** registers; a function each, not inlined (see avx512_tile). */
#define AVX512_TILE_FN(R, NT)                                                              \
  AVX512_FN static __attribute__((noinline)) void avx512_tile_##R##_##NT(                  \
      const TileStore *o, __m512 *save, const float *W, size_t ld, const float *X,         \
      size_t ldx, int k0, int k1, int K, const float *pf, size_t pld, int npf) {           \
    avx512_tile(o, save, W, ld, X, ldx, k0, k1, K, R, NT, pf, pld, npf);                    \
  }
#define AVX512_TILE_FNS(R) \
  AVX512_TILE_FN(R, 1) AVX512_TILE_FN(R, 2) AVX512_TILE_FN(R, 3) AVX512_TILE_FN(R, 4)
AVX512_TILE_FNS(1) AVX512_TILE_FNS(2) AVX512_TILE_FNS(3)
AVX512_TILE_FNS(4) AVX512_TILE_FNS(5) AVX512_TILE_FNS(6)
#define AVX512_TILE_ROW(R) \
  {avx512_tile_##R##_1, avx512_tile_##R##_2, avx512_tile_##R##_3, avx512_tile_##R##_4}

/* The tile of R rows and NT tokens: avx512_tiles[R - 1][NT - 1]. */
static const Avx512Tile avx512_tiles[6][4] = {
  AVX512_TILE_ROW(1), AVX512_TILE_ROW(2), AVX512_TILE_ROW(3),
  AVX512_TILE_ROW(4), AVX512_TILE_ROW(5), AVX512_TILE_ROW(6),
};

/* Rows ahead of the group in hand that a tile touches (pf): about
** GEMM_AHEAD_BYTES of W, at least the next group of 6. From memory, 16
** tokens of K = 768 (a gpt_batch step of GPT-2): 84-88 GFLOP/s a core 6
** rows (18 KB) ahead, 98-104 12 or 18 rows ahead. */
#define GEMM_AHEAD_BYTES ((size_t)36 << 10)
static inline int gemm_ahead_rows(int K) {
  size_t row = (size_t)K * sizeof(float), n = (GEMM_AHEAD_BYTES + row - 1) / row;
  return n < 6 ? 6 : (int)n;
}

/* The share of a group's R rows that tile j of the nj meeting it touches
** ahead: *pn rows from row *p0, none for a tile past the rows. */
static inline void pf_share(int R, int j, int nj, int *p0, int *pn) {
  *p0 = R * j / nj;
  *pn = R * (j + 1) / nj - *p0;
}

/* The gemm's loops: tokens in sweeps, rows in groups of 6, tokens in
** groups of 4. The tiles of a group touch the rows ahead: the first tile all
** of them (spread 0), or each tile a share of them (spread 1; see
** avx512_gemm_f32). The rows ahead may lie past r1, in the next 96-row chunk
** of a product, which the member most often takes next, or past the tensor:
** a prefetch never faults. Within r1 only, the first 12 rows of each chunk
** came from memory on demand, an eighth of a gpt_batch step's weights. */
AVX512_FN static void avx512_gemm_f32_rows(float *out, size_t ldo, const float *W,
                                           const float *X, size_t ldx, int T,
                                           const float *bias, int r0, int r1, int K, int mode,
                                           int spread) {
  int sweep = gemm_sweep(K, 4), ahead = gemm_ahead_rows(K);
  for (int t0 = 0; t0 < T; t0 += sweep) {
    int t1 = t0 + sweep < T ? t0 + sweep : T, nj = (t1 - t0 + 3) / 4;
    for (int r = r0; r < r1; r += 6) {
      const float *w = W + (size_t)r * K;
      int R = r1 - r < 6 ? r1 - r : 6;
      for (int t = t0; t < t1; t += 4) {
        int nt = t1 - t < 4 ? t1 - t : 4, p0 = 0, npf = t == t0 ? R : 0;
        TileStore o = {out + (size_t)t * ldo, ldo, r, bias, mode};
        if (spread) pf_share(R, (t - t0) / 4, nj, &p0, &npf);
        avx512_tiles[R - 1][nt - 1](&o, NULL, w, (size_t)K, X + (size_t)t * ldx, ldx, 0, K, K,
                                   w + (size_t)(ahead + p0) * K, (size_t)K, npf);
      }
    }
  }
}

/* Rows too long for a 6-row group to stay in L1 (K > 1365): each group in
** blocks of at most 1024 values (24 KB), every block meeting the sweep's
** tokens while it is in L1, the accumulators kept between blocks in save
** (a sweep's tiles of 24), so that each accumulator sees the very sequence
** of fmas of the whole-K tile. The tiles of a block touch the next block (or
** the next group's first) in shares, as the spread loop's do. */
AVX512_FN static void avx512_gemm_f32_kblock(float *out, size_t ldo, const float *W,
                                             const float *X, size_t ldx, int T,
                                             const float *bias, int r0, int r1, int K, int mode) {
  _Alignas(64) __m512 save[18 * 24]; /* K > 1365: a sweep is at most 68 tokens */
  int sweep = gemm_sweep(K, 4), n_blk = (K + 1023) / 1024;
  int kb = (K / n_blk + 15) / 16 * 16;
  if (sweep > 72) sweep = 72;
  for (int t0 = 0; t0 < T; t0 += sweep) {
    int t1 = t0 + sweep < T ? t0 + sweep : T, nj = (t1 - t0 + 3) / 4;
    for (int r = r0; r < r1; r += 6) {
      const float *w = W + (size_t)r * K;
      int R = r1 - r < 6 ? r1 - r : 6;
      for (int k0 = 0; k0 < K; k0 += kb) {
        int k1 = K - k0 <= kb ? K : k0 + kb;
        /* what comes next: this group's next block, or the next group's first */
        const float *next = k1 < K ? w + k1 : w + (size_t)6 * K;
        for (int t = t0; t < t1; t += 4) {
          int nt = t1 - t < 4 ? t1 - t : 4, p0, npf;
          TileStore o = {out + (size_t)t * ldo, ldo, r, bias, mode};
          pf_share(R, (t - t0) / 4, nj, &p0, &npf);
          avx512_tiles[R - 1][nt - 1](&o, save + (size_t)(t - t0) / 4 * 24, w, (size_t)K,
                                     X + (size_t)t * ldx, ldx, k0, k1, K,
                                     next + (size_t)p0 * K, (size_t)K, npf);
        }
      }
    }
  }
}

/* Where a group of 6 rows fits a third of L1 (K <= 1365), its tiles share
** out the reads ahead, so that they go out evenly while the group is in
** hand; longer rows go in K blocks from 16 tokens on, under which a block
** meets too few tiles to pay for its saved accumulators. The three orders
** differ in reads ahead and order only, never in values. Measured in
** bench/results/2026-12-02-batch-step-breakdown-amd-epyc-2c.md (16 tokens
** from memory at K 768: 188 -> 239 GFLOP/s; 512 at K 3072: 266 -> 305). */
AVX512_FN static void avx512_gemm_f32(float *out, size_t ldo, const float *W, const float *X,
                                      size_t ldx, int T, const float *bias, int r0, int r1,
                                      int K, int mode) {
  if ((size_t)K * 6 * sizeof(float) <= ((size_t)32 << 10))
    avx512_gemm_f32_rows(out, ldo, W, X, ldx, T, bias, r0, r1, K, mode, 1);
  else if (T >= 16)
    avx512_gemm_f32_kblock(out, ldo, W, X, ldx, T, bias, r0, r1, K, mode);
  else
    avx512_gemm_f32_rows(out, ldo, W, X, ldx, T, bias, r0, r1, K, mode, 0);
}

/* ---- q8_0 on AVX-512: the helpers of kernels_q8_tile.h ---- */

/* A pair of stored blocks at p (68 bytes: two lines) touched into L2
** PF_Q8_TILE_BYTES and twice that ahead. */
static inline void q8_touch_ahead(const uint8_t *p) {
  PREFETCH_L2(p + PF_Q8_TILE_BYTES);
  PREFETCH_L2(p + PF_Q8_TILE_BYTES + 64);
  PREFETCH_L2(p + 2 * PF_Q8_TILE_BYTES);
  PREFETCH_L2(p + 2 * PF_Q8_TILE_BYTES + 64);
}

/* Lane L of a chunk's 16 block sums holds block 4 (L % 4) + L / 4 of the
** chunk, the order in which q8_tree leaves them; as a permutation of
** block-ordered lanes. */
AVX512_FN static ALWAYS_INLINE __m512i q8_lane_order(void) {
  return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
}

/* Each block's 8 partial sums added: P[j] holds blocks 2j (lanes 0-7) and
** 2j + 1 (lanes 8-15); the result holds the 16 blocks' sums in lane order.
** Quarters of P[2k], P[2k+1] first (blocks 4k..4k+3, four lanes each), then
** pairs of lanes, then single lanes, leaving block 4l + q in lane 4q + l. */
AVX512_FN static ALWAYS_INLINE __m512i q8_tree(const __m512i P[8]) {
  __m512i U[4];
  _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
    U[k] = _mm512_add_epi32(_mm512_shuffle_i32x4(P[2 * k], P[2 * k + 1], 0x88),
                            _mm512_shuffle_i32x4(P[2 * k], P[2 * k + 1], 0xDD));
  __m512i V0 = _mm512_add_epi32(_mm512_unpacklo_epi64(U[0], U[1]), _mm512_unpackhi_epi64(U[0], U[1]));
  __m512i V1 = _mm512_add_epi32(_mm512_unpacklo_epi64(U[2], U[3]), _mm512_unpackhi_epi64(U[2], U[3]));
  __m512 A = _mm512_castsi512_ps(V0), B = _mm512_castsi512_ps(V1);
  return _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(A, B, 0x88)),
                          _mm512_castps_si512(_mm512_shuffle_ps(A, B, 0xDD)));
}

/* Two blocks' 32 quants into one register, the second stride bytes after
** the first: m (>= 1) is how many blocks are left from the first; an absent
** second block reads as zeros and is not touched. */
AVX512_FN static ALWAYS_INLINE __m512i q8_load_pair(const void *p, size_t stride, int m) {
  if (m >= 2 && stride == 32) return _mm512_loadu_si512(p);
  __m512i lo = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p));
  if (m == 1) return _mm512_inserti64x4(lo, _mm256_setzero_si256(), 1);
  return _mm512_inserti64x4(lo, _mm256_loadu_si256((const __m256i *)((const char *)p + stride)), 1);
}

/* The f32 scales of 16 blocks stride bytes apart from blk (each block's
** first word), in block order. Word inserts into two registers: written to
** memory and read back as one vector, the words waited on a failed store
** forward (the q8_0 gemv in cache, 1 thread: 1.08-1.16x). */
AVX512_FN static ALWAYS_INLINE __m512 q8_scales16(const uint8_t *blk, int stride) {
  __m128i h[2];
  _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) {
    const uint8_t *p = blk + 8 * k * stride;
    __m128i v = _mm_cvtsi32_si128(q8_scale_bits(p));
    v = _mm_insert_epi16(v, q8_scale_bits(p + 1 * stride), 1);
    v = _mm_insert_epi16(v, q8_scale_bits(p + 2 * stride), 2);
    v = _mm_insert_epi16(v, q8_scale_bits(p + 3 * stride), 3);
    v = _mm_insert_epi16(v, q8_scale_bits(p + 4 * stride), 4);
    v = _mm_insert_epi16(v, q8_scale_bits(p + 5 * stride), 5);
    v = _mm_insert_epi16(v, q8_scale_bits(p + 6 * stride), 6);
    h[k] = _mm_insert_epi16(v, q8_scale_bits(p + 7 * stride), 7);
  }
  return _mm512_cvtph_ps(_mm256_set_m128i(h[1], h[0]));
}

/* The f32 scales of 16 stored blocks from blk, in block order. */
AVX512_FN static ALWAYS_INLINE __m512 q8_chunk_scales(const uint8_t *blk) {
  return q8_scales16(blk, GPT_Q8_BYTES);
}

/* The VNNI gemm repacks from this many tokens (fewer go on rows as stored). */
#define Q8_SLICE_MIN_T 4
/* and repacks at most this many rows at a time (96 of K 768: 102 KB) */
#define Q8_SLICE_ROWS 96

/* The permutations of q8_slices, built once a gemm call. */
typedef struct Q8SliceIdx { __m512i a[2], c[2], d[2]; } Q8SliceIdx;

AVX512_FN static void q8_slice_idx(Q8SliceIdx *ix) {
  /* for lane L (g = L / 4, blk = 4 (L % 4) + L / 4 as q8_lane_order) and
  ** e < 2: a = (g >= 2) 16 + (g % 2) 8 + 4 e + L % 4, c = (L / 2 >= 4) 16 +
  ** (L / 2 % 4) 4 + 2 e + L % 2, d = (blk >= 8) 16 + (blk % 8) 2 + e */
  static const int32_t a[2][16] = {
      {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27},
      {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31}};
  static const int32_t c[2][16] = {
      {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29},
      {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31}};
  static const int32_t d[2][16] = {
      {0, 8, 16, 24, 2, 10, 18, 26, 4, 12, 20, 28, 6, 14, 22, 30},
      {1, 9, 17, 25, 3, 11, 19, 27, 5, 13, 21, 29, 7, 15, 23, 31}};
  for (int e = 0; e < 2; e++) {
    ix->a[e] = _mm512_loadu_si512(a[e]);
    ix->c[e] = _mm512_loadu_si512(c[e]);
    ix->d[e] = _mm512_loadu_si512(d[e]);
  }
}

/* A 16-block chunk as loaded (v[j]: blocks 2j and 2j + 1, 8 dwords each)
** into slices: out[s] lane L = dword s of the block of lane L (lane order).
** Three rounds of two-source permutes: dwords 0-3 and 4-7 of four blocks,
** then pairs of dwords of eight blocks, then single dwords of all 16. */
AVX512_FN static ALWAYS_INLINE void q8_slices(__m512i out[8], const __m512i v[8],
                                              const Q8SliceIdx *ix) {
  __m512i a[2][4], c[2][4];
  for (int j = 0; j < 4; j++)
    for (int e = 0; e < 2; e++) a[e][j] = _mm512_permutex2var_epi32(v[2 * j], ix->a[e], v[2 * j + 1]);
  for (int h = 0; h < 2; h++)
    for (int p = 0; p < 4; p++)
      c[h][p] = _mm512_permutex2var_epi32(a[p / 2][2 * h], ix->c[p % 2], a[p / 2][2 * h + 1]);
  for (int s = 0; s < 8; s++)
    out[s] = _mm512_permutex2var_epi32(c[0][s / 2], ix->d[s % 2], c[1][s / 2]);
}

/* a on lanes 0-7, b on lanes 8-15: a pair of blocks' values, each on the
** 8 lanes of its partial sums. */
AVX512_FN static ALWAYS_INLINE __m512 q8_pair_lanes(float a, float b) {
  return _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_castps_si256(_mm256_set1_ps(a))),
                                                _mm256_castps_si256(_mm256_set1_ps(b)), 1));
}

/* The weight scales of a pair of blocks (b, b + 1; m blocks left from b);
** 0 for an absent second block. */
AVX512_FN static ALWAYS_INLINE __m512 q8_pair_wscales(const uint8_t *blk, int m) {
  return q8_pair_lanes(_cvtsh_ss(q8_scale_bits(blk)),
                       m >= 2 ? _cvtsh_ss(q8_scale_bits(blk + GPT_Q8_BYTES)) : 0.0f);
}

/* The token's scales of the same pair (dx from block b). */
AVX512_FN static ALWAYS_INLINE __m512 q8_pair_xscales(const float *dx, int m) {
  return q8_pair_lanes(dx[0], m >= 2 ? dx[1] : 0.0f);
}

/* Vectors a row and a token take repacked: nb / 16 chunks, then the pairs
** of the last nb % 16 blocks. */
static inline size_t q8_row_vecs(int K) {
  int nb = K / GPT_Q8_BLOCK;
  return (size_t)(nb / 16) * Q8_ROW_VECS + (size_t)((nb % 16 + 1) / 2) * 2;
}
static inline size_t q8_token_vecs(int K) {
  int nb = K / GPT_Q8_BLOCK;
  return (size_t)(nb / 16) * Q8_TOKEN_VECS + (size_t)((nb % 16 + 1) / 2) * 3;
}

/* A pair of q4_0 blocks' values as int8 in q8_load_pair's layout: block
** b's 32 values (low nibbles, then high) in bytes 0-31, block b + 1's in
** 32-63, zeros when it is absent (m < 2). */
AVX512_FN static ALWAYS_INLINE __m512i q4_0_load_pair(const uint8_t *blk, int m) {
  const __m512i shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
  __m128i a = _mm_loadu_si128((const __m128i *)(blk + 2));
  __m128i b = m >= 2 ? _mm_loadu_si128((const __m128i *)(blk + GPT_Q4_0_BYTES + 2))
                     : _mm_setzero_si128();
  __m512i t = _mm512_castsi256_si512(_mm256_set_m128i(b, a));
  t = _mm512_shuffle_i64x2(t, t, _MM_SHUFFLE(1, 1, 0, 0));
  __m512i v = _mm512_sub_epi8(_mm512_and_si512(_mm512_srlv_epi64(t, shift), _mm512_set1_epi8(15)),
                              _mm512_set1_epi8(8));
  return m >= 2 ? v : _mm512_inserti64x4(v, _mm256_setzero_si256(), 1);
}

/* The f32 scales of 16 q4_0 blocks from blk, in block order. */
AVX512_FN static ALWAYS_INLINE __m512 q4_0_chunk_scales(const uint8_t *blk) {
  return q8_scales16(blk, GPT_Q4_0_BYTES);
}

/* The scales of a pair of q4_0 blocks, as q8_pair_wscales. */
AVX512_FN static ALWAYS_INLINE __m512 q4_0_pair_wscales(const uint8_t *blk, int m) {
  return q8_pair_lanes(_cvtsh_ss(q8_scale_bits(blk)),
                       m >= 2 ? _cvtsh_ss(q8_scale_bits(blk + GPT_Q4_0_BYTES)) : 0.0f);
}

/* The pair of blocks t, t + 1 of a packed row's tail of nt blocks, as
** q8_load_pair lays out values, here plus 128; zeros for an absent second
** block. */
AVX512_FN static ALWAYS_INLINE __m512i q8p_load_pair(const uint8_t *tail, int t, int nt) {
  const uint8_t *p = tail + 2 * nt + GPT_Q8_BLOCK * t;
  return nt - t >= 2 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8((__mmask64)0xffffffffu, p);
}

/* The f32 scales of a packed row's tail of nt blocks, lane t for block t
** (0 from nt on). */
AVX512_FN static ALWAYS_INLINE __m512 q8p_tail_scales(const uint8_t *tail, int nt) {
  __mmask16 k = (__mmask16)((1u << nt) - 1);
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, tail));
}

/* The scales of pair t, t + 1 from q8p_tail_scales, as q8_pair_wscales
** lays them out (0 for an absent second block). */
AVX512_FN static ALWAYS_INLINE __m512 q8p_pair_scales(__m512 sc, int t, int nt) {
  __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(t),
                                 _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
  return _mm512_maskz_permutexvar_ps(nt - t >= 2 ? (__mmask16)0xffff : (__mmask16)0x00ff, idx, sc);
}

/* How slice_row finds a row's blocks. */
#define Q8_FORM_STORED 0  /* q8_0 blocks as stored */
#define Q8_FORM_Q4_0 1    /* q4_0 blocks */
#define Q8_FORM_PACKED 2  /* q8_0 rows packed (kernels.h) */

/* Row w (K values in the given form) repacked: per chunk of 16 blocks its
** slices as w + 128 (unsigned, for vpdpbusd) and its scales, lane order;
** then per pair of the last blocks its quants as w + 128 and its scales, 8
** lanes each (0 for an absent block). A q4_0 block's values n - 8 are q8_0
** values, so both give the same slices as q8_0 rows converted from them; a
** packed row holds its slices and pairs already, and is copied. dst
** (q8_row_vecs(K),). */
AVX512_FN static ALWAYS_INLINE void slice_row(__m512i *dst, const uint8_t *w, int K,
                                              const Q8SliceIdx *ix, int form) {
  int nb = K / GPT_Q8_BLOCK, b = 0, q4 = form == Q8_FORM_Q4_0;
  int bytes = q4 ? GPT_Q4_0_BYTES : GPT_Q8_BYTES;
  const __m512i order = q8_lane_order(), bias = _mm512_set1_epi8((char)0x80);
  for (; b + 16 <= nb; b += 16, dst += Q8_ROW_VECS) {
    const uint8_t *blk = w + (size_t)b * bytes;
    if (form == Q8_FORM_PACKED) {
      for (int s = 0; s < 8; s++) _mm512_store_si512(dst + s, _mm512_loadu_si512(blk + 64 * s));
      __m512 sc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 512)));
      _mm512_store_si512(dst + 8, _mm512_castps_si512(sc));
      continue;
    }
    __m512i v[8], sl[8];
    for (int j = 0; j < 8; j++)
      v[j] = q4 ? q4_0_load_pair(blk + j * 2 * bytes, 2)
                : q8_load_pair(blk + j * 2 * bytes + 2, GPT_Q8_BYTES, 2);
    q8_slices(sl, v, ix);
    for (int s = 0; s < 8; s++) _mm512_store_si512(dst + s, _mm512_xor_si512(sl[s], bias));
    __m512 sc = q4 ? q4_0_chunk_scales(blk) : q8_chunk_scales(blk);
    _mm512_store_si512(dst + 8, _mm512_castps_si512(_mm512_permutexvar_ps(order, sc)));
  }
  /* a packed row's tail: its blocks from b, their scales read once */
  const uint8_t *tail = w + (size_t)b * GPT_Q8_BYTES;
  int nt = nb - b;
  __m512 tail_sc = form == Q8_FORM_PACKED && nt > 0 ? q8p_tail_scales(tail, nt)
                                                    : _mm512_setzero_ps();
  for (; b < nb; b += 2, dst += 2) {
    const uint8_t *blk = w + (size_t)b * bytes;
    __m512i v;
    __m512 sc;
    if (form == Q8_FORM_PACKED) {
      v = q8p_load_pair(tail, b - (nb - nt), nt);
      sc = q8p_pair_scales(tail_sc, b - (nb - nt), nt);
    } else {
      v = q4 ? q4_0_load_pair(blk, nb - b) : q8_load_pair(blk + 2, GPT_Q8_BYTES, nb - b);
      v = _mm512_xor_si512(v, bias);
      sc = q4 ? q4_0_pair_wscales(blk, nb - b) : q8_pair_wscales(blk, nb - b);
    }
    _mm512_store_si512(dst, v);
    _mm512_store_si512(dst + 1, _mm512_castps_si512(sc));
  }
}

/* The -128 sum x term of VNNI's sums, lane by lane, for x as loaded. */
VNNI_FN static ALWAYS_INLINE __m512i q8_pair_base(__m512i x) {
  return _mm512_sub_epi32(_mm512_setzero_si512(),
                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), x));
}

/* A token's chunk of 16 blocks (values q, scales d) repacked: its slices,
** -128 times each block's sum of values, and its scales, lane order. dst
** (Q8_TOKEN_VECS,). */
VNNI_FN static ALWAYS_INLINE void q8_slice_token_chunk(__m512i *dst, const int8_t *q,
                                                      const float *d, const Q8SliceIdx *ix) {
  const __m512i order = q8_lane_order();
  __m512i v[8], sl[8], sum = _mm512_setzero_si512();
  for (int j = 0; j < 8; j++)
    v[j] = q8_load_pair(q + (size_t)2 * j * GPT_Q8_BLOCK, GPT_Q8_BLOCK, 2);
  q8_slices(sl, v, ix);
  for (int s = 0; s < 8; s++) {
    _mm512_store_si512(dst + s, sl[s]);
    sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8((char)0x80), sl[s]);
  }
  _mm512_store_si512(dst + 8, _mm512_sub_epi32(_mm512_setzero_si512(), sum));
  __m512 scales = _mm512_permutexvar_ps(order, _mm512_loadu_ps(d));
  _mm512_store_si512(dst + 9, _mm512_castps_si512(scales));
}

/* A token's pairs after its chunks (values q, scales d, nb blocks): per
** pair its quants, their -128 sum x term, and its scales, 8 lanes each.
** dst (3 per pair,). */
VNNI_FN static ALWAYS_INLINE void q8_slice_token_pairs(__m512i *dst, const int8_t *q,
                                                      const float *d, int nb) {
  for (int b = nb / 16 * 16; b < nb; b += 2, dst += 3) {
    __m512i x = q8_load_pair(q + (size_t)b * GPT_Q8_BLOCK, GPT_Q8_BLOCK, nb - b);
    _mm512_store_si512(dst, x);
    _mm512_store_si512(dst + 1, q8_pair_base(x));
    _mm512_store_si512(dst + 2, _mm512_castps_si512(q8_pair_xscales(d + b, nb - b)));
  }
}

/* Token t of X repacked: per chunk of 16 blocks q8_slice_token_chunk's
** vectors; then per pair of the last blocks its quants, their -128 sum x
** term, and its scales, 8 lanes each. dst (q8_token_vecs(K),). */
VNNI_FN static void q8_slice_token(__m512i *dst, const GPTQ8Act *X, int t, int K,
                                   const Q8SliceIdx *ix) {
  int nb = K / GPT_Q8_BLOCK, b = 0;
  const int8_t *q = X->q + (size_t)t * K;
  const float *d = X->d + (size_t)t * nb;
  for (; b + 16 <= nb; b += 16, dst += Q8_TOKEN_VECS)
    q8_slice_token_chunk(dst, q + (size_t)b * GPT_Q8_BLOCK, d + b, ix);
  q8_slice_token_pairs(dst, q, d, nb);
}

/* q8_0 rows as stored, for kernels_q8_tile.h */
#define Q8_ROW_BYTES GPT_Q8_BYTES
#define Q8_ROW_PAIR(blk, m) q8_load_pair((blk) + 2, GPT_Q8_BYTES, (m))
#define Q8_ROW_SCALES(blk) q8_chunk_scales(blk)
#define Q8_ROW_PAIR_WSCALES(blk, m) q8_pair_wscales((blk), (m))
#define Q8_TILE_FN AVX512_FN
#define Q8_TILE_VNNI 0
#define Q8_TILE avx512_tile_q8
#define Q8_CHUNK avx512_chunk_q8_bw
#define Q8_GEMM_ROWS avx512_gemm_q8_rows_bw
#define Q8_PAIR_DOT avx512_q8_pair_dot_bw
#define Q8_GEMM avx512_gemm_q8_bw
#define Q8_GEMV avx512_gemv_q8_bw
#include "kernels_q8_tile.h"

#define Q8_ROW_BYTES GPT_Q8_BYTES
#define Q8_ROW_PAIR(blk, m) q8_load_pair((blk) + 2, GPT_Q8_BYTES, (m))
#define Q8_ROW_SCALES(blk) q8_chunk_scales(blk)
#define Q8_ROW_PAIR_WSCALES(blk, m) q8_pair_wscales((blk), (m))
#define Q8_TILE_FN VNNI_FN
#define Q8_TILE_VNNI 1
#define Q8_TILE vnni_tile_q8
#define Q8_CHUNK vnni_chunk_q8
#define Q8_GEMM_ROWS vnni_gemm_q8_rows
#define Q8_PAIR_DOT vnni_q8_pair_dot
#define Q8_SLICE_TILE vnni_slice_tile_q8
#define Q8_SLICE_TILES vnni_slice_tiles_q8
#define Q8_SLICE_GEMM vnni_slice_gemm
#define Q8_GEMM vnni_gemm_q8
#define Q8_GEMV vnni_gemv_q8
#include "kernels_q8_tile.h"

/* ---- q4_0 rows on the q8_0 arithmetic ---- */

/* A q4_0 block's values n - 8 are q8_0 values, so q4_0 rows go through
** the q8_0 tile with their loaders (q4_0_load_pair and the scales, above
** slice_row) and give, bit for bit, what q8_0 rows converted from them give
** (gpt_q4_0_to_q8_0): the q4_0 gemm of the AVX-512 sets is then the q8_0
** gemm on slices of the q4_0 rows (VNNI) or on converted rows. */

/* With VBMI (the q4 VNNI set's CPUs have it): the tail pairs' byte pick
** of vbmi_gemv_q4_0, and sixteen scales in five loads and three byte
** permutes, where q4_0_chunk_scales takes sixteen scalar loads. */
static const uint8_t kQ4PairPick[64] = {
  2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
  2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
  20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
  20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35};
/* scale bytes 18j, 18j + 1: j < 8 from bytes 0-127 (two registers), j 8-14
** from bytes 128-255 (as 0-127), j = 15 from bytes 256-319 (as 0-63) */
static const uint8_t kQ4ScalePick[3][64] = {
  {0, 1, 18, 19, 36, 37, 54, 55, 72, 73, 90, 91, 108, 109, 126, 127},
  {16, 17, 34, 35, 52, 53, 70, 71, 88, 89, 106, 107, 124, 125},
  {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 14, 15}};

VBMI_FN static ALWAYS_INLINE __m512 q4_0_chunk_scales_vbmi(const uint8_t *blk) {
  __m512i lo = _mm512_permutex2var_epi8(_mm512_loadu_si512(blk), _mm512_loadu_si512(kQ4ScalePick[0]),
                                        _mm512_loadu_si512(blk + 64));
  __m512i hi = _mm512_permutex2var_epi8(_mm512_loadu_si512(blk + 128),
                                        _mm512_loadu_si512(kQ4ScalePick[1]),
                                        _mm512_loadu_si512(blk + 192));
  hi = _mm512_mask_permutexvar_epi8(hi, (__mmask64)0xc000, _mm512_loadu_si512(kQ4ScalePick[2]),
                                    _mm512_maskz_loadu_epi8((__mmask64)0xffff, blk + 256));
  return _mm512_cvtph_ps(_mm256_set_m128i(_mm512_castsi512_si128(hi), _mm512_castsi512_si128(lo)));
}

#define Q8_ROW_ONLY
#define Q8_ROW_BYTES GPT_Q4_0_BYTES
#define Q8_ROW_PAIR(blk, m) q4_0_load_pair((blk), (m))
#define Q8_ROW_SCALES(blk) q4_0_chunk_scales(blk)
#define Q8_ROW_PAIR_WSCALES(blk, m) q4_0_pair_wscales((blk), (m))
#define Q8_TILE_FN AVX512_FN
#define Q8_TILE_VNNI 0
#define Q8_TILE avx512_tile_q4_0_bw
#define Q8_CHUNK avx512_chunk_q4_0_bw
#define Q8_PAIR_DOT avx512_q4_0_pair_dot_bw
#define Q8_GEMV avx512_gemv_q4_0_bw
#include "kernels_q8_tile.h"

/* The q4_0 gemv with VNNI and VBMI, the same bits as avx512_tile_q4_0_bw
** (the q8_0 tile on q4_0 rows) with fewer instructions a block: a chunk's 16
** blocks are four steps of four (72 bytes: one vpermt2b picks their 4 x 16
** quant bytes; low nibbles against the activation's qp first halves, high
** nibbles against its second halves, in two vpdpbusd onto -8 times the sum
** of x), whose lanes 4m..4m+3 hold block m's partial sums; q4_0_tree adds
** them into q8_tree's lane order, so a chunk's integer sums are the q8_0
** tile's and are scaled and added in the same order. The last nb % 16
** blocks go a pair at a time on the q8_0 tile's arithmetic. */
static const uint8_t kQ4QuadPick[64] = {
  2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
  20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
  38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53,
  56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71};

/* Step k's sums (lanes 4m + p: block 4k + m, partial p) added per block:
** block 4l + q lands in lane 4q + l, as q8_tree leaves it. */
VBMI_FN static ALWAYS_INLINE __m512i q4_0_tree(const __m512i I[4]) {
  __m512i A = _mm512_add_epi32(_mm512_unpacklo_epi32(I[0], I[1]), _mm512_unpackhi_epi32(I[0], I[1]));
  __m512i B = _mm512_add_epi32(_mm512_unpacklo_epi32(I[2], I[3]), _mm512_unpackhi_epi32(I[2], I[3]));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(A, B), _mm512_unpackhi_epi64(A, B));
}

/* R rows (ld bytes apart, R <= 4) against x: res (R,). */
VBMI_FN static ALWAYS_INLINE void q4_0_tile_vbmi(float *res, const uint8_t *W, size_t ld,
                                                const GPTQ4Act *x, int K, int R) {
  int nb = K / GPT_Q4_0_BLOCK, b = 0;
  const __m512i pick = _mm512_loadu_si512(kQ4QuadPick), m4 = _mm512_set1_epi8(15);
  const __m512i eight = _mm512_set1_epi8(8), order = q8_lane_order();
  __m512 acc[4];
  _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[i] = _mm512_setzero_ps();
  for (; b + 16 <= nb; b += 16) {
    const int8_t *qp = x->qp + (size_t)b * GPT_Q4_0_BLOCK;
    __m512i base[4];
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
      __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, _mm512_loadu_si512(qp + 128 * k));
      s = _mm512_dpbusd_epi32(s, eight, _mm512_loadu_si512(qp + 128 * k + 64));
      base[k] = _mm512_sub_epi32(_mm512_setzero_si512(), s);
    }
    __m512 xd = _mm512_loadu_ps(x->d + b);
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
      const uint8_t *blk = W + i * ld + (size_t)b * GPT_Q4_0_BYTES;
      __m512i I[4];
      _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        const uint8_t *q = blk + 72 * k;
        PREFETCH_L2(q + 4096);
        PREFETCH_L2(q + 4096 + 64);
        PREFETCH_L2(q + PF_Q8_TILE_BYTES);
        PREFETCH_L2(q + PF_Q8_TILE_BYTES + 64);
        __m512i qq = _mm512_permutex2var_epi8(
            _mm512_loadu_si512(q), pick, _mm512_maskz_loadu_epi8((__mmask64)0xff, q + 64));
        __m512i lo = _mm512_and_si512(qq, m4), hi = _mm512_and_si512(_mm512_srli_epi16(qq, 4), m4);
        I[k] = _mm512_dpbusd_epi32(base[k], lo, _mm512_loadu_si512(qp + 128 * k));
        I[k] = _mm512_dpbusd_epi32(I[k], hi, _mm512_loadu_si512(qp + 128 * k + 64));
      }
      __m512 ds = _mm512_permutexvar_ps(order, _mm512_mul_ps(q4_0_chunk_scales_vbmi(blk), xd));
      acc[i] = _mm512_fmadd_ps(ds, _mm512_cvtepi32_ps(q4_0_tree(I)), acc[i]);
    }
  }
  /* the pairs: one masked load gives the quants (n + 120 = (n - 8) ^ 0x80,
  ** as the q8_0 tile's vpdpbusd takes them; an absent block's bytes meet
  ** zeros of x) and the two scales (word 9 is 0, +0.0, when absent) */
  const __m512i shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0), k120 = _mm512_set1_epi8(120);
  const __m512i pair = _mm512_loadu_si512(kQ4PairPick);
  const __m512i dpick = _mm512_set_epi16(9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0,
                                         9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0);
  for (; b < nb; b += 2) {
    int m = nb - b;
    __m512i xv = q8_load_pair(x->q + (size_t)b * GPT_Q8_BLOCK, GPT_Q8_BLOCK, m);
    __m512i base = q8_pair_base(xv);
    __m512 xs = q8_pair_xscales(x->d + b, m);
    __mmask64 mask = m >= 2 ? (__mmask64)0xfffffffff : (__mmask64)0x3ffff;
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
      __m512i v = _mm512_maskz_loadu_epi8(mask, W + i * ld + (size_t)b * GPT_Q4_0_BYTES);
      __m512i w = _mm512_add_epi8(
          _mm512_and_si512(_mm512_srlv_epi64(_mm512_permutexvar_epi8(pair, v), shift), m4), k120);
      __m512 ws = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(dpick, v)));
      __m512i P = _mm512_dpbusd_epi32(base, w, xv);
      acc[i] = _mm512_fmadd_ps(_mm512_mul_ps(ws, xs), _mm512_cvtepi32_ps(P), acc[i]);
    }
  }
  avx512_hsum_tile(res, 4, acc, 4, 1, R);
}

VBMI_FN static void vbmi_gemv_q4_0(float *y, const uint8_t *W, const GPTQ4Act *x,
                                   const float *bias, int r0, int r1, int K, int mode) {
  size_t ld = (size_t)(K / GPT_Q4_0_BLOCK) * GPT_Q4_0_BYTES;
  float res[4];
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    q4_0_tile_vbmi(res, W + (size_t)r * ld, ld, x, K, 4);
    for (int i = 0; i < 4; i++) store_row(y, r + i, res[i], bias, mode);
  }
  for (; r < r1; r++) {
    q4_0_tile_vbmi(res, W + (size_t)r * ld, ld, x, K, 1);
    store_row(y, r, res[0], bias, mode);
  }
}

/* The q4_0 gemv of the AVX-512 sets of kernels_q4.c (x as q8_0's). */
void gpt_q4_0_gemv_avx512(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                          int r0, int r1, int K, int mode, int vnni) {
  GPTQ8Act v = {x->q, x->aq, x->d, NULL};
  if (vnni) vbmi_gemv_q4_0(y, W, x, bias, r0, r1, K, mode);
  else avx512_gemv_q4_0_bw(y, W, &v, bias, r0, r1, K, mode);
}

/* ---- q8_0 on packed rows (VNNI) ---- */

/* Chunks of a token the packed gemv slices at a time (20 KB of stack: K
** up to 16384 at once; a longer row's token is sliced again each 4 rows,
** window by window). */
#define Q8P_WINDOW 32

/* Reading packed rows by whole lines. A q8_0 row of K 576 is 612 bytes,
** so most rows start inside a 64-byte line, and nearly every 64-byte load
** of one straddles two lines. From memory such loads read slower than
** loads of whole lines (four streams, one thread, Zen 5: 0.81-0.93 of the
** rate), and the gemv over a SmolLM2-shaped token's products read 0.79-0.86
** of a plain read of the same bytes. So where every row starts on a
** 4-byte boundary, the gemv loads the aligned lines and takes each 64 bytes
** out of two of them with one vpermt2d: the same bytes into the same
** arithmetic. Every line it loads holds at least one byte of the row it
** reads, so it never leaves a page the row is on. */

/* The vpermt2d index that takes 64 bytes from address a out of the line
** holding a and the next one. */
AVX512_FN static ALWAYS_INLINE __m512i q8p_line_idx(uintptr_t a) {
  return _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                          _mm512_set1_epi32((int)((a & 63) >> 2)));
}

/* The 64 bytes from p (4-byte aligned), by whole lines; the second line
** is loaded only when the bytes reach it. */
AVX512_FN static ALWAYS_INLINE __m512i q8p_load_lines(const uint8_t *p) {
  uintptr_t a = (uintptr_t)p;
  const __m512i *line = (const __m512i *)(a & ~(uintptr_t)63);
  return _mm512_permutex2var_epi32(_mm512_load_si512(line), q8p_line_idx(a),
                                   _mm512_load_si512(line + ((a & 63) != 0)));
}

/* R packed rows (ld bytes apart) against one token's chunks [c0, c1),
** sliced at xs from chunk c0, onto acc: Q8_SLICE_TILE's arithmetic, so the
** bits of the gemv on the rows as stored. With lines, the rows are read
** by whole lines (above). */
VNNI_FN static ALWAYS_INLINE void q8p_chunks(__m512 acc[4], const uint8_t *W, size_t ld,
                                             const __m512i *xs, int c0, int c1, int R,
                                             int lines) {
  for (int c = c0; c < c1; c++) {
    const __m512i *xc = xs + (size_t)(c - c0) * Q8_TOKEN_VECS;
    const uint8_t *w = W + (size_t)c * 16 * GPT_Q8_BYTES;
    __m512i S[4];
    __m512 wd[4]; /* the rows' scales */
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) S[i] = xc[8];
    if (lines) {
      /* the chunk's 544 bytes from line 0 through line 8, which holds
      ** byte 512 (the scales) */
      const __m512i *line[4];
      __m512i idx[4];
      int far[4]; /* the scales reach line 9 */
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
        uintptr_t a = (uintptr_t)(w + i * ld);
        line[i] = (const __m512i *)(a & ~(uintptr_t)63);
        idx[i] = q8p_line_idx(a);
        far[i] = (a & 63) > 32;
      }
      __m512i lo[4];
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) lo[i] = line[i][0];
      _Pragma("GCC unroll 8") for (int s = 0; s < 8; s++)
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
          __m512i hi = avx512_in_reg(line[i][s + 1]); /* each line loaded once */
          S[i] = _mm512_dpbusd_epi32(S[i], _mm512_permutex2var_epi32(lo[i], idx[i], hi), xc[s]);
          lo[i] = hi;
        }
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
        __m512i sc = _mm512_permutex2var_epi32(lo[i], idx[i], line[i][8 + far[i]]);
        wd[i] = _mm512_cvtph_ps(_mm512_castsi512_si256(sc));
      }
    } else {
      _Pragma("GCC unroll 8") for (int s = 0; s < 8; s++)
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
          S[i] = _mm512_dpbusd_epi32(S[i], _mm512_loadu_si512(w + i * ld + 64 * s), xc[s]);
      _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
        wd[i] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i * ld + 512)));
    }
    __m512 xd = _mm512_castsi512_ps(xc[9]);
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)
      acc[i] = _mm512_fmadd_ps(_mm512_mul_ps(wd[i], xd), _mm512_cvtepi32_ps(S[i]), acc[i]);
  }
}

/* The pairs after the chunks of R packed rows (ld bytes apart) against a
** token's pairs sliced at xp (q8_slice_token_pairs), onto acc; whole pairs
** by lines where lines is set. */
VNNI_FN static ALWAYS_INLINE void q8p_pairs(__m512 acc[4], const uint8_t *W, size_t ld,
                                            const __m512i *xp, int nb, int R, int lines) {
  int nt = nb % 16;
  if (nt == 0) return;
  const uint8_t *tail = W + (size_t)(nb - nt) * GPT_Q8_BYTES;
  __m512 sc[4];
  _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) sc[i] = q8p_tail_scales(tail + i * ld, nt);
  for (int t = 0; t < nt; t += 2, xp += 3) {
    __m512 xs = _mm512_castsi512_ps(xp[2]);
    _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {
      /* by lines nt is even (ld % 4 == 0 takes nb even): whole pairs only */
      __m512i w = lines && nt - t >= 2
                      ? q8p_load_lines(tail + i * ld + 2 * nt + GPT_Q8_BLOCK * t)
                      : q8p_load_pair(tail + i * ld, t, nt);
      __m512i P = _mm512_dpbusd_epi32(xp[1], w, xp[0]);
      acc[i] = _mm512_fmadd_ps(_mm512_mul_ps(q8p_pair_scales(sc[i], t, nt), xs),
                               _mm512_cvtepi32_ps(P), acc[i]);
    }
  }
}

/* R packed rows (ld bytes apart) against token x: res (R,). xc holds x's
** chunks sliced, or is NULL, and then each window of Q8P_WINDOW chunks is
** sliced into room; xp holds x's pairs sliced. */
VNNI_FN static ALWAYS_INLINE void q8p_tile(float *res, const uint8_t *W, size_t ld,
                                           const GPTQ8Act *x, int K, int R, const __m512i *xc,
                                           const __m512i *xp, __m512i *room,
                                           const Q8SliceIdx *ix, int lines) {
  int nb = K / GPT_Q8_BLOCK, nc = nb / 16;
  __m512 acc[4];
  _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[i] = _mm512_setzero_ps();
  for (int c0 = 0; c0 < nc; c0 += Q8P_WINDOW) {
    int c1 = nc - c0 < Q8P_WINDOW ? nc : c0 + Q8P_WINDOW;
    const __m512i *xw = xc ? xc + (size_t)c0 * Q8_TOKEN_VECS : room;
    if (!xc)
      for (int c = c0; c < c1; c++)
        q8_slice_token_chunk(room + (size_t)(c - c0) * Q8_TOKEN_VECS,
                             x->q + (size_t)c * 16 * GPT_Q8_BLOCK, x->d + 16 * c, ix);
    q8p_chunks(acc, W, ld, xw, c0, c1, R, lines);
  }
  q8p_pairs(acc, W, ld, xp, nb, R, lines);
  avx512_hsum_tile(res, 4, acc, 4, 1, R);
}

/* x laid out for the packed gemv: its chunks as q8_slice_token_chunk leaves
** them, then its pairs as q8_slice_token_pairs does (q8_slice_token's
** layout). dst (gpt_q8_sliced_bytes(K),). */
VNNI_FN static void vnni_q8_slice_act(void *dst, const GPTQ8Act *x, int K) {
  Q8SliceIdx ix;
  q8_slice_idx(&ix);
  q8_slice_token((__m512i *)dst, x, 0, K, &ix);
}

/* The q8_0 gemv on packed rows, rows r0..r1 (by lines or not, as LINES):
** x as q8_slice_act laid it out, or sliced here once a call; then four rows
** a pass sharing x's slices, from 64 rows row j of each quarter of them
** (four streams far apart, as avx512_gemv reads f32 rows on Zen 5). In
** cache, 256 rows of K 768 on 1 thread: 51-55 GB/s as stored, 104-108
** packed. */
VNNI_FN static ALWAYS_INLINE void q8p_gemv(float *y, const uint8_t *W, const GPTQ8Act *x,
                                           const float *bias, int r0, int r1, int K, int mode,
                                           int lines) {
  int nb = K / GPT_Q8_BLOCK, nc = nb / 16;
  size_t ld = (size_t)nb * GPT_Q8_BYTES;
  __m512i room[Q8P_WINDOW * Q8_TOKEN_VECS + 8 * 3];
  const __m512i *xc = (const __m512i *)x->sliced, *xp;
  Q8SliceIdx ix;
  q8_slice_idx(&ix);
  if (!xc && nc <= Q8P_WINDOW) {
    q8_slice_token(room, x, 0, K, &ix);
    xc = room;
  }
  if (xc) {
    xp = xc + (size_t)nc * Q8_TOKEN_VECS;
  } else { /* chunks a window at a time (q8p_tile), the pairs after room's windows */
    xp = room + Q8P_WINDOW * Q8_TOKEN_VECS;
    q8_slice_token_pairs(room + Q8P_WINDOW * Q8_TOKEN_VECS, x->q, x->d, nb);
  }
  float res[4];
  int r = r0;
  if (r1 - r >= 64) {
    int q = (r1 - r) / 4;
    for (int j = 0; j < q; j++) {
      q8p_tile(res, W + (size_t)(r + j) * ld, (size_t)q * ld, x, K, 4, xc, xp, room, &ix, lines);
      for (int i = 0; i < 4; i++) store_row(y, r + j + i * q, res[i], bias, mode);
    }
    r += 4 * q;
  }
  for (; r + 4 <= r1; r += 4) {
    q8p_tile(res, W + (size_t)r * ld, ld, x, K, 4, xc, xp, room, &ix, lines);
    for (int i = 0; i < 4; i++) store_row(y, r + i, res[i], bias, mode);
  }
  for (; r < r1; r++) {
    q8p_tile(res, W + (size_t)r * ld, ld, x, K, 1, xc, xp, room, &ix, lines);
    store_row(y, r, res[0], bias, mode);
  }
}

/* The gemv by lines where every row starts on a 4-byte boundary (K a
** multiple of 64, as in every model of the families we run), else by
** loads where the rows start. By lines it reads 5-15% slower in L2, but
** from memory the gemv over a SmolLM2-shaped token's products read 0.84-0.88
** of a plain read of the same bytes against 0.79-0.83; SmolLM2-shaped q8_0
** decode, its tokens alternating between the two in one process (Zen 5):
** 1.02-1.04x on 1 thread, 1.01x on 2. */
VNNI_FN static void vnni_gemv_q8p(float *y, const uint8_t *W, const GPTQ8Act *x,
                                  const float *bias, int r0, int r1, int K, int mode) {
  size_t ld = (size_t)(K / GPT_Q8_BLOCK) * GPT_Q8_BYTES;
  if ((((uintptr_t)W | ld) & 3) == 0) q8p_gemv(y, W, x, bias, r0, r1, K, mode, 1);
  else q8p_gemv(y, W, x, bias, r0, r1, K, mode, 0);
}

/* The q8_0 gemm on packed rows: the gemm on slices (copied from the rows),
** or for a small batch or without its buffer the gemv a token at a time. */
VNNI_FN static void vnni_gemm_q8p(float *out, size_t ldo, const uint8_t *W, const GPTQ8Act *X,
                                  int T, const float *bias, int r0, int r1, int K, int mode) {
  if (T >= Q8_SLICE_MIN_T &&
      vnni_slice_gemm(out, ldo, W, X, T, bias, r0, r1, K, mode, Q8_FORM_PACKED) == 0)
    return;
  for (int t = 0; t < T; t++) {
    GPTQ8Act x = gpt_q8_act_token(X, t, K);
    vnni_gemv_q8p(out + (size_t)t * ldo, W, &x, bias, r0, r1, K, mode);
  }
}

/* Whether the CPU has AVX-512 VNNI (asked once). */
static int avx512_has_vnni(void) {
  static atomic_int has_vnni = -1;
  int v = atomic_load(&has_vnni);
  if (v < 0) atomic_store(&has_vnni, v = __builtin_cpu_supports("avx512vnni") ? 1 : 0);
  return v;
}

/* The q8_0 gemm on VNNI where the CPU has it. */
AVX512_FN static void avx512_gemm_q8(float *out, size_t ldo, const uint8_t *W,
                                     const GPTQ8Act *X, int T, const float *bias, int r0,
                                     int r1, int K, int mode) {
  (avx512_has_vnni() ? vnni_gemm_q8 : avx512_gemm_q8_bw)(out, ldo, W, X, T, bias, r0, r1, K, mode);
}

/* The q8_0 gemv on VNNI where the CPU has it. */
AVX512_FN static void avx512_gemv_q8(float *y, const uint8_t *W, const GPTQ8Act *x,
                                     const float *bias, int r0, int r1, int K, int mode) {
  (avx512_has_vnni() ? vnni_gemv_q8 : avx512_gemv_q8_bw)(y, W, x, bias, r0, r1, K, mode);
}

/* With VNNI, q8_0 rows are packed for the gemv and gemm above: from rows as
** stored the VNNI gemv spent about three instructions in five gathering
** scales and pairs of 34-byte blocks, and read 32-39 GB/s against the 40-43
** plain reads take. */
static int avx512_q8_pack(uint8_t *W, int64_t n, int K) {
  if (!avx512_has_vnni()) return 0;
  gpt_q8_pack_rows(W, n, K);
  return 1;
}

AVX512_FN static void avx512_gemv_q8p(float *y, const uint8_t *W, const GPTQ8Act *x,
                                      const float *bias, int r0, int r1, int K, int mode) {
  (avx512_has_vnni() ? vnni_gemv_q8p : p_gemv_q8p)(y, W, x, bias, r0, r1, K, mode);
}

/* Only a packed model calls it, and packing takes VNNI. */
AVX512_FN static void avx512_q8_slice_act(void *dst, const GPTQ8Act *x, int K) {
  if (avx512_has_vnni()) vnni_q8_slice_act(dst, x, K);
}

AVX512_FN static void avx512_gemm_q8p(float *out, size_t ldo, const uint8_t *W,
                                      const GPTQ8Act *X, int T, const float *bias, int r0,
                                      int r1, int K, int mode) {
  (avx512_has_vnni() ? vnni_gemm_q8p : p_gemm_q8p)(out, ldo, W, X, T, bias, r0, r1, K, mode);
}

/* The q4_0 gemm of the AVX-512 sets, which gives each token the q8_0
** gemv's bits on the rows converted, the q4_0 gemv's: with VNNI, the gemm
** on slices repacked from the q4_0 rows themselves; otherwise (or for a
** small batch) the rows handed converted to q8_0 and run on the q8_0 gemm;
** without memory for either, that gemv a token at a time. */
void gpt_q4_0_gemm_avx512(float *out, size_t ldo, const uint8_t *W, const GPTQ4Act *X, int T,
                          const float *bias, int r0, int r1, int K, int mode, int vnni) {
  int nb = K / GPT_Q4_0_BLOCK;
  GPTQ8Act x8 = {X->q, X->aq, X->d, NULL};
  if (vnni && T >= Q8_SLICE_MIN_T &&
      vnni_slice_gemm(out, ldo, W, &x8, T, bias, r0, r1, K, mode, Q8_FORM_Q4_0) == 0)
    return;
  size_t n = (size_t)(r1 - r0);
  uint8_t *rows = n > 0 ? malloc(n * nb * GPT_Q8_BYTES) : NULL;
  if (!rows) {
    for (int t = 0; t < T; t++) {
      GPTQ4Act x = gpt_q4_act_token(X, t, K);
      gpt_q4_0_gemv_avx512(out + (size_t)t * ldo, W, &x, bias, r0, r1, K, mode, vnni);
    }
    return;
  }
  gpt_q4_0_to_q8_0(rows, W + (size_t)r0 * nb * GPT_Q4_0_BYTES, n * nb);
  avx512_gemm_q8(out + r0, ldo, rows, &x8, T, bias ? bias + r0 : NULL, 0, (int)n, K, mode);
  free(rows);
}

AVX512_FN static void avx512_f16_to_f32(float *dst, const uint16_t *src, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, avx512_load_f16(src + i));
  for (; i < n; i++) dst[i] = gpt_f16_to_f32(src[i]);
}

AVX512_FN static void avx512_q8_to_f32(float *dst, const uint8_t *src, size_t nb) {
  for (size_t b = 0; b < nb; b++, src += GPT_Q8_BYTES, dst += GPT_Q8_BLOCK) {
    __m512 d = _mm512_set1_ps(_cvtsh_ss(q8_scale_bits(src)));
    for (int j = 0; j < GPT_Q8_BLOCK; j += 16) {
      __m128i q = _mm_loadu_si128((const __m128i *)(src + 2 + j));
      _mm512_storeu_ps(dst + j, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
    }
  }
}

/* The AVX2 exp on 16 lanes. */
AVX512_FN static ALWAYS_INLINE __m512 avx512_exp(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

AVX512_FN static ALWAYS_INLINE __m512 avx512_gelu16(__m512 v) {
  __m512 v3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
  __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f),
                           _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), v3, v));
  __m512 e = avx512_exp(_mm512_mul_ps(_mm512_set1_ps(-2.0f), u));
  return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

AVX512_FN static void avx512_gelu(float *x, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, avx512_gelu16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, avx512_gelu16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

/* avx2_silu_mul8 on sixteen lanes. */
AVX512_FN static ALWAYS_INLINE __m512 avx512_silu_mul16(__m512 g, __m512 u) {
  __m512 e = avx512_exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

/* out (n,) = silu(g) u, sixteen at a time; the tail under a mask. */
AVX512_FN static void avx512_silu_mul(float *out, const float *g, const float *u, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i,
                     avx512_silu_mul16(_mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(out + i, m, avx512_silu_mul16(_mm512_maskz_loadu_ps(m, g + i),
                                                        _mm512_maskz_loadu_ps(m, u + i)));
  }
}

AVX512_FN static float avx512_exp_sum(float *x, int n, float mx, float scale) {
  __m512 m = _mm512_set1_ps(mx), sc = _mm512_set1_ps(scale), acc = _mm512_setzero_ps();
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 e = avx512_exp(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), m), sc));
    _mm512_storeu_ps(x + j, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (j < n) {
    __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
    __m512 e = avx512_exp(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), m), sc));
    _mm512_mask_storeu_ps(x + j, k, e);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(k, e));
  }
  return _mm512_reduce_add_ps(acc);
}

/* Lanes 0-7: the sum of each of v[0..8)'s 16 lanes, all by one tree
** (blocks 0+2 and 1+3, then those two; then lanes 0+2 and 1+3, then those
** two), so that a score's value does not depend on its place in a tile. */
AVX512_FN static ALWAYS_INLINE __m256 avx512_sum8(const __m512 v[8]) {
  __m512 a[4], b[2];
  _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++)
    a[m] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  _Pragma("GCC unroll 2") for (int m = 0; m < 2; m++)
    b[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  /* b[m], block i: four partial sums of v[4m + i] */
  __m512 c = _mm512_add_ps(_mm512_unpacklo_ps(b[0], b[1]), _mm512_unpackhi_ps(b[0], b[1]));
  __m512 r = _mm512_add_ps(c, _mm512_permute_ps(c, _MM_SHUFFLE(1, 0, 3, 2)));
  /* r, block i: the sum of v[i] in lane 0, of v[4 + i] in lane 1 */
  const __m512i order = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_castps512_ps256(_mm512_permutexvar_ps(order, r));
}

/* res[i] (8,): query i of NQ (rows of q, ldq apart) against the 8 keys from
** k (rows ld apart; those from r on repeat row r - 1, and their lanes are
** not to be used), one accumulator a pair. Each pair's arithmetic is the
** same whatever NQ and r. */
AVX512_FN static ALWAYS_INLINE void avx512_att_tile(__m256 *res, const float *q, size_t ldq, int NQ,
                                                    const float *k, size_t ld, int r, int hd) {
  __m512 acc[3][8];
  const float *row[8];
  _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) row[i] = k + (size_t)(i < r ? i : r - 1) * ld;
  _Pragma("GCC unroll 3") for (int t = 0; t < NQ; t++)
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) acc[t][i] = _mm512_setzero_ps();
  for (int d = 0; d < hd; d += 16) {
    __mmask16 m = hd - d >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hd - d)) - 1);
    __m512 x[3];
    _Pragma("GCC unroll 3") for (int t = 0; t < NQ; t++)
      x[t] = _mm512_maskz_loadu_ps(m, q + t * ldq + d);
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
      __m512 kv = _mm512_maskz_loadu_ps(m, row[i] + d);
      _Pragma("GCC unroll 3") for (int t = 0; t < NQ; t++)
        acc[t][i] = _mm512_fmadd_ps(kv, x[t], acc[t][i]);
    }
  }
  _Pragma("GCC unroll 3") for (int t = 0; t < NQ; t++) res[t] = avx512_sum8(acc[t]);
}

/* Bytes ahead that attention touches its keys and values into L2. Each
** head's keys and values are short streams (256 positions of GPT-2: 64 KB
** each), which the hardware prefetcher had barely caught before they
** ended: a decode token's attention over 12 x 12 heads from memory, 1
** thread, Zen 4, 256 positions 1.43 -> 1.00 ms (2 and 8 KB ahead: 1.04-1.14
** and 1.01-1.06), 1,000 positions 4.7 -> 3.4 ms, 64 positions 0.58 -> 0.38. */
#define ATT_AHEAD 4096

/* Up to three queries at once, query t against its n_t = n + t (causal)
** or n keys: each key row is read once for all of them. */
AVX512_FN static void avx512_att_scores3(float *scores, size_t lds, const float *q, size_t ldq,
                                         int nq, const float *k, size_t ld, int n, int causal,
                                         int hd, float scale) {
  int n_max = n + (causal ? nq - 1 : 0);
  __m256 sc = _mm256_set1_ps(scale);
  for (int j = 0; j < n_max; j += 8) {
    int r = n_max - j < 8 ? n_max - j : 8;
    const float *kj = k + (size_t)j * ld;
    __m256 res[3];
    for (size_t o = 0; o < 8 * ld * sizeof(float); o += 64) /* the tile's rows, ahead */
      PREFETCH_L2((const char *)kj + ATT_AHEAD + o);
    if (nq == 3) avx512_att_tile(res, q, ldq, 3, kj, ld, r, hd);
    else if (nq == 2) avx512_att_tile(res, q, ldq, 2, kj, ld, r, hd);
    else avx512_att_tile(res, q, ldq, 1, kj, ld, r, hd);
    for (int t = 0; t < nq; t++) {
      int m = n + (causal ? t : 0) - j;
      if (m <= 0) continue;
      __m256 s = _mm256_mul_ps(res[t], sc);
      if (m >= 8) _mm256_storeu_ps(scores + t * lds + j, s);
      else _mm256_mask_storeu_ps(scores + t * lds + j, (__mmask8)((1u << m) - 1), s);
    }
  }
}

/* The kernels' att_scores_n: queries three at a time (every pair as one
** query alone would get it). A prefill of 513 tokens of GPT-2 124M in
** q4_0 spent 19% of its time in attention, which read each head's keys and
** values from L2 once a query; with three at a time (and att_values_n),
** attention took 38% less time (2 threads). */
AVX512_FN static void avx512_att_scores_n(float *scores, size_t lds, const float *q, size_t ldq,
                                          int nq, const float *k, size_t ld, int n, int causal,
                                          int hd, float scale) {
  for (int t = 0; t < nq; t += 3)
    avx512_att_scores3(scores + (size_t)t * lds, lds, q + (size_t)t * ldq, ldq,
                       nq - t < 3 ? nq - t : 3, k, ld, n + (causal ? t : 0), causal, hd, scale);
}

/* The kernels' att_scores: one query, as avx512_att_scores_n scores it. */
AVX512_FN static void avx512_att_scores(float *scores, const float *q, const float *k, size_t ld,
                                        int n, int hd, float scale) {
  avx512_att_scores3(scores, 0, q, 0, 1, k, ld, n, 0, hd, scale);
}

/* One query's value sums over keys j0..j1 (j0 even) onto its accumulators
** of C vectors (16 columns each, mask m on all): even keys on a0, odd on
** a1, so that two fma chains run at once; the sum is a0 + a1. */
AVX512_FN static ALWAYS_INLINE void avx512_values_run(__m512 *a0, __m512 *a1, int C,
                                                      const float *p, const float *v, size_t ld,
                                                      int j0, int j1, __mmask16 m) {
  int j = j0;
  for (; j + 2 <= j1; j += 2) {
    const float *r0 = v + (size_t)j * ld, *r1 = r0 + ld;
    __m512 p0 = _mm512_set1_ps(p[j]), p1 = _mm512_set1_ps(p[j + 1]);
    _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) {
      a0[c] = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(m, r0 + 16 * c), a0[c]);
      a1[c] = _mm512_fmadd_ps(p1, _mm512_maskz_loadu_ps(m, r1 + 16 * c), a1[c]);
    }
  }
  if (j < j1) {
    __m512 p0 = _mm512_set1_ps(p[j]);
    _Pragma("GCC unroll 4") for (int c = 0; c < C; c++)
      a0[c] = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(m, v + (size_t)j * ld + 16 * c), a0[c]);
  }
}

/* Columns d0.. (C vectors, mask m) of up to three queries' outputs: the
** keys all of them see together (each row read once), then each query's
** own last keys, every accumulator in key order as avx512_values_run. */
AVX512_FN static ALWAYS_INLINE void avx512_values_block(float *out, size_t ldo, const float *p,
                                                        size_t ldp, int NQ, const float *v,
                                                        size_t ld, int n, int causal, int C,
                                                        __mmask16 m) {
  __m512 a0[3][4], a1[3][4];
  _Pragma("GCC unroll 3") for (int t = 0; t < NQ; t++)
    _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) a0[t][c] = a1[t][c] = _mm512_setzero_ps();
  int common = n & ~1;
  for (int j = 0; j < common; j += 2) {
    const float *r0 = v + (size_t)j * ld, *r1 = r0 + ld;
    if (C == 4) /* the block's 64 columns of the two rows */
      for (int o = 0; o < 4; o++) {
        PREFETCH_L2((const char *)r0 + ATT_AHEAD + 64 * o);
        PREFETCH_L2((const char *)r1 + ATT_AHEAD + 64 * o);
      }
    _Pragma("GCC unroll 4") for (int c = 0; c < C; c++) {
      __m512 w0 = _mm512_maskz_loadu_ps(m, r0 + 16 * c), w1 = _mm512_maskz_loadu_ps(m, r1 + 16 * c);
      if (NQ > 1) { /* loaded once for the NQ queries */
        w0 = avx512_in_reg_ps(w0);
        w1 = avx512_in_reg_ps(w1);
      }
      _Pragma("GCC unroll 3") for (int t = 0; t < NQ; t++) {
        a0[t][c] = _mm512_fmadd_ps(_mm512_set1_ps(p[t * ldp + j]), w0, a0[t][c]);
        a1[t][c] = _mm512_fmadd_ps(_mm512_set1_ps(p[t * ldp + j + 1]), w1, a1[t][c]);
      }
    }
  }
  _Pragma("GCC unroll 3") for (int t = 0; t < NQ; t++) {
    avx512_values_run(a0[t], a1[t], C, p + t * ldp, v, ld, common, n + (causal ? t : 0), m);
    _Pragma("GCC unroll 4") for (int c = 0; c < C; c++)
      _mm512_mask_storeu_ps(out + t * ldo + 16 * c, m, _mm512_add_ps(a0[t][c], a1[t][c]));
  }
}

/* out (nq, hd), rows ldo apart: query t's p (rows ldp apart) over its n_t =
** n + t (causal) or n value rows; 64 columns at a time, then 16 (masked at
** the end), each column's sum the same either way and whatever nq. */
AVX512_FN static void avx512_att_values3(float *out, size_t ldo, const float *p, size_t ldp,
                                         int nq, const float *v, size_t ld, int n, int causal,
                                         int hd) {
  int d0 = 0;
  for (; d0 + 64 <= hd; d0 += 64) {
    if (nq == 3) avx512_values_block(out + d0, ldo, p, ldp, 3, v + d0, ld, n, causal, 4, 0xFFFF);
    else if (nq == 2) avx512_values_block(out + d0, ldo, p, ldp, 2, v + d0, ld, n, causal, 4, 0xFFFF);
    else avx512_values_block(out + d0, ldo, p, ldp, 1, v + d0, ld, n, causal, 4, 0xFFFF);
  }
  for (; d0 < hd; d0 += 16) {
    __mmask16 m = hd - d0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hd - d0)) - 1);
    if (nq == 3) avx512_values_block(out + d0, ldo, p, ldp, 3, v + d0, ld, n, causal, 1, m);
    else if (nq == 2) avx512_values_block(out + d0, ldo, p, ldp, 2, v + d0, ld, n, causal, 1, m);
    else avx512_values_block(out + d0, ldo, p, ldp, 1, v + d0, ld, n, causal, 1, m);
  }
}

/* The kernels' att_values_n: queries three at a time. */
AVX512_FN static void avx512_att_values_n(float *out, size_t ldo, const float *p, size_t ldp,
                                          int nq, const float *v, size_t ld, int n, int causal,
                                          int hd) {
  for (int t = 0; t < nq; t += 3)
    avx512_att_values3(out + (size_t)t * ldo, ldo, p + (size_t)t * ldp, ldp,
                       nq - t < 3 ? nq - t : 3, v, ld, n + (causal ? t : 0), causal, hd);
}

/* The kernels' att_values: one query, as avx512_att_values_n sums it. */
AVX512_FN static void avx512_att_values(float *out, const float *p, const float *v, size_t ld,
                                        int n, int hd) {
  avx512_att_values3(out, 0, p, 0, 1, v, ld, n, 0, hd);
}

static const GPTKernels kAvx512 = {
  "avx512", 0, avx512_gemv_f32, avx512_gemv_f16, avx512_gemv_q8, avx512_gemm_f32,
  avx512_gemm_q8,
  avx512_f16_to_f32,
  avx512_q8_to_f32, avx512_gelu, avx512_silu_mul, avx512_exp_sum, avx512_att_scores, avx512_att_values, avx2_transpose_f32,
  avx2_transpose_u16, avx2_max, avx2_sum_exp, avx2_q8_quantize_act, avx512_att_scores_n,
  avx512_att_values_n, avx512_q8_pack, avx512_gemv_q8p, avx512_gemm_q8p, avx512_q8_slice_act,
};

/* F16C from CPUID leaf 1 (ECX bit 29): clang before 15 has no "f16c" for
** __builtin_cpu_supports. */
static int cpu_has_f16c(void) {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}

static int cpu_has_avx2(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

static int cpu_has_avx512(void) {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
/* AMD family 25 with AVX-512: Zen 4 (Zen 3, the same family, has none),
** whose AVX-512 gemv reads eighths (avx512_gemv). */
static int cpu_is_zen4(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d) || b != 0x68747541u) return 0; /* "Auth"enticAMD */
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  unsigned family = (a >> 8 & 15) + (((a >> 8 & 15) == 15) ? (a >> 20 & 255) : 0);
  return family == 25 && cpu_has_avx512();
}
#endif /* GPT_X86 */

/* ----------------------------------------------------------- selection */

#ifdef GPT_X86
/* The AVX-512 set with its q8_0 gemm on AVX-512 BW even where the CPU has
** VNNI, and its f32/f16 gemv on eighths where the set in use reads quarters
** (or the other way round), so that tests run both on any AVX-512 machine. */
static GPTKernels kAvx512Bw;
static pthread_once_t gBwOnce = PTHREAD_ONCE_INIT;

static void make_avx512_bw(void) {
  kAvx512Bw = kAvx512;
  kAvx512Bw.name = "avx512-bw";
  kAvx512Bw.gemv_q8 = avx512_gemv_q8_bw;
  kAvx512Bw.gemm_q8 = avx512_gemm_q8_bw;
  kAvx512Bw.q8_pack = NULL; /* its kernels read rows as stored */
  kAvx512Bw.gemv_q8p = p_gemv_q8p;
  kAvx512Bw.gemm_q8p = p_gemm_q8p;
  kAvx512Bw.q8_slice_act = NULL;
  int eighths = cpu_is_zen4();
  kAvx512Bw.gemv_f32 = eighths ? avx512_gemv_f32 : avx512_gemv_f32_eighths;
  kAvx512Bw.gemv_f16 = eighths ? avx512_gemv_f16 : avx512_gemv_f16_eighths;
}
#endif

const GPTKernels *gpt_kernels_named(const char *zName) {
  if (zName == 0) return 0;
  if (strcmp(zName, "portable") == 0) return &kPortable;
#ifdef GPT_X86
  if (strcmp(zName, "avx2") == 0) return cpu_has_avx2() ? &kAvx2 : 0;
  if (strcmp(zName, "avx512") == 0) return cpu_has_avx512() ? &kAvx512 : 0;
  if (strcmp(zName, "avx512-bw") == 0 && cpu_has_avx512()) {
    pthread_once(&gBwOnce, make_avx512_bw);
    return &kAvx512Bw;
  }
#endif
  return 0;
}

/* Defined here, beside its user (gpt_q4_0_gemm_avx512); see kernels_q4.h. */
void gpt_q4_0_to_q8_0(uint8_t *dst, const uint8_t *src, size_t n_blocks) {
  for (size_t b = 0; b < n_blocks; b++, src += GPT_Q4_0_BYTES, dst += GPT_Q8_BYTES) {
    dst[0] = src[0];
    dst[1] = src[1];
    for (int j = 0; j < 16; j++) {
      dst[2 + j] = (uint8_t)(int8_t)((src[2 + j] & 15) - 8);
      dst[18 + j] = (uint8_t)(int8_t)((src[2 + j] >> 4) - 8);
    }
  }
}

static GPTKernels gSelected;
static pthread_once_t gSelectOnce = PTHREAD_ONCE_INIT;

/* The best set the CPU runs, capped by zName ("portable", "avx2", "blas",
** anything else meaning no cap). */
static void select_named(const char *zName) {
  const GPTKernels *k = &kPortable;
  int cap = 2; /* 0 portable, 1 avx2, 2 avx512 */
  if (zName && strcmp(zName, "portable") == 0) cap = 0;
  if (zName && strcmp(zName, "avx2") == 0) cap = 1;
#ifdef GPT_X86
  if (cap >= 2 && cpu_has_avx512()) k = &kAvx512;
  else if (cap >= 1 && cpu_has_avx2()) k = &kAvx2;
#else
  (void)cap; /* only the portable set */
#endif
  gSelected = *k;
#ifdef GPT_X86
  if (k == &kAvx512 && cpu_is_zen4()) {
    gSelected.gemv_f32 = avx512_gemv_f32_eighths;
    gSelected.gemv_f16 = avx512_gemv_f16_eighths;
  }
#endif
  gSelected.blas_gemv = zName && strcmp(zName, "blas") == 0;
}

static void select_kernels(void) { select_named(getenv("GPT_KERNELS")); }

const GPTKernels *gpt_kernels(void) {
  pthread_once(&gSelectOnce, select_kernels);
  return &gSelected;
}

int gpt_kernels_select(const char *zName) {
  pthread_once(&gSelectOnce, select_kernels);
  if (strcmp(zName, "blas") != 0 && strcmp(zName, "auto") != 0 && !gpt_kernels_named(zName))
    return -1;
  select_named(zName);
  return 0;
}

/* ---------------------------------------------------------- quantizing */

/* The portable quantizer of activations; for finite x the AVX2 one gives
** the same bytes (the same products, and vcvtps2dq rounds to nearest even
** as lrintf does in the default rounding mode). */
static void p_q8_quantize_act(GPTQ8Act *out, const float *x, int K) {
  for (int b = 0; b < K / GPT_Q8_BLOCK; b++) {
    const float *v = x + b * GPT_Q8_BLOCK;
    float amax = 0.0f;
    for (int j = 0; j < GPT_Q8_BLOCK; j++) amax = fmaxf(amax, fabsf(v[j]));
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    out->d[b] = amax / 127.0f;
    for (int j = 0; j < GPT_Q8_BLOCK; j++) {
      long q = lrintf(v[j] * id);
      if (q > 127) q = 127;
      if (q < -127) q = -127;
      out->q[b * GPT_Q8_BLOCK + j] = (int8_t)q;
      out->aq[b * GPT_Q8_BLOCK + j] = (int8_t)(q < 0 ? -q : q);
    }
  }
}

#ifdef GPT_X86
AVX2_FN static void avx2_q8_quantize_act(GPTQ8Act *out, const float *x, int K) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
  for (int b = 0; b < K / GPT_Q8_BLOCK; b++) {
    const float *v = x + b * GPT_Q8_BLOCK;
    __m256 m = _mm256_and_ps(_mm256_loadu_ps(v), absmask);
    for (int j = 8; j < GPT_Q8_BLOCK; j += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(v + j), absmask));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h);
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    out->d[b] = amax / 127.0f;
    __m256i q[4];
    for (int j = 0; j < 4; j++) {
      __m256i t = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + 8 * j), _mm256_set1_ps(id)));
      q[j] = _mm256_max_epi32(_mm256_min_epi32(t, lim), nlim);
    }
    /* int32 -> int8 in order: the packs work per 128-bit lane, a permute
    ** puts the four lanes back */
    __m256i p16 = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
    __m256i p8 = _mm256_packs_epi16(p16, p16b);
    p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(out->q + b * GPT_Q8_BLOCK), p8);
    _mm256_storeu_si256((__m256i *)(out->aq + b * GPT_Q8_BLOCK), _mm256_abs_epi8(p8));
  }
}
#endif

void gpt_q8_quantize_act(GPTQ8Act *out, const float *x, int K) {
  gpt_kernels()->q8_quantize_act(out, x, K);
}

int gpt_q8_quantize_row(uint8_t *dst, const float *x, int64_t n) {
  for (int64_t b = 0; b < n / GPT_Q8_BLOCK; b++, dst += GPT_Q8_BYTES) {
    const float *v = x + b * GPT_Q8_BLOCK;
    float amax = 0.0f;
    for (int j = 0; j < GPT_Q8_BLOCK; j++) {
      if (!isfinite(v[j])) return -1;
      amax = fmaxf(amax, fabsf(v[j]));
    }
    /* ggml's quantize_row_q8_0_ref to the bit: q from the unrounded scale's
    ** reciprocal, so a GGUF export holds what llama.cpp's quantize writes */
    float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    if (!isfinite(id)) id = 0.0f; /* d below 2.9e-39: its f16 scale is 0 anyway */
    uint16_t h = gpt_f32_to_f16(d);
    if (!isfinite(gpt_f16_to_f32(h))) return -1;
    dst[0] = (uint8_t)(h & 0xff);
    dst[1] = (uint8_t)(h >> 8);
    for (int j = 0; j < GPT_Q8_BLOCK; j++) {
      float q = roundf(v[j] * id);
      if (q > 127.0f) q = 127.0f;
      if (q < -127.0f) q = -127.0f;
      dst[2 + j] = (uint8_t)(int8_t)q;
    }
  }
  return 0;
}
