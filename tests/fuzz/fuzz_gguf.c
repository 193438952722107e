/*
** Fuzz target: the GGUF reader (engine/gguf.c) and gpt_import of a GGUF file
** (ext/gguf.c), the way a user meets them: the input is written to a file
** and imported into an in-memory database (GGUF is told by its magic). When
** the import succeeds the model generates two tokens, is exported to GGUF
** again and dropped, so files that pass every check are used too.
**
** Seeds: tests/fuzz/gguf/ (a 1-layer GPT-2 with a 259-token vocabulary,
** tied and untied, written by tests/fuzz/mkseed_gguf.py); the dictionary
** names the metadata keys and tensor names.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"

static sqlite3 *gDb;
static char *gPath, *gOut;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *zDir;
  (void)argc; (void)argv;
  fz_single_thread();
  zDir = fz_tmpdir();
  gPath = sqlite3_mprintf("%s/model.gguf", zDir);
  gOut = sqlite3_mprintf("%s/out.gguf", zDir);
  gDb = fz_open(0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char zImport[] = "SELECT gpt_import('m', ?1)";
  static const char zGen[] =
      "SELECT gpt_generate('ab a', '{\"max_tokens\": 2, \"temperature\": 0}')";
  static const char zExport[] = "SELECT gpt_export('m', ?1, '{\"replace\": true}')";
  char *zErr = 0;
  int rc;
  FILE *f = fopen(gPath, "wb");
  if (!f) return 0;
  if (size && fwrite(data, 1, size, f) != size) {
    fclose(f);
    return 0;
  }
  fclose(f);
  rc = fz_exec(gDb, zImport, gPath, -1, 0, 0, &zErr);
  fz_check(rc, zErr, zImport);
  sqlite3_free(zErr);
  zErr = 0;
  if (rc == SQLITE_OK) {
    rc = fz_exec(gDb, zGen, 0, 0, 0, 0, &zErr);
    fz_check(rc, zErr, zGen);
    sqlite3_free(zErr);
    zErr = 0;
    rc = fz_exec(gDb, zExport, gOut, -1, 0, 0, &zErr);
    fz_check(rc, zErr, zExport);
    sqlite3_free(zErr);
    zErr = 0;
    rc = fz_exec(gDb, "SELECT gpt_drop('m')", 0, 0, 0, 0, &zErr);
    fz_check(rc, zErr, "gpt_drop");
    sqlite3_free(zErr);
  }
  return 0;
}
