/*
** After sqlite3_close() the extension has freed everything it allocated
** through SQLite: sqlite3_memory_used() returns to the value it had before
** the connection was opened.
**
** Each round opens a database (in memory, then a file, then two connections
** sharing one file and so one cached model), loads the extension, imports
** the small model of tests/fuzz/fuzz_common.c, runs every function that
** exists in this build (generation, next tokens, the tokenizer functions
** and table, the scoring and analysis ones, quantizing), a few calls that
** fail, a re-import, a drop, and closes. Built in-process (-DSQLITE_CORE); run by
** `make test-asan` (LeakSanitizer also checks memory taken with malloc) and
** `make test-valgrind`. Prints "N passed, N failed".
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fuzz_common.h"

#include "check.h"

/* Runs SQL that must succeed. */
static void ok(sqlite3 *db, const char *zSql, const char *z1) {
  char *zErr = 0;
  int rc = fz_exec(db, zSql, z1, -1, 0, 0, &zErr);
  CHECK(rc == SQLITE_OK, "%s: %s", zSql, zErr ? zErr : "");
  sqlite3_free(zErr);
}

/* Runs SQL that must fail with an error naming a gpt_ function. */
static void fails(sqlite3 *db, const char *zSql, const char *z1) {
  char *zErr = 0;
  int rc = fz_exec(db, zSql, z1, -1, 0, 0, &zErr);
  CHECK(rc != SQLITE_OK && zErr && strncmp(zErr, "gpt_", 4) == 0, "%s: rc %d %s", zSql, rc,
        zErr ? zErr : "");
  sqlite3_free(zErr);
}

/* True when this build registers the function or module used by zSql. */
static int has(sqlite3 *db, const char *zSql) {
  sqlite3_stmt *p = 0;
  int rc = sqlite3_prepare_v2(db, zSql, -1, &p, 0);
  sqlite3_finalize(p);
  return rc == SQLITE_OK;
}

/* Everything a connection can make the extension allocate. */
static void workload(sqlite3 *db, const char *zDir, const char *zDir2) {
  ok(db, "SELECT gpt_import('m', ?1)", zDir);
  ok(db, "SELECT gpt_generate('ab a', '{\"max_tokens\": 6, \"temperature\": 0}')", 0);
  ok(db, "SELECT gpt_generate('ab a abab', '{\"max_tokens\": 4, \"seed\": 5, \"top_k\": 3, "
         "\"top_p\": 0.9, \"stop\": [\"x\", \"a\"]}')", 0);
  ok(db, "SELECT * FROM gpt_next_tokens('ab', 5)", 0);
  ok(db, "SELECT gpt_tokenize('ab a \xff'), gpt_token_count('abab'), "
         "gpt_detokenize('[256, 257, 1]')", 0);
  ok(db, "SELECT * FROM gpt_tokens('a ab abab')", 0);
  if (has(db, "SELECT gpt_logprob('a')")) {
    ok(db, "SELECT gpt_logprob('ab a ab'), gpt_perplexity('ab a ab'), gpt_embed('ab a')", 0);
  }
  if (has(db, "SELECT gpt_summarize('a')")) {
    ok(db, "SELECT gpt_summarize(value, '{\"max_tokens\": 2}') FROM "
           "(SELECT 'ab a' AS value UNION ALL SELECT 'abab')", 0);
  }
  if (has(db, "SELECT * FROM gpt_attention('a')")) {
    ok(db, "SELECT count(*) FROM gpt_attention('ab a ab')", 0);
    ok(db, "SELECT count(*) FROM gpt_generate_tokens('ab', '{\"max_tokens\": 3}')", 0);
  }
  if (has(db, "SELECT gpt_attention_svg(NULL)")) {
    ok(db, "SELECT gpt_attention_svg('ab a \xff', '{\"head\": \"all\", \"generate\": 2}')", 0);
    fails(db, "SELECT gpt_attention_svg('ab', '{\"head\": 9}')", 0);
  }
  /* errors, each with its message */
  fails(db, "SELECT gpt_generate('ab', '{\"max_tokens\": 0}')", 0);
  fails(db, "SELECT gpt_generate('ab', '{\"model\": \"nope\"}')", 0);
  fails(db, "SELECT gpt_detokenize('[99999]')", 0);
  fails(db, "SELECT gpt_import('m', ?1)", zDir);
  fails(db, "SELECT * FROM gpt_next_tokens('ab', 0)", 0);
  /* a stored row made invalid: the load fails, nothing leaks */
  ok(db, "UPDATE gpt_tensors SET data = substr(data, 2) WHERE name = 'ln_f.bias'", 0);
  fails(db, "SELECT gpt_generate('ab')", 0);
  /* replaced by another model of the same name, used, dropped */
  ok(db, "SELECT gpt_import('m', ?1, '{\"replace\": true}')", zDir2);
  ok(db, "SELECT gpt_generate('ab', '{\"max_tokens\": 3, \"temperature\": 0}')", 0);
  ok(db, "SELECT gpt_import('m2', ?1)", zDir);
  ok(db, "SELECT gpt_generate('ab', '{\"max_tokens\": 3, \"model\": \"m2\"}')", 0);
  if (has(db, "SELECT gpt_quantize('m2', 'm3', 'f16')")) {
    ok(db, "SELECT gpt_quantize('m2', 'm3', 'q8_0')", 0);
    ok(db, "SELECT gpt_generate('ab', '{\"max_tokens\": 3, \"model\": \"m3\"}')", 0);
    fails(db, "SELECT gpt_quantize('m2', 'm3', 'q8_0')", 0);
    ok(db, "SELECT gpt_drop('m3')", 0);
  }
  ok(db, "SELECT gpt_drop('m')", 0);
  ok(db, "SELECT gpt_tokenize('ab', '{\"model\": \"m2\"}')", 0);
}

int main(void) {
  FzModel m;
  char zDir[600], zDir2[600], zFile[600];
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 1);
  sqlite3_initialize();
  const char *zTmp = fz_tmpdir();
  snprintf(zDir, sizeof(zDir), "%s", zTmp);
  snprintf(zDir2, sizeof(zDir2), "%s/f16", zTmp);
  snprintf(zFile, sizeof(zFile), "%s/memory.db", zTmp);
  mkdir(zDir2, 0700);
  if (fz_model_make(&m, 2, 2, 8, 16, 0, 0, 0) || fz_write_model(zDir, &m)) return 2;
  fz_model_free(&m);
  if (fz_model_make(&m, 1, 2, 8, 16, 1, FZ_LMHEAD, 7) || fz_write_model(zDir2, &m)) return 2;
  fz_model_free(&m);

  /* SQLite's one-time allocations (VFS, mutexes, page cache) come first */
  {
    sqlite3 *db = fz_open(0);
    ok(db, "SELECT gpt_version()", 0);
    sqlite3_close(db);
  }
  sqlite3_int64 nBase = sqlite3_memory_used();

  for (int iRound = 0; iRound < 3; iRound++) {
    if (iRound == 0) {
      sqlite3 *db = fz_open(0);
      workload(db, zDir, zDir2);
      sqlite3_close(db);
    } else if (iRound == 1) {
      unlink(zFile);
      sqlite3 *db = fz_open(zFile);
      workload(db, zDir, zDir2);
      sqlite3_close(db);
    } else {
      /* two connections share one cached model; the second close frees it */
      unlink(zFile);
      sqlite3 *db = fz_open(zFile), *db2 = fz_open(zFile);
      ok(db, "SELECT gpt_import('m', ?1)", zDir);
      ok(db, "SELECT gpt_generate('ab', '{\"max_tokens\": 3}')", 0);
      ok(db2, "SELECT gpt_generate('ab', '{\"max_tokens\": 3}')", 0);
      ok(db2, "SELECT * FROM gpt_next_tokens('ab a', 3)", 0);
      sqlite3_close(db);
      CHECK(sqlite3_memory_used() > nBase, "the second connection still holds the model");
      ok(db2, "SELECT gpt_generate('ab', '{\"max_tokens\": 3}')", 0);
      sqlite3_close(db2);
    }
    sqlite3_int64 nNow = sqlite3_memory_used();
    CHECK(nNow == nBase, "round %d: sqlite3_memory_used() is %lld after close, %lld before "
          "open (%+lld bytes)", iRound, nNow, nBase, nNow - nBase);
  }
  unlink(zFile);
  printf("memory_test: %d passed, %d failed\n", nPass, nFail);
  return nFail > 0;
}
