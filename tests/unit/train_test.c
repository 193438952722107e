/*
** Unit test of training (engine/train.c), without SQLite.
**
** 1. Gradients: on tiny models of every architecture with random weights
**    (GPT-2 tied and untied; Llama with GQA 2, tied, and untied with Llama
**    3.1's RoPE scaling; Qwen2 with q/k/v biases and one key/value head;
**    Qwen3 with its q/k norm, head_dim 6 != n_embd / n_head 4, GQA 2, tied
**    and untied, and with ids 8..10 of 11 without a token, as a padded
**    vocabulary leaves them), the gradient of the mean loss of a batch of
**    two sequences that the trainer computes (float32 forward with the
**    tape, then backward) is compared, for EVERY parameter, with central finite
**    differences of an independent float64 forward pass written here from
**    Hugging Face's definitions (h = 1e-5). Bound: per tensor,
**    ||g - g_fd|| / ||g_fd|| < 1e-4 and every element within 1e-4 *
**    max|g_fd| of the tensor + 1e-7 (measured: GPT-2 2.0e-6, the Llama
**    family 1.8e-6 at worst).
** 2. Learning: a 2-layer, 48-wide model on a fixed 200-character corpus
**    (character tokens) brings the training loss from ln(V) = 3.3 to below
**    0.8 nats within 300 AdamW steps (batch 4 x 16 tokens, lr 5e-3, seed 1;
**    measured 0.61).
** 3. The schedule, clipping and reproducibility: the same seed gives the
**    same weights bit for bit, and so do 1 and 3 threads.
** 4. The Llama family learns too: a 2-layer Qwen3-shaped model (GQA 2, q/k
**    norm, head_dim 16 != 48 / 4) on the same corpus, with the same
**    settings, goes from ln(V) to below 0.8 nats within 300 steps (measured
**    0.46), and the same seed gives the same weights bit for bit.
** 5. An interrupt check asked between the layers of both passes stops a
**    sequence (GPT_ABORTED) at each of its points without harm.
**
**   build/train_test        prints "N passed, N failed"; exit 1 on failure
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"
#include "gpt_internal.h"
#include "train.h"

#include "check.h"

/* ------------------------------------------------ float64 reference pass */

/* Parameters of the reference, one double array per tensor, in the model's
** memory layout (2-D weights (out, in)). */
typedef struct Ref {
  GPTConfig c;
  int has_head, n;
  double **p;
  int64_t *n_elem;
  int n_live;   /* ids from n_live on have no token: left out of the softmax */
} Ref;

static double *refp(const Ref *r, const char *zFmt, int l) {
  char z[96];
  snprintf(z, sizeof(z), zFmt, l);
  int i = gpt_tensor_index(&r->c, r->has_head, z);
  return i >= 0 ? r->p[i] : NULL;
}

/* y (T, OC) = x (T, K) @ W^T + b */
static void ref_linear(double *y, const double *x, const double *W, const double *b, int T,
                       int K, int OC) {
  for (int t = 0; t < T; t++)
    for (int o = 0; o < OC; o++) {
      double s = b ? b[o] : 0;
      for (int k = 0; k < K; k++) s += x[t * K + k] * W[o * K + k];
      y[t * OC + o] = s;
    }
}

static void ref_layernorm(double *y, const double *x, const double *w, const double *b, int T,
                          int C, double eps) {
  for (int t = 0; t < T; t++) {
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += x[t * C + c];
    m /= C;
    for (int c = 0; c < C; c++) v += (x[t * C + c] - m) * (x[t * C + c] - m);
    v /= C;
    for (int c = 0; c < C; c++) y[t * C + c] = (x[t * C + c] - m) / sqrt(v + eps) * w[c] + b[c];
  }
}

/* Mean cross-entropy of tokens[1..T] given tokens[0..T). */
static double ref_loss(const Ref *r, const int *tok, int T) {
  int C = r->c.n_embd, NH = r->c.n_head, hd = C / NH, V = r->c.vocab_size, F = 4 * C;
  double eps = r->c.ln_eps;
  double *x = calloc((size_t)T * C, 8), *h = calloc((size_t)T * C, 8);
  double *qkv = calloc((size_t)T * 3 * C, 8), *y = calloc((size_t)T * C, 8);
  double *o = calloc((size_t)T * C, 8), *f = calloc((size_t)T * F, 8);
  double *lg = calloc((size_t)V, 8), *att = calloc((size_t)T, 8);
  const double *wte = refp(r, "wte.weight", 0), *wpe = refp(r, "wpe.weight", 0);
  for (int t = 0; t < T; t++)
    for (int c = 0; c < C; c++) x[t * C + c] = wte[tok[t] * C + c] + wpe[t * C + c];
  for (int l = 0; l < r->c.n_layer; l++) {
    ref_layernorm(h, x, refp(r, "h.%d.ln_1.weight", l), refp(r, "h.%d.ln_1.bias", l), T, C, eps);
    ref_linear(qkv, h, refp(r, "h.%d.attn.c_attn.weight", l), refp(r, "h.%d.attn.c_attn.bias", l),
               T, C, 3 * C);
    for (int hh = 0; hh < NH; hh++)
      for (int t = 0; t < T; t++) {
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= t; j++) {
          double s = 0;
          for (int d = 0; d < hd; d++)
            s += qkv[t * 3 * C + hh * hd + d] * qkv[j * 3 * C + C + hh * hd + d];
          att[j] = s / sqrt((double)hd);
          if (att[j] > mx) mx = att[j];
        }
        for (int j = 0; j <= t; j++) { att[j] = exp(att[j] - mx); sum += att[j]; }
        for (int d = 0; d < hd; d++) {
          double s = 0;
          for (int j = 0; j <= t; j++) s += att[j] / sum * qkv[j * 3 * C + 2 * C + hh * hd + d];
          y[t * C + hh * hd + d] = s;
        }
      }
    ref_linear(o, y, refp(r, "h.%d.attn.c_proj.weight", l), refp(r, "h.%d.attn.c_proj.bias", l),
               T, C, C);
    for (int i = 0; i < T * C; i++) x[i] += o[i];
    ref_layernorm(h, x, refp(r, "h.%d.ln_2.weight", l), refp(r, "h.%d.ln_2.bias", l), T, C, eps);
    ref_linear(f, h, refp(r, "h.%d.mlp.c_fc.weight", l), refp(r, "h.%d.mlp.c_fc.bias", l), T, C,
               F);
    for (int i = 0; i < T * F; i++) {
      double v = f[i];
      f[i] = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    }
    ref_linear(o, f, refp(r, "h.%d.mlp.c_proj.weight", l), refp(r, "h.%d.mlp.c_proj.bias", l),
               T, F, C);
    for (int i = 0; i < T * C; i++) x[i] += o[i];
  }
  ref_layernorm(h, x, refp(r, "ln_f.weight", 0), refp(r, "ln_f.bias", 0), T, C, eps);
  const double *head = r->has_head ? refp(r, "lm_head.weight", 0) : wte;
  double loss = 0;
  for (int t = 0; t < T; t++) {
    ref_linear(lg, h + t * C, head, NULL, 1, C, V);
    double mx = -1e300, sum = 0;
    for (int v = 0; v < r->n_live; v++) if (lg[v] > mx) mx = lg[v];
    for (int v = 0; v < r->n_live; v++) sum += exp(lg[v] - mx);
    loss += -(lg[tok[t + 1]] - mx - log(sum));
  }
  free(x); free(h); free(qkv); free(y); free(o); free(f); free(lg); free(att);
  return loss / T;
}

/* out (n,) = x / sqrt(mean(x^2) + eps) * w */
static void ref_rmsnorm(double *y, const double *x, const double *w, int n, double eps) {
  double sq = 0;
  for (int c = 0; c < n; c++) sq += x[c] * x[c];
  double r = 1.0 / sqrt(sq / n + eps);
  for (int c = 0; c < n; c++) y[c] = x[c] * r * w[c];
}

/* RoPE's inverse frequencies as transformers computes them
** (_compute_default_rope_parameters, _compute_llama3_parameters). */
static void ref_inv_freq(const GPTConfig *c, int hd, double *f) {
  double theta = c->rope_theta > 0 ? c->rope_theta : 10000.0;
  for (int i = 0; i < hd / 2; i++) {
    double inv = 1.0 / pow(theta, 2.0 * i / hd);
    if (c->rope_scaling == GPT_ROPE_LLAMA3) {
      double lowWave = c->rope_original_ctx / c->rope_low_freq_factor;
      double highWave = c->rope_original_ctx / c->rope_high_freq_factor;
      double wave = 2 * M_PI / inv;
      double scaled = wave > lowWave ? inv / c->rope_factor : inv;
      double smooth = (c->rope_original_ctx / wave - c->rope_low_freq_factor) /
                      (c->rope_high_freq_factor - c->rope_low_freq_factor);
      if (!(wave < highWave) && !(wave > lowWave))
        scaled = (1 - smooth) * scaled / c->rope_factor + smooth * scaled;
      inv = scaled;
    }
    f[i] = inv;
  }
}

/* The Llama family (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)
** in float64: mean cross-entropy of tokens[1..T] given tokens[0..T). */
static double ref_loss_llama(const Ref *r, const int *tok, int T) {
  const GPTConfig *c = &r->c;
  int C = c->n_embd, NH = c->n_head, KVH = gpt_config_kv_heads(c), hd = gpt_config_head_dim(c);
  int Q = NH * hd, KV = KVH * hd, F = gpt_config_ff(c), V = c->vocab_size;
  double eps = c->ln_eps, freq[64];
  double *x = calloc((size_t)T * C, 8), *h = calloc((size_t)T * C, 8);
  double *q = calloc((size_t)T * Q, 8), *k = calloc((size_t)T * KV, 8);
  double *v = calloc((size_t)T * KV, 8), *y = calloc((size_t)T * Q, 8);
  double *o = calloc((size_t)T * C, 8), *gt = calloc((size_t)T * F, 8);
  double *up = calloc((size_t)T * F, 8), *lg = calloc((size_t)V, 8), *att = calloc((size_t)T, 8);
  const double *emb = refp(r, "model.embed_tokens.weight", 0);
  ref_inv_freq(c, hd, freq);
  for (int t = 0; t < T; t++)
    for (int i = 0; i < C; i++) x[t * C + i] = emb[tok[t] * C + i];
  for (int l = 0; l < c->n_layer; l++) {
    for (int t = 0; t < T; t++)
      ref_rmsnorm(h + t * C, x + t * C, refp(r, "model.layers.%d.input_layernorm.weight", l), C,
                  eps);
    ref_linear(q, h, refp(r, "model.layers.%d.self_attn.q_proj.weight", l),
               refp(r, "model.layers.%d.self_attn.q_proj.bias", l), T, C, Q);
    ref_linear(k, h, refp(r, "model.layers.%d.self_attn.k_proj.weight", l),
               refp(r, "model.layers.%d.self_attn.k_proj.bias", l), T, C, KV);
    ref_linear(v, h, refp(r, "model.layers.%d.self_attn.v_proj.weight", l),
               refp(r, "model.layers.%d.self_attn.v_proj.bias", l), T, C, KV);
    const double *qn = refp(r, "model.layers.%d.self_attn.q_norm.weight", l);
    const double *kn = refp(r, "model.layers.%d.self_attn.k_norm.weight", l);
    for (int t = 0; t < T; t++)
      for (int hh = 0; hh < NH + KVH; hh++) {
        double *z = hh < NH ? q + t * Q + hh * hd : k + t * KV + (hh - NH) * hd, tmp[64];
        if (qn) ref_rmsnorm(z, z, hh < NH ? qn : kn, hd, eps);
        /* rotate_half: (x0, x1) -> x * cos + (-x1, x0) * sin */
        for (int i = 0; i < hd / 2; i++) {
          double a = t * freq[i], cs = cos(a), sn = sin(a);
          tmp[i] = z[i] * cs - z[i + hd / 2] * sn;
          tmp[i + hd / 2] = z[i + hd / 2] * cs + z[i] * sn;
        }
        memcpy(z, tmp, sizeof(double) * (size_t)hd);
      }
    for (int hh = 0; hh < NH; hh++) {
      int kvh = hh / (NH / KVH);
      for (int t = 0; t < T; t++) {
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= t; j++) {
          double sc = 0;
          for (int d = 0; d < hd; d++) sc += q[t * Q + hh * hd + d] * k[j * KV + kvh * hd + d];
          att[j] = sc / sqrt((double)hd);
          if (att[j] > mx) mx = att[j];
        }
        for (int j = 0; j <= t; j++) { att[j] = exp(att[j] - mx); sum += att[j]; }
        for (int d = 0; d < hd; d++) {
          double sv = 0;
          for (int j = 0; j <= t; j++) sv += att[j] / sum * v[j * KV + kvh * hd + d];
          y[t * Q + hh * hd + d] = sv;
        }
      }
    }
    ref_linear(o, y, refp(r, "model.layers.%d.self_attn.o_proj.weight", l), NULL, T, Q, C);
    for (int i = 0; i < T * C; i++) x[i] += o[i];
    for (int t = 0; t < T; t++)
      ref_rmsnorm(h + t * C, x + t * C,
                  refp(r, "model.layers.%d.post_attention_layernorm.weight", l), C, eps);
    ref_linear(gt, h, refp(r, "model.layers.%d.mlp.gate_proj.weight", l), NULL, T, C, F);
    ref_linear(up, h, refp(r, "model.layers.%d.mlp.up_proj.weight", l), NULL, T, C, F);
    for (int i = 0; i < T * F; i++) gt[i] = gt[i] / (1.0 + exp(-gt[i])) * up[i];
    ref_linear(o, gt, refp(r, "model.layers.%d.mlp.down_proj.weight", l), NULL, T, F, C);
    for (int i = 0; i < T * C; i++) x[i] += o[i];
  }
  const double *head = r->has_head ? refp(r, "lm_head.weight", 0) : emb;
  double loss = 0;
  for (int t = 0; t < T; t++) {
    ref_rmsnorm(h, x + t * C, refp(r, "model.norm.weight", 0), C, eps);
    ref_linear(lg, h, head, NULL, 1, C, V);
    double mx = -1e300, sum = 0;
    for (int i = 0; i < r->n_live; i++) if (lg[i] > mx) mx = lg[i];
    for (int i = 0; i < r->n_live; i++) sum += exp(lg[i] - mx);
    loss += -(lg[tok[t + 1]] - mx - log(sum));
  }
  free(x); free(h); free(q); free(k); free(v); free(y); free(o); free(gt); free(up); free(lg);
  free(att);
  return loss / T;
}

static double ref_batch_loss(const Ref *r, int tok[2][7], int T) {
  double (*f)(const Ref *, const int *, int) =
      r->c.arch == GPT_ARCH_GPT2 ? ref_loss : ref_loss_llama;
  return (f(r, tok[0], T) + f(r, tok[1], T)) / 2;
}

/* ------------------------------------------------------------ the tests */

static uint64_t gRng = 12345;

/* Uniform in [-a, a]. */
static double urand(double a) {
  return a * (2.0 * (double)(gpt_train_rand(&gRng) >> 11) / 9007199254740992.0 - 1.0);
}

/* Every parameter's gradient against float64 finite differences, on a
** model of config c (random weights; norm weights near 1). Returns the worst
** per-tensor relative error. */
static double check_gradients(const char *zLabel, const GPTConfig *pc, int has_head,
                              int n_live) {
  GPTConfig c = *pc;
  char err[200];
  GPTModel *m = gpt_model_new(&c, has_head, err, sizeof(err));
  CHECK(m != NULL, "%s: gpt_model_new: %s", zLabel, err);
  if (!m) return 1;
  int n = gpt_n_tensors(&c, has_head);
  Ref r = {c, has_head, n, calloc((size_t)n, sizeof(double *)), calloc((size_t)n, 8), n_live};
  for (int i = 0; i < n; i++) {
    GPTTensorInfo info;
    gpt_tensor_info(&c, has_head, i, &info);
    float *w = gpt_model_tensor_data(m, i);
    int isNormW = info.ndim == 1 && (strstr(info.name, "ln_") || strstr(info.name, "norm")) &&
                  strstr(info.name, "weight");
    double a = info.ndim == 2 ? 0.5 : 0.2;
    r.n_elem[i] = info.n_elem;
    r.p[i] = calloc((size_t)info.n_elem, 8);
    for (int64_t k = 0; k < info.n_elem; k++) {
      w[k] = (float)(isNormW ? 1.0 + urand(0.3) : urand(a));
      r.p[i][k] = w[k];
    }
  }
  int T = 6, B = 2;
  int tok[2][7] = {{1, 5, 2, 9, 0, 3, 10}, {4, 4, 7, 1, 8, 6, 2}};
  for (int b = 0; b < B; b++)
    for (int t = 0; t <= T; t++) tok[b][t] %= n_live;
  GPTTrainer *tr = gpt_trainer_new(m, T, err, sizeof(err));
  CHECK(tr != NULL, "%s: gpt_trainer_new: %s", zLabel, err);
  if (!tr) return 1;
  gpt_trainer_set_live_vocab(tr, n_live);
  gpt_trainer_zero_grad(tr);
  double loss = 0, lossB;
  for (int b = 0; b < B; b++) {
    int rc = gpt_trainer_sequence(tr, tok[b], T, 1.0 / B, &lossB, err, sizeof(err));
    CHECK(rc == GPT_OK, "%s: sequence: %s", zLabel, err);
    loss += lossB / B;
  }
  double refLoss = ref_batch_loss(&r, tok, T);
  CHECK(fabs(loss - refLoss) < 1e-5, "%s: loss %.8f, float64 reference %.8f", zLabel, loss,
        refLoss);
  double worstRel = 0;
  for (int i = 0; i < n; i++) {
    GPTTensorInfo info;
    gpt_tensor_info(&c, has_head, i, &info);
    const float *g = gpt_trainer_buffer(tr, 0, i);
    double *fd = calloc((size_t)info.n_elem, 8), h = 1e-5, num = 0, den = 0, gmax = 0;
    for (int64_t k = 0; k < info.n_elem; k++) {
      double save = r.p[i][k];
      r.p[i][k] = save + h;
      double lp = ref_batch_loss(&r, tok, T);
      r.p[i][k] = save - h;
      double lm = ref_batch_loss(&r, tok, T);
      r.p[i][k] = save;
      fd[k] = (lp - lm) / (2 * h);
      if (fabs(fd[k]) > gmax) gmax = fabs(fd[k]);
    }
    int64_t bad = -1;
    for (int64_t k = 0; k < info.n_elem; k++) {
      double d = g[k] - fd[k];
      num += d * d;
      den += fd[k] * fd[k];
      if (fabs(d) > 1e-4 * gmax + 1e-7 && bad < 0) bad = k;
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (rel > worstRel) worstRel = rel;
    CHECK(rel < 1e-4 && bad < 0 && gmax > 0, "%s tensor %s: relative error %.2e, max |g| %.2e, "
          "element %lld: %.8g vs %.8g", zLabel, info.name, rel, gmax, (long long)bad,
          bad >= 0 ? g[bad] : 0.0, bad >= 0 ? fd[bad] : 0.0);
    free(fd);
  }
  printf("gradients (%s, %d tensors): worst relative error %.2e\n", zLabel, n, worstRel);
  gpt_trainer_free(tr);
  for (int i = 0; i < n; i++) free(r.p[i]);
  free(r.p);
  free(r.n_elem);
  gpt_model_free(m);
  return worstRel;
}

/* The configs of the gradient checks: every architecture, tied and untied. */
static void test_gradients(void) {
  GPTConfig c = {0};
  c.n_layer = 2; c.n_head = 2; c.n_embd = 8; c.n_ctx = 8; c.vocab_size = 11; c.ln_eps = 1e-5;
  c.arch = GPT_ARCH_GPT2;
  check_gradients("gpt2, tied head", &c, 0, 11);
  check_gradients("gpt2, untied head", &c, 1, 11);

  GPTConfig l = {0};
  l.n_layer = 2; l.n_head = 4; l.n_kv_head = 2; l.n_embd = 16; l.d_ff = 24; l.n_ctx = 8;
  l.vocab_size = 11; l.ln_eps = 1e-5; l.arch = GPT_ARCH_LLAMA; l.rope_theta = 10000;
  check_gradients("llama, GQA 2, tied head", &l, 0, 11);
  /* Llama 3.1's scaling, its original context 16: one frequency pair
  ** blended, one divided by the factor */
  l.rope_scaling = GPT_ROPE_LLAMA3; l.rope_factor = 4; l.rope_low_freq_factor = 1;
  l.rope_high_freq_factor = 4; l.rope_original_ctx = 16;
  check_gradients("llama, GQA 2, llama3 rope scaling, untied head", &l, 1, 11);

  GPTConfig q2 = {0};
  q2.n_layer = 2; q2.n_head = 4; q2.n_kv_head = 1; q2.n_embd = 16; q2.d_ff = 20; q2.n_ctx = 8;
  q2.vocab_size = 11; q2.ln_eps = 1e-6; q2.arch = GPT_ARCH_QWEN2; q2.rope_theta = 1e6;
  check_gradients("qwen2, q/k/v biases, one kv head, tied head", &q2, 0, 11);

  GPTConfig q3 = {0};
  q3.n_layer = 2; q3.n_head = 4; q3.n_kv_head = 2; q3.n_embd = 16; q3.head_dim = 6;
  q3.d_ff = 24; q3.n_ctx = 8; q3.vocab_size = 11; q3.ln_eps = 1e-6; q3.arch = GPT_ARCH_QWEN3;
  q3.rope_theta = 1e6;
  check_gradients("qwen3, q/k norm, head_dim 6, GQA 2, untied head", &q3, 1, 11);
  check_gradients("qwen3, q/k norm, head_dim 6, GQA 2, tied head", &q3, 0, 11);
  /* ids 8..10 without a token (a padded vocabulary): out of the softmax */
  check_gradients("qwen3, untied head, 8 of 11 ids live", &q3, 1, 8);

  /* a target without a token is an error, not an infinite loss */
  char err[200];
  GPTModel *m = gpt_model_new(&q3, 1, err, sizeof(err));
  GPTTrainer *tr = m ? gpt_trainer_new(m, 4, err, sizeof(err)) : NULL;
  int tok[5] = {1, 2, 3, 9, 4};
  double loss;
  if (tr) gpt_trainer_set_live_vocab(tr, 8);
  CHECK(tr && gpt_trainer_sequence(tr, tok, 4, 1.0, &loss, err, sizeof(err)) == GPT_ERROR &&
            strcmp(err, "target token id 9 at position 3 is outside the 8 ids that have a "
                   "token") == 0, "dead target: %s", err);
  gpt_trainer_free(tr);
  gpt_model_free(m);
}

static const char *zCorpus =
    "to be, or not to be, that is the question:\n"
    "whether 'tis nobler in the mind to suffer\n"
    "the slings and arrows of outrageous fortune,\n"
    "or to take arms against a sea of troubles\n"
    "and by opposing end them.\n";

/* Trains a tiny model of architecture arch on the corpus; returns the last
** step's loss and leaves the weights' checksum in *pSum. */
static double train_corpus(int arch, int steps, uint64_t seed, double *pFirst, double *pSum) {
  int map[256], V = 0, n = (int)strlen(zCorpus);
  memset(map, -1, sizeof(map));
  int *ids = malloc(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)zCorpus[i];
    if (map[ch] < 0) map[ch] = V++;
    ids[i] = map[ch];
  }
  GPTConfig c = {0};
  c.n_layer = 2; c.n_head = 2; c.n_embd = 48; c.n_ctx = 16; c.vocab_size = V; c.ln_eps = 1e-5;
  if (arch == GPT_ARCH_QWEN3) {
    c.arch = arch; c.n_head = 4; c.n_kv_head = 2; c.head_dim = 16; c.d_ff = 96;
    c.ln_eps = 1e-6; c.rope_theta = 1e6;
  }
  char err[200];
  GPTModel *m = gpt_model_new(&c, 0, err, sizeof(err));
  gpt_train_init(m, seed);
  int T = 16, B = 4;
  GPTTrainer *tr = gpt_trainer_new(m, T, err, sizeof(err));
  double loss = 0;
  uint64_t rng = seed;
  for (int step = 0; step < steps; step++) {
    gpt_trainer_zero_grad(tr);
    loss = 0;
    for (int b = 0; b < B; b++) {
      int at = (int)(gpt_train_rand(&rng) % (uint64_t)(n - T - 1));
      double l;
      gpt_trainer_sequence(tr, ids + at, T, 1.0 / B, &l, err, sizeof(err));
      loss += l / B;
    }
    if (step == 0) *pFirst = loss;
    gpt_trainer_clip(tr, 1.0);
    gpt_trainer_adamw(tr, gpt_train_lr(step, steps, 10, 5e-3), 0.1, step + 1);
  }
  double sum = 0;
  for (int i = 0; gpt_model_tensor_data(m, i); i++) {
    GPTTensorInfo info;
    gpt_tensor_info(&c, 0, i, &info);
    const float *w = gpt_model_tensor_data(m, i);
    for (int64_t k = 0; k < info.n_elem; k++) sum += w[k] * (double)(k % 7 + 1);
  }
  *pSum = sum;
  gpt_trainer_free(tr);
  gpt_model_free(m);
  free(ids);
  return loss;
}

static void test_learning(int arch) {
  double first, sum1, sum2, first2;
  double last = train_corpus(arch, 300, 1, &first, &sum1);
  printf("corpus (%s): loss %.3f at step 1, %.3f at step 300\n", gpt_arch_name(arch), first,
         last);
  CHECK(first > 2.5, "%s: first loss %.3f, expected near ln(V) = 3.3", gpt_arch_name(arch),
        first);
  CHECK(last < 0.8, "%s: loss after 300 steps %.3f, expected < 0.8", gpt_arch_name(arch), last);
  double last2 = train_corpus(arch, 300, 1, &first2, &sum2);
  CHECK(last2 == last && sum2 == sum1, "%s: a second run with the same seed differs: %.9g %.9g",
        gpt_arch_name(arch), last2, last);
}

static void test_schedule(void) {
  CHECK(fabs(gpt_train_lr(0, 100, 10, 1.0) - 0.1) < 1e-12, "warm-up step 0");
  CHECK(fabs(gpt_train_lr(9, 100, 10, 1.0) - 1.0) < 1e-12, "end of warm-up");
  CHECK(fabs(gpt_train_lr(99, 100, 10, 1.0) - 0.1) < 1e-12, "last step is lr / 10");
  CHECK(gpt_train_lr(0, 1, 0, 1.0) == 1.0, "one step: lr, not lr / 10");
  CHECK(gpt_train_lr(10, 11, 10, 1.0) == 1.0, "one step after the warm-up: lr");
  CHECK(fabs(gpt_train_lr(55, 101, 10, 1.0) - 0.55) < 1e-9, "half way: %.9f",
        gpt_train_lr(55, 101, 10, 1.0));
}

/* gpt_model_widen: a model holding 2-D tensors in f16 and q8_0 (as loaded
** for inference) copies into an f32 one value for value. */
static void test_widen(void) {
  GPTConfig c = {0};
  c.n_layer = 1; c.n_head = 2; c.n_kv_head = 1; c.n_embd = 32; c.d_ff = 64; c.n_ctx = 8;
  c.vocab_size = 11; c.ln_eps = 1e-6; c.arch = GPT_ARCH_LLAMA;
  char err[200];
  int n = gpt_n_tensors(&c, 1), aDtype[64];
  for (int i = 0; i < n; i++) {
    GPTTensorInfo info;
    gpt_tensor_info(&c, 1, i, &info);
    aDtype[i] = info.ndim == 1 ? GPT_F32 : i % 2 ? GPT_F16 : GPT_Q8_0;
  }
  GPTModel *src = gpt_model_new_dtypes(&c, 1, aDtype, err, sizeof(err));
  GPTModel *dst = gpt_model_new(&c, 1, err, sizeof(err));
  CHECK(src && dst, "models: %s", err);
  if (!src || !dst) return;
  int nBad = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < n; i++) {
      GPTTensorInfo info;
      gpt_tensor_info(&c, 1, i, &info);
      int64_t ne = info.n_elem;
      if (aDtype[i] == GPT_Q8_0) {
        /* blocks of scale 0.5 (f16 0x3800), values j - 16: widened 0.5 (j - 16) */
        unsigned char *q = malloc((size_t)(ne / 32 * 34));
        for (int64_t b = 0; b < ne / 32; b++) {
          q[b * 34] = 0x00; q[b * 34 + 1] = 0x38;
          for (int j = 0; j < 32; j++) q[b * 34 + 2 + j] = (unsigned char)(signed char)(j - 16);
        }
        if (pass == 0)
          CHECK(gpt_model_load(src, i, GPT_Q8_0, 0, ne, q, err, sizeof(err)) == 0, "%s", err);
        free(q);
      } else {
        float *v = malloc((size_t)ne * sizeof(float));
        for (int64_t k = 0; k < ne; k++) v[k] = (float)(k % 13) * 0.125f - 0.75f;
        if (pass == 0)
          CHECK(gpt_model_load(src, i, GPT_F32, 0, ne, v, err, sizeof(err)) == 0, "%s", err);
        free(v);
      }
    }
    if (pass == 0) {
      CHECK(gpt_model_widen(dst, src, err, sizeof(err)) == 0, "widen: %s", err);
      continue;
    }
    for (int i = 0; i < n; i++) {
      GPTTensorInfo info;
      gpt_tensor_info(&c, 1, i, &info);
      const float *w = gpt_model_tensor_data(dst, i);
      for (int64_t k = 0; k < info.n_elem; k++) {
        /* f32 and f16 rows: (k % 13) / 8 - 0.75 is exact in f16 and not transposed */
        float want = aDtype[i] == GPT_Q8_0 ? 0.5f * (float)(k % 32 - 16)
                                           : (float)(k % 13) * 0.125f - 0.75f;
        if (w[k] != want) nBad++;
      }
    }
  }
  CHECK(nBad == 0, "widen: %d values differ", nBad);
  GPTConfig c2 = c;
  c2.d_ff = 96;
  GPTModel *other = gpt_model_new(&c2, 1, err, sizeof(err));
  CHECK(other && gpt_model_widen(other, src, err, sizeof(err)) != 0 && strstr(err, "differ"),
        "widen into another shape: %s", err);
  gpt_model_free(other);
  gpt_model_free(src);
  gpt_model_free(dst);
}

/* The same steps on 1 and on 3 threads give the same weights bit for bit,
** at a size where every product, the attention backward (by key/value
** head) and AdamW split over the team: a Qwen3 shape, 128 wide, 64 tokens. */
static void test_threads(void) {
  GPTConfig c = {0};
  c.n_layer = 2; c.n_head = 4; c.n_kv_head = 2; c.head_dim = 32; c.n_embd = 128; c.d_ff = 256;
  c.n_ctx = 64; c.vocab_size = 300; c.ln_eps = 1e-6; c.arch = GPT_ARCH_QWEN3;
  c.rope_theta = 1e6;
  double sum[2] = {0, 0};
  int tok[65];
  for (int t = 0; t < 65; t++) tok[t] = (t * 37 + 11) % 300;
  for (int run = 0; run < 2; run++) {
    int old = gpt_threads_set(run == 0 ? 1 : 3);
    char err[200];
    GPTModel *m = gpt_model_new(&c, 1, err, sizeof(err));
    gpt_train_init(m, 3);
    GPTTrainer *tr = gpt_trainer_new(m, 64, err, sizeof(err));
    CHECK(tr != NULL, "trainer: %s", err);
    for (int step = 0; tr && step < 3; step++) {
      double loss;
      gpt_trainer_zero_grad(tr);
      gpt_trainer_sequence(tr, tok, 64, 1.0, &loss, err, sizeof(err));
      gpt_trainer_clip(tr, 1.0);
      gpt_trainer_adamw(tr, 1e-3, 0.1, step + 1);
    }
    for (int i = 0; gpt_model_tensor_data(m, i); i++) {
      GPTTensorInfo info;
      gpt_tensor_info(&c, 1, i, &info);
      const float *w = gpt_model_tensor_data(m, i);
      for (int64_t k = 0; k < info.n_elem; k++) sum[run] += w[k] * (double)(k % 7 + 1);
    }
    gpt_trainer_free(tr);
    gpt_model_free(m);
    gpt_threads_set(old);
  }
  CHECK(sum[0] == sum[1], "1 and 3 threads differ: %.17g %.17g", sum[0], sum[1]);
}

/* The stop callback of test_stop: counts its calls, says stop at call
** nStopAt (0: never). */
typedef struct StopCount { int nCalls, nStopAt; } StopCount;
static int stop_at(void *ctx) {
  StopCount *p = (StopCount *)ctx;
  return ++p->nCalls == p->nStopAt;
}

/* An interrupt inside a window: the trainer asks its check between the
** layers of the forward pass (n_layer times) and before the head and each
** half of each layer of the backward pass (1 + 2 n_layer), so a long window
** stops within a layer. Stopping at each of those points gives GPT_ABORTED
** with "interrupted" and the weights untouched, and the next full sequence
** gives the loss and gradients of a trainer never stopped. */
static void test_stop(void) {
  GPTConfig c = {0};
  c.n_layer = 3; c.n_head = 2; c.n_embd = 16; c.n_ctx = 8; c.vocab_size = 11; c.ln_eps = 1e-5;
  c.arch = GPT_ARCH_GPT2;
  char err[200];
  int tok[7] = {1, 5, 2, 9, 0, 3, 10};
  GPTModel *m = gpt_model_new(&c, 0, err, sizeof(err));
  gpt_train_init(m, 7);
  GPTTrainer *tr = gpt_trainer_new(m, 6, err, sizeof(err));
  CHECK(tr != NULL, "trainer: %s", err);
  if (!tr) return;
  /* the reference: loss and gradient checksum without a stop */
  double loss0, loss, sum0 = 0, sum;
  gpt_trainer_zero_grad(tr);
  gpt_trainer_sequence(tr, tok, 6, 1.0, &loss0, err, sizeof(err));
  const float *g = gpt_trainer_buffer(tr, 0, 0);
  GPTTensorInfo info;
  gpt_tensor_info(&c, 0, 0, &info);
  for (int64_t k = 0; k < info.n_elem; k++) sum0 += g[k] * (double)(k % 5 + 1);
  /* how many checks one sequence makes */
  StopCount sc = {0, 0};
  gpt_trainer_set_stop(tr, stop_at, &sc);
  gpt_trainer_zero_grad(tr);
  int rc = gpt_trainer_sequence(tr, tok, 6, 1.0, &loss, err, sizeof(err));
  CHECK(rc == GPT_OK && loss == loss0, "sequence with a check that never stops: rc %d", rc);
  CHECK(sc.nCalls >= 3 + 1 + 2 * 3, "%d checks in a sequence of 3 layers, expected >= 10",
        sc.nCalls);
  int nChecks = sc.nCalls, nAborted = 0;
  float w0 = ((const float *)gpt_model_tensor_data(m, 0))[3];
  for (int k = 1; k <= nChecks; k++) {
    StopCount at = {0, k};
    gpt_trainer_set_stop(tr, stop_at, &at);
    gpt_trainer_zero_grad(tr);
    err[0] = 0;
    rc = gpt_trainer_sequence(tr, tok, 6, 1.0, &loss, err, sizeof(err));
    nAborted += rc == GPT_ABORTED && strcmp(err, "interrupted") == 0;
  }
  CHECK(nAborted == nChecks, "%d of %d stops gave GPT_ABORTED \"interrupted\"", nAborted,
        nChecks);
  StopCount never = {0, 0};
  gpt_trainer_set_stop(tr, stop_at, &never);
  gpt_trainer_zero_grad(tr);
  rc = gpt_trainer_sequence(tr, tok, 6, 1.0, &loss, err, sizeof(err));
  sum = 0;
  for (int64_t k = 0; k < info.n_elem; k++) sum += g[k] * (double)(k % 5 + 1);
  CHECK(rc == GPT_OK && loss == loss0 && sum == sum0 &&
            ((const float *)gpt_model_tensor_data(m, 0))[3] == w0,
        "after the stops: loss %.9g vs %.9g, gradient sum %.9g vs %.9g", loss, loss0, sum, sum0);
  /* eval stops too */
  StopCount first = {0, 1};
  gpt_trainer_set_stop(tr, stop_at, &first);
  CHECK(gpt_trainer_eval(tr, tok, 6, &loss, err, sizeof(err)) == GPT_ABORTED,
        "eval with a stop");
  gpt_trainer_free(tr);
  gpt_model_free(m);
}

int main(void) {
  test_schedule();
  test_gradients();
  test_widen();
  test_threads();
  test_stop();
  test_learning(GPT_ARCH_GPT2);
  test_learning(GPT_ARCH_QWEN3);
  printf("%d passed, %d failed\n", nPass, nFail);
  return nFail ? 1 : 0;
}
