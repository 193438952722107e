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
** fail, a re-import, a drop, and closes. Then calls run with each of their
** allocations failing in turn. Built in-process (-DSQLITE_CORE); run by
** `make test-asan` (LeakSanitizer also checks memory taken with malloc) and
** `make test-valgrind`. Prints "N passed, N failed".
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fuzz_common.h"

#include "check.h"

/* SQLite's allocator with a failure that can be armed: from the nth
** allocation after arming on, every allocation fails until it is disarmed
** (installed with sqlite3_config before sqlite3_initialize). */
static sqlite3_mem_methods gMem; /* the default methods, wrapped */
static int gFailIn = -1;         /* allocations to give before failing; -1: none */
static int gFailed;              /* allocations failed since arming */

static int fault_now(void) {
  if (gFailIn < 0) return 0;
  if (gFailIn > 0) {
    gFailIn--;
    return 0;
  }
  gFailed++;
  return 1;
}
static void *fault_malloc(int n) { return fault_now() ? 0 : gMem.xMalloc(n); }
static void *fault_realloc(void *p, int n) { return fault_now() ? 0 : gMem.xRealloc(p, n); }

static void fault_install(void) {
  sqlite3_mem_methods m;
  sqlite3_config(SQLITE_CONFIG_GETMALLOC, &gMem);
  m = gMem;
  m.xMalloc = fault_malloc;
  m.xRealloc = fault_realloc;
  sqlite3_config(SQLITE_CONFIG_MALLOC, &m);
}

/* Files in zDir whose names end in ".tmp". */
static int count_tmp_files(const char *zDir) {
  DIR *d = opendir(zDir);
  struct dirent *e;
  int n = 0;
  if (!d) return -1;
  while ((e = readdir(d)) != 0) {
    size_t len = strlen(e->d_name);
    n += len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0;
  }
  closedir(d);
  return n;
}

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

/* A model folder with a tokenizer.json (fz_tokenizer_json's, its
** pre-tokenizer ByteLevel alone with use_regex false) in place of vocab.json
** and merges.txt. 0 on success. */
static int write_hf_folder(const char *zDir) {
  FzModel m;
  size_t n = 0;
  char *zJson = 0;
  int rc = 1;
  sqlite3 *db = 0;
  sqlite3_stmt *pStmt = 0;
  if (mkdir(zDir, 0700) != 0 && errno != EEXIST) return 1;
  if (fz_model_make(&m, 1, 2, 8, 16, 0, 0, 0)) return 1;
  zJson = fz_tokenizer_json(&m, &n);
  if (zJson && sqlite3_open(":memory:", &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "SELECT json_set(?1, '$.pre_tokenizer', json('{\"type\": "
                         "\"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": "
                         "false, \"use_regex\": false}'))", -1, &pStmt, 0) == SQLITE_OK &&
      sqlite3_bind_text(pStmt, 1, zJson, (int)n, SQLITE_STATIC) == SQLITE_OK &&
      sqlite3_step(pStmt) == SQLITE_ROW) {
    const char *z = (const char *)sqlite3_column_text(pStmt, 0);
    rc = fz_write(zDir, "config.json", m.zConfig, m.nConfig) ||
         fz_write(zDir, "model.safetensors", m.aSt, m.nSt) ||
         fz_write(zDir, "tokenizer.json", z, strlen(z)) ||
         fz_write(zDir, "tokenizer_config.json", FZ_TOKENIZER_CONFIG,
                  sizeof(FZ_TOKENIZER_CONFIG) - 1);
  }
  sqlite3_finalize(pStmt);
  sqlite3_close(db);
  free(zJson);
  fz_model_free(&m);
  return rc;
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

/* zSql run with its first allocation failing, then its second, and so on,
** until a run meets no failure. No run may crash. A read (bRead) must
** fail cleanly in every run that met a failure, leave nothing allocated
** through SQLite (gpt_batch once freed its slots unzeroed when one failed),
** and succeed in the last. A write can commit and still fail after it (the
** row read back here needs memory too), so its caller checks what it left;
** valgrind and LeakSanitizer check that none of its runs leaks. */
/* Allocations between failing ones past the first 64 (MEMORY_TEST_OOM_STRIDE,
** 1 by default: every one). Under valgrind, 20,000 runs of quantize and
** import take many minutes, so `make test-valgrind` samples; ASan runs all. */
static int oom_stride(void) {
  const char *z = getenv("MEMORY_TEST_OOM_STRIDE");
  int n = z ? atoi(z) : 1;
  return n >= 1 ? n : 1;
}

static void oom_sweep(sqlite3 *db, const char *zSql, const char *z1, int bRead) {
  /* a first run connects the table-valued functions' tables, which the
  ** connection keeps */
  if (bRead) ok(db, zSql, z1);
  sqlite3_int64 nBefore = sqlite3_memory_used();
  int n = 0, nBad = 0, rcLast = SQLITE_ERROR, stride = oom_stride();
  for (; n < 20000; n += n < 64 ? 1 : stride) {
    char *zErr = 0;
    gFailed = 0;
    gFailIn = n;
    int rc = fz_exec(db, zSql, z1, -1, 0, 0, &zErr);
    int nFailed = gFailed;
    gFailIn = -1;
    if (bRead && ((nFailed == 0 && rc != SQLITE_OK) ||
                  (nFailed > 0 && sqlite3_memory_used() > nBefore))) {
      if (nBad++ == 0)
        CHECK(0, "%s, allocation %d failing: rc %d (%s), memory %+lld bytes", zSql, n, rc,
              zErr ? zErr : "", sqlite3_memory_used() - nBefore);
    }
    sqlite3_free(zErr);
    rcLast = rc;
    if (nFailed == 0) break;
  }
  CHECK(!bRead || (nBad == 0 && rcLast == SQLITE_OK),
        "%s: %d allocations failed in turn, %d runs wrong", zSql, n, nBad);
}

int main(void) {
  FzModel m;
  char zDir[600], zDir2[600], zDir3[600], zFile[600];
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 1);
  fault_install();
  sqlite3_initialize();
  const char *zTmp = fz_tmpdir();
  snprintf(zDir, sizeof(zDir), "%s", zTmp);
  snprintf(zDir2, sizeof(zDir2), "%s/f16", zTmp);
  snprintf(zDir3, sizeof(zDir3), "%s/hf", zTmp);
  snprintf(zFile, sizeof(zFile), "%s/memory.db", zTmp);
  mkdir(zDir2, 0700);
  if (fz_model_make(&m, 2, 2, 8, 16, 0, 0, 0) || fz_write_model(zDir, &m)) return 2;
  fz_model_free(&m);
  if (fz_model_make(&m, 1, 2, 8, 16, 1, FZ_LMHEAD, 7) || fz_write_model(zDir2, &m)) return 2;
  fz_model_free(&m);
  if (write_hf_folder(zDir3)) return 2;

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
  /* out of memory at every allocation of a call in turn, the model loaded */
  {
    sqlite3 *db = fz_open(0);
    ok(db, "SELECT gpt_import('m', ?1)", zDir);
    ok(db, "SELECT gpt_generate('ab')", 0);
    oom_sweep(db, "SELECT count(*) FROM gpt_batch('SELECT 1, ''ab a'' UNION ALL SELECT 2, "
                  "''abab'' UNION ALL SELECT 3, NULL', '{\"max_tokens\": 3, \"batch\": 2}')", 0, 1);
    oom_sweep(db, "SELECT gpt_generate('ab a', '{\"max_tokens\": 3, \"stop\": \"x\"}')", 0, 1);
    oom_sweep(db, "SELECT count(*) FROM gpt_next_tokens('ab', 5)", 0, 1);
    oom_sweep(db, "SELECT count(*) FROM gpt_tokens('a ab abab')", 0, 1);
    oom_sweep(db, "SELECT count(*) FROM gpt_generate_tokens('ab', '{\"max_tokens\": 3}')", 0, 1);
    oom_sweep(db, "SELECT count(*) FROM gpt_attention('ab a ab')", 0, 1);
    oom_sweep(db, "SELECT gpt_tokenize('ab a \xff'), gpt_detokenize('[256, 257, 1]')", 0, 1);
    oom_sweep(db, "SELECT gpt_logprob('ab a ab'), gpt_perplexity('ab a ab'), gpt_embed('ab a')", 0, 1);
    oom_sweep(db, "SELECT gpt_summarize(value, '{\"max_tokens\": 2}') FROM "
                  "(SELECT 'ab a' AS value UNION ALL SELECT 'abab')", 0, 1);
    oom_sweep(db, "SELECT gpt_attention_svg('ab a', '{\"head\": \"all\", \"generate\": 2}')", 0, 1);
    oom_sweep(db, "SELECT gpt_chat_prompt('[{\"role\": \"user\", \"content\": \"hi\"}]', "
                  "'{\"template\": \"{% for m in messages %}{{ m.role|upper }}: {{ m.content }}{% endfor %}\"}')", 0, 1);
    /* the writes: each either happened whole or not at all */
    oom_sweep(db, "SELECT gpt_quantize('m', 'mq', 'q8_0')", 0, 0);
    ok(db, "SELECT gpt_generate('ab', '{\"model\": \"mq\", \"max_tokens\": 2}')", 0);
    oom_sweep(db, "SELECT gpt_drop('mq')", 0, 0);
    fails(db, "SELECT gpt_generate('ab', '{\"model\": \"mq\"}')", 0);
    oom_sweep(db, "SELECT gpt_import('m2', ?1)", zDir, 0);
    ok(db, "SELECT gpt_generate('ab', '{\"model\": \"m2\", \"max_tokens\": 2}')", 0);
    /* a tokenizer.json whose pre-tokenizer is ByteLevel alone, without its
    ** regex: no Split stage (out of memory at its empty list crashed the
    ** import, 2026-12-06) */
    oom_sweep(db, "SELECT gpt_import('m4', ?1)", zDir3, 0);
    ok(db, "SELECT gpt_generate('ab', '{\"model\": \"m4\", \"max_tokens\": 2}')", 0);
    /* a file export: a failed one leaves no file, a replacing one no
    ** temporary file, and the target is whole */
    if (has(db, "SELECT gpt_export(NULL, NULL)")) {
      char zOut[700];
      snprintf(zOut, sizeof(zOut), "%s/oom.gguf", zTmp);
      unlink(zOut);
      oom_sweep(db, "SELECT gpt_export('m2', ?1)", zOut, 0);
      oom_sweep(db, "SELECT gpt_export('m2', ?1, '{\"replace\": true}')", zOut, 0);
      ok(db, "SELECT gpt_import('m3', ?1)", zOut);
      ok(db, "SELECT gpt_generate('ab', '{\"model\": \"m3\", \"max_tokens\": 2}')", 0);
      CHECK(count_tmp_files(zTmp) == 0, "no temporary file left beside %s", zOut);
      unlink(zOut);
    }
    sqlite3_close(db);
  }
  unlink(zFile);
  printf("memory_test: %d passed, %d failed\n", nPass, nFail);
  return nFail > 0;
}
