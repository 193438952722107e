/*
** C unit test of engine/kernels.c and engine/threads.c: every kernel set this
** CPU can run (portable always; AVX2 and AVX-512 where present) against the
** portable set and against double-precision sums, on sizes with and without
** vector tails; row ranges of every split give bit-identical rows; q8_0
** quantization round trips within half a step; the thread pool runs every
** member exactly once, and drops a member that runs late for a while.
**
**   build/kernels_test        ends with "N passed, N failed"
*/
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "gpt.h"
#include "kernels.h"
#include "threads.h"

static int nPass = 0, nFail = 0;

static void check(int ok, const char *zName, const char *zSet, int K, double err) {
  if (ok) {
    nPass++;
  } else {
    nFail++;
    printf("FAILED %s [%s] K=%d err=%g\n", zName, zSet, K, err);
  }
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (float)((rng >> 40) / 16777216.0) * 2.0f - 1.0f;
}

/* Exact reference of row r of a matrix given as widened f32 values. */
static double ref_dot(const float *w, const float *x, int K) {
  double s = 0;
  for (int k = 0; k < K; k++) s += (double)w[k] * x[k];
  return s;
}

static void test_set(const GPTKernels *kern) {
  static const int aK[] = {32, 48, 64, 96, 200, 320, 352, 768, 800, 896, 992, 3072};
  const int rows = 11;
  for (size_t ik = 0; ik < sizeof(aK) / sizeof(aK[0]); ik++) {
    int K = aK[ik], nb = K / 32, q8 = K % 32 == 0;
    float *Wf = malloc(sizeof(float) * rows * K), *Wh = malloc(sizeof(float) * rows * K);
    float *Wq = malloc(sizeof(float) * rows * K), *x = malloc(sizeof(float) * K);
    float *xd = malloc(sizeof(float) * K);
    uint16_t *H = malloc(2 * (size_t)rows * K);
    uint8_t *Q = malloc((size_t)rows * (nb + 1) * 34);
    float y[3][11], y2[11], bias[11];
    GPTQ8Act xq = {NULL, NULL, NULL, NULL};
    xq.q = malloc(K); xq.aq = malloc(K); xq.d = malloc(sizeof(float) * (nb + 1));
    for (int i = 0; i < rows * K; i++) {
      Wf[i] = frand();
      H[i] = gpt_f32_to_f16(Wf[i]);
      Wh[i] = gpt_f16_to_f32(H[i]);
    }
    for (int k = 0; k < K; k++) x[k] = frand();
    for (int r = 0; r < rows; r++) bias[r] = frand();
    if (q8) {
      gpt_q8_quantize_row(Q, Wf, (int64_t)rows * K);
      kern->q8_to_f32(Wq, Q, (size_t)rows * nb);
      kern->q8_quantize_act(&xq, x, K);
      for (int b = 0; b < nb; b++)
        for (int j = 0; j < 32; j++) xd[b * 32 + j] = xq.d[b] * xq.q[b * 32 + j];
    }
    kern->gemv_f32(y[0], Wf, x, bias, 0, rows, K, GPT_GEMV_SET);
    kern->gemv_f16(y[1], H, x, bias, 0, rows, K, GPT_GEMV_SET);
    if (q8) kern->gemv_q8(y[2], Q, &xq, bias, 0, rows, K, GPT_GEMV_SET);
    double e[3] = {0, 0, 0};
    for (int r = 0; r < rows; r++) {
      e[0] = fmax(e[0], fabs(y[0][r] - (bias[r] + ref_dot(Wf + r * K, x, K))));
      e[1] = fmax(e[1], fabs(y[1][r] - (bias[r] + ref_dot(Wh + r * K, x, K))));
      if (q8) e[2] = fmax(e[2], fabs(y[2][r] - (bias[r] + ref_dot(Wq + r * K, xd, K))));
    }
    double tol = 1e-5 * sqrt((double)K) * 4;
    check(e[0] < tol, "gemv_f32", kern->name, K, e[0]);
    check(e[1] < tol, "gemv_f16", kern->name, K, e[1]);
    if (q8) check(e[2] < tol * 4, "gemv_q8", kern->name, K, e[2]);
    /* every split gives the same bits, and ADD adds exactly the SET value */
    for (int d = 0; d < 3; d++) {
      if (d == 2 && !q8) continue;
      int same = 1;
      for (int cut = 0; cut <= rows; cut++) {
        for (int r = 0; r < rows; r++) y2[r] = 1.0f;
        for (int part = 0; part < 2; part++) {
          int r0 = part ? cut : 0, r1 = part ? rows : cut;
          if (d == 0) kern->gemv_f32(y2, Wf, x, bias, r0, r1, K, GPT_GEMV_ADD);
          if (d == 1) kern->gemv_f16(y2, H, x, bias, r0, r1, K, GPT_GEMV_ADD);
          if (d == 2) kern->gemv_q8(y2, Q, &xq, bias, r0, r1, K, GPT_GEMV_ADD);
        }
        for (int r = 0; r < rows; r++) same &= y2[r] == 1.0f + y[d][r];
      }
      check(same, d == 0 ? "split f32" : d == 1 ? "split f16" : "split q8", kern->name, K, 0);
    }
    /* gemm on 7 tokens (rows of Wf as the tokens): within the bound of
    ** doubles, and each value bit for bit what gemv gives the token alone,
    ** whatever the batch, the token's place in it, the split of the rows or
    ** the mode: f32 rows, f16 rows widened, q8_0 rows against quantized
    ** tokens */
    {
      const int T = 7;
      float g[7][11], gv[11], g1[11];
      double eg = 0;
      int same = 1, sameH = 1, sameQ = 1;
      kern->gemm_f32(&g[0][0], 11, Wf, Wf, (size_t)K, T, bias, 0, rows, K, GPT_GEMV_SET);
      for (int t = 0; t < T; t++)
        for (int r = 0; r < rows; r++)
          eg = fmax(eg, fabs(g[t][r] - (bias[r] + ref_dot(Wf + r * K, Wf + t * K, K))));
      for (int t = 0; t < T; t++) {
        kern->gemv_f32(gv, Wf, Wf + (size_t)t * K, bias, 0, rows, K, GPT_GEMV_SET);
        same &= memcmp(gv, g[t], sizeof(gv)) == 0;
        for (int cut = 0; cut <= rows; cut += 3) {
          for (int r = 0; r < rows; r++) g1[r] = 1.0f;
          kern->gemm_f32(g1, 11, Wf, Wf + (size_t)t * K, (size_t)K, 1, bias, 0, cut, K,
                         GPT_GEMV_ADD);
          kern->gemm_f32(g1, 11, Wf, Wf + (size_t)t * K, (size_t)K, 1, bias, cut, rows, K,
                         GPT_GEMV_ADD);
          for (int r = 0; r < rows; r++) same &= g1[r] == 1.0f + g[t][r];
        }
      }
      check(eg < tol, "gemm_f32", kern->name, K, eg);
      check(same, "gemm_f32 = gemv_f32, batch-independent", kern->name, K, 0);
      kern->gemm_f32(&g[0][0], 11, Wh, Wf, (size_t)K, T, bias, 0, rows, K, GPT_GEMV_SET);
      for (int t = 0; t < T; t++) {
        kern->gemv_f16(gv, H, Wf + (size_t)t * K, bias, 0, rows, K, GPT_GEMV_SET);
        sameH &= memcmp(gv, g[t], sizeof(gv)) == 0;
      }
      check(sameH, "gemm_f32 on widened f16 = gemv_f16", kern->name, K, 0);
      if (q8) {
        GPTQ8Act xs = {NULL, NULL, NULL, NULL};
        xs.q = malloc((size_t)T * K); xs.aq = malloc((size_t)T * K);
        xs.d = malloc(sizeof(float) * (size_t)T * nb);
        for (int t = 0; t < T; t++) {
          GPTQ8Act xt = gpt_q8_act_token(&xs, t, K);
          kern->q8_quantize_act(&xt, Wf + (size_t)t * K, K);
        }
        kern->gemm_q8(&g[0][0], 11, Q, &xs, T, bias, 0, rows, K, GPT_GEMV_SET);
        for (int t = 0; t < T; t++) {
          GPTQ8Act xt = gpt_q8_act_token(&xs, t, K);
          kern->gemv_q8(gv, Q, &xt, bias, 0, rows, K, GPT_GEMV_SET);
          sameQ &= memcmp(gv, g[t], sizeof(gv)) == 0;
          for (int r = 0; r < rows; r++) g1[r] = 1.0f;
          kern->gemm_q8(g1, 11, Q, &xt, 1, bias, 0, 5, K, GPT_GEMV_ADD);
          kern->gemm_q8(g1, 11, Q, &xt, 1, bias, 5, rows, K, GPT_GEMV_ADD);
          for (int r = 0; r < rows; r++) sameQ &= g1[r] == 1.0f + g[t][r];
        }
        check(sameQ, "gemm_q8 = gemv_q8, batch-independent", kern->name, K, 0);
        free(xs.q); free(xs.aq); free(xs.d);
      }
    }
    /* conversions are exact */
    {
      float *a = malloc(sizeof(float) * rows * K);
      kern->f16_to_f32(a, H, (size_t)rows * K);
      check(memcmp(a, Wh, sizeof(float) * rows * K) == 0, "f16_to_f32", kern->name, K, 0);
      if (q8) {
        const GPTKernels *p = gpt_kernels_named("portable");
        float *b = malloc(sizeof(float) * rows * K);
        p->q8_to_f32(b, Q, (size_t)rows * nb);
        check(memcmp(b, Wq, sizeof(float) * rows * K) == 0,
              "q8_to_f32", kern->name, K, 0);
        /* q8_0 values are within half a step of the originals, plus what the
        ** f16 rounding of the scale moves 127 steps: ggml's rule, which divides
        ** by the scale before that rounding (2^-11 of it at most) */
        double worst = 0;
        for (int b2 = 0; b2 < rows * nb; b2++) {
          float d = gpt_f16_to_f32((uint16_t)(Q[b2 * 34] | (Q[b2 * 34 + 1] << 8)));
          for (int j = 0; j < 32; j++)
            worst = fmax(worst, fabs(Wq[b2 * 32 + j] - Wf[b2 * 32 + j]) / (d > 0 ? d : 1));
        }
        check(worst <= 0.5 + 127.0 / 2048 + 1e-3, "q8 round trip", kern->name, K, worst);
        /* activations quantize to the portable bytes, a zero block included */
        GPTQ8Act pq = {NULL, NULL, NULL, NULL};
        float *xz = malloc(sizeof(float) * K);
        memcpy(xz, x, sizeof(float) * K);
        for (int j = 0; j < 32; j++) xz[j] = 0.0f;
        pq.q = malloc(K); pq.aq = malloc(K); pq.d = malloc(sizeof(float) * nb);
        int sameq = 1;
        for (int pass = 0; pass < 2; pass++) {
          const float *in = pass ? xz : x;
          kern->q8_quantize_act(&xq, in, K);
          p->q8_quantize_act(&pq, in, K);
          sameq &= memcmp(xq.q, pq.q, K) == 0 && memcmp(xq.aq, pq.aq, K) == 0 &&
                   memcmp(xq.d, pq.d, sizeof(float) * nb) == 0;
        }
        kern->q8_quantize_act(&xq, x, K);
        check(sameq, "q8_quantize_act", kern->name, K, 0);
        free(pq.q); free(pq.aq); free(pq.d); free(xz);
        free(b);
      }
      free(a);
    }
    /* gelu, exp_sum, the attention kernels against doubles */
    {
      float g[3072 + 7], ex[3072 + 7], in[3072 + 7];
      double eg = 0, ee = 0, sum = 0;
      int n = K + 3;
      for (int i = 0; i < n; i++) in[i] = g[i] = ex[i] = frand() * 8.0f;
      kern->gelu(g, (size_t)n);
      float s = kern->exp_sum(ex, n, 8.0f, 1.0f);
      for (int i = 0; i < n; i++) {
        double v = in[i];
        double want = 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        double we = exp(v - 8.0);
        eg = fmax(eg, fabs(g[i] - want) / fmax(1.0, fabs(want)));
        ee = fmax(ee, fabs(ex[i] - we) / we);
        sum += we;
      }
      check(eg < 1e-5, "gelu", kern->name, K, eg);
      {
        /* silu(g) u over gates of both signs, past exp's range too */
        float sg[3072 + 7], su[3072 + 7], so[3072 + 7];
        double es = 0;
        for (int i = 0; i < n; i++) {
          sg[i] = (frand() - 0.5f) * 40.0f;
          su[i] = frand() * 4.0f - 2.0f;
        }
        sg[0] = -100.0f; sg[1] = 100.0f; sg[2] = 0.0f;
        kern->silu_mul(so, sg, su, (size_t)n);
        for (int i = 0; i < n; i++) {
          double want = (double)sg[i] / (1.0 + exp(-(double)sg[i])) * su[i];
          es = fmax(es, fabs(so[i] - want) / fmax(1e-3, fabs(want)));
        }
        check(es < 1e-5, "silu_mul", kern->name, K, es);
      }
      check(ee < 1e-5, "exp_sum values", kern->name, K, ee);
      check(fabs(s - sum) / sum < 1e-5, "exp_sum sum", kern->name, K, fabs(s - sum) / sum);
      {
        /* a temperature's scale */
        float ex2[3072 + 7];
        double e2 = 0;
        memcpy(ex2, in, sizeof(float) * n);
        kern->exp_sum(ex2, n, 8.0f, 0.5f);
        for (int i = 0; i < n; i++) {
          double we = exp((in[i] - 8.0) * 0.5);
          e2 = fmax(e2, fabs(ex2[i] - we) / we);
        }
        check(e2 < 1e-5, "exp_sum scaled", kern->name, K, e2);
      }
      /* max passes over NaN; sum_exp leaves x alone and sums in double */
      in[n / 2] = NAN;
      float want_max = -INFINITY;
      double want_se = 0;
      for (int i = 0; i < n; i++) {
        if (i == n / 2) continue;
        if (in[i] > want_max) want_max = in[i];
      }
      for (int i = 0; i < n; i++)
        if (i != n / 2) want_se += exp((double)in[i] - want_max);
      check(kern->max(in, n) == want_max, "max", kern->name, K, 0);
      in[n / 2] = -INFINITY;
      double se = kern->sum_exp(in, n, want_max);
      check(fabs(se - want_se) / want_se < 1e-6 && isinf(in[n / 2]), "sum_exp", kern->name, K,
            fabs(se - want_se) / want_se);
    }
    /* decode attention: rows of Wf (rows, K) as 11 cached keys and values,
    ** the first hd columns of each (hd = 96 at K = 768: one 64-column pass
    ** and a tail) */
    {
      int hd = K / 8 + (K % 3), n = rows;
      float sc[11], o[3072];
      kern->att_scores(sc, x, Wf, (size_t)K, n, hd, 0.125f);
      double es = 0, ev = 0;
      for (int j = 0; j < n; j++)
        es = fmax(es, fabs(sc[j] - 0.125 * ref_dot(Wf + (size_t)j * K, x, hd)));
      check(es < tol, "att_scores", kern->name, hd, es);
      kern->att_values(o, bias, Wf, (size_t)K, n, hd);
      for (int d = 0; d < hd; d++) {
        double want = 0;
        for (int j = 0; j < n; j++) want += (double)bias[j] * Wf[(size_t)j * K + d];
        ev = fmax(ev, fabs(o[d] - want));
      }
      check(ev < 1e-5, "att_values", kern->name, hd, ev);
    }
    free(Wf); free(Wh); free(Wq); free(x); free(xd); free(H); free(Q);
    free(xq.q); free(xq.aq); free(xq.d);
  }
}

/* Transposes against the obvious loop, with and without 8 x 8 edges. */
static void test_transpose(const GPTKernels *kern) {
  static const int aR[] = {1, 7, 8, 17, 64}, aC[] = {1, 8, 13, 40, 192};
  int ok = 1;
  for (int i = 0; i < 5; i++) {
    for (int j = 0; j < 5; j++) {
      int R = aR[i], C = aC[j];
      size_t lds = (size_t)C + 3, ldd = (size_t)R + 5;
      float *s = malloc(sizeof(float) * R * lds), *d = malloc(sizeof(float) * C * ldd);
      uint16_t *hs = malloc(2 * R * lds), *hd = malloc(2 * C * ldd);
      for (size_t k = 0; k < R * lds; k++) { s[k] = frand(); hs[k] = (uint16_t)(k * 2654435761u >> 7); }
      memset(d, 0, sizeof(float) * C * ldd);
      memset(hd, 0, 2 * C * ldd);
      kern->transpose_f32(d, ldd, s, lds, R, C);
      kern->transpose_u16(hd, ldd, hs, lds, R, C);
      for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
          ok &= d[c * ldd + r] == s[r * lds + c] && hd[c * ldd + r] == hs[r * lds + c];
      free(s); free(d); free(hs); free(hd);
    }
  }
  check(ok, "transpose", kern->name, 0, 0);
}

/* att_scores_n and att_values_n against att_scores and att_values a query
** at a time, bit for bit: nq queries of a prefill (query t sees n + t keys)
** and of one position (all see n), rows of every operand apart by more than
** their length. */
static void test_attention_n(const GPTKernels *kern, int n, int hd) {
  static const int aNq[] = {1, 2, 3, 4, 7};
  for (int a = 0; a < (int)(sizeof(aNq) / sizeof(aNq[0])); a++) {
    for (int causal = 0; causal <= 1; causal++) {
      int nq = aNq[a], keys = n + nq;
      size_t ld = (size_t)hd + 5, ldq = (size_t)hd + 3, lds = (size_t)keys + 2;
      float *kv = malloc(sizeof(float) * ld * (size_t)keys);
      float *q = malloc(sizeof(float) * ldq * (size_t)nq);
      float *sc = malloc(sizeof(float) * lds * (size_t)nq), *one = malloc(sizeof(float) * lds);
      float *o = malloc(sizeof(float) * ldq * (size_t)nq), *o1 = malloc(sizeof(float) * ldq);
      float *pw = malloc(sizeof(float) * lds * (size_t)nq);
      for (size_t i = 0; i < ld * (size_t)keys; i++) kv[i] = frand();
      for (size_t i = 0; i < ldq * (size_t)nq; i++) q[i] = frand();
      for (size_t i = 0; i < lds * (size_t)nq; i++) pw[i] = frand();
      kern->att_scores_n(sc, lds, q, ldq, nq, kv, ld, n, causal, hd, 0.125f);
      kern->att_values_n(o, ldq, pw, lds, nq, kv, ld, n, causal, hd);
      int same_s = 1, same_v = 1;
      for (int t = 0; t < nq; t++) {
        int nt = n + (causal ? t : 0);
        kern->att_scores(one, q + (size_t)t * ldq, kv, ld, nt, hd, 0.125f);
        same_s &= memcmp(one, sc + (size_t)t * lds, sizeof(float) * (size_t)nt) == 0;
        kern->att_values(o1, pw + (size_t)t * lds, kv, ld, nt, hd);
        same_v &= memcmp(o1, o + (size_t)t * ldq, sizeof(float) * (size_t)hd) == 0;
      }
      check(same_s, "att_scores_n = att_scores", kern->name, nq * 100000 + n * 1000 + hd, 0);
      check(same_v, "att_values_n = att_values", kern->name, nq * 100000 + n * 1000 + hd, 0);
      free(kv); free(q); free(sc); free(one); free(o); free(o1); free(pw);
    }
  }
}

/* Attention over keys and values of several lengths and head sizes (the
** AVX-512 kernels go eight keys and sixteen columns at a time, with masked
** tails), rows ld = hd + 5 apart, against sums in double: each score and
** each value within 1e-5 of the sum of the magnitudes it adds. */
static void test_attention(const GPTKernels *kern) {
  static const int aN[] = {1, 15, 16, 17, 40, 203}, aHd[] = {1, 8, 17, 24, 64, 96, 128};
  for (int a = 0; a < (int)(sizeof(aN) / sizeof(aN[0])); a++) {
    for (int b = 0; b < (int)(sizeof(aHd) / sizeof(aHd[0])); b++) {
      int n = aN[a], hd = aHd[b];
      size_t ld = (size_t)hd + 5;
      float *kv = malloc(sizeof(float) * ld * (size_t)n), *q = malloc(sizeof(float) * (size_t)hd);
      float *p = malloc(sizeof(float) * (size_t)n), *sc = malloc(sizeof(float) * (size_t)n);
      float *o = malloc(sizeof(float) * (size_t)hd);
      for (size_t i = 0; i < ld * (size_t)n; i++) kv[i] = frand();
      for (int i = 0; i < hd; i++) q[i] = frand();
      for (int j = 0; j < n; j++) p[j] = (frand() + 1.0f) / (float)n;
      kern->att_scores(sc, q, kv, ld, n, hd, 0.125f);
      double es = 0, ev = 0;
      for (int j = 0; j < n; j++) {
        double want = 0, mag = 0;
        for (int i = 0; i < hd; i++) {
          want += (double)q[i] * kv[(size_t)j * ld + i];
          mag += fabs((double)q[i] * kv[(size_t)j * ld + i]);
        }
        es = fmax(es, fabs(sc[j] - 0.125 * want) / (0.125 * mag + 1e-30));
      }
      check(es < 1e-5, "att_scores (n, hd)", kern->name, n * 1000 + hd, es);
      kern->att_values(o, p, kv, ld, n, hd);
      for (int d = 0; d < hd; d++) {
        double want = 0, mag = 0;
        for (int j = 0; j < n; j++) {
          want += (double)p[j] * kv[(size_t)j * ld + d];
          mag += fabs((double)p[j] * kv[(size_t)j * ld + d]);
        }
        ev = fmax(ev, fabs(o[d] - want) / (mag + 1e-30));
      }
      check(ev < 1e-5, "att_values (n, hd)", kern->name, n * 1000 + hd, ev);
      free(kv); free(q); free(p); free(sc); free(o);
      test_attention_n(kern, n, hd);
    }
  }
}

/* Every member of the team's size at each run runs exactly once (the size
** may drop between runs when a member runs late: threads.c). */
static int aHit[GPT_MAX_THREADS];
static int gLateMs; /* member 1 sleeps this long in late_task: off its core */
static void hit_task(void *arg, int ith, int nth) {
  (void)arg;
  if (ith < nth) __atomic_add_fetch(&aHit[ith], 1, __ATOMIC_RELAXED);
}
static void late_task(void *arg, int ith, int nth) {
  hit_task(arg, ith, nth);
  if (ith == 1 && gLateMs > 0) {
    struct timespec ts = {0, (long)gLateMs * 1000000L};
    nanosleep(&ts, 0);
  }
}
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs task n times on t; true when every member of the size at each run
** ran once in it. */
static int runs_hit_all(GPTTeam *t, GPTTask task, int n) {
  int want[GPT_MAX_THREADS] = {0}, ok = 1;
  memset(aHit, 0, sizeof(aHit));
  for (int r = 0; r < n; r++) {
    int nth = gpt_team_size(t);
    ok &= nth >= 1 && nth <= gpt_team_capacity(t);
    for (int i = 0; i < nth; i++) want[i]++;
    gpt_team_run(t, task, 0);
  }
  for (int i = 0; i < GPT_MAX_THREADS; i++) ok &= aHit[i] == want[i];
  return ok;
}

/* Spins 30 ms; *arg: the share of that time this thread was on a core (0
** where the thread's clock cannot be read). */
static void *spin_probe(void *arg) {
  struct timespec c0, c1;
  *(double *)arg = 0;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0)) return 0;
  double w0 = now_ms(), w;
  while ((w = now_ms()) - w0 < 30) {}
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1)) return 0;
  *(double *)arg = ((c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6) / (w - w0);
  return 0;
}

/* Whether two threads get a core each (90% of their time): with other
** processes on the cores a member that spun out of its turn sleeps, a run
** that wakes it is never late (threads.c), and so none is ever dropped.
** Asked up to three times 100 ms apart; not while a team's worker spins. */
static int two_cores_free(void) {
  for (int i = 0; i < 3; i++) {
    pthread_t a, b;
    double sa = 0, sb = 0;
    if (i > 0) {
      struct timespec ts = {0, 100000000L};
      nanosleep(&ts, 0);
    }
    if (pthread_create(&a, 0, spin_probe, &sa)) return 0;
    if (pthread_create(&b, 0, spin_probe, &sb)) {
      pthread_join(a, 0);
      return 0;
    }
    pthread_join(a, 0);
    pthread_join(b, 0);
    if (sa > 0.9 && sb > 0.9) return 1;
  }
  return 0;
}

/* A member that keeps running late (here: sleeps 10 ms in its share each
** run) leaves the team for a while, and comes back once that while is
** over; one late run alone is waited out; every run in between gives every
** share to the members it has. Whether a member is judged late depends on
** the cores being free: the timing checks run only where they are, before
** and (when one fails) after the runs. */
static void test_pool_late(void) {
  if (!two_cores_free()) {
    printf("late member: other processes hold the cores, skipped\n");
    return;
  }
  GPTTeam *t = gpt_team_acquire(2);
  if (gpt_team_capacity(t) < 2) { /* no worker could be started */
    gpt_team_release(t);
    check(1, "late member", "threads", 2, 0);
    return;
  }
  /* the first run wakes the worker: a run that woke one is never late */
  int hits = runs_hit_all(t, hit_task, 1);
  gLateMs = 10;
  hits &= runs_hit_all(t, late_task, 1);
  int waited = gpt_team_size(t) == 2; /* one late run is waited out */
  /* on a quiet machine about 5 runs; with other processes on the cores a
  ** run that had to wake the member (descheduled past its spin, it slept)
  ** is never late, so allow many more */
  for (int r = 0; r < 400 && gpt_team_size(t) == 2; r++) hits &= runs_hit_all(t, late_task, 1);
  double late = now_ms();
  int dropped = gpt_team_size(t) == 1;
  gLateMs = 0;
  /* a pass that starts within the while runs short too (the least while
  ** is 4 ms; only a check made sooner than that can tell) */
  gpt_team_release(t);
  t = gpt_team_acquire(2);
  int stays = gpt_team_size(t) == 1 || now_ms() - late >= 3.5;
  /* back within the longest while (512 ms) */
  int back = 0;
  for (double t0 = now_ms(); now_ms() - t0 < 3000 && !back;) {
    hits &= runs_hit_all(t, hit_task, 1);
    back = gpt_team_size(t) == 2;
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, 0);
  }
  hits &= runs_hit_all(t, hit_task, 100);
  gpt_team_release(t);
  check(hits, "every run of a team that drops a member gives every share", "threads", 2, 0);
  check(back, "a late member comes back", "threads", 2, 0);
  if (!(waited && dropped && stays)) {
    struct timespec ts = {0, 10000000L}; /* the worker's spin after the last run ends */
    nanosleep(&ts, 0);
    if (!two_cores_free()) {
      printf("late member: other processes took the cores during the runs, skipped\n");
      return;
    }
  }
  check(waited && dropped, "a late member is dropped", "threads", 2, 0);
  check(stays, "a late member stays dropped", "threads", 2, 0);
}

static void test_pool(void) {
  for (int n = 1; n <= 5; n++) {
    GPTTeam *t = gpt_team_acquire(n);
    int nth = gpt_team_capacity(t), ok = nth >= 1 && nth <= n;
    ok &= runs_hit_all(t, hit_task, 1000);
    /* a second team while this one is held runs alone */
    GPTTeam *t2 = gpt_team_acquire(n);
    ok &= n == 1 || nth == 1 || gpt_team_size(t2) == 1;
    gpt_team_release(t2);
    gpt_team_release(t);
    check(ok, "pool members run once", "threads", n, 0);
  }
  test_pool_late();
  int lo, hi, ok = 1, prev = 0;
  for (int i = 0; i < 3; i++) {
    gpt_team_split(50257, 4, i, 3, &lo, &hi);
    ok &= lo == prev && (lo % 4 == 0) && hi >= lo;
    prev = hi;
  }
  check(ok && prev == 50257, "split covers", "threads", 50257, 0);
}

/* The AVX-512 q8_0 sets (VNNI, and BW without it) give the same bits, and
** a batch large enough for the VNNI gemm's repacked slices, over more than
** one sweep of tokens, gives each token what the gemv gives it alone: sizes
** of whole chunks of 16 blocks, pairs after them, and an odd last block. */
static void test_q8_avx512(void) {
  const GPTKernels *v = gpt_kernels_named("avx512"), *bw = gpt_kernels_named("avx512-bw");
  if (!v || !bw) {
    printf("q8_0 AVX-512 agreement: no AVX-512 here, skipped\n");
    return;
  }
  static const int aK[] = {32, 96, 512, 576, 800, 1536, 3072};
  const int rows = 13, T = 70;
  for (size_t ik = 0; ik < sizeof(aK) / sizeof(aK[0]); ik++) {
    int K = aK[ik], nb = K / 32;
    float *Wf = malloc(sizeof(float) * rows * K), *X = malloc(sizeof(float) * T * K);
    uint8_t *Q = malloc((size_t)rows * nb * 34);
    float *g = malloc(sizeof(float) * T * rows), *gb = malloc(sizeof(float) * T * rows);
    GPTQ8Act xs = {malloc((size_t)T * K), malloc((size_t)T * K), malloc(sizeof(float) * T * nb),
                   NULL};
    for (int i = 0; i < rows * K; i++) Wf[i] = frand();
    for (int i = 0; i < T * K; i++) X[i] = frand();
    gpt_q8_quantize_row(Q, Wf, (int64_t)rows * K);
    for (int t = 0; t < T; t++) {
      GPTQ8Act xt = gpt_q8_act_token(&xs, t, K);
      v->q8_quantize_act(&xt, X + (size_t)t * K, K);
    }
    v->gemm_q8(g, rows, Q, &xs, T, NULL, 0, rows, K, GPT_GEMV_SET);
    bw->gemm_q8(gb, rows, Q, &xs, T, NULL, 0, rows, K, GPT_GEMV_SET);
    int same = memcmp(g, gb, sizeof(float) * T * rows) == 0, alone = 1;
    for (int t = 0; t < T; t++) {
      float y[13], yb[13];
      GPTQ8Act xt = gpt_q8_act_token(&xs, t, K);
      v->gemv_q8(y, Q, &xt, NULL, 0, rows, K, GPT_GEMV_SET);
      bw->gemv_q8(yb, Q, &xt, NULL, 0, rows, K, GPT_GEMV_SET);
      alone &= memcmp(y, g + (size_t)t * rows, sizeof(y)) == 0;
      same &= memcmp(y, yb, sizeof(y)) == 0;
    }
    check(same, "q8_0 VNNI = BW", "avx512", K, 0);
    check(alone, "q8_0 gemm of 70 tokens = gemv", "avx512", K, 0);
    free(Wf); free(X); free(Q); free(g); free(gb); free(xs.q); free(xs.aq); free(xs.d);
  }
}

/* q8_0 rows packed (gpt_q8_pack_rows): widened, they give q8_to_f32's
** values; the set's gemv_q8p and gemm_q8p on them give, bit for bit, what
** its gemv_q8 gives the rows as stored where the set packs (portable's
** where it does not), whole or split, for 1 to 70 tokens, with the token
** laid out by the call or beforehand (q8_slice_act); K from a lone block to
** rows whose token the gemv slices in two windows (K 16896). */
static void test_q8_packed(const GPTKernels *kern) {
  static const int aK[] = {32, 64, 96, 512, 544, 576, 768, 992, 1536, 3072, 16896};
  static const int aT[] = {1, 2, 3, 4, 7, 70};
  const GPTKernels *port = gpt_kernels_named("portable");
  for (size_t ik = 0; ik < sizeof(aK) / sizeof(aK[0]); ik++) {
    int K = aK[ik], nb = K / 32, rows = K > 4096 ? 9 : 70, T = 70;
    size_t ld = (size_t)nb * 34;
    float *Wf = malloc(sizeof(float) * rows * K), *X = malloc(sizeof(float) * T * K);
    float *wide = malloc(sizeof(float) * K), *wide2 = malloc(sizeof(float) * K);
    /* packed rows as a model's arena holds them: whole 64-byte lines
    ** (kernels.h), which the packed gemv reads */
    uint8_t *Q = malloc((size_t)rows * ld), *P = aligned_alloc(64, ((size_t)rows * ld + 63) / 64 * 64);
    float *g = malloc(sizeof(float) * T * rows), *gv = malloc(sizeof(float) * T * rows);
    float *bias = malloc(sizeof(float) * rows);
    GPTQ8Act xs = {malloc((size_t)T * K), malloc((size_t)T * K), malloc(sizeof(float) * T * nb),
                   NULL};
    for (int i = 0; i < rows * K; i++) Wf[i] = frand();
    for (int i = 0; i < T * K; i++) X[i] = frand();
    for (int r = 0; r < rows; r++) bias[r] = frand();
    gpt_q8_quantize_row(Q, Wf, (int64_t)rows * K);
    memcpy(P, Q, (size_t)rows * ld);
    int packed = kern->q8_pack && kern->q8_pack(P, rows, K);
    if (!packed) gpt_q8_pack_rows(P, rows, K); /* read through the portable reader */
    const GPTKernels *ref = packed ? kern : port;
    for (int t = 0; t < T; t++) {
      GPTQ8Act xt = gpt_q8_act_token(&xs, t, K);
      kern->q8_quantize_act(&xt, X + (size_t)t * K, K);
    }
    int widen = 1, gemv = 1, split = 1, gemm = 1;
    void *sliced = aligned_alloc(64, (gpt_q8_sliced_bytes(K) + 63) / 64 * 64);
    for (int r = 0; r < rows; r++) {
      port->q8_to_f32(wide, Q + r * ld, (size_t)nb);
      gpt_q8_packed_to_f32(wide2, P + r * ld, K, 0, nb);
      widen &= memcmp(wide, wide2, sizeof(float) * K) == 0;
    }
    for (int t = 0; t < T; t++) {
      GPTQ8Act xt = gpt_q8_act_token(&xs, t, K);
      float *y = gv + (size_t)t * rows, *y2 = g;
      ref->gemv_q8(y, Q, &xt, bias, 0, rows, K, GPT_GEMV_SET);
      kern->gemv_q8p(y2, P, &xt, bias, 0, rows, K, GPT_GEMV_SET);
      gemv &= memcmp(y, y2, sizeof(float) * rows) == 0;
      if (packed && kern->q8_slice_act && sliced) { /* laid out once for the product */
        kern->q8_slice_act(sliced, &xt, K);
        xt.sliced = sliced;
        memset(y2, 0, sizeof(float) * rows);
        kern->gemv_q8p(y2, P, &xt, bias, 0, rows, K, GPT_GEMV_SET);
        gemv &= memcmp(y, y2, sizeof(float) * rows) == 0;
        xt.sliced = NULL;
      }
      if (t < 3) {
        int cut = (t * 29) % rows;
        memset(y2, 0, sizeof(float) * rows);
        kern->gemv_q8p(y2, P, &xt, bias, 0, cut, K, GPT_GEMV_ADD);
        kern->gemv_q8p(y2, P, &xt, bias, cut, rows, K, GPT_GEMV_ADD);
        for (int r = 0; r < rows; r++) split &= y2[r] == 0.0f + y[r];
      }
    }
    for (size_t it = 0; it < sizeof(aT) / sizeof(aT[0]); it++) {
      kern->gemm_q8p(g, rows, P, &xs, aT[it], bias, 0, rows, K, GPT_GEMV_SET);
      gemm &= memcmp(g, gv, sizeof(float) * aT[it] * rows) == 0;
    }
    check(widen, "q8_0 packed rows widen as stored", kern->name, K, 0);
    check(gemv, "gemv_q8p on packed rows = gemv_q8 on stored", kern->name, K, 0);
    check(split, "gemv_q8p split anywhere", kern->name, K, 0);
    check(gemm, "gemm_q8p of 1-70 tokens = gemv_q8", kern->name, K, 0);
    free(Wf); free(X); free(wide); free(wide2); free(Q); free(P); free(g); free(gv); free(bias);
    free(sliced);
    free(xs.q); free(xs.aq); free(xs.d);
  }
}

/* The f32 gemm on as many tokens as a prefill or a gpt_batch step gives it
** (16 to 40: the AVX-512 loops whose tiles share out the reads ahead, and
** the K-blocked loop for long rows, K 1400 with a scalar tail): each value
** bit for bit what gemv_f32 gives the token alone, bias and GPT_GEMV_ADD
** included, rows split anywhere. */
static void test_gemm_tokens(const GPTKernels *kern) {
  static const int aK[] = {576, 1400, 3072}, aT[] = {16, 21, 40};
  const int rows = 13;
  for (int ik = 0; ik < 3; ik++) {
    int K = aK[ik];
    float *W = malloc(sizeof(float) * (size_t)rows * K), *X = malloc(sizeof(float) * 40 * (size_t)K);
    float *g = malloc(sizeof(float) * 40 * rows), bias[13], gv[13];
    for (size_t i = 0; i < (size_t)rows * K; i++) W[i] = frand();
    for (size_t i = 0; i < 40 * (size_t)K; i++) X[i] = frand();
    for (int r = 0; r < rows; r++) bias[r] = frand();
    for (int it = 0; it < 3; it++) {
      int T = aT[it], same = 1;
      for (int cut = 0; cut <= rows; cut += 5) {
        for (int i = 0; i < T * rows; i++) g[i] = 0.5f;
        kern->gemm_f32(g, rows, W, X, (size_t)K, T, bias, 0, cut, K, GPT_GEMV_ADD);
        kern->gemm_f32(g, rows, W, X, (size_t)K, T, bias, cut, rows, K, GPT_GEMV_ADD);
        for (int t = 0; t < T; t++) {
          for (int r = 0; r < rows; r++) gv[r] = 0.5f;
          kern->gemv_f32(gv, W, X + (size_t)t * K, bias, 0, rows, K, GPT_GEMV_ADD);
          same &= memcmp(gv, g + (size_t)t * rows, sizeof(gv)) == 0;
        }
      }
      char zWhat[80];
      snprintf(zWhat, sizeof(zWhat), "gemm_f32 of %d tokens = gemv_f32 each", T);
      check(same, zWhat, kern->name, K, 0);
    }
    free(W); free(X); free(g);
  }
}

/* A gemv over many rows (the AVX-512 gemv reads four quarters of them at
** once from 64, eight eighths from 128) gives each row, bit for bit, what a gemv of that row alone
** gives, f32 and f16, for row counts that leave tails and for a sub-range. */
static void test_gemv_rows(const GPTKernels *kern) {
  static const int aRows[] = {64, 67, 131, 150, 200}; /* quarters, eighths, tails */
  const int K = 80;
  for (size_t ir = 0; ir < sizeof(aRows) / sizeof(aRows[0]); ir++) {
    int rows = aRows[ir], same = 1;
    float *W = malloc(sizeof(float) * (size_t)rows * K), *x = malloc(sizeof(float) * K);
    float *bias = malloc(sizeof(float) * rows), *y = malloc(sizeof(float) * rows);
    float *y1 = malloc(sizeof(float) * rows);
    uint16_t *H = malloc(2 * (size_t)rows * K);
    for (int i = 0; i < rows * K; i++) {
      W[i] = frand();
      H[i] = gpt_f32_to_f16(W[i]);
    }
    for (int k = 0; k < K; k++) x[k] = frand();
    for (int r = 0; r < rows; r++) bias[r] = frand();
    for (int d = 0; d < 2; d++) {
      int r0 = d ? 3 : 0; /* f16: rows 3.. as a sub-range */
      if (d == 0) kern->gemv_f32(y, W, x, bias, r0, rows, K, GPT_GEMV_SET);
      else kern->gemv_f16(y, H, x, bias, r0, rows, K, GPT_GEMV_SET);
      for (int r = r0; r < rows; r++) {
        if (d == 0) kern->gemv_f32(y1, W, x, bias, r, r + 1, K, GPT_GEMV_SET);
        else kern->gemv_f16(y1, H, x, bias, r, r + 1, K, GPT_GEMV_SET);
        same &= y1[r] == y[r];
      }
    }
    char zWhat[64];
    snprintf(zWhat, sizeof(zWhat), "gemv of %d rows = each row alone", rows);
    check(same, zWhat, kern->name, K, 0);
    free(W); free(x); free(bias); free(y); free(y1); free(H);
  }
}

int main(void) {
  const char *azSet[] = {"portable", "avx2", "avx512", "avx512-bw"};
  for (int i = 0; i < (int)(sizeof(azSet) / sizeof(azSet[0])); i++) {
    const GPTKernels *k = gpt_kernels_named(azSet[i]);
    if (k) {
      test_set(k); test_transpose(k); test_gemm_tokens(k); test_attention(k);
      test_gemv_rows(k); test_q8_packed(k);
    }
    else printf("kernel set %s: not supported by this CPU, skipped\n", azSet[i]);
  }
  test_q8_avx512();
  test_pool();
  printf("kernels in use: %s\n", gpt_kernels()->name);
  printf("%d passed, %d failed\n", nPass, nFail);
  return nFail > 0;
}
