/*
** Training: the backward pass of the decoder, AdamW, clipping, schedule and
** initialization (see train.h).
**
** How it works: gpt_forward runs with a tape attached (gpt_internal.h), so
** the pass keeps each layer's norm inputs and outputs, q|k|v, attention
** probabilities, GELU's input and the MLP's hidden rows. The loss head and
** the backward pass follow llm.c's free functions (crossentropy_softmax,
** matmul_backward, attention_backward, gelu_backward, layernorm_backward)
** over one sequence of T tokens (B = 1; a batch is a sum of sequences).
** Weights are in gpt.c's memory layout, (out, in), so a product is
** y (T, OC) = x (T, K) @ W^T + b, and its backward
**   dx (T, K) += dy (T, OC) @ W (OC, K),  dW (OC, K) += dy^T @ x,  db += sum_t dy.
** Matrix products are cblas_sgemm calls (OpenBLAS through blas.h; a plain
** loop where it must not be called) in fixed chunks of columns that the
** thread pool's members claim, so each value is computed the same way
** whatever the team's size, and a run is reproducible.
*/
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "blas.h"
#include "gpt.h"
#include "gpt_internal.h"
#include "threads.h"
#include "train.h"

/* Columns (or rows) of one sgemm in the backward products. */
#define BWD_CHUNK 128

/* The tensors of one GPT-2 block, by index. */
typedef struct TrainLayer {
  int ln1_w, ln1_b, qkv_w, qkv_b, o_w, o_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b;
} TrainLayer;

struct GPTTrainer {
  GPTModel *m;
  GPTConfig cfg;
  int T;                 /* most tokens a sequence may hold */
  int n_tensors;
  int64_t *n_elem;       /* (n_tensors,) */
  int *is_2d;            /* (n_tensors,) weight decay applies */
  float **w;             /* (n_tensors,) the model's weights */
  float **buf[3];        /* gradients, Adam m, Adam v, per tensor */
  float *arena[3];       /* their storage, n_params floats each */
  int64_t n_params;
  int wte, wpe, lnf_w, lnf_b, head;
  TrainLayer *layer;     /* (n_layer,) */
  GPTState *s;
  GPTTape tape;
  float *tape_arena;
  /* backward scratch */
  float *dx;             /* (T, C) gradient of the residual stream */
  float *dln;            /* (T, C) gradient of a norm's output */
  float *dqkv;           /* (T, 3C) */
  float *datty;          /* (T, C) */
  float *dfc;            /* (T, F) */
  float *dhid;           /* (T, F) */
  float *datt;           /* (nth, T, T) per-thread attention scratch */
  double *row_loss;      /* (T,) each position's loss */
  int n_datt;
};

/* ------------------------------------------------------------- helpers */

uint64_t gpt_train_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A standard normal sample (Box-Muller, in double). */
static double rand_normal(uint64_t *state) {
  double u1 = ((gpt_train_rand(state) >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */
  double u2 = (gpt_train_rand(state) >> 11) / 9007199254740992.0;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double gpt_train_lr(int64_t step, int64_t steps, int64_t warmup, double lr) {
  if (warmup > 0 && step < warmup) return lr * (double)(step + 1) / (double)warmup;
  double min_lr = lr / 10.0;
  int64_t span = steps - warmup - 1;
  double progress = span > 0 ? (double)(step - warmup) / (double)span : 1.0;
  if (progress > 1.0) progress = 1.0;
  if (progress < 0.0) progress = 0.0;
  return min_lr + 0.5 * (1.0 + cos(M_PI * progress)) * (lr - min_lr);
}

double gpt_train_flops_per_token(const GPTConfig *c, int T) {
  double C = c->n_embd, L = c->n_layer, V = c->vocab_size;
  /* per token: 12 C^2 per layer in the linear layers, the head V C, and
  ** attention 2 T C per layer on average (T/2 keys, scores and values);
  ** 2 FLOPs a multiply-add, backward twice the forward */
  double macs = L * (12.0 * C * C + 2.0 * (T / 2.0) * C) + V * C;
  return 6.0 * macs;
}

/* ------------------------------------------------------------ lifecycle */

static float *falloc(size_t n) {
  return (float *)calloc(n ? n : 1, sizeof(float));
}

GPTTrainer *gpt_trainer_new(GPTModel *m, int T, char *err, size_t n_err) {
  const GPTConfig *c = gpt_model_config(m);
  if (c->arch != GPT_ARCH_GPT2) {
    snprintf(err, n_err, "training supports gpt2 models only, not %s", gpt_arch_name(c->arch));
    return NULL;
  }
  if (T < 1 || T > c->n_ctx) {
    snprintf(err, n_err, "sequence length %d outside 1 to n_ctx %d", T, c->n_ctx);
    return NULL;
  }
  GPTTrainer *tr = calloc(1, sizeof(*tr));
  if (!tr) goto oom;
  tr->m = m;
  tr->cfg = *c;
  tr->T = T;
  /* has_lm_head: the model has one tensor more than a tied one would */
  int n = 0;
  while (gpt_model_tensor_data(m, n)) n++;
  int hasHead = n == gpt_n_tensors(c, 1);
  tr->n_tensors = n;
  tr->n_elem = calloc((size_t)n, sizeof(int64_t));
  tr->is_2d = calloc((size_t)n, sizeof(int));
  tr->w = calloc((size_t)n, sizeof(float *));
  for (int k = 0; k < 3; k++) tr->buf[k] = calloc((size_t)n, sizeof(float *));
  if (!tr->n_elem || !tr->is_2d || !tr->w || !tr->buf[0] || !tr->buf[1] || !tr->buf[2])
    goto oom;
  for (int i = 0; i < n; i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, hasHead, i, &info);
    if (gpt_model_tensor_dtype(m, i) != GPT_F32) {
      snprintf(err, n_err, "tensor %s is held as %s; training needs f32", info.name,
               gpt_dtype_name(gpt_model_tensor_dtype(m, i)));
      gpt_trainer_free(tr);
      return NULL;
    }
    tr->n_elem[i] = info.n_elem;
    tr->is_2d[i] = info.ndim == 2;
    tr->w[i] = gpt_model_tensor_data(m, i);
    tr->n_params += info.n_elem;
  }
  for (int k = 0; k < 3; k++) {
    tr->arena[k] = falloc((size_t)tr->n_params);
    if (!tr->arena[k]) goto oom;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
      tr->buf[k][i] = tr->arena[k] + off;
      off += tr->n_elem[i];
    }
  }
  /* tensors by name */
  tr->wte = gpt_tensor_index(c, hasHead, "wte.weight");
  tr->wpe = gpt_tensor_index(c, hasHead, "wpe.weight");
  tr->lnf_w = gpt_tensor_index(c, hasHead, "ln_f.weight");
  tr->lnf_b = gpt_tensor_index(c, hasHead, "ln_f.bias");
  tr->head = hasHead ? gpt_tensor_index(c, hasHead, "lm_head.weight") : tr->wte;
  tr->layer = calloc((size_t)c->n_layer, sizeof(TrainLayer));
  if (!tr->layer) goto oom;
  for (int l = 0; l < c->n_layer; l++) {
    TrainLayer *L = &tr->layer[l];
    static const char *az[12] = {
      "h.%d.ln_1.weight", "h.%d.ln_1.bias", "h.%d.attn.c_attn.weight", "h.%d.attn.c_attn.bias",
      "h.%d.attn.c_proj.weight", "h.%d.attn.c_proj.bias", "h.%d.ln_2.weight", "h.%d.ln_2.bias",
      "h.%d.mlp.c_fc.weight", "h.%d.mlp.c_fc.bias", "h.%d.mlp.c_proj.weight",
      "h.%d.mlp.c_proj.bias"};
    int *ai = &L->ln1_w;
    for (int k = 0; k < 12; k++) {
      char z[96];
      snprintf(z, sizeof(z), az[k], l);
      ai[k] = gpt_tensor_index(c, hasHead, z);
    }
  }
  /* the tape and the scratch */
  size_t t = (size_t)T, C = (size_t)c->n_embd, F = 4 * C, V = (size_t)c->vocab_size;
  size_t NH = (size_t)c->n_head, per = t * C * 6 + t * 3 * C + NH * t * t + 2 * t * F;
  size_t total = per * (size_t)c->n_layer + 2 * t * C + t * V;
  tr->tape_arena = falloc(total);
  tr->tape.layer = calloc((size_t)c->n_layer, sizeof(GPTTapeLayer));
  if (!tr->tape_arena || !tr->tape.layer) goto oom;
  float *p = tr->tape_arena;
  tr->tape.T = T;
  for (int l = 0; l < c->n_layer; l++) {
    GPTTapeLayer *tl = &tr->tape.layer[l];
    tl->x_in = p; p += t * C;
    tl->ln1 = p; p += t * C;
    tl->qkv = p; p += t * 3 * C;
    tl->att = p; p += NH * t * t;
    tl->atty = p; p += t * C;
    tl->x_mid = p; p += t * C;
    tl->ln2 = p; p += t * C;
    tl->fc = p; p += t * F;
    tl->hid = p; p += t * F;
    p += t * C; /* spare row block keeps the count above exact */
  }
  tr->tape.x_f = p; p += t * C;
  tr->tape.ln_f = p; p += t * C;
  tr->tape.logits = p;
  tr->s = gpt_state_new(m, T);
  tr->dx = falloc(t * C);
  tr->dln = falloc(t * C);
  tr->dqkv = falloc(t * 3 * C);
  tr->datty = falloc(t * C);
  tr->dfc = falloc(t * F);
  tr->dhid = falloc(t * F);
  tr->n_datt = GPT_MAX_THREADS;
  tr->datt = falloc((size_t)tr->n_datt * t * t);
  tr->row_loss = calloc(t, sizeof(double));
  if (!tr->s || !tr->dx || !tr->dln || !tr->dqkv || !tr->datty || !tr->dfc || !tr->dhid ||
      !tr->datt || !tr->row_loss)
    goto oom;
  gpt_state_set_tape(tr->s, &tr->tape);
  return tr;
oom:
  snprintf(err, n_err, "out of memory for training %lld parameters on %d positions",
           (long long)gpt_n_params(c, 1), T);
  gpt_trainer_free(tr);
  return NULL;
}

void gpt_trainer_free(GPTTrainer *tr) {
  if (!tr) return;
  gpt_state_free(tr->s);
  free(tr->n_elem); free(tr->is_2d); free(tr->w);
  for (int k = 0; k < 3; k++) { free(tr->buf[k]); free(tr->arena[k]); }
  free(tr->layer);
  free(tr->tape_arena); free(tr->tape.layer);
  free(tr->dx); free(tr->dln); free(tr->dqkv); free(tr->datty); free(tr->dfc); free(tr->dhid);
  free(tr->datt);
  free(tr->row_loss);
  free(tr);
}

void gpt_trainer_zero_grad(GPTTrainer *tr) {
  memset(tr->arena[0], 0, (size_t)tr->n_params * sizeof(float));
}

float *gpt_trainer_buffer(GPTTrainer *tr, int which, int i) {
  if (which < 0 || which > 2 || i < 0 || i >= tr->n_tensors) return NULL;
  return tr->buf[which][i];
}

/* GPT-2's initialization (nanoGPT's _init_weights and the c_proj scaling). */
void gpt_train_init(GPTModel *m, uint64_t seed) {
  const GPTConfig *c = gpt_model_config(m);
  int n = 0;
  while (gpt_model_tensor_data(m, n)) n++;
  int hasHead = n == gpt_n_tensors(c, 1);
  uint64_t st = seed ^ 0x5851f42d4c957f2dull;
  double proj_std = 0.02 / sqrt(2.0 * c->n_layer);
  for (int i = 0; i < n; i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, hasHead, i, &info);
    float *w = gpt_model_tensor_data(m, i);
    if (info.ndim == 2) {
      double sd = strstr(info.name, "c_proj.weight") ? proj_std : 0.02;
      for (int64_t k = 0; k < info.n_elem; k++) w[k] = (float)(sd * rand_normal(&st));
    } else {
      float v = strstr(info.name, "ln_") && strstr(info.name, ".weight") ? 1.0f : 0.0f;
      for (int64_t k = 0; k < info.n_elem; k++) w[k] = v;
    }
  }
}

/* C (M, N) = alpha op(A) op(B) + beta C, row-major, as cblas_sgemm: through
** OpenBLAS when blas.h has it, else a plain loop (a process where OpenBLAS
** must not be called still trains, slowly). */
static void sgemm(const GPTBlas *blas, int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C,
                  int ldc) {
  if (blas) {
    blas->sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double acc = 0;
      for (int k = 0; k < K; k++)
        acc += (double)(transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
               (transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
      C[(size_t)i * ldc + j] = (float)(alpha * acc + (beta != 0.0f ? beta * C[(size_t)i * ldc + j] : 0.0));
    }
}

/* Elementwise work split over the team in fixed chunks of ELEM_CHUNK that
** members claim: each element is computed the same way by whichever member,
** so results do not depend on the team's size. */
#define ELEM_CHUNK 16384
typedef struct ElemTask {
  void (*fn)(void *ctx, size_t lo, size_t hi);
  void *ctx;
  size_t n;
  atomic_int next;
} ElemTask;

static void elem_task(void *arg, int ith, int nth) {
  ElemTask *a = (ElemTask *)arg;
  int ch;
  (void)ith; (void)nth;
  while ((size_t)(ch = atomic_fetch_add(&a->next, 1)) * ELEM_CHUNK < a->n) {
    size_t lo = (size_t)ch * ELEM_CHUNK, hi = lo + ELEM_CHUNK < a->n ? lo + ELEM_CHUNK : a->n;
    a->fn(a->ctx, lo, hi);
  }
}

/* The same in chunks of 8 items (rows of logits). */
static void elem_rows_task(void *arg, int ith, int nth) {
  ElemTask *a = (ElemTask *)arg;
  int ch;
  (void)ith; (void)nth;
  while ((size_t)(ch = atomic_fetch_add(&a->next, 1)) * 8 < a->n) {
    size_t lo = (size_t)ch * 8, hi = lo + 8 < a->n ? lo + 8 : a->n;
    a->fn(a->ctx, lo, hi);
  }
}

static void parallel_for(GPTTeam *team, void (*fn)(void *, size_t, size_t), void *ctx,
                         size_t n) {
  ElemTask a = {fn, ctx, n, 0};
  if (n < 4 * ELEM_CHUNK || gpt_team_size(team) < 2) fn(ctx, 0, n);
  else gpt_team_run(team, elem_task, &a);
}

/* ------------------------------------------------------------- backward */

/* The products of matmul_backward, claimed chunk by chunk: first dinp's
** column chunks, then dW's row chunks (with db). */
typedef struct BwdTask {
  const GPTBlas *blas;
  float *dinp, *dW, *db;
  const float *dout, *inp, *W;
  int T, K, OC;
  size_t ld_dout, ld_inp, ld_dinp;
  int accumulate;       /* dinp += instead of = */
  atomic_int next;
} BwdTask;

static void bwd_task(void *arg, int ith, int nth) {
  BwdTask *a = (BwdTask *)arg;
  int nA = a->dinp ? (a->K + BWD_CHUNK - 1) / BWD_CHUNK : 0;
  int nB = (a->OC + BWD_CHUNK - 1) / BWD_CHUNK, ch;
  (void)ith; (void)nth;
  while ((ch = atomic_fetch_add(&a->next, 1)) < nA + nB) {
    if (ch < nA) {
      /* dinp[:, k0:k0+n] (T, n) (+)= dout (T, OC) @ W[:, k0:k0+n] */
      int k0 = ch * BWD_CHUNK, n = a->K - k0 < BWD_CHUNK ? a->K - k0 : BWD_CHUNK;
      sgemm(a->blas, 0, 0, a->T, n, a->OC, 1.0f, a->dout, (int)a->ld_dout, a->W + k0, a->K,
            a->accumulate ? 1.0f : 0.0f, a->dinp + k0, (int)a->ld_dinp);
    } else {
      /* dW[o0:o0+n, :] (n, K) += dout[:, o0:o0+n]^T (n, T) @ inp (T, K) */
      int o0 = (ch - nA) * BWD_CHUNK, n = a->OC - o0 < BWD_CHUNK ? a->OC - o0 : BWD_CHUNK;
      sgemm(a->blas, 1, 0, n, a->K, a->T, 1.0f, a->dout + o0, (int)a->ld_dout, a->inp,
            (int)a->ld_inp, 1.0f, a->dW + (size_t)o0 * a->K, a->K);
      if (a->db)
        for (int t = 0; t < a->T; t++) {
          const float *d = a->dout + (size_t)t * a->ld_dout + o0;
          for (int o = 0; o < n; o++) a->db[o0 + o] += d[o];
        }
    }
  }
}

/* Backward of out (T, OC) = inp (T, K) @ W^T + b, W (OC, K): dinp (T, K)
** (set, or added to with accumulate; skipped when NULL), dW and db added to. */
static void matmul_backward(GPTTeam *team, const GPTBlas *blas, float *dinp, float *dW, float *db, const float *dout,
                            const float *inp, const float *W, int T, int K, int OC,
                            int accumulate) {
  BwdTask a = {blas, dinp, dW, db, dout, inp, W, T, K, OC, (size_t)OC, (size_t)K, (size_t)K,
               accumulate, 0};
  if ((int64_t)T * K * OC < ((int64_t)1 << 20)) bwd_task(&a, 0, 1);
  else gpt_team_run(team, bwd_task, &a);
}

/* Backward of LayerNorm out = (x - mean) rstd * w + b over (T, C): dx
** (T, C) += ..., dw, db (C,) += ... Statistics recomputed from x in double,
** as the forward pass computes them. */
static void layernorm_backward(float *dx, float *dw, float *db, const float *dout,
                               const float *x, const float *w, int T, int C, double eps) {
  for (int t = 0; t < T; t++) {
    const float *xr = x + (size_t)t * C, *dr = dout + (size_t)t * C;
    float *dxr = dx + (size_t)t * C;
    double sum = 0, sq = 0;
    for (int c = 0; c < C; c++) sum += xr[c];
    double mean = sum / C;
    for (int c = 0; c < C; c++) { double d = xr[c] - mean; sq += d * d; }
    float rstd = (float)(1.0 / sqrt(sq / C + eps)), fmean = (float)mean;
    double dmean = 0, dmean_n = 0;
    for (int c = 0; c < C; c++) {
      float nrm = (xr[c] - fmean) * rstd, dn = w[c] * dr[c];
      dmean += dn;
      dmean_n += (double)dn * nrm;
    }
    dmean /= C;
    dmean_n /= C;
    for (int c = 0; c < C; c++) {
      float nrm = (xr[c] - fmean) * rstd, dn = w[c] * dr[c];
      db[c] += dr[c];
      dw[c] += nrm * dr[c];
      dxr[c] += (float)(rstd * (dn - dmean - nrm * dmean_n));
    }
  }
}

/* dinp (n,) = dout * gelu'(x), GELU's tanh form; elements lo..hi. */
typedef struct GeluBwd { float *dinp; const float *x, *dout; } GeluBwd;

static void gelu_backward_range(void *ctx, size_t lo, size_t hi) {
  GeluBwd *a = (GeluBwd *)ctx;
  float *dinp = a->dinp;
  const float *x = a->x, *dout = a->dout;
  const float s = 0.7978845608028654f;
  for (size_t i = lo; i < hi; i++) {
    float v = x[i], cube = 0.044715f * v * v * v;
    float th = tanhf(s * (v + cube));
    float sech2 = 1.0f - th * th;
    float g = 0.5f * (1.0f + th) + v * 0.5f * sech2 * s * (1.0f + 3.0f * 0.044715f * v * v);
    dinp[i] = g * dout[i];
  }
}

static void gelu_backward(GPTTeam *team, float *dinp, const float *x, const float *dout,
                          size_t n) {
  GeluBwd a = {dinp, x, dout};
  parallel_for(team, gelu_backward_range, &a, n);
}

/* Backward of causal attention over one sequence (P = 0): qkv (T, 3C)
** and att (NH, T, T) from the tape, datty (T, C) -> dqkv (T, 3C). Heads are
** claimed by the team's members, each with its own (T, T) scratch. */
typedef struct AttBwdTask {
  const GPTBlas *blas;
  float *dqkv, *scratch;
  const float *datty, *qkv, *att;
  int T, C, NH, hd;
  atomic_int next;
} AttBwdTask;

static void att_bwd_task(void *arg, int ith, int nth) {
  AttBwdTask *a = (AttBwdTask *)arg;
  int T = a->T, C = a->C, hd = a->hd, ld = 3 * C, h;
  float scale = 1.0f / sqrtf((float)hd);
  float *dA = a->scratch + (size_t)ith * T * T;
  (void)nth;
  while ((h = atomic_fetch_add(&a->next, 1)) < a->NH) {
    const float *A = a->att + (size_t)h * T * T;
    const float *q = a->qkv + (size_t)h * hd, *k = q + C, *v = q + 2 * C;
    const float *dO = a->datty + (size_t)h * hd;
    float *dq = a->dqkv + (size_t)h * hd, *dk = dq + C, *dv = dq + 2 * C;
    /* dA (T, T) = dO (T, hd) @ V^T; dV (T, hd) = A^T @ dO */
    sgemm(a->blas, 0, 1, T, T, hd, 1.0f, dO, C, v, ld, 0.0f, dA, T);
    sgemm(a->blas, 1, 0, T, hd, T, 1.0f, A, T, dO, C, 0.0f, dv, ld);
    /* softmax: dS = A * (dA - sum_j A dA), causal entries only */
    for (int t = 0; t < T; t++) {
      const float *ar = A + (size_t)t * T;
      float *dr = dA + (size_t)t * T;
      double dot = 0;
      for (int j = 0; j <= t; j++) dot += (double)ar[j] * dr[j];
      for (int j = 0; j <= t; j++) dr[j] = ar[j] * (dr[j] - (float)dot);
      for (int j = t + 1; j < T; j++) dr[j] = 0.0f;
    }
    /* dQ = scale dS @ K; dK = scale dS^T @ Q */
    sgemm(a->blas, 0, 0, T, hd, T, scale, dA, T, k, ld, 0.0f, dq, ld);
    sgemm(a->blas, 1, 0, T, hd, T, scale, dA, T, q, ld, 0.0f, dk, ld);
  }
}

/* Softmax and cross-entropy over logits (T, V) in place: the rows become
** dlogits = scale (softmax - onehot(target)), each row's loss in rowLoss
** (T,). Rows lo..hi. */
typedef struct XentTask {
  float *logits;
  const int *targets;
  double *rowLoss;
  int V;
  float scale;
} XentTask;

static void crossentropy_rows(void *ctx, size_t lo, size_t hi) {
  XentTask *a = (XentTask *)ctx;
  int V = a->V;
  for (size_t t = lo; t < hi; t++) {
    float *row = a->logits + t * V;
    float mx = row[0];
    for (int j = 1; j < V; j++) if (row[j] > mx) mx = row[j];
    double sum = 0;
    for (int j = 0; j < V; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
    a->rowLoss[t] = -log(row[a->targets[t]] / sum);
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < V; j++) row[j] *= inv * a->scale;
    row[a->targets[t]] -= a->scale;
  }
}

/* The same over all T rows, split over the team by rows (each row whole on
** one member); returns the summed loss, added in row order. */
static double crossentropy_backward(GPTTeam *team, double *rowLoss, float *logits,
                                    const int *targets, int T, int V, float scale) {
  XentTask a = {logits, targets, rowLoss, V, scale};
  if ((int64_t)T * V < 4 * ELEM_CHUNK || gpt_team_size(team) < 2) {
    crossentropy_rows(&a, 0, (size_t)T);
  } else {
    /* rows in chunks: parallel_for counts elements, so hand it rows */
    ElemTask e = {crossentropy_rows, &a, (size_t)T, 0};
    gpt_team_run(team, elem_rows_task, &e);
  }
  double loss = 0;
  for (int t = 0; t < T; t++) loss += rowLoss[t];
  return loss;
}

/* The forward pass with the tape, from position 0. */
static int taped_forward(GPTTrainer *tr, const int *tokens, int T, char *err, size_t n_err) {
  if (T < 1 || T > tr->T) {
    snprintf(err, n_err, "sequence of %d tokens, expected 1 to %d", T, tr->T);
    return GPT_ERROR;
  }
  if (tokens[T] < 0 || tokens[T] >= tr->cfg.vocab_size) {
    snprintf(err, n_err, "token id %d is outside the vocabulary of %d", tokens[T],
             tr->cfg.vocab_size);
    return GPT_ERROR;
  }
  gpt_state_truncate(tr->s, 0);
  return gpt_forward(tr->m, tr->s, tokens, T, NULL, err, n_err);
}

int gpt_trainer_eval(GPTTrainer *tr, const int *tokens, int T, double *pLoss, char *err,
                     size_t n_err) {
  int rc = taped_forward(tr, tokens, T, err, n_err);
  if (rc) return rc;
  GPTTeam *team = gpt_team_acquire(gpt_threads_get());
  *pLoss = crossentropy_backward(team, tr->row_loss, tr->tape.logits, tokens + 1, T,
                                 tr->cfg.vocab_size, 0.0f) / T;
  gpt_team_release(team);
  return GPT_OK;
}

int gpt_trainer_sequence(GPTTrainer *tr, const int *tokens, int T, double grad_scale,
                         double *pLoss, char *err, size_t n_err) {
  int rc = taped_forward(tr, tokens, T, err, n_err);
  if (rc) return rc;
  const GPTConfig *c = &tr->cfg;
  int C = c->n_embd, V = c->vocab_size, F = 4 * C, NH = c->n_head;
  float **g = tr->buf[0], **w = tr->w;
  GPTTape *tp = &tr->tape;
  GPTTeam *team = gpt_team_acquire(gpt_threads_get());
  const GPTBlas *blas = gpt_blas();
  size_t TC = (size_t)T * C;

  *pLoss = crossentropy_backward(team, tr->row_loss, tp->logits, tokens + 1, T, V,
                                 (float)(grad_scale / T)) / T;
  /* head: logits (T, V) = ln_f (T, C) @ head^T */
  matmul_backward(team, blas, tr->dln, g[tr->head], NULL, tp->logits, tp->ln_f, w[tr->head], T, C, V,
                  0);
  memset(tr->dx, 0, TC * sizeof(float));
  layernorm_backward(tr->dx, g[tr->lnf_w], g[tr->lnf_b], tr->dln, tp->x_f, w[tr->lnf_w], T, C,
                     c->ln_eps);
  for (int l = c->n_layer - 1; l >= 0; l--) {
    const TrainLayer *L = &tr->layer[l];
    const GPTTapeLayer *tl = &tp->layer[l];
    /* MLP: x += proj(gelu(fc(ln2(x_mid)))) */
    matmul_backward(team, blas, tr->dhid, g[L->proj_w], g[L->proj_b], tr->dx, tl->hid, w[L->proj_w],
                    T, F, C, 0);
    gelu_backward(team, tr->dfc, tl->fc, tr->dhid, (size_t)T * F);
    matmul_backward(team, blas, tr->dln, g[L->fc_w], g[L->fc_b], tr->dfc, tl->ln2, w[L->fc_w], T, C,
                    F, 0);
    layernorm_backward(tr->dx, g[L->ln2_w], g[L->ln2_b], tr->dln, tl->x_mid, w[L->ln2_w], T, C,
                       c->ln_eps);
    /* attention: x += o(attn(qkv(ln1(x_in)))) */
    matmul_backward(team, blas, tr->datty, g[L->o_w], g[L->o_b], tr->dx, tl->atty, w[L->o_w], T, C,
                    C, 0);
    AttBwdTask at = {blas, tr->dqkv, tr->datt, tr->datty, tl->qkv, tl->att, T, C, NH, C / NH, 0};
    if (gpt_team_size(team) > tr->n_datt || (int64_t)T * T * C < ((int64_t)1 << 18))
      att_bwd_task(&at, 0, 1);
    else
      gpt_team_run(team, att_bwd_task, &at);
    matmul_backward(team, blas, tr->dln, g[L->qkv_w], g[L->qkv_b], tr->dqkv, tl->ln1, w[L->qkv_w], T,
                    C, 3 * C, 0);
    layernorm_backward(tr->dx, g[L->ln1_w], g[L->ln1_b], tr->dln, tl->x_in, w[L->ln1_w], T, C,
                       c->ln_eps);
  }
  /* embeddings: x = wte[token] + wpe[position] */
  for (int t = 0; t < T; t++) {
    const float *d = tr->dx + (size_t)t * C;
    float *gt = g[tr->wte] + (size_t)tokens[t] * C, *gp = g[tr->wpe] + (size_t)t * C;
    for (int k = 0; k < C; k++) { gt[k] += d[k]; gp[k] += d[k]; }
  }
  gpt_team_release(team);
  return GPT_OK;
}

/* ------------------------------------------------------------ optimizer */

double gpt_trainer_clip(GPTTrainer *tr, double max_norm) {
  double sq = 0;
  const float *g = tr->arena[0];
  for (int64_t i = 0; i < tr->n_params; i++) sq += (double)g[i] * g[i];
  double norm = sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    float s = (float)(max_norm / (norm + 1e-6));
    for (int64_t i = 0; i < tr->n_params; i++) tr->arena[0][i] *= s;
  }
  return norm;
}

/* AdamW over elements lo..hi of one tensor. */
typedef struct AdamTask {
  float *w, *g, *m, *v;
  float b1, b2, c1, c2, lr, decay, eps;
} AdamTask;

static void adamw_range(void *ctx, size_t lo, size_t hi) {
  AdamTask *a = (AdamTask *)ctx;
  for (size_t k = lo; k < hi; k++) {
    a->m[k] = a->b1 * a->m[k] + (1.0f - a->b1) * a->g[k];
    a->v[k] = a->b2 * a->v[k] + (1.0f - a->b2) * a->g[k] * a->g[k];
    float mh = a->m[k] * a->c1, vh = a->v[k] * a->c2;
    a->w[k] = a->w[k] * a->decay - a->lr * mh / (sqrtf(vh) + a->eps);
  }
}

void gpt_trainer_adamw(GPTTrainer *tr, double lr, double wd, int64_t t) {
  double b1 = GPT_ADAM_BETA1, b2 = GPT_ADAM_BETA2;
  double c1 = 1.0 - pow(b1, (double)t), c2 = 1.0 - pow(b2, (double)t);
  GPTTeam *team = gpt_team_acquire(gpt_threads_get());
  for (int i = 0; i < tr->n_tensors; i++) {
    AdamTask a = {tr->w[i], tr->buf[0][i], tr->buf[1][i], tr->buf[2][i], (float)b1, (float)b2,
                  (float)(1.0 / c1), (float)(1.0 / c2), (float)lr,
                  tr->is_2d[i] ? (float)(1.0 - lr * wd) : 1.0f, (float)GPT_ADAM_EPS};
    parallel_for(team, adamw_range, &a, (size_t)tr->n_elem[i]);
  }
  gpt_team_release(team);
}
