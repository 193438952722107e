/*
** Fuzz target: the tokenizer.json reader of gpt_import (impHfTokenizer and
** its helpers in ext/import.c: tokenizer.json, tokenizer_config.json,
** generation_config.json), the loader of the gpt_tokenizer row
** (load_tokenizer in ext/gpt.c), and the tokenizer they build
** (tok_add_split's pattern rewriting, tok_add_added, NFC, added-token
** matching and BOS handling in engine/tokenizer.c and gptext_encode).
**
** Input: the first byte chooses what the rest is (byte % 4):
**   0  tokenizer.json
**   1  tokenizer_config.json
**   2  tokenizer.json, tokenizer_config.json and generation_config.json,
**      separated by NUL bytes
**   3  the config of the imported model's gpt_tokenizer row (a hostile row)
** Files the input does not give are the valid small model's
** (fz_tokenizer_json, FZ_TOKENIZER_CONFIG). On a successful import or load
** the model tokenizes (with and without special tokens), lists, detokenizes
** and generates. Every call goes through fz_check.
**
** Seeds: tests/fuzz/tokenizer_json/ (make fuzz-seeds).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"

static sqlite3 *gDb;
static char gzDir[1024];
static FzModel gModel;
static char *gzTokJson;
static size_t gnTokJson;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fz_single_thread();
  if (fz_model_make(&gModel, 1, 2, 8, 16, 0, 0, 0)) return 1;
  gzTokJson = fz_tokenizer_json(&gModel, &gnTokJson);
  snprintf(gzDir, sizeof(gzDir), "%s", fz_tmpdir());
  if (!gzTokJson || fz_write(gzDir, "config.json", gModel.zConfig, gModel.nConfig) ||
      fz_write(gzDir, "model.safetensors", gModel.aSt, gModel.nSt)) {
    fprintf(stderr, "fuzz_tokenizer_json: cannot write %s\n", gzDir);
    exit(2);
  }
  gDb = fz_open(0);
  return 0;
}

/* Runs one statement through the oracle; returns its result code. */
static int run(const char *zSql, const char *z1, int n1) {
  char *zErr = 0;
  int rc = fz_exec(gDb, zSql, z1, n1, 0, 0, &zErr);
  fz_check(rc, zErr, zSql);
  sqlite3_free(zErr);
  return rc;
}

/* What a loaded tokenizer is asked: special tokens, invalid UTF-8, NFC,
** contractions, digits, white space, the BOS, decoding and generating. */
static void use_model(void) {
  run("SELECT gpt_detokenize(gpt_tokenize(?1)), gpt_token_count(?1),"
      " gpt_tokenize(?1, '{\"special\": true}')",
      "abab a\xff\xfe<|endoftext|> ab cafe\xcc\x81 I'M 12345\r\n\n  \t", -1);
  run("SELECT * FROM gpt_tokens(?1, '{\"special\": true}')", "<|endoftext|>a ab abab\xc3", -1);
  run("SELECT gpt_detokenize('[0, 1, 258, 259]')", 0, 0);
  run("SELECT gpt_generate('ab', '{\"max_tokens\": 3, \"temperature\": 0}')", 0, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *azFile[] = {"tokenizer.json", "tokenizer_config.json",
                                 "generation_config.json"};
  const char *az[3] = {gzTokJson, FZ_TOKENIZER_CONFIG, "{}"};
  size_t an[3] = {gnTokJson, sizeof(FZ_TOKENIZER_CONFIG) - 1, 2};
  if (size < 1) return 0;
  int eMode = data[0] % 4;
  const char *z = (const char *)data + 1;
  size_t n = size - 1;
  if (eMode < 2) {
    az[eMode] = z;
    an[eMode] = n;
  } else if (eMode == 2) {
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
    if (fz_write(gzDir, azFile[i], az[i], an[i])) return 0;
  }
  if (run("SELECT gpt_import('m', ?1)", gzDir, -1) != SQLITE_OK) return 0;
  if (eMode == 3) {
    /* the row as stored, then the input in its place */
    char *zErr = 0;
    int rc = fz_exec(gDb, "UPDATE gpt_tokenizer SET config = ?1 WHERE model = 'm'",
                     (const char *)data + 1, (int)(size - 1), 0, 0, &zErr);
    sqlite3_free(zErr);
    if (rc != SQLITE_OK) {
      run("SELECT gpt_drop('m')", 0, 0);
      return 0;
    }
  }
  use_model();
  run("SELECT gpt_drop('m')", 0, 0);
  return 0;
}
