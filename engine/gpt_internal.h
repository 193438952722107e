/*
** What the training code (train.c) needs of the forward pass beyond gpt.h:
** the activation tape, the roles of a model's tensors, and writable access
** to a model's f32 weights.
**
** A tape, when attached to a state, makes each forward pass from position 0
** save the activations that the backward pass reads, per layer; without one
** the pass saves nothing. Shapes for a batch of T tokens, C channels, Q query
** width, KV key/value width, F MLP width, NH heads, hd head_dim:
*/
#ifndef GPT_INTERNAL_H
#define GPT_INTERNAL_H

#include "gpt.h"

typedef struct GPTTapeLayer {
  float *x_in;    /* (T, C) the block's input, the attention norm's input */
  float *ln1;     /* (T, C) the attention norm's output */
  float *qkv_pre; /* (T, Q + 2 KV) before the q/k norm and RoPE; saved only
                  ** for a layer with a q/k norm (Qwen3), and only when set */
  float *qkv;     /* (T, Q + 2 KV) after RoPE (the keys and queries attended) */
  float *att;     /* (NH, T, T) attention probabilities, causal tail zero */
  float *atty;    /* (T, Q) attention output before the output projection */
  float *x_mid;   /* (T, C) residual after attention, the MLP norm's input */
  float *ln2;     /* (T, C) the MLP norm's output */
  float *fc;      /* (T, F) before GELU, or (T, 2F) gate|up for SwiGLU */
  float *hid;     /* (T, F) the down projection's input */
} GPTTapeLayer;

typedef struct GPTTape {
  int T;                /* most tokens a taped pass may hold */
  GPTTapeLayer *layer;  /* (n_layer,) */
  float *rope_cs;       /* (T, hd/2, 2) cos, sin of positions 0..T-1 (RoPE) */
  float *x_f;           /* (T, C) the final norm's input */
  float *ln_f;          /* (T, C) the final norm's output */
  float *logits;        /* (T, V) every position's logits */
} GPTTape;

/* Attaches a tape (NULL detaches). A taped pass must start at position 0
** and hold at most tape->T tokens. */
void gpt_state_set_tape(GPTState *s, GPTTape *tape);

/* Tensor i's memory (f32 for a model made by gpt_model_new), writable: the
** trainer updates weights in place between passes. NULL for a bad index. */
void *gpt_model_tensor_data(GPTModel *m, int i);

/* What a tensor is for. An architecture's slot table in gpt.c says which
** roles it stores and under which names; the forward pass and the backward
** pass both find their tensors by role. */
enum {
  R_TOK_EMB, R_POS_EMB, R_OUT_NORM_W, R_OUT_NORM_B, R_HEAD,
  /* per layer */
  R_ATTN_NORM_W, R_ATTN_NORM_B, R_QKV_W, R_QKV_B, R_Q_W, R_K_W, R_V_W, R_Q_B, R_K_B,
  R_V_B, R_Q_NORM, R_K_NORM, R_O_W, R_O_B, R_FFN_NORM_W, R_FFN_NORM_B, R_GATE_W, R_UP_W,
  R_UP_B, R_DOWN_W, R_DOWN_B, R_COUNT
};
#define R_FIRST_LAYER R_ATTN_NORM_W

/* The role (R_*) of tensor i of a model of config c, its layer in *pLayer
** (-1 for a global tensor); -1 past the last tensor. */
int gpt_tensor_role(const GPTConfig *c, int has_lm_head, int i, int *pLayer);

/* The sums a norm's statistics take over a row x (n,), in double: of x,
** of (x - mean)^2 and of x^2. Four partial sums each, so that the adds do
** not wait on one another; the forward pass (gpt.c) and the backward pass
** (train.c) share them, so both see the same statistics to the bit. */
static inline double gpt_row_sum(const float *x, int n) {
  double a[4] = {0, 0, 0, 0};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; j++) a[j] += x[i + j];
  for (; i < n; i++) a[0] += x[i];
  return (a[0] + a[1]) + (a[2] + a[3]);
}
static inline double gpt_row_sq_dev(const float *x, int n, double mean) {
  double a[4] = {0, 0, 0, 0};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; j++) {
      double d = x[i + j] - mean;
      a[j] += d * d;
    }
  for (; i < n; i++) {
    double d = x[i] - mean;
    a[0] += d * d;
  }
  return (a[0] + a[1]) + (a[2] + a[3]);
}
static inline double gpt_row_sq(const float *x, int n) {
  double a[4] = {0, 0, 0, 0};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; j++) a[j] += (double)x[i + j] * x[i + j];
  for (; i < n; i++) a[0] += (double)x[i] * x[i];
  return (a[0] + a[1]) + (a[2] + a[3]);
}

#endif
