/*
** Fuzz target: the 4- and 6-bit block formats (engine/kernels_q4.c), whose
** bytes come from gpt_tensors rows and GGUF files as they are.
**
** Input: a header byte, then data. The header's low two bits choose the
** format (q4_0, q4_k, q6_k; 3 runs the quantizers instead), bits 2-3 the
** row width K (1 to 4 blocks of 32 or 256 values). The data are whole rows
** of blocks (at most 8), followed by K bytes that become the activation.
**
** Oracles, for the decoders: gpt_q4_bad_block finds a block with an Inf or
** NaN f16 scale exactly where one is; otherwise every widened value is
** finite, every kernel set this CPU runs widens the rows to the portable
** set's values and computes the gemv within 5e-4 of the portable one,
** relative to the magnitude of the terms the kernels sum (term_bounds; the
** rows split in two, one half with GPT_GEMV_ADD). For the quantizers (data
** as floats): a row with a non-finite value is refused; an accepted one
** decodes to finite values and has finite scales.
**
** Seeds: tests/fuzz/q4_blocks/.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"
#include "kernels.h"
#include "kernels_q4.h"

static const char *azSet[4] = {"portable", "avx2", "avx512", "avx512vnni"};

/* The scale bits of a block, the way the format defines them. */
static int f16_at_bad(const uint8_t *p) { return ((p[0] | p[1] << 8) & 0x7c00) == 0x7c00; }
static int block_bad(int dtype, const uint8_t *p) {
  if (dtype == GPT_Q4_0) return f16_at_bad(p);
  if (dtype == GPT_Q4_K) return f16_at_bad(p) || f16_at_bad(p + 2);
  return f16_at_bad(p + 208);
}

/* For each value of a block, a bound on the magnitude of the terms a
** kernel sums for it: q4_0 sums d n q and -8 d q apart, q4_k d sc n q and
** -dmin m q, so a block whose values nearly cancel still carries rounding
** of the order of those terms; q6_k's (q - 32) is exact. */
static void term_bounds(int dtype, const uint8_t *blk, const float *w, float *bound) {
  if (dtype == GPT_Q4_0) {
    float d = fabsf(gpt_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)));
    for (int j = 0; j < 32; j++) bound[j] = 23.0f * d;
  } else if (dtype == GPT_Q4_K) {
    float d = fabsf(gpt_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)));
    float dmin = fabsf(gpt_f16_to_f32((uint16_t)(blk[2] | blk[3] << 8)));
    for (int sb = 0; sb < 8; sb++) {
      const uint8_t *q = blk + 4;
      int sc = sb < 4 ? q[sb] & 63 : (q[sb + 4] & 15) | (q[sb - 4] >> 6) << 4;
      int m = sb < 4 ? q[sb + 4] & 63 : (q[sb + 4] >> 4) | (q[sb] >> 6) << 4;
      for (int j = 0; j < 32; j++) bound[32 * sb + j] = 15.0f * d * sc + dmin * m;
    }
  } else {
    for (int j = 0; j < 256; j++) bound[j] = fabsf(w[j]);
  }
}

static void fuzz_quantizers(const uint8_t *data, size_t size, int K) {
  int n = (int)(size / 4) / 256 * 256;
  if (n > 4 * 256) n = 4 * 256;
  if (n == 0) return;
  float *x = malloc(sizeof(float) * n), *back = malloc(sizeof(float) * n);
  uint8_t *q = malloc((size_t)n);
  int bad = 0;
  memcpy(x, data, sizeof(float) * n);
  for (int i = 0; i < n; i++) bad |= !isfinite(x[i]);
  static const int aDtype[3] = {GPT_Q4_0, GPT_Q4_K, GPT_Q6_K};
  for (int d = 0; d < 3; d++) {
    int nBytes = 0, nVal = gpt_dtype_block(aDtype[d], &nBytes);
    int rc = gpt_q4_quantize_row(aDtype[d], q, x, n);
    if (bad && rc == 0) abort();
    if (rc != 0) continue;
    if (gpt_q4_bad_block(aDtype[d], q, n / nVal) >= 0) abort();
    gpt_q4_to_f32(gpt_q4_kernels_named("portable"), aDtype[d], back, q, (size_t)(n / nVal));
    for (int i = 0; i < n; i++)
      if (!isfinite(back[i])) abort();
  }
  (void)K;
  free(x); free(back); free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int which = data[0] & 3, width = 1 + ((data[0] >> 2) & 3);
  data++; size--;
  if (which == 3) { fuzz_quantizers(data, size, 0); return 0; }
  static const int aDtype[3] = {GPT_Q4_0, GPT_Q4_K, GPT_Q6_K};
  int dtype = aDtype[which], nBytes = 0, nVal = gpt_dtype_block(dtype, &nBytes);
  int K = nVal * width;
  size_t rowBytes = (size_t)width * nBytes;
  if (size < rowBytes + (size_t)K) return 0;
  int rows = (int)((size - K) / rowBytes);
  if (rows > 8) rows = 8;
  const uint8_t *W = data, *xb = data + (size_t)rows * rowBytes;
  int64_t nBlock = (int64_t)rows * width, firstBad = -1;
  for (int64_t b = 0; b < nBlock && firstBad < 0; b++)
    if (block_bad(dtype, W + b * nBytes)) firstBad = b;
  if (gpt_q4_bad_block(dtype, W, nBlock) != firstBad) abort();
  if (firstBad >= 0) return 0; /* the loader refuses such rows */

  float *ref = malloc(sizeof(float) * (size_t)rows * K), *wide = malloc(sizeof(float) * (size_t)rows * K);
  float *x = malloc(sizeof(float) * K);
  float y0[8], y[8], bias[8];
  GPTQ4Act a;
  if (gpt_q4_act_alloc(&a, K)) abort();
  for (int k = 0; k < K; k++) x[k] = (float)(int8_t)xb[k] * 0.01f;
  for (int r = 0; r < rows; r++) bias[r] = (float)r;
  gpt_q4_quantize_act(&a, dtype, x, K);
  const GPTQ4Kernels *pp = gpt_q4_kernels_named("portable");
  gpt_q4_to_f32(pp, dtype, ref, W, (size_t)nBlock);
  for (int i = 0; i < rows * K; i++)
    if (!isfinite(ref[i])) abort();
  gpt_q4_gemv(pp, dtype, y0, W, &a, bias, 0, rows, K, GPT_GEMV_SET);
  float *bound = malloc(sizeof(float) * (size_t)rows * K);
  for (int64_t b = 0; b < nBlock; b++)
    term_bounds(dtype, W + b * nBytes, ref + b * nVal, bound + b * nVal);
  for (int s = 1; s < 4; s++) {
    const GPTQ4Kernels *kern = gpt_q4_kernels_named(azSet[s]);
    if (!kern) continue;
    gpt_q4_to_f32(kern, dtype, wide, W, (size_t)nBlock);
    for (int i = 0; i < rows * K; i++)
      if (fabsf(wide[i] - ref[i]) > 1e-6f * fabsf(ref[i]) + 1e-30f) abort();
    for (int r = 0; r < rows; r++) y[r] = 1.0f;
    gpt_q4_gemv(kern, dtype, y, W, &a, bias, rows / 2, rows, K, GPT_GEMV_ADD);
    gpt_q4_gemv(kern, dtype, y, W, &a, bias, 0, rows / 2, K, GPT_GEMV_SET);
    for (int r = 0; r < rows; r++) {
      double mag = fabs(bias[r]) + 1.0;
      for (int k = 0; k < K; k++) mag += fabs((double)bound[(size_t)r * K + k] * a.d[k / 32] * a.q[k]);
      double got = r >= rows / 2 ? (double)y[r] - 1.0 : y[r];
      if (!(fabs(got - y0[r]) <= 5e-4 * mag)) {
        fprintf(stderr, "%s %s row %d: %g vs portable %g\n", kern->name, gpt_dtype_name(dtype), r,
                got, (double)y0[r]);
        abort();
      }
    }
  }
  free(ref); free(wide); free(x); free(bound);
  gpt_q4_act_free(&a);
  return 0;
}
