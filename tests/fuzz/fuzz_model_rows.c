/*
** Fuzz target: loading a model from its rows (ext/gpt.c: read_config,
** load_tokenizer, load_weights; engine/gpt.c: gpt_config_check,
** gpt_model_new, gpt_model_load; engine/tokenizer.c) and running it.
**
** A valid small model is imported once into an in-memory database. Each
** input is a little program of edits to its rows in gpt_models, gpt_tensors,
** gpt_vocab and gpt_merges, run inside a savepoint; then the model is used
** (gpt_generate, gpt_next_tokens, gpt_tokenize, gpt_detokenize) and the
** savepoint rolled back, so every input starts from the same rows.
**
** Program: a sequence of ops, each one byte (op % 13) followed by its
** operands; a "slice" is a length byte n then n bytes (fewer at the end).
**   0 config = slice                      1 config.KEY = special integer
**   2 tensor[i].data = slice              3 tensor[i].data truncated / extended
**   4 tensor[i].dtype = name or slice     5 tensor[i].shape = slice
**   6 4 bytes of tensor[i].data at off    7 delete tensor[i] / insert a row
**   8 tensor[i].name = slice / another's  9 vocab row edit / delete / insert
**  10 merges row edit / delete / insert  11 prompt = slice, options = slice
**  12 every value of tensor[i] = one special float (huge, tiny, 0, ...)
** i is a byte, taken modulo the number of tensor rows.
**
** Seeds: tests/fuzz/model_rows/.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"

static sqlite3 *gDb;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  FzModel m;
  char *zErr = 0;
  (void)argc; (void)argv;
  fz_single_thread();
  if (fz_model_make(&m, 2, 2, 8, 16, 0, 0, 0)) return 1;
  const char *zDir = fz_tmpdir();
  if (fz_write_model(zDir, &m)) exit(2);
  fz_model_free(&m);
  gDb = fz_open(0);
  if (fz_exec(gDb, "SELECT gpt_import('m', ?1)", zDir, -1, 0, 0, &zErr) != SQLITE_OK) {
    fprintf(stderr, "fuzz_model_rows: import failed: %s\n", zErr);
    exit(2);
  }
  return 0;
}

typedef struct Reader {
  const uint8_t *a;
  size_t n, i;
} Reader;

static int rd_u8(Reader *r) { return r->i < r->n ? r->a[r->i++] : 0; }
static int rd_u16(Reader *r) { int lo = rd_u8(r); return lo | rd_u8(r) << 8; }
static const char *rd_slice(Reader *r, int *pn) {
  int n = rd_u8(r);
  if ((size_t)n > r->n - r->i) n = (int)(r->n - r->i);
  const char *z = (const char *)r->a + r->i;
  r->i += (size_t)n;
  *pn = n;
  return z;
}

/* Runs an edit; SQL errors (constraints) are expected and ignored. */
static void edit(const char *zSql, const char *z1, int n1, const char *z2, int n2) {
  fz_exec(gDb, zSql, z1, n1, z2, n2, 0);
}

/* rowid of tensor row i % count, as text for binding (0 when none). */
static void tensor_rowid(int i, char *zOut) {
  sqlite3_stmt *p = 0;
  strcpy(zOut, "0");
  if (sqlite3_prepare_v2(gDb, "SELECT rowid FROM gpt_tensors ORDER BY rowid LIMIT 1 OFFSET "
                         "?1 % max(1, (SELECT count(*) FROM gpt_tensors))", -1, &p, 0) == SQLITE_OK) {
    sqlite3_bind_int(p, 1, i);
    if (sqlite3_step(p) == SQLITE_ROW) snprintf(zOut, 24, "%lld", sqlite3_column_int64(p, 0));
  }
  sqlite3_finalize(p);
}

static void call(const char *zSql, const char *z1, int n1, const char *z2, int n2) {
  char *zErr = 0;
  int rc = fz_exec(gDb, zSql, z1, n1, z2, n2, &zErr);
  fz_check(rc, zErr, zSql);
  sqlite3_free(zErr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *azKey[] = {"$.n_layer", "$.n_head", "$.n_embd", "$.n_ctx",
                                "$.vocab_size", "$.layer_norm_epsilon"};
  static const char *azVal[] = {"0", "-1", "1", "2", "3", "4", "7", "8", "16", "17", "255", "256",
                                "257", "259", "260", "261", "65536", "65537", "1000000",
                                "2147483647", "-2147483648", "9223372036854775807", "1e-300",
                                "0.5", "1.5", "'8'", "NULL", "1e999", "-0.0", "16384"};
  static const char *azDtype[] = {"f32", "f16", "bf16", "F32", "q8_0", "", "f64", "bf16 "};
  Reader r = {data, size, 0};
  const char *zPrompt = "ab a abab";
  int nPrompt = -1;
  const char *zOpts = "{\"max_tokens\": 4, \"temperature\": 0}";
  int nOpts = -1;
  char zRow[24], zArg[64];
  int n1;

  fz_exec(gDb, "SAVEPOINT fz", 0, 0, 0, 0, 0);
  for (int nOp = 0; r.i < r.n && nOp < 64; nOp++) {
    int op = rd_u8(&r) % 13;
    const char *z1;
    switch (op) {
      case 0:
        z1 = rd_slice(&r, &n1);
        edit("UPDATE gpt_models SET config = ?1", z1, n1, 0, 0);
        break;
      case 1: {
        int k = rd_u8(&r) % 6, v = rd_u8(&r) % (int)(sizeof(azVal) / sizeof(azVal[0]));
        char zSql[160];
        snprintf(zSql, sizeof(zSql), "UPDATE gpt_models SET config = json_set(config, '%s', %s)",
                 azKey[k], azVal[v]);
        edit(zSql, 0, 0, 0, 0);
        break;
      }
      case 2:
        tensor_rowid(rd_u8(&r), zRow);
        z1 = rd_slice(&r, &n1);
        edit("UPDATE gpt_tensors SET data = CAST(?2 AS BLOB) WHERE rowid = ?1", zRow, -1, z1, n1);
        break;
      case 3:
        tensor_rowid(rd_u8(&r), zRow);
        snprintf(zArg, sizeof(zArg), "%d", rd_u16(&r) - 32768);
        edit("UPDATE gpt_tensors SET data = CASE WHEN ?2 < 0 THEN "
             "substr(data, 1, max(0, length(data) + ?2)) ELSE data || zeroblob(?2) END "
             "WHERE rowid = ?1", zRow, -1, zArg, -1);
        break;
      case 4:
        tensor_rowid(rd_u8(&r), zRow);
        if (rd_u8(&r) & 1) {
          z1 = rd_slice(&r, &n1);
          edit("UPDATE gpt_tensors SET dtype = ?2 WHERE rowid = ?1", zRow, -1, z1, n1);
        } else {
          z1 = azDtype[rd_u8(&r) % 8];
          edit("UPDATE gpt_tensors SET dtype = ?2 WHERE rowid = ?1", zRow, -1, z1, -1);
        }
        break;
      case 5:
        tensor_rowid(rd_u8(&r), zRow);
        z1 = rd_slice(&r, &n1);
        edit("UPDATE gpt_tensors SET shape = ?2 WHERE rowid = ?1", zRow, -1, z1, n1);
        break;
      case 6: {
        tensor_rowid(rd_u8(&r), zRow);
        int off = rd_u16(&r);
        char zSql[200];
        snprintf(zSql, sizeof(zSql), "UPDATE gpt_tensors SET data = substr(data, 1, %d) || "
                 "x'%02x%02x%02x%02x' || substr(data, %d) WHERE rowid = ?1", off, rd_u8(&r),
                 rd_u8(&r), rd_u8(&r), rd_u8(&r), off + 5);
        edit(zSql, zRow, -1, 0, 0);
        break;
      }
      case 7:
        tensor_rowid(rd_u8(&r), zRow);
        if (rd_u8(&r) & 1) {
          edit("DELETE FROM gpt_tensors WHERE rowid = ?1", zRow, -1, 0, 0);
        } else {
          z1 = rd_slice(&r, &n1);
          edit("INSERT INTO gpt_tensors(model, name, dtype, shape, data) SELECT model, ?2, "
               "dtype, shape, data FROM gpt_tensors WHERE rowid = ?1", zRow, -1, z1, n1);
        }
        break;
      case 8:
        tensor_rowid(rd_u8(&r), zRow);
        if (rd_u8(&r) & 1) {
          z1 = rd_slice(&r, &n1);
          edit("UPDATE OR REPLACE gpt_tensors SET name = ?2 WHERE rowid = ?1", zRow, -1, z1, n1);
        } else {
          char zOther[24];
          tensor_rowid(rd_u8(&r), zOther);
          edit("UPDATE OR REPLACE gpt_tensors SET name = (SELECT name FROM gpt_tensors WHERE "
               "rowid = ?2) WHERE rowid = ?1", zRow, -1, zOther, -1);
        }
        break;
      case 9: {
        int eKind = rd_u8(&r) % 4;
        snprintf(zArg, sizeof(zArg), "%d", rd_u16(&r) % 300 - 20);
        z1 = rd_slice(&r, &n1);
        if (eKind == 0) edit("UPDATE OR REPLACE gpt_vocab SET token = ?2 WHERE token_id = ?1", zArg, -1, z1, n1);
        if (eKind == 1) edit("DELETE FROM gpt_vocab WHERE token_id = ?1", zArg, -1, 0, 0);
        if (eKind == 2) edit("INSERT OR REPLACE INTO gpt_vocab VALUES('m', ?1, ?2)", zArg, -1, z1, n1);
        if (eKind == 3) edit("UPDATE OR REPLACE gpt_vocab SET token_id = ?1 WHERE token_id = "
                             "length(?2)", zArg, -1, z1, n1);
        break;
      }
      case 10: {
        int eKind = rd_u8(&r) % 4;
        snprintf(zArg, sizeof(zArg), "%d", rd_u8(&r) % 8 - 2);
        z1 = rd_slice(&r, &n1);
        if (eKind == 0) edit("UPDATE gpt_merges SET left = ?2 WHERE rank = ?1", zArg, -1, z1, n1);
        if (eKind == 1) edit("UPDATE gpt_merges SET right = ?2 WHERE rank = ?1", zArg, -1, z1, n1);
        if (eKind == 2) edit("DELETE FROM gpt_merges WHERE rank = ?1", zArg, -1, 0, 0);
        if (eKind == 3) edit("INSERT OR REPLACE INTO gpt_merges VALUES('m', ?1, ?2, "
                             "substr(?2, 2))", zArg, -1, z1, n1);
        break;
      }
      case 11:
        zPrompt = rd_slice(&r, &nPrompt);
        zOpts = rd_slice(&r, &nOpts);
        break;
      case 12: {
        /* every element of an f32 tensor set to one value */
        static const uint32_t aBits[] = {0x7f800000u, 0x7f7fffffu, 0x00000001u, 0u,
                                         0xffc00000u, 0xff7fffffu, 0x00800000u, 0x3f800000u};
        sqlite3_stmt *p = 0;
        uint32_t u = aBits[rd_u8(&r) % 8];
        tensor_rowid(rd_u8(&r), zRow);
        if (sqlite3_prepare_v2(gDb, "SELECT length(data) FROM gpt_tensors WHERE rowid = ?1",
                               -1, &p, 0) == SQLITE_OK) {
          sqlite3_bind_text(p, 1, zRow, -1, SQLITE_STATIC);
          int nByte = sqlite3_step(p) == SQLITE_ROW ? sqlite3_column_int(p, 0) : 0;
          sqlite3_finalize(p);
          p = 0;
          unsigned char *a = nByte > 0 && nByte < (1 << 24) ? malloc((size_t)nByte) : 0;
          if (a) {
            for (int k = 0; k + 4 <= nByte; k += 4) memcpy(a + k, &u, 4);
            if (sqlite3_prepare_v2(gDb, "UPDATE gpt_tensors SET data = ?2 WHERE rowid = ?1",
                                   -1, &p, 0) == SQLITE_OK) {
              sqlite3_bind_text(p, 1, zRow, -1, SQLITE_STATIC);
              sqlite3_bind_blob(p, 2, a, nByte, SQLITE_STATIC);
              sqlite3_step(p);
            }
            sqlite3_finalize(p);
            free(a);
          }
        }
        break;
      }
    }
  }
  call("SELECT gpt_generate(?1, ?2)", zPrompt, nPrompt, zOpts, nOpts);
  call("SELECT rank, token_id, token, logit, prob FROM gpt_next_tokens(?1, 3)", zPrompt, nPrompt,
       0, 0);
  call("SELECT gpt_detokenize(gpt_tokenize(?1)), gpt_token_count(?1)", zPrompt, nPrompt, 0, 0);
  call("SELECT gpt_detokenize('[0, 256, 259, 1]')", 0, 0, 0, 0);
  fz_exec(gDb, "ROLLBACK TO fz", 0, 0, 0, 0, 0);
  fz_exec(gDb, "RELEASE fz", 0, 0, 0, 0, 0);
  return 0;
}
