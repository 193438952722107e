/*
** The 4- and 6-bit kernel sets of kernels_q4.h: portable C, AVX2, AVX-512
** (F, BW, VL) and AVX-512 with VNNI, and the quantizers that write the
** blocks.
**
** How it works: a gemv multiplies rows of blocks with the activation
** quantized as for q8_0 (int8 per block of 32, scale d_x), so each block's
** products are summed exactly in integers and scaled once:
**
**   q4_0   sum_j (n_j - 8) x_j = d_x (sum_j n_j q_j) - 8 xsum_b, n_j the
**          nibbles (0..15, unsigned bytes against signed q: maddubs and
**          VNNI's vpdpbusd take them as they are), xsum_b = d_x sum_j q_j
**          (portable and AVX2); the AVX-512 sets run q4_0 rows on kernels.c's
**          q8_0 arithmetic, n_j - 8 being a q8_0 value
**   q4_k   each sub-block of 32 is one activation block: d sc d_x (n . q)
**          - dmin m xsum_b; the eight scales and mins of a super-block are
**          unpacked once into vectors of eight floats
**   q6_k   (q - 32) is signed: as for q8_0, |q_x| times the weight with q_x's
**          sign (maddubs), and the pairs' sums are multiplied by the
**          sub-block's int8 scale in the same step (madd with the scales in
**          place of ones), so both 16-value halves of an activation block
**          come out as one integer sum per lane; with VNNI the values
**          go in as stored, 0..63, and 32 (sum of q over 16) x the scale
**          comes off once per super-block
**
** Rows are read one at a time, in order (see avx2_gemv_f16 in kernels.c),
** PF_BYTES ahead in the weight stream prefetched (AVX-512: PF_L2_BYTES, into
** L2). A row's result does not depend on the rows handed with it, so any
** split over threads gives the same output. A gemm (several tokens) gives each token the gemv's bits:
** tiles of up to four tokens share a row's unpacked blocks and do each
** token's arithmetic in the gemv's order (q4_0 on AVX-512: the q8_0 gemm on
** rows converted).
*/
#include <math.h>
#include <pthread.h>
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
#define VNNI_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define ALWAYS_INLINE inline __attribute__((always_inline))
#endif

#define PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
/* the AVX-512 tiles prefetch into L2, as kernels.c's do (see PREFETCH_L2 there) */
#define PREFETCH_L2(p) __builtin_prefetch((const void *)(p), 0, 2)
#define PF_BYTES 4096
/* One stream a thread needs its touches far ahead: gpt2-shaped q4_k decode,
** 1 thread, Zen 4, 4 KB ahead 198-219 tok/s, 8 KB 254-262, 16 KB 260-265
** (interleaved). The q8_0 and q4_0 gemvs, four rows a pass, ran slower
** touching 8 and 16 KB ahead than 4 and 8 (q4_0: 181-191 against 247-259). */
#define PF_L2_BYTES 16384
#define Q4_TILE_T 4 /* tokens a gemm tile shares a row's unpacked blocks with */
#define Q4_SWEEP_MAX 64 /* tokens a gemm sweep holds at most */

/* A little-endian 16-bit value at p. */
static inline uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* Stores t = dot + bias into y[r] as mode says (kernels.h's GPT_GEMV_*). */
static inline void store_row(float *y, int r, float dot, const float *bias, int mode) {
  float t = dot + (bias ? bias[r] : 0.0f);
  if (mode == GPT_GEMV_ADD) y[r] += t;
  else y[r] = t;
}

/* The eight 6-bit scales and mins of a q4_k super-block from its 12 bytes:
** scales 0-3 and mins 0-3 are the low six bits of bytes 0-3 and 4-7; scales
** and mins 4-7 take their low four bits from bytes 8-11 and their top two
** from the spare top bits of bytes 0-3 and 4-7. Done on 32-bit words. */
static inline void q4k_scales(const uint8_t *s12, uint8_t sc[8], uint8_t mn[8]) {
  uint32_t w0, w1, w2, a, b, c, d;
  memcpy(&w0, s12, 4);
  memcpy(&w1, s12 + 4, 4);
  memcpy(&w2, s12 + 8, 4);
  a = w0 & 0x3f3f3f3fu;
  b = (w2 & 0x0f0f0f0fu) | ((w0 >> 2) & 0x30303030u);
  c = w1 & 0x3f3f3f3fu;
  d = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 2) & 0x30303030u);
  memcpy(sc, &a, 4);
  memcpy(sc + 4, &b, 4);
  memcpy(mn, &c, 4);
  memcpy(mn + 4, &d, 4);
}

/* The 6-bit value i (0..255) of a q6_k block, 0..63 (see kernels_q4.h). */
static inline int q6k_value(const uint8_t *blk, int i) {
  int h = i / 128, g = (i % 128) / 32, l = i % 32;
  int lo = blk[64 * h + l + 32 * (g & 1)];
  int hi = (blk[128 + 32 * h + l] >> (2 * g)) & 3;
  return ((g < 2 ? lo & 15 : lo >> 4) | (hi << 4));
}

/* ------------------------------------------------------------ portable */

static void p_gemv_q4_0(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                        int r0, int r1, int K, int mode) {
  const float *xsum = x->sum;
  int nb = K / GPT_Q4_0_BLOCK;
  for (int r = r0; r < r1; r++) {
    const uint8_t *blk = W + (size_t)r * nb * GPT_Q4_0_BYTES;
    float s = 0.0f;
    for (int b = 0; b < nb; b++, blk += GPT_Q4_0_BYTES) {
      const int8_t *q = x->q + b * 32;
      int32_t isum = 0;
      for (int j = 0; j < 16; j++)
        isum += (blk[2 + j] & 15) * q[j] + (blk[2 + j] >> 4) * q[j + 16];
      s += gpt_f16_to_f32(le16(blk)) * (x->d[b] * (float)isum - 8.0f * xsum[b]);
    }
    store_row(y, r, s, bias, mode);
  }
}

static void p_gemv_q4_k(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                        int r0, int r1, int K, int mode) {
  const float *xsum = x->sum;
  int nb = K / GPT_QK_K;
  for (int r = r0; r < r1; r++) {
    const uint8_t *blk = W + (size_t)r * nb * GPT_Q4_K_BYTES;
    float s = 0.0f;
    for (int i = 0; i < nb; i++, blk += GPT_Q4_K_BYTES) {
      float d = gpt_f16_to_f32(le16(blk)), dmin = gpt_f16_to_f32(le16(blk + 2));
      uint8_t sc[8], mn[8];
      q4k_scales(blk + 4, sc, mn);
      for (int sb = 0; sb < 8; sb++) {
        const uint8_t *qs = blk + 16 + 32 * (sb / 2);
        const int8_t *q = x->q + (8 * i + sb) * 32;
        int shift = 4 * (sb & 1);
        int32_t isum = 0;
        for (int l = 0; l < 32; l++) isum += ((qs[l] >> shift) & 15) * q[l];
        s += d * sc[sb] * x->d[8 * i + sb] * (float)isum - dmin * mn[sb] * xsum[8 * i + sb];
      }
    }
    store_row(y, r, s, bias, mode);
  }
}

static void p_gemv_q6_k(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                        int r0, int r1, int K, int mode) {
  int nb = K / GPT_QK_K;
  for (int r = r0; r < r1; r++) {
    const uint8_t *blk = W + (size_t)r * nb * GPT_Q6_K_BYTES;
    float s = 0.0f;
    for (int i = 0; i < nb; i++, blk += GPT_Q6_K_BYTES) {
      float d = gpt_f16_to_f32(le16(blk + 208));
      const int8_t *sc = (const int8_t *)(blk + 192);
      for (int b = 0; b < 8; b++) {
        const int8_t *q = x->q + (8 * i + b) * 32;
        int32_t lo = 0, hi = 0;
        for (int l = 0; l < 16; l++) {
          lo += (q6k_value(blk, 32 * b + l) - 32) * q[l];
          hi += (q6k_value(blk, 32 * b + 16 + l) - 32) * q[16 + l];
        }
        s += d * x->d[8 * i + b] * (float)(sc[2 * b] * lo + sc[2 * b + 1] * hi);
      }
    }
    store_row(y, r, s, bias, mode);
  }
}

/* The widening follows ggml's dequantize_row_* arithmetic in f32, so a
** widened row equals llama.cpp's. */
static void p_q4_0_to_f32(float *dst, const uint8_t *src, size_t nb) {
  for (size_t b = 0; b < nb; b++, src += GPT_Q4_0_BYTES, dst += 32) {
    float d = gpt_f16_to_f32(le16(src));
    for (int j = 0; j < 16; j++) {
      dst[j] = (float)((src[2 + j] & 15) - 8) * d;
      dst[j + 16] = (float)((src[2 + j] >> 4) - 8) * d;
    }
  }
}

static void p_q4_k_to_f32(float *dst, const uint8_t *src, size_t nb) {
  for (size_t i = 0; i < nb; i++, src += GPT_Q4_K_BYTES) {
    float d = gpt_f16_to_f32(le16(src)), dmin = gpt_f16_to_f32(le16(src + 2));
    uint8_t sc[8], mn[8];
    q4k_scales(src + 4, sc, mn);
    for (int sb = 0; sb < 8; sb++, dst += 32) {
      const uint8_t *qs = src + 16 + 32 * (sb / 2);
      float d1 = d * sc[sb], m1 = dmin * mn[sb];
      int shift = 4 * (sb & 1);
      for (int l = 0; l < 32; l++) dst[l] = d1 * (float)((qs[l] >> shift) & 15) - m1;
    }
  }
}

static void p_q6_k_to_f32(float *dst, const uint8_t *src, size_t nb) {
  for (size_t i = 0; i < nb; i++, src += GPT_Q6_K_BYTES, dst += GPT_QK_K) {
    float d = gpt_f16_to_f32(le16(src + 208));
    const int8_t *sc = (const int8_t *)(src + 192);
    for (int v = 0; v < GPT_QK_K; v++)
      dst[v] = d * (float)sc[v / 16] * (float)(q6k_value(src, v) - 32);
  }
}

static const GPTQ4Kernels kPortable = {
  "portable", p_gemv_q4_0, p_gemv_q4_k, p_gemv_q6_k, p_q4_0_to_f32, p_q4_k_to_f32, p_q6_k_to_f32,
  NULL, NULL, NULL,
};

/* ---------------------------------------------------------------- AVX2 */
#ifdef GPT_X86

/* Tokens a gemm sweep, 4 to 64: about 12 KB over K. Of the sizes tried on
** gpt2's q4_k prefill (24 KB, 12 and 6) 12 ran 8% faster than 24 and as
** fast as 6. */
static int q4_sweep(int K) {
  int n = 12288 / (K > 0 ? K : 1);
  return n < Q4_TILE_T ? Q4_TILE_T : n > Q4_SWEEP_MAX ? Q4_SWEEP_MAX : n / Q4_TILE_T * Q4_TILE_T;
}

/* A row function (a tile of one token), for the gemv. */
#define ROW_OF_TILE(NAME, ATTR, TILE)                                                         \
  ATTR static ALWAYS_INLINE float NAME(const uint8_t *row, const GPTQ4Act *x, int nb) {      \
    float r;                                                                                  \
    TILE(row, x, 1, nb, &r);                                                                  \
    return r;                                                                                 \
  }

/* The gemv of a set from its row function. */
#define GEMV(NAME, ATTR, ROW, BLOCK, BYTES)                                                   \
  ATTR static void NAME(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,     \
                        int r0, int r1, int K, int mode) {                                    \
    int nb = K / BLOCK;                                                                       \
    size_t ld = (size_t)nb * BYTES;                                                           \
    for (int r = r0; r < r1; r++) store_row(y, r, ROW(W + r * ld, x, nb), bias, mode);        \
  }

/* Rows r0..r1 against tokens t0..t1 of a sweep (their views in xs),
** Q4_TILE_T at a time, each tile's sums stored into out: the loop the
** gemms share. ROW(r) is row r as TILE takes it. It uses the enclosing
** gemm's names: xs, nb, res, out, ldo, bias, mode (and PACKED_ROW's W and
** ld, UNPACKED_ROW's buf and rb). */
#define SWEEP_TILES(TILE, ROW, r0, r1, t0, t1)                                                \
  for (int r = (r0); r < (r1); r++) {                                                         \
    for (int t = (t0); t < (t1); t += Q4_TILE_T) {                                            \
      int nt = (t1) - t < Q4_TILE_T ? (t1) - t : Q4_TILE_T;                                   \
      const GPTQ4Act *x = xs + (t - (t0));                                                    \
      switch (nt) {                                                                           \
        case 4: TILE(ROW(r), x, 4, nb, res); break;                                           \
        case 3: TILE(ROW(r), x, 3, nb, res); break;                                           \
        case 2: TILE(ROW(r), x, 2, nb, res); break;                                           \
        default: TILE(ROW(r), x, 1, nb, res); break;                                          \
      }                                                                                       \
      for (int j = 0; j < nt; j++) store_row(out + (size_t)(t + j) * ldo, r, res[j], bias, mode); \
    }                                                                                         \
  }
#define PACKED_ROW(r) (W + (size_t)(r) * ld)
#define UNPACKED_ROW(r) (buf + (size_t)((r) - rb) * nb)

/* The gemm of a set, out (T, ldo): each row against the tokens of a sweep,
** Q4_TILE_T at a time, the row's unpacked blocks shared by them; a token's
** value is the gemv's for it alone (the tile does each token's arithmetic
** in the row function's order). A sweep's activations stay in L1 while
** the rows stream past. */
#define GEMM(NAME, ATTR, TILE, BLOCK, BYTES)                                                  \
  ATTR static void NAME(float *out, size_t ldo, const uint8_t *W, const GPTQ4Act *X, int T,  \
                        const float *bias, int r0, int r1, int K, int mode) {                 \
    int nb = K / BLOCK, sweep = q4_sweep(K);                                                  \
    size_t ld = (size_t)nb * BYTES;                                                           \
    GPTQ4Act xs[Q4_SWEEP_MAX];                                                                \
    float res[Q4_TILE_T];                                                                     \
    for (int t0 = 0; t0 < T; t0 += sweep) {                                                   \
      int t1 = t0 + sweep < T ? t0 + sweep : T;                                               \
      for (int t = t0; t < t1; t++) xs[t - t0] = gpt_q4_act_token(X, t, K);                   \
      SWEEP_TILES(TILE, PACKED_ROW, r0, r1, t0, t1);                                          \
    }                                                                                         \
  }


AVX2_FN static ALWAYS_INLINE float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* Eight int32 sums of u (unsigned bytes, < 128) times q (int8), four bytes
** a lane, exact. */
AVX2_FN static ALWAYS_INLINE __m256i avx2_dot_u8s8(__m256i u, __m256i q) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
}

/* The 32 nibbles of a q4_0 block in value order: low nibbles then high. */
AVX2_FN static ALWAYS_INLINE __m256i avx2_q4_0_nibbles(const uint8_t *blk) {
  __m128i q = _mm_loadu_si128((const __m128i *)(blk + 2)), m = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

/* A q4_0 row of nb blocks against nt <= Q4_TILE_T tokens, res (nt,): per
** block the nibbles times q summed exactly, scaled by d_w d_x; the offsets
** -8 d_w xsum summed apart. Each token's arithmetic is the same whatever nt
** (the gemv is the tile of one token, the gemm shares a row's nibbles). */
AVX2_FN static ALWAYS_INLINE void avx2_tile_q4_0(const uint8_t *row, const GPTQ4Act *x, int nt,
                                                int nb, float *res) {
  __m256 acc[Q4_TILE_T];
  float off[Q4_TILE_T];
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
    acc[t] = _mm256_setzero_ps();
    off[t] = 0.0f;
  }
  for (int b = 0; b < nb; b++) {
    const uint8_t *blk = row + (size_t)b * GPT_Q4_0_BYTES;
    if ((b & 1) == 0) PREFETCH(blk + PF_BYTES);
    float d = _cvtsh_ss(le16(blk));
    __m256i nib = avx2_q4_0_nibbles(blk);
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
      __m256i q = _mm256_loadu_si256((const __m256i *)(x[t].q + b * 32));
      __m256 p = _mm256_cvtepi32_ps(avx2_dot_u8s8(nib, q));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[t].d[b]), p, acc[t]);
      off[t] += d * x[t].sum[b];
    }
  }
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) res[t] = hsum256(acc[t]) - 8.0f * off[t];
}

/* A q4_k super-block's eight mins times dmin (8,), and its scales as
** bytes in *pSc. */
AVX2_FN static ALWAYS_INLINE __m256 avx2_q4k_mins(const uint8_t *blk, uint8_t sc[8]) {
  uint8_t mn[8];
  uint64_t m8;
  q4k_scales(blk + 4, sc, mn);
  memcpy(&m8, mn, 8);
  __m256 fm = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)m8)));
  return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(le16(blk + 2))), fm);
}

/* A q4_k row against nt tokens' activations with one scale per 256: per
** super-block the nibbles of each sub-block times q (maddubs) times the
** sub-block's 6-bit scale (madd) sum in eight int32 lanes, scaled once by d
** d_x; the mins' term dmin m xsum goes to a float vector of its own. */
AVX2_FN static ALWAYS_INLINE void avx2_tile_q4_k(const uint8_t *row, const GPTQ4Act *x, int nt,
                                                int nb, float *res) {
  __m256 acc[Q4_TILE_T], accm[Q4_TILE_T];
  const __m256i m4 = _mm256_set1_epi8(15);
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
    acc[t] = _mm256_setzero_ps();
    accm[t] = _mm256_setzero_ps();
  }
  for (int i = 0; i < nb; i++) {
    const uint8_t *blk = row + (size_t)i * GPT_Q4_K_BYTES;
    uint8_t sc[8];
    PREFETCH(blk + PF_BYTES);
    PREFETCH(blk + PF_BYTES + 64);
    PREFETCH(blk + PF_BYTES + 128);
    __m256 mins = avx2_q4k_mins(blk, sc);
    __m256i isum[Q4_TILE_T];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
      accm[t] = _mm256_fmadd_ps(mins, _mm256_loadu_ps(x[t].sum + 8 * i), accm[t]);
      isum[t] = _mm256_setzero_si256();
    }
    _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) {
      __m256i n = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * p));
      __m256i lo = _mm256_and_si256(n, m4), hi = _mm256_and_si256(_mm256_srli_epi16(n, 4), m4);
      __m256i s0 = _mm256_set1_epi16(sc[2 * p]), s1 = _mm256_set1_epi16(sc[2 * p + 1]);
      _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        const int8_t *q = x[t].q + (size_t)i * GPT_QK_K;
        __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q + 64 * p)));
        __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q + 64 * p + 32)));
        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p0, s0));
        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p1, s1));
      }
    }
    float dw = _cvtsh_ss(le16(blk));
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
      float dd = dw * x[t].d[8 * i];
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum[t]), acc[t]);
    }
  }
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) res[t] = hsum256(acc[t]) - hsum256(accm[t]);
}

/* The 6-bit values of activation block g (0..3) of half h of a q6_k block,
** from that half's ql (two 32-byte loads a, b) and qh (hb): the low four
** bits are a's or b's low or high nibbles, the top two bits pair 2g of hb
** moved to bits 4-5 (16-bit shifts, masked per byte). */
AVX2_FN static ALWAYS_INLINE __m256i avx2_q6_values(__m256i a, __m256i b, __m256i hb, int g) {
  const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(0x30);
  __m256i v = g & 1 ? b : a;
  __m256i lo = g < 2 ? _mm256_and_si256(v, m4) : _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
  __m256i hi;
  if (g == 0) hi = _mm256_slli_epi16(hb, 4);
  else if (g == 1) hi = _mm256_slli_epi16(hb, 2);
  else if (g == 2) hi = hb;
  else hi = _mm256_srli_epi16(hb, 2);
  return _mm256_or_si256(lo, _mm256_and_si256(hi, m2));
}

/* A q6_k row against nt tokens' activations with one scale per 256: the
** sixteen sub-blocks' products, times their int8 scales, sum in eight int32
** lanes per super-block, scaled once by d d_x. */
AVX2_FN static ALWAYS_INLINE void avx2_tile_q6_k(const uint8_t *row, const GPTQ4Act *x, int nt,
                                                int nb, float *res) {
  __m256 acc[Q4_TILE_T];
  const __m256i k32 = _mm256_set1_epi8(32);
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
  for (int i = 0; i < nb; i++) {
    const uint8_t *blk = row + (size_t)i * GPT_Q6_K_BYTES;
    PREFETCH(blk + PF_BYTES);
    PREFETCH(blk + PF_BYTES + 64);
    PREFETCH(blk + PF_BYTES + 128);
    PREFETCH(blk + PF_BYTES + 192);
    const int8_t *sc = (const int8_t *)(blk + 192);
    __m256i isum[Q4_TILE_T];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
      __m256i a = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
      __m256i b = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
      __m256i hb = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
      _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++) {
        int ab = 8 * i + 4 * h + g, s = 8 * h + 2 * g;
        __m256i w = _mm256_sub_epi8(avx2_q6_values(a, b, hb, g), k32);
        __m256i scl = _mm256_set_m128i(_mm_set1_epi16(sc[s + 1]), _mm_set1_epi16(sc[s]));
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
          __m256i q = _mm256_loadu_si256((const __m256i *)(x[t].q + ab * 32));
          __m256i aq = _mm256_loadu_si256((const __m256i *)(x[t].aq + ab * 32));
          __m256i p16 = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(w, q));
          isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p16, scl));
        }
      }
    }
    float dw = _cvtsh_ss(le16(blk + 208));
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
      float dd = dw * x[t].d[8 * i];
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum[t]), acc[t]);
    }
  }
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) res[t] = hsum256(acc[t]);
}

/* Widening: eight values at a time, the same products as the portable set. */
AVX2_FN static void avx2_q4_0_to_f32(float *dst, const uint8_t *src, size_t nb) {
  for (size_t b = 0; b < nb; b++, src += GPT_Q4_0_BYTES, dst += 32) {
    __m256 d = _mm256_set1_ps(_cvtsh_ss(le16(src)));
    __m256i n = _mm256_sub_epi8(avx2_q4_0_nibbles(src), _mm256_set1_epi8(8));
    for (int j = 0; j < 4; j++) {
      __m128i part = j < 2 ? _mm256_castsi256_si128(n) : _mm256_extracti128_si256(n, 1);
      if (j & 1) part = _mm_srli_si128(part, 8);
      _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part)), d));
    }
  }
}

AVX2_FN static void avx2_q4_k_to_f32(float *dst, const uint8_t *src, size_t nb) {
  for (size_t i = 0; i < nb; i++, src += GPT_Q4_K_BYTES) {
    float d = _cvtsh_ss(le16(src)), dmin = _cvtsh_ss(le16(src + 2));
    uint8_t sc[8], mn[8];
    q4k_scales(src + 4, sc, mn);
    for (int sb = 0; sb < 8; sb++, dst += 32) {
      const uint8_t *qs = src + 16 + 32 * (sb / 2);
      __m256 d1 = _mm256_set1_ps(d * sc[sb]), m1 = _mm256_set1_ps(dmin * mn[sb]);
      __m128i m4 = _mm_set1_epi8(15);
      for (int j = 0; j < 32; j += 16) {
        __m128i n = _mm_loadu_si128((const __m128i *)(qs + j));
        n = sb & 1 ? _mm_and_si128(_mm_srli_epi16(n, 4), m4) : _mm_and_si128(n, m4);
        __m256 v0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(n));
        __m256 v1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(n, 8)));
        _mm256_storeu_ps(dst + j, _mm256_sub_ps(_mm256_mul_ps(d1, v0), m1));
        _mm256_storeu_ps(dst + j + 8, _mm256_sub_ps(_mm256_mul_ps(d1, v1), m1));
      }
    }
  }
}

AVX2_FN static void avx2_q6_k_to_f32(float *dst, const uint8_t *src, size_t nb) {
  for (size_t i = 0; i < nb; i++, src += GPT_Q6_K_BYTES) {
    float d = _cvtsh_ss(le16(src + 208));
    const int8_t *sc = (const int8_t *)(src + 192);
    for (int h = 0; h < 2; h++) {
      __m256i a = _mm256_loadu_si256((const __m256i *)(src + 64 * h));
      __m256i b = _mm256_loadu_si256((const __m256i *)(src + 64 * h + 32));
      __m256i hb = _mm256_loadu_si256((const __m256i *)(src + 128 + 32 * h));
      _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++, dst += 32) {
        int8_t v[32];
        _mm256_storeu_si256((__m256i *)v, _mm256_sub_epi8(avx2_q6_values(a, b, hb, g),
                                                          _mm256_set1_epi8(32)));
        for (int j = 0; j < 32; j += 8) {
          __m256 ds = _mm256_set1_ps(d * (float)sc[8 * h + 2 * g + j / 16]);
          __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(v + j))));
          _mm256_storeu_ps(dst + j, _mm256_mul_ps(ds, f));
        }
      }
    }
  }
}

ROW_OF_TILE(avx2_row_q4_0, AVX2_FN, avx2_tile_q4_0)
ROW_OF_TILE(avx2_row_q4_k, AVX2_FN, avx2_tile_q4_k)
ROW_OF_TILE(avx2_row_q6_k, AVX2_FN, avx2_tile_q6_k)
GEMV(avx2_gemv_q4_0, AVX2_FN, avx2_row_q4_0, GPT_Q4_0_BLOCK, GPT_Q4_0_BYTES)
GEMV(avx2_gemv_q4_k, AVX2_FN, avx2_row_q4_k, GPT_QK_K, GPT_Q4_K_BYTES)
GEMV(avx2_gemv_q6_k, AVX2_FN, avx2_row_q6_k, GPT_QK_K, GPT_Q6_K_BYTES)
GEMM(avx2_gemm_q4_0, AVX2_FN, avx2_tile_q4_0, GPT_Q4_0_BLOCK, GPT_Q4_0_BYTES)
GEMM(avx2_gemm_q4_k, AVX2_FN, avx2_tile_q4_k, GPT_QK_K, GPT_Q4_K_BYTES)
GEMM(avx2_gemm_q6_k, AVX2_FN, avx2_tile_q6_k, GPT_QK_K, GPT_Q6_K_BYTES)

static const GPTQ4Kernels kAvx2 = {
  "avx2", avx2_gemv_q4_0, avx2_gemv_q4_k, avx2_gemv_q6_k, avx2_q4_0_to_f32, avx2_q4_k_to_f32,
  avx2_q6_k_to_f32, avx2_gemm_q4_0, avx2_gemm_q4_k, avx2_gemm_q6_k,
};

/* ------------------------------------------------------------- AVX-512 */

/* acc + the pairs of int16 in p times those in s: madd and add, or one
** vpdpwssd with VNNI. */
AVX512_FN static ALWAYS_INLINE __m512i avx512_madd_acc(__m512i acc, __m512i p, __m512i s) {
  return _mm512_add_epi32(acc, _mm512_madd_epi16(p, s));
}
VNNI_FN static ALWAYS_INLINE __m512i vnni_madd_acc(__m512i acc, __m512i p, __m512i s) {
  return _mm512_dpwssd_epi32(acc, p, s);
}

/* The sums of a tile's four accumulators, (a, b, c, d) -> (4,), in one
** tree: lane pairs, then the four 128-bit blocks. Each sum's order does not
** depend on the others, so a token alone (the gemv, zeros beside it) gets
** the bits it gets in a tile of four. */
AVX512_FN static ALWAYS_INLINE __m128 avx512_hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  __m512 u = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
  __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1));
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(u), hi);
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* res (nt,) = the sums of acc (nt,) by avx512_hsum4, the unused ones 0. */
AVX512_FN static ALWAYS_INLINE void avx512_tile_sums(const __m512 *acc, int nt, float *res) {
  const __m512 z = _mm512_setzero_ps();
  float r4[4];
  _mm_storeu_ps(r4, avx512_hsum4(acc[0], nt > 1 ? acc[1] : z, nt > 2 ? acc[2] : z,
                                 nt > 3 ? acc[3] : z));
  for (int t = 0; t < nt; t++) res[t] = r4[t];
}

/* q4_k against the activation's qp (blocks 0 2 1 3 4 6 5 7 of each 256):
** 64 bytes of nibbles (two pairs of sub-blocks) are one load, whose low
** nibbles are sub-blocks 0 and 2 (or 4 and 6) and high nibbles 1 and 3 (5
** and 7), each against 64 contiguous bytes of qp. maddubs gives int16
** pairs; the step's two 6-bit scales, sixteen lanes each (one vpermw),
** multiply them into the super-block's int32 sums (madd and add, or VNNI's
** vpdpwssd), scaled once by d d_x. A super-block is unpacked
** (q4k_unpack) into what its tokens share, then met by each token
** (Q4_K_TOKENS); the gemm unpacks each row once and keeps it so. */
typedef struct Q4KBlock {
  __m512i lo[2], hi[2];   /* each half's low and high nibbles, as bytes */
  __m512i slo[2], shi[2]; /* their sub-blocks' scales, 16 int16 lanes each */
  __m256 mins;            /* the eight mins times dmin */
  float d;
} Q4KBlock;

AVX512_FN static ALWAYS_INLINE void q4k_unpack(const uint8_t *blk, Q4KBlock *u) {
  const __m512i m4 = _mm512_set1_epi8(15);
  /* int16 lanes 0-15 take scale a, 16-31 scale b: (0, 2), (1, 3), (4, 6), (5, 7) */
  const __m512i i02 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  const __m512i i13 = _mm512_inserti64x4(_mm512_set1_epi16(1), _mm256_set1_epi16(3), 1);
  const __m512i k4 = _mm512_set1_epi16(4);
  uint8_t sc[8];
  uint64_t s8;
  u->mins = avx2_q4k_mins(blk, sc);
  memcpy(&s8, sc, 8);
  __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)s8)));
  _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
    __m512i v = _mm512_loadu_si512((const void *)(blk + 16 + 64 * h));
    u->lo[h] = _mm512_and_si512(v, m4);
    u->hi[h] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    u->slo[h] = _mm512_permutexvar_epi16(h ? _mm512_add_epi16(i02, k4) : i02, sc16);
    u->shi[h] = _mm512_permutexvar_epi16(h ? _mm512_add_epi16(i13, k4) : i13, sc16);
  }
  u->d = _cvtsh_ss(le16(blk));
}

/* Super-block i, unpacked in u, against nt tokens: onto acc (the scaled
** integer sums) and accm (the mins' term). */
#define Q4_K_TOKENS(NAME, ATTR, MADD)                                                         \
  ATTR static ALWAYS_INLINE void NAME(const Q4KBlock *u, const GPTQ4Act *x, int nt, int i,    \
                                      __m512 *acc, __m256 *accm) {                            \
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {                                    \
      accm[t] = _mm256_fmadd_ps(u->mins, _mm256_loadu_ps(x[t].sum + 8 * i), accm[t]);         \
      const int8_t *qp = x[t].qp + (size_t)i * GPT_QK_K;                                      \
      /* two chains of integer sums, added at the end: the same integers */                  \
      __m512i ilo = _mm512_setzero_si512(), ihi = _mm512_setzero_si512();                     \
      _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                                   \
        __m512i plo = _mm512_maddubs_epi16(u->lo[h], _mm512_loadu_si512((const void *)(qp + 128 * h))); \
        __m512i phi = _mm512_maddubs_epi16(u->hi[h], _mm512_loadu_si512((const void *)(qp + 128 * h + 64))); \
        ilo = MADD(ilo, plo, u->slo[h]);                                                      \
        ihi = MADD(ihi, phi, u->shi[h]);                                                      \
      }                                                                                       \
      __m512i isum = _mm512_add_epi32(ilo, ihi);                                              \
      float dd = u->d * x[t].d[8 * i];                                                        \
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(dd), _mm512_cvtepi32_ps(isum), acc[t]);         \
    }                                                                                         \
  }

/* A q4_k tile's accumulators: zeroed, and at the end its sums, the mins'
** term taken off, into res (nt,). */
AVX512_FN static ALWAYS_INLINE void q4k_acc_zero(__m512 *acc, __m256 *accm, int nt) {
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
    acc[t] = _mm512_setzero_ps();
    accm[t] = _mm256_setzero_ps();
  }
}
AVX512_FN static ALWAYS_INLINE void q4k_acc_sums(__m512 *acc, const __m256 *accm, int nt,
                                                float *res) {
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
    acc[t] = _mm512_sub_ps(acc[t], _mm512_zextps256_ps512(accm[t]));
  avx512_tile_sums(acc, nt, res);
}

/* A q4_k row against nt tokens, res (nt,): from the blocks as stored
** (NAME: the gemv's, and the gemm's without memory to unpack) or from the
** row unpacked (NAME_UNPACKED: the gemm's). Both do the same arithmetic,
** so the same bits. (One body for both, choosing per block, kept the
** unpacked block out of registers: 137 -> 100-111 GOP/s.) */
#define Q4_K_TILE(NAME, NAME_UNPACKED, ATTR, TOKENS)                                          \
  ATTR static ALWAYS_INLINE void NAME(const uint8_t *row, const GPTQ4Act *x, int nt, int nb,  \
                                      float *res) {                                           \
    __m512 acc[Q4_TILE_T];                                                                    \
    __m256 accm[Q4_TILE_T];                                                                   \
    q4k_acc_zero(acc, accm, nt);                                                              \
    for (int i = 0; i < nb; i++) {                                                            \
      const uint8_t *blk = row + (size_t)i * GPT_Q4_K_BYTES;                                  \
      Q4KBlock u;                                                                             \
      PREFETCH_L2(blk + PF_L2_BYTES);                                                         \
      PREFETCH_L2(blk + PF_L2_BYTES + 64);                                                    \
      PREFETCH_L2(blk + PF_L2_BYTES + 128);                                                   \
      q4k_unpack(blk, &u);                                                                    \
      TOKENS(&u, x, nt, i, acc, accm);                                                        \
    }                                                                                         \
    q4k_acc_sums(acc, accm, nt, res);                                                         \
  }                                                                                           \
  ATTR static ALWAYS_INLINE void NAME_UNPACKED(const Q4KBlock *row, const GPTQ4Act *x, int nt, \
                                               int nb, float *res) {                          \
    __m512 acc[Q4_TILE_T];                                                                    \
    __m256 accm[Q4_TILE_T];                                                                   \
    q4k_acc_zero(acc, accm, nt);                                                              \
    for (int i = 0; i < nb; i++) TOKENS(row + i, x, nt, i, acc, accm);                        \
    q4k_acc_sums(acc, accm, nt, res);                                                         \
  }

/* Bytes of unpacked rows a gemm keeps at a time (a third of a 1 MB L2). */
#define Q4K_UNPACKED_BYTES ((size_t)320 << 10)

/* A k-quant gemm on unpacked rows (super-blocks of BYTES bytes unpacked
** by UNPACK into BLOCKT): each block of rows unpacked once (as many as fit
** Q4K_UNPACKED_BYTES), then met by each sweep's tokens, four at a time;
** without memory for a block, the gemm on rows as stored. */
#define UNPACKED_GEMM(NAME, ATTR, BLOCKT, UNPACK, BYTES, TILE_UNPACKED, PACKED_GEMM)          \
  ATTR static void NAME(float *out, size_t ldo, const uint8_t *W, const GPTQ4Act *X, int T,  \
                        const float *bias, int r0, int r1, int K, int mode) {                 \
    int nb = K / GPT_QK_K, sweep = q4_sweep(K);                                               \
    size_t ld = (size_t)nb * BYTES, per = (size_t)nb * sizeof(BLOCKT);                       \
    int nrow = (int)(Q4K_UNPACKED_BYTES / (per ? per : 1));                                   \
    nrow = nrow < 1 ? 1 : nrow > r1 - r0 ? r1 - r0 : nrow;                                    \
    BLOCKT *buf = nb > 0 && nrow > 0 ? aligned_alloc(64, (size_t)nrow * per) : NULL;          \
    if (!buf) {                                                                               \
      PACKED_GEMM(out, ldo, W, X, T, bias, r0, r1, K, mode);                                  \
      return;                                                                                 \
    }                                                                                         \
    GPTQ4Act xs[Q4_SWEEP_MAX];                                                                \
    float res[Q4_TILE_T];                                                                     \
    for (int rb = r0; rb < r1; rb += nrow) {                                                  \
      int rb1 = r1 - rb < nrow ? r1 : rb + nrow;                                              \
      for (int r = rb; r < rb1; r++)                                                          \
        for (int i = 0; i < nb; i++)                                                          \
          UNPACK(W + (size_t)r * ld + (size_t)i * BYTES, buf + (size_t)(r - rb) * nb + i);    \
      for (int t0 = 0; t0 < T; t0 += sweep) {                                                 \
        int t1 = t0 + sweep < T ? t0 + sweep : T;                                             \
        for (int t = t0; t < t1; t++) xs[t - t0] = gpt_q4_act_token(X, t, K);                 \
        SWEEP_TILES(TILE_UNPACKED, UNPACKED_ROW, rb, rb1, t0, t1);                            \
      }                                                                                       \
    }                                                                                         \
    free(buf);                                                                                \
  }

Q4_K_TOKENS(avx512_tokens_q4_k, AVX512_FN, avx512_madd_acc)
Q4_K_TOKENS(vnni_tokens_q4_k, VNNI_FN, vnni_madd_acc)
Q4_K_TILE(avx512_tile_q4_k, avx512_tile_q4_k_unpacked, AVX512_FN, avx512_tokens_q4_k)
ROW_OF_TILE(avx512_row_q4_k, AVX512_FN, avx512_tile_q4_k)

Q4_K_TILE(vnni_tile_q4_k, vnni_tile_q4_k_unpacked, VNNI_FN, vnni_tokens_q4_k)
ROW_OF_TILE(vnni_row_q4_k, VNNI_FN, vnni_tile_q4_k)
GEMV(avx512_gemv_q4_k, AVX512_FN, avx512_row_q4_k, GPT_QK_K, GPT_Q4_K_BYTES)
GEMV(vnni_gemv_q4_k, VNNI_FN, vnni_row_q4_k, GPT_QK_K, GPT_Q4_K_BYTES)

/* q6_k: half h's 64 bytes of ql are one load; its low nibbles are
** activation blocks 0 and 1 of the half, its high nibbles blocks 2 and 3.
** qh (32 bytes) goes to both halves of a register and is shifted by a
** different count in each (vpsllvw / vpsrlvw). The four int8 scales of a
** step become 32 int16 lanes, eight each (one vpermw), for madd (VNNI:
** vpdpwssd) into the super-block's int32 sums, scaled once by d d_x. */
#define Q6_K_TILE(NAME, ATTR, MADD)                                                           \
  ATTR static ALWAYS_INLINE void NAME(const uint8_t *row, const GPTQ4Act *x, int nt, int nb,  \
                                      float *res) {                                           \
    __m512 acc[Q4_TILE_T];                                                                    \
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(0x30);                     \
    const __m512i k32 = _mm512_set1_epi8(32), zero = _mm512_setzero_si512();                  \
    /* shift counts per 16-bit lane: left 4 | left 2 for steps 0, 1; right 0 | 2 */           \
    const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);    \
    const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);  \
    /* int16 lanes 8t..8t+7 (t < 4) take the step's scale t */                                \
    const __m512i step = _mm512_inserti64x4(                                                  \
        _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(1), _mm_setzero_si128())),     \
        _mm256_set_m128i(_mm_set1_epi16(3), _mm_set1_epi16(2)), 1);                           \
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();        \
    for (int i = 0; i < nb; i++) {                                                            \
      const uint8_t *blk = row + (size_t)i * GPT_Q6_K_BYTES;                                  \
      PREFETCH_L2(blk + PF_L2_BYTES);                                                         \
      PREFETCH_L2(blk + PF_L2_BYTES + 64);                                                    \
      PREFETCH_L2(blk + PF_L2_BYTES + 128);                                                   \
      PREFETCH_L2(blk + PF_L2_BYTES + 192);                                                   \
      __m512i sc16 = _mm512_castsi256_si512(                                                  \
          _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 192))));               \
      __m512i isum[Q4_TILE_T];                                                                \
      _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) isum[t] = _mm512_setzero_si512();  \
      _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                                   \
        __m512i ql = _mm512_loadu_si512((const void *)(blk + 64 * h));                        \
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h))); \
        _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) {                                 \
          /* activation blocks 4h + 2k and 4h + 2k + 1 of the super-block */                  \
          int ab = 8 * i + 4 * h + 2 * k, s = 8 * h + 4 * k;                                  \
          __m512i lo = k == 0 ? _mm512_and_si512(ql, m4)                                      \
                              : _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4);               \
          __m512i hi = k == 0 ? _mm512_sllv_epi16(qh, shl) : _mm512_srlv_epi16(qh, shr);      \
          __m512i w = _mm512_sub_epi8(_mm512_or_si512(lo, _mm512_and_si512(hi, m2)), k32);    \
          __m512i idx = _mm512_add_epi16(step, _mm512_set1_epi16((short)s));                  \
          __m512i scale = _mm512_permutexvar_epi16(idx, sc16);                                \
          _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {                              \
            __m512i q = _mm512_loadu_si512((const void *)(x[t].q + ab * 32));                 \
            __m512i aq = _mm512_loadu_si512((const void *)(x[t].aq + ab * 32));               \
            __m512i sw = _mm512_mask_sub_epi8(w, _mm512_movepi8_mask(q), zero, w);            \
            isum[t] = MADD(isum[t], _mm512_maddubs_epi16(aq, sw), scale);                     \
          }                                                                                   \
        }                                                                                     \
      }                                                                                       \
      float dw = _cvtsh_ss(le16(blk + 208));                                                  \
      _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {                                  \
        float dd = dw * x[t].d[8 * i];                                                        \
        acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(dd), _mm512_cvtepi32_ps(isum[t]), acc[t]);    \
      }                                                                                       \
    }                                                                                         \
    avx512_tile_sums(acc, nt, res);                                                           \
  }

Q6_K_TILE(avx512_tile_q6_k, AVX512_FN, avx512_madd_acc)

/* q6_k with VNNI: the values as stored, 0..63, are unsigned bytes against
** the signed q (vpdpbusd, four products a lane: |sum| <= 4 * 63 * 127, so
** a half's two steps pack into int16 lanes without saturating); the packed
** sums times their scales (vpdpwssd) go into the super-block's int32 sums,
** and the offset of 32 comes off once per super-block as 32 times the
** scales times the activation's sums of 16 (one vpdpwssd). The integers
** are the tile above's, without its sign fixing. As for q4_k, a
** super-block is unpacked once (q6k_unpack) for the tokens that meet it. */
typedef struct Q6KBlock {
  __m512i w0[2], w1[2]; /* each half's two steps of values, 0..63 */
  __m512i scale[2];     /* each half's scales in the packed sums' int16 lanes */
  __m512i off;          /* -32 times the 16 scales, int16 lanes 0-15 */
  float d;
} Q6KBlock;

VNNI_FN static ALWAYS_INLINE void q6k_unpack(const uint8_t *blk, Q6KBlock *u) {
  const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(0x30);
  const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  /* after vpackssdw, int16 lanes 8L..8L+3 of 128-bit lane L hold step 2h's
  ** sub-block L, lanes 8L+4..8L+7 step 2h+1's: scales 8h + L and 8h + 4 + L */
  const __m512i pick = _mm512_set_epi16(7, 7, 7, 7, 3, 3, 3, 3, 6, 6, 6, 6, 2, 2, 2, 2,
                                        5, 5, 5, 5, 1, 1, 1, 1, 4, 4, 4, 4, 0, 0, 0, 0);
  const __m512i k8 = _mm512_set1_epi16(8), kMinus32 = _mm512_set1_epi16(-32);
  __m512i sc16 = _mm512_zextsi256_si512(
      _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 192))));
  u->off = _mm512_mullo_epi16(sc16, kMinus32); /* lanes 16-31 stay 0 */
  _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
    __m512i ql = _mm512_loadu_si512((const void *)(blk + 64 * h));
    __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h)));
    u->w0[h] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                               _mm512_and_si512(_mm512_sllv_epi16(qh, shl), m2));
    u->w1[h] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                               _mm512_and_si512(_mm512_srlv_epi16(qh, shr), m2));
    u->scale[h] = _mm512_permutexvar_epi16(h ? _mm512_add_epi16(pick, k8) : pick, sc16);
  }
  u->d = _cvtsh_ss(le16(blk + 208));
}

/* Super-block i, unpacked in u, against nt tokens, onto acc: two chains
** of integer sums a token (the offset and half 0, then half 1). */
VNNI_FN static ALWAYS_INLINE void vnni_tokens_q6_k(const Q6KBlock *u, const GPTQ4Act *x, int nt,
                                                  int i, __m512 *acc) {
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
    __m512i ih[2];
    ih[0] = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                                _mm512_zextsi256_si512(_mm256_loadu_si256(
                                    (const __m256i *)(x[t].qsum + 16 * i))),
                                u->off);
    ih[1] = _mm512_setzero_si512();
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
      const int8_t *q = x[t].q + (size_t)i * GPT_QK_K + 128 * h;
      __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u->w0[h],
                                       _mm512_loadu_si512((const void *)q));
      __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u->w1[h],
                                       _mm512_loadu_si512((const void *)(q + 64)));
      ih[h] = _mm512_dpwssd_epi32(ih[h], _mm512_packs_epi32(s0, s1), u->scale[h]);
    }
    /* the super-block's sum in integers, into one lane: the offset and the
    ** values it corrects sit in different lanes, and turned into floats a
    ** lane at a time they cancelled only after rounding (a weight of 0,
    ** stored as 32, under a large scale: 2^-6 where 0.008 was due) */
    float dd = u->d * x[t].d[8 * i];
    int isum = _mm512_reduce_add_epi32(_mm512_add_epi32(ih[0], ih[1]));
    acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(dd), _mm512_maskz_mov_ps(1, _mm512_set1_ps((float)isum)),
                             acc[t]);
  }
}

/* A q6_k row against nt tokens, res (nt,), from the blocks as stored (the
** gemv's) or unpacked (the gemm's): the same arithmetic, the same bits. */
VNNI_FN static ALWAYS_INLINE void vnni_tile_q6_k(const uint8_t *row, const GPTQ4Act *x, int nt,
                                                int nb, float *res) {
  __m512 acc[Q4_TILE_T];
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
  for (int i = 0; i < nb; i++) {
    const uint8_t *blk = row + (size_t)i * GPT_Q6_K_BYTES;
    Q6KBlock u;
    PREFETCH_L2(blk + PF_L2_BYTES);
    PREFETCH_L2(blk + PF_L2_BYTES + 64);
    PREFETCH_L2(blk + PF_L2_BYTES + 128);
    PREFETCH_L2(blk + PF_L2_BYTES + 192);
    q6k_unpack(blk, &u);
    vnni_tokens_q6_k(&u, x, nt, i, acc);
  }
  avx512_tile_sums(acc, nt, res);
}
VNNI_FN static ALWAYS_INLINE void vnni_tile_q6_k_unpacked(const Q6KBlock *row, const GPTQ4Act *x,
                                                         int nt, int nb, float *res) {
  __m512 acc[Q4_TILE_T];
  _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
  for (int i = 0; i < nb; i++) vnni_tokens_q6_k(row + i, x, nt, i, acc);
  avx512_tile_sums(acc, nt, res);
}
ROW_OF_TILE(avx512_row_q6_k, AVX512_FN, avx512_tile_q6_k)
ROW_OF_TILE(vnni_row_q6_k, VNNI_FN, vnni_tile_q6_k)
GEMV(avx512_gemv_q6_k, AVX512_FN, avx512_row_q6_k, GPT_QK_K, GPT_Q6_K_BYTES)
GEMV(vnni_gemv_q6_k, VNNI_FN, vnni_row_q6_k, GPT_QK_K, GPT_Q6_K_BYTES)
GEMM(avx512_gemm_q4_k_packed, AVX512_FN, avx512_tile_q4_k, GPT_QK_K, GPT_Q4_K_BYTES)
UNPACKED_GEMM(avx512_gemm_q4_k, AVX512_FN, Q4KBlock, q4k_unpack, GPT_Q4_K_BYTES,
              avx512_tile_q4_k_unpacked, avx512_gemm_q4_k_packed)
GEMM(avx512_gemm_q6_k, AVX512_FN, avx512_tile_q6_k, GPT_QK_K, GPT_Q6_K_BYTES)
GEMM(vnni_gemm_q4_k_packed, VNNI_FN, vnni_tile_q4_k, GPT_QK_K, GPT_Q4_K_BYTES)
UNPACKED_GEMM(vnni_gemm_q4_k, VNNI_FN, Q4KBlock, q4k_unpack, GPT_Q4_K_BYTES,
              vnni_tile_q4_k_unpacked, vnni_gemm_q4_k_packed)
GEMM(vnni_gemm_q6_k_packed, VNNI_FN, vnni_tile_q6_k, GPT_QK_K, GPT_Q6_K_BYTES)
UNPACKED_GEMM(vnni_gemm_q6_k, VNNI_FN, Q6KBlock, q6k_unpack, GPT_Q6_K_BYTES,
              vnni_tile_q6_k_unpacked, vnni_gemm_q6_k_packed)

/* q4_0 on the AVX-512 sets: the q8_0 tile of kernels.c reads the blocks
** as they are (their values n - 8 are q8_0 values), so the gemv is bit for
** bit the q8_0 gemv of the rows converted, and the gemm converts the rows
** it is handed and runs the q8_0 gemm (VNNI's repacked slices where the
** CPU has them), which gives each token the q8_0 gemv's bits. */
static void avx512_gemv_q4_0(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                             int r0, int r1, int K, int mode) {
  gpt_q4_0_gemv_avx512(y, W, x, bias, r0, r1, K, mode, 0);
}
static void vnni_gemv_q4_0(float *y, const uint8_t *W, const GPTQ4Act *x, const float *bias,
                           int r0, int r1, int K, int mode) {
  gpt_q4_0_gemv_avx512(y, W, x, bias, r0, r1, K, mode, 1);
}
static void avx512_gemm_q4_0(float *out, size_t ldo, const uint8_t *W, const GPTQ4Act *X, int T,
                             const float *bias, int r0, int r1, int K, int mode) {
  gpt_q4_0_gemm_avx512(out, ldo, W, X, T, bias, r0, r1, K, mode, 0);
}
static void vnni_gemm_q4_0(float *out, size_t ldo, const uint8_t *W, const GPTQ4Act *X, int T,
                           const float *bias, int r0, int r1, int K, int mode) {
  gpt_q4_0_gemm_avx512(out, ldo, W, X, T, bias, r0, r1, K, mode, 1);
}

static const GPTQ4Kernels kAvx512 = {
  "avx512", avx512_gemv_q4_0, avx512_gemv_q4_k, avx512_gemv_q6_k, avx2_q4_0_to_f32,
  avx2_q4_k_to_f32, avx2_q6_k_to_f32, avx512_gemm_q4_0, avx512_gemm_q4_k, avx512_gemm_q6_k,
};

static const GPTQ4Kernels kVnni = {
  "avx512vnni", vnni_gemv_q4_0, vnni_gemv_q4_k, vnni_gemv_q6_k, avx2_q4_0_to_f32,
  avx2_q4_k_to_f32, avx2_q6_k_to_f32, vnni_gemm_q4_0, vnni_gemm_q4_k, vnni_gemm_q6_k,
};

/* AVX-512 VNNI and VBMI from CPUID leaf 7 (ECX bits 11 and 1): the VNNI
** set uses both (Ice Lake and Zen 4 on have them). */
static int cpu_has_vnni(void) {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11)) != 0 &&
         (c & (1u << 1)) != 0;
}
#endif /* GPT_X86 */

/* ----------------------------------------------------------- selection */

const GPTQ4Kernels *gpt_q4_kernels_named(const char *zName) {
  if (zName == 0) return 0;
  if (strcmp(zName, "portable") == 0) return &kPortable;
#ifdef GPT_X86
  /* the f32 sets of kernels.h know whether the CPU runs AVX2 and AVX-512 */
  if (strcmp(zName, "avx2") == 0) return gpt_kernels_named("avx2") ? &kAvx2 : 0;
  if (strcmp(zName, "avx512") == 0) return gpt_kernels_named("avx512") ? &kAvx512 : 0;
  if (strcmp(zName, "avx512vnni") == 0)
    return gpt_kernels_named("avx512") && cpu_has_vnni() ? &kVnni : 0;
#endif
  return 0;
}

#ifdef GPT_X86
static int gHasVnni;
static pthread_once_t gVnniOnce = PTHREAD_ONCE_INIT;
static void check_vnni(void) { gHasVnni = cpu_has_vnni(); }
#endif

const GPTQ4Kernels *gpt_q4_kernels(void) {
#ifdef GPT_X86
  const char *z = gpt_kernels()->name;
  if (strcmp(z, "avx512") == 0) {
    pthread_once(&gVnniOnce, check_vnni);
    return gHasVnni ? &kVnni : &kAvx512;
  }
  if (strcmp(z, "avx2") == 0) return &kAvx2;
#endif
  return &kPortable;
}

int gpt_q4_act_alloc(GPTQ4Act *a, size_t n) {
  size_t nb = n / 32 + 1;
  memset(a, 0, sizeof(*a));
  if (n > SIZE_MAX - 64) return -1;
  a->q = malloc(n + 64);
  a->aq = malloc(n + 64);
  a->qp = malloc(n + 64);
  a->d = malloc(nb * sizeof(float));
  a->sum = malloc(nb * sizeof(float));
  a->qsum = malloc((n / 16 + 1) * sizeof(int16_t));
  if (a->q && a->aq && a->qp && a->d && a->sum && a->qsum) return 0;
  gpt_q4_act_free(a);
  return -1;
}

void gpt_q4_act_free(GPTQ4Act *a) {
  free(a->q); free(a->aq); free(a->qp); free(a->d); free(a->sum); free(a->qsum);
  memset(a, 0, sizeof(*a));
}

/* lrintf(f) clamped to [-127, 127], as the loop it replaces computed it
** (a NaN or a value past a long's range, whose lrintf is LONG_MIN, gives
** -127), without a libm call: adding and taking away 1.5 * 2^23 rounds a
** float under 2^22 to the nearest integer, ties to even, as lrintf does in
** the default rounding mode. */
static inline int round_clamp_127(float f) {
  if (!(f > -127.0f)) return -127;                  /* NaN too */
  if (f >= 127.0f) return f < 9.2233720e18f ? 127 : -127;
  return (int)((f + 12582912.0f) - 12582912.0f);
}

#ifdef GPT_X86
/* One 256-value block of a k-quant activation with AVX-512: the same bytes
** as the scalar loop (max of |v| over non-NaN values, then
** round_clamp_127(v * id): vcvtps2dq rounds as lrintf does and gives
** INT_MIN for a NaN or an infinity, which the clamp makes -127, and v * id
** never reaches 2^31 since |v| <= amax). Returns amax. */
AVX512_FN static float avx512_quantize_k256(int8_t *q, int8_t *aq, const float *v) {
  __m512 mx = _mm512_setzero_ps();
  for (int j = 0; j < GPT_QK_K; j += 16)
    mx = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(v + j)), mx); /* NaN: keeps mx */
  float amax = _mm512_reduce_max_ps(mx);
  __m512 id = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  const __m512i hi = _mm512_set1_epi32(127), lo = _mm512_set1_epi32(-127);
  for (int j = 0; j < GPT_QK_K; j += 16) {
    __m512i i = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(v + j), id));
    __m128i b = _mm512_cvtepi32_epi8(_mm512_max_epi32(_mm512_min_epi32(i, hi), lo));
    _mm_storeu_si128((__m128i *)(q + j), b);
    _mm_storeu_si128((__m128i *)(aq + j), _mm_abs_epi8(b));
  }
  return amax;
}

/* sum[b] = d[b] * (the sum of block b's 32 values of q), nb blocks. */
AVX512_FN static void avx512_block_sums(float *sum, const float *d, const int8_t *q, int nb) {
  for (int b = 0; b < nb; b++) {
    __m512i w = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + 32 * b)));
    w = _mm512_add_epi32(w, _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + 32 * b + 16))));
    sum[b] = d[b] * (float)_mm512_reduce_add_epi32(w);
  }
}

static int gAvx512Act = -1;
static int avx512_act(void) {
  if (gAvx512Act < 0)
    gAvx512Act = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return gAvx512Act;
}
#endif

void gpt_q4_quantize_act(GPTQ4Act *a, int dtype, const float *x, int K) {
  if (dtype == GPT_Q4_0) {
    GPTQ8Act v = {a->q, a->aq, a->d, NULL};
    gpt_q8_quantize_act(&v, x, K);
    /* qp: per four blocks, their first halves then their second halves */
    for (int g = 0; g < K / 128; g++)
      for (int k = 0; k < 4; k++) {
        memcpy(a->qp + 128 * g + 16 * k, a->q + 128 * g + 32 * k, 16);
        memcpy(a->qp + 128 * g + 64 + 16 * k, a->q + 128 * g + 32 * k + 16, 16);
      }
  } else {
    /* one scale per 256 (K % 256 == 0 for these formats) */
    for (int i = 0; i < K / GPT_QK_K; i++) {
      const float *v = x + (size_t)i * GPT_QK_K;
      int8_t *q = a->q + (size_t)i * GPT_QK_K, *aq = a->aq + (size_t)i * GPT_QK_K;
      float amax = 0.0f;
#ifdef GPT_X86
      if (avx512_act()) {
        amax = avx512_quantize_k256(q, aq, v);
      } else
#endif
      {
        for (int j = 0; j < GPT_QK_K; j++) {
          float f = fabsf(v[j]);
          amax = f > amax ? f : amax; /* fmaxf's value, NaNs skipped, without its call */
        }
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < GPT_QK_K; j++) {
          int qj = round_clamp_127(v[j] * id);
          q[j] = (int8_t)qj;
          aq[j] = (int8_t)(qj < 0 ? -qj : qj);
        }
      }
      for (int b = 0; b < 8; b++) a->d[8 * i + b] = amax / 127.0f;
      /* qp: blocks 0 2 1 3 4 6 5 7 */
      static const int kOrder[8] = {0, 2, 1, 3, 4, 6, 5, 7};
      for (int b = 0; b < 8; b++)
        memcpy(a->qp + (size_t)i * GPT_QK_K + 32 * b, a->q + (size_t)i * GPT_QK_K + 32 * kOrder[b], 32);
      for (int g = 0; g < GPT_QK_K / 16; g++) {
        int s16 = 0;
        for (int j = 0; j < 16; j++) s16 += q[16 * g + j];
        a->qsum[(size_t)i * (GPT_QK_K / 16) + g] = (int16_t)s16; /* |s16| <= 16 * 127 */
      }
    }
  }
#ifdef GPT_X86
  if (avx512_act()) {
    avx512_block_sums(a->sum, a->d, a->q, K / 32);
    return;
  }
#endif
  for (int b = 0; b < K / 32; b++) {
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += a->q[b * 32 + j];
    a->sum[b] = a->d[b] * (float)s;
  }
}

int gpt_q4_gemv(const GPTQ4Kernels *k, int dtype, float *y, const uint8_t *W,
                const GPTQ4Act *x, const float *bias, int r0, int r1, int K, int mode) {
  switch (dtype) {
    case GPT_Q4_0: k->gemv_q4_0(y, W, x, bias, r0, r1, K, mode); return 0;
    case GPT_Q4_K: k->gemv_q4_k(y, W, x, bias, r0, r1, K, mode); return 0;
    case GPT_Q6_K: k->gemv_q6_k(y, W, x, bias, r0, r1, K, mode); return 0;
  }
  return -1;
}

int gpt_q4_gemm(const GPTQ4Kernels *k, int dtype, float *out, size_t ldo, const uint8_t *W,
                const GPTQ4Act *X, int T, const float *bias, int r0, int r1, int K, int mode) {
  void (*gemm)(float *, size_t, const uint8_t *, const GPTQ4Act *, int, const float *, int, int,
               int, int) = dtype == GPT_Q4_0 ? k->gemm_q4_0 : dtype == GPT_Q4_K ? k->gemm_q4_k
                           : dtype == GPT_Q6_K ? k->gemm_q6_k : NULL;
  if (dtype != GPT_Q4_0 && dtype != GPT_Q4_K && dtype != GPT_Q6_K) return -1;
  if (gemm) {
    gemm(out, ldo, W, X, T, bias, r0, r1, K, mode);
    return 0;
  }
  /* the portable and AVX2 sets: the gemv a token at a time */
  for (int t = 0; t < T; t++) {
    GPTQ4Act x = gpt_q4_act_token(X, t, K);
    gpt_q4_gemv(k, dtype, out + (size_t)t * ldo, W, &x, bias, r0, r1, K, mode);
  }
  return 0;
}

int gpt_q4_to_f32(const GPTQ4Kernels *k, int dtype, float *dst, const uint8_t *src,
                  size_t n_blocks) {
  switch (dtype) {
    case GPT_Q4_0: k->q4_0_to_f32(dst, src, n_blocks); return 0;
    case GPT_Q4_K: k->q4_k_to_f32(dst, src, n_blocks); return 0;
    case GPT_Q6_K: k->q6_k_to_f32(dst, src, n_blocks); return 0;
  }
  return -1;
}

/* An f16 whose exponent bits are all set is Inf or NaN. */
static int f16_bad(const uint8_t *p) { return (le16(p) & 0x7c00) == 0x7c00; }

int64_t gpt_q4_bad_block(int dtype, const uint8_t *src, int64_t n_blocks) {
  int nBytes = 0;
  gpt_dtype_block(dtype, &nBytes);
  for (int64_t b = 0; b < n_blocks; b++, src += nBytes) {
    int bad = 0;
    if (dtype == GPT_Q4_0) bad = f16_bad(src);
    else if (dtype == GPT_Q4_K) bad = f16_bad(src) || f16_bad(src + 2);
    else if (dtype == GPT_Q6_K) bad = f16_bad(src + 208);
    else return b;
    if (bad) return b;
  }
  return -1;
}

/* ---------------------------------------------------------- quantizing */

/* The value as an f16 and back; 0 when it does not fit (*pBad set). */
static float f16_round(float v, uint16_t *pBits, int *pBad) {
  uint16_t h = gpt_f32_to_f16(v);
  if ((h & 0x7c00) == 0x7c00) { *pBad = 1; h = 0; }
  *pBits = h;
  return gpt_f16_to_f32(h);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* q4_0, as ggml's reference: d is the value of largest magnitude over -8
** (so that value is exactly q = 0), q = x / d + 8 rounded half up, clamped
** to 15. */
static int quant_q4_0(uint8_t *dst, const float *x) {
  float amax = 0.0f, vmax = 0.0f;
  int bad = 0;
  uint16_t h;
  for (int j = 0; j < 32; j++)
    if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); vmax = x[j]; }
  /* ggml's quantize_row_q4_0_ref to the bit: q from the unrounded scale's
  ** reciprocal, rounded half up by truncating x / d + 8.5 (>= 0 here) */
  float d = vmax / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  if (!isfinite(id)) id = 0.0f; /* d below 2.9e-39: its f16 scale is 0 anyway */
  f16_round(d, &h, &bad);
  dst[0] = (uint8_t)(h & 0xff);
  dst[1] = (uint8_t)(h >> 8);
  for (int j = 0; j < 16; j++) {
    int a = clampi((int)(x[j] * id + 8.5f), 0, 15);
    int b = clampi((int)(x[j + 16] * id + 8.5f), 0, 15);
    dst[2 + j] = (uint8_t)(a | (b << 4));
  }
  return bad ? -1 : 0;
}

/* One q4_k sub-block of 32: the scale a >= 0 and min b >= 0 (value ~ a q -
** b, q in 0..15) that minimise the squared error weighted by w, searched
** over 21 step sizes around (max - min) / 15 with a least-squares fit of
** a and b to each candidate's levels (ggml's make_qkx2_quants does much the
** same). */
static void fit_q4k_sub(const float *x, const float *w, float *pScale, float *pMin) {
  float lo = 0.0f, hi = x[0];
  for (int l = 0; l < 32; l++) {
    if (x[l] < lo) lo = x[l];
    if (x[l] > hi) hi = x[l];
  }
  if (hi < 0.0f) hi = 0.0f;
  *pScale = 0.0f;
  *pMin = -lo;
  if (hi <= lo) return;
  double best = -1.0;
  for (int t = -10; t <= 10; t++) {
    float is = (15.0f + 0.1f * (float)t) / (hi - lo);
    double sw = 0, sl = 0, sx = 0, sll = 0, slx = 0;
    uint8_t L[32];
    for (int l = 0; l < 32; l++) {
      L[l] = (uint8_t)clampi((int)lrintf((x[l] - lo) * is), 0, 15);
      sw += w[l]; sl += w[l] * L[l]; sx += w[l] * x[l];
      sll += w[l] * L[l] * L[l]; slx += w[l] * L[l] * x[l];
    }
    double det = sw * sll - sl * sl, a, b;
    if (sw <= 0) continue;
    if (det <= 1e-9 * sw * sll) {
      /* every level the same (a constant run): its mean as a L0 or as b */
      double mean = sx / sw, L0 = sl / sw;
      if (mean > 0 && L0 > 0) { a = mean / L0; b = 0; }
      else { a = 0; b = mean < 0 ? mean : 0; }
    } else {
      a = (sw * slx - sl * sx) / det;
      b = (sll * sx - sl * slx) / det; /* value = a L + b */
      if (b > 0) { b = 0; a = sll > 0 ? slx / sll : 0; }
      if (a < 0) { a = 0; b = sx / sw < 0 ? sx / sw : 0; }
    }
    double err = 0;
    for (int l = 0; l < 32; l++) {
      double e = a * L[l] + b - x[l];
      err += w[l] * e * e;
    }
    if (best < 0 || err < best) {
      best = err;
      *pScale = (float)a;
      *pMin = (float)-b;
    }
  }
}

/* q4_k: each sub-block's scale and min fitted (fit_q4k_sub, weights |x| +
** the block's rms as in ggml), then coded in 6 bits against d = the largest
** scale / 63 and dmin = the largest min / 63 (both rounded to f16 first),
** and the values quantized again against the coded pairs. */
static int quant_q4_k(uint8_t *dst, const float *x) {
  float scale[8], mn[8], w[32], maxScale = 0.0f, maxMin = 0.0f;
  uint8_t sc[8], m[8];
  uint16_t hd, hm;
  int bad = 0;
  double ss = 0;
  for (int l = 0; l < 256; l++) ss += (double)x[l] * x[l];
  float rms = (float)sqrt(ss / 256);
  for (int s = 0; s < 8; s++) {
    for (int l = 0; l < 32; l++) w[l] = rms + fabsf(x[32 * s + l]);
    fit_q4k_sub(x + 32 * s, w, &scale[s], &mn[s]);
    if (scale[s] > maxScale) maxScale = scale[s];
    if (mn[s] > maxMin) maxMin = mn[s];
  }
  float d = f16_round(maxScale / 63.0f, &hd, &bad), dmin = f16_round(maxMin / 63.0f, &hm, &bad);
  for (int s = 0; s < 8; s++) {
    sc[s] = (uint8_t)(d > 0 ? clampi((int)lrintf(scale[s] / d), 0, 63) : 0);
    /* with d 0 (constant sub-blocks, or scales under f16's least step) each
    ** sub-block is the one value -dmin * m: its mean, not its minimum (tiny
    ** values had all gone to their minimums, error 2.2 where zeros give 1) */
    float mean = 0.0f;
    if (d == 0.0f) {
      for (int l = 0; l < 32; l++) mean += x[32 * s + l];
      mean /= 32.0f;
    }
    float target = d > 0 ? mn[s] : -mean;
    m[s] = (uint8_t)(dmin > 0 ? clampi((int)lrintf(target / dmin), 0, 63) : 0);
  }
  memset(dst, 0, GPT_Q4_K_BYTES);
  dst[0] = (uint8_t)(hd & 0xff); dst[1] = (uint8_t)(hd >> 8);
  dst[2] = (uint8_t)(hm & 0xff); dst[3] = (uint8_t)(hm >> 8);
  for (int s = 0; s < 4; s++) {
    dst[4 + s] = (uint8_t)(sc[s] | (sc[s + 4] >> 4) << 6);
    dst[8 + s] = (uint8_t)(m[s] | (m[s + 4] >> 4) << 6);
    dst[12 + s] = (uint8_t)((sc[s + 4] & 15) | (m[s + 4] & 15) << 4);
  }
  for (int s = 0; s < 8; s++) {
    float ds = d * sc[s], dm = dmin * m[s];
    uint8_t *qs = dst + 16 + 32 * (s / 2);
    for (int l = 0; l < 32; l++) {
      int q = ds > 0 ? clampi((int)lrintf((x[32 * s + l] + dm) / ds), 0, 15) : 0;
      qs[l] |= (uint8_t)(q << (4 * (s & 1)));
    }
  }
  return bad ? -1 : 0;
}

/* One q6_k sub-block of 16: the scale (either sign) for levels in
** -32..31 minimising the error weighted by x^2, over 19 step sizes around
** the largest magnitude / 32 with a least-squares scale for each. */
static float fit_q6k_sub(const float *x) {
  float amax = 0.0f, vmax = 0.0f, best = 0.0f;
  double bestErr = -1.0;
  for (int l = 0; l < 16; l++)
    if (fabsf(x[l]) > amax) { amax = fabsf(x[l]); vmax = x[l]; }
  if (amax == 0.0f) return 0.0f;
  for (int t = -9; t <= 9; t++) {
    float is = -(32.0f + 0.1f * (float)t) / vmax;
    double slx = 0, sll = 0, err = 0;
    int L[16];
    for (int l = 0; l < 16; l++) {
      double w = (double)x[l] * x[l];
      L[l] = clampi((int)lrintf(x[l] * is), -32, 31);
      slx += w * L[l] * x[l];
      sll += w * L[l] * L[l];
    }
    if (sll <= 0) continue;
    double a = slx / sll;
    for (int l = 0; l < 16; l++) {
      double e = a * L[l] - x[l];
      err += (double)x[l] * x[l] * e * e;
    }
    if (bestErr < 0 || err < bestErr) { bestErr = err; best = (float)a; }
  }
  return best;
}

/* q6_k: sixteen sub-block scales (fit_q6k_sub) coded as int8 against d =
** the scale of largest magnitude / -128 (rounded to f16), the values
** quantized against the coded scales. */
static int quant_q6_k(uint8_t *dst, const float *x) {
  float scale[16], smax = 0.0f;
  uint16_t hd;
  int bad = 0;
  for (int s = 0; s < 16; s++) {
    scale[s] = fit_q6k_sub(x + 16 * s);
    if (fabsf(scale[s]) > fabsf(smax)) smax = scale[s];
  }
  memset(dst, 0, GPT_Q6_K_BYTES);
  float d = f16_round(smax / -128.0f, &hd, &bad);
  dst[208] = (uint8_t)(hd & 0xff);
  dst[209] = (uint8_t)(hd >> 8);
  for (int s = 0; s < 16; s++) {
    int sc = d != 0.0f ? clampi((int)lrintf(scale[s] / d), -128, 127) : 0;
    dst[192 + s] = (uint8_t)(int8_t)sc;
    float ds = d * (float)sc;
    for (int l = 0; l < 16; l++) {
      int v = 16 * s + l, q = ds != 0.0f ? clampi((int)lrintf(x[v] / ds), -32, 31) + 32 : 32;
      int h = v / 128, g = (v % 128) / 32, i = v % 32;
      dst[64 * h + i + 32 * (g & 1)] |= (uint8_t)((q & 15) << (g < 2 ? 0 : 4));
      dst[128 + 32 * h + i] |= (uint8_t)((q >> 4) << (2 * g));
    }
  }
  return bad ? -1 : 0;
}

int gpt_q4_quantize_row(int dtype, uint8_t *dst, const float *x, int64_t n) {
  int nBytes = 0, nVal = gpt_dtype_block(dtype, &nBytes);
  if (nVal == 0 || dtype == GPT_Q8_0 || n % nVal) return -1;
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return -1;
  for (int64_t b = 0; b < n / nVal; b++, dst += nBytes, x += nVal) {
    int rc = dtype == GPT_Q4_0 ? quant_q4_0(dst, x)
           : dtype == GPT_Q4_K ? quant_q4_k(dst, x) : quant_q6_k(dst, x);
    if (rc) return -1;
  }
  return 0;
}
