/*
** Fuzz target: the safetensors reader (engine/safetensors.c) and the header
** parsing of gpt_import (ext/import.c, SQLite's JSON functions), the way a
** user meets them: the input is model.safetensors of a folder whose other
** files are a valid small model, imported into an in-memory database with
** gpt_import(). When the import succeeds the model also generates two tokens
** and is dropped again, so tensors that pass every check are used too.
**
** Seeds: tests/fuzz/safetensors/ (valid f32, f16, bf16 + lm_head and
** "transformer."-prefixed files of the small model, and regression inputs).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"

static sqlite3 *gDb;
static const char *gDir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  FzModel m;
  (void)argc; (void)argv;
  fz_single_thread();
  if (fz_model_make(&m, 1, 2, 8, 16, 0, 0, 0)) return 1;
  gDir = fz_tmpdir();
  if (fz_write_model(gDir, &m)) {
    fprintf(stderr, "fuzz_safetensors: cannot write %s\n", gDir);
    exit(2);
  }
  fz_model_free(&m);
  gDb = fz_open(0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char zImport[] = "SELECT gpt_import('m', ?1)";
  static const char zGen[] =
      "SELECT gpt_generate('ab a', '{\"max_tokens\": 2, \"temperature\": 0}')";
  char *zErr = 0;
  int rc;
  if (fz_write(gDir, "model.safetensors", data, size)) return 0;
  rc = fz_exec(gDb, zImport, gDir, -1, 0, 0, &zErr);
  fz_check(rc, zErr, zImport);
  sqlite3_free(zErr);
  if (rc == SQLITE_OK) {
    rc = fz_exec(gDb, zGen, 0, 0, 0, 0, &zErr);
    fz_check(rc, zErr, zGen);
    sqlite3_free(zErr);
    rc = fz_exec(gDb, "SELECT gpt_drop('m')", 0, 0, 0, 0, &zErr);
    fz_check(rc, zErr, "gpt_drop");
    sqlite3_free(zErr);
  }
  return 0;
}
