/*
** What the training code (train.c) needs of the forward pass beyond gpt.h:
** the activation tape, and writable access to a model's f32 weights.
**
** A tape, when attached to a state, makes each forward pass from position 0
** save the activations that the backward pass reads, per layer; without one
** the pass saves nothing. Shapes for a batch of T tokens, C channels, Q query
** width, KV key/value width, F MLP width, NH heads:
*/
#ifndef GPT_INTERNAL_H
#define GPT_INTERNAL_H

#include "gpt.h"

typedef struct GPTTapeLayer {
  float *x_in;   /* (T, C) the block's input, the attention norm's input */
  float *ln1;    /* (T, C) the attention norm's output */
  float *qkv;    /* (T, Q + 2 KV) after RoPE (the keys and queries attended) */
  float *att;    /* (NH, T, T) attention probabilities, causal tail zero */
  float *atty;   /* (T, Q) attention output before the output projection */
  float *x_mid;  /* (T, C) residual after attention, the MLP norm's input */
  float *ln2;    /* (T, C) the MLP norm's output */
  float *fc;     /* (T, F) before GELU, or (T, 2F) gate|up for SwiGLU */
  float *hid;    /* (T, F) the down projection's input */
} GPTTapeLayer;

typedef struct GPTTape {
  int T;                /* most tokens a taped pass may hold */
  GPTTapeLayer *layer;  /* (n_layer,) */
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

#endif
