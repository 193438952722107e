/*
** Fuzz target: the config.json, vocab.json and merges.txt readers of
** gpt_import (ext/import.c) and the tokenizer construction they feed
** (tok_set_token, tok_add_merge, tok_finish in engine/tokenizer.c).
**
** Input: the first byte chooses what the rest is (byte % 4):
**   0  config.json      1  vocab.json      2  merges.txt
**   3  all three, separated by NUL bytes (config, vocab, merges)
** Every file the input does not give is the valid small model's. The folder
** is imported into an in-memory database; on success the model tokenizes,
** detokenizes and generates, then is dropped.
**
** Seeds: tests/fuzz/import_text/.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"

static sqlite3 *gDb;
static const char *gDir;
static FzModel gModel;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fz_single_thread();
  if (fz_model_make(&gModel, 1, 2, 8, 16, 0, 0, 0)) return 1;
  gDir = fz_tmpdir();
  if (fz_write_model(gDir, &gModel)) {
    fprintf(stderr, "fuzz_import_text: cannot write %s\n", gDir);
    exit(2);
  }
  gDb = fz_open(0);
  return 0;
}

static void run(const char *zSql, const char *z1, int n1) {
  char *zErr = 0;
  int rc = fz_exec(gDb, zSql, z1, n1, 0, 0, &zErr);
  fz_check(rc, zErr, zSql);
  sqlite3_free(zErr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *azFile[] = {"config.json", "vocab.json", "merges.txt"};
  const char *azDefault[3] = {gModel.zConfig, gModel.zVocab, gModel.zMerges};
  const size_t anDefault[3] = {gModel.nConfig, gModel.nVocab, gModel.nMerges};
  const char *az[3];
  size_t an[3];
  char *zErr = 0;
  int rc;
  if (size < 1) return 0;
  for (int i = 0; i < 3; i++) {
    az[i] = azDefault[i];
    an[i] = anDefault[i];
  }
  int eMode = data[0] % 4;
  const char *z = (const char *)data + 1;
  size_t n = size - 1;
  if (eMode < 3) {
    az[eMode] = z;
    an[eMode] = n;
  } else {
    for (int i = 0; i < 3; i++) {
      const char *zEnd = memchr(z, 0, n);
      size_t nPart = zEnd ? (size_t)(zEnd - z) : n;
      az[i] = z;
      an[i] = nPart;
      z += nPart;
      n -= nPart;
      if (n > 0) { z++; n--; }
    }
  }
  for (int i = 0; i < 3; i++) {
    if (fz_write(gDir, azFile[i], az[i], an[i])) return 0;
  }
  rc = fz_exec(gDb, "SELECT gpt_import('m', ?1)", gDir, -1, 0, 0, &zErr);
  fz_check(rc, zErr, "gpt_import");
  sqlite3_free(zErr);
  if (rc == SQLITE_OK) {
    run("SELECT gpt_detokenize(gpt_tokenize(?1)) = ?1, gpt_token_count(?1)",
        "abab a\xff\xfe<|endoftext|> ab", -1);
    run("SELECT * FROM gpt_tokens(?1)", "a ab abab\xc3", -1);
    run("SELECT gpt_generate('ab', '{\"max_tokens\": 3, \"temperature\": 0}')", 0, 0);
    run("SELECT gpt_drop('m')", 0, 0);
  }
  return 0;
}
