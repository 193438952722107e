/*
** The tokenizer in SQL.
**
**   SELECT * FROM gpt_tokens('Hello world');          -- pos | token_id | token
**   SELECT gpt_tokenize('Hello world');               -- [15496,995]
**   SELECT gpt_detokenize('[15496,995]');             -- Hello world
**   SELECT gpt_detokenize_bytes('[447]');             -- X'E280' (exact bytes)
**   SELECT gpt_token_count(body) FROM docs;
**
** Each takes an optional options JSON last: {"model": "name"} picks the
** model, {"special": true} reads "<|endoftext|>" in text as token 50256
** (by default it is plain text, as tiktoken's encode_ordinary does).
** These are pure lookups of the stored tokenizer, so they are DETERMINISTIC;
** they load no weights.
**
** Text out is always valid UTF-8: a token can hold part of a character, so
** an ill-formed sequence becomes U+FFFD as Python's
** bytes.decode('utf-8', 'replace') makes it (gptext_result_text). The
** exact bytes are gpt_detokenize_bytes and the bytes column of gpt_tokens.
*/
#include "gpt_ext.h"
#include <string.h>

/* Shared prologue: options from argv[iOpt] (when present) and the model. */
static int tokens_setup(sqlite3_context *ctx, const char *zFunc, int argc,
                        sqlite3_value **argv, int iOpt, GptOptions *o, GptModel **ppM) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  char *zErr = 0;
  int rc = gptext_options_parse(db, zFunc, iOpt < argc ? argv[iOpt] : 0,
                                GPTOPT_MODEL | GPTOPT_SPECIAL, o, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_model_acquire(sqlite3_user_data(ctx), db, zFunc, o->zModel, 0, ppM, &zErr);
  if (rc != SQLITE_OK) {
    if (zErr) gptext_result_error(ctx, zErr);
    if (!zErr || rc != SQLITE_ERROR) sqlite3_result_error_code(ctx, rc); /* e.g. an interrupt */
    sqlite3_free(zErr);
  }
  return rc;
}

/* gpt_tokenize(text [, options]): the token ids as a JSON array. NULL in,
** NULL out. */
static void gptTokenizeFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  GptOptions o;
  GptModel *m = 0;
  int *aIds = 0, nIds = 0, rc;
  char *zErr = 0;
  sqlite3_str *pStr = 0;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  if (tokens_setup(ctx, "gpt_tokenize", argc, argv, 1, &o, &m)) goto done;
  if ((rc = gptext_encode(sqlite3_context_db_handle(ctx), m, "gpt_tokenize",
                          (const char *)sqlite3_value_text(argv[0]), gptext_value_bytes(argv[0]),
                          o.bAllowSpecial, &aIds, &nIds, &zErr))) {
    gptext_result_error(ctx, zErr);
    sqlite3_result_error_code(ctx, rc);
    goto done;
  }
  pStr = sqlite3_str_new(sqlite3_context_db_handle(ctx));
  sqlite3_str_appendchar(pStr, 1, '[');
  for (int i = 0; i < nIds; i++) sqlite3_str_appendf(pStr, i ? ",%d" : "%d", aIds[i]);
  sqlite3_str_appendchar(pStr, 1, ']');
  if (sqlite3_str_errcode(pStr)) {
    gptext_result_str_error(ctx, "gpt_tokenize", m->zName, sqlite3_str_errcode(pStr));
  } else {
    int n = sqlite3_str_length(pStr);
    sqlite3_result_text(ctx, sqlite3_str_finish(pStr), n, sqlite3_free);
    pStr = 0;
  }
done:
  if (pStr) sqlite3_free(sqlite3_str_finish(pStr));
  sqlite3_free(zErr);
  sqlite3_free(aIds);
  gptext_model_release(m);
  gptext_options_clear(&o);
}

/* gpt_token_count(text [, options]): how many tokens text encodes to. */
static void gptTokenCountFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  GptOptions o;
  GptModel *m = 0;
  int *aIds = 0, nIds = 0, rc;
  char *zErr = 0;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  if (tokens_setup(ctx, "gpt_token_count", argc, argv, 1, &o, &m)) goto done;
  if ((rc = gptext_encode(sqlite3_context_db_handle(ctx), m, "gpt_token_count",
                          (const char *)sqlite3_value_text(argv[0]), gptext_value_bytes(argv[0]),
                          o.bAllowSpecial, &aIds, &nIds, &zErr))) {
    gptext_result_error(ctx, zErr);
    sqlite3_result_error_code(ctx, rc);
    goto done;
  }
  sqlite3_result_int(ctx, nIds);
done:
  sqlite3_free(zErr);
  sqlite3_free(aIds);
  gptext_model_release(m);
  gptext_options_clear(&o);
}

/* gpt_detokenize(ids_json [, options]): the text of a JSON array of ids
** (valid UTF-8, see above); gpt_detokenize_bytes: their exact bytes as a
** BLOB (the user data's bBytes). An id outside the vocabulary, or anything
** but integers, is an error naming it. */
static void detokenize(sqlite3_context *ctx, int argc, sqlite3_value **argv, int bBytes) {
  const char *zFunc = bBytes ? "gpt_detokenize_bytes" : "gpt_detokenize";
  GptOptions o;
  GptModel *m = 0;
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  sqlite3_stmt *p = 0;
  sqlite3_str *pStr = 0;
  sqlite3_value *pIds = argv[0], *pText = 0; /* JSONB's text, if given that */
  int rc;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  if (tokens_setup(ctx, zFunc, argc, argv, 1, &o, &m)) goto done;
  if ((rc = gptext_json_text(db, argv[0], &pText)) != SQLITE_OK) goto sql_error;
  if (pText) pIds = pText;
  /* each item's type, value, index and JSON text (true is 1 as a value) */
  rc = sqlite3_prepare_v2(db, "SELECT type, value, key, CASE type WHEN 'true' THEN 'true' "
                          "WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' WHEN 'text' THEN "
                          "json_quote(value) ELSE value END FROM json_each(CASE WHEN "
                          "json_valid(?1) AND json_type(?1) = 'array' THEN ?1 ELSE NULL END)",
                          -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_value(p, 1, pIds);
  {
    char *zType = 0;
    rc = gptext_json_type(db, pIds, &zType);
    int bArray = zType && strcmp(zType, "array") == 0;
    const char *zGot = gptext_json_got(zType, pIds);
    sqlite3_free(zType);
    if (rc != SQLITE_OK) goto sql_error;
    if (!bArray) {
      char *zErr = sqlite3_mprintf("%s: argument 1 must be a JSON array of token ids, "
                                   "like '[15496, 995]'%s", zFunc, zGot);
      gptext_result_error(ctx, zErr ? zErr : zFunc);
      sqlite3_free(zErr);
      goto done;
    }
  }
  pStr = sqlite3_str_new(db);
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    const char *zType = (const char *)sqlite3_column_text(p, 0);
    sqlite3_int64 id = sqlite3_column_int64(p, 1);
    int nBytes = 0;
    const char *zTok = 0;
    /* the tokenizer may cover fewer ids than vocab_size (Qwen pads) */
    if (zType && strcmp(zType, "integer") == 0 && id >= 0 && id < tok_vocab_size(m->pTok))
      zTok = tok_token_bytes(m->pTok, (int)id, &nBytes);
    if (!zTok) {
      /* json_each gives true as 1 and 1.0 as 1.0: say what the item is, and
      ** where (its JSON shown when short; the message stays valid UTF-8) */
      int bInt = zType && strcmp(zType, "integer") == 0;
      const char *zJson = (const char *)sqlite3_column_text(p, 3);
      int nJson = sqlite3_column_bytes(p, 3);
      char *zErr = bInt ? sqlite3_mprintf("%s: model '%s': token id %s (item %lld of the "
                                          "array) is not in the vocabulary (0 to %d)", zFunc,
                                          m->zName, sqlite3_column_text(p, 1),
                                          sqlite3_column_int64(p, 2),
                                          tok_vocab_size(m->pTok) - 1)
                        : sqlite3_mprintf("%s: model '%s': item %lld of the array%s%s%s is %s, "
                                          "not an integer token id", zFunc, m->zName,
                                          sqlite3_column_int64(p, 2),
                                          zJson && nJson <= 64 ? " (" : "",
                                          zJson && nJson <= 64 ? zJson : "",
                                          zJson && nJson <= 64 ? ")" : "", zType ? zType : "null");
      gptext_result_error(ctx, zErr);
      sqlite3_free(zErr);
      goto done;
    }
    sqlite3_str_append(pStr, zTok, nBytes);
  }
  if (rc != SQLITE_DONE) goto sql_error;
  if (sqlite3_str_errcode(pStr)) {
    gptext_result_str_error(ctx, zFunc, m->zName, sqlite3_str_errcode(pStr));
  } else {
    int n = sqlite3_str_length(pStr);
    char *z = sqlite3_str_finish(pStr);
    pStr = 0;
    if (bBytes) gptext_result_bytes(ctx, z, n, sqlite3_free);
    else gptext_result_text(ctx, z, n, sqlite3_free);
  }
  goto done;
sql_error:
  {
    char *zErr = sqlite3_mprintf("%s: %s", zFunc, sqlite3_errmsg(db));
    gptext_result_error(ctx, zErr);
    sqlite3_free(zErr);
    /* SQLITE_INTERRUPT (or BUSY, NOMEM) stays the call's code */
    if ((rc & 0xff) != SQLITE_ERROR && rc != SQLITE_ROW && rc != SQLITE_DONE && rc != SQLITE_OK)
      sqlite3_result_error_code(ctx, rc);
  }
done:
  if (pStr) sqlite3_free(sqlite3_str_finish(pStr));
  sqlite3_finalize(p);
  sqlite3_value_free(pText);
  gptext_model_release(m);
  gptext_options_clear(&o);
}

/* gpt_detokenize(ids [, options]): the ids' text, as TEXT. */
static void gptDetokenizeFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  detokenize(ctx, argc, argv, 0);
}

/* gpt_detokenize_bytes(ids [, options]): the ids' exact bytes, as a BLOB. */
static void gptDetokenizeBytesFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  detokenize(ctx, argc, argv, 1);
}

/* ------------------------------------------------------------ gpt_tokens */

/* gpt_tokens(text [, options]): one row per token: pos, token_id, token (the
** token's text, valid UTF-8: a token that holds part of a character shows
** U+FFFD for it) and bytes (the token's exact bytes as a BLOB; they
** concatenate back to the input's bytes). The rowid is pos's, made unique
** across arguments (gptext_tvf_rowid). The hidden
** columns text and options read back the arguments, as SQLite checks them
** again under some plans (a MULTI-INDEX OR). */
typedef struct TokensCursor {
  sqlite3_vtab_cursor base;
  GptModel *m;
  int *aIds;
  int nIds;
  int iRow;
  sqlite3_value *apArg[2];  /* copies of text and options, or NULL */
  sqlite3_uint64 fp;        /* their fingerprint, for the rowid */
} TokensCursor;

#define TOKENS_COL_BYTES 3
#define TOKENS_COL_TEXT 4

/* Declares the columns; text and options are the hidden arguments. */
static int tokensConnect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                         sqlite3_vtab **ppVtab, char **pzErr) {
  (void)argc; (void)argv; (void)pzErr;
  return gptext_vtab_connect(db, pAux, "CREATE TABLE x(pos INTEGER, token_id INTEGER, "
                             "token TEXT, bytes BLOB, text HIDDEN, options HIDDEN)", SQLITE_VTAB_INNOCUOUS,
                             ppVtab);
}

/* xOpen: a cursor with no rows until xFilter encodes the text. */
static int tokensOpen(sqlite3_vtab *p, sqlite3_vtab_cursor **ppCur) {
  (void)p;
  return gptext_tvf_open(sizeof(TokensCursor), ppCur);
}

/* Forgets the current text's tokens and model reference. */
static void tokensReset(TokensCursor *c) {
  sqlite3_free(c->aIds);
  c->aIds = 0;
  c->nIds = 0;
  c->iRow = 0;
  gptext_model_release(c->m);
  c->m = 0;
  for (int i = 0; i < 2; i++) {
    sqlite3_value_free(c->apArg[i]);
    c->apArg[i] = 0;
  }
}

/* xClose: frees what the cursor holds, then the cursor. */
static int tokensClose(sqlite3_vtab_cursor *cur) {
  tokensReset((TokensCursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

/* idxNum bit 0: text given; bit 1: options given. */
static int tokensBestIndex(sqlite3_vtab *p, sqlite3_index_info *pInfo) {
  return gptext_tvf_best_index(p, pInfo, TOKENS_COL_TEXT, 2, 1, "gpt_tokens");
}

/* Encodes the text argument; a NULL text gives no rows. */
static int tokensFilter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                        sqlite3_value **argv) {
  (void)idxStr;
  TokensCursor *c = (TokensCursor *)cur;
  GptVtab *pVtab = (GptVtab *)cur->pVtab;
  GptOptions o;
  char *zErr = 0;
  int rc;
  tokensReset(c);
  if (gptext_tvf_missing(&pVtab->base, idxNum, 1, "gpt_tokens")) return SQLITE_ERROR;
  rc = gptext_tvf_keep_args(idxNum, 2, argc, argv, c->apArg);
  if (rc != SQLITE_OK) return rc;
  c->fp = gptext_tvf_fingerprint(c->apArg, 2);
  if (argc < 1 || sqlite3_value_type(argv[0]) == SQLITE_NULL) return SQLITE_OK;
  rc = gptext_options_parse(pVtab->db, "gpt_tokens", (idxNum & 2) ? argv[1] : 0,
                            GPTOPT_MODEL | GPTOPT_SPECIAL, &o, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_model_acquire(pVtab->pConn, pVtab->db, "gpt_tokens", o.zModel, 0, &c->m, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_encode(pVtab->db, c->m, "gpt_tokens", (const char *)sqlite3_value_text(argv[0]),
                       gptext_value_bytes(argv[0]), o.bAllowSpecial, &c->aIds, &c->nIds, &zErr);
  gptext_options_clear(&o);
  if (rc != SQLITE_OK) return gptext_vtab_error(&pVtab->base, zErr, rc);
  return SQLITE_OK;
}

/* xNext: the next token. */
static int tokensNext(sqlite3_vtab_cursor *cur) {
  ((TokensCursor *)cur)->iRow++;
  return SQLITE_OK;
}

/* xEof: true past the last token. */
static int tokensEof(sqlite3_vtab_cursor *cur) {
  TokensCursor *c = (TokensCursor *)cur;
  return c->iRow >= c->nIds;
}

/* xColumn: column i of the current token's row; the hidden columns read
** back the arguments. */
static int tokensColumn(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  TokensCursor *c = (TokensCursor *)cur;
  int id = c->aIds[c->iRow], n = 0;
  const char *z;
  switch (i) {
    case 0: sqlite3_result_int(ctx, c->iRow); break;
    case 1: sqlite3_result_int(ctx, id); break;
    case 2:
    case TOKENS_COL_BYTES:
      z = tok_token_bytes(c->m->pTok, id, &n);
      if (i == 2) gptext_result_text(ctx, z, z ? n : 0, SQLITE_TRANSIENT);
      else gptext_result_bytes(ctx, z, z ? n : 0, SQLITE_TRANSIENT);
      break;
    default: /* the hidden arguments read back */
      if (i - TOKENS_COL_TEXT < 2 && c->apArg[i - TOKENS_COL_TEXT])
        sqlite3_result_value(ctx, c->apArg[i - TOKENS_COL_TEXT]);
      break;
  }
  return SQLITE_OK;
}

/* xRowid: unique under every plan (gptext_tvf_rowid). */
static int tokensRowid(sqlite3_vtab_cursor *cur, sqlite_int64 *pRowid) {
  TokensCursor *c = (TokensCursor *)cur;
  *pRowid = gptext_tvf_rowid(c->fp, c->nIds, c->iRow);
  return SQLITE_OK;
}

static sqlite3_module tokensModule = {
  0, 0, tokensConnect, tokensBestIndex, gptext_vtab_disconnect, 0, tokensOpen, tokensClose,
  tokensFilter, tokensNext, tokensEof, tokensColumn, tokensRowid,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Registers the tokenizer's functions and the gpt_tokens module. */
int gptext_register_tokens(sqlite3 *db, GptConn *pConn) {
  static const struct {
    const char *zName;
    int nArg;
    void (*xFunc)(sqlite3_context *, int, sqlite3_value **);
  } aFunc[] = {
    {"gpt_tokenize", 1, gptTokenizeFunc},       {"gpt_tokenize", 2, gptTokenizeFunc},
    {"gpt_detokenize", 1, gptDetokenizeFunc},   {"gpt_detokenize", 2, gptDetokenizeFunc},
    {"gpt_detokenize_bytes", 1, gptDetokenizeBytesFunc},
    {"gpt_detokenize_bytes", 2, gptDetokenizeBytesFunc},
    {"gpt_token_count", 1, gptTokenCountFunc},  {"gpt_token_count", 2, gptTokenCountFunc},
  };
  int rc = SQLITE_OK;
  for (size_t i = 0; rc == SQLITE_OK && i < sizeof(aFunc) / sizeof(aFunc[0]); i++)
    rc = sqlite3_create_function(db, aFunc[i].zName, aFunc[i].nArg,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC, pConn, aFunc[i].xFunc, 0, 0);
  if (rc == SQLITE_OK) rc = sqlite3_create_module(db, "gpt_tokens", &tokensModule, pConn);
  return rc;
}
