/*
** Compute kernels of the forward pass, one set per instruction set: a
** portable C set that runs anywhere, AVX2 (with FMA and F16C) and AVX-512
** (F, BW, VL). The set is chosen once per process from the CPU's features
** (__builtin_cpu_supports), so the default build runs on any x86-64 or
** other machine; the environment variable GPT_KERNELS forces one:
**
**   GPT_KERNELS=portable   the C fallback
**   GPT_KERNELS=avx2       AVX2 (or portable where the CPU lacks it)
**   GPT_KERNELS=avx512     AVX-512 (or the best below it)
**   GPT_KERNELS=blas       best set, but f32 decode rows on cblas_sgemv
**
** Matrices are (rows, K) in one of three row formats: f32, f16 (IEEE half)
** and q8_0 (K/32 blocks of 34 bytes: an f16 scale d, then 32 int8 values
** q in [-127, 127]; the value is d * q), which a set may read packed (see
** gpt_q8_pack_rows). Every kernel computes each output
** row with the same arithmetic whatever range [r0, r1) it is handed, so
** splitting rows over threads never changes a result.
*/
#ifndef GPT_KERNELS_H
#define GPT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define GPT_Q8_BLOCK 32        /* values per q8_0 block */
#define GPT_Q8_BYTES 34        /* bytes per q8_0 block: f16 scale + 32 int8 */

/* An activation vector quantized for q8_0 rows: per block of 32, int8
** values q (|q| <= 127), their absolute values, and an f32 scale. */
typedef struct GPTQ8Act {
  int8_t *q;      /* (K,) */
  int8_t *aq;     /* (K,) |q| */
  float *d;       /* (K/32,) */
  /* optional, for gemv_q8p: the same values as the set's q8_slice_act left
  ** them, or NULL, and then each call slices them again */
  const void *sliced;
} GPTQ8Act;

/* How a gemv combines its result with y. */
#define GPT_GEMV_SET 0   /* y[r] = bias[r] + W[r] . x */
#define GPT_GEMV_ADD 1   /* y[r] += bias[r] + W[r] . x (a residual) */

typedef struct GPTKernels {
  const char *name;   /* "portable", "avx2", "avx512" */
  int blas_gemv;      /* f32 rows go through cblas_sgemv (GPT_KERNELS=blas) */
  /* y[r0..r1) from rows r0..r1 of W (rows, K); bias may be NULL. */
  void (*gemv_f32)(float *y, const float *W, const float *x, const float *bias,
                   int r0, int r1, int K, int mode);
  void (*gemv_f16)(float *y, const uint16_t *W, const float *x, const float *bias,
                   int r0, int r1, int K, int mode);
  void (*gemv_q8)(float *y, const uint8_t *W, const GPTQ8Act *x, const float *bias,
                  int r0, int r1, int K, int mode);
  /* Several tokens at once (a prefill, or a decode step of several
  ** sequences): for t < T and r in [r0, r1), out[t * ldo + r] = (or +=, as
  ** mode says) bias[r] + W[r] . X[t], X's rows ldx floats apart. Each value
  ** is computed with exactly the arithmetic of gemv_f32 for that token
  ** alone: a token's result never depends on T, on the other tokens or on
  ** the range of rows. */
  void (*gemm_f32)(float *out, size_t ldo, const float *W, const float *X, size_t ldx, int T,
                   const float *bias, int r0, int r1, int K, int mode);
  /* The same for q8_0 rows against T quantized tokens (token t's values at
  ** X->q + t K, its scales at X->d + t K/32), matching gemv_q8. */
  void (*gemm_q8)(float *out, size_t ldo, const uint8_t *W, const GPTQ8Act *X, int T,
                  const float *bias, int r0, int r1, int K, int mode);
  /* dst (n,) = widened src */
  void (*f16_to_f32)(float *dst, const uint16_t *src, size_t n);
  void (*q8_to_f32)(float *dst, const uint8_t *src, size_t n_blocks);
  /* In place: x (n,) = gelu(x), tanh approximation. */
  void (*gelu)(float *x, size_t n);
  /* out (n,) = silu(g) * u = g / (1 + exp(-g)) * u (SwiGLU) */
  void (*silu_mul)(float *out, const float *g, const float *u, size_t n);
  /* In place: x (n,) = exp((x - mx) * scale); returns the sum of the results. */
  float (*exp_sum)(float *x, int n, float mx, float scale);
  /* Decode attention of one head over n cached positions, whose rows lie
  ** ld floats apart. scores (n,) = scale * K (n, hd) @ q (hd,) */
  void (*att_scores)(float *scores, const float *q, const float *k, size_t ld, int n, int hd,
                     float scale);
  /* out (hd,) = p (n,) @ V (n, hd) */
  void (*att_values)(float *out, const float *p, const float *v, size_t ld, int n, int hd);
  /* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols */
  void (*transpose_f32)(float *dst, size_t ldd, const float *src, size_t lds, int rows,
                        int cols);
  /* the same for 16-bit values (f16) */
  void (*transpose_u16)(uint16_t *dst, size_t ldd, const uint16_t *src, size_t lds, int rows,
                        int cols);
  /* The largest of x (n,), NaN ignored; -inf when there is none. */
  float (*max)(const float *x, int n);
  /* sum of exp(x - mx) over x (n,), accumulated in double; x unchanged */
  double (*sum_exp)(const float *x, int n, float mx);
  /* gpt_q8_quantize_act (the same bytes in every set for finite x) */
  void (*q8_quantize_act)(GPTQ8Act *out, const float *x, int K);
  /* att_scores of nq queries (rows of q, ldq apart) at once, query t
  ** against the first n + t keys (causal: a prefill's queries) or n, into
  ** rows of scores lds apart; each score the value att_scores gives it. */
  void (*att_scores_n)(float *scores, size_t lds, const float *q, size_t ldq, int nq,
                       const float *k, size_t ld, int n, int causal, int hd, float scale);
  /* att_values of nq queries at once, the same way: out (nq, hd) rows ldo
  ** apart, p rows ldp apart; each value the one att_values gives it. */
  void (*att_values_n)(float *out, size_t ldo, const float *p, size_t ldp, int nq,
                       const float *v, size_t ld, int n, int causal, int hd);
  /* q8_0 rows packed for this set (the layout below), in place: rows (n,
  ** K) as stored into packed rows. Returns 1 when it packed them, 0 when
  ** the set reads q8_0 rows as stored (they are left as they are). */
  int (*q8_pack)(uint8_t *W, int64_t n, int K);
  /* gemv_q8 and gemm_q8 on packed rows, with the same bits as those give
  ** on the rows as stored. They may read the whole 64-byte lines the rows
  ** lie on, so the rows must sit in memory that holds whole lines (a
  ** model's arena: 64-byte aligned, its size a multiple of 64). */
  void (*gemv_q8p)(float *y, const uint8_t *W, const GPTQ8Act *x, const float *bias,
                   int r0, int r1, int K, int mode);
  void (*gemm_q8p)(float *out, size_t ldo, const uint8_t *W, const GPTQ8Act *X, int T,
                   const float *bias, int r0, int r1, int K, int mode);
  /* Where the set packs: x (K values) laid out for its gemv_q8p once for
  ** all the calls of a product, into dst (gpt_q8_sliced_bytes(K), 64-byte
  ** aligned); NULL elsewhere. */
  void (*q8_slice_act)(void *dst, const GPTQ8Act *x, int K);
} GPTKernels;

/* Bytes q8_slice_act may write for K values or fewer. */
size_t gpt_q8_sliced_bytes(int K);

/* A packed q8_0 row holds the bytes of the row as stored, rearranged for
** vpdpbusd (nb = K / 32 blocks):
**   - each chunk of 16 blocks (544 bytes): 8 slices of 64 bytes, slice s
**     holding bytes 4s..4s+3 of block 4 (L % 4) + L / 4 of the chunk in its
**     dword L, each value plus 128 (unsigned); then the 16 blocks' f16
**     scales in the same lane order;
**   - then the last nb % 16 blocks (the tail): their f16 scales, then
**     their values plus 128, block after block.
** So a packed row is as long as a stored one, and rows are where they were. */
void gpt_q8_pack_rows(uint8_t *W, int64_t n, int K);
/* dst (n * 32,) = the n blocks from block b0 of a packed row of K values,
** widened (the values q8_to_f32 gives them as stored). */
void gpt_q8_packed_to_f32(float *dst, const uint8_t *row, int K, int b0, int n);

/* The set in use (chosen once, thread-safe). */
const GPTKernels *gpt_kernels(void);
/* The set called zName ("portable", "avx2", "avx512"; "avx512-bw": AVX-512
** with the q8_0 gemm off VNNI), or NULL when this CPU cannot run it. For
** tests and the benchmark. */
const GPTKernels *gpt_kernels_named(const char *zName);

/* Makes zName the set in use: a set name, "blas" (the best set with f32
** decode on cblas_sgemv) or "auto". Returns -1 when this CPU cannot run it.
** For the benchmark: not to be called while a forward pass runs. */
int gpt_kernels_select(const char *zName);

/* Token t of T activations quantized K values apart (see gemm_q8). */
static inline GPTQ8Act gpt_q8_act_token(const GPTQ8Act *X, int t, int K) {
  GPTQ8Act a = {X->q + (size_t)t * K, X->aq + (size_t)t * K, X->d + (size_t)t * (K / GPT_Q8_BLOCK),
                NULL};
  return a;
}

/* Quantizes x (K,) with K % 32 == 0 for gemv_q8, with the set in use. */
void gpt_q8_quantize_act(GPTQ8Act *out, const float *x, int K);
/* Quantizes n values (n % 32 == 0) into n/32 stored q8_0 blocks: d is
** max|x|/127 rounded to f16, q = round(x / d). Returns -1 when a value is
** not finite. */
int gpt_q8_quantize_row(uint8_t *dst, const float *x, int64_t n);

#endif
