/*
** The GPT-2 forward pass on CBLAS.
**
** How it works: all weights live in one float arena, addressed through a
** pointer table whose sizes come from the config (llm.c's layout). A forward
** pass appends n tokens to a KV cache: n > 1 is a prefill, done with sgemm
** over the whole batch; n == 1 is a decode step, done with sgemv, which reads
** every weight once and is bound by memory bandwidth. Layers are free
** functions with their shapes in comments; B is always 1 here, T is the
** number of new tokens, P the number of cached positions before them.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "gpt.h"

/* Tensors of one block, in the order of the pointer table. */
enum {
  L_LN1W, L_LN1B, L_QKVW, L_QKVB, L_PROJW, L_PROJB,
  L_LN2W, L_LN2B, L_FCW, L_FCB, L_FCPROJW, L_FCPROJB, L_COUNT
};
static const char *const azLayerTensor[L_COUNT] = {
  "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
  "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
  "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
};

struct GPTModel {
  GPTConfig cfg;
  int has_lm_head;
  int n_tensors;
  float *arena;          /* every weight, f32 */
  size_t n_arena;        /* floats in the arena */
  float **tensor;        /* pointer table into the arena, by tensor index */
};

struct GPTState {
  const GPTModel *m;
  int cap;               /* max positions (<= n_ctx) */
  int len;               /* positions in the cache */
  float *k_cache;        /* (L, cap, C) */
  float *v_cache;        /* (L, cap, C) */
  /* scratch for a batch of up to n_scratch tokens */
  int n_scratch;
  float *x;              /* (T, C) residual stream */
  float *xn;             /* (T, C) LayerNorm output */
  float *qkv;            /* (T, 3C) */
  float *atty;           /* (T, C) attention output before c_proj */
  float *fc;             /* (T, 4C) */
  float *att;            /* (T, P+T) scores of one head */
  float *logit_block;    /* (LOGIT_ROWS, V) for per-position logits */
  int batch_T;           /* tokens of the batch in progress */
};

#define LOGIT_ROWS 32

/* Checks every config value against its range before anything is sized by
** it, so that hostile configs never reach an allocation. */
int gpt_config_check(const GPTConfig *c, char *err, size_t n_err) {
  struct { const char *zKey; int v, lo, hi; } a[] = {
    {"n_layer", c->n_layer, 1, GPT_MAX_LAYER},
    {"n_head", c->n_head, 1, GPT_MAX_HEAD},
    {"n_embd", c->n_embd, 1, GPT_MAX_EMBD},
    {"n_ctx", c->n_ctx, 1, GPT_MAX_CTX},
    {"vocab_size", c->vocab_size, 1, GPT_MAX_VOCAB},
  };
  for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++) {
    if (a[i].v < a[i].lo || a[i].v > a[i].hi) {
      snprintf(err, n_err, "config %s is %d, expected %d to %d", a[i].zKey,
               a[i].v, a[i].lo, a[i].hi);
      return -1;
    }
  }
  if (c->n_embd % c->n_head != 0) {
    snprintf(err, n_err, "config n_embd %d is not divisible by n_head %d",
             c->n_embd, c->n_head);
    return -1;
  }
  if (!(c->ln_eps > 0.0 && c->ln_eps <= 1.0)) {
    snprintf(err, n_err, "config layer_norm_epsilon is %g, expected > 0 and <= 1",
             c->ln_eps);
    return -1;
  }
  if (gpt_n_params(c, 1) > GPT_MAX_PARAMS) {
    snprintf(err, n_err, "config implies %lld parameters, more than the limit of %lld",
             (long long)gpt_n_params(c, 1), (long long)GPT_MAX_PARAMS);
    return -1;
  }
  return 0;
}

/* Tensors: wte, wpe, L blocks of L_COUNT, ln_f.weight, ln_f.bias, lm_head. */
int gpt_n_tensors(const GPTConfig *c, int has_lm_head) {
  return 2 + c->n_layer * L_COUNT + 2 + (has_lm_head ? 1 : 0);
}

/* Describes tensor i: its name, the shape it is stored in, and whether it is
** a Conv1D weight that memory keeps transposed. */
void gpt_tensor_info(const GPTConfig *c, int has_lm_head, int i, GPTTensorInfo *o) {
  int64_t C = c->n_embd;
  int nBlock = c->n_layer * L_COUNT;
  memset(o, 0, sizeof(*o));
  o->ndim = 1;
  if (i == 0 || i == 1) {
    snprintf(o->name, sizeof(o->name), i == 0 ? "wte.weight" : "wpe.weight");
    o->ndim = 2;
    o->shape[0] = i == 0 ? c->vocab_size : c->n_ctx;
    o->shape[1] = C;
  } else if (i < 2 + nBlock) {
    int l = (i - 2) / L_COUNT, k = (i - 2) % L_COUNT;
    snprintf(o->name, sizeof(o->name), "h.%d.%s", l, azLayerTensor[k]);
    switch (k) {
      case L_QKVW: o->ndim = 2; o->shape[0] = C; o->shape[1] = 3 * C; break;
      case L_QKVB: o->shape[0] = 3 * C; break;
      case L_PROJW: o->ndim = 2; o->shape[0] = C; o->shape[1] = C; break;
      case L_FCW: o->ndim = 2; o->shape[0] = C; o->shape[1] = 4 * C; break;
      case L_FCB: o->shape[0] = 4 * C; break;
      case L_FCPROJW: o->ndim = 2; o->shape[0] = 4 * C; o->shape[1] = C; break;
      default: o->shape[0] = C; break;
    }
    o->transposed = o->ndim == 2;
  } else if (i == 2 + nBlock || i == 3 + nBlock) {
    snprintf(o->name, sizeof(o->name), i == 2 + nBlock ? "ln_f.weight" : "ln_f.bias");
    o->shape[0] = C;
  } else if (has_lm_head && i == 4 + nBlock) {
    snprintf(o->name, sizeof(o->name), "lm_head.weight");
    o->ndim = 2;
    o->shape[0] = c->vocab_size;
    o->shape[1] = C;
  }
  o->n_elem = o->ndim == 2 ? o->shape[0] * o->shape[1] : o->shape[0];
}

/* Finds a tensor by canonical name; a linear scan is fine for ~150 names. */
int gpt_tensor_index(const GPTConfig *c, int has_lm_head, const char *zName) {
  GPTTensorInfo info;
  int n = gpt_n_tensors(c, has_lm_head);
  for (int i = 0; i < n; i++) {
    gpt_tensor_info(c, has_lm_head, i, &info);
    if (strcmp(info.name, zName) == 0) return i;
  }
  return -1;
}

/* Parameters of a config, computed in 64 bits from checked int fields. */
int64_t gpt_n_params(const GPTConfig *c, int has_lm_head) {
  int64_t C = c->n_embd;
  int64_t perLayer = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C +
                     (4 * C * C + 4 * C) + (4 * C * C + C);
  int64_t n = (int64_t)c->vocab_size * C + (int64_t)c->n_ctx * C +
              c->n_layer * perLayer + 2 * C;
  if (has_lm_head) n += (int64_t)c->vocab_size * C;
  return n;
}

/* Allocates the arena and the pointer table for a config. */
GPTModel *gpt_model_new(const GPTConfig *c, int has_lm_head, char *err, size_t n_err) {
  if (gpt_config_check(c, err, n_err)) return NULL;
  GPTModel *m = calloc(1, sizeof(*m));
  if (!m) goto oom;
  m->cfg = *c;
  m->has_lm_head = has_lm_head;
  m->n_tensors = gpt_n_tensors(c, has_lm_head);
  m->n_arena = (size_t)gpt_n_params(c, has_lm_head);
  m->tensor = calloc((size_t)m->n_tensors, sizeof(float *));
  /* 64-byte alignment for vector loads; the size is rounded up to match. */
  m->arena = aligned_alloc(64, (m->n_arena * sizeof(float) + 63) / 64 * 64);
  if (!m->tensor || !m->arena) goto oom;
  size_t off = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, has_lm_head, i, &info);
    m->tensor[i] = m->arena + off;
    off += (size_t)info.n_elem;
  }
  return m;
oom:
  snprintf(err, n_err, "out of memory allocating %lld parameters",
           (long long)gpt_n_params(c, has_lm_head));
  gpt_model_free(m);
  return NULL;
}

void gpt_model_free(GPTModel *m) {
  if (!m) return;
  free(m->arena);
  free(m->tensor);
  free(m);
}

const GPTConfig *gpt_model_config(const GPTModel *m) { return &m->cfg; }
size_t gpt_model_bytes(const GPTModel *m) { return m->n_arena * sizeof(float); }

/* Reads element k of src in dtype as f32. */
static inline float load_elem(int dtype, const void *src, int64_t k) {
  if (dtype == GPT_F32) {
    float f;
    memcpy(&f, (const char *)src + 4 * k, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, (const char *)src + 2 * k, 2);
  return dtype == GPT_F16 ? gpt_f16_to_f32(h) : gpt_bf16_to_f32(h);
}

/* Widens (and for Conv1D weights transposes) a run of stored elements into
** the arena. Stored element e of an (in, out) weight is row e/out, column
** e%out; in memory it goes to (column, row) of the (out, in) matrix. */
int gpt_model_load(GPTModel *m, int i, int dtype, int64_t first, int64_t n,
                   const void *src, char *err, size_t n_err) {
  GPTTensorInfo info;
  if (i < 0 || i >= m->n_tensors || gpt_dtype_size(dtype) == 0) {
    snprintf(err, n_err, "bad tensor index %d or dtype %d", i, dtype);
    return -1;
  }
  gpt_tensor_info(&m->cfg, m->has_lm_head, i, &info);
  if (first < 0 || n < 0 || first > info.n_elem - n) {
    snprintf(err, n_err, "tensor %s: elements %lld..%lld outside its %lld",
             info.name, (long long)first, (long long)(first + n), (long long)info.n_elem);
    return -1;
  }
  float *dst = m->tensor[i];
  int64_t nonFinite = -1;
  if (!info.transposed) {
    for (int64_t k = 0; k < n; k++) {
      float f = load_elem(dtype, src, k);
      if (!isfinite(f) && nonFinite < 0) nonFinite = first + k;
      dst[first + k] = f;
    }
  } else {
    int64_t nIn = info.shape[0], nOut = info.shape[1];
    for (int64_t k = 0; k < n; k++) {
      int64_t e = first + k;
      int64_t r = e / nOut, col = e % nOut;
      float f = load_elem(dtype, src, k);
      if (!isfinite(f) && nonFinite < 0) nonFinite = e;
      dst[col * nIn + r] = f;
    }
  }
  if (nonFinite >= 0) {
    snprintf(err, n_err, "tensor %s has a NaN or Inf at element %lld", info.name,
             (long long)nonFinite);
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- state */

/* Grows the batch scratch to hold T tokens against up to cap keys. */
static int state_reserve(GPTState *s, int T) {
  if (T <= s->n_scratch) return 0;
  size_t C = (size_t)s->m->cfg.n_embd;
  float *p[6];
  size_t n[6] = {T * C, T * C, T * 3 * C, T * C, T * 4 * C, (size_t)T * (size_t)s->cap};
  for (int i = 0; i < 6; i++) {
    p[i] = malloc(n[i] * sizeof(float));
    if (!p[i]) {
      while (i-- > 0) free(p[i]);
      return -1;
    }
  }
  free(s->x); free(s->xn); free(s->qkv); free(s->atty); free(s->fc); free(s->att);
  s->x = p[0]; s->xn = p[1]; s->qkv = p[2]; s->atty = p[3]; s->fc = p[4]; s->att = p[5];
  s->n_scratch = T;
  return 0;
}

/* A state with a KV cache for max_T positions, clamped to the context. */
GPTState *gpt_state_new(const GPTModel *m, int max_T) {
  if (max_T < 1) max_T = 1;
  if (max_T > m->cfg.n_ctx) max_T = m->cfg.n_ctx;
  GPTState *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->m = m;
  s->cap = max_T;
  size_t n = (size_t)m->cfg.n_layer * (size_t)max_T * (size_t)m->cfg.n_embd;
  s->k_cache = malloc(n * sizeof(float));
  s->v_cache = malloc(n * sizeof(float));
  if (!s->k_cache || !s->v_cache || state_reserve(s, 1)) {
    gpt_state_free(s);
    return NULL;
  }
  return s;
}

void gpt_state_free(GPTState *s) {
  if (!s) return;
  free(s->k_cache); free(s->v_cache);
  free(s->x); free(s->xn); free(s->qkv); free(s->atty); free(s->fc); free(s->att);
  free(s->logit_block);
  free(s);
}

int gpt_state_len(const GPTState *s) { return s->len; }
int gpt_state_capacity(const GPTState *s) { return s->cap; }
void gpt_state_truncate(GPTState *s, int len) {
  if (len >= 0 && len < s->len) s->len = len;
}

/* --------------------------------------------------------------- layers */

/* out (T, C) = wte[tokens] + wpe[pos0 + t] */
static void encoder_forward(float *out, const int *tokens, const float *wte,
                            const float *wpe, int pos0, int T, int C) {
  for (int t = 0; t < T; t++) {
    const float *te = wte + (size_t)tokens[t] * C, *pe = wpe + (size_t)(pos0 + t) * C;
    float *o = out + (size_t)t * C;
    for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
  }
}

/* out (T, C) = LayerNorm(inp (T, C)) * w + b; statistics in double so long
** rows keep float32's last digit. */
static void layernorm_forward(float *out, const float *inp, const float *w,
                              const float *b, int T, int C, double eps) {
  for (int t = 0; t < T; t++) {
    const float *x = inp + (size_t)t * C;
    double sum = 0, sq = 0;
    for (int c = 0; c < C; c++) sum += x[c];
    double mean = sum / C;
    for (int c = 0; c < C; c++) { double d = x[c] - mean; sq += d * d; }
    float rstd = (float)(1.0 / sqrt(sq / C + eps)), fmean = (float)mean;
    float *o = out + (size_t)t * C;
    for (int c = 0; c < C; c++) o[c] = (x[c] - fmean) * rstd * w[c] + b[c];
  }
}

/* out (T, OC) = inp (T, C) @ W^T + bias, W kept as (OC, C). One token is a
** gemv (bandwidth-bound); a batch is one gemm (compute-bound). */
static void matmul_forward(float *out, const float *inp, const float *W,
                           const float *bias, int T, int C, int OC) {
  for (int t = 0; t < T; t++) memcpy(out + (size_t)t * OC, bias, (size_t)OC * sizeof(float));
  if (T == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, W, C, inp, 1, 1.0f, out, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, OC, C, 1.0f, inp, C,
                W, C, 1.0f, out, OC);
  }
}

/* In place: x (n,) = gelu(x), the tanh approximation GPT-2 was trained with. */
static void gelu_forward(float *x, size_t n) {
  const float s = 0.7978845608028654f; /* sqrt(2/pi) */
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    x[i] = 0.5f * v * (1.0f + tanhf(s * (v + 0.044715f * v * v * v)));
  }
}

/* x (T, C) += y (T, C) */
static void residual_forward(float *x, const float *y, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* In place: each row of p (T, ld) becomes softmax over its first n_i entries,
** n_i = P + t + 1 (causal); the masked tail is zeroed. */
static void causal_softmax(float *p, int T, int ld, int P) {
  for (int t = 0; t < T; t++) {
    float *row = p + (size_t)t * ld;
    int n = P + t + 1;
    float mx = row[0];
    for (int j = 1; j < n; j++) if (row[j] > mx) mx = row[j];
    double sum = 0;
    for (int j = 0; j < n; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++) row[j] *= inv;
    for (int j = n; j < ld; j++) row[j] = 0.0f;
  }
}

/* Causal multi-head attention for T new queries against P+T cached keys.
** qkv (T, 3C) -> out (T, C); k, v (P+T, C) are this layer's cache rows.
** att is (T, P+T) scratch for one head at a time. */
static int attention_forward(float *out, float *att, const float *qkv,
                             const float *k, const float *v, int P, int T,
                             int C, int NH, int layer, GPTForwardIO *io) {
  int hd = C / NH, nk = P + T;
  float scale = 1.0f / sqrtf((float)hd);
  for (int h = 0; h < NH; h++) {
    const float *qh = qkv + h * hd, *kh = k + h * hd, *vh = v + h * hd;
    if (T == 1) {
      for (int j = 0; j < nk; j++) {
        const float *kj = kh + (size_t)j * C;
        float dot = 0;
        for (int d = 0; d < hd; d++) dot += qh[d] * kj[d];
        att[j] = dot * scale;
      }
    } else {
      /* scores (T, nk) = Q_h (T, hd) @ K_h^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, nk, hd, scale, qh,
                  3 * C, kh, C, 0.0f, att, nk);
    }
    causal_softmax(att, T, nk, P);
    if (io && io->on_attention && io->want_attention &&
        io->want_attention(io->ctx, layer, h) &&
        io->on_attention(io->ctx, layer, h, P, T, nk, att))
      return GPT_ABORTED;
    float *oh = out + h * hd;
    if (T == 1) {
      for (int d = 0; d < hd; d++) oh[d] = 0.0f;
      for (int j = 0; j < nk; j++) {
        const float *vj = vh + (size_t)j * C;
        float a = att[j];
        for (int d = 0; d < hd; d++) oh[d] += a * vj[d];
      }
    } else {
      /* out_h (T, hd) = P (T, nk) @ V_h (nk, hd) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, nk, 1.0f, att,
                  nk, vh, C, 0.0f, oh, C);
    }
  }
  return GPT_OK;
}

/* ---------------------------------------------------------- forward pass */

/* Checks the batch and embeds it into s->x. */
int gpt_batch_begin(const GPTModel *m, GPTState *s, const int *tokens, int n,
                    char *err, size_t n_err) {
  const GPTConfig *c = &m->cfg;
  if (n < 1 || n > s->cap - s->len) {
    snprintf(err, n_err, "%d tokens after %d do not fit the cache of %d positions", n,
             s->len, s->cap);
    return GPT_ERROR;
  }
  for (int t = 0; t < n; t++) {
    if (tokens[t] < 0 || tokens[t] >= c->vocab_size) {
      snprintf(err, n_err, "token id %d at position %d is outside the vocabulary of %d",
               tokens[t], s->len + t, c->vocab_size);
      return GPT_ERROR;
    }
  }
  if (state_reserve(s, n)) {
    snprintf(err, n_err, "out of memory for a batch of %d tokens", n);
    return GPT_NOMEM;
  }
  encoder_forward(s->x, tokens, m->tensor[0], m->tensor[1], s->len, n, c->n_embd);
  s->batch_T = n;
  return GPT_OK;
}

/* Block l over the batch: x += attn(ln_1(x)); x += mlp(ln_2(x)). Keys and
** values of the batch are appended to layer l's cache. */
int gpt_batch_layer(const GPTModel *m, GPTState *s, int l, GPTForwardIO *io) {
  const GPTConfig *c = &m->cfg;
  int C = c->n_embd, T = s->batch_T, P = s->len;
  float *const *w = m->tensor + 2 + (size_t)l * L_COUNT;
  float *kc = s->k_cache + (size_t)l * s->cap * C;
  float *vc = s->v_cache + (size_t)l * s->cap * C;
  if (io && io->should_stop && io->should_stop(io->ctx)) return GPT_ABORTED;

  layernorm_forward(s->xn, s->x, w[L_LN1W], w[L_LN1B], T, C, c->ln_eps);
  matmul_forward(s->qkv, s->xn, w[L_QKVW], w[L_QKVB], T, C, 3 * C);
  for (int t = 0; t < T; t++) {
    const float *row = s->qkv + (size_t)t * 3 * C;
    memcpy(kc + (size_t)(P + t) * C, row + C, (size_t)C * sizeof(float));
    memcpy(vc + (size_t)(P + t) * C, row + 2 * C, (size_t)C * sizeof(float));
  }
  int rc = attention_forward(s->atty, s->att, s->qkv, kc, vc, P, T, C, c->n_head, l, io);
  if (rc) return rc;
  matmul_forward(s->xn, s->atty, w[L_PROJW], w[L_PROJB], T, C, C);
  residual_forward(s->x, s->xn, (size_t)T * C);

  layernorm_forward(s->xn, s->x, w[L_LN2W], w[L_LN2B], T, C, c->ln_eps);
  matmul_forward(s->fc, s->xn, w[L_FCW], w[L_FCB], T, C, 4 * C);
  gelu_forward(s->fc, (size_t)T * 4 * C);
  matmul_forward(s->xn, s->fc, w[L_FCPROJW], w[L_FCPROJB], T, 4 * C, C);
  residual_forward(s->x, s->xn, (size_t)T * C);
  return GPT_OK;
}

/* ln_f, then whatever io asks for: the hidden rows, per-position logits in
** blocks, the last token's logits. Commits the batch to the cache. */
int gpt_batch_end(const GPTModel *m, GPTState *s, GPTForwardIO *io) {
  const GPTConfig *c = &m->cfg;
  int C = c->n_embd, V = c->vocab_size, T = s->batch_T, nBlock = c->n_layer * L_COUNT;
  const float *head = m->has_lm_head ? m->tensor[4 + nBlock] : m->tensor[0];
  layernorm_forward(s->xn, s->x, m->tensor[2 + nBlock], m->tensor[3 + nBlock], T, C,
                    c->ln_eps);
  int P = s->len;
  s->len += T;
  s->batch_T = 0;
  if (!io) return GPT_OK;
  if (io->hidden) memcpy(io->hidden, s->xn, (size_t)T * C * sizeof(float));
  if (io->on_logits) {
    if (!s->logit_block) {
      s->logit_block = malloc((size_t)LOGIT_ROWS * V * sizeof(float));
      if (!s->logit_block) return GPT_NOMEM;
    }
    for (int t0 = 0; t0 < T; t0 += LOGIT_ROWS) {
      int rows = T - t0 < LOGIT_ROWS ? T - t0 : LOGIT_ROWS;
      /* (rows, V) = xn (rows, C) @ head^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, V, C, 1.0f,
                  s->xn + (size_t)t0 * C, C, head, C, 0.0f, s->logit_block, V);
      if (io->on_logits(io->ctx, P + t0, rows, s->logit_block)) return GPT_ABORTED;
    }
  }
  if (io->logits) {
    /* logits (V,) = head (V, C) @ xn[T-1] */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, V, C, 1.0f, head, C,
                s->xn + (size_t)(T - 1) * C, 1, 0.0f, io->logits, 1);
  }
  return GPT_OK;
}

/* The whole pass: begin, every layer, end. On failure the cache keeps its
** old length, so a caller can retry or stop cleanly. */
int gpt_forward(const GPTModel *m, GPTState *s, const int *tokens, int n,
                GPTForwardIO *io, char *err, size_t n_err) {
  int rc = gpt_batch_begin(m, s, tokens, n, err, n_err);
  for (int l = 0; rc == GPT_OK && l < m->cfg.n_layer; l++) rc = gpt_batch_layer(m, s, l, io);
  if (rc == GPT_OK) rc = gpt_batch_end(m, s, io);
  if (rc != GPT_OK) {
    s->batch_T = 0;
    if (rc == GPT_NOMEM) snprintf(err, n_err, "out of memory");
    if (rc == GPT_ABORTED) snprintf(err, n_err, "interrupted");
  }
  return rc;
}
