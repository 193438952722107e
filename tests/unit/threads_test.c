/*
** Concurrency: several threads, each with its own connection to one
** database file, generate at once from the one cached model, and get exactly
** what one connection gets running the same calls in sequence. Then one
** connection re-imports (replace) and drops the model over and over while
** the others keep generating: every generation finishes on the old weights
** or the new ones (its text equals one of the two sequential results), or
** fails with "no model named 'm'"; none reads freed memory. Last, a replace
** commits while a 400-token generation runs on the model it replaces: that
** generation returns the old model's text. Run under
** ThreadSanitizer by `make test-tsan` and under ASan by `make test-asan`.
** Prints "N passed, N failed".
*/
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fuzz_common.h"

#define N_THREAD 4
#define N_PROMPT 6
#define N_ROUND 3

static int nPass = 0, nFail = 0;
static pthread_mutex_t gMu = PTHREAD_MUTEX_INITIALIZER;

#define CHECK(cond, ...)                                  \
  do {                                                    \
    int bOk_ = (cond);                                    \
    pthread_mutex_lock(&gMu);                             \
    if (bOk_) {                                           \
      nPass++;                                            \
    } else {                                              \
      nFail++;                                            \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);         \
      printf(__VA_ARGS__);                                \
      printf("\n");                                       \
    }                                                     \
    pthread_mutex_unlock(&gMu);                           \
  } while (0)

static const char *azPrompt[N_PROMPT] = {
  "ab", "ab a abab", "a", "abab abab ab", "b a b a", "\xff ab",
};
/* greedy, and sampled with a seed: both are reproducible */
static const char *azOpt[2] = {
  "{\"model\": \"m\", \"temperature\": 0, \"max_tokens\": 24}",
  "{\"model\": \"m\", \"temperature\": 0.8, \"top_k\": 40, \"seed\": 11, \"max_tokens\": 24}",
};

static char gzFile[600], gzDirA[600], gzDirB[600];
static char *gaWantA[N_PROMPT][2], *gaWantB[N_PROMPT][2];
static volatile int gbWriterDone = 0;
static pthread_mutex_t gWriterMu = PTHREAD_MUTEX_INITIALIZER;

static sqlite3 *open_conn(void) {
  sqlite3 *db = fz_open(gzFile);
  sqlite3_busy_timeout(db, 30000);
  return db;
}

/* The text of gpt_generate(prompt, options), or NULL with *pzErr. */
static char *generate(sqlite3 *db, int iPrompt, int iOpt, char **pzErr) {
  sqlite3_stmt *p = 0;
  char *z = 0;
  *pzErr = 0;
  int rc = sqlite3_prepare_v2(db, "SELECT gpt_generate(?1, ?2)", -1, &p, 0);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(p, 1, azPrompt[iPrompt], -1, SQLITE_STATIC);
    sqlite3_bind_text(p, 2, azOpt[iOpt], -1, SQLITE_STATIC);
    rc = sqlite3_step(p);
  }
  if (rc == SQLITE_ROW) z = sqlite3_mprintf("%s", sqlite3_column_text(p, 0));
  else *pzErr = sqlite3_mprintf("%s", sqlite3_errmsg(db));
  sqlite3_finalize(p);
  return z;
}

static int exec_ok(sqlite3 *db, const char *zSql, const char *z1) {
  char *zErr = 0;
  int rc = fz_exec(db, zSql, z1, -1, 0, 0, &zErr);
  CHECK(rc == SQLITE_OK, "%s: %s", zSql, zErr ? zErr : "");
  sqlite3_free(zErr);
  return rc;
}

/* Phase 1: every thread runs every call N_ROUND times, in its own order. */
static void *reader(void *pArg) {
  int iThread = (int)(intptr_t)pArg;
  sqlite3 *db = open_conn();
  for (int r = 0; r < N_ROUND; r++) {
    for (int k = 0; k < N_PROMPT * 2; k++) {
      int j = (k + iThread * 5 + r) % (N_PROMPT * 2);
      char *zErr = 0;
      char *z = generate(db, j / 2, j % 2, &zErr);
      CHECK(z && strcmp(z, gaWantA[j / 2][j % 2]) == 0,
            "thread %d prompt %d opt %d: got \"%s\" (%s), want \"%s\"", iThread, j / 2, j % 2,
            z ? z : "", zErr ? zErr : "", gaWantA[j / 2][j % 2]);
      sqlite3_free(z);
      sqlite3_free(zErr);
    }
  }
  sqlite3_close(db);
  return 0;
}

/* Phase 2: generations while the model changes under them. */
typedef struct Tally { int nA, nB, nGone, nBusy; } Tally;

static void *changer_reader(void *pArg) {
  Tally *t = (Tally *)pArg;
  sqlite3 *db = open_conn();
  for (int k = 0;; k++) {
    pthread_mutex_lock(&gWriterMu);
    int bDone = gbWriterDone;
    pthread_mutex_unlock(&gWriterMu);
    if (bDone && k >= N_PROMPT * 2) break;
    int i = k % N_PROMPT, o = (k / N_PROMPT) % 2;
    char *zErr = 0;
    char *z = generate(db, i, o, &zErr);
    if (z && strcmp(z, gaWantA[i][o]) == 0) {
      t->nA++;
    } else if (z && strcmp(z, gaWantB[i][o]) == 0) {
      t->nB++;
    } else if (!z && zErr && strcmp(zErr, "gpt_generate: no model named 'm' in gpt_models") == 0) {
      t->nGone++;
    } else if (!z && zErr &&
               strcmp(zErr, "gpt_generate: model 'm' kept changing while it was being loaded; "
                            "try again") == 0) {
      /* SQLITE_BUSY after four loads that each saw the model change: the
      ** writer re-imports without a pause, and under ASan a load is slow */
      t->nBusy++;
    } else {
      CHECK(0, "prompt %d opt %d during re-imports: got \"%s\" (%s)", i, o, z ? z : "(null)",
            zErr ? zErr : "no error");
    }
    sqlite3_free(z);
    sqlite3_free(zErr);
  }
  sqlite3_close(db);
  return 0;
}

static void *writer(void *pArg) {
  (void)pArg;
  sqlite3 *db = open_conn();
  for (int r = 0; r < 4; r++) {
    exec_ok(db, "SELECT gpt_import('m', ?1, '{\"replace\": true}')", gzDirB);
    usleep(20000);
    exec_ok(db, "SELECT gpt_import('m', ?1, '{\"replace\": true}')", gzDirA);
    usleep(20000);
    exec_ok(db, "SELECT gpt_drop('m')", 0);
    usleep(5000);
    exec_ok(db, "SELECT gpt_import('m', ?1)", gzDirA);
    usleep(20000);
    /* a hand edit of a row is a change too */
    exec_ok(db, "UPDATE gpt_tensors SET data = data WHERE model = 'm' AND name = 'ln_f.bias'", 0);
  }
  pthread_mutex_lock(&gWriterMu);
  gbWriterDone = 1;
  pthread_mutex_unlock(&gWriterMu);
  sqlite3_close(db);
  return 0;
}

/* Phase 3: one long generation, and a replace of its model that commits
** while it runs. */
typedef struct Long {
  char *zText;           /* what the generation returned */
  char *zErr;
  pthread_mutex_t mu;
  pthread_cond_t cond;
  int bStarted;
} Long;

static const char zLongSql[] =
    "SELECT gpt_generate('ab', '{\"model\": \"big\", \"temperature\": 0, \"max_tokens\": 400}')";

static int long_trace(unsigned eType, void *pCtx, void *p, void *x) {
  Long *l = (Long *)pCtx;
  (void)p; (void)x;
  if (eType == SQLITE_TRACE_STMT) {
    pthread_mutex_lock(&l->mu);
    l->bStarted = 1;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
  }
  return 0;
}

static char *long_generate(sqlite3 *db, char **pzErr) {
  sqlite3_stmt *p = 0;
  char *z = 0;
  *pzErr = 0;
  int rc = sqlite3_prepare_v2(db, zLongSql, -1, &p, 0);
  if (rc == SQLITE_OK) rc = sqlite3_step(p);
  if (rc == SQLITE_ROW) z = sqlite3_mprintf("%s", sqlite3_column_text(p, 0));
  else *pzErr = sqlite3_mprintf("%s", sqlite3_errmsg(db));
  sqlite3_finalize(p);
  return z;
}

static void *long_reader(void *pArg) {
  Long *l = (Long *)pArg;
  sqlite3 *db = open_conn();
  /* the weights are loaded before the clock starts */
  fz_exec(db, "SELECT gpt_generate('a', '{\"model\": \"big\", \"max_tokens\": 1}')", 0, 0, 0,
          0, 0);
  sqlite3_trace_v2(db, SQLITE_TRACE_STMT, long_trace, l);
  l->zText = long_generate(db, &l->zErr);
  sqlite3_trace_v2(db, 0, 0, 0);
  pthread_mutex_lock(&l->mu);
  l->bStarted = 1; /* in case it never began */
  pthread_cond_broadcast(&l->cond);
  pthread_mutex_unlock(&l->mu);
  sqlite3_close(db);
  return 0;
}

int main(void) {
  FzModel m;
  const char *zTmp = fz_tmpdir();
  snprintf(gzFile, sizeof(gzFile), "%s/threads.db", zTmp);
  snprintf(gzDirA, sizeof(gzDirA), "%s/a", zTmp);
  snprintf(gzDirB, sizeof(gzDirB), "%s/b", zTmp);
  mkdir(gzDirA, 0700);
  mkdir(gzDirB, 0700);
  if (fz_model_make(&m, 2, 2, 32, 64, 0, FZ_NO_EOT, 0) || fz_write_model(gzDirA, &m)) return 2;
  fz_model_free(&m);
  if (fz_model_make(&m, 2, 2, 32, 64, 0, FZ_NO_EOT, 1) || fz_write_model(gzDirB, &m)) return 2;
  fz_model_free(&m);

  /* the sequential answers, for the weights of A and of B */
  sqlite3 *db = open_conn();
  exec_ok(db, "PRAGMA journal_mode = WAL", 0);
  exec_ok(db, "SELECT gpt_import('m', ?1)", gzDirB);
  for (int i = 0; i < N_PROMPT; i++)
    for (int o = 0; o < 2; o++) {
      char *zErr = 0;
      gaWantB[i][o] = generate(db, i, o, &zErr);
      CHECK(gaWantB[i][o] != 0, "sequential B %d %d: %s", i, o, zErr);
      sqlite3_free(zErr);
    }
  exec_ok(db, "SELECT gpt_import('m', ?1, '{\"replace\": true}')", gzDirA);
  int nDiffer = 0;
  for (int i = 0; i < N_PROMPT; i++)
    for (int o = 0; o < 2; o++) {
      char *zErr = 0;
      gaWantA[i][o] = generate(db, i, o, &zErr);
      CHECK(gaWantA[i][o] != 0, "sequential A %d %d: %s", i, o, zErr);
      sqlite3_free(zErr);
      if (gaWantA[i][o] && gaWantB[i][o]) nDiffer += strcmp(gaWantA[i][o], gaWantB[i][o]) != 0;
    }
  CHECK(nDiffer >= N_PROMPT, "the two weight sets give the same texts (%d differ)", nDiffer);
  if (nFail) return 1;

  /* 1: concurrent generations agree with the sequential ones */
  pthread_t aTh[N_THREAD];
  for (int t = 0; t < N_THREAD; t++) pthread_create(&aTh[t], 0, reader, (void *)(intptr_t)t);
  for (int t = 0; t < N_THREAD; t++) pthread_join(aTh[t], 0);
  printf("phase 1: %d threads x %d generations each\n", N_THREAD, N_ROUND * N_PROMPT * 2);

  /* 2: re-imports and drops during generations */
  Tally aTally[N_THREAD - 1];
  memset(aTally, 0, sizeof(aTally));
  pthread_t thWriter;
  for (int t = 0; t < N_THREAD - 1; t++) pthread_create(&aTh[t], 0, changer_reader, &aTally[t]);
  pthread_create(&thWriter, 0, writer, 0);
  pthread_join(thWriter, 0);
  for (int t = 0; t < N_THREAD - 1; t++) pthread_join(aTh[t], 0);
  int nA = 0, nB = 0, nGone = 0, nBusy = 0;
  for (int t = 0; t < N_THREAD - 1; t++) {
    nA += aTally[t].nA;
    nB += aTally[t].nB;
    nGone += aTally[t].nGone;
    nBusy += aTally[t].nBusy;
  }
  printf("phase 2: %d generations on A's weights, %d on B's, %d found no model, %d busy "
         "(try again)\n", nA, nB, nGone, nBusy);
  CHECK(nA > 0, "no generation ran on A's weights");

  /* 3: a replace that commits while a long generation runs on the model */
  {
    char zDirC[600], zDirD[600];
    snprintf(zDirC, sizeof(zDirC), "%s/c", zTmp);
    snprintf(zDirD, sizeof(zDirD), "%s/d", zTmp);
    mkdir(zDirC, 0700);
    mkdir(zDirD, 0700);
    if (fz_model_make(&m, 2, 2, 64, 512, 0, FZ_NO_EOT, 5) || fz_write_model(zDirC, &m)) return 2;
    fz_model_free(&m);
    if (fz_model_make(&m, 2, 2, 64, 512, 0, FZ_NO_EOT, 6) || fz_write_model(zDirD, &m)) return 2;
    fz_model_free(&m);
    char *zErr = 0;
    exec_ok(db, "SELECT gpt_import('big', ?1)", zDirD);
    char *zWantD = long_generate(db, &zErr);
    sqlite3_free(zErr);
    exec_ok(db, "SELECT gpt_import('big', ?1, '{\"replace\": true}')", zDirC);
    char *zWantC = long_generate(db, &zErr);
    sqlite3_free(zErr);
    CHECK(zWantC && zWantD && strcmp(zWantC, zWantD) != 0, "the two big models agree");
    Long l;
    memset(&l, 0, sizeof(l));
    pthread_mutex_init(&l.mu, 0);
    pthread_cond_init(&l.cond, 0);
    pthread_t th;
    pthread_create(&th, 0, long_reader, &l);
    pthread_mutex_lock(&l.mu);
    while (!l.bStarted) pthread_cond_wait(&l.cond, &l.mu);
    pthread_mutex_unlock(&l.mu);
    usleep(20000);
    sqlite3 *dbw = open_conn();
    exec_ok(dbw, "SELECT gpt_import('big', ?1, '{\"replace\": true}')", zDirD);
    sqlite3_close(dbw);
    pthread_join(th, 0);
    int bOld = l.zText && zWantC && strcmp(l.zText, zWantC) == 0;
    int bNew = l.zText && zWantD && strcmp(l.zText, zWantD) == 0;
    CHECK(bOld || bNew, "the generation during the replace returned neither model's text (%s)",
          l.zErr ? l.zErr : "no error");
    printf("phase 3: a 400-token generation %s while its model was replaced\n",
           bOld ? "finished on the old weights" : "ran on the new weights");
    /* afterwards every connection gets the new weights */
    char *z = long_generate(db, &zErr);
    CHECK(z && zWantD && strcmp(z, zWantD) == 0, "after the replace: %s", z ? z : zErr);
    sqlite3_free(z);
    sqlite3_free(zErr);
    exec_ok(db, "SELECT gpt_drop('big')", 0);
    sqlite3_free(l.zText);
    sqlite3_free(l.zErr);
    sqlite3_free(zWantC);
    sqlite3_free(zWantD);
    pthread_mutex_destroy(&l.mu);
    pthread_cond_destroy(&l.cond);
  }

  /* the connection that was idle meanwhile sees the final model */
  for (int i = 0; i < N_PROMPT; i++) {
    char *zErr = 0;
    char *z = generate(db, i, 0, &zErr);
    CHECK(z && strcmp(z, gaWantA[i][0]) == 0, "after the changes, prompt %d: %s", i,
          z ? z : zErr);
    sqlite3_free(z);
    sqlite3_free(zErr);
  }
  sqlite3_close(db);
  for (int i = 0; i < N_PROMPT; i++)
    for (int o = 0; o < 2; o++) {
      sqlite3_free(gaWantA[i][o]);
      sqlite3_free(gaWantB[i][o]);
    }
  printf("threads_test: %d passed, %d failed\n", nPass, nFail);
  return nFail > 0;
}
