/*
** Fuzz target: the options parser (ext/gpt.c gptext_options_parse) and what
** each function does with the options it accepts, through every function
** and table-valued function that takes an options argument.
**
** Input: the first byte picks the call (byte % N, the list below; calls to
** functions that this build does not register are skipped), the second
** picks a prompt, the rest is the options text, bound as TEXT (for
** gpt_quantize, which has no options, the dtype name). A small model
** with n_ctx 16 is imported once, so even max_tokens 65536 stays cheap.
**
** Seeds: tests/fuzz/options/.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"

static sqlite3 *gDb;
static const char *gDir;

static const char *azCall[] = {
  "SELECT gpt_generate(?1, ?2)",
  "SELECT gpt_tokenize(?1, ?2)",
  "SELECT gpt_detokenize(gpt_tokenize(?1), ?2)",
  "SELECT gpt_token_count(?1, ?2)",
  "SELECT * FROM gpt_tokens(?1, ?2)",
  "SELECT * FROM gpt_next_tokens(?1, 5, ?2)",
  "SELECT * FROM gpt_next_tokens(?1, NULL, ?2)",
  "SELECT gpt_import('o' || length(?1), ?3, ?2)",
  "SELECT gpt_logprob(?1, ?2), gpt_perplexity(?1, ?2)",
  "SELECT gpt_embed(?1, ?2)",
  "SELECT gpt_summarize(value, ?2) FROM (SELECT ?1 AS value UNION ALL SELECT 'ab')",
  "SELECT * FROM gpt_attention(?1, ?2)",
  "SELECT * FROM gpt_generate_tokens(?1, ?2)",
  "SELECT gpt_quantize('m', 'mq', ?2)",
  "SELECT gpt_attention_svg(?1, ?2)",
};
#define N_CALL ((int)(sizeof(azCall) / sizeof(azCall[0])))
static int abCallOk[N_CALL];

static const char *azPrompt[] = {
  "ab a abab", "", "<|endoftext|>ab", "\xff\xfe a", "a b a b a b a b a b a b a b a b a b a b",
  "abababababababababababababababababab",
};
#define N_PROMPT ((int)(sizeof(azPrompt) / sizeof(azPrompt[0])))

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  FzModel m;
  char *zErr = 0;
  (void)argc; (void)argv;
  fz_single_thread();
  if (fz_model_make(&m, 1, 2, 8, 16, 0, 0, 0)) return 1;
  gDir = fz_tmpdir();
  if (fz_write_model(gDir, &m)) exit(2);
  fz_model_free(&m);
  gDb = fz_open(0);
  if (fz_exec(gDb, "SELECT gpt_import('m', ?1)", gDir, -1, 0, 0, &zErr) != SQLITE_OK) {
    fprintf(stderr, "fuzz_options: import failed: %s\n", zErr);
    exit(2);
  }
  /* which calls this build has */
  for (int i = 0; i < N_CALL; i++) {
    sqlite3_stmt *p = 0;
    abCallOk[i] = sqlite3_prepare_v2(gDb, azCall[i], -1, &p, 0) == SQLITE_OK;
    sqlite3_finalize(p);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int iCall = data[0] % N_CALL;
  const char *zPrompt = azPrompt[data[1] % N_PROMPT];
  const char *zOpts = (const char *)data + 2;
  int nOpts = (int)(size - 2);
  sqlite3_stmt *p = 0;
  char *zErr = 0;
  if (!abCallOk[iCall]) return 0;
  int rc = sqlite3_prepare_v2(gDb, azCall[iCall], -1, &p, 0);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(p, 1, zPrompt, -1, SQLITE_STATIC);
    sqlite3_bind_text(p, 2, zOpts, nOpts, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(p) >= 3) sqlite3_bind_text(p, 3, gDir, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(p); i++) (void)sqlite3_column_blob(p, i);
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) zErr = sqlite3_mprintf("%s", sqlite3_errmsg(gDb));
  sqlite3_finalize(p);
  fz_check(rc, zErr, azCall[iCall]);
  sqlite3_free(zErr);
  /* an import or quantized copy that worked is dropped, so the next input
  ** starts the same */
  if ((iCall == 7 || iCall == 13) && rc == SQLITE_OK) {
    fz_exec(gDb, "SELECT gpt_drop(name) FROM gpt_models WHERE name <> 'm'", 0, 0, 0, 0, 0);
  }
  return 0;
}
