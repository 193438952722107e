/*
** Training of the decoder of gpt.h, every architecture it runs (GPT-2, Llama,
** Qwen2, Qwen3): the backward pass, AdamW, gradient clipping, the
** learning-rate schedule, GPT-2's initialization and a seeded random
** generator. Plain C11 and CBLAS; knows nothing of SQLite.
**
** The forward pass is gpt.c's own, run with an activation tape attached
** (gpt_internal.h); the backward pass reads the tape, layer by layer in
** reverse, with cblas_sgemm for every matrix product. A batch of B
** sequences is run one sequence after another, their gradients summed.
**
**   GPTTrainer *tr = gpt_trainer_new(model, T, err, n);
**   gpt_trainer_zero_grad(tr);
**   for (b = 0; b < B; b++) gpt_trainer_sequence(tr, tok + b * (T + 1), T, 1.0 / B, &loss, ...);
**   gpt_trainer_clip(tr, 1.0);
**   gpt_trainer_adamw(tr, gpt_train_lr(step, steps, warmup, lr), 0.1, step + 1);
*/
#ifndef GPT_TRAIN_H
#define GPT_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "gpt.h"

typedef struct GPTTrainer GPTTrainer;

/* AdamW's constants (nanoGPT's for small models). */
#define GPT_ADAM_BETA1 0.9
#define GPT_ADAM_BETA2 0.95
#define GPT_ADAM_EPS 1e-8

/* A trainer for sequences of up to T tokens on model m, of any architecture,
** which must hold every tensor in f32 (widen a loaded model's f16 or q8_0
** tensors with gpt_model_widen first). The trainer updates m's weights in
** place; m must not be shared meanwhile.
** Gradients and both Adam moments are allocated here, zeroed. NULL with err. */
GPTTrainer *gpt_trainer_new(GPTModel *m, int T, char *err, size_t n_err);
void gpt_trainer_free(GPTTrainer *tr);

/* Copies model src, whatever the memory dtypes of its tensors (f32, f16,
** q8_0: a model loaded for inference), into dst, a model of the same config
** and head held in f32 (gpt_model_new), for fine-tuning. Returns 0, or -1
** with err when their tensors differ. */
int gpt_model_widen(GPTModel *dst, const GPTModel *src, char *err, size_t n_err);

void gpt_trainer_zero_grad(GPTTrainer *tr);

/* Ids from n on have no token (a vocabulary padded past the tokenizer, as
** Qwen's): the loss gives them probability 0, as inference does, and a
** target among them is an error. Default: every id. */
void gpt_trainer_set_live_vocab(GPTTrainer *tr, int n);

/* An interrupt check (NULL: none), asked between the layers of the forward
** and of the backward pass of gpt_trainer_sequence and gpt_trainer_eval, so
** that one long window stops within a layer: nonzero abandons the sequence
** with GPT_ABORTED ("interrupted" in err), its gradients partial (zero them
** before another step; the weights are untouched). */
void gpt_trainer_set_stop(GPTTrainer *tr, int (*should_stop)(void *ctx), void *ctx);

/* One sequence: forward over tokens[0..T), cross-entropy against
** tokens[1..T], backward. Adds grad_scale times the gradient of the mean
** loss over the T positions to the gradients; *pLoss gets that mean loss
** (nats). Returns GPT_OK or an error code of gpt.h with err. */
int gpt_trainer_sequence(GPTTrainer *tr, const int *tokens, int T, double grad_scale,
                         double *pLoss, char *err, size_t n_err);

/* The mean loss of one sequence (tokens (T + 1,)), no gradients. */
int gpt_trainer_eval(GPTTrainer *tr, const int *tokens, int T, double *pLoss, char *err,
                     size_t n_err);

/* Scales the gradients so that their global L2 norm is at most max_norm
** (max_norm <= 0: no clipping). Returns the norm before. */
double gpt_trainer_clip(GPTTrainer *tr, double max_norm);

/* One AdamW update at step t (1-based, for bias correction): decoupled
** weight decay wd on 2-D tensors only. */
void gpt_trainer_adamw(GPTTrainer *tr, double lr, double wd, int64_t t);

/* Tensor i's gradient, first and second Adam moment (which 0, 1, 2), in the
** model's memory layout (Conv1D weights (out, in)); n_elem floats. */
float *gpt_trainer_buffer(GPTTrainer *tr, int which, int i);

/* Bytes that training a model of config c (has_head: an untied head) on
** T positions holds at once: the f32 weights, their gradients and two
** AdamW moments, the activation tape and the scratch, about what
** gpt_trainer_new allocates and the weights it trains. For refusing, up
** front, a run the machine's memory cannot hold. */
double gpt_trainer_plan_bytes(const GPTConfig *c, int has_head, int T);

/* GPT-2's initialization from seed: 2-D weights normal(0, 0.02), the two
** residual projections of each block 0.02 / sqrt(2 n_layer); biases 0;
** norm weights 1. m is held in f32. */
void gpt_train_init(GPTModel *m, uint64_t seed);

/* Learning rate at step (0-based) of steps: linear warm-up over warmup
** steps to lr, then cosine decay to lr / 10 at the last step; a single
** step after the warm-up runs at lr. */
double gpt_train_lr(int64_t step, int64_t steps, int64_t warmup, double lr);

/* splitmix64: the next 64 random bits of *state. */
uint64_t gpt_train_rand(uint64_t *state);

/* FLOPs of one training token (forward and backward, 2 a multiply-add) of
** a model with T positions: 3 x the forward's products and attention, for
** MFU. Any architecture (GQA, head_dim, SwiGLU's three matrices). */
double gpt_train_flops_per_token(const GPTConfig *c, int T);

#endif
