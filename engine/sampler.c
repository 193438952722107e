/*
** Sampling. Order of filters as in Hugging Face: temperature scales the
** logits, top-k keeps the k largest (exactly k: the lower id first where
** the k-th ties, as llama.cpp; Hugging Face keeps every tie), top-p keeps the
** smallest prefix of the sorted distribution whose mass reaches p; the rest
** is renormalized and one token drawn. Only candidates that can matter are
** sorted (llama2.c's trick: under top-p, a token with probability below
** (1-p)/(V-1) can never be in the nucleus, though its probability still
** counts toward p; under top-k, the k best are picked with a heap and only
** they are sorted).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#include "sampler.h"

/* splitmix64, to spread any seed (0 included) into a nonzero state. */
static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* xorshift64*: the high 24 bits make a uniform float in [0, 1). */
static float rng_float(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  *state = x;
  return (float)((x * 0x2545f4914f6cdd1dull) >> 40) / 16777216.0f;
}

int gpt_sampler_init(GPTSampler *s, int vocab_size, float temperature, int top_k,
                     float top_p, uint64_t seed) {
  s->vocab_size = vocab_size;
  s->temperature = temperature;
  s->top_k = top_k;
  s->top_p = top_p;
  s->rng = splitmix64(seed);
  if (s->rng == 0) s->rng = 0x9e3779b97f4a7c15ull;
  s->cand = malloc((size_t)vocab_size * sizeof(int));
  s->prob = malloc((size_t)vocab_size * sizeof(float));
  if (!s->cand || !s->prob) {
    gpt_sampler_free(s);
    return -1;
  }
  return 0;
}

void gpt_sampler_free(GPTSampler *s) {
  free(s->cand);
  free(s->prob);
  s->cand = 0;
  s->prob = 0;
}

/* The maximum with the kernels (NaN passed over), then its first index;
** 0 when there is no number at all. */
int gpt_argmax(const float *logits, int n) {
  float mx = gpt_kernels()->max(logits, n);
  for (int i = 0; i < n; i++)
    if (logits[i] == mx) return i;
  return 0;
}

double gpt_logsumexp(const float *logits, int n) {
  const GPTKernels *k = gpt_kernels();
  float mx = k->max(logits, n);
  return mx + log(k->sum_exp(logits, n, mx));
}

/* Sorts candidate ids by probability, highest first, lower id on ties. A
** merge sort of our own, because qsort has no context argument and a global
** would not be thread-safe. */
static void sort_candidates(int *cand, int n, const float *prob) {
  int *tmp = malloc((size_t)n * sizeof(int));
  if (!tmp) { /* fall back to insertion sort: slow but correct */
    for (int i = 1; i < n; i++) {
      int v = cand[i], j = i - 1;
      while (j >= 0 && (prob[cand[j]] < prob[v] || (prob[cand[j]] == prob[v] && cand[j] > v))) {
        cand[j + 1] = cand[j];
        j--;
      }
      cand[j + 1] = v;
    }
    return;
  }
  for (int w = 1; w < n; w *= 2) {
    for (int lo = 0; lo < n; lo += 2 * w) {
      int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      int i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        int a = cand[i], b = cand[j];
        int takeB = prob[b] > prob[a] || (prob[b] == prob[a] && b < a);
        tmp[k++] = takeB ? cand[j++] : cand[i++];
      }
      while (i < mid) tmp[k++] = cand[i++];
      while (j < hi) tmp[k++] = cand[j++];
    }
    for (int i = 0; i < n; i++) cand[i] = tmp[i];
  }
  free(tmp);
}

/* Whether candidate a ranks below b: lower probability, higher id on ties
** (the reverse of sort_candidates' order). */
static int ranks_below(int a, int b, const float *prob) {
  return prob[a] < prob[b] || (prob[a] == prob[b] && a > b);
}

/* Sifts ids[i] down a heap of n ids whose root ranks lowest. */
static void heap_down(int *ids, int n, int i, const float *prob) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, j = i;
    if (l < n && ranks_below(ids[l], ids[j], prob)) j = l;
    if (r < n && ranks_below(ids[r], ids[j], prob)) j = r;
    if (j == i) return;
    int t = ids[i];
    ids[i] = ids[j];
    ids[j] = t;
    i = j;
  }
}

/* Moves the m highest-ranked of ids[0..n) (0 < m <= n) to ids[0..m), in no
** order, by a heap of m kept in ids itself: O(n log m), where sorting all of
** them to keep the first m was O(n log n) (top-k over a whole vocabulary). */
static void select_top(int *ids, int n, int m, const float *prob) {
  for (int i = m / 2 - 1; i >= 0; i--) heap_down(ids, m, i, prob);
  for (int i = m; i < n; i++) {
    if (ranks_below(ids[0], ids[i], prob)) {
      ids[0] = ids[i];
      heap_down(ids, m, 0, prob);
    }
  }
}

/* The sum of the m largest prob[ids[i]] of ids[0..n) (0 < m <= n); reorders ids. */
static double top_mass(int *ids, int n, int m, const float *prob) {
  select_top(ids, n, m, prob);
  double sum = 0;
  for (int i = 0; i < m; i++) sum += prob[ids[i]];
  return sum;
}

int gpt_sample(GPTSampler *s, const float *logits) {
  int V = s->vocab_size;
  /* a temperature whose inverse overflows is greedy too (and would make
  ** 0 * inf = NaN of the top logit) */
  float inv_t = s->temperature > 0.0f ? 1.0f / s->temperature : INFINITY;
  if (!isfinite(inv_t) || s->top_k == 1) return gpt_argmax(logits, V);
  /* softmax(logits / T) */
  const GPTKernels *k = gpt_kernels();
  float mx = k->max(logits, V);
  memcpy(s->prob, logits, (size_t)V * sizeof(float));
  float sum = k->exp_sum(s->prob, V, mx, inv_t);
  float inv = (float)(1.0 / sum);
  for (int i = 0; i < V; i++) s->prob[i] *= inv;

  int n = 0;
  int bTopK = s->top_k > 0 && s->top_k < V, bTopP = s->top_p < 1.0f;
  if (!bTopK && !bTopP) {
    for (int i = 0; i < V; i++) s->cand[n++] = i;
  } else {
    /* Keep only tokens that can survive the filters, then sort those; the
    ** others go to the back of cand, in case the top-k set's mass needs them. */
    float cutoff = bTopP ? (1.0f - s->top_p) / (float)(V - 1) : 0.0f;
    double all = 0;
    int iRest = V;
    for (int i = 0; i < V; i++) {
      all += s->prob[i];
      if (s->prob[i] >= cutoff) s->cand[n++] = i;
      else s->cand[--iRest] = i;
    }
    if (n == 0) return gpt_argmax(logits, V);
    /* top-k: the k best first, then only those sorted */
    if (bTopK && n > s->top_k) {
      select_top(s->cand, n, s->top_k, s->prob);
      n = s->top_k;
    }
    sort_candidates(s->cand, n, s->prob);
    /* The nucleus is measured against the mass of what top-k keeps (all of
    ** the distribution without top-k), not against the candidates': a token
    ** below the cutoff can never be in the nucleus, but its probability
    ** counts toward p (leaving it out made the nucleus too small). */
    double mass = all;
    if (bTopK && bTopP) {
      mass = 0;
      for (int i = 0; i < n; i++) mass += s->prob[s->cand[i]];
      /* fewer candidates than k: the best of the rest complete the top-k set */
      if (n < s->top_k) mass += top_mass(s->cand + iRest, V - iRest, s->top_k - n, s->prob);
    }
    if (bTopP) {
      /* renormalized over the top-k set, the nucleus is its shortest prefix
      ** reaching top_p of that mass */
      double acc = 0, target = s->top_p * mass;
      int keep = n;
      for (int i = 0; i < n; i++) {
        acc += s->prob[s->cand[i]];
        if (acc >= target) { keep = i + 1; break; }
      }
      n = keep;
    }
  }
  double total = 0;
  for (int i = 0; i < n; i++) total += s->prob[s->cand[i]];
  double r = (double)rng_float(&s->rng) * total, acc = 0;
  for (int i = 0; i < n; i++) {
    acc += s->prob[s->cand[i]];
    if (r < acc) return s->cand[i];
  }
  return s->cand[n - 1];
}
