/*
** C unit test of engine/kernels_q4.c, the q4_0, q4_k and q6_k kernels:
**
**   - the portable widening against tests/golden/q4_blocks.txt, float64
**     values decoded from ggml's format definitions by
**     tests/ref/make_q4_goldens.py, and every set's gemv against that
**     file's float64 dot products (its activation quantizes exactly);
**   - every set this CPU runs (AVX2, AVX-512, AVX-512 VNNI) against the
**     portable set, widening and gemv, on random blocks and sizes with and
**     without vector tails, with bias and GPT_GEMV_ADD; any row range gives
**     the same rows;
**   - every set's gemm equals its gemv a token at a time, bit for bit, for
**     token counts that fill its tiles and sweeps or leave tails, over any
**     split of the rows and with GPT_GEMV_ADD;
**   - the quantizers: blocks that decode within a stated error of their
**     input, scales that are finite, and non-finite input refused.
**
**   build/q4_test [GOLDEN]     ends with "N passed, N failed"
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"
#include "kernels.h"
#include "kernels_q4.h"

static int nPass = 0, nFail = 0;

static void check(int ok, const char *zWhat, const char *zSet, int K, double err) {
  if (ok) {
    nPass++;
  } else {
    nFail++;
    printf("FAILED %s [%s] K=%d err=%g\n", zWhat, zSet, K, err);
  }
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rand32(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)(rand32() >> 8) / 16777216.0f * 2.0f - 1.0f; }

static const int aDtype[3] = {GPT_Q4_0, GPT_Q4_K, GPT_Q6_K};
static const char *azSet[4] = {"portable", "avx2", "avx512", "avx512vnni"};

/* Random blocks of dtype with finite f16 scales of a realistic size. */
static void random_blocks(int dtype, uint8_t *p, int64_t nBlocks) {
  int nBytes = 0;
  gpt_dtype_block(dtype, &nBytes);
  for (int64_t b = 0; b < nBlocks; b++, p += nBytes) {
    for (int i = 0; i < nBytes; i++) p[i] = (uint8_t)rand32();
    uint16_t d = gpt_f32_to_f16(0.001f + 0.02f * fabsf(frand()));
    uint16_t m = gpt_f32_to_f16(0.002f * fabsf(frand()));
    if (dtype == GPT_Q4_0 || dtype == GPT_Q4_K) { p[0] = (uint8_t)d; p[1] = (uint8_t)(d >> 8); }
    if (dtype == GPT_Q4_K) { p[2] = (uint8_t)m; p[3] = (uint8_t)(m >> 8); }
    if (dtype == GPT_Q6_K) { p[208] = (uint8_t)d; p[209] = (uint8_t)(d >> 8); }
  }
}

/* The activation of x for rows of dtype, in a's buffers. */
static void act_set(GPTQ4Act *a, int dtype, const float *x, int K) {
  gpt_q4_quantize_act(a, dtype, x, K);
}

/* ------------------------------------------------------------- golden */

static int read_golden(const char *zPath) {
  FILE *f = fopen(zPath, "r");
  char zWord[64];
  int K = 0, nCase = 0;
  float *x = 0;
  if (!f) { printf("FAILED cannot open %s\n", zPath); nFail++; return -1; }
  while (fscanf(f, "%63s", zWord) == 1) {
    if (zWord[0] == '#') { int c; while ((c = fgetc(f)) != EOF && c != '\n') {} continue; }
    if (strcmp(zWord, "x") == 0) {
      if (fscanf(f, "%d", &K) != 1 || K <= 0 || K % 256) break;
      x = malloc(sizeof(float) * (size_t)K);
      for (int k = 0; k < K; k++) {
        int q;
        if (fscanf(f, "%d", &q) != 1) break;
        x[k] = (float)q / 128.0f;
      }
      continue;
    }
    if (strcmp(zWord, "block") != 0 || !x) break;
    char zName[16];
    int rows, k2, dtype;
    if (fscanf(f, "%15s %d %d", zName, &rows, &k2) != 3 || k2 != K || rows < 1) break;
    dtype = gpt_row_dtype_from_name(zName);
    int nBytes = 0, nVal = gpt_dtype_block(dtype, &nBytes);
    size_t nRow = (size_t)(K / nVal) * nBytes, n = (size_t)rows * K;
    uint8_t *W = malloc(nRow * rows);
    double *want = malloc(sizeof(double) * n), *dots = malloc(sizeof(double) * rows);
    float *got = malloc(sizeof(float) * n), y[16];
    for (size_t i = 0; i < nRow * rows; i++) {
      unsigned v;
      if (fscanf(f, "%2x", &v) != 1) v = 0;
      W[i] = (uint8_t)v;
    }
    if (fscanf(f, "%63s", zWord) != 1 || strcmp(zWord, "values")) break;
    for (size_t i = 0; i < n; i++)
      if (fscanf(f, "%lf", &want[i]) != 1) want[i] = NAN;
    if (fscanf(f, "%63s", zWord) != 1 || strcmp(zWord, "dots")) break;
    for (int r = 0; r < rows; r++)
      if (fscanf(f, "%lf", &dots[r]) != 1) dots[r] = NAN;
    /* the portable widening: the golden value within float rounding */
    gpt_q4_to_f32(gpt_q4_kernels_named("portable"), dtype, got, W, n / nVal);
    double maxErr = 0, maxAbs = 0;
    for (size_t i = 0; i < n; i++) {
      double e = fabs(got[i] - want[i]);
      if (!(e <= maxErr)) maxErr = e;
      if (fabs(want[i]) > maxAbs) maxAbs = fabs(want[i]);
    }
    check(maxErr <= 2e-7 * maxAbs && maxAbs > 0, "golden widening", zName, K, maxErr);
    /* every set's gemv against the float64 dot products */
    GPTQ4Act a;
    gpt_q4_act_alloc(&a, K);
    act_set(&a, dtype, x, K);
    for (int s = 0; s < 4; s++) {
      const GPTQ4Kernels *kern = gpt_q4_kernels_named(azSet[s]);
      if (!kern) continue;
      gpt_q4_gemv(kern, dtype, y, W, &a, NULL, 0, rows, K, GPT_GEMV_SET);
      for (int r = 0; r < rows; r++) {
        double scale = 0;
        for (int k = 0; k < K; k++) scale += fabs(want[(size_t)r * K + k] * x[k]);
        double e = fabs(y[r] - dots[r]);
        check(e <= 1e-5 * scale, "golden gemv", kern->name, K, e / scale);
      }
    }
    gpt_q4_act_free(&a);
    nCase++;
    free(W); free(want); free(dots); free(got);
  }
  fclose(f);
  free(x);
  check(nCase == 3, "golden file has the three formats", "-", 0, nCase);
  return 0;
}

/* ------------------------------------------------- sets against portable */

static void test_sets(void) {
  static const int aK[] = {256, 512, 768, 2304, 32 * 17, 32 * 3, 32 * 10, 32 * 27, 32 * 31, 896};
  const int rows = 9;
  const GPTQ4Kernels *pp = gpt_q4_kernels_named("portable");
  for (int id = 0; id < 3; id++) {
    int dtype = aDtype[id], nBytes = 0, nVal = gpt_dtype_block(dtype, &nBytes);
    for (size_t ik = 0; ik < sizeof(aK) / sizeof(aK[0]); ik++) {
      int K = aK[ik];
      if (K % nVal) continue;
      size_t nRow = (size_t)(K / nVal) * nBytes;
      uint8_t *W = malloc(nRow * rows);
      float *x = malloc(sizeof(float) * K), *ref = malloc(sizeof(float) * (size_t)rows * K);
      float *wide = malloc(sizeof(float) * (size_t)rows * K);
      float y0[9], y[9], y2[9], bias[9];
      GPTQ4Act a;
      random_blocks(dtype, W, (int64_t)rows * K / nVal);
      for (int k = 0; k < K; k++) x[k] = frand() * (k % 7 == 0 ? 3.0f : 1.0f);
      for (int r = 0; r < rows; r++) bias[r] = frand();
      gpt_q4_act_alloc(&a, K);
      act_set(&a, dtype, x, K);
      gpt_q4_to_f32(pp, dtype, ref, W, (size_t)rows * K / nVal);
      gpt_q4_gemv(pp, dtype, y0, W, &a, bias, 0, rows, K, GPT_GEMV_SET);
      /* the portable gemv against double sums of the widened rows times the
      ** quantized activation */
      for (int r = 0; r < rows; r++) {
        double s = bias[r], mag = fabs(bias[r]);
        for (int k = 0; k < K; k++) {
          double xv = (double)a.d[k / 32] * a.q[k];
          s += (double)ref[(size_t)r * K + k] * xv;
          mag += fabs((double)ref[(size_t)r * K + k] * xv);
        }
        check(fabs(y0[r] - s) <= 2e-6 * mag, "portable gemv vs double", gpt_dtype_name(dtype), K,
              fabs(y0[r] - s) / mag);
      }
      for (int sIdx = 1; sIdx < 4; sIdx++) {
        const GPTQ4Kernels *kern = gpt_q4_kernels_named(azSet[sIdx]);
        if (!kern) continue;
        char zWhat[64];
        gpt_q4_to_f32(kern, dtype, wide, W, (size_t)rows * K / nVal);
        double e = 0;
        for (size_t i = 0; i < (size_t)rows * K; i++) e = fmax(e, fabs(wide[i] - ref[i]));
        snprintf(zWhat, sizeof(zWhat), "%s widening", gpt_dtype_name(dtype));
        check(e <= 1e-6, zWhat, kern->name, K, e);
        gpt_q4_gemv(kern, dtype, y, W, &a, bias, 0, rows, K, GPT_GEMV_SET);
        /* rows 2..6 alone, added onto y2 = 1 */
        for (int r = 0; r < rows; r++) y2[r] = 1.0f;
        gpt_q4_gemv(kern, dtype, y2, W, &a, bias, 2, 7, K, GPT_GEMV_ADD);
        double worst = 0, split = 0;
        for (int r = 0; r < rows; r++) {
          double mag = fabs(bias[r]);
          for (int k = 0; k < K; k++) mag += fabs((double)ref[(size_t)r * K + k] * x[k]);
          worst = fmax(worst, fabs(y[r] - y0[r]) / mag);
          if (r >= 2 && r < 7) split = fmax(split, fabs((double)y2[r] - 1.0 - y[r]) / mag);
          else split = fmax(split, fabs(y2[r] - 1.0f));
        }
        snprintf(zWhat, sizeof(zWhat), "%s gemv vs portable", gpt_dtype_name(dtype));
        check(worst <= 2e-6, zWhat, kern->name, K, worst);
        snprintf(zWhat, sizeof(zWhat), "%s gemv rows 2..6, add", gpt_dtype_name(dtype));
        check(split <= 2e-6, zWhat, kern->name, K, split);
      }
      gpt_q4_act_free(&a);
      free(W); free(x); free(ref); free(wide);
    }
  }
}

/* -------------------------------------------------- gemm against gemv */

/* gpt_q4_gemm over T tokens against gpt_q4_gemv of each token alone: the
** same bits (a prefill, or a decode step of several sequences, gives each
** token what a decode step of it alone gives). */
static void test_gemm(void) {
  static const int aK[] = {256, 768, 32 * 3, 32 * 17, 3072, 32 * 10, 32 * 27, 32 * 31};
  static const int aT[] = {1, 3, 4, 9, 70};
  const int rows = 11;
  for (int id = 0; id < 3; id++) {
    int dtype = aDtype[id], nBytes = 0, nVal = gpt_dtype_block(dtype, &nBytes);
    for (size_t ik = 0; ik < sizeof(aK) / sizeof(aK[0]); ik++) {
      int K = aK[ik];
      if (K % nVal) continue;
      size_t nRow = (size_t)(K / nVal) * nBytes;
      uint8_t *W = malloc(nRow * rows);
      float bias[11];
      random_blocks(dtype, W, (int64_t)rows * K / nVal);
      for (int r = 0; r < rows; r++) bias[r] = frand();
      for (size_t it = 0; it < sizeof(aT) / sizeof(aT[0]); it++) {
        int T = aT[it];
        size_t ldo = rows + 3;
        float *x = malloc(sizeof(float) * (size_t)T * K);
        float *g = malloc(sizeof(float) * (size_t)T * ldo), *v = malloc(sizeof(float) * (size_t)T * ldo);
        GPTQ4Act X, a;
        for (size_t i = 0; i < (size_t)T * K; i++) x[i] = frand() * (i % 7 == 0 ? 3.0f : 1.0f);
        gpt_q4_act_alloc(&X, T * K);
        gpt_q4_act_alloc(&a, K);
        for (int t = 0; t < T; t++) {
          GPTQ4Act xt = gpt_q4_act_token(&X, t, K);
          gpt_q4_quantize_act(&xt, dtype, x + (size_t)t * K, K);
        }
        for (int sIdx = 0; sIdx < 4; sIdx++) {
          const GPTQ4Kernels *kern = gpt_q4_kernels_named(azSet[sIdx]);
          char zWhat[80];
          if (!kern) continue;
          for (size_t i = 0; i < (size_t)T * ldo; i++) g[i] = v[i] = 0.5f;
          gpt_q4_gemm(kern, dtype, g, ldo, W, &X, T, bias, 0, 4, K, GPT_GEMV_SET);
          gpt_q4_gemm(kern, dtype, g, ldo, W, &X, T, bias, 4, rows, K, GPT_GEMV_ADD);
          for (int t = 0; t < T; t++) {
            gpt_q4_quantize_act(&a, dtype, x + (size_t)t * K, K);
            gpt_q4_gemv(kern, dtype, v + (size_t)t * ldo, W, &a, bias, 0, 4, K, GPT_GEMV_SET);
            gpt_q4_gemv(kern, dtype, v + (size_t)t * ldo, W, &a, bias, 4, rows, K, GPT_GEMV_ADD);
          }
          snprintf(zWhat, sizeof(zWhat), "%s gemm = gemv bit for bit, T=%d", gpt_dtype_name(dtype), T);
          check(memcmp(g, v, sizeof(float) * (size_t)T * ldo) == 0, zWhat, kern->name, K, 0);
        }
        gpt_q4_act_free(&X);
        gpt_q4_act_free(&a);
        free(x); free(g); free(v);
      }
      free(W);
    }
  }
}

/* The activation: q4_0's is gpt_q8_quantize_act's; the k-quants' has one
** scale per 256, qp its blocks reordered, and the sums match q. */
static void test_act(void) {
  const int K = 768;
  float x[768];
  GPTQ4Act a;
  GPTQ8Act v = {NULL, NULL, NULL, NULL};
  int8_t q8[768], aq8[768];
  float d8[24];
  for (int k = 0; k < K; k++) x[k] = frand() * (k < 256 ? 0.01f : 1.0f);
  gpt_q4_act_alloc(&a, K);
  gpt_q4_quantize_act(&a, GPT_Q4_0, x, K);
  v.q = q8; v.aq = aq8; v.d = d8;
  gpt_kernels_named("portable")->q8_quantize_act(&v, x, K);
  check(memcmp(a.q, q8, K) == 0 && memcmp(a.d, d8, sizeof(d8)) == 0, "q4_0 act = q8_0 act", "-", K, 0);
  gpt_q4_quantize_act(&a, GPT_Q6_K, x, K);
  int ok = 1;
  static const int kOrder[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int i = 0; i < K / 256; i++) {
    float amax = 0;
    for (int j = 0; j < 256; j++) amax = fmaxf(amax, fabsf(x[256 * i + j]));
    for (int b = 0; b < 8; b++) ok &= a.d[8 * i + b] == amax / 127.0f;
    for (int j = 0; j < 256; j++) {
      ok &= fabsf(a.q[256 * i + j] * a.d[8 * i] - x[256 * i + j]) <= a.d[8 * i] * 0.5001f;
      ok &= a.aq[256 * i + j] == abs(a.q[256 * i + j]);
      ok &= a.qp[256 * i + j] == a.q[256 * i + 32 * kOrder[j / 32] + j % 32];
    }
  }
  for (int b = 0; b < K / 32; b++) {
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += a.q[32 * b + j];
    ok &= a.sum[b] == a.d[b] * (float)sum;
  }
  for (int g = 0; g < K / 16; g++) {
    int sum = 0;
    for (int j = 0; j < 16; j++) sum += a.q[16 * g + j];
    ok &= a.qsum[g] == sum;
  }
  check(ok, "k-quant act: scale per 256, q within half a step, qp, sums of 32 and 16", "-", K, 0);
  /* a count no allocation can hold is refused, not wrapped, and leaves
  ** nothing held */
  GPTQ4Act big;
  check(gpt_q4_act_alloc(&big, SIZE_MAX) == -1 && !big.q && !big.aq && !big.qp && !big.d &&
            !big.sum && !big.qsum,
        "act alloc of SIZE_MAX values refused", "-", 0, 0);
  /* the bytes are lrintf(x / d) clamped to +-127, whichever path the CPU
  ** takes, ties, NaN and infinities included (a block of NaNs and infinities
  ** has an infinite or NaN scale; lrintf of those is LONG_MIN: -127) */
  for (int k = 0; k < K; k++) x[k] = (float)((int)(rand32() % 255) - 127) * 0.5f;
  x[3] = NAN; x[300] = INFINITY; x[301] = -INFINITY; x[600] = 1e-40f;
  for (int k = 512; k < K; k++) x[k] = k == 600 ? 1e-40f : (k % 5 == 0 ? -1e-42f : 0.0f);
  gpt_q4_quantize_act(&a, GPT_Q4_K, x, K);
  ok = 1;
  for (int i = 0; i < K / 256; i++) {
    float amax = 0;
    for (int j = 0; j < 256; j++) {
      float f = fabsf(x[256 * i + j]);
      amax = f > amax ? f : amax;
    }
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int j = 0; j < 256; j++) {
      long q = lrintf(x[256 * i + j] * id);
      q = q > 127 ? 127 : q < -127 ? -127 : q;
      ok &= a.q[256 * i + j] == q && a.aq[256 * i + j] == (q < 0 ? -q : q);
    }
  }
  check(ok, "k-quant act bytes = lrintf, clamped", "-", K, 0);
  gpt_q4_act_free(&a);
}

/* --------------------------------------------------------- quantizers */

/* Normal-ish values (sum of uniforms) with a few outliers, as weights are. */
static float weight_like(void) {
  float v = (frand() + frand() + frand() + frand()) * 0.05f;
  return rand32() % 97 == 0 ? v * 8.0f : v;
}

static void test_quantize(void) {
  /* the relative RMS error each format must stay under on weight-like
  ** rows (measured: q4_0 0.125, q4_k 0.082, q6_k 0.024) */
  static const double aBound[3] = {0.15, 0.10, 0.03};
  const int K = 1024, rows = 16;
  float *x = malloc(sizeof(float) * K * rows), *back = malloc(sizeof(float) * K * rows);
  uint8_t *q = malloc((size_t)K * rows);
  for (int i = 0; i < K * rows; i++) x[i] = weight_like();
  for (int i = 0; i < 40; i++) x[K + i] = 0.0f;     /* a zero sub-block and more */
  for (int i = 0; i < 64; i++) x[2 * K + i] = 0.3f; /* constant runs */
  for (int i = 64; i < 96; i++) x[2 * K + i] = -0.2f;
  for (int i = 0; i < 256; i++) x[3 * K + i] = fabsf(x[3 * K + i]); /* all >= 0 */
  for (int id = 0; id < 3; id++) {
    int dtype = aDtype[id], nBytes = 0, nVal = gpt_dtype_block(dtype, &nBytes);
    int64_t nb = (int64_t)K * rows / nVal;
    check(gpt_q4_quantize_row(dtype, q, x, (int64_t)K * rows) == 0, "quantize",
          gpt_dtype_name(dtype), K, 0);
    check(gpt_q4_bad_block(dtype, q, nb) < 0, "quantized scales finite", gpt_dtype_name(dtype), K, 0);
    gpt_q4_to_f32(gpt_q4_kernels_named("portable"), dtype, back, q, (size_t)nb);
    double se = 0, sx = 0, zeroErr = 0;
    for (int i = 0; i < K * rows; i++) {
      se += (double)(back[i] - x[i]) * (back[i] - x[i]);
      sx += (double)x[i] * x[i];
    }
    for (int i = 0; i < 32; i++) zeroErr = fmax(zeroErr, fabs(back[K + i]));
    double runErr = 0;
    for (int i = 0; i < 96; i++) runErr = fmax(runErr, fabs(back[2 * K + i] - x[2 * K + i]));
    check(runErr <= 0.01, "constant runs kept", gpt_dtype_name(dtype), K, runErr);
    double rel = sqrt(se / sx);
    printf("  %s: relative RMS error %.4f\n", gpt_dtype_name(dtype), rel);
    check(rel <= aBound[id], "quantize error", gpt_dtype_name(dtype), K, rel);
    check(zeroErr == 0.0, "zeros stay zero", gpt_dtype_name(dtype), K, zeroErr);
    x[5] = NAN;
    check(gpt_q4_quantize_row(dtype, q, x, nVal) < 0, "NaN refused", gpt_dtype_name(dtype), K, 0);
    x[5] = INFINITY;
    check(gpt_q4_quantize_row(dtype, q, x, nVal) < 0, "Inf refused", gpt_dtype_name(dtype), K, 0);
    x[5] = 1e9f; /* a scale beyond f16's range */
    check(gpt_q4_quantize_row(dtype, q, x, nVal) < 0, "huge refused", gpt_dtype_name(dtype), K, 0);
    x[5] = 0.01f;
    check(gpt_q4_quantize_row(dtype, q, x, nVal + 1) < 0, "partial block refused",
          gpt_dtype_name(dtype), K, 0);
  }
  /* values so small that the scales fall under f16's least step come back
  ** no worse than zeros (q4_k had put each at its sub-block's minimum:
  ** relative error 2.2) */
  for (int i = 0; i < 256; i++) x[i] = 3e-6f * (float)((i * 37) % 19 - 9) / 9.0f;
  for (int id = 0; id < 3; id++) {
    int dtype = aDtype[id], nBytes = 0, nVal = gpt_dtype_block(dtype, &nBytes);
    check(gpt_q4_quantize_row(dtype, q, x, 256) == 0, "tiny quantized", gpt_dtype_name(dtype),
          256, 0);
    gpt_q4_to_f32(gpt_q4_kernels_named("portable"), dtype, back, q, (size_t)(256 / nVal));
    double se = 0, sx = 0;
    for (int i = 0; i < 256; i++) {
      se += (double)(back[i] - x[i]) * (back[i] - x[i]);
      sx += (double)x[i] * x[i];
    }
    check(sqrt(se / sx) <= 1.0, "tiny values no worse than zeros", gpt_dtype_name(dtype), 256,
          sqrt(se / sx));
  }
  /* a block of constant sub-blocks (scale 0, the value in the minimum)
  ** keeps its values: -0.5 and -1 to -8 (the fix above had zeroed them) */
  for (int i = 0; i < 512; i++) x[i] = i < 256 ? -0.5f : -(float)((i - 256) / 32 + 1);
  check(gpt_q4_quantize_row(GPT_Q4_K, q, x, 512) == 0, "constant quantized", "q4_k", 512, 0);
  gpt_q4_to_f32(gpt_q4_kernels_named("portable"), GPT_Q4_K, back, q, 2);
  {
    double worst = 0, worstAbs = 0;
    for (int i = 0; i < 256; i++) worst = fmax(worst, fabs(back[i] - x[i]) / fabs(x[i]));
    for (int i = 256; i < 512; i++) worstAbs = fmax(worstAbs, fabs(back[i] - x[i]));
    check(worst < 1e-3, "constant block kept", "q4_k", 256, worst);
    /* each sub-block on the minimums' grid of 8 / 63: within half a step */
    check(worstAbs <= 0.5 * 8.0 / 63.0 * 1.01, "constant sub-blocks kept", "q4_k", 256, worstAbs);
  }
  /* a non-finite scale is found */
  memset(q, 0, 300);
  q[208] = 0x00; q[209] = 0x7c;
  check(gpt_q4_bad_block(GPT_Q6_K, q, 1) == 0, "q6_k Inf scale found", "-", 0, 0);
  q[2 + 144] = 0x01; q[3 + 144] = 0x7e;
  check(gpt_q4_bad_block(GPT_Q4_K, q, 2) == 1, "q4_k NaN dmin found", "-", 0, 0);
  free(x); free(back); free(q);
}

int main(int argc, char **argv) {
  const char *zGolden = argc > 1 ? argv[1] : "tests/golden/q4_blocks.txt";
  for (int s = 0; s < 4; s++)
    printf("  set %-10s %s\n", azSet[s], gpt_q4_kernels_named(azSet[s]) ? "runs" : "not on this CPU");
  read_golden(zGolden);
  test_act();
  test_sets();
  test_gemm();
  test_quantize();
  printf("%d passed, %d failed\n", nPass, nFail);
  return nFail != 0;
}
