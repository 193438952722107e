/*
** Choosing the next token from logits: greedy, or sampling with temperature,
** top-k and top-p. The RNG state lives in the sampler, seeded by the caller,
** so a seed reproduces a run exactly and nothing is global.
*/
#ifndef GPT_SAMPLER_H
#define GPT_SAMPLER_H

#include <stdint.h>

typedef struct GPTSampler {
  int vocab_size;
  float temperature;   /* 0 = greedy (argmax) */
  int top_k;           /* 0 = off */
  float top_p;         /* 1 = off */
  uint64_t rng;        /* xorshift64* state, never 0 */
  int *cand;           /* (V,) candidate ids */
  float *prob;         /* (V,) probabilities */
} GPTSampler;

/* Allocates the scratch; returns 0 or -1 on out of memory. */
int gpt_sampler_init(GPTSampler *s, int vocab_size, float temperature, int top_k,
                     float top_p, uint64_t seed);
void gpt_sampler_free(GPTSampler *s);

/* The next token for logits (V,). Ties go to the lowest id. */
int gpt_sample(GPTSampler *s, const float *logits);

/* Index of the largest logit, lowest id on ties. */
int gpt_argmax(const float *logits, int n);

/* log(sum(exp(logits))) in double, for log-probabilities at temperature 1. */
double gpt_logsumexp(const float *logits, int n);

#endif
