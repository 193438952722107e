/*
** Kernels of the 4- and 6-bit block formats, byte for byte ggml's (the
** GGUF types Q4_0, Q4_K and Q6_K), one set per instruction set like
** kernels.h: portable C, AVX2, AVX-512 and AVX-512 VNNI, chosen to match
** the set of gpt_kernels() (GPT_KERNELS=portable|avx2|avx512 caps both).
**
** A row of K values is K/32 (q4_0) or K/256 (q4_k, q6_k) blocks, all
** integers little-endian, f16 scales IEEE half:
**
**   q4_0, 18 bytes, 32 values:  d (f16), qs[16]
**       value j < 16 is d * ((qs[j] & 15) - 8), value j + 16 is
**       d * ((qs[j] >> 4) - 8)
**   q4_k, 144 bytes, 256 values: d (f16), dmin (f16), scales[12], qs[128]
**       eight sub-blocks of 32, each with a 6-bit scale sc and min m:
**       for s < 4, sc = scales[s] & 63, m = scales[s + 4] & 63; for s >= 4,
**       sc = (scales[s + 4] & 15) | (scales[s - 4] >> 6) << 4 and
**       m = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4. Value l of
**       sub-block 2p is qs[32p + l] & 15, of sub-block 2p + 1 qs[32p + l] >> 4;
**       a value q stands for d * sc * q - dmin * m
**   q6_k, 210 bytes, 256 values: ql[128], qh[64], scales[16] (int8), d (f16)
**       two halves of 128; in half h (ql + 64h, qh + 32h), for l < 32:
**       q(l)      = ql[l] & 15      | (qh[l] & 3) << 4
**       q(l + 32) = ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4
**       q(l + 64) = ql[l] >> 4      | (qh[l] >> 4 & 3) << 4
**       q(l + 96) = ql[l + 32] >> 4 | (qh[l] >> 6 & 3) << 4
**       value i of the block stands for d * scales[i / 16] * (q(i) - 32)
**
** Decode multiplies such rows with the activation quantized to int8
** (GPTQ4Act, gpt_q4_quantize_act): for q4_0 rows as for q8_0 rows, one f32
** scale per block of 32; for q4_k and q6_k rows one scale per 256 (as
** llama.cpp's q8_K), so that a super-block's products sum in integers. The
** sums of each block's int8 values carry the offsets (q4_0's 8, q4_k's
** mins, and with VNNI q6_k's 32, from the sums of 16). A product of
** several tokens (prefill, or a decode step of several sequences)
** quantizes each token the same way and runs the set's gemm, whose tiles
** share a row's unpacked blocks among four tokens (on AVX-512, among all
** the call's tokens) and give each token the gemv's bits (gpt_q4_gemm).
*/
#ifndef GPT_KERNELS_Q4_H
#define GPT_KERNELS_Q4_H

#include <stddef.h>
#include <stdint.h>
#include "kernels.h"

#define GPT_Q4_0_BLOCK 32   /* values per q4_0 block */
#define GPT_Q4_0_BYTES 18
#define GPT_QK_K 256        /* values per q4_k and q6_k super-block */
#define GPT_Q4_K_BYTES 144
#define GPT_Q6_K_BYTES 210

/* An activation (K,) quantized for 4-bit rows. */
typedef struct GPTQ4Act {
  int8_t *q;      /* (K,) int8 values, |q| <= 127 */
  int8_t *aq;     /* (K,) |q| */
  int8_t *qp;     /* (K,) q in the order of the nibble loads: for q4_k the
                  ** 32-value blocks of each 256 as 0 2 1 3 4 6 5 7; for q4_0
                  ** each 128 as the four blocks' first 16 values, then their
                  ** last 16 (the AVX-512 VNNI kernels') */
  float *d;       /* (K/32,) scale of each block (for k-quants, of its 256) */
  float *sum;     /* (K/32,) d * the sum of the block's q */
  int16_t *qsum;  /* (K/16,) for k-quants, the sum of each 16 values of q
                  ** (q6_k's offset of 32, taken off once per super-block) */
} GPTQ4Act;

typedef struct GPTQ4Kernels {
  const char *name;   /* "portable", "avx2", "avx512", "avx512vnni" */
  /* y[r0..r1) as GPTKernels.gemv_q8 (mode GPT_GEMV_SET or _ADD, bias may be
  ** NULL) for rows of W (rows, K) in the set's format, x quantized by
  ** gpt_q4_quantize_act for that format. */
  void (*gemv_q4_0)(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                    int r0, int r1, int K, int mode);
  void (*gemv_q4_k)(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                    int r0, int r1, int K, int mode);
  void (*gemv_q6_k)(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                    int r0, int r1, int K, int mode);
  /* dst (n_blocks * block values,) = the blocks widened */
  void (*q4_0_to_f32)(float *dst, const uint8_t *src, size_t n_blocks);
  void (*q4_k_to_f32)(float *dst, const uint8_t *src, size_t n_blocks);
  void (*q6_k_to_f32)(float *dst, const uint8_t *src, size_t n_blocks);
  /* out (T, ldo), rows r0..r1 of each of T tokens quantized into X
  ** (gpt_q4_act_token), each token's values the gemv's for it alone; NULL
  ** in a set whose gemm is its gemv a token at a time (gpt_q4_gemm) */
  void (*gemm_q4_0)(float *out, size_t ldo, const uint8_t *W, const GPTQ4Act *X, int T,
                    const float *bias, int r0, int r1, int K, int mode);
  void (*gemm_q4_k)(float *out, size_t ldo, const uint8_t *W, const GPTQ4Act *X, int T,
                    const float *bias, int r0, int r1, int K, int mode);
  void (*gemm_q6_k)(float *out, size_t ldo, const uint8_t *W, const GPTQ4Act *X, int T,
                    const float *bias, int r0, int r1, int K, int mode);
} GPTQ4Kernels;

/* The set matching gpt_kernels()'s (re-read on every call, so that
** gpt_kernels_select applies to both). */
const GPTQ4Kernels *gpt_q4_kernels(void);
/* The set called zName, or NULL when this CPU cannot run it (tests, bench). */
const GPTQ4Kernels *gpt_q4_kernels_named(const char *zName);

/* Buffers for activations of up to n values (n a multiple of 32: one token's
** K, or T tokens' T * K); 0 or -1 when out of memory or n passes what a
** size_t can count (then nothing is held). */
int gpt_q4_act_alloc(GPTQ4Act *a, size_t n);
void gpt_q4_act_free(GPTQ4Act *a);
/* Quantizes x (K,) for rows of dtype: q4_0 with gpt_q8_quantize_act's
** bytes, q4_k and q6_k (K % 256 == 0) with d = max|x| / 127 per 256 and
** q = round(x / d); then the sums (and qp). The same bytes with any set. */
void gpt_q4_quantize_act(GPTQ4Act *a, int dtype, const float *x, int K);

/* The gemv_* of set k for rows in dtype (GPT_Q4_0, _Q4_K, _Q6_K); -1 for
** another dtype. */
int gpt_q4_gemv(const GPTQ4Kernels *k, int dtype, float *y, const uint8_t *W,
                const GPTQ4Act *x, const float *bias, int r0, int r1, int K, int mode);
/* Token t's view of activations quantized for T tokens into one GPTQ4Act
** allocated for T * K values. */
static inline GPTQ4Act gpt_q4_act_token(const GPTQ4Act *X, int t, int K) {
  size_t v = (size_t)t * K, b = (size_t)t * (K / 32);
  GPTQ4Act a = {X->q + v, X->aq + v, X->qp + v, X->d + b, X->sum + b, X->qsum + v / 16};
  return a;
}
/* out (T, ldo), rows r0..r1 of each token, for T tokens quantized into X
** (gpt_q4_act_token's layout): each token's values are, bit for bit, the
** ones gpt_q4_gemv of set k gives that token alone, so a prefill or a
** decode step of several sequences agrees with a decode step of one.
** -1 for another dtype. */
int gpt_q4_gemm(const GPTQ4Kernels *k, int dtype, float *out, size_t ldo, const uint8_t *W,
                const GPTQ4Act *X, int T, const float *bias, int r0, int r1, int K, int mode);
/* dst (n_blocks q8_0 blocks) = src's q4_0 blocks, exactly (values n - 8). */
void gpt_q4_0_to_q8_0(uint8_t *dst, const uint8_t *src, size_t n_blocks);
/* The AVX-512 gemv of q4_0 rows on kernels.c's q8_0 arithmetic: bit for
** bit the q8_0 gemv of the rows converted by gpt_q4_0_to_q8_0: the q8_0
** tile with AVX-512 BW, or (vnni) four-block steps with VNNI and VBMI.
** x86 with AVX-512 only. */
void gpt_q4_0_gemv_avx512(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                          int r0, int r1, int K, int mode, int vnni);
/* The q4_0 gemm of the same sets (out, ldo, X, T as gpt_q4_gemm): the rows
** converted and run on the q8_0 gemm, each token's values that gemv's. */
void gpt_q4_0_gemm_avx512(float *out, size_t ldo, const uint8_t *W, const GPTQ4Act *X, int T,
                          const float *bias, int r0, int r1, int K, int mode, int vnni);
/* dst (n_blocks * values,) = n_blocks blocks of dtype widened, with k. */
int gpt_q4_to_f32(const GPTQ4Kernels *k, int dtype, float *dst, const uint8_t *src,
                  size_t n_blocks);

/* Index of the first block of src (n_blocks of dtype) whose f16 scale (d,
** and q4_k's dmin) is Inf or NaN, or -1 when all are finite. */
int64_t gpt_q4_bad_block(int dtype, const uint8_t *src, int64_t n_blocks);

/* Quantizes n values (a multiple of the block) of x into dtype's blocks at
** dst: see kernels_q4.c for the method. Returns -1 when a value is not
** finite or a scale does not fit in f16. */
int gpt_q4_quantize_row(int dtype, uint8_t *dst, const float *x, int64_t n);

#endif
