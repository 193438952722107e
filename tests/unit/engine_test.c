/*
** Unit test of the decoder's internals, without SQLite: a model with seeded
** random weights is run three ways over the same tokens (one batched
** prefill, one token at a time over the KV cache, and a prefill split in two
** as prefix reuse does) and every position's logits must agree within 1e-4.
** Also checks the engine's refusals: bad configs, token ids, and positions
** past the cache.
**
**   build/engine_test        prints "N passed, N failed"; exit 1 on failure
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "gpt.h"
#include "sampler.h"

#include "check.h"

/* xorshift64*, uniform in [-a, a]. */
static float urand(uint64_t *s, float a) {
  *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
  return a * (2.0f * (float)((*s * 0x2545f4914f6cdd1dull) >> 40) / 16777216.0f - 1.0f);
}

/* A model with random weights: layer norms near 1, matrices ~1/sqrt(fan-in). */
static GPTModel *random_model(const GPTConfig *c, int hasLmHead, uint64_t seed) {
  char err[200];
  GPTModel *m = gpt_model_new(c, hasLmHead, err, sizeof(err));
  if (!m) { printf("gpt_model_new: %s\n", err); return 0; }
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int i = 0; i < gpt_n_tensors(c, hasLmHead); i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, hasLmHead, i, &info);
    float *a = malloc((size_t)info.n_elem * sizeof(float));
    int isNormWeight = info.ndim == 1 && (strstr(info.name, "ln_") || strstr(info.name, "norm")) &&
                       strstr(info.name, ".weight");
    float scale = info.ndim == 2 ? 1.5f / sqrtf((float)info.shape[info.transposed ? 0 : 1]) : 0.05f;
    if (strcmp(info.name, "wte.weight") == 0 || strcmp(info.name, "lm_head.weight") == 0 ||
        strcmp(info.name, "model.embed_tokens.weight") == 0)
      scale = 0.7f;
    if (strcmp(info.name, "wpe.weight") == 0) scale = 0.2f;
    for (int64_t k = 0; k < info.n_elem; k++)
      a[k] = isNormWeight ? 1.0f + urand(&s, 0.2f) : urand(&s, scale);
    if (gpt_model_load(m, i, GPT_F32, 0, info.n_elem, a, err, sizeof(err)))
      printf("load %s: %s\n", info.name, err);
    free(a);
  }
  return m;
}

/* Collects per-position logits (T, V). */
typedef struct { float *all; int V; } Collect;
static int collect_logits(void *ctx, int pos0, int rows, const float *logits) {
  Collect *c = ctx;
  memcpy(c->all + (size_t)pos0 * c->V, logits, (size_t)rows * c->V * sizeof(float));
  return 0;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
  double d = 0;
  for (size_t i = 0; i < n; i++) {
    double x = fabs((double)a[i] - b[i]);
    if (!(x <= d)) d = x;
  }
  return d;
}

/* Batched prefill, token-by-token decoding and a split prefill agree. */
static void test_prefill_vs_decode(const GPTConfig *c, int hasLmHead, int T) {
  char err[200];
  GPTModel *m = random_model(c, hasLmHead, 7);
  int V = c->vocab_size;
  int *tok = malloc(sizeof(int) * T);
  float *a = malloc(sizeof(float) * (size_t)T * V), *b = malloc(sizeof(float) * (size_t)T * V);
  float *d = malloc(sizeof(float) * (size_t)T * V), *last = malloc(sizeof(float) * V);
  uint64_t s = 99;
  for (int t = 0; t < T; t++) tok[t] = (int)((urand(&s, 0.5f) + 0.5f) * (V - 1));

  GPTState *st = gpt_state_new(m, T);
  Collect ca = {a, V};
  GPTForwardIO io = {0};
  io.on_logits = collect_logits;
  io.ctx = &ca;
  io.logits = last;
  CHECK(gpt_forward(m, st, tok, T, &io, err, sizeof(err)) == GPT_OK, "prefill: %s", err);
  CHECK(max_abs_diff(last, a + (size_t)(T - 1) * V, V) <= 1e-5,
        "io.logits agrees with the last row of on_logits");
  gpt_state_free(st);

  /* the last token's logits alone: the last layer keeps the last row only
  ** past the cache (last_rows_only), with the very bits of the whole
  ** layer's, and the cache still gets every position */
  st = gpt_state_new(m, T);
  GPTForwardIO lone = {0};
  lone.logits = last;
  CHECK(gpt_forward(m, st, tok, T - 1, &lone, err, sizeof(err)) == GPT_OK, "prefill: %s", err);
  CHECK(gpt_state_len(st) == T - 1, "a prefill of the logits alone keeps %d positions", T - 1);
  CHECK(max_abs_diff(last, a + (size_t)(T - 2) * V, V) == 0,
        "the logits alone equal the whole prefill's row, bit for bit");
  CHECK(gpt_forward(m, st, tok + T - 1, 1, &lone, err, sizeof(err)) == GPT_OK, "decode: %s", err);
  CHECK(max_abs_diff(last, a + (size_t)(T - 1) * V, V) == 0,
        "a step after the logits alone reads every position's keys and values");
  gpt_state_free(st);

  st = gpt_state_new(m, T);
  Collect cb = {b, V};
  io.ctx = &cb;
  io.logits = 0;
  for (int t = 0; t < T; t++)
    CHECK(gpt_forward(m, st, tok + t, 1, &io, err, sizeof(err)) == GPT_OK, "decode %d: %s", t, err);
  double diff = max_abs_diff(a, b, (size_t)T * V);
  CHECK(diff <= 1e-4, "prefill vs decode (L=%d H=%d C=%d T=%d): max |diff| %g > 1e-4",
        c->n_layer, c->n_head, c->n_embd, T, diff);
  printf("prefill vs decode, %s L=%d H=%d KVH=%d C=%d T=%d: max |diff| %.3g\n",
         gpt_arch_name(c->arch), c->n_layer, c->n_head, gpt_config_kv_heads(c), c->n_embd, T,
         diff);

  /* prefix reuse: keep 5 positions, run the rest as a second batch */
  gpt_state_truncate(st, 5);
  CHECK(gpt_state_len(st) == 5, "truncate keeps 5");
  Collect cd = {d, V};
  io.ctx = &cd;
  memcpy(d, b, sizeof(float) * 5 * (size_t)V);
  CHECK(gpt_forward(m, st, tok + 5, T - 5, &io, err, sizeof(err)) == GPT_OK, "resume: %s", err);
  diff = max_abs_diff(a, d, (size_t)T * V);
  CHECK(diff <= 1e-4, "prefill vs split prefill: max |diff| %g", diff);

  /* the cache is full now: one more token is refused, not written */
  int one = tok[0];
  CHECK(gpt_forward(m, st, &one, 1, &io, err, sizeof(err)) == GPT_ERROR &&
            strstr(err, "do not fit the cache") != 0,
        "a token past the cache is refused: %s", err);
  gpt_state_free(st);

  st = gpt_state_new(m, T);
  int bad = V;
  CHECK(gpt_forward(m, st, &bad, 1, &io, err, sizeof(err)) == GPT_ERROR &&
            strstr(err, "outside the vocabulary") != 0,
        "token id V is refused: %s", err);
  bad = -1;
  CHECK(gpt_forward(m, st, &bad, 1, &io, err, sizeof(err)) == GPT_ERROR, "token id -1 is refused");
  CHECK(gpt_state_len(st) == 0, "a refused batch leaves the cache as it was");
  gpt_state_free(st);

  /* positions never pass n_ctx: a state is clamped to the window */
  st = gpt_state_new(m, c->n_ctx + 100);
  CHECK(gpt_state_capacity(st) == c->n_ctx, "capacity clamped to n_ctx");
  gpt_state_free(st);

  free(tok); free(a); free(b); free(d); free(last);
  gpt_model_free(m);
}

/* Configs out of range are refused before any allocation. */
static void test_config_checks(void) {
  char err[200];
  GPTConfig ok = {.n_layer = 2, .n_head = 4, .n_embd = 64, .n_ctx = 32, .vocab_size = 500,
                  .ln_eps = 1e-5};
  CHECK(gpt_config_check(&ok, err, sizeof(err)) == 0, "valid config: %s", err);
  GPTConfig c = ok;
  c.n_embd = 65;
  CHECK(gpt_config_check(&c, err, sizeof(err)) && !strcmp(err, "config n_embd 65 is not divisible by n_head 4"),
        "n_embd %% n_head: %s", err);
  c = ok; c.n_layer = 0;
  CHECK(gpt_config_check(&c, err, sizeof(err)) && !strcmp(err, "config n_layer is 0, expected 1 to 256"),
        "n_layer 0: %s", err);
  c = ok; c.n_head = -3;
  CHECK(gpt_config_check(&c, err, sizeof(err)) != 0, "negative n_head");
  c = ok; c.vocab_size = 1000000; c.n_embd = 16384; c.n_head = 1; c.n_layer = 256;
  CHECK(gpt_config_check(&c, err, sizeof(err)) && strstr(err, "parameters, more than the limit"),
        "absurd size: %s", err);
  c = ok; c.ln_eps = 0;
  CHECK(gpt_config_check(&c, err, sizeof(err)) != 0, "eps 0");
  CHECK(gpt_model_new(&c, 0, err, sizeof(err)) == 0, "gpt_model_new refuses a bad config");
  /* GPT-2 has none of the Llama family's sizes */
  c = ok; c.d_ff = 128;
  CHECK(gpt_config_check(&c, err, sizeof(err)) &&
        !strcmp(err, "config of a gpt2 model sets n_kv_head, head_dim, d_ff or rope_scaling"),
        "gpt2 with d_ff: %s", err);
  /* the file's names: quoted, no "config " before them, 1 the least size */
  const char *names[GPT_KEY_COUNT] = {[GPT_KEY_N_CTX] = "max_position_embeddings",
                                      [GPT_KEY_N_HEAD] = "num_attention_heads",
                                      [GPT_KEY_N_KV_HEAD] = "num_key_value_heads",
                                      [GPT_KEY_D_FF] = "intermediate_size"};
  GPTConfig l = ok;
  l.arch = GPT_ARCH_LLAMA; l.n_kv_head = 4; l.d_ff = 128; l.head_dim = 16; l.rope_theta = 1e4;
  CHECK(gpt_config_check_named(&l, names, err, sizeof(err)) == 0, "valid llama config: %s", err);
  c = l; c.n_ctx = 131073;
  CHECK(gpt_config_check_named(&c, names, err, sizeof(err)) &&
        !strcmp(err, "\"max_position_embeddings\" is 131073, expected 1 to 131072"), "%s", err);
  c = l; c.n_kv_head = 3;
  CHECK(gpt_config_check_named(&c, names, err, sizeof(err)) &&
        !strcmp(err, "\"num_attention_heads\" 4 is not a multiple of \"num_key_value_heads\" 3"),
        "%s", err);
  c = l; c.d_ff = 1000000;
  CHECK(gpt_config_check_named(&c, names, err, sizeof(err)) &&
        !strcmp(err, "\"intermediate_size\" is 1000000, expected 1 to 131072"), "%s", err);
  c = l; c.n_layer = 0; /* a name not given: the engine's own */
  CHECK(gpt_config_check_named(&c, names, err, sizeof(err)) &&
        !strcmp(err, "n_layer is 0, expected 1 to 256"), "%s", err);
}

/* A NaN in a tensor is refused at load, naming the tensor. */
static void test_nan_refused(void) {
  char err[200];
  GPTConfig c = {.n_layer = 1, .n_head = 2, .n_embd = 8, .n_ctx = 8, .vocab_size = 16,
                 .ln_eps = 1e-5};
  GPTModel *m = gpt_model_new(&c, 0, err, sizeof(err));
  float v[8] = {0, 0, 0, NAN, 0, 0, 0, 0};
  int i = gpt_tensor_index(&c, 0, "h.0.ln_1.bias");
  CHECK(i >= 0, "tensor index");
  CHECK(gpt_model_load(m, i, GPT_F32, 0, 8, v, err, sizeof(err)) &&
            !strcmp(err, "tensor h.0.ln_1.bias has a NaN or Inf at element 3"),
        "NaN refused: %s", err);
  CHECK(gpt_model_load(m, i, GPT_F32, 4, 8, v, err, sizeof(err)) != 0, "a run past the end is refused");
  gpt_model_free(m);
}

/* top-k keeps exactly k tokens, the lower id first where the k-th ties (as
** llama.cpp; README), and draws them in proportion to their probabilities. */
static void test_top_k_ties(void) {
  float logits[6] = {0.0f, 2.0f, 1.0f, 1.0f, 1.0f, -1.0f}; /* ids 2, 3, 4 tie */
  int count[6] = {0};
  GPTSampler s;
  CHECK(gpt_sampler_init(&s, 6, 1.0f, 2, 1.0f, 7) == 0, "sampler init");
  for (int i = 0; i < 20000; i++) count[gpt_sample(&s, logits)]++;
  gpt_sampler_free(&s);
  CHECK(count[0] == 0 && count[3] == 0 && count[4] == 0 && count[5] == 0,
        "top_k 2 drew outside {1, 2}: %d %d %d %d", count[0], count[3], count[4], count[5]);
  /* p(1) / (p(1) + p(2)) = e / (e + 1) = 0.731 */
  double f = count[1] / 20000.0;
  CHECK(fabs(f - 0.7311) < 0.015, "top_k 2 drew id 1 with frequency %.4f, expected 0.7311", f);
}

/* A pass takes at most the cores the process may use: more members only
** wait on each other's time slices. */
static void test_threads_capped(void) {
  int old = gpt_threads_set(256), n = gpt_threads_default();
  CHECK(gpt_threads_get() == n, "threads 256 gives %d, expected the %d cores", gpt_threads_get(), n);
  gpt_threads_set(1);
  CHECK(gpt_threads_get() == 1, "threads 1 gives %d", gpt_threads_get());
  gpt_threads_set(old);
}

/* Stops a prefill at its 20th logits block (a caller's interrupt): in the
** second of its passes, blocks being 32 rows. */
static int stop_at_20th(void *ctx, int pos0, int rows, const float *logits) {
  (void)pos0, (void)rows, (void)logits;
  return ++*(int *)ctx >= 20;
}

/* A prompt longer than a pass runs as several passes (PASS_TOKENS_MAX) and
** its attention in blocks of query rows (ATT_SCORES_MAX), with every value
** that of one pass and of decoding token by token: T = 2600 on 4,096
** positions, so that one pass's rows (2600 x 2600 scores) go in blocks.
** Two sequences of one gpt_forward_seqs call, 700 and 300 tokens, are cut
** into passes the same way. A pass stopped midway leaves the cache as it
** was. */
static void test_long_prompt(void) {
  enum { T = 2600 };
  char err[200];
  GPTConfig c = {.n_layer = 2, .n_head = 4, .n_embd = 32, .n_ctx = 4096, .vocab_size = 64,
                 .ln_eps = 1e-5, .arch = GPT_ARCH_LLAMA, .n_kv_head = 2, .head_dim = 8,
                 .d_ff = 48, .rope_theta = 10000};
  GPTModel *m = random_model(&c, 0, 11);
  int V = c.vocab_size, *tok = malloc(sizeof(int) * T);
  float *a = malloc(sizeof(float) * (size_t)T * V), *b = malloc(sizeof(float) * (size_t)T * V);
  float *d = malloc(sizeof(float) * (size_t)T * V);
  uint64_t r = 5;
  for (int t = 0; t < T; t++) tok[t] = (int)((urand(&r, 0.5f) + 0.5f) * (V - 1));
  /* passes of PASS_TOKENS_MAX */
  GPTState *st = gpt_state_new(m, T);
  Collect ca = {a, V};
  GPTForwardIO io = {0};
  io.on_logits = collect_logits;
  io.ctx = &ca;
  CHECK(gpt_forward(m, st, tok, T, &io, err, sizeof(err)) == GPT_OK, "long prefill: %s", err);
  CHECK(gpt_state_len(st) == T, "long prefill keeps %d positions", gpt_state_len(st));
  gpt_state_free(st);
  /* one pass, layer by layer, its attention in blocks */
  st = gpt_state_new(m, T);
  Collect cb = {b, V};
  io.ctx = &cb;
  CHECK(gpt_batch_begin(m, st, tok, T, err, sizeof(err)) == GPT_OK, "batch begin: %s", err);
  for (int l = 0; l < c.n_layer; l++) CHECK(gpt_batch_layer(m, st, l, &io) == GPT_OK, "layer");
  CHECK(gpt_batch_end(m, st, &io) == GPT_OK, "batch end");
  double diff = max_abs_diff(a, b, (size_t)T * V);
  CHECK(diff == 0, "passes of a long prompt vs one pass: max |diff| %g", diff);
  gpt_state_free(st);
  /* token by token */
  st = gpt_state_new(m, T);
  Collect cd = {d, V};
  io.ctx = &cd;
  int rc = GPT_OK;
  for (int t = 0; t < T && rc == GPT_OK; t++) rc = gpt_forward(m, st, tok + t, 1, &io, err, sizeof(err));
  CHECK(rc == GPT_OK, "long decode: %s", err);
  diff = max_abs_diff(a, d, (size_t)T * V);
  CHECK(diff <= 1e-4, "long prefill vs decode: max |diff| %g > 1e-4", diff);
  printf("long prompt, T=%d: passes vs one pass 0, vs decode %.3g\n", T, diff);
  /* stopped in its second pass: no position kept, the first pass's neither */
  gpt_state_truncate(st, 100);
  int calls = 0;
  GPTForwardIO stop = {0};
  stop.on_logits = stop_at_20th;
  stop.ctx = &calls;
  CHECK(gpt_forward(m, st, tok + 100, 1500, &stop, err, sizeof(err)) == GPT_ABORTED,
        "a stopped long prefill is GPT_ABORTED");
  CHECK(calls == 20 && gpt_state_len(st) == 100,
        "a long prefill stopped in its second pass (%d blocks) keeps %d positions, not 100",
        calls, gpt_state_len(st));
  gpt_state_free(st);
  /* two sequences of one call */
  GPTState *s1 = gpt_state_new(m, 700), *s2 = gpt_state_new(m, 300), *sc = gpt_state_new(m, 1);
  float *l1 = malloc(sizeof(float) * V), *l2 = malloc(sizeof(float) * V);
  GPTSeq seqs[2] = {{s1, tok, 700, l1}, {s2, tok + 1000, 300, l2}};
  CHECK(gpt_forward_seqs(m, sc, seqs, 2, NULL, err, sizeof(err)) == GPT_OK, "seqs: %s", err);
  CHECK(gpt_state_len(s1) == 700 && gpt_state_len(s2) == 300, "seqs keep 700 and 300");
  CHECK(max_abs_diff(l1, a + (size_t)699 * V, V) == 0, "a long sequence's logits, bit for bit");
  GPTState *one = gpt_state_new(m, 300);
  float *l3 = malloc(sizeof(float) * V);
  GPTForwardIO lone = {0};
  lone.logits = l3;
  CHECK(gpt_forward(m, one, tok + 1000, 300, &lone, err, sizeof(err)) == GPT_OK, "alone");
  CHECK(max_abs_diff(l2, l3, V) == 0, "the second sequence's logits equal its own pass's");
  gpt_state_free(s1), gpt_state_free(s2), gpt_state_free(sc), gpt_state_free(one);
  free(l1), free(l2), free(l3), free(tok), free(a), free(b), free(d);
  gpt_model_free(m);
}

/* Writes text to root/rel, making the folders on the way. */
static void put_file(const char *root, const char *rel, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  for (char *p = path + strlen(root) + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(path, 0700);
      *p = '/';
    }
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "cannot write %s", path);
  if (f) fputs(text, f), fclose(f);
}

/* A container's CPU limit caps the default thread count: cgroup v2's
** cpu.max and v1's quota, the smallest over the cgroup and its parents,
** rounded up; no limit, or files that make no sense, give 0. */
static void test_cgroup_limit(void) {
  char root[] = "/tmp/engine_test_cgroupXXXXXX", file[128];
  CHECK(mkdtemp(root) != NULL, "mkdtemp");
  snprintf(file, sizeof file, "%s/self", root);
  struct { const char *self, *rel1, *text1, *rel2, *text2; int want; } cases[] = {
    {"0::/a/b\n", "v2/a/b/cpu.max", "max 100000\n", "v2/a/cpu.max", "150000 100000\n", 2},
    {"0::/a/b\n", "v2/a/b/cpu.max", "50000 100000\n", "v2/cpu.max", "400000 100000\n", 1},
    {"0::/\n", "v2/cpu.max", "300000 100000\n", "v2/x", "", 3},
    {"0::/a\n", "v2/a/cpu.max", "max 100000\n", "v2/x", "", 0},
    {"0::/a\n", "v2/a/cpu.max", "0 100000\n", "v2/x", "", 0},
    {"0::/a\n", "v2/a/cpu.max", "100000 0\n", "v2/x", "", 0},
    {"0::/a\n", "v2/a/cpu.max", "garbage\n", "v2/x", "", 0},
    {"0::/../a\n", "v2/a/cpu.max", "100000 100000\n", "v2/x", "", 0},
    {"0::/a\n", "v2/a/cpu.max", "99999999999999999999 1\n", "v2/x", "", 0},
    {"0::/a\n", "v2/a/cpu.max", "400000000 100000\n", "v2/x", "", 64},
    {"4:cpu,cpuacct:/docker/c\n1:memory:/docker/c\n", "v1/cpu/docker/c/cpu.cfs_quota_us",
     "250000\n", "v1/cpu/docker/c/cpu.cfs_period_us", "100000\n", 3},
    {"4:cpuacct,cpu:/docker/c\n", "v1/cpu/cpu.cfs_quota_us", "-1\n", "v1/cpu/cpu.cfs_period_us",
     "100000\n", 0},
    {"4:cpuset:/docker/c\n", "v1/cpu/cpu.cfs_quota_us", "100000\n", "v1/cpu/cpu.cfs_period_us",
     "100000\n", 0},
  };
  for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
    char dir[96], sub[160];
    snprintf(dir, sizeof dir, "%s/%d", root, i);
    mkdir(dir, 0700);
    put_file(dir, "self", cases[i].self);
    put_file(dir, cases[i].rel1, cases[i].text1);
    put_file(dir, cases[i].rel2, cases[i].text2);
    snprintf(file, sizeof file, "%s/self", dir);
    snprintf(sub, sizeof sub, "%s/%s", dir, strncmp(cases[i].rel1, "v1", 2) == 0 ? "v1" : "v2");
    int got = gpt_cgroup_cpu_limit(file, sub);
    CHECK(got == cases[i].want, "cgroup case %d: %d cores, expected %d", i, got, cases[i].want);
  }
  CHECK(gpt_cgroup_cpu_limit("/nonexistent/cgroup", "/nonexistent") == 0, "no cgroup file");
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  CHECK(system(cmd) == 0, "%s", cmd);
}

int main(void) {
  test_config_checks();
  test_top_k_ties();
  test_threads_capped();
  test_cgroup_limit();
  test_nan_refused();
  GPTConfig c1 = {.n_layer = 2, .n_head = 4, .n_embd = 64, .n_ctx = 32, .vocab_size = 300,
                  .ln_eps = 1e-5};
  test_prefill_vs_decode(&c1, 0, 24);
  GPTConfig c2 = {.n_layer = 3, .n_head = 3, .n_embd = 48, .n_ctx = 40, .vocab_size = 257,
                  .ln_eps = 1e-3}; /* head_dim 16, own lm_head */
  test_prefill_vs_decode(&c2, 1, 40);
  /* the other architectures: GQA 2 and a batch past the tiled gemm and the
  ** first cache growth; MQA with q/k/v biases; head_dim != C / heads with
  ** q/k norm and an untied head; llama3 rope scaling */
  GPTConfig c3 = {.n_layer = 2, .n_head = 4, .n_embd = 64, .n_ctx = 256, .vocab_size = 300,
                  .ln_eps = 1e-5, .arch = GPT_ARCH_LLAMA, .n_kv_head = 2, .head_dim = 16,
                  .d_ff = 96, .rope_theta = 10000};
  test_prefill_vs_decode(&c3, 0, 150);
  GPTConfig c4 = {.n_layer = 2, .n_head = 4, .n_embd = 64, .n_ctx = 64, .vocab_size = 300,
                  .ln_eps = 1e-6, .arch = GPT_ARCH_QWEN2, .n_kv_head = 1, .head_dim = 16,
                  .d_ff = 128, .rope_theta = 1e6};
  test_prefill_vs_decode(&c4, 0, 40);
  GPTConfig c5 = {.n_layer = 2, .n_head = 4, .n_embd = 64, .n_ctx = 64, .vocab_size = 300,
                  .ln_eps = 1e-6, .arch = GPT_ARCH_QWEN3, .n_kv_head = 2, .head_dim = 24,
                  .d_ff = 80, .rope_theta = 1e6};
  test_prefill_vs_decode(&c5, 1, 40);
  GPTConfig c6 = {.n_layer = 1, .n_head = 4, .n_embd = 64, .n_ctx = 128, .vocab_size = 300,
                  .ln_eps = 1e-5, .arch = GPT_ARCH_LLAMA, .n_kv_head = 4, .head_dim = 16,
                  .d_ff = 96, .rope_theta = 500000, .rope_scaling = GPT_ROPE_LLAMA3,
                  .rope_factor = 32, .rope_low_freq_factor = 1, .rope_high_freq_factor = 4,
                  .rope_original_ctx = 16};
  test_prefill_vs_decode(&c6, 0, 80);
  test_long_prompt();
  printf("%d passed, %d failed\n", nPass, nFail);
  return nFail ? 1 : 0;
}
