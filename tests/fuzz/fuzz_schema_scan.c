/*
** Fuzz target: the scan of a table's SQL for a call of a writer (ext/gpt.c
** gptext_sql_calls_writer), which every writer runs on a schema not read
** again at load: it reads text of an untrusted file.
**
** Input: any bytes, up to the first NUL, as the expression of a CHECK
** constraint: "CREATE TABLE t(a CHECK (" input "))". Oracle: SQLite itself.
** A connection with no writer registered prepares that statement; where it
** fails with "no such function: " and a writer's name, SQLite would call the
** writer, so the scan must say so (a comment between the name and its
** parenthesis had hidden such a call from the textual scan before it).
** Every input is scanned, so a crash or an overread anywhere is found too.
**
** Seeds: tests/fuzz/schema_scan/.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"

/* ext/gpt.c (declared in ext/gpt_ext.h, which needs the extension's API). */
int gptext_sql_calls_writer(const char *z);

static sqlite3 *gDb;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* no extension: its writers are the unknown functions SQLite names */
  if (sqlite3_open(":memory:", &gDb) != SQLITE_OK) {
    fprintf(stderr, "fuzz_schema_scan: cannot open a database\n");
    exit(2);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *azWriter[] = {"gpt_import", "gpt_export", "gpt_drop", "gpt_quantize",
                                   "gpt_train", "gpt_train_tokenizer"};
  if (size > 4096) return 0;
  char *zExpr = malloc(size + 1);
  if (!zExpr) return 0;
  memcpy(zExpr, data, size);
  zExpr[size] = 0;
  char *zSql = sqlite3_mprintf("CREATE TABLE t(a CHECK (%s))", zExpr);
  free(zExpr);
  if (!zSql) return 0;
  int bScan = gptext_sql_calls_writer(zSql);
  sqlite3_stmt *p = 0;
  if (sqlite3_prepare_v2(gDb, zSql, -1, &p, 0) != SQLITE_OK) {
    const char *zMsg = sqlite3_errmsg(gDb);
    static const char zPre[] = "no such function: ";
    if (strncmp(zMsg, zPre, sizeof(zPre) - 1) == 0) {
      for (size_t i = 0; i < sizeof(azWriter) / sizeof(azWriter[0]); i++) {
        if (sqlite3_stricmp(zMsg + sizeof(zPre) - 1, azWriter[i]) == 0 && !bScan) {
          fprintf(stderr, "fuzz_schema_scan: SQLite calls %s, the scan missed it: %s\n",
                  azWriter[i], zSql);
          abort();
        }
      }
    }
  }
  sqlite3_finalize(p);
  sqlite3_free(zSql);
  return 0;
}
