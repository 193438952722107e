/*
** Fuzz target: GPT-2's tokenizer (engine/tokenizer.c) with the real GPT-2
** vocabulary and merges (tests/data/vocab.json, merges.txt), loaded once.
**
** The first byte holds flags: bit 0 = TOK_ALLOW_SPECIAL, bit 1 = also
** decode the rest as little-endian int32 ids (any value, in range or not).
** The rest is the text. Oracles, besides the sanitizers:
**   - every id tok_encode returns is in 0..50256;
**   - decode(encode(text)) gives back exactly the bytes of text;
**   - without TOK_ALLOW_SPECIAL the id 50256 never appears;
**   - tok_decode of arbitrary ids either succeeds or names a bad id that
**     really is out of range.
**
** Seeds: tests/fuzz/tokenizer/.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"
#include "tokenizer.h"

#ifndef GPT_SOURCE_DIR
#define GPT_SOURCE_DIR "."
#endif

static GPTTokenizer *gTok;

/* vocab.json through SQLite's json_each, merges.txt line by line. */
static GPTTokenizer *load(const char *zDir) {
  char zPath[1024], zErr[256];
  size_t nJson = 0, nMerges = 0;
  snprintf(zPath, sizeof(zPath), "%s/vocab.json", zDir);
  char *zJson = fz_read_file(zPath, &nJson);
  snprintf(zPath, sizeof(zPath), "%s/merges.txt", zDir);
  char *zMerges = fz_read_file(zPath, &nMerges);
  sqlite3 *db = 0;
  sqlite3_stmt *p = 0;
  GPTTokenizer *t = 0;
  if (!zJson || !zMerges) goto fail;
  sqlite3_open(":memory:", &db);
  if (sqlite3_prepare_v2(db, "SELECT key, value, (SELECT count(*) FROM json_each(?1)) "
                         "FROM json_each(?1)", -1, &p, 0) != SQLITE_OK) goto fail;
  sqlite3_bind_text(p, 1, zJson, (int)nJson, SQLITE_STATIC);
  while (sqlite3_step(p) == SQLITE_ROW) {
    if (!t && !(t = tok_new(sqlite3_column_int(p, 2)))) goto fail;
    if (tok_set_token(t, sqlite3_column_int(p, 1), (const char *)sqlite3_column_text(p, 0),
                      sqlite3_column_bytes(p, 0), zErr, sizeof(zErr))) goto fail;
  }
  int rank = 0;
  for (char *z = zMerges; z && *z;) {
    char *zEol = strchr(z, '\n');
    size_t n = zEol ? (size_t)(zEol - z) : strlen(z);
    char *zSp = memchr(z, ' ', n);
    if (strncmp(z, "#version", 8) != 0 && n > 0 && zSp) {
      if (tok_add_merge(t, rank++, z, (int)(zSp - z), zSp + 1, (int)(n - (size_t)(zSp - z) - 1),
                        zErr, sizeof(zErr))) goto fail;
    }
    z = zEol ? zEol + 1 : 0;
  }
  if (tok_finish(t, zErr, sizeof(zErr))) goto fail;
  sqlite3_finalize(p);
  sqlite3_close(db);
  free(zJson);
  free(zMerges);
  return t;
fail:
  fprintf(stderr, "fuzz_tokenizer: cannot load the GPT-2 tokenizer from %s\n", zDir);
  exit(2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  const char *zDir = getenv("GPT_FUZZ_DATA");
  gTok = load(zDir ? zDir : GPT_SOURCE_DIR "/tests/data");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int flags = data[0];
  const char *zText = (const char *)data + 1;
  size_t nText = size - 1;
  int *aIds = 0;
  size_t nIds = 0;
  if (tok_encode(gTok, zText, nText, (flags & 1) ? TOK_ALLOW_SPECIAL : 0, &aIds, &nIds) != 0) {
    return 0; /* out of memory only */
  }
  for (size_t i = 0; i < nIds; i++) {
    if (aIds[i] < 0 || aIds[i] >= 50257) __builtin_trap();
    if (!(flags & 1) && aIds[i] == 50256) __builtin_trap();
  }
  char *zOut = 0;
  size_t nOut = 0;
  int bad = 0;
  if (tok_decode(gTok, aIds, nIds, &zOut, &nOut, &bad) == 0) {
    if (nOut != nText || (nText && memcmp(zOut, zText, nText) != 0)) __builtin_trap();
  }
  free(zOut);
  free(aIds);

  if (flags & 2) {
    size_t n = nText / 4;
    int *a = malloc(n ? n * sizeof(int) : 1);
    if (!a) return 0;
    memcpy(a, zText, n * sizeof(int));
    zOut = 0;
    bad = 0;
    int rc = tok_decode(gTok, a, n, &zOut, &nOut, &bad);
    if (rc == -2 && bad >= 0 && bad < 50257) __builtin_trap();
    if (rc == 0) {
      for (size_t i = 0; i < n; i++) {
        int nTok = 0;
        if (!tok_token_bytes(gTok, a[i], &nTok)) __builtin_trap();
      }
    }
    free(zOut);
    free(a);
  }
  return 0;
}
