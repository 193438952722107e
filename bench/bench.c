/*
** The benchmark (make bench): the machine's limits and the model's speeds,
** measured in one run, each figure the median of BENCH_RUNS runs (5).
**
**   build/bench [OUT.md]            everything; the table also goes to OUT.md
**                                   (default bench/results/DATE-MACHINE.md)
**   build/bench --rss DB MODEL      (internal) load MODEL, print peak RSS
**   build/bench --decode            the decode rows alone, on bench/tmp/bench.db
**                                   as the last full run left it, after the
**                                   full run's bandwidth figure (BENCH_MODEL=
**                                   f32, f16 or q8_0 for one model;
**                                   BENCH_PROMPT=N for an N-token prompt,
**                                   1 to compare with llama-bench's tg128)
**   build/bench --busy              decode of the q8_0 model on 1 and 2 threads,
**                                   quiet and with another process spinning
**   build/bench --rows              the per-row figures alone, the same way
**   build/bench --batch             the gpt_batch figures alone, the same way
**   build/bench --llamacpp          llama.cpp side by side alone, the same way
**   build/bench --smollm            the SmolLM2-135M-shaped rows alone (llama:
**                                   decode f32/f16/q8_0, prefill 512;
**                                   BENCH_MODEL as for --decode,
**                                   BENCH_DECODE_ONLY=1 for decode alone)
**   build/bench --q4                the 4-bit rows alone (124M shape: decode
**                                   q8_0/q4_k/q4_0, prefill 128)
**   build/bench --machine           the machine line alone: the CPU, its core
**                                   generation (AMD: Zen 3, 4 or 5), cores
**
** It generates a GPT-2 124M-shaped model with seeded random weights
** (build/mkmodel, Hugging Face layout) under bench/tmp/, imports it into
** bench/tmp/bench.db, quantizes it to f16 and q8_0, and times:
**
**   machine   read bandwidth (1 and 2 threads reading 1 GiB, four streams a
**             thread), sgemm GFLOP/s
**             at the model's shapes (each thread one slice on single-threaded
**             OpenBLAS, as the engine runs it; and OpenBLAS's own threads)
**   import    gpt_import MB/s of safetensors; gpt_quantize
**   load      BLOB rows to memory, GB/s; peak RSS of a process that loads
**   prefill   tok/s at 128 and 512 prompt tokens
**   decode    tok/s of 128 tokens after a 128-token prompt (greedy); and
**             with another process keeping one core busy
**   SQL       per-row overhead of gpt_generate over 200 rows; prefix reuse
**   batch     gpt_batch over 256 rows against row-at-a-time gpt_generate
**   llama.cpp pp512 and tg128 of the same models in llama.cpp (node-llama-cpp)
**
** A fraction of a roofline above 1.05 is marked and explained (FRAC_NOTE).
**
** Rooflines: decode = bandwidth / bytes read per token (weights read by the
** products, the tied head included, plus the KV cache); prefill = sgemm
** GFLOP/s at the model's shapes / FLOPs per token. The SQL figures use the
** extension linked in (sqlite3_auto_extension), the engine figures call the
** engine directly on the model the extension loaded. BENCH_RUNS=N changes
** the number of runs; BENCH_QUICK=1 runs 3 and skips the slowest parts.
*/
#define SQLITE_CORE 1
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cblas.h>
#include <sqlite3.h>
#include "gpt_ext.h"
#include "kernels.h"
#include "kernels_q4.h"
#include "sampler.h"
#include "threads.h"

int sqlite3_gpt_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

#define TMPDIR "bench/tmp"
#define MODEL_DIR TMPDIR "/gpt2-124m-random"
#define DB_PATH TMPDIR "/bench.db"
#define MKMODEL_ARGS "--layers 12 --heads 12 --embd 768 --ctx 1024 --vocab 50257 --seed 1"

static int nRuns = 5;
static int nDecodePrompt = 128; /* --decode: BENCH_PROMPT */
static int bQuick = 0;
static int bDecodeOnly = 0;  /* --decode: the decode rows alone */
static FILE *gOut = 0;   /* the results file, besides stdout */

/* ------------------------------------------------------------ helpers */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *a, int n) {
  qsort(a, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2]);
}

/* Prints to stdout and the results file. */
static void out(const char *zFmt, ...) {
  va_list ap;
  va_start(ap, zFmt);
  vprintf(zFmt, ap);
  va_end(ap);
  fflush(stdout);
  if (gOut) {
    va_start(ap, zFmt);
    vfprintf(gOut, zFmt, ap);
    va_end(ap);
    fflush(gOut);
  }
}

static void die(const char *zFmt, const char *zArg) {
  fprintf(stderr, "bench: ");
  fprintf(stderr, zFmt, zArg);
  fprintf(stderr, "\n");
  exit(1);
}

static void exec_sql(sqlite3 *db, const char *zSql) {
  char *zErr = 0;
  if (sqlite3_exec(db, zSql, 0, 0, &zErr) != SQLITE_OK) die("%s", zErr);
}

/* Runs a one-value query; returns its text (static buffer) or dies. */
static const char *query1(sqlite3 *db, const char *zSql) {
  static char zBuf[1024];
  sqlite3_stmt *p = 0;
  if (sqlite3_prepare_v2(db, zSql, -1, &p, 0) != SQLITE_OK) die("%s", sqlite3_errmsg(db));
  int rc = sqlite3_step(p);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) die("%s", sqlite3_errmsg(db));
  snprintf(zBuf, sizeof(zBuf), "%s",
           rc == SQLITE_ROW && sqlite3_column_text(p, 0) ? (const char *)sqlite3_column_text(p, 0) : "");
  sqlite3_finalize(p);
  return zBuf;
}

static sqlite3 *open_db(const char *zPath) {
  sqlite3 *db = 0;
  if (sqlite3_open(zPath, &db) != SQLITE_OK) die("cannot open %s", zPath);
  return db;
}

static int64_t file_size(const char *zPath) {
  struct stat st;
  return stat(zPath, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* ----------------------------------------------------------- machine */

static char zCpu[256] = "unknown CPU";

/* AMD's core generation from its family and model numbers, "" when not
** known: the machines differ from run to run, and Zen 4 runs 512-bit
** vector instructions at half Zen 5's rate, so the name says which. */
static const char *amd_core_name(int family, int model) {
  if (family == 0x1a) return "Zen 5";
  if (family != 0x19) return "";
  if ((model >= 0x10 && model <= 0x1f) || (model >= 0x60 && model <= 0x7f) ||
      (model >= 0xa0 && model <= 0xaf))
    return "Zen 4";
  if (model <= 0x0f || (model >= 0x20 && model <= 0x5f)) return "Zen 3";
  return "";
}

static char zCpuCore[16] = ""; /* "Zen 4", or "" */

/* zCpu: the first CPU's model name, with its core generation and family
** and model numbers. */
static void read_cpu_model(void) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512], zName[200] = "unknown CPU";
  int family = -1, model = -1, amd = 0;
  if (!f) return;
  while (fgets(line, sizeof(line), f)) {
    char *z = strchr(line, ':');
    if (!z) continue;
    z++;
    while (*z == ' ') z++;
    z[strcspn(z, "\n")] = 0;
    if (strncmp(line, "model name", 10) == 0) snprintf(zName, sizeof(zName), "%s", z);
    else if (strncmp(line, "vendor_id", 9) == 0) amd = strcmp(z, "AuthenticAMD") == 0;
    else if (strncmp(line, "cpu family", 10) == 0) family = atoi(z);
    else if (strncmp(line, "model", 5) == 0 && (line[5] == ' ' || line[5] == '\t')) model = atoi(z);
    else if (strncmp(line, "processor", 9) == 0 && model >= 0) break; /* the first CPU's only */
  }
  fclose(f);
  if (amd) snprintf(zCpuCore, sizeof(zCpuCore), "%s", amd_core_name(family, model));
  if (family < 0 || model < 0) snprintf(zCpu, sizeof(zCpu), "%s", zName);
  else snprintf(zCpu, sizeof(zCpu), "%s (%s%sfamily %d, model %d)", zName, zCpuCore,
                zCpuCore[0] ? ": " : "", family, model);
}

static int cpu_flag(const char *zFlag) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[8192];
  int found = 0;
  if (!f) return 0;
  while (!found && fgets(line, sizeof(line), f)) {
    if (strncmp(line, "flags", 5) != 0) continue;
    for (char *z = strtok(line, " \t\n"); z; z = strtok(0, " \t\n"))
      if (strcmp(z, zFlag) == 0) found = 1;
    break;
  }
  fclose(f);
  return found;
}

/* Memory read bandwidth: nth threads each sum their share of a buffer far
** larger than the last-level cache, with 256-bit loads where the CPU has
** AVX2, each share read as four streams at once, as the decode kernels
** read several rows at once (the roofline is the best the machine does,
** not what one stream gets). On Zen 5, 2 cores: one stream a thread read
** 42 GB/s on 2 threads and 37-40 on 1, four streams 48-49 and 44-45;
** eight streams and 512-bit loads read no faster than four. Each read is
** taken twice, plainly and with each stream touched BW_AHEAD_BYTES ahead
** into L2, as the AVX-512 kernels touch their rows, and the faster counts:
** on Zen 4 the touched read ran 1.2-2x the plain one on 1 thread, and the
** q8_0 decode on 1 thread ran past the plain one. */
#define BW_AHEAD_BYTES 4096
typedef struct BwTask { const uint64_t *buf; size_t n; int ahead; uint64_t sum[64]; } BwTask;

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
/* p (n,) as four streams of n / 4 (a multiple of 8 each), the rest after.
** With ahead, each stream is touched into L2 that many bytes ahead. */
__attribute__((target("avx2"))) static uint64_t bw_sum_avx2(const uint64_t *p, size_t n,
                                                           int ahead) {
  size_t q = n / 4 & ~(size_t)7;
  const uint64_t *p1 = p + q, *p2 = p + 2 * q, *p3 = p + 3 * q;
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < q; i += 8) {
    if (ahead) {
      _mm_prefetch((const char *)(p + i) + ahead, _MM_HINT_T1);
      _mm_prefetch((const char *)(p1 + i) + ahead, _MM_HINT_T1);
      _mm_prefetch((const char *)(p2 + i) + ahead, _MM_HINT_T1);
      _mm_prefetch((const char *)(p3 + i) + ahead, _MM_HINT_T1);
    }
    a0 = _mm256_add_epi64(a0, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p + i)),
                                                _mm256_load_si256((const __m256i *)(p + i + 4))));
    a1 = _mm256_add_epi64(a1, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p1 + i)),
                                                _mm256_load_si256((const __m256i *)(p1 + i + 4))));
    a2 = _mm256_add_epi64(a2, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p2 + i)),
                                                _mm256_load_si256((const __m256i *)(p2 + i + 4))));
    a3 = _mm256_add_epi64(a3, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p3 + i)),
                                                _mm256_load_si256((const __m256i *)(p3 + i + 4))));
  }
  uint64_t t[4], rest = 0;
  for (size_t i = 4 * q; i < n; i++) rest += p[i];
  _mm256_storeu_si256((__m256i *)t, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return t[0] + t[1] + t[2] + t[3] + rest;
}
#endif

static void bw_task(void *arg, int ith, int nth) {
  BwTask *a = (BwTask *)arg;
  size_t lo = a->n / nth * ith, hi = ith == nth - 1 ? a->n : a->n / nth * (ith + 1);
  lo &= ~(size_t)15;
#if defined(__GNUC__) && defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) {
    a->sum[ith] = bw_sum_avx2(a->buf + lo, hi - lo, a->ahead);
    return;
  }
#endif
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = lo; i + 4 <= hi; i += 4) {
    s0 += a->buf[i]; s1 += a->buf[i + 1]; s2 += a->buf[i + 2]; s3 += a->buf[i + 3];
  }
  a->sum[ith] = s0 + s1 + s2 + s3;
}

static double aBw[3];  /* GB/s by thread count */

/* Seconds for team to read buf (nBytes), touched ahead or not. */
static double timed_read(GPTTeam *team, const uint64_t *buf, size_t nBytes, int ahead) {
  BwTask a;
  memset(&a, 0, sizeof(a));
  a.buf = buf;
  a.n = nBytes / 8;
  a.ahead = ahead;
  double t0 = now();
  gpt_team_run(team, bw_task, &a);
  return now() - t0;
}

/* GB/s of reading buf (nBytes) on nth threads: the median of nPass reads,
** plain or touched ahead, whichever is faster. */
static double read_bandwidth(const uint64_t *buf, size_t nBytes, int nth, int nPass) {
  double t[64];
  GPTTeam *team = gpt_team_acquire(nth);
  double best = 0;
  for (int ahead = 0; ahead <= BW_AHEAD_BYTES; ahead += BW_AHEAD_BYTES) {
    for (int r = 0; r < nPass; r++) t[r] = timed_read(team, buf, nBytes, ahead);
    double gbs = nBytes / median(t, nPass) / 1e9;
    if (gbs > best) best = gbs;
  }
  gpt_team_release(team);
  return best;
}

#define BW_BYTES ((size_t)1 << 30)

/* A 1 GiB buffer held as the engine holds weights (2 MB pages where the
** kernel gives them, engine/gpt.c's arena_alloc), written once so that
** every page is there, then read once untimed. No two pages are alike:
** pages of one byte repeated (a memset) are what a hypervisor's same-page
** merging folds together. The first read of a fresh buffer ran at 1-6 GB/s
** in some runs, against 30 a moment later. */
static uint64_t *bandwidth_buffer(void) {
  uint64_t *buf = aligned_alloc((size_t)2 << 20, BW_BYTES);
  if (!buf) die("%s", "out of memory for the bandwidth buffer");
#ifdef MADV_HUGEPAGE
  madvise(buf, BW_BYTES, MADV_HUGEPAGE);
#endif
  for (size_t i = 0; i < BW_BYTES / 8; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
  read_bandwidth(buf, BW_BYTES, 1, 1);
  return buf;
}

static void bench_bandwidth(void) {
  uint64_t *buf = bandwidth_buffer();
  for (int nth = 1; nth <= 2; nth++) aBw[nth] = read_bandwidth(buf, BW_BYTES, nth, nRuns);
  free(buf);
}

/* sgemm at the model's shapes, C (M, N) = A (M, K) @ B^T, B (N, K) as the
** engine keeps its weights: split over a team in column slices, each on
** single-threaded OpenBLAS (the engine's way), or one call on OpenBLAS's own
** threads. */
typedef struct GemmTask { int M, N, K; const float *A, *B; float *C; } GemmTask;

static void gemm_slice_task(void *arg, int ith, int nth) {
  GemmTask *g = (GemmTask *)arg;
  int c0, c1;
  gpt_team_split(g->N, 16, ith, nth, &c0, &c1);
  if (c0 < c1)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->M, c1 - c0, g->K, 1.0f, g->A,
                g->K, g->B + (size_t)c0 * g->K, g->K, 0.0f, g->C + c0, g->N);
}

static const int aShape[4][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}};
static double aGemm[2][3];       /* [M 128|512][threads]: model-shape GFLOP/s */
static double aGemmShape[4][3];  /* M = 512, per shape */
static double aGemmOwn[3];       /* M = 512, OpenBLAS's own threads */

static void bench_sgemm(void) {
  int aM[2] = {128, 512};
  size_t nMax = (size_t)512 * 3072;
  float *A = malloc(nMax * sizeof(float)), *B = malloc((size_t)3072 * 3072 * sizeof(float));
  float *C = malloc((size_t)512 * 3072 * sizeof(float));
  if (!A || !B || !C) die("%s", "out of memory");
  for (size_t i = 0; i < nMax; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
  for (size_t i = 0; i < (size_t)3072 * 3072; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
  for (int im = 0; im < 2; im++) {
    for (int nth = 1; nth <= 2; nth++) {
      double flops = 0, secs = 0;
      GPTTeam *team = gpt_team_acquire(nth);
      for (int s = 0; s < 4; s++) {
        GemmTask g = {aM[im], aShape[s][1], aShape[s][0], A, B, C};
        double t[64], f = 2.0 * g.M * g.N * g.K;
        gpt_team_run(team, gemm_slice_task, &g); /* warm-up */
        for (int r = 0; r < nRuns; r++) {
          double t0 = now();
          gpt_team_run(team, gemm_slice_task, &g);
          t[r] = now() - t0;
        }
        double tm = median(t, nRuns);
        /* the layer's mix: one of each product */
        flops += f;
        secs += tm;
        if (im == 1) aGemmShape[s][nth] = f / tm / 1e9;
      }
      gpt_team_release(team);
      aGemm[im][nth] = flops / secs / 1e9;
    }
  }
#ifdef OPENBLAS_VERSION
  for (int nth = 1; nth <= 2; nth++) {
    double flops = 0, secs = 0;
    openblas_set_num_threads(nth);
    for (int s = 0; s < 4; s++) {
      int M = 512, N = aShape[s][1], K = aShape[s][0];
      double t[64];
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
      for (int r = 0; r < nRuns; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        t[r] = now() - t0;
      }
      flops += 2.0 * M * N * K;
      secs += median(t, nRuns);
    }
    aGemmOwn[nth] = flops / secs / 1e9;
  }
  openblas_set_num_threads(1);
#endif
  free(A); free(B); free(C);
}

/* Kernel throughput on a cache-resident matrix (768 x 3072, 2.5 to 9.4 MB),
** GB/s of weights: how far the kernels are from being compute-bound. */
typedef struct KTask { const void *W; int dtype, rows, K; const float *x; float *y; } KTask;

static void kernel_task(void *arg, int ith, int nth) {
  KTask *a = (KTask *)arg;
  const GPTKernels *k = gpt_kernels();
  int r0, r1;
  gpt_team_split(a->rows, 4, ith, nth, &r0, &r1);
  if (a->dtype == GPT_F32) k->gemv_f32(a->y, a->W, a->x, 0, r0, r1, a->K, GPT_GEMV_SET);
  else if (a->dtype == GPT_F16) k->gemv_f16(a->y, a->W, a->x, 0, r0, r1, a->K, GPT_GEMV_SET);
}

typedef struct KTaskQ { const uint8_t *W; int rows, K, packed; GPTQ8Act *x; float *y; } KTaskQ;

static void kernel_task_q8(void *arg, int ith, int nth) {
  KTaskQ *a = (KTaskQ *)arg;
  const GPTKernels *k = gpt_kernels();
  int r0, r1;
  gpt_team_split(a->rows, 4, ith, nth, &r0, &r1);
  (a->packed ? k->gemv_q8p : k->gemv_q8)(a->y, a->W, a->x, 0, r0, r1, a->K, GPT_GEMV_SET);
}

static int bKernQ8Packed; /* the q8_0 figure is the packed gemv's, as decode runs it */

static double aKern[3][3]; /* [f32 f16 q8][threads] GB/s */

static void bench_kernels(void) {
  int rows = 768, K = 3072, nb = K / 32;
  float *Wf = malloc((size_t)rows * K * 4), *x = malloc((size_t)K * 4), *y = malloc((size_t)rows * 4);
  uint16_t *Wh = malloc((size_t)rows * K * 2);
  /* whole lines, as kernels.h asks of packed rows */
  uint8_t *Wq = aligned_alloc(64, ((size_t)rows * nb * 34 + 63) / 64 * 64);
  GPTQ8Act xq = {NULL, NULL, NULL, NULL};
  xq.q = malloc((size_t)K); xq.aq = malloc((size_t)K); xq.d = malloc((size_t)nb * 4);
  if (!Wf || !x || !y || !Wh || !Wq || !xq.q || !xq.aq || !xq.d) die("%s", "out of memory");
  for (size_t i = 0; i < (size_t)rows * K; i++) {
    Wf[i] = (float)((i * 7919) % 2001) / 1000.0f - 1.0f;
    Wh[i] = gpt_f32_to_f16(Wf[i]);
  }
  for (int i = 0; i < K; i++) x[i] = (float)((i * 31) % 17) / 17.0f - 0.5f;
  gpt_q8_quantize_row(Wq, Wf, (int64_t)rows * K);
  /* as a loaded model holds them: packed where the set reads rows packed */
  bKernQ8Packed = gpt_kernels()->q8_pack && gpt_kernels()->q8_pack(Wq, rows, K);
  gpt_q8_quantize_act(&xq, x, K);
  for (int nth = 1; nth <= 2; nth++) {
    GPTTeam *team = gpt_team_acquire(nth);
    for (int d = 0; d < 3; d++) {
      double t[64], bytes = d == 0 ? rows * K * 4.0 : d == 1 ? rows * K * 2.0 : rows * nb * 34.0;
      int reps = 200;
      KTask a = {d == 0 ? (const void *)Wf : (const void *)Wh, d == 0 ? GPT_F32 : GPT_F16, rows, K, x, y};
      KTaskQ q = {Wq, rows, K, bKernQ8Packed, &xq, y};
      for (int r = 0; r < nRuns; r++) {
        double t0 = now();
        for (int i = 0; i < reps; i++) {
          if (d < 2) gpt_team_run(team, kernel_task, &a);
          else gpt_team_run(team, kernel_task_q8, &q);
        }
        t[r] = now() - t0;
      }
      aKern[d][nth] = bytes * reps / median(t, nRuns) / 1e9;
    }
    gpt_team_release(team);
  }
  free(Wf); free(x); free(y); free(Wh); free(Wq); free(xq.q); free(xq.aq); free(xq.d);
}

/* Cost of one parallel region of the pool: empty tasks on a team of 2. */
static void empty_task(void *arg, int ith, int nth) { (void)arg; (void)ith; (void)nth; }

static double bench_pool_us(void) {
  double t[64];
  /* a member that came late (the machine busy) sits out the runs of a
  ** backoff: wait for the whole team, up to a second */
  GPTTeam *team = gpt_team_acquire(2);
  for (int i = 0; i < 100 && gpt_team_size(team) < 2; i++) {
    gpt_team_release(team);
    usleep(10000);
    team = gpt_team_acquire(2);
  }
  if (gpt_team_size(team) < 2) { gpt_team_release(team); return -1; }
  for (int r = 0; r < nRuns; r++) {
    double t0 = now();
    for (int i = 0; i < 20000; i++) gpt_team_run(team, empty_task, 0);
    t[r] = (now() - t0) / 20000;
  }
  gpt_team_release(team);
  return median(t, nRuns) * 1e6;
}

/* ------------------------------------------------------------- model */

static void make_model(void) {
  char zCmd[512];
  const char *zStamp = MODEL_DIR "/bench.args";
  FILE *f = fopen(zStamp, "r");
  char zOld[256] = "";
  if (f) {
    if (!fgets(zOld, sizeof(zOld), f)) zOld[0] = 0;
    fclose(f);
  }
  zOld[strcspn(zOld, "\n")] = 0;
  if (strcmp(zOld, MKMODEL_ARGS) == 0 && file_size(MODEL_DIR "/model.safetensors") > 0) return;
  snprintf(zCmd, sizeof(zCmd), "rm -rf %s && mkdir -p %s && build/mkmodel %s %s", MODEL_DIR,
           MODEL_DIR, MODEL_DIR, MKMODEL_ARGS);
  if (system(zCmd) != 0) die("%s failed", zCmd);
  f = fopen(zStamp, "w");
  if (!f) die("cannot write %s", zStamp);
  fprintf(f, "%s\n", MKMODEL_ARGS);
  fclose(f);
}

static void remove_db(const char *zPath) {
  char z[512];
  const char *azSuffix[] = {"", "-journal", "-wal", "-shm"};
  for (int i = 0; i < 4; i++) {
    snprintf(z, sizeof(z), "%s%s", zPath, azSuffix[i]);
    unlink(z);
  }
}

static double tImport, tQuant[2];

/* Imports the model nRuns times into fresh databases, keeping the last as
** DB_PATH, then quantizes it to f16 and q8_0. */
static void bench_import(void) {
  double t[64];
  const char *zTmp = TMPDIR "/import.db";
  for (int r = 0; r < nRuns; r++) {
    remove_db(zTmp);
    sqlite3 *db = open_db(zTmp);
    double t0 = now();
    query1(db, "SELECT gpt_import('gpt2', '" MODEL_DIR "')");
    t[r] = now() - t0;
    sqlite3_close(db);
  }
  tImport = median(t, nRuns);
  remove_db(DB_PATH);
  if (rename(zTmp, DB_PATH) != 0) die("cannot rename to %s", DB_PATH);
  sqlite3 *db = open_db(DB_PATH);
  const char *azType[2] = {"f16", "q8_0"};
  for (int k = 0; k < 2; k++) {
    char zSql[256];
    int n = bQuick ? 1 : nRuns;
    for (int r = 0; r < n; r++) {
      snprintf(zSql, sizeof(zSql), "SELECT gpt_drop('gpt2-%s') WHERE EXISTS (SELECT 1 FROM "
               "gpt_models WHERE name = 'gpt2-%s')", azType[k], azType[k]);
      query1(db, zSql);
      snprintf(zSql, sizeof(zSql), "SELECT gpt_quantize('gpt2', 'gpt2-%s', '%s')", azType[k],
               azType[k]);
      double t0 = now();
      query1(db, zSql);
      t[r] = now() - t0;
    }
    tQuant[k] = median(t, n);
  }
  sqlite3_close(db);
}

/* The three models of the run. */
static const char *azModel[3] = {"gpt2", "gpt2-f16", "gpt2-q8_0"};
static const char *azModelDtype[3] = {"f32", "f16", "q8_0"};
static int64_t aStored[3];     /* bytes of tensor rows */
static double aLoad[3];        /* GB/s */

static void bench_load(sqlite3 *db, GptConn *pConn) {
  (void)pConn;
  for (int i = 0; i < 3; i++) {
    char zSql[256];
    double t[64];
    snprintf(zSql, sizeof(zSql), "SELECT sum(length(data)) FROM gpt_tensors WHERE model = '%s'",
             azModel[i]);
    aStored[i] = atoll(query1(db, zSql));
    for (int r = 0; r < nRuns; r++) {
      GptModel *m = 0, *mTok = 0;
      char *zErr = 0;
      /* the tokenizer first, so that only the weights are timed */
      if (gptext_model_acquire(0, db, "bench", azModel[i], 0, &mTok, &zErr) != SQLITE_OK) die("%s", zErr);
      double t0 = now();
      if (gptext_model_acquire(0, db, "bench", azModel[i], 1, &m, &zErr) != SQLITE_OK) die("%s", zErr);
      t[r] = now() - t0;
      gptext_model_release(m);
      gptext_model_release(mTok);
    }
    aLoad[i] = aStored[i] / median(t, nRuns) / 1e9;
  }
}

/* The 1-minute load average: other processes on the machine skew every
** figure, the 2-thread ones most (a busy second core). */
static double load_average(void) {
  FILE *f = fopen("/proc/loadavg", "r");
  double v = -1;
  if (f) {
    if (fscanf(f, "%lf", &v) != 1) v = -1;
    fclose(f);
  }
  return v;
}

/* Peak RSS (VmHWM) of this process, in bytes. */
static int64_t peak_rss(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int64_t kb = -1;
  if (!f) return -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmHWM:", 6) == 0) kb = atoll(line + 6);
  fclose(f);
  return kb * 1024;
}

/* --rss DB MODEL: load the model, print the peak RSS after loading, then
** after a generation of 16 tokens (which allocates the KV cache), the
** bytes in memory, and the KV cache's bytes. */
static int rss_main(const char *zDb, const char *zModel) {
  sqlite3 *db = open_db(zDb);
  GptModel *m = 0;
  char *zErr = 0, zSql[256];
  if (gptext_model_acquire(0, db, "bench", zModel, 1, &m, &zErr) != SQLITE_OK) die("%s", zErr);
  int64_t hwmLoad = peak_rss();
  snprintf(zSql, sizeof(zSql), "SELECT gpt_generate('The quick brown fox', "
           "'{\"max_tokens\":16,\"model\":\"%s\"}')", zModel);
  query1(db, zSql);
  int64_t hwmGen = peak_rss();
  int64_t kv = 2LL * m->cfg.n_layer * m->cfg.n_ctx * m->cfg.n_embd * 4;
  printf("%lld %lld %lld %lld\n", (long long)hwmLoad, (long long)hwmGen,
         (long long)gpt_model_bytes(m->pNet), (long long)kv);
  gptext_model_release(m);
  sqlite3_close(db);
  return 0;
}

static int64_t aRssLoad[3], aRssGen[3], aKv;

static void bench_rss(const char *zSelf) {
  for (int i = 0; i < 3; i++) {
    double a[64], b[64];
    for (int r = 0; r < nRuns; r++) {
      char zCmd[512];
      snprintf(zCmd, sizeof(zCmd), "%s --rss %s %s", zSelf, DB_PATH, azModel[i]);
      FILE *p = popen(zCmd, "r");
      long long hl = 0, hg = 0, mb = 0, kv = 0;
      if (!p || fscanf(p, "%lld %lld %lld %lld", &hl, &hg, &mb, &kv) != 4) die("%s failed", zCmd);
      pclose(p);
      a[r] = (double)hl;
      b[r] = (double)hg;
      aKv = kv;
    }
    aRssLoad[i] = (int64_t)median(a, nRuns);
    aRssGen[i] = (int64_t)median(b, nRuns);
  }
}

/* ----------------------------------------------------- prefill/decode */

static int aTok[1024];

/* Median seconds of a prefill of T tokens on a fresh cache. */
static double time_prefill(const GPTModel *net, GPTState *s, int T, float *logits) {
  double t[64];
  char zErr[200];
  GPTForwardIO io;
  memset(&io, 0, sizeof(io));
  io.logits = logits;
  gpt_state_truncate(s, 0);
  if (gpt_forward(net, s, aTok, T, &io, zErr, sizeof(zErr))) die("%s", zErr); /* warm-up */
  for (int r = 0; r < nRuns; r++) {
    gpt_state_truncate(s, 0);
    double t0 = now();
    if (gpt_forward(net, s, aTok, T, &io, zErr, sizeof(zErr))) die("%s", zErr);
    t[r] = now() - t0;
  }
  return median(t, nRuns);
}

/* Seconds to read window w (of BW_BYTES / BW_WINDOW) of the bandwidth
** buffer on nth threads, touched ahead or not. The team is taken for the
** read only: the decode step after it takes the pool itself. */
#define BW_WINDOW ((size_t)64 << 20)
static double read_window(const uint64_t *buf, int w, int nth, int ahead) {
  GPTTeam *team = gpt_team_acquire(nth);
  double secs = timed_read(team, buf + (size_t)w * (BW_WINDOW / 8), BW_WINDOW, ahead);
  gpt_team_release(team);
  return secs;
}

/* nRuns runs of nGen greedy decode steps after a prompt of nPrompt. Before
** each step, nth threads read a 64 MB window of the bandwidth buffer (the
** next one each time, larger than the last-level cache, so never cached),
** alternately plain and touched ahead: the run's roofline is the faster of
** the two rates, sampled over the run's own time. A read taken once before
** the run missed the machine's drift: on a shared Zen 4, reads before a run
** spiked to 45-57 GB/s against 31-34 for the ones around it. Gives the
** medians of tok/s, of GB/s and of the runs' fractions of their rooflines
** (nBytes read per step). Without bwBuf, no reads: tok/s alone. */
static void time_decode(const GPTModel *net, GPTState *s, int nPrompt, int nGen, float *logits,
                        const uint64_t *bwBuf, int nth, double nBytes, double *pTokS,
                        double *pBw, double *pFrac) {
  double tok[64], bw[64], frac[64];
  char zErr[200];
  GPTForwardIO io;
  memset(&io, 0, sizeof(io));
  io.logits = logits;
  int nWindow = (int)(BW_BYTES / BW_WINDOW), w = 0;
  for (int r = 0; r < nRuns; r++) {
    gpt_state_truncate(s, 0);
    if (gpt_forward(net, s, aTok, nPrompt, &io, zErr, sizeof(zErr))) die("%s", zErr);
    double secs = 0, readSecs[2] = {0, 0};
    int nRead[2] = {0, 0};
    for (int i = 0; i < nGen; i++) {
      int t = gpt_argmax(logits, gpt_model_config(net)->vocab_size);
      if (bwBuf) {
        readSecs[i & 1] += read_window(bwBuf, w++ % nWindow, nth, (i & 1) * BW_AHEAD_BYTES);
        nRead[i & 1]++;
      }
      double t0 = now();
      if (gpt_forward(net, s, &t, 1, &io, zErr, sizeof(zErr))) die("%s", zErr);
      secs += now() - t0;
    }
    bw[r] = 0;
    for (int k = 0; k < 2; k++) {
      double gbs = nRead[k] ? nRead[k] * (double)BW_WINDOW / readSecs[k] / 1e9 : 0;
      if (gbs > bw[r]) bw[r] = gbs;
    }
    tok[r] = nGen / secs;
    frac[r] = bw[r] > 0 ? tok[r] * nBytes / (bw[r] * 1e9) : 0;
  }
  *pTokS = median(tok, nRuns);
  *pBw = median(bw, nRuns);
  *pFrac = median(frac, nRuns);
}

/* Bytes one decode step reads: every 2-D weight but the embeddings' rows
** (wte counts as the tied head; one row of wpe), the 1-D tensors, and the
** KV cache at nPos positions. */
static double decode_bytes(const GPTModel *net, int hasLmHead, double nPos) {
  const GPTConfig *c = gpt_model_config(net);
  double b = 0;
  for (int i = 0; i < gpt_n_tensors(c, hasLmHead); i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, hasLmHead, i, &info);
    int64_t nb = gpt_tensor_bytes(&info, gpt_model_tensor_dtype(net, i));
    if (strcmp(info.name, "wpe.weight") == 0) nb = nb / c->n_ctx;  /* wpe: one row */
    b += (double)nb;
  }
  return b + 2.0 * c->n_layer * nPos * gpt_config_kv_heads(c) * gpt_config_head_dim(c) * 4;
}

/* FLOPs per token of a T-token prefill: the products, causal attention
** (scores and values over t+1 keys for token t), the head for one token. */
static double prefill_flops(const GPTConfig *c, int T) {
  double C = c->n_embd, L = c->n_layer;
  double mm = 2.0 * L * (3 * C * C + C * C + 4 * C * C + 4 * C * C);
  double att = L * 4.0 * C * (T + 1) / 2.0;
  double head = 2.0 * c->vocab_size * C / T;
  return mm + att + head;
}

static double aPrefill[3][2][3];   /* [model][T 128|512][threads] tok/s */
static double aPrefillGemm[3][2][3]; /* sgemm GFLOP/s measured just before */
static double aDecode[4][3];       /* [f32 own, f16, q8_0, f32 blas][threads] tok/s */
static double aDecodeBw[4][3];     /* bandwidth read between a run's steps (median) */
static double aDecodeFrac[4][3];   /* median of the runs' fractions of their rooflines */
static double aDecodeBytes[4];

/* A fraction of a roofline above 1.05 is printed with this mark and the
** footnote FRAC_NOTE: the roofline is a measurement taken just before the
** run, not a bound, and a run can beat it. */
#define FRAC_NOTE "* above 1.05: the run was faster than the bandwidth (read between its " \
  "steps) or sgemm rate (measured just before it), which is the roofline here: a " \
  "measurement, not a bound; the machine's speed drifts (clock boost, other load)."
static int nFracMarked;
static const char *frac_mark(double f) {
  if (f <= 1.05) return "";
  nFracMarked++;
  return " *";
}

/* The prompt tokens of the GPT-2-shaped rows: seeded, below GPT-2's vocabulary. */
static void gpt2_tokens(void) {
  uint64_t x = 12345;
  for (int i = 0; i < 1024; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    aTok[i] = (int)((x >> 33) % 50000);
  }
}

static void bench_engine(sqlite3 *db) {
  gpt2_tokens();
  int nGen = bQuick ? 32 : 128;
  const char *zOnly = getenv("BENCH_MODEL"); /* --decode: f32, f16 or q8_0 alone */
  uint64_t *bwBuf = bandwidth_buffer();
  for (int i = 0; i < 3; i++) {
    GptModel *m = 0;
    char *zErr = 0;
    if (bDecodeOnly && zOnly && strcmp(zOnly, azModelDtype[i]) != 0) continue;
    if (gptext_model_acquire(0, db, "bench", azModel[i], 1, &m, &zErr) != SQLITE_OK) die("%s", zErr);
    GPTState *s = gpt_state_new(m->pNet, m->cfg.n_ctx);
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    if (!s || !logits) die("%s", "out of memory");
    aDecodeBytes[i] = decode_bytes(m->pNet, 0, nDecodePrompt + nGen / 2.0);
    if (i == 0) aDecodeBytes[3] = aDecodeBytes[0];
    for (int nth = 1; nth <= 2; nth++) {
      gpt_threads_set(nth);
      if (!bDecodeOnly) {
        /* not before --decode's rows: OpenBLAS's own threads, just used
        ** here, spin for a while after a call and steal the cores from the
        ** bandwidth read that starts each decode run (it read 1-3 GB/s) */
        bench_sgemm();
        aPrefillGemm[i][0][nth] = aGemm[0][nth];
        aPrefillGemm[i][1][nth] = aGemm[1][nth];
      }
      if (!bDecodeOnly) aPrefill[i][0][nth] = 128 / time_prefill(m->pNet, s, 128, logits);
      if (!bDecodeOnly && (!bQuick || i == 0))
        aPrefill[i][1][nth] = 512 / time_prefill(m->pNet, s, 512, logits);
      time_decode(m->pNet, s, nDecodePrompt, nGen, logits, bwBuf, nth, aDecodeBytes[i],
                  &aDecode[i][nth], &aDecodeBw[i][nth], &aDecodeFrac[i][nth]);
      if (i == 0) {
        gpt_kernels_select("blas");
        time_decode(m->pNet, s, nDecodePrompt, nGen, logits, bwBuf, nth, aDecodeBytes[i],
                    &aDecode[3][nth], &aDecodeBw[3][nth], &aDecodeFrac[3][nth]);
        gpt_kernels_select("auto");
      }
    }
    gpt_threads_set(0);
    free(logits);
    gpt_state_free(s);
    gptext_model_release(m);
  }
  free(bwBuf);
}

/* ----------------------------------------------- one core busy elsewhere */

/* A child process that spins until it is killed, or its parent exits (a
** die() between start and stop): another program keeping one core busy. */
static pid_t spinner_start(void) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    volatile uint64_t x = 0;
    for (;;) x++;
  }
  if (pid < 0) die("%s", "fork failed");
  return pid;
}

static void spinner_stop(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, 0, 0);
}

/* Decode of the q8_0 model (GPT-2 124M shape) on 1 and 2 threads, quiet and
** with another process spinning: a thread pool whose every run waited for
** a member the system had taken off its core ran 2 threads at 0.16-0.57 of
** 1 (engine/threads.c). */
static double aBusy[2][3]; /* [quiet, busy][threads] tok/s */
static void bench_busy(sqlite3 *db) {
  GptModel *m = 0;
  char *zErr = 0;
  if (gptext_model_acquire(0, db, "bench", azModel[2], 1, &m, &zErr) != SQLITE_OK) die("%s", zErr);
  GPTState *s = gpt_state_new(m->pNet, m->cfg.n_ctx);
  float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
  if (!s || !logits) die("%s", "out of memory");
  int nGen = bQuick ? 32 : 128;
  for (int busy = 0; busy < 2; busy++) {
    pid_t pid = busy ? spinner_start() : 0;
    for (int nth = 1; nth <= 2; nth++) {
      double bw, frac;
      gpt_threads_set(nth);
      time_decode(m->pNet, s, 128, nGen, logits, NULL, nth, 0, &aBusy[busy][nth], &bw, &frac);
      gpt_threads_set(0);
    }
    if (busy) spinner_stop(pid);
  }
  free(logits);
  gpt_state_free(s);
  gptext_model_release(m);
}

static void out_busy(void) {
  out("## Decode with one core busy elsewhere\n\nGPT-2 124M shape, q8_0, %d tokens after a "
      "128-token prompt, tok/s; \"busy\": another process spins on one core meanwhile (the "
      "system places it).\n\n| | 1 thread | 2 threads | 2 threads / 1 |\n|---|---:|---:|---:|\n",
      bQuick ? 32 : 128);
  const char *az[2] = {"quiet", "one core busy"};
  for (int b = 0; b < 2; b++)
    out("| %s | %.1f | %.1f | %.2f |\n", az[b], aBusy[b][1], aBusy[b][2],
        aBusy[b][1] > 0 ? aBusy[b][2] / aBusy[b][1] : 0);
  out("\n");
}

/* ------------------------------------------------------ SmolLM2 shape */

#define SMOL_DIR TMPDIR "/smollm2-135m-random"
#define SMOL_DB TMPDIR "/smollm2.db"
/* SmolLM2-135M's shape: 30 layers, hidden 576, 9 heads, 3 KV heads,
** intermediate 1536, vocabulary 49,152, tied (tests/tools/mkmodel.c) */
#define SMOL_ARGS "--arch llama --layers 30 --embd 576 --heads 9 --kv-heads 3 --ffn 1536 " \
                  "--vocab 49152 --ctx 8192 --rope-theta 100000 --lnf-gain 0.65 --tied --seed 1"

/* FLOPs per token of a T-token prefill of any architecture: twice the
** per-layer weights (every product), causal attention over the query
** width, the head for one token. */
static double prefill_flops_any(const GPTModel *net, int T) {
  const GPTConfig *c = gpt_model_config(net);
  double mm = 0;
  for (int i = 0; i < gpt_n_tensors(c, 0); i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, 0, i, &info);
    if (info.ndim == 2 && (strstr(info.name, "layers.") || strncmp(info.name, "h.", 2) == 0))
      mm += 2.0 * (double)info.n_elem;
  }
  double q = (double)c->n_head * gpt_config_head_dim(c);
  return mm + c->n_layer * 4.0 * q * (T + 1) / 2.0 + 2.0 * c->vocab_size * c->n_embd / T;
}

/* sgemm GFLOP/s at the layer shapes of net (M = 512 tokens against each
** distinct (rows, k) of a block, split as the engine splits), on nth
** threads. */
static double sgemm_at_shapes(const GPTModel *net, int nth) {
  const GPTConfig *c = gpt_model_config(net);
  int hd = gpt_config_head_dim(c), kv = gpt_config_kv_heads(c) * hd, q = c->n_head * hd;
  int F = gpt_config_ff(c), C = c->n_embd;
  int aRows[4] = {q + 2 * kv, C, 2 * F, C}, aK[4] = {C, q, C, F};
  float *A = malloc((size_t)512 * 8192 * sizeof(float)), *B = malloc((size_t)8192 * 8192 * sizeof(float));
  float *Cm = malloc((size_t)512 * 8192 * sizeof(float));
  if (!A || !B || !Cm) die("%s", "out of memory");
  for (size_t i = 0; i < (size_t)512 * 8192; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
  for (size_t i = 0; i < (size_t)8192 * 8192; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
  double flops = 0, secs = 0;
  /* one OpenBLAS thread a slice, as in bench_sgemm: the engine no longer
  ** loads OpenBLAS for a forward pass, which used to set this */
  openblas_set_num_threads(1);
  GPTTeam *team = gpt_team_acquire(nth);
  for (int s = 0; s < 4; s++) {
    GemmTask g = {512, aRows[s], aK[s], A, B, Cm};
    double t[64];
    gpt_team_run(team, gemm_slice_task, &g);
    for (int r = 0; r < nRuns; r++) {
      double t0 = now();
      gpt_team_run(team, gemm_slice_task, &g);
      t[r] = now() - t0;
    }
    flops += 2.0 * g.M * g.N * g.K;
    secs += median(t, nRuns);
  }
  gpt_team_release(team);
  free(A); free(B); free(Cm);
  return flops / secs / 1e9;
}

/* The SmolLM2-135M-shaped model (random weights): decode of 128 tokens
** after a 128-token prompt in f32, f16 and q8_0 as fractions of the
** bandwidth roofline (read between the steps), and a 512-token prefill as a
** fraction of sgemm at its shapes. */
static const char *azSmolType[3] = {"f32", "f16", "q8_0"};
static const char *azSmolName[3] = {"smol", "smol-f16", "smol-q8_0"};

/* SMOL_DB with the SmolLM2-shaped model in f32, f16 and q8_0, made anew
** (bFresh) or where it lacks them. */
static sqlite3 *smol_db(int bFresh) {
  char zCmd[1024];
  struct stat st;
  if (stat(SMOL_DIR "/model.safetensors", &st) != 0) {
    snprintf(zCmd, sizeof(zCmd), "build/mkmodel %s %s > /dev/null", SMOL_DIR, SMOL_ARGS);
    if (system(zCmd) != 0) die("%s failed", zCmd);
  }
  if (bFresh) remove_db(SMOL_DB);
  sqlite3 *db = open_db(SMOL_DB);
  const char *zHave = query1(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'gpt_models'");
  if (atoi(zHave) == 0 ||
      atoi(query1(db, "SELECT count(*) FROM gpt_models WHERE name LIKE 'smol%'")) < 3) {
    query1(db, "SELECT gpt_import('smol', '" SMOL_DIR "')");
    query1(db, "SELECT gpt_quantize('smol', 'smol-f16', 'f16')");
    query1(db, "SELECT gpt_quantize('smol', 'smol-q8_0', 'q8_0')");
  }
  return db;
}

static void bench_smollm(void) {
  sqlite3 *db = smol_db(1);
  uint64_t *bwBuf = bandwidth_buffer();
  int nGen = bQuick ? 32 : 128, nPrompt = 128;
  for (int i = 0; i < 1024; i++) aTok[i] = (i * 7 + 11) % 49000;
  out("## SmolLM2-135M shape (llama: 30 layers, hidden 576, 9 heads, 3 KV heads, "
      "intermediate 1536, vocabulary 49,152, tied; random weights)\n\n");
  out("| dtype | threads | decode tok/s | GB/s read between steps | decode fraction of roofline | "
      "prefill 512 tok/s | sgemm GFLOP/s | prefill fraction |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|\n");
  const char *zOnly = getenv("BENCH_MODEL"); /* f32, f16 or q8_0 alone */
  for (int i = 0; i < 3; i++) {
    GptModel *m = 0;
    char *zErr = 0;
    if (zOnly && strcmp(zOnly, azSmolType[i]) != 0) continue;
    if (gptext_model_acquire(0, db, "bench", azSmolName[i], 1, &m, &zErr) != SQLITE_OK) die("%s", zErr);
    GPTState *s = gpt_state_new(m->pNet, 1024);
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    if (!s || !logits) die("%s", "out of memory");
    double nBytes = decode_bytes(m->pNet, 0, nPrompt + nGen / 2.0);
    for (int nth = 1; nth <= 2; nth++) {
      double tok, bw, frac, pre, gemm, preFrac;
      gpt_threads_set(nth);
      time_decode(m->pNet, s, nPrompt, nGen, logits, bwBuf, nth, nBytes, &tok, &bw, &frac);
      if (bDecodeOnly) {
        out("| %s | %d | %.1f | %.1f | %.2f%s | | | |\n", azSmolType[i], nth, tok, bw, frac,
            frac_mark(frac));
        continue;
      }
      pre = 512 / time_prefill(m->pNet, s, 512, logits);
      gemm = sgemm_at_shapes(m->pNet, nth);
      preFrac = pre / (gemm * 1e9 / prefill_flops_any(m->pNet, 512));
      out("| %s | %d | %.1f | %.1f | %.2f%s | %.0f | %.0f | %.2f%s |\n", azSmolType[i], nth, tok,
          bw, frac, frac_mark(frac), pre, gemm, preFrac, frac_mark(preFrac));
    }
    gpt_threads_set(0);
    free(logits);
    gpt_state_free(s);
    gptext_model_release(m);
  }
  out("\n");
  free(bwBuf);
  sqlite3_close(db);
}

/* ------------------------------------------------------------ 4-bit */

#define Q4_DB TMPDIR "/q4.db"

/* The GPT-2 124M-shaped model (random weights) quantized by gpt_quantize to
** q8_0, q4_k (Q4_K_M-like: q6_k head, q6_k value and down projections in
** some layers) and q4_0 (q6_k head): decode of 128 tokens after a 128-token
** prompt as fractions of the bandwidth roofline (bytes of weights each step
** reads, as held, over the bandwidth read between the steps), on the kernel
** set in use (AVX-512 VNNI where the CPU has it), and a 128-token prefill. */
static void bench_q4(void) {
  static const char *azDtype[3] = {"q8_0", "q4_k", "q4_0"};
  char zCmd[1024], zSql[256];
  struct stat st;
  if (stat(MODEL_DIR "/model.safetensors", &st) != 0) {
    snprintf(zCmd, sizeof(zCmd), "build/mkmodel %s %s > /dev/null", MODEL_DIR, MKMODEL_ARGS);
    if (system(zCmd) != 0) die("%s failed", zCmd);
  }
  remove_db(Q4_DB);
  sqlite3 *db = open_db(Q4_DB);
  query1(db, "SELECT gpt_import('gpt2', '" MODEL_DIR "')");
  for (int i = 0; i < 3; i++) {
    snprintf(zSql, sizeof(zSql), "SELECT gpt_quantize('gpt2', 'gpt2-%s', '%s')", azDtype[i],
             azDtype[i]);
    query1(db, zSql);
  }
  uint64_t *bwBuf = bandwidth_buffer();
  int nGen = bQuick ? 32 : 128, nPrompt = 128;
  for (int i = 0; i < 1024; i++) aTok[i] = (i * 7 + 11) % 50000;
  out("## 4-bit decode, GPT-2 124M shape (random weights; kernels: %s)\n\n",
      gpt_q4_kernels()->name);
  out("| dtype | MB read per token | threads | decode tok/s | GB/s read between steps | "
      "decode fraction of roofline | prefill 128 tok/s |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n");
  for (int i = 0; i < 3; i++) {
    GptModel *m = 0;
    char *zErr = 0, zName[64];
    snprintf(zName, sizeof(zName), "gpt2-%s", azDtype[i]);
    if (gptext_model_acquire(0, db, "bench", zName, 1, &m, &zErr) != SQLITE_OK) die("%s", zErr);
    GPTState *s = gpt_state_new(m->pNet, 1024);
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    if (!s || !logits) die("%s", "out of memory");
    double nBytes = decode_bytes(m->pNet, 0, nPrompt + nGen / 2.0);
    for (int nth = 1; nth <= 2; nth++) {
      double tok, bw, frac, pre;
      gpt_threads_set(nth);
      time_decode(m->pNet, s, nPrompt, nGen, logits, bwBuf, nth, nBytes, &tok, &bw, &frac);
      pre = 128 / time_prefill(m->pNet, s, 128, logits);
      out("| %s | %.1f | %d | %.1f | %.1f | %.2f%s | %.0f |\n", azDtype[i], nBytes / 1e6, nth,
          tok, bw, frac, frac_mark(frac), pre);
    }
    gpt_threads_set(0);
    free(logits);
    gpt_state_free(s);
    gptext_model_release(m);
  }
  out("\n");
  free(bwBuf);
  sqlite3_close(db);
}

/* ------------------------------------------------------------- SQL */

/* Seconds of one statement run to completion. */
static double time_sql(sqlite3 *db, const char *zSql) {
  sqlite3_stmt *p = 0;
  if (sqlite3_prepare_v2(db, zSql, -1, &p, 0) != SQLITE_OK) die("%s", sqlite3_errmsg(db));
  double t0 = now();
  int rc;
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {}
  double t = now() - t0;
  if (rc != SQLITE_DONE) die("%s", sqlite3_errmsg(db));
  sqlite3_finalize(p);
  return t;
}

static const char *azWord[] = {
  "apple", "river", "stone", "cloud", "garden", "window", "silver", "market", "forest",
  "candle", "harbor", "winter", "letter", "mirror", "bridge", "engine", "planet", "valley",
  "copper", "meadow", "lantern", "castle", "shadow", "thunder", "island", "pepper",
};
#define N_WORD (int)(sizeof(azWord) / sizeof(azWord[0]))

/* A sentence of n words chosen by seed. */
static void words(char *z, size_t nz, int n, unsigned seed) {
  size_t k = 0;
  z[0] = 0;
  for (int i = 0; i < n && k + 16 < nz; i++) {
    seed = seed * 1103515245u + 12345u;
    k += (size_t)snprintf(z + k, nz - k, "%s%s", i ? " " : "", azWord[(seed >> 16) % N_WORD]);
  }
}

/* ---------------------------------------------------------- batched rows */

/* gpt_batch against row-at-a-time gpt_generate (issue: one weight read per
** step for many rows): nRow rows of about 32-token prompts whose beginnings
** differ, 32 new tokens each, greedy, f32 124M. Prints the rows of a table:
** output tok/s row at a time, then for each batch size, and the best.
**
** Each batch size's ratio is to row-at-a-time output timed just before it
** (the first nPair rows), not only to the run of all rows at the start: the
** machine is shared, and row-at-a-time read 76 and 129 tok/s in runs an
** hour apart, which alone moved a ratio timed minutes away by 1.7x. */
static double rows_at_a_time(sqlite3 *db, int nRow) {
  char zSql[256];
  snprintf(zSql, sizeof(zSql), "SELECT count(gpt_generate(body, '{\"model\":\"gpt2\","
           "\"max_tokens\":32,\"temperature\":0}')) FROM temp.bdocs WHERE id <= %d", nRow);
  return 32.0 * nRow / time_sql(db, zSql);
}

static void bench_batch(sqlite3 *db) {
  int nRow = bQuick ? 64 : 256, nPair = bQuick ? 16 : 48;
  static const int aB[] = {4, 8, 16, 32, 64};
  char zBody[512], zSql[256];
  exec_sql(db, "DROP TABLE IF EXISTS temp.bdocs; CREATE TEMP TABLE bdocs(id INTEGER PRIMARY KEY, body TEXT)");
  sqlite3_stmt *pIns = 0;
  sqlite3_prepare_v2(db, "INSERT INTO temp.bdocs(body) VALUES (?1)", -1, &pIns, 0);
  for (int i = 0; i < nRow; i++) {
    char zW[400];
    words(zW, sizeof(zW), 24, (unsigned)i * 13 + 5);
    snprintf(zBody, sizeof(zBody), "%s, row %d.", zW, i);
    sqlite3_bind_text(pIns, 1, zBody, -1, SQLITE_TRANSIENT);
    sqlite3_step(pIns);
    sqlite3_reset(pIns);
  }
  sqlite3_finalize(pIns);
  const char *zAvg = query1(db, "SELECT avg(gpt_token_count(body, '{\"model\":\"gpt2\"}')) FROM temp.bdocs");
  double avgPrompt = atof(zAvg);
  double tRow = time_sql(db, "SELECT count(gpt_generate(body, "
                         "'{\"model\":\"gpt2\",\"max_tokens\":32,\"temperature\":0}')) FROM temp.bdocs");
  double nOut = 32.0 * nRow, best = 0, bestBefore = 1;
  int bestB = 0;
  out("## Many rows at once (gpt_batch)\n\n%d rows of %.1f-token prompts, 32 new tokens each, "
      "greedy, gpt2 124M f32, 2 threads: output tokens/s.\n\n"
      "| how | output tok/s | x row at a time | row at a time just before (%d rows), tok/s "
      "| x that |\n|---|---:|---:|---:|---:|\n", nRow, avgPrompt, nPair);
  out("| SELECT gpt_generate(body) FROM docs | %.1f | 1.00 | | |\n", nOut / tRow);
  for (size_t i = 0; i < sizeof(aB) / sizeof(aB[0]); i++) {
    snprintf(zSql, sizeof(zSql), "SELECT count(*) FROM gpt_batch('SELECT id, body FROM temp.bdocs', "
             "'{\"model\":\"gpt2\",\"max_tokens\":32,\"temperature\":0,\"batch\":%d}')", aB[i]);
    double before = rows_at_a_time(db, nPair), t = time_sql(db, zSql);
    out("| gpt_batch, batch %d | %.1f | %.2f | %.1f | %.2f |\n", aB[i], nOut / t, tRow / t,
        before, nOut / t / before);
    if (nOut / t > best) { best = nOut / t; bestB = aB[i]; bestBefore = before; }
  }
  out("\nBest: batch %d, %.1f output tok/s, %.2fx row at a time (%.2fx the rows just before "
      "it).\n\n", bestB, best, best / (nOut / tRow), best / bestBefore);
}

/* ------------------------------------------------------------ llama.cpp */

/* One row of the llama.cpp table: model zName of db exported with
** gpt_export to bench/tmp/zName.gguf (once), llama.cpp's pp512 and tg128 on
** it through node-llama-cpp (bench/llamacpp.mjs, the package in zMod), then
** ours for the same shapes, 2 threads. */
static void llamacpp_row(sqlite3 *db, const char *zMod, const char *zName, const char *zLabel) {
  char zPath[256], zSql[512], zCmd[768], zJson[256] = "";
  snprintf(zPath, sizeof(zPath), TMPDIR "/%s.gguf", zName);
  if (file_size(zPath) <= 0) {
    snprintf(zSql, sizeof(zSql), "SELECT gpt_export('%s', '%s')", zName, zPath);
    query1(db, zSql);
  }
  snprintf(zCmd, sizeof(zCmd), "node bench/llamacpp.mjs %s %s 2 %d", zMod, zPath, nRuns);
  FILE *f = popen(zCmd, "r");
  if (!f || !fgets(zJson, sizeof(zJson), f)) zJson[0] = 0;
  if (f) pclose(f);
  const char *zPp = strstr(zJson, "\"pp512\":"), *zTg = strstr(zJson, "\"tg128\":");
  if (!zPp || !zTg) {
    out("| %s | failed: %s | | | | | |\n", zLabel, zCmd);
    return;
  }
  double pp = atof(zPp + 8), tg = atof(zTg + 8);
  GptModel *m = 0;
  char *zErr = 0;
  if (gptext_model_acquire(0, db, "bench", zName, 1, &m, &zErr) != SQLITE_OK) die("%s", zErr);
  GPTState *s = gpt_state_new(m->pNet, 1024);
  float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
  if (!s || !logits) die("%s", "out of memory");
  int nPrev = gpt_threads_set(2);
  double ours = 512 / time_prefill(m->pNet, s, 512, logits);
  double t[64];
  char zMsg[200];
  GPTForwardIO io;
  memset(&io, 0, sizeof(io));
  io.logits = logits;
  for (int r = 0; r < nRuns; r++) {
    gpt_state_truncate(s, 0);
    if (gpt_forward(m->pNet, s, aTok, 1, &io, zMsg, sizeof(zMsg))) die("%s", zMsg);
    double t0 = now();
    for (int k = 1; k <= 128; k++)
      if (gpt_forward(m->pNet, s, aTok + k, 1, &io, zMsg, sizeof(zMsg))) die("%s", zMsg);
    t[r] = 128 / (now() - t0);
  }
  double oursTg = median(t, nRuns);
  gpt_threads_set(nPrev);
  gpt_state_free(s);
  free(logits);
  gptext_model_release(m);
  out("| %s | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f |\n", zLabel, pp, ours, ours / pp, tg,
      oursTg, oursTg / tg);
}

/* The bench's GPT-2 models and the SmolLM2-135M-shaped ones (smol_db)
** beside llama.cpp on the same machine, in the same minutes (llamacpp_row).
** Skipped, and said so, without node or npm. */
static void bench_llamacpp(sqlite3 *db) {
  const char *zMod = "build/llamacpp/node_modules";
  if (system("command -v node >/dev/null && command -v npm >/dev/null") != 0) {
    out("llama.cpp side by side: skipped (node or npm is not installed).\n\n");
    return;
  }
  if (file_size("build/llamacpp/node_modules/node-llama-cpp/dist/index.js") <= 0 &&
      system("mkdir -p build/llamacpp && cd build/llamacpp && npm install --no-audit --no-fund "
             "--ignore-scripts --omit=optional node-llama-cpp@3.22.1 "
             "@node-llama-cpp/linux-x64@3.22.1 >npm.log 2>&1") != 0) {
    out("llama.cpp side by side: skipped (npm could not install node-llama-cpp@3.22.1).\n\n");
    return;
  }
  for (int i = 0; i < 1024; i++) aTok[i] = 100 + (int)((i * 7919u) % 20000u);
  out("## Side by side with llama.cpp\n\nnode-llama-cpp 3.22.1 (its prebuilt llama.cpp CPU "
      "backend) on the GGUF files gpt_export writes, against the engine on the same models, "
      "2 threads, in turn: prefill of 512 tokens in one batch (llama-bench's pp512) and 128 "
      "decode steps after a 1-token prompt (tg128), tok/s.\n\n"
      "| model | pp512 llama.cpp | pp512 sqlite-gpt | ratio | tg128 llama.cpp | tg128 sqlite-gpt | ratio |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n");
  /* the bench's three models and 4-bit copies of the f32 one */
  static const char *azName[5] = {"gpt2", "gpt2-f16", "gpt2-q8_0", "gpt2-q4_k", "gpt2-q4_0"};
  static const char *azType[5] = {"f32", "f16", "q8_0", "q4_k", "q4_0"};
  char zSql[512], zLabel[64];
  for (int i = 0; i < 5; i++) {
    if (i >= 3) {
      snprintf(zSql, sizeof(zSql), "SELECT gpt_quantize('gpt2', '%s', '%s') WHERE NOT EXISTS "
               "(SELECT 1 FROM gpt_models WHERE name = '%s')", azName[i], azType[i], azName[i]);
      exec_sql(db, zSql);
    }
    snprintf(zLabel, sizeof(zLabel), "gpt2 124M %s", azType[i]);
    llamacpp_row(db, zMod, azName[i], zLabel);
  }
  sqlite3 *smol = smol_db(0);
  for (int i = 0; i < 3; i++) {
    snprintf(zLabel, sizeof(zLabel), "SmolLM2-135M shape %s", azSmolType[i]);
    llamacpp_row(smol, zMod, azSmolName[i], zLabel);
  }
  sqlite3_close(smol);
  out("\n");
}

typedef struct RowFig { double sqlRow, oneCall, engineRow, overhead; } RowFig;

/* Per-row overhead of gpt_generate(body, max_tokens 1) over 200 rows of
** model zModel: the query's time per row, one statement per row, and the
** engine's own time for the same prefills (tokenized the same way, the
** prefix shared with the row before kept in the cache as gpt_generate keeps
** it, the logits of the last token and its argmax). */
static RowFig bench_rows(sqlite3 *db, const char *zModel) {
  RowFig f;
  char zSql[512], zOne[512], zBody[512];
  double t[64], u[64], v[64], d[64];
  int nRow = 200;
  exec_sql(db, "DROP TABLE IF EXISTS temp.docs; CREATE TEMP TABLE docs(id INTEGER PRIMARY KEY, body TEXT)");
  sqlite3_stmt *pIns = 0;
  sqlite3_prepare_v2(db, "INSERT INTO temp.docs(body) VALUES (?1)", -1, &pIns, 0);
  for (int i = 0; i < nRow; i++) {
    char zW[400];
    words(zW, sizeof(zW), 12, (unsigned)i * 7 + 1);
    snprintf(zBody, sizeof(zBody), "Note %d: %s.", i, zW);
    sqlite3_bind_text(pIns, 1, zBody, -1, SQLITE_TRANSIENT);
    sqlite3_step(pIns);
    sqlite3_reset(pIns);
  }
  sqlite3_finalize(pIns);
  snprintf(zSql, sizeof(zSql), "SELECT gpt_generate(body, '{\"max_tokens\":1,\"model\":\"%s\"}') "
           "FROM temp.docs", zModel);
  snprintf(zOne, sizeof(zOne), "SELECT gpt_generate(?1, '{\"max_tokens\":1,\"model\":\"%s\"}')", zModel);
  time_sql(db, zSql); /* loads the model */
  /* the engine's side: the same token ids and the same prefix reuse */
  GptModel *m = 0;
  char *zErr = 0, zMsg[200];
  if (gptext_model_acquire(0, db, "bench", zModel, 1, &m, &zErr) != SQLITE_OK) die("%s", zErr);
  GPTState *s = gpt_state_new(m->pNet, m->cfg.n_ctx);
  float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
  int *aIds[200], nIds[200];
  sqlite3_stmt *pGet = 0;
  sqlite3_prepare_v2(db, "SELECT body FROM temp.docs ORDER BY id", -1, &pGet, 0);
  for (int i = 0; sqlite3_step(pGet) == SQLITE_ROW && i < nRow; i++) {
    if (gptext_encode(db, m, "bench", (const char *)sqlite3_column_text(pGet, 0),
                      sqlite3_column_bytes(pGet, 0), 0, &aIds[i], &nIds[i], &zErr))
      die("%s", zErr);
  }
  sqlite3_finalize(pGet);
  GPTForwardIO io;
  memset(&io, 0, sizeof(io));
  io.logits = logits;
  /* Each run goes through the rows in blocks of 20, timing the query, one
  ** statement per row and the engine on each block back to back, so that
  ** the overhead (query - engine) compares like with like on a machine whose
  ** speed drifts from one second to the next; the figures are the medians of
  ** the runs. */
  snprintf(zSql, sizeof(zSql), "SELECT gpt_generate(body, '{\"max_tokens\":1,\"model\":\"%s\"}') "
           "FROM temp.docs WHERE id BETWEEN ?1 AND ?2", zModel);
  sqlite3_stmt *pBlock = 0, *pSel = 0;
  sqlite3_prepare_v2(db, zSql, -1, &pBlock, 0);
  sqlite3_prepare_v2(db, "SELECT body FROM temp.docs WHERE id BETWEEN ?1 AND ?2 ORDER BY id", -1,
                     &pGet, 0);
  for (int r = 0; r < nRuns; r++) {
    double tq = 0, to = 0, te = 0;
    for (int i0 = 0; i0 < nRow; i0 += 20) {
      double t0 = now();
      sqlite3_bind_int(pBlock, 1, i0 + 1);
      sqlite3_bind_int(pBlock, 2, i0 + 20);
      while (sqlite3_step(pBlock) == SQLITE_ROW) {}
      sqlite3_reset(pBlock);
      tq += now() - t0;
      sqlite3_bind_int(pGet, 1, i0 + 1);
      sqlite3_bind_int(pGet, 2, i0 + 20);
      while (sqlite3_step(pGet) == SQLITE_ROW) {
        t0 = now();
        sqlite3_prepare_v2(db, zOne, -1, &pSel, 0);
        sqlite3_bind_value(pSel, 1, sqlite3_column_value(pGet, 0));
        while (sqlite3_step(pSel) == SQLITE_ROW) {}
        sqlite3_finalize(pSel);
        to += now() - t0;
      }
      sqlite3_reset(pGet);
      t0 = now();
      for (int i = i0; i < i0 + 20; i++) {
        /* the prefix shared with the previous row stays cached, as in SQL */
        int nCommon = 0;
        while (i > 0 && nCommon < nIds[i] - 1 && nCommon < nIds[i - 1] &&
               aIds[i][nCommon] == aIds[i - 1][nCommon])
          nCommon++;
        gpt_state_truncate(s, nCommon);
        if (gpt_forward(m->pNet, s, aIds[i] + nCommon, nIds[i] - nCommon, &io, zMsg, sizeof(zMsg)))
          die("%s", zMsg);
        gpt_argmax(logits, m->cfg.vocab_size);
      }
      te += now() - t0;
    }
    t[r] = tq / nRow;
    u[r] = to / nRow;
    v[r] = te / nRow;
    d[r] = t[r] - v[r];
  }
  sqlite3_finalize(pBlock);
  sqlite3_finalize(pGet);
  for (int i = 0; i < nRow; i++) sqlite3_free(aIds[i]);
  free(logits);
  gpt_state_free(s);
  gptext_model_release(m);
  f.overhead = median(d, nRuns);
  f.sqlRow = median(t, nRuns);
  f.oneCall = median(u, nRuns);
  f.engineRow = median(v, nRuns);
  return f;
}

/* Prefix reuse: nRow rows of a 200-token shared prefix and a 20-token
** suffix, against rows whose prefixes differ (same lengths). Returns the
** speed-up; *pShared and *pDistinct get the seconds per row. */
static double bench_prefix(sqlite3 *db, const char *zModel, double *pShared, double *pDistinct,
                           int *pnPrefix, int *pnSuffix) {
  char zPrefix[4096], zSql[512];
  double t[64], u[64];
  int nRow = bQuick ? 4 : 8;
  exec_sql(db, "DROP TABLE IF EXISTS temp.pdocs; CREATE TEMP TABLE pdocs(id INTEGER PRIMARY KEY, shared TEXT, distinct_ TEXT)");
  words(zPrefix, sizeof(zPrefix), 196, 99);
  sqlite3_stmt *pIns = 0;
  sqlite3_prepare_v2(db, "INSERT INTO temp.pdocs(shared, distinct_) VALUES (?1, ?2)", -1, &pIns, 0);
  for (int i = 0; i < nRow; i++) {
    char zSuffix[512], zA[8192], zOther[4096];
    words(zSuffix, sizeof(zSuffix), 18, 1000u + (unsigned)i);
    words(zOther, sizeof(zOther), 196, 2000u + (unsigned)i);
    snprintf(zA, sizeof(zA), "%s. Question %d: %s", zPrefix, i, zSuffix);
    sqlite3_bind_text(pIns, 1, zA, -1, SQLITE_TRANSIENT);
    snprintf(zA, sizeof(zA), "%s. Question %d: %s", zOther, i, zSuffix);
    sqlite3_bind_text(pIns, 2, zA, -1, SQLITE_TRANSIENT);
    sqlite3_step(pIns);
    sqlite3_reset(pIns);
  }
  sqlite3_finalize(pIns);
  {
    char zQ[512];
    snprintf(zQ, sizeof(zQ), "SELECT gpt_token_count(shared, '{\"model\":\"%s\"}') FROM "
             "temp.pdocs WHERE id = 1", zModel);
    *pnPrefix = atoi(query1(db, zQ));
    snprintf(zQ, sizeof(zQ), "SELECT gpt_token_count(shared, '{\"model\":\"%s\"}') - "
             "gpt_token_count(substr(shared, 1, instr(shared, '. Question') - 1), "
             "'{\"model\":\"%s\"}') FROM temp.pdocs WHERE id = 1", zModel, zModel);
    *pnSuffix = atoi(query1(db, zQ));
  }
  snprintf(zSql, sizeof(zSql), "SELECT gpt_generate(shared, '{\"max_tokens\":1,\"model\":\"%s\"}') "
           "FROM temp.pdocs ORDER BY id", zModel);
  time_sql(db, zSql);
  for (int r = 0; r < nRuns; r++) {
    /* a different first row, so that row 1 starts cold each run */
    char zCold[256];
    snprintf(zCold, sizeof(zCold), "SELECT gpt_generate('cold start %d', '{\"max_tokens\":1,\"model\":\"%s\"}')", r, zModel);
    time_sql(db, zCold);
    t[r] = time_sql(db, zSql) / nRow;
  }
  snprintf(zSql, sizeof(zSql), "SELECT gpt_generate(distinct_, '{\"max_tokens\":1,\"model\":\"%s\"}') "
           "FROM temp.pdocs ORDER BY id", zModel);
  for (int r = 0; r < nRuns; r++) u[r] = time_sql(db, zSql) / nRow;
  *pShared = median(t, nRuns);
  *pDistinct = median(u, nRuns);
  return *pDistinct / *pShared;
}

/* ------------------------------------------------------------- report */

static void machine_slug(char *z, size_t n) {
  size_t k = 0;
  int dash = 0;
  char zName[300];
  /* the model name and the core generation, without the numbers */
  snprintf(zName, sizeof(zName), "%.*s %s", (int)strcspn(zCpu, "("), zCpu, zCpuCore);
  for (const char *p = zName; *p && k + 8 < n; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) { z[k++] = *p; dash = 0; }
    else if (*p >= 'A' && *p <= 'Z') { z[k++] = (char)(*p - 'A' + 'a'); dash = 0; }
    else if (!dash && k > 0) { z[k++] = '-'; dash = 1; }
  }
  if (k > 0 && z[k - 1] == '-') k--;
  snprintf(z + k, n - k, "-%dc", gpt_threads_default());
}

int main(int argc, char **argv) {
  const char *zEnv = getenv("BENCH_RUNS");
  bQuick = getenv("BENCH_QUICK") && atoi(getenv("BENCH_QUICK")) > 0;
  if (bQuick) nRuns = 3;
  if (zEnv && atoi(zEnv) >= 1 && atoi(zEnv) <= 64) nRuns = atoi(zEnv);
  if (argc == 4 && strcmp(argv[1], "--rss") == 0) {
    sqlite3_auto_extension((void (*)(void))sqlite3_gpt_init);
    return rss_main(argv[2], argv[3]);
  }
  if (argc == 2 && strcmp(argv[1], "--machine") == 0) {
    /* the machine line of a full run, and its results file's name */
    char zSlug[128];
    read_cpu_model();
    machine_slug(zSlug, sizeof(zSlug));
    printf("%s, %d cores, AVX2 %s, AVX-512 %s; results: bench/results/DATE-%s.md\n", zCpu,
           gpt_threads_default(), cpu_flag("avx2") ? "yes" : "no",
           cpu_flag("avx512f") ? "yes" : "no", zSlug);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--kernels") == 0) {
    /* the cache-resident kernel figures alone, for quick checks */
    bench_kernels();
    for (int d = 0; d < 3; d++)
      printf("%s: %.1f GB/s (1 thread), %.1f GB/s (2 threads)\n", d == 0 ? "f32" : d == 1 ? "f16" : "q8_0",
             aKern[d][1], aKern[d][2]);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "--load") == 0) {
    /* load times alone, for quick checks */
    sqlite3_auto_extension((void (*)(void))sqlite3_gpt_init);
    sqlite3 *db = open_db(argv[2]);
    if (getenv("BENCH_MMAP")) exec_sql(db, "PRAGMA mmap_size=2000000000");
    for (int r = 0; r < nRuns; r++) {
      GptModel *m = 0, *mTok = 0;
      char *zErr = 0;
      /* the tokenizer first, so that only the weights are timed */
      if (gptext_model_acquire(0, db, "bench", argv[3], 0, &mTok, &zErr) != SQLITE_OK) die("%s", zErr);
      double t0 = now();
      if (gptext_model_acquire(0, db, "bench", argv[3], 1, &m, &zErr) != SQLITE_OK) die("%s", zErr);
      double t = now() - t0;
      printf("%.3f s, %.2f GB/s in memory\n", t, gpt_model_bytes(m->pNet) / t / 1e9);
      gptext_model_release(m);
      gptext_model_release(mTok);
    }
    sqlite3_close(db);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--smollm") == 0) {
    /* the SmolLM2-shaped rows alone, to stdout; BENCH_DECODE_ONLY=1: their
    ** decode figures alone */
    mkdir(TMPDIR, 0777);
    gOut = 0;
    bDecodeOnly = getenv("BENCH_DECODE_ONLY") && atoi(getenv("BENCH_DECODE_ONLY")) > 0;
    sqlite3_auto_extension((void (*)(void))sqlite3_gpt_init);
    bench_smollm();
    return 0;
  }
  if (argc == 2 && (strcmp(argv[1], "--llamacpp") == 0 || strcmp(argv[1], "--batch") == 0)) {
    /* llama.cpp side by side, or the gpt_batch rows, alone, on the models of
    ** the last full run (made first when there is none) */
    gOut = 0;
    sqlite3_auto_extension((void (*)(void))sqlite3_gpt_init);
    if (file_size(DB_PATH) <= 0) {
      make_model();
      bench_import();
    }
    sqlite3 *db = open_db(DB_PATH);
    if (strcmp(argv[1], "--batch") == 0) bench_batch(db);
    else bench_llamacpp(db);
    sqlite3_close(db);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--q4") == 0) {
    /* the 4-bit rows alone, to stdout */
    mkdir(TMPDIR, 0777);
    gOut = 0;
    sqlite3_auto_extension((void (*)(void))sqlite3_gpt_init);
    bench_q4();
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--rows") == 0) {
    /* the per-row figures alone, on the models of the last full run */
    sqlite3_auto_extension((void (*)(void))sqlite3_gpt_init);
    sqlite3 *db = open_db(DB_PATH);
    for (int i = 0; i < 2; i++) {
      RowFig f = bench_rows(db, i ? "small" : "gpt2");
      printf("%-5s query %.3f ms/row, one statement %.3f, engine %.3f, overhead %.3f ms\n",
             i ? "small" : "gpt2", f.sqlRow * 1e3, f.oneCall * 1e3, f.engineRow * 1e3,
             f.overhead * 1e3);
    }
    sqlite3_close(db);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--busy") == 0) {
    /* decode with another process spinning, on the models of the last full run */
    sqlite3_auto_extension((void (*)(void))sqlite3_gpt_init);
    sqlite3 *db = open_db(DB_PATH);
    gpt2_tokens();
    bench_busy(db);
    out_busy();
    sqlite3_close(db);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--decode") == 0) {
    /* the decode rows alone, on the models of the last full run */
    sqlite3_auto_extension((void (*)(void))sqlite3_gpt_init);
    sqlite3 *db = open_db(DB_PATH);
    bDecodeOnly = 1;
    const char *zPrompt = getenv("BENCH_PROMPT");
    if (zPrompt) {
      /* the 1,024-position cache holds the prompt and the 128 new tokens */
      nDecodePrompt = atoi(zPrompt);
      if (nDecodePrompt < 1 || nDecodePrompt > 1024 - 128)
        die("BENCH_PROMPT must be 1 to 896, not %s", zPrompt);
    }
    printf("decode: %d tokens after a %d-token prompt, %d runs\n", bQuick ? 32 : 128,
           nDecodePrompt, nRuns);
    /* the full run's machine figure, for comparison with each run's own */
    bench_bandwidth();
    printf("read bandwidth, 1 GiB buffer: %.1f GB/s (1 thread), %.1f GB/s (2 threads)\n",
           aBw[1], aBw[2]);
    bench_engine(db);
    const char *azDec[4] = {"f32, own kernels", "f16", "q8_0", "f32, cblas_sgemv"};
    for (int i = 0; i < 4; i++)
      for (int nth = 1; nth <= 2; nth++)
        if (aDecode[i][nth] > 0) /* BENCH_MODEL leaves the others out */
          printf("%-17s %d threads: %6.1f tok/s, %5.1f GB/s, fraction %.2f%s\n", azDec[i], nth,
                 aDecode[i][nth], aDecodeBw[i][nth], aDecodeFrac[i][nth],
                 frac_mark(aDecodeFrac[i][nth]));
    if (nFracMarked) printf("%s\n", FRAC_NOTE);
    for (int i = 0; i < 4; i++)
      for (int nth = 1; nth <= 2; nth++)
        if (aDecode[i][nth] > 0 && aDecodeBw[i][nth] < 0.5 * aBw[nth]) {
          printf("note: the bandwidth read between the steps of the %s runs on %d threads "
                 "(%.1f GB/s) is under half the machine's (%.1f GB/s): the machine was "
                 "busy; its fraction is not a measure of the kernels\n",
                 azDec[i], nth, aDecodeBw[i][nth], aBw[nth]);
        }
    sqlite3_close(db);
    return 0;
  }
  read_cpu_model();
  char zOutPath[512], zSlug[128], zDate[32];
  time_t tt = time(0);
  strftime(zDate, sizeof(zDate), "%Y-%m-%d", localtime(&tt));
  machine_slug(zSlug, sizeof(zSlug));
  if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
    /* an unknown flag is no output path (it started the full run, writing "--help") */
    fprintf(stderr, "usage: build/bench [OUT.md] | --machine | --kernels | --decode | "
            "--smollm | --batch | --busy | --llamacpp | --q4 | --rows | --load DB MODEL | "
            "--rss DB MODEL\n(see the comment at the top of bench/bench.c)\n");
    return 2;
  }
  if (argc > 1) snprintf(zOutPath, sizeof(zOutPath), "%s", argv[1]);
  else snprintf(zOutPath, sizeof(zOutPath), "bench/results/%s-%s.md", zDate, zSlug);
  mkdir("bench/results", 0777);
  mkdir(TMPDIR, 0777);
  gOut = fopen(zOutPath, "w");
  if (!gOut) die("cannot write %s", zOutPath);
  sqlite3_auto_extension((void (*)(void))sqlite3_gpt_init);

  const char *zCore = getenv("OPENBLAS_CORETYPE");
  out("# sqlite-gpt benchmark, %s\n\n", zDate);
  out("Machine: %s, %d cores, AVX2 %s, AVX-512 %s. SQLite %s.\n", zCpu,
      gpt_threads_default(), cpu_flag("avx2") ? "yes" : "no", cpu_flag("avx512f") ? "yes" : "no",
      sqlite3_libversion());
#ifdef OPENBLAS_VERSION
  out("OpenBLAS: %s, core %s; OPENBLAS_CORETYPE=%s (left as the environment set it).\n",
      openblas_get_config(), openblas_get_corename(), zCore ? zCore : "(unset)");
#else
  out("OPENBLAS_CORETYPE=%s\n", zCore ? zCore : "(unset)");
#endif
  out("Kernels: %s (GPT_KERNELS=%s). Each figure: median of %d runs%s.\n\n",
      gpt_kernels()->name, getenv("GPT_KERNELS") ? getenv("GPT_KERNELS") : "(unset)", nRuns,
      bQuick ? " (BENCH_QUICK: 32 decode tokens, some parts skipped)" : "");

  double loadStart = load_average();
  fprintf(stderr, "bench: memory bandwidth...\n");
  bench_bandwidth();
  fprintf(stderr, "bench: sgemm...\n");
  bench_sgemm();
  bench_kernels();
  double poolUs = bench_pool_us();

  out("## Machine limits\n\n| measure | 1 thread | 2 threads |\n|---|---:|---:|\n");
  out("| read bandwidth, 1 GiB buffer (GB/s) | %.1f | %.1f |\n", aBw[1], aBw[2]);
  out("| sgemm at the layer's shapes, M=512, engine split (GFLOP/s) | %.0f | %.0f |\n", aGemm[1][1], aGemm[1][2]);
  out("| sgemm at the layer's shapes, M=128, engine split (GFLOP/s) | %.0f | %.0f |\n", aGemm[0][1], aGemm[0][2]);
  out("| sgemm at the layer's shapes, M=512, OpenBLAS threads (GFLOP/s) | %.0f | %.0f |\n", aGemmOwn[1], aGemmOwn[2]);
  for (int s = 0; s < 4; s++)
    out("| sgemm (512,%d)x(%d,%d) (GFLOP/s) | %.0f | %.0f |\n", aShape[s][0], aShape[s][0],
        aShape[s][1], aGemmShape[s][1], aGemmShape[s][2]);
  out("| gemv kernel f32, cache-resident 768x3072 (GB/s of weights) | %.1f | %.1f |\n", aKern[0][1], aKern[0][2]);
  out("| gemv kernel f16, cache-resident (GB/s) | %.1f | %.1f |\n", aKern[1][1], aKern[1][2]);
  out("| gemv kernel q8_0%s, cache-resident (GB/s) | %.1f | %.1f |\n",
      bKernQ8Packed ? " (rows packed, as loaded)" : "", aKern[2][1], aKern[2][2]);
  if (poolUs < 0)
    out("\nThread pool: not measured (no team of 2 threads within a second: the machine is "
        "busy).\n\n");
  else
    out("\nThread pool: one parallel region on 2 threads costs %.2f us; a decode step has %d "
        "(%.0f us per token).\n\n", poolUs, 12 * 4 + 1, poolUs * (12 * 4 + 1));

  fprintf(stderr, "bench: model, import, quantize...\n");
  make_model();
  bench_import();
  sqlite3 *db = open_db(DB_PATH);
  fprintf(stderr, "bench: load...\n");
  bench_load(db, 0);
  fprintf(stderr, "bench: peak RSS...\n");
  bench_rss(argv[0]);
  int64_t stBytes = file_size(MODEL_DIR "/model.safetensors");
  out("## Storage\n\n| measure | f32 | f16 | q8_0 |\n|---|---:|---:|---:|\n");
  out("| stored weight bytes (MB) | %.1f | %.1f | %.1f |\n", aStored[0] / 1e6, aStored[1] / 1e6, aStored[2] / 1e6);
  out("| gpt_import of the safetensors (MB/s; s) | %.0f (%.2f s) | | |\n", stBytes / tImport / 1e6, tImport);
  out("| gpt_quantize from f32 (s) | | %.2f | %.2f |\n", tQuant[0], tQuant[1]);
  out("| load from BLOB rows (GB/s; target >= 1) | %.2f | %.2f | %.2f |\n", aLoad[0], aLoad[1], aLoad[2]);
  out("| peak RSS after load (MB) | %.1f | %.1f | %.1f |\n", aRssLoad[0] / 1e6, aRssLoad[1] / 1e6, aRssLoad[2] / 1e6);
  out("| ... / stored weight bytes (target <= 1.15) | %.3f | %.3f | %.3f |\n",
      (double)aRssLoad[0] / aStored[0], (double)aRssLoad[1] / aStored[1], (double)aRssLoad[2] / aStored[2]);
  out("| peak RSS after a 16-token generation (MB) | %.1f | %.1f | %.1f |\n", aRssGen[0] / 1e6, aRssGen[1] / 1e6, aRssGen[2] / 1e6);
  out("| ... / (stored + KV cache %.1f MB) (target <= 1.15) | %.3f | %.3f | %.3f |\n\n", aKv / 1e6,
      (double)aRssGen[0] / (aStored[0] + aKv), (double)aRssGen[1] / (aStored[1] + aKv),
      (double)aRssGen[2] / (aStored[2] + aKv));

  fprintf(stderr, "bench: prefill and decode...\n");
  bench_engine(db);
  GptModel *m0 = 0;
  char *zErr = 0;
  if (gptext_model_acquire(0, db, "bench", "gpt2", 0, &m0, &zErr) != SQLITE_OK) die("%s", zErr);
  GPTConfig cfg = m0->cfg;
  gptext_model_release(m0);
  out("## Prefill (engine, tok/s; roofline = sgemm GFLOP/s at the shapes / FLOPs per token)\n\n");
  out("(sgemm measured again just before each row's runs.)\n\n");
  out("| model | T | threads | tok/s | sgemm GFLOP/s | roofline tok/s | fraction |\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (int i = 0; i < 3; i++)
    for (int it = 0; it < 2; it++)
      for (int nth = 1; nth <= 2; nth++) {
        int T = it ? 512 : 128;
        if (aPrefill[i][it][nth] == 0) continue;
        double roof = aPrefillGemm[i][it][nth] * 1e9 / prefill_flops(&cfg, T);
        out("| %s | %d | %d | %.0f | %.0f | %.0f | %.2f%s |\n", azModelDtype[i], T, nth,
            aPrefill[i][it][nth], aPrefillGemm[i][it][nth], roof, aPrefill[i][it][nth] / roof,
            frac_mark(aPrefill[i][it][nth] / roof));
      }
  if (nFracMarked) out("\n%s\n", FRAC_NOTE);
  out("\nFLOPs per token: %.1f M at T=128, %.1f M at T=512.\n\n", prefill_flops(&cfg, 128) / 1e6,
      prefill_flops(&cfg, 512) / 1e6);
  out("## Decode (engine, %d tokens after a 128-token prompt; roofline = bandwidth / bytes per token)\n\n",
      bQuick ? 32 : 128);
  out("(bandwidth read between the steps of each run, a 64 MB window before each step; the "
      "fraction is the median of the runs' fractions of their own rooflines.)\n\n");
  nFracMarked = 0;
  out("| weights | threads | tok/s | MB read per token | bandwidth GB/s | roofline tok/s | fraction |\n|---|---:|---:|---:|---:|---:|---:|\n");
  const char *azDec[4] = {"f32, own kernels", "f16", "q8_0", "f32, cblas_sgemv"};
  for (int i = 0; i < 4; i++)
    for (int nth = 1; nth <= 2; nth++) {
      double roof = aDecodeBw[i][nth] * 1e9 / aDecodeBytes[i];
      out("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.2f%s |\n", azDec[i], nth, aDecode[i][nth],
          aDecodeBytes[i] / 1e6, aDecodeBw[i][nth], roof, aDecodeFrac[i][nth],
          frac_mark(aDecodeFrac[i][nth]));
    }
  if (nFracMarked) out("\n%s\n", FRAC_NOTE);
  out("\n");
  fprintf(stderr, "bench: decode with one core busy...\n");
  bench_busy(db);
  out_busy();

  fprintf(stderr, "bench: per-row overhead...\n");
  sqlite3_close(db);
  db = open_db(DB_PATH);
  RowFig big;
  memset(&big, 0, sizeof(big));
  if (!bQuick) big = bench_rows(db, "gpt2");
  /* the same on a small model with the same vocabulary, where the forward
  ** pass is short and the overhead stands out */
  {
    char zCmd[512];
    snprintf(zCmd, sizeof(zCmd), "mkdir -p %s/small && build/mkmodel %s/small --layers 2 --heads 2 "
             "--embd 64 --ctx 256 --seed 1 > /dev/null", TMPDIR, TMPDIR);
    if (system(zCmd) != 0) die("%s failed", zCmd);
    exec_sql(db, "SELECT gpt_drop('small') WHERE EXISTS (SELECT 1 FROM gpt_models WHERE name = 'small')");
    query1(db, "SELECT gpt_import('small', '" TMPDIR "/small')");
  }
  RowFig small = bench_rows(db, "small");
  out("## SQL\n\n| measure | gpt2 124M f32 | 2-layer, 64-wide, same vocabulary |\n|---|---:|---:|\n");
  out("| SELECT gpt_generate(body, max_tokens 1) FROM docs, per row (ms) | %.2f | %.3f |\n", big.sqlRow * 1e3, small.sqlRow * 1e3);
  out("| one statement per row, per row (ms) | %.2f | %.3f |\n", big.oneCall * 1e3, small.oneCall * 1e3);
  out("| the engine alone, same prefills (ms) | %.2f | %.3f |\n", big.engineRow * 1e3, small.engineRow * 1e3);
  out("| per-row overhead: query - engine (ms; target <= 2) | %.2f | %.3f |\n\n", big.overhead * 1e3, small.overhead * 1e3);
  fprintf(stderr, "bench: prefix reuse...\n");
  double tShared, tDistinct;
  int nPrefix, nSuffix;
  double sp = bench_prefix(db, "gpt2", &tShared, &tDistinct, &nPrefix, &nSuffix);
  out("Prefix reuse (gpt2 f32): rows of a %d-token prompt whose first %d tokens are shared "
      "and whose last %d differ: %.1f ms per row against %.1f ms when the beginnings differ "
      "too: %.1fx faster.\n", nPrefix, nPrefix - nSuffix, nSuffix, tShared * 1e3,
      tDistinct * 1e3, sp);
  fprintf(stderr, "bench: gpt_batch...\n");
  bench_batch(db);
  fprintf(stderr, "bench: llama.cpp...\n");
  bench_llamacpp(db);
  out("\nLoad average (1 min) at the start %.2f, at the end %.2f, on %d cores: anything above "
      "about 1 was other processes competing with this run.\n", loadStart, load_average(),
      gpt_threads_default());
  sqlite3_close(db);
  fprintf(stderr, "bench: SmolLM2-135M shape...\n");
  bench_smollm();
  fprintf(stderr, "bench: 4-bit decode...\n");
  bench_q4();
  fclose(gOut);
  fprintf(stderr, "bench: wrote %s\n", zOutPath);
  return 0;
}
