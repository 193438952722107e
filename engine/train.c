/*
** Training: the backward pass of the decoder, AdamW, clipping, schedule and
** initialization (see train.h).
**
** How it works: gpt_forward runs with a tape attached (gpt_internal.h), so
** the pass keeps each layer's norm inputs and outputs, q|k|v, attention
** probabilities, the MLP's input to its activation and its hidden rows. The
** loss head and the backward pass follow llm.c's free functions
** (crossentropy_softmax, matmul_backward, attention_backward, gelu_backward,
** layernorm_backward) over one sequence of T tokens (B = 1; a batch is a sum
** of sequences). One backward pass serves every architecture: it finds the
** tensors by the roles of gpt.c's slot tables (gpt_tensor_role) and takes
** each step the way the forward pass took it, by what the model has:
**   LayerNorm (a norm bias) or RMSNorm;  learned positions or RoPE
**   (rotate-half, the angles from the tape);  GELU or SwiGLU (a gate);
**   fused q|k|v (GPT-2's c_attn) or q, k, v with or without biases (Qwen2);
**   a per-head q/k RMSNorm before RoPE (Qwen3);  query head h reading
**   key/value head h / (NH / KVH) (GQA), so dK and dV sum over the query
**   heads that share them;  a tied or untied head.
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
#include "kernels.h"
#include "threads.h"
#include "train.h"

/* Columns (or rows) of one sgemm in the backward products. */
#define BWD_CHUNK 128

/* Per-layer roles, R_FIRST_LAYER on, as indices of a layer's row. */
#define N_LAYER_ROLES (R_COUNT - R_FIRST_LAYER)

struct GPTTrainer {
  GPTModel *m;
  GPTConfig cfg;
  int T;                 /* most tokens a sequence may hold */
  int n_tensors;
  int has_head;          /* an lm_head.weight of its own (untied) */
  int64_t *n_elem;       /* (n_tensors,) */
  int *is_2d;            /* (n_tensors,) weight decay applies */
  float **w;             /* (n_tensors,) the model's weights */
  float **buf[3];        /* gradients, Adam m, Adam v, per tensor */
  float *arena[3];       /* their storage, n_params floats each */
  int64_t n_params;
  /* the architecture as the forward pass runs it, read off its tensors */
  int rms_norm;          /* RMSNorm: the norms have no bias */
  int rope;              /* rotary positions: no position table */
  int swiglu;            /* a gate projection */
  int qk_norm;           /* per-head q/k RMSNorm (Qwen3) */
  int C, NH, KVH, hd, Q, KV, F, V;
  int n_live;            /* ids from n_live on have no token (see XentTask) */
  int (*should_stop)(void *); /* interrupt check between layers, or NULL */
  void *stop_ctx;
  int glob[R_FIRST_LAYER]; /* tensor of each global role, or -1; R_HEAD is
                         ** the token embedding when the head is tied */
  int *role;             /* (n_layer, N_LAYER_ROLES) tensor of each role, or -1 */
  GPTState *s;
  GPTTape tape;
  float *tape_arena;
  /* backward scratch */
  float *dx;             /* (T, C) gradient of the residual stream */
  float *dln;            /* (T, C) gradient of a norm's output */
  float *dqkv;           /* (T, Q + 2 KV) */
  float *datty;          /* (T, Q) */
  float *dfc;            /* (T, F), or (T, 2F) gate|up */
  float *dhid;           /* (T, F) */
  float *datt;           /* (nth, T, T) per-thread attention scratch */
  double *row_loss;      /* (T,) each position's loss */
  int n_datt;
};

/* Tensor of role r in layer l, or -1. */
static int layer_tensor(const GPTTrainer *tr, int l, int r) {
  return tr->role[(size_t)l * N_LAYER_ROLES + (r - R_FIRST_LAYER)];
}

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
  /* the last step at lr / 10; a run with one step after the warm-up (steps 1,
  ** say) takes it at lr, not at the end of a decay it never had */
  int64_t span = steps - warmup - 1;
  double progress = span > 0 ? (double)(step - warmup) / (double)span : 0.0;
  if (progress > 1.0) progress = 1.0;
  if (progress < 0.0) progress = 0.0;
  return min_lr + 0.5 * (1.0 + cos(M_PI * progress)) * (lr - min_lr);
}

double gpt_train_flops_per_token(const GPTConfig *c, int T) {
  double C = c->n_embd, L = c->n_layer, V = c->vocab_size, F = gpt_config_ff(c);
  double hd = gpt_config_head_dim(c), Q = c->n_head * hd, KV = gpt_config_kv_heads(c) * hd;
  /* per token and layer: q|k|v C (Q + 2 KV), the output projection Q C, the
  ** MLP 2 C F (GELU) or 3 C F (SwiGLU), attention 2 (T/2) Q (T/2 keys on
  ** average, scores and values); the head V C. GPT-2: 12 C^2 a layer. 2
  ** FLOPs a multiply-add, backward twice the forward */
  double mlp = (c->arch == GPT_ARCH_GPT2 ? 2.0 : 3.0) * C * F;
  double macs = L * (C * (Q + 2.0 * KV) + Q * C + mlp + 2.0 * (T / 2.0) * Q) + V * C;
  return 6.0 * macs;
}

/* ------------------------------------------------------------ lifecycle */

static float *falloc(size_t n) {
  return (float *)calloc(n ? n : 1, sizeof(float));
}

/* Fills tr->glob and tr->role from the slot table's roles and reads the
** architecture off them: what the forward pass does is what the model
** stores (gpt.c's ArchDesc and its slots agree). Returns -1 when a tensor
** the backward pass needs is missing. */
static int trainer_resolve(GPTTrainer *tr) {
  const GPTConfig *c = &tr->cfg;
  for (int r = 0; r < R_FIRST_LAYER; r++) tr->glob[r] = -1;
  for (size_t k = 0; k < (size_t)c->n_layer * N_LAYER_ROLES; k++) tr->role[k] = -1;
  for (int i = 0; i < tr->n_tensors; i++) {
    int l = -1, r = gpt_tensor_role(c, tr->has_head, i, &l);
    if (r < 0) return -1;
    if (r < R_FIRST_LAYER) tr->glob[r] = i;
    else if (l >= 0 && l < c->n_layer)
      tr->role[(size_t)l * N_LAYER_ROLES + (r - R_FIRST_LAYER)] = i;
  }
  if (!tr->has_head) tr->glob[R_HEAD] = tr->glob[R_TOK_EMB];
  tr->rms_norm = layer_tensor(tr, 0, R_ATTN_NORM_B) < 0;
  tr->rope = tr->glob[R_POS_EMB] < 0;
  tr->swiglu = layer_tensor(tr, 0, R_GATE_W) >= 0;
  tr->qk_norm = layer_tensor(tr, 0, R_Q_NORM) >= 0;
  if (tr->glob[R_TOK_EMB] < 0 || tr->glob[R_OUT_NORM_W] < 0 || tr->glob[R_HEAD] < 0) return -1;
  for (int l = 0; l < c->n_layer; l++) {
    int fused = layer_tensor(tr, l, R_QKV_W) >= 0;
    if (layer_tensor(tr, l, R_ATTN_NORM_W) < 0 || layer_tensor(tr, l, R_FFN_NORM_W) < 0 ||
        layer_tensor(tr, l, R_O_W) < 0 || layer_tensor(tr, l, R_UP_W) < 0 ||
        layer_tensor(tr, l, R_DOWN_W) < 0 ||
        (!fused && (layer_tensor(tr, l, R_Q_W) < 0 || layer_tensor(tr, l, R_K_W) < 0 ||
                    layer_tensor(tr, l, R_V_W) < 0)) ||
        (tr->swiglu && layer_tensor(tr, l, R_GATE_W) < 0) ||
        (tr->qk_norm && layer_tensor(tr, l, R_K_NORM) < 0))
      return -1;
  }
  return 0;
}

/* Floats of a trainer's tape for T positions (every layer's saved
** activations, the final norm's, the logits, the rotary table): the
** layout gpt_trainer_new carves it into. */
static size_t tape_floats(const GPTConfig *c, int T, int swiglu, int qk_norm, int rope) {
  size_t t = (size_t)T, C = (size_t)c->n_embd, F = (size_t)gpt_config_ff(c);
  size_t hd = (size_t)gpt_config_head_dim(c), NH = (size_t)c->n_head;
  size_t Q = NH * hd, QKV = Q + 2 * (size_t)gpt_config_kv_heads(c) * hd;
  size_t FC = swiglu ? 2 * F : F;
  size_t per = 4 * t * C + t * QKV * (qk_norm ? 2 : 1) + NH * t * t + t * Q + t * FC + t * F;
  return per * (size_t)c->n_layer + 2 * t * C + t * (size_t)c->vocab_size + (rope ? t * hd : 0);
}

double gpt_trainer_plan_bytes(const GPTConfig *c, int has_head, int T) {
  int llama = c->arch != GPT_ARCH_GPT2;
  double t = T, C = c->n_embd, F = gpt_config_ff(c), hd = gpt_config_head_dim(c);
  double Q = c->n_head * hd, KV = gpt_config_kv_heads(c) * hd;
  double threads = gpt_threads_get() < GPT_MAX_THREADS ? gpt_threads_get() : GPT_MAX_THREADS;
  /* weights, gradients and two moments; the tape; the backward's scratch
  ** and (T, T) attention buffers a thread; the forward's keys and values */
  double floats = 4.0 * (double)gpt_n_params(c, has_head) +
                  (double)tape_floats(c, T, llama, c->arch == GPT_ARCH_QWEN3, llama) +
                  t * (2 * C + Q + 2 * KV + Q + 3 * F) + threads * t * t +
                  2.0 * c->n_layer * t * KV;
  return 4.0 * floats;
}

GPTTrainer *gpt_trainer_new(GPTModel *m, int T, char *err, size_t n_err) {
  const GPTConfig *c = gpt_model_config(m);
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
  tr->has_head = n == gpt_n_tensors(c, 1);
  tr->n_tensors = n;
  tr->n_elem = calloc((size_t)n, sizeof(int64_t));
  tr->is_2d = calloc((size_t)n, sizeof(int));
  tr->w = calloc((size_t)n, sizeof(float *));
  tr->role = calloc((size_t)c->n_layer * N_LAYER_ROLES, sizeof(int));
  for (int k = 0; k < 3; k++) tr->buf[k] = calloc((size_t)n, sizeof(float *));
  if (!tr->n_elem || !tr->is_2d || !tr->w || !tr->role || !tr->buf[0] || !tr->buf[1] ||
      !tr->buf[2])
    goto oom;
  for (int i = 0; i < n; i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, tr->has_head, i, &info);
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
  if (trainer_resolve(tr)) {
    snprintf(err, n_err, "a %s model of %d tensors lacks a tensor that training needs",
             gpt_arch_name(c->arch), n);
    gpt_trainer_free(tr);
    return NULL;
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
  tr->C = c->n_embd;
  tr->NH = c->n_head;
  tr->KVH = gpt_config_kv_heads(c);
  tr->hd = gpt_config_head_dim(c);
  tr->Q = tr->NH * tr->hd;
  tr->KV = tr->KVH * tr->hd;
  tr->F = gpt_config_ff(c);
  tr->V = c->vocab_size;
  tr->n_live = tr->V;
  /* the tape and the scratch */
  size_t t = (size_t)T, C = (size_t)tr->C, F = (size_t)tr->F, V = (size_t)tr->V;
  size_t QKV = (size_t)tr->Q + 2 * (size_t)tr->KV, Q = (size_t)tr->Q;
  size_t FC = tr->swiglu ? 2 * F : F, NH = (size_t)tr->NH;
  tr->tape_arena = falloc(tape_floats(c, T, tr->swiglu, tr->qk_norm, tr->rope));
  tr->tape.layer = calloc((size_t)c->n_layer, sizeof(GPTTapeLayer));
  if (!tr->tape_arena || !tr->tape.layer) goto oom;
  float *p = tr->tape_arena;
  tr->tape.T = T;
  for (int l = 0; l < c->n_layer; l++) {
    GPTTapeLayer *tl = &tr->tape.layer[l];
    tl->x_in = p; p += t * C;
    tl->ln1 = p; p += t * C;
    if (tr->qk_norm) { tl->qkv_pre = p; p += t * QKV; }
    tl->qkv = p; p += t * QKV;
    tl->att = p; p += NH * t * t;
    tl->atty = p; p += t * Q;
    tl->x_mid = p; p += t * C;
    tl->ln2 = p; p += t * C;
    tl->fc = p; p += t * FC;
    tl->hid = p; p += t * F;
  }
  tr->tape.x_f = p; p += t * C;
  tr->tape.ln_f = p; p += t * C;
  tr->tape.logits = p; p += t * V;
  if (tr->rope) tr->tape.rope_cs = p;
  tr->s = gpt_state_new(m, T);
  tr->dx = falloc(t * C);
  tr->dln = falloc(t * C);
  tr->dqkv = falloc(t * QKV);
  tr->datty = falloc(t * Q);
  tr->dfc = falloc(t * FC);
  tr->dhid = falloc(t * F);
  /* a (T, T) scratch per thread of the passes (a larger team later runs the
  ** attention backward on one thread: the same values, more slowly) */
  tr->n_datt = gpt_threads_get() < GPT_MAX_THREADS ? gpt_threads_get() : GPT_MAX_THREADS;
  if (tr->n_datt < 1) tr->n_datt = 1;
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
  free(tr->role);
  free(tr->tape_arena); free(tr->tape.layer);
  free(tr->dx); free(tr->dln); free(tr->dqkv); free(tr->datty); free(tr->dfc); free(tr->dhid);
  free(tr->datt);
  free(tr->row_loss);
  free(tr);
}

/* Tensor by tensor: f32 copied, f16 and q8_0 widened in their memory order,
** which is the same (out, in) order for every dtype. */
int gpt_model_widen(GPTModel *dst, const GPTModel *src, char *err, size_t n_err) {
  GPTModel *s = (GPTModel *)src; /* gpt_model_tensor_data only reads the table */
  const GPTConfig *c = gpt_model_config(dst);
  int n = 0, nSrc = 0;
  while (gpt_model_tensor_data(dst, n)) n++;
  while (gpt_model_tensor_data(s, nSrc)) nSrc++;
  if (n != nSrc) {
    snprintf(err, n_err, "the models differ: %d and %d tensors", n, nSrc);
    return -1;
  }
  int hasHead = n == gpt_n_tensors(c, 1);
  const GPTKernels *k = gpt_kernels();
  for (int i = 0; i < n; i++) {
    GPTTensorInfo info, infoSrc;
    gpt_tensor_info(c, hasHead, i, &info);
    gpt_tensor_info(gpt_model_config(src), hasHead, i, &infoSrc);
    if (strcmp(info.name, infoSrc.name) != 0 || info.shape[0] != infoSrc.shape[0] ||
        info.shape[1] != infoSrc.shape[1]) {
      snprintf(err, n_err, "the models differ at tensor %s", info.name);
      return -1;
    }
    float *d = gpt_model_tensor_data(dst, i);
    const void *from = gpt_model_tensor_data(s, i);
    int dt = gpt_model_tensor_dtype(src, i);
    if (gpt_model_tensor_dtype(dst, i) != GPT_F32) {
      snprintf(err, n_err, "tensor %s of the copy is not held in f32", info.name);
      return -1;
    }
    if (dt == GPT_F32) memcpy(d, from, (size_t)info.n_elem * sizeof(float));
    else if (dt == GPT_F16) k->f16_to_f32(d, from, (size_t)info.n_elem);
    else if (dt == GPT_Q8_0 && gpt_model_tensor_packed(src, i)) {
      int64_t rows, K;
      gpt_tensor_matrix(&info, &rows, &K);
      size_t ld = (size_t)(K / GPT_Q8_BLOCK) * GPT_Q8_BYTES;
      for (int64_t r = 0; r < rows; r++)
        gpt_q8_packed_to_f32(d + r * K, (const uint8_t *)from + r * ld, (int)K, 0,
                             (int)(K / GPT_Q8_BLOCK));
    } else if (dt == GPT_Q8_0) k->q8_to_f32(d, from, (size_t)(info.n_elem / GPT_Q8_BLOCK));
    else {
      /* 4-bit blocks: say which dtypes train, and the way on */
      snprintf(err, n_err, "tensor %s is held as %s; training takes f32, f16, bf16 and q8_0 "
               "(fine-tune the model it was quantized from)", info.name, gpt_dtype_name(dt));
      return -1;
    }
  }
  return 0;
}

void gpt_trainer_zero_grad(GPTTrainer *tr) {
  memset(tr->arena[0], 0, (size_t)tr->n_params * sizeof(float));
}

void gpt_trainer_set_live_vocab(GPTTrainer *tr, int n) {
  tr->n_live = n >= 1 && n <= tr->V ? n : tr->V;
}

void gpt_trainer_set_stop(GPTTrainer *tr, int (*should_stop)(void *ctx), void *ctx) {
  tr->should_stop = should_stop;
  tr->stop_ctx = ctx;
}

/* Whether the caller's interrupt check asks the pass to stop; says so in err. */
static int trainer_stopped(const GPTTrainer *tr, char *err, size_t n_err) {
  if (!tr->should_stop || !tr->should_stop(tr->stop_ctx)) return 0;
  snprintf(err, n_err, "interrupted");
  return 1;
}

float *gpt_trainer_buffer(GPTTrainer *tr, int which, int i) {
  if (which < 0 || which > 2 || i < 0 || i >= tr->n_tensors) return NULL;
  return tr->buf[which][i];
}

/* GPT-2's initialization (nanoGPT's _init_weights and the c_proj scaling),
** by role, so that it means the same for every architecture: 2-D weights
** normal(0, 0.02), the output and down projections 0.02 / sqrt(2 n_layer),
** norm weights 1, biases 0. */
void gpt_train_init(GPTModel *m, uint64_t seed) {
  const GPTConfig *c = gpt_model_config(m);
  int n = 0;
  while (gpt_model_tensor_data(m, n)) n++;
  int hasHead = n == gpt_n_tensors(c, 1);
  uint64_t st = seed ^ 0x5851f42d4c957f2dull;
  double proj_std = 0.02 / sqrt(2.0 * c->n_layer);
  for (int i = 0; i < n; i++) {
    GPTTensorInfo info;
    int l, r = gpt_tensor_role(c, hasHead, i, &l);
    gpt_tensor_info(c, hasHead, i, &info);
    float *w = gpt_model_tensor_data(m, i);
    if (info.ndim == 2) {
      double sd = r == R_O_W || r == R_DOWN_W ? proj_std : 0.02;
      for (int64_t k = 0; k < info.n_elem; k++) w[k] = (float)(sd * rand_normal(&st));
    } else {
      int bNormW = r == R_ATTN_NORM_W || r == R_FFN_NORM_W || r == R_OUT_NORM_W ||
                   r == R_Q_NORM || r == R_K_NORM;
      for (int64_t k = 0; k < info.n_elem; k++) w[k] = bNormW ? 1.0f : 0.0f;
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

/* Backward of out (T, OC) = inp (T, K) @ W^T + b, W (OC, K), out's rows
** ld_dout floats apart (a column block of a wider output, as q of q|k|v):
** dinp (T, K) set, or added to with accumulate (skipped when NULL); dW and
** db (when not NULL) added to. */
static void matmul_backward(GPTTeam *team, const GPTBlas *blas, float *dinp, float *dW,
                            float *db, const float *dout, size_t ld_dout, const float *inp,
                            const float *W, int T, int K, int OC, int accumulate) {
  BwdTask a = {blas, dinp, dW, db, dout, inp, W, T, K, OC, ld_dout, (size_t)K, (size_t)K,
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
    double mean = gpt_row_sum(xr, C) / C, sq = gpt_row_sq_dev(xr, C, mean);
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

/* Backward of one RMSNorm row y = x rstd w (C,), rstd = 1 / sqrt(mean(x^2)
** + eps) as the forward pass computes it: dw (C,) += dy x rstd, and
**   dx = rstd (w dy) - x rstd^3 mean(w dy x)
** set, or added to with accumulate. dx may be dy (in place). */
static void rmsnorm_backward_row(float *dx, float *dw, const float *dy, const float *x,
                                 const float *w, int C, double eps, int accumulate) {
  double dot = 0;
  float rstd = (float)(1.0 / sqrt(gpt_row_sq(x, C) / C + eps));
  for (int c = 0; c < C; c++) dot += (double)(w[c] * dy[c]) * x[c];
  double k = dot / C * (double)rstd * rstd * rstd;
  for (int c = 0; c < C; c++) {
    float g = rstd * (w[c] * dy[c]) - (float)(k * x[c]);
    dw[c] += dy[c] * x[c] * rstd;
    dx[c] = accumulate ? dx[c] + g : g;
  }
}

/* The model's norm backward over (T, C): LayerNorm (with its bias db) or
** RMSNorm. dx += ...; dw, db += ... */
static void norm_backward(const GPTTrainer *tr, float *dx, float *dw, float *db,
                          const float *dout, const float *x, const float *w, int T) {
  int C = tr->C;
  if (!tr->rms_norm) {
    layernorm_backward(dx, dw, db, dout, x, w, T, C, tr->cfg.ln_eps);
    return;
  }
  for (int t = 0; t < T; t++)
    rmsnorm_backward_row(dx + (size_t)t * C, dw, dout + (size_t)t * C, x + (size_t)t * C, w, C,
                         tr->cfg.ln_eps, 1);
}

/* SwiGLU's backward, hid = silu(gate) * up with gate|up the halves of fc
** (T, 2F): with s = sigmoid(gate),
**   dgate = dhid * up * s (1 + gate (1 - s)),  dup = dhid * gate * s.
** Elements lo..hi of (T, F). */
typedef struct SwigluBwd { float *dfc; const float *fc, *dhid; size_t F; } SwigluBwd;

static void swiglu_backward_range(void *ctx, size_t lo, size_t hi) {
  SwigluBwd *a = (SwigluBwd *)ctx;
  size_t F = a->F;
  for (size_t i = lo; i < hi; i++) {
    size_t t = i / F, f = i % F;
    const float *g = a->fc + t * 2 * F, *u = g + F;
    float *dg = a->dfc + t * 2 * F, *du = dg + F;
    float s = 1.0f / (1.0f + expf(-g[f])), dh = a->dhid[i];
    dg[f] = dh * u[f] * s * (1.0f + g[f] * (1.0f - s));
    du[f] = dh * g[f] * s;
  }
}

static void swiglu_backward(GPTTeam *team, float *dfc, const float *fc, const float *dhid,
                            int T, int F) {
  SwigluBwd a = {dfc, fc, dhid, (size_t)F};
  parallel_for(team, swiglu_backward_range, &a, (size_t)T * F);
}

/* Backward of the q/k heads' forward (gpt.c's qk_heads_rows), in place
** on the q and k heads of dqkv (T, Q + 2 KV): RoPE's inverse rotation, pairs
** (i, i + hd/2) turned back by their angle,
**   dx0 = dy0 cos + dy1 sin,  dx1 = dy1 cos - dy0 sin,
** then, with a q/k norm (Qwen3), each head's RMSNorm backward against its
** input from the tape, into the gradients of q_norm and k_norm (hd,). */
static void qk_heads_backward(const GPTTrainer *tr, int l, float *dqkv, const float *qkv_pre,
                              int T) {
  int hd = tr->hd, half = hd / 2, NH = tr->NH, KVH = tr->KVH;
  size_t ld = (size_t)tr->Q + 2 * (size_t)tr->KV;
  int iq = layer_tensor(tr, l, R_Q_NORM), ik = layer_tensor(tr, l, R_K_NORM);
  for (int t = 0; t < T; t++) {
    const float *cs = tr->tape.rope_cs ? tr->tape.rope_cs + (size_t)t * half * 2 : NULL;
    for (int h = 0; h < NH + KVH; h++) {
      float *d = dqkv + (size_t)t * ld + (size_t)h * hd;
      if (tr->rope) {
        for (int i = 0; i < half; i++) {
          float c = cs[2 * i], sn = cs[2 * i + 1], d0 = d[i], d1 = d[i + half];
          d[i] = d0 * c + d1 * sn;
          d[i + half] = d1 * c - d0 * sn;
        }
      }
      if (iq >= 0 && ik >= 0) {
        int i = h < NH ? iq : ik;
        rmsnorm_backward_row(d, tr->buf[0][i], d, qkv_pre + (size_t)t * ld + (size_t)h * hd,
                             tr->w[i], hd, tr->cfg.ln_eps, 0);
      }
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

/* Backward of causal attention over one sequence (P = 0): qkv (T, Q + 2 KV)
** and att (NH, T, T) from the tape, datty (T, Q) -> dqkv (T, Q + 2 KV).
** Query head h read key/value head h / (NH / KVH): each key/value head is
** claimed by one member of the team, which runs its group of query heads in
** order, summing their dK and dV, with its own (T, T) scratch. */
typedef struct AttBwdTask {
  const GPTBlas *blas;
  float *dqkv, *scratch;
  const float *datty, *qkv, *att;
  int T, NH, KVH, hd, Q, KV;
  atomic_int next;
} AttBwdTask;

static void att_bwd_task(void *arg, int ith, int nth) {
  AttBwdTask *a = (AttBwdTask *)arg;
  int T = a->T, hd = a->hd, Q = a->Q, ld = a->Q + 2 * a->KV, group = a->NH / a->KVH, g;
  float scale = 1.0f / sqrtf((float)hd);
  float *dA = a->scratch + (size_t)ith * T * T;
  (void)nth;
  while ((g = atomic_fetch_add(&a->next, 1)) < a->KVH) {
    const float *k = a->qkv + Q + (size_t)g * hd, *v = k + a->KV;
    float *dk = a->dqkv + Q + (size_t)g * hd, *dv = dk + a->KV;
    for (int h = g * group; h < (g + 1) * group; h++) {
      float beta = h == g * group ? 0.0f : 1.0f; /* the group's first head sets dK, dV */
      const float *A = a->att + (size_t)h * T * T;
      const float *q = a->qkv + (size_t)h * hd, *dO = a->datty + (size_t)h * hd;
      float *dq = a->dqkv + (size_t)h * hd;
      /* dA (T, T) = dO (T, hd) @ V^T; dV (T, hd) (+)= A^T @ dO */
      sgemm(a->blas, 0, 1, T, T, hd, 1.0f, dO, Q, v, ld, 0.0f, dA, T);
      sgemm(a->blas, 1, 0, T, hd, T, 1.0f, A, T, dO, Q, beta, dv, ld);
      /* softmax: dS = A * (dA - sum_j A dA), causal entries only */
      for (int t = 0; t < T; t++) {
        const float *ar = A + (size_t)t * T;
        float *dr = dA + (size_t)t * T;
        double dot = 0;
        for (int j = 0; j <= t; j++) dot += (double)ar[j] * dr[j];
        for (int j = 0; j <= t; j++) dr[j] = ar[j] * (dr[j] - (float)dot);
        for (int j = t + 1; j < T; j++) dr[j] = 0.0f;
      }
      /* dQ = scale dS @ K; dK (+)= scale dS^T @ Q */
      sgemm(a->blas, 0, 0, T, hd, T, scale, dA, T, k, ld, 0.0f, dq, ld);
      sgemm(a->blas, 1, 0, T, hd, T, scale, dA, T, q, ld, beta, dk, ld);
    }
  }
}

/* Softmax and cross-entropy over logits (T, V) in place: the rows become
** dlogits = scale (softmax - onehot(target)), each row's loss in rowLoss
** (T,). Ids from nLive on have no token: their logits count as -inf, as
** inference masks them (probability 0, gradient 0). Rows lo..hi. */
typedef struct XentTask {
  float *logits;
  const int *targets;
  double *rowLoss;
  int V, nLive;
  float scale;
} XentTask;

static void crossentropy_rows(void *ctx, size_t lo, size_t hi) {
  XentTask *a = (XentTask *)ctx;
  int V = a->V, nLive = a->nLive;
  for (size_t t = lo; t < hi; t++) {
    float *row = a->logits + t * V;
    float mx = row[0];
    for (int j = 1; j < nLive; j++) if (row[j] > mx) mx = row[j];
    double sum = 0;
    /* -log p = log(sum) - (x - mx): a target far below the maximum has a
    ** probability that underflows, but a finite loss */
    double shifted = (double)row[a->targets[t]] - mx;
    for (int j = 0; j < nLive; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
    a->rowLoss[t] = log(sum) - shifted;
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < nLive; j++) row[j] *= inv * a->scale;
    for (int j = nLive; j < V; j++) row[j] = 0.0f;
    row[a->targets[t]] -= a->scale;
  }
}

/* The same over all T rows, split over the team by rows (each row whole on
** one member); returns the summed loss, added in row order. */
static double crossentropy_backward(GPTTeam *team, double *rowLoss, float *logits,
                                    const int *targets, int T, int V, int nLive,
                                    float scale) {
  XentTask a = {logits, targets, rowLoss, V, nLive, scale};
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
  for (int t = 1; t <= T; t++) {
    if (tokens[t] < 0 || tokens[t] >= tr->n_live) {
      snprintf(err, n_err, "target token id %d at position %d is outside the %d ids that have "
               "a token", tokens[t], t, tr->n_live);
      return GPT_ERROR;
    }
  }
  gpt_state_truncate(tr->s, 0);
  /* the forward pass asks should_stop between its layers */
  GPTForwardIO io;
  memset(&io, 0, sizeof(io));
  io.should_stop = tr->should_stop;
  io.ctx = tr->stop_ctx;
  return gpt_forward(tr->m, tr->s, tokens, T, tr->should_stop ? &io : NULL, err, n_err);
}

int gpt_trainer_eval(GPTTrainer *tr, const int *tokens, int T, double *pLoss, char *err,
                     size_t n_err) {
  int rc = taped_forward(tr, tokens, T, err, n_err);
  if (rc) return rc;
  GPTTeam *team = gpt_team_acquire(gpt_threads_get());
  *pLoss = crossentropy_backward(team, tr->row_loss, tr->tape.logits, tokens + 1, T,
                                 tr->V, tr->n_live, 0.0f) / T;
  gpt_team_release(team);
  return GPT_OK;
}

int gpt_trainer_sequence(GPTTrainer *tr, const int *tokens, int T, double grad_scale,
                         double *pLoss, char *err, size_t n_err) {
  int rc = taped_forward(tr, tokens, T, err, n_err);
  if (rc) return rc;
  int C = tr->C, V = tr->V, F = tr->F, Q = tr->Q, KV = tr->KV, QKV = Q + 2 * KV;
  float **g = tr->buf[0], **w = tr->w;
  GPTTape *tp = &tr->tape;
  GPTTeam *team = gpt_team_acquire(gpt_threads_get());
  const GPTBlas *blas = gpt_blas();
  size_t TC = (size_t)T * C;
#define GRAD(i) ((i) >= 0 ? g[i] : NULL) /* a bias the model may lack */

  *pLoss = crossentropy_backward(team, tr->row_loss, tp->logits, tokens + 1, T, V, tr->n_live,
                                 (float)(grad_scale / T)) / T;
  /* an interrupt is asked before the head and each half of each layer: a
  ** window of thousands of tokens takes seconds */
  if (trainer_stopped(tr, err, n_err)) {
    gpt_team_release(team);
    return GPT_ABORTED;
  }
  /* head: logits (T, V) = ln_f (T, C) @ head^T (the token embedding when tied) */
  int iHead = tr->glob[R_HEAD];
  matmul_backward(team, blas, tr->dln, g[iHead], NULL, tp->logits, (size_t)V, tp->ln_f,
                  w[iHead], T, C, V, 0);
  memset(tr->dx, 0, TC * sizeof(float));
  norm_backward(tr, tr->dx, g[tr->glob[R_OUT_NORM_W]], GRAD(tr->glob[R_OUT_NORM_B]), tr->dln,
                tp->x_f, w[tr->glob[R_OUT_NORM_W]], T);
  for (int l = tr->cfg.n_layer - 1; l >= 0; l--) {
    const GPTTapeLayer *tl = &tp->layer[l];
#define LT(r) layer_tensor(tr, l, r)
    if (trainer_stopped(tr, err, n_err)) {
      gpt_team_release(team);
      return GPT_ABORTED;
    }
    /* MLP: x += down(act(fc(norm_2(x_mid)))), act GELU or SwiGLU */
    matmul_backward(team, blas, tr->dhid, g[LT(R_DOWN_W)], GRAD(LT(R_DOWN_B)), tr->dx,
                    (size_t)C, tl->hid, w[LT(R_DOWN_W)], T, F, C, 0);
    if (tr->swiglu) {
      /* fc (T, 2F) = gate|up of ln2 */
      swiglu_backward(team, tr->dfc, tl->fc, tr->dhid, T, F);
      matmul_backward(team, blas, tr->dln, g[LT(R_GATE_W)], NULL, tr->dfc, 2 * (size_t)F,
                      tl->ln2, w[LT(R_GATE_W)], T, C, F, 0);
      matmul_backward(team, blas, tr->dln, g[LT(R_UP_W)], GRAD(LT(R_UP_B)), tr->dfc + F,
                      2 * (size_t)F, tl->ln2, w[LT(R_UP_W)], T, C, F, 1);
    } else {
      gelu_backward(team, tr->dfc, tl->fc, tr->dhid, (size_t)T * F);
      matmul_backward(team, blas, tr->dln, g[LT(R_UP_W)], GRAD(LT(R_UP_B)), tr->dfc, (size_t)F,
                      tl->ln2, w[LT(R_UP_W)], T, C, F, 0);
    }
    norm_backward(tr, tr->dx, g[LT(R_FFN_NORM_W)], GRAD(LT(R_FFN_NORM_B)), tr->dln, tl->x_mid,
                  w[LT(R_FFN_NORM_W)], T);
    if (trainer_stopped(tr, err, n_err)) {
      gpt_team_release(team);
      return GPT_ABORTED;
    }
    /* attention: x += o(attn(qk_heads(qkv(norm_1(x_in))))) */
    matmul_backward(team, blas, tr->datty, g[LT(R_O_W)], GRAD(LT(R_O_B)), tr->dx, (size_t)C,
                    tl->atty, w[LT(R_O_W)], T, Q, C, 0);
    AttBwdTask at = {blas, tr->dqkv, tr->datt, tr->datty, tl->qkv, tl->att, T, tr->NH, tr->KVH,
                     tr->hd, Q, KV, 0};
    if (gpt_team_size(team) > tr->n_datt || tr->KVH < 2 ||
        (int64_t)T * T * Q < ((int64_t)1 << 18))
      att_bwd_task(&at, 0, 1);
    else
      gpt_team_run(team, att_bwd_task, &at);
    if (tr->rope || tr->qk_norm) qk_heads_backward(tr, l, tr->dqkv, tl->qkv_pre, T);
    if (LT(R_QKV_W) >= 0) {
      matmul_backward(team, blas, tr->dln, g[LT(R_QKV_W)], GRAD(LT(R_QKV_B)), tr->dqkv,
                      (size_t)QKV, tl->ln1, w[LT(R_QKV_W)], T, C, QKV, 0);
    } else {
      matmul_backward(team, blas, tr->dln, g[LT(R_Q_W)], GRAD(LT(R_Q_B)), tr->dqkv, (size_t)QKV,
                      tl->ln1, w[LT(R_Q_W)], T, C, Q, 0);
      matmul_backward(team, blas, tr->dln, g[LT(R_K_W)], GRAD(LT(R_K_B)), tr->dqkv + Q,
                      (size_t)QKV, tl->ln1, w[LT(R_K_W)], T, C, KV, 1);
      matmul_backward(team, blas, tr->dln, g[LT(R_V_W)], GRAD(LT(R_V_B)), tr->dqkv + Q + KV,
                      (size_t)QKV, tl->ln1, w[LT(R_V_W)], T, C, KV, 1);
    }
    norm_backward(tr, tr->dx, g[LT(R_ATTN_NORM_W)], GRAD(LT(R_ATTN_NORM_B)), tr->dln, tl->x_in,
                  w[LT(R_ATTN_NORM_W)], T);
#undef LT
  }
#undef GRAD
  /* embeddings: x = tok_emb[token] (+ pos_emb[position]) */
  float *gTok = g[tr->glob[R_TOK_EMB]];
  float *gPos = tr->glob[R_POS_EMB] >= 0 ? g[tr->glob[R_POS_EMB]] : NULL;
  for (int t = 0; t < T; t++) {
    const float *d = tr->dx + (size_t)t * C;
    float *gt = gTok + (size_t)tokens[t] * C;
    for (int k = 0; k < C; k++) gt[k] += d[k];
    if (gPos)
      for (int k = 0; k < C; k++) gPos[(size_t)t * C + k] += d[k];
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
