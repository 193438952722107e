/*
** train_bench: training throughput and MFU, run by `make bench` after the
** main benchmark.
**
** For the demo model's shape (4 layers, 192 wide, 6 heads, 1024 tokens,
** sequences of 128, batch 8), GPT-2 124M's shape (12 layers, 768 wide,
** 50257 tokens; sequences of 128, batch 4, 2 steps to keep it short) and
** SmolLM2-135M's (a Llama: 30 layers, 576 wide, 9 heads over 3 key/value
** heads, SwiGLU 1536, 49152 tokens, tied; sequences of 128, batch 2, 2
** steps: a fine-tuning step), runs training
** steps (engine/train.c: forward with the tape, backward, AdamW) on random
** tokens and reports tokens/s and MFU: the model's FLOPs per second
** (gpt_train_flops_per_token) as a fraction of the sgemm GFLOP/s measured in
** the same run, (128 x 768) @ (768 x 3072)^T split over the same threads.
**
**   build/train_bench          THREADS=n to set the threads (default: all)
*/
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "blas.h"
#include "gpt.h"
#include "threads.h"
#include "train.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* C (M, N) = A (M, K) @ B^T in column chunks of 128 claimed by the team. */
typedef struct Gemm { const float *A, *B; float *C; int M, N, K; atomic_int next; } Gemm;

static void gemm_task(void *arg, int ith, int nth) {
  Gemm *g = arg;
  int ch;
  (void)ith; (void)nth;
  while ((ch = atomic_fetch_add(&g->next, 1)) * 128 < g->N) {
    int c0 = ch * 128, n = g->N - c0 < 128 ? g->N - c0 : 128;
    gpt_blas()->sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->M, n, g->K, 1.0f, g->A, g->K,
                      g->B + (size_t)c0 * g->K, g->K, 0.0f, g->C + c0, g->N);
  }
}

/* The best sgemm GFLOP/s of a few runs on the threads the passes use. */
static double sgemm_gflops(void) {
  int M = 128, N = 3072, K = 768;
  float *A = calloc((size_t)M * K, 4), *B = calloc((size_t)N * K, 4), *C = calloc((size_t)M * N, 4);
  for (int i = 0; i < M * K; i++) A[i] = (float)(i % 7) * 0.1f;
  for (int i = 0; i < N * K; i++) B[i] = (float)(i % 5) * 0.1f;
  double best = 0;
  GPTTeam *team = gpt_team_acquire(gpt_threads_get());
  for (int r = 0; r < 20; r++) {
    Gemm g = {A, B, C, M, N, K, 0};
    double t0 = now();
    gpt_team_run(team, gemm_task, &g);
    double dt = now() - t0, gf = 2.0 * M * N * K / dt * 1e-9;
    if (gf > best) best = gf;
  }
  gpt_team_release(team);
  free(A); free(B); free(C);
  return best;
}

/* Trains a model of this shape on random tokens for nStep steps after one
** warm-up step; prints tokens/s and MFU against peak GFLOP/s. */
static void bench_shape(const char *zName, const GPTConfig *pc, int T, int B, int nStep,
                        double peak) {
  GPTConfig c = *pc;
  int nVocab = c.vocab_size;
  char err[200];
  GPTModel *m = gpt_model_new(&c, 0, err, sizeof(err));
  if (!m) { printf("%s: %s\n", zName, err); return; }
  gpt_train_init(m, 1);
  GPTTrainer *tr = gpt_trainer_new(m, T, err, sizeof(err));
  if (!tr) { printf("%s: %s\n", zName, err); gpt_model_free(m); return; }
  int *tok = malloc(sizeof(int) * (size_t)(T + 1) * B);
  uint64_t s = 7;
  for (int i = 0; i < (T + 1) * B; i++) tok[i] = (int)(gpt_train_rand(&s) % (uint64_t)nVocab);
  double t0 = 0, loss;
  for (int step = 0; step <= nStep; step++) {
    if (step == 1) t0 = now();
    gpt_trainer_zero_grad(tr);
    for (int b = 0; b < B; b++)
      gpt_trainer_sequence(tr, tok + (size_t)b * (T + 1), T, 1.0 / B, &loss, err, sizeof(err));
    gpt_trainer_clip(tr, 1.0);
    gpt_trainer_adamw(tr, 1e-4, 0.1, step + 1);
  }
  double dt = now() - t0, tps = (double)nStep * B * T / dt;
  double gf = tps * gpt_train_flops_per_token(&c, T) * 1e-9;
  printf("train %-12s %3d layers %4d wide, T %d, batch %d: %8.0f tokens/s, %6.1f GFLOP/s, "
         "MFU %.2f\n", zName, c.n_layer, c.n_embd, T, B, tps, gf, gf / peak);
  free(tok);
  gpt_trainer_free(tr);
  gpt_model_free(m);
}

int main(void) {
  const char *z = getenv("THREADS");
  if (z) gpt_threads_set(atoi(z));
  if (!gpt_blas()) {
    printf("train: OpenBLAS cannot be used here (blas.h); no training figures\n");
    return 0;
  }
  double peak = sgemm_gflops();
  printf("train: sgemm %.1f GFLOP/s on %d threads ((128 x 768) @ (768 x 3072)^T)\n", peak,
         gpt_threads_get());
  GPTConfig demo = {.n_layer = 4, .n_head = 6, .n_embd = 192, .n_ctx = 128,
                    .vocab_size = 1024, .ln_eps = 1e-5};
  GPTConfig gpt2 = {.n_layer = 12, .n_head = 12, .n_embd = 768, .n_ctx = 128,
                    .vocab_size = 50257, .ln_eps = 1e-5};
  GPTConfig smol = {.n_layer = 30, .n_head = 9, .n_kv_head = 3, .n_embd = 576, .d_ff = 1536,
                    .n_ctx = 128, .vocab_size = 49152, .ln_eps = 1e-5, .arch = GPT_ARCH_LLAMA,
                    .rope_theta = 100000};
  bench_shape("demo", &demo, 128, 8, 5, peak);
  bench_shape("gpt2-124M", &gpt2, 128, 4, 2, peak);
  bench_shape("smollm2-135M", &smol, 128, 2, 2, peak);
  return 0;
}
