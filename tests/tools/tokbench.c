/*
** Encoding speed of a stored tokenizer, in CPU time: loads model MODEL's
** tokenizer from database DB the way the extension does (gpt_vocab,
** gpt_merges, and the gpt_tokenizer row of a tokenizer.json model), then
** encodes TEXT (default tests/data/tinyshakespeare.txt) RUNS times (default
** 5) and prints the best run. CPU time, because on a shared machine the wall
** clock counts other programs.
**
**   make build/tokbench
**   build/tokbench DB MODEL [TEXT [RUNS]]
**
** It trusts the rows (it is a measuring tool; the extension checks them).
*/
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tokenizer.h"

/* CPU seconds of this thread. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Prints a message and exits: the tool has no other way to fail. */
static void die(const char *zWhat, const char *zMsg) {
  fprintf(stderr, "tokbench: %s: %s\n", zWhat, zMsg);
  exit(1);
}

/* Prepares zSql with the model name bound as ?1. */
static sqlite3_stmt *prep(sqlite3 *db, const char *zSql, const char *zModel) {
  sqlite3_stmt *p = 0;
  if (sqlite3_prepare_v2(db, zSql, -1, &p, 0) != SQLITE_OK) die("sql", sqlite3_errmsg(db));
  sqlite3_bind_text(p, 1, zModel, -1, SQLITE_STATIC);
  return p;
}

int main(int argc, char **argv) {
  char zErr[256];
  sqlite3 *db;
  sqlite3_stmt *p;
  if (argc < 3) {
    fprintf(stderr, "usage: tokbench DB MODEL [TEXT [RUNS]]\n");
    return 1;
  }
  const char *zModel = argv[2];
  const char *zText = argc > 3 ? argv[3] : "tests/data/tinyshakespeare.txt";
  int nRuns = argc > 4 ? atoi(argv[4]) : 5;
  if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, 0) != SQLITE_OK)
    die(argv[1], sqlite3_errmsg(db));
  double t0 = cpu_now();
  p = prep(db, "SELECT count(*) FROM gpt_vocab WHERE model = ?1", zModel);
  sqlite3_step(p);
  int nTok = sqlite3_column_int(p, 0);
  sqlite3_finalize(p);
  GPTTokenizer *t = tok_new(nTok);
  if (!t) die(zModel, "no such model, or out of memory");
  p = prep(db, "SELECT token_id, token FROM gpt_vocab WHERE model = ?1", zModel);
  while (sqlite3_step(p) == SQLITE_ROW)
    if (tok_set_token(t, sqlite3_column_int(p, 0), (const char *)sqlite3_column_text(p, 1),
                      sqlite3_column_bytes(p, 1), zErr, sizeof(zErr)))
      die("gpt_vocab", zErr);
  sqlite3_finalize(p);
  p = prep(db, "SELECT left, right FROM gpt_merges WHERE model = ?1 ORDER BY rank", zModel);
  for (int r = 0; sqlite3_step(p) == SQLITE_ROW; r++)
    if (tok_add_merge(t, r, (const char *)sqlite3_column_text(p, 0), sqlite3_column_bytes(p, 0),
                      (const char *)sqlite3_column_text(p, 1), sqlite3_column_bytes(p, 1), zErr,
                      sizeof(zErr)))
      die("gpt_merges", zErr);
  sqlite3_finalize(p);
  /* a tokenizer.json model: options, Split stages, added tokens */
  sqlite3_stmt *pRow = 0;
  if (sqlite3_prepare_v2(db, "SELECT config FROM gpt_tokenizer WHERE model = ?1", -1, &pRow,
                         0) == SQLITE_OK) {
    sqlite3_bind_text(pRow, 1, zModel, -1, SQLITE_STATIC);
    if (sqlite3_step(pRow) == SQLITE_ROW) {
      const char *zCfg = (const char *)sqlite3_column_text(pRow, 0);
      p = prep(db, "SELECT json_extract(?2, '$.normalizer') IS NOT NULL,"
               " json_extract(?2, '$.ignore_merges')", zModel);
      sqlite3_bind_text(p, 2, zCfg, -1, SQLITE_STATIC);
      sqlite3_step(p);
      unsigned opts = TOK_OPT_HF | (sqlite3_column_int(p, 0) ? TOK_OPT_NFC : 0) |
                      (sqlite3_column_int(p, 1) ? TOK_OPT_IGNORE_MERGES : 0);
      sqlite3_finalize(p);
      if (tok_set_options(t, opts, zErr, sizeof(zErr))) die("options", zErr);
      p = prep(db, "SELECT json_extract(value, '$.regex'), json_extract(value, '$.string')"
               " FROM json_each(?2, '$.pre_tokenizer') WHERE ?1 IS NOT NULL", zModel);
      sqlite3_bind_text(p, 2, zCfg, -1, SQLITE_STATIC);
      while (sqlite3_step(p) == SQLITE_ROW) {
        int iCol = sqlite3_column_type(p, 0) == SQLITE_NULL ? 1 : 0;
        if (tok_add_split(t, (const char *)sqlite3_column_text(p, iCol),
                          (size_t)sqlite3_column_bytes(p, iCol), iCol, zErr, sizeof(zErr)))
          die("pre_tokenizer", zErr);
      }
      sqlite3_finalize(p);
      p = prep(db, "SELECT json_extract(value, '$.id'), json_extract(value, '$.content'),"
               " json_extract(value, '$.special') FROM json_each(?2, '$.added_tokens')"
               " WHERE ?1 IS NOT NULL", zModel);
      sqlite3_bind_text(p, 2, zCfg, -1, SQLITE_STATIC);
      while (sqlite3_step(p) == SQLITE_ROW)
        if (tok_add_added(t, sqlite3_column_int(p, 0), (const char *)sqlite3_column_text(p, 1),
                          sqlite3_column_bytes(p, 1), sqlite3_column_int(p, 2), zErr,
                          sizeof(zErr)))
          die("added_tokens", zErr);
      sqlite3_finalize(p);
    }
    sqlite3_finalize(pRow);
  }
  if (tok_finish(t, zErr, sizeof(zErr))) die("tok_finish", zErr);
  double tLoad = cpu_now() - t0;

  FILE *f = fopen(zText, "rb");
  if (!f) die(zText, "cannot open");
  fseek(f, 0, SEEK_END);
  long nText = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *z = malloc((size_t)nText + 1);
  if (!z || fread(z, 1, (size_t)nText, f) != (size_t)nText) die(zText, "cannot read");
  fclose(f);
  double best = 1e30;
  size_t nIds = 0;
  for (int r = 0; r < nRuns; r++) {
    int *aIds;
    double a = cpu_now();
    if (tok_encode(t, z, (size_t)nText, 0, &aIds, &nIds)) die("tok_encode", "failed");
    double b = cpu_now();
    free(aIds);
    if (b - a < best) best = b - a;
  }
  printf("%s: %d tokens, loaded in %.0f ms; %s: %ld bytes -> %zu tokens in %.1f ms, "
         "%.1f MB/s (CPU time, best of %d)\n", zModel, nTok, tLoad * 1e3, zText, nText,
         nIds, best * 1e3, nText / best / 1e6, nRuns);
  free(z);
  tok_free(t);
  sqlite3_close(db);
  return 0;
}
