/*
** sqlite-gpt: GPT-2-family decoder models inside SQLite.
**
**   .load build/gpt
**   SELECT gpt_import('gpt2', 'models/gpt2');
**   SELECT gpt_generate(body, '{"max_tokens": 32}') FROM docs;
**
** This file is the entry point and the shared machinery of the SQLite side:
** the registration table, the schema, the options parser and the model
** cache. How the cache works: a loaded model (tokenizer, and weights once a
** function needs them) is keyed by database file and model name and shared by
** every connection of the process. Each gpt_models row carries a stamp that
** triggers change whenever any of the model's rows change, so a lookup costs
** one indexed SELECT, and a changed model is reloaded while calls still
** running on the old one keep it alive through their reference.
*/
#define GPT_EXT_MAIN
#include "gpt_ext.h"
#include "kernels.h"
SQLITE_EXTENSION_INIT1

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "schema.h"

#define GPT_VERSION "0.1.0"

/* ------------------------------------------------------------- errors */

/* Replaces *pzErr with a formatted message, freeing the old one first. */
void gptext_set_error(char **pzErr, const char *zFormat, ...) {
  va_list ap;
  va_start(ap, zFormat);
  char *z = sqlite3_vmprintf(zFormat, ap);
  va_end(ap);
  sqlite3_free(*pzErr);
  *pzErr = z;
}

/* --------------------------------------------------------------- UTF-8 */

/* The length of the well-formed UTF-8 sequence at z[0..n) (n >= 1), or,
** negated, the length of the ill-formed part to replace with one U+FFFD.
** That part is the maximal subpart of Unicode's "U+FFFD Substitution of
** Maximal Subparts" (chapter 3), the rule Python's
** bytes.decode('utf-8', 'replace') follows: a lead byte and the continuation
** bytes that could still begin a valid sequence, or one byte that cannot
** begin one (80..C1, F5..FF). An incomplete sequence at the end is one part. */
static int utf8_sequence(const unsigned char *z, size_t n) {
  unsigned char b = z[0], lo = 0x80, hi = 0xBF;
  int nNeed;
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) nNeed = 1;
  else if (b == 0xE0) { nNeed = 2; lo = 0xA0; }
  else if (b == 0xED) { nNeed = 2; hi = 0x9F; }      /* no surrogates */
  else if (b >= 0xE1 && b <= 0xEF) nNeed = 2;
  else if (b == 0xF0) { nNeed = 3; lo = 0x90; }
  else if (b == 0xF4) { nNeed = 3; hi = 0x8F; }      /* nothing past U+10FFFF */
  else if (b >= 0xF1 && b <= 0xF3) nNeed = 3;
  else return -1;
  for (int k = 1; k <= nNeed; k++) {
    if ((size_t)k >= n || z[k] < lo || z[k] > hi) return -k;
    lo = 0x80;
    hi = 0xBF;
  }
  return nNeed + 1;
}

/* Writes z[0..n) to zOut (when not NULL) with every ill-formed part
** replaced by U+FFFD (EF BF BD); returns the length written, which is n
** exactly when z is valid UTF-8 and at most 3n. */
size_t gptext_utf8_repair(const char *zIn, size_t n, char *zOut) {
  const unsigned char *z = (const unsigned char *)zIn;
  size_t i = 0, nOut = 0;
  while (i < n) {
    int k = utf8_sequence(z + i, n - i);
    if (k > 0) {
      if (zOut) memcpy(zOut + nOut, z + i, (size_t)k);
      nOut += (size_t)k;
      i += (size_t)k;
    } else {
      if (zOut) memcpy(zOut + nOut, "\xEF\xBF\xBD", 3);
      nOut += 3;
      i += (size_t)-k;
    }
  }
  return nOut;
}

/* The offset of the first ill-formed part of z[0..n), or -1 when z is
** valid UTF-8. */
int64_t gptext_utf8_invalid_at(const char *z, size_t n) {
  const unsigned char *u = (const unsigned char *)z;
  for (size_t i = 0; i < n;) {
    if (u[i] < 0x80) { i++; continue; }
    int k = utf8_sequence(u + i, n - i);
    if (k < 0) return (int64_t)i;
    i += (size_t)k;
  }
  return -1;
}

/* True when z[0..n) is valid UTF-8. */
int gptext_utf8_valid(const char *z, size_t n) { return gptext_utf8_invalid_at(z, n) < 0; }

/* z[0..n) with its ill-formed parts replaced, NUL-terminated, in a new
** sqlite3_malloc'd buffer of *pnOut bytes (the length even when the
** buffer is NULL: out of memory, or over SQLite's 2 GB). */
static char *utf8_repaired(const char *z, size_t n, size_t *pnOut) {
  size_t nOut = gptext_utf8_repair(z, n, 0);
  char *zOut = nOut <= 0x7fffffff ? sqlite3_malloc64(nOut + 1) : 0;
  if (zOut) {
    gptext_utf8_repair(z, n, zOut);
    zOut[nOut] = 0;
  }
  *pnOut = nOut;
  return zOut;
}

/* Every TEXT result of the extension goes out through here: z[0..n) as
** TEXT, ill-formed UTF-8 replaced by U+FFFD, so that every client can read
** it (Python's sqlite3 raises on invalid UTF-8; others replace silently).
** Valid text goes out as it is; xDel disposes of z as sqlite3_result_text's
** destructor would. The exact bytes go out as BLOBs (the bytes columns,
** gpt_generate_bytes, gpt_detokenize_bytes). */
void gptext_result_text(sqlite3_context *ctx, const char *z, int n, void (*xDel)(void *)) {
  if (!z || n <= 0) {
    sqlite3_result_text(ctx, "", 0, SQLITE_STATIC);
    if (z && xDel != SQLITE_STATIC && xDel != SQLITE_TRANSIENT) xDel((void *)z);
    return;
  }
  if (gptext_utf8_valid(z, (size_t)n)) {
    sqlite3_result_text(ctx, z, n, xDel);
    return;
  }
  size_t nOut = 0;
  char *zOut = utf8_repaired(z, (size_t)n, &nOut);
  if (xDel != SQLITE_STATIC && xDel != SQLITE_TRANSIENT) xDel((void *)z);
  if (!zOut) {
    if (nOut > 0x7fffffff) sqlite3_result_error_toobig(ctx);
    else sqlite3_result_error_nomem(ctx);
    return;
  }
  sqlite3_result_text(ctx, zOut, (int)nOut, sqlite3_free);
}

/* z (sqlite3_malloc'd, or NULL) as valid UTF-8: itself when it is, else a
** repaired copy (z freed). Messages echo names, paths and options as they
** were given, and an error's text must be readable by every client too. */
char *gptext_utf8_own(char *z) {
  size_t n = z ? strlen(z) : 0, nOut;
  if (!z || gptext_utf8_valid(z, n)) return z;
  char *zOut = utf8_repaired(z, n, &nOut);
  sqlite3_free(z);
  return zOut;
}

/* Binds z as parameter i of p, as valid UTF-8 (ill-formed bytes replaced):
** a path kept in gpt_models.source must read back in every client. */
int gptext_bind_utf8(sqlite3_stmt *p, int i, const char *z) {
  if (!z || gptext_utf8_valid(z, strlen(z))) return sqlite3_bind_text(p, i, z, -1, SQLITE_STATIC);
  char *zOwn = gptext_utf8_own(sqlite3_mprintf("%s", z));
  return zOwn ? sqlite3_bind_text(p, i, zOwn, -1, sqlite3_free) : SQLITE_NOMEM;
}

/* Whether argument v can name a new model: TEXT or a BLOB of valid UTF-8
** without a NUL (which cut the name short), as every client reads names
** back from gpt_models. Empty names are the callers' own error. */
int gptext_name_ok(sqlite3_value *v) {
  const char *z = (const char *)sqlite3_value_text(v);
  return z && !gptext_has_nul(v) && gptext_utf8_valid(z, (size_t)sqlite3_value_bytes(v));
}

/* Whether v, read as text, has a NUL byte before its end. C reads a path
** or a query only up to it, so the call would open another file or run
** another query than the one given: such arguments are refused. */
int gptext_has_nul(sqlite3_value *v) {
  const char *z = (const char *)sqlite3_value_text(v);
  return z && (size_t)sqlite3_value_bytes(v) != strlen(z);
}

/* sqlite3_result_error with z's ill-formed UTF-8 replaced. */
void gptext_result_error(sqlite3_context *ctx, const char *z) {
  size_t nOut;
  if (!z || gptext_utf8_valid(z, strlen(z))) {
    sqlite3_result_error(ctx, z ? z : "out of memory", -1);
    return;
  }
  char *zOut = utf8_repaired(z, strlen(z), &nOut);
  if (zOut) sqlite3_result_error(ctx, zOut, -1);
  else sqlite3_result_error_nomem(ctx);
  sqlite3_free(zOut);
}

/* The exact bytes z[0..n) as a BLOB ('' as an empty BLOB, never NULL). */
void gptext_result_bytes(sqlite3_context *ctx, const char *z, int n, void (*xDel)(void *)) {
  if (!z || n <= 0) {
    sqlite3_result_zeroblob(ctx, 0);
    if (z && xDel != SQLITE_STATIC && xDel != SQLITE_TRANSIENT) xDel((void *)z);
    return;
  }
  sqlite3_result_blob(ctx, z, n, xDel);
}

/* The error of a result over the connection's length limit: SQLite's own
** "string or blob too big" names neither the function nor the limit. */
static void result_too_big(sqlite3_context *ctx, const char *zFunc, const char *zModel) {
  int nLimit = sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LENGTH, -1);
  char *zErr = zModel ? sqlite3_mprintf("%s: model '%s': the result is over SQLite's length "
                                        "limit of %d bytes (SQLITE_LIMIT_LENGTH)", zFunc, zModel, nLimit)
                      : sqlite3_mprintf("%s: the result is over SQLite's length limit of %d bytes "
                                        "(SQLITE_LIMIT_LENGTH)", zFunc, nLimit);
  gptext_result_error(ctx, zErr);
  sqlite3_result_error_code(ctx, zErr ? SQLITE_TOOBIG : SQLITE_NOMEM);
  sqlite3_free(zErr);
}

/* A result built in a sqlite3_str that failed with rc. */
void gptext_result_str_error(sqlite3_context *ctx, const char *zFunc, const char *zModel, int rc) {
  if (rc != SQLITE_TOOBIG) sqlite3_result_error_nomem(ctx);
  else result_too_big(ctx, zFunc, zModel);
}

/* 1 when a result of n bytes fits the connection's length limit; else 0,
** with the error naming zFunc, zModel and the limit set as the result. */
int gptext_result_fits(sqlite3_context *ctx, const char *zFunc, const char *zModel,
                       sqlite3_int64 n) {
  if (n <= sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LENGTH, -1)) return 1;
  result_too_big(ctx, zFunc, zModel);
  return 0;
}

/* SQLite 3.40 has no sqlite3_is_interrupted(); a trivial statement stepped
** after sqlite3_interrupt() fails with SQLITE_INTERRUPT, which works on every
** version. Newer versions answer directly. */
int gptext_interrupted(sqlite3 *db) {
#if SQLITE_VERSION_NUMBER >= 3041000
  if (sqlite3_libversion_number() >= 3041000) return sqlite3_is_interrupted(db);
#endif
  sqlite3_stmt *pStmt = 0;
  int rc = sqlite3_prepare_v2(db, "SELECT 1", -1, &pStmt, 0);
  if (rc == SQLITE_OK) rc = sqlite3_step(pStmt);
  sqlite3_finalize(pStmt);
  return rc == SQLITE_INTERRUPT;
}

/* Runs sql/schema.sql (compiled in). Every statement is IF NOT EXISTS. */
int gptext_ensure_schema(sqlite3 *db, char **pzErr) {
  char *zErr = 0;
  int rc = sqlite3_exec(db, gptSchemaSql, 0, 0, &zErr);
  if (rc != SQLITE_OK) {
    gptext_set_error(pzErr, "cannot create the gpt_ tables: %s", zErr ? zErr : sqlite3_errstr(rc));
    sqlite3_free(zErr);
  }
  return rc;
}

/* ------------------------------------------------------------ options */

/* Whether the JSON text z[0..n) holds the escape \u0000. SQLite 3.40's JSON
** functions end a string there, so an option's value would be cut short
** without a word ("a\u0000b" read as "a"); 3.53 keeps the NUL. Options are
** refused with it on both. */
int gptext_json_has_nul(const char *z, int n) {
  if (z && n > 0 && memchr(z, 0, (size_t)n)) return 1; /* JSON is read up to it */
  for (int i = 0; z && i + 5 < n; i++) {
    if (z[i] != '\\') continue;
    if (z[i + 1] == 'u' && memcmp(z + i + 2, "0000", 4) == 0) return 1;
    i++; /* the escaped character, a backslash say */
  }
  return 0;
}

int gptext_json_type(sqlite3 *db, sqlite3_value *pVal, char **pzType) {
  sqlite3_stmt *p = 0;
  *pzType = 0;
  int rc = sqlite3_prepare_v2(db, "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) END", -1,
                              &p, 0);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_value(p, 1, pVal);
  rc = sqlite3_step(p);
  if (rc == SQLITE_ROW) {
    rc = SQLITE_OK;
    if (sqlite3_column_type(p, 0) != SQLITE_NULL &&
        !(*pzType = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(p, 0))))
      rc = SQLITE_NOMEM;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_ERROR; /* one row, always */
  }
  sqlite3_finalize(p);
  return rc;
}

const char *gptext_json_got(const char *zType, sqlite3_value *pVal) {
  switch (sqlite3_value_type(pVal)) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT: return "; got a number";
    case SQLITE_BLOB:
      return "; got a BLOB, which is read only as JSONB (SQLite 3.45 and later): give JSON as TEXT";
    default: break;
  }
  if (!zType)
    return sqlite3_value_bytes(pVal) == 0 ? "; got an empty string" : "; got malformed JSON";
  if (strcmp(zType, "array") == 0) return "; got a JSON array";
  if (strcmp(zType, "object") == 0) return "; got a JSON object";
  if (strcmp(zType, "text") == 0) return "; got a JSON string";
  if (strcmp(zType, "null") == 0) return "; got JSON null";
  if (strcmp(zType, "true") == 0 || strcmp(zType, "false") == 0) return "; got a JSON boolean";
  return "; got a JSON number";
}

int gptext_json_text(sqlite3 *db, sqlite3_value *pArg, sqlite3_value **ppText) {
  sqlite3_stmt *p = 0;
  *ppText = 0;
  if (sqlite3_value_type(pArg) != SQLITE_BLOB) return SQLITE_OK;
  /* only a well-formed JSONB array or object: JSONB's headers make many
  ** short texts valid JSONB strings ('hello!!' reads "ello!!"), and json()
  ** of a text BLOB stops at a NUL byte. SQLite 3.40 has no json_valid(X, 8):
  ** nothing prepares there, and the BLOB is read as it is */
  if (sqlite3_prepare_v2(db, "SELECT CASE WHEN json_valid(?1, 8) AND json_type(?1) IN "
                         "('array', 'object') THEN json(?1) END", -1, &p, 0) != SQLITE_OK)
    return SQLITE_OK;
  sqlite3_bind_value(p, 1, pArg);
  int rc = sqlite3_step(p);
  if (rc == SQLITE_ROW && sqlite3_column_type(p, 0) == SQLITE_TEXT) {
    *ppText = sqlite3_value_dup(sqlite3_column_value(p, 0));
    rc = *ppText ? SQLITE_OK : SQLITE_NOMEM;
  } else if (rc == SQLITE_ROW) {
    rc = SQLITE_OK;
  }
  sqlite3_finalize(p);
  return rc;
}

/* gptext_options_parse with "zFunc: model 'zModel'" as the errors' prefix. */
int gptext_options_parse_named(sqlite3 *db, const char *zFunc, const char *zModel,
                               sqlite3_value *pArg, unsigned allowed, GptOptions *o,
                               char **pzErr) {
  char *zWho = sqlite3_mprintf("%s: model '%s'", zFunc, zModel);
  int rc;
  if (!zWho) {
    memset(o, 0, sizeof(*o));
    return SQLITE_NOMEM;
  }
  rc = gptext_options_parse(db, zWho, pArg, allowed, o, pzErr);
  sqlite3_free(zWho);
  return rc;
}

void gptext_options_clear(GptOptions *o) {
  sqlite3_free(o->zModel);
  for (int i = 0; i < o->nStop; i++) sqlite3_free(o->azStop[i]);
  sqlite3_free(o->azStop);
  sqlite3_free(o->zTemplate);
  sqlite3_free(o->zVariables);
  memset(o, 0, sizeof(*o));
}

/* Fetches a numeric option value, or reports that the key needs a number. */
static int opt_number(sqlite3_stmt *p, const char *zFunc, const char *zKey,
                      const char *zRange, int bInteger, double *pOut, char **pzErr) {
  const char *zType = (const char *)sqlite3_column_text(p, 1);
  double v = sqlite3_column_double(p, 2);
  /* a whole number written as a real (8.0) is that integer, as k's 8.0 is */
  int bWhole = zType && strcmp(zType, "real") == 0 && isfinite(v) && v == floor(v);
  if (!zType || (strcmp(zType, "integer") != 0 && !bWhole &&
                 (bInteger || strcmp(zType, "real") != 0))) {
    gptext_set_error(pzErr, "%s: option \"%s\" must be %s%s%s", zFunc, zKey,
                     bInteger ? "an integer" : "a number", zRange[0] ? " " : "", zRange);
    return SQLITE_ERROR;
  }
  *pOut = v;
  return SQLITE_OK;
}

/* Reports an option value outside its range. */
static int opt_range(const char *zFunc, const char *zKey, const char *zRange, char **pzErr) {
  gptext_set_error(pzErr, "%s: option \"%s\" must be %s", zFunc, zKey, zRange);
  return SQLITE_ERROR;
}

/* Copies a string option value. */
static int opt_string(sqlite3_stmt *p, const char *zFunc, const char *zKey, char **pz,
                      char **pzErr) {
  const char *zType = (const char *)sqlite3_column_text(p, 1);
  if (!zType || strcmp(zType, "text") != 0) {
    gptext_set_error(pzErr, "%s: option \"%s\" must be a string", zFunc, zKey);
    return SQLITE_ERROR;
  }
  const char *z = (const char *)sqlite3_column_text(p, 2);
  if (z && strlen(z) != (size_t)sqlite3_column_bytes(p, 2)) {
    /* a "\u0000" would cut the string (a template, a model name) short */
    gptext_set_error(pzErr, "%s: option \"%s\" contains a NUL character", zFunc, zKey);
    return SQLITE_ERROR;
  }
  sqlite3_free(*pz);
  *pz = sqlite3_mprintf("%s", z ? z : "");
  return *pz ? SQLITE_OK : SQLITE_NOMEM;
}

/* Reads a boolean option: JSON true/false (or 0/1). */
static int opt_bool(sqlite3_stmt *p, const char *zFunc, const char *zKey, int *pb,
                    char **pzErr) {
  const char *zType = (const char *)sqlite3_column_text(p, 1);
  int bInt01 = zType && strcmp(zType, "integer") == 0 &&
               (sqlite3_column_int64(p, 2) == 0 || sqlite3_column_int64(p, 2) == 1);
  if (!zType || (strcmp(zType, "true") && strcmp(zType, "false") && !bInt01)) {
    gptext_set_error(pzErr, "%s: option \"%s\" must be true or false", zFunc, zKey);
    return SQLITE_ERROR;
  }
  *pb = sqlite3_column_int(p, 2) != 0;
  return SQLITE_OK;
}

/* Whether column i of p is a string with a NUL in it: a stop string is
** matched as a C string, so "a\u0000b" would silently stop at "a" (SQLite
** 3.53 keeps the "\u0000"; 3.40's JSON ends the string there). */
static int opt_has_nul(sqlite3_stmt *p, int i) {
  const char *z = (const char *)sqlite3_column_text(p, i);
  return z && strlen(z) != (size_t)sqlite3_column_bytes(p, i);
}

/* Reads the stop strings of a "stop" value: a string or an array of them.
** A repeated "stop" key replaces the earlier one, as other keys do. */
static int opt_stop(sqlite3 *db, sqlite3_stmt *p, const char *zFunc, GptOptions *o,
                    char **pzErr) {
  const char *zType = (const char *)sqlite3_column_text(p, 1);
  sqlite3_stmt *pArr = 0;
  int rc = SQLITE_OK;
  for (int i = 0; i < o->nStop; i++) sqlite3_free(o->azStop[i]);
  sqlite3_free(o->azStop);
  o->azStop = 0;
  o->nStop = 0;
  if (zType && strcmp(zType, "text") == 0) {
    if (opt_has_nul(p, 2)) {
      gptext_set_error(pzErr, "%s: option \"stop\" contains a NUL character", zFunc);
      return SQLITE_ERROR;
    }
    o->azStop = sqlite3_malloc64(sizeof(char *));
    if (!o->azStop) return SQLITE_NOMEM;
    o->azStop[0] = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(p, 2));
    if (!o->azStop[0]) return SQLITE_NOMEM;
    o->nStop = 1;
  } else if (zType && strcmp(zType, "array") == 0) {
    rc = sqlite3_prepare_v2(db, "SELECT type, value FROM json_each(?1)", -1, &pArr, 0);
    if (rc == SQLITE_OK) rc = sqlite3_bind_value(pArr, 1, sqlite3_column_value(p, 2));
    int rcStep = SQLITE_ROW;
    while (rc == SQLITE_OK && (rcStep = sqlite3_step(pArr)) == SQLITE_ROW) {
      const char *zT = (const char *)sqlite3_column_text(pArr, 0);
      if (zT && strcmp(zT, "text") == 0 && opt_has_nul(pArr, 1)) {
        gptext_set_error(pzErr, "%s: option \"stop\" contains a NUL character", zFunc);
        rc = SQLITE_ERROR;
        break;
      }
      if (!zT || strcmp(zT, "text") != 0 || sqlite3_column_bytes(pArr, 1) == 0 || o->nStop >= 16) {
        gptext_set_error(pzErr, "%s: option \"stop\" must be a non-empty string or an "
                         "array of up to 16 non-empty strings", zFunc);
        rc = SQLITE_ERROR;
        break;
      }
      char **a = sqlite3_realloc64(o->azStop, sizeof(char *) * (o->nStop + 1));
      if (!a) { rc = SQLITE_NOMEM; break; }
      o->azStop = a;
      a[o->nStop] = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(pArr, 1));
      if (!a[o->nStop]) { rc = SQLITE_NOMEM; break; }
      o->nStop++;
    }
    /* an interrupt would have left the list short */
    if (rc == SQLITE_OK && rcStep != SQLITE_DONE) rc = rcStep;
  } else {
    rc = SQLITE_ERROR;
  }
  sqlite3_finalize(pArr);
  if (rc == SQLITE_OK && o->nStop > 0 && o->azStop[0][0] == 0) rc = SQLITE_ERROR;
  if (rc == SQLITE_ERROR && !*pzErr)
    gptext_set_error(pzErr, "%s: option \"stop\" must be a non-empty string or an "
                     "array of up to 16 non-empty strings", zFunc);
  return rc;
}

/* Option keys and the mask that enables each. */
static const struct { const char *zKey; unsigned mask; } aOptKey[] = {
  {"model", GPTOPT_MODEL},          {"max_tokens", GPTOPT_MAXTOKENS},
  {"temperature", GPTOPT_SAMPLING}, {"top_k", GPTOPT_SAMPLING},
  {"top_p", GPTOPT_SAMPLING},       {"seed", GPTOPT_SAMPLING},
  {"stop", GPTOPT_SAMPLING},        {"truncate", GPTOPT_TRUNCATE},
  {"special", GPTOPT_SPECIAL},      {"replace", GPTOPT_REPLACE},
  {"generate", GPTOPT_ATTN_GEN},    {"pool", GPTOPT_POOL},
  {"template", GPTOPT_TEMPLATE},    {"threads", GPTOPT_THREADS},
  {"variables", GPTOPT_CHATVARS},   {"add_generation_prompt", GPTOPT_GENPROMPT},
  {"batch", GPTOPT_BATCH},
  {"layer", GPTOPT_LAYER_HEAD},     {"head", GPTOPT_LAYER_HEAD},
  {"allow_requantize", GPTOPT_REQUANT},
};

/* An option error of zFunc, "zFunc: ...", made "zFunc: model 'm': ...":
** the model the options name, or the database's only model when they name
** none. The model is chosen from the options, so they are read first; a
** failed lookup (no tables, an interrupt) leaves the message as it is. */
static void options_error_name_model(sqlite3 *db, const char *zFunc, sqlite3_value *pArg,
                                     char **pzErr) {
  sqlite3_stmt *p = 0;
  size_t nFunc = strlen(zFunc);
  if (!*pzErr || strncmp(*pzErr, zFunc, nFunc) != 0 || strncmp(*pzErr + nFunc, ": ", 2) != 0)
    return;
  if (sqlite3_prepare_v2(db,
          /* json_each decodes keys as the options' parse read them
          ** ("mod\u0065l"; 3.40's json_extract does not); '' for a model
          ** that is no string or that the database lacks: no name (its
          ** "no model named" error comes once the options are valid) */
          "SELECT coalesce((SELECT CASE WHEN type = 'text' THEN coalesce((SELECT name FROM "
          "main.gpt_models WHERE name = value), '') ELSE '' END FROM "
          "json_each(CASE WHEN json_valid(?1) AND json_type(?1) = 'object' THEN ?1 ELSE '{}' "
          "END) WHERE key = 'model' LIMIT 1), "
          "(SELECT min(name) FROM main.gpt_models HAVING count(*) = 1))",
          -1, &p, 0) == SQLITE_OK) {
    if (pArg) sqlite3_bind_value(p, 1, pArg);
    if (sqlite3_step(p) == SQLITE_ROW && sqlite3_column_type(p, 0) == SQLITE_TEXT &&
        sqlite3_column_bytes(p, 0) > 0) {
      char *z = sqlite3_mprintf("%s: model '%s': %s", zFunc, sqlite3_column_text(p, 0),
                                *pzErr + nFunc + 2);
      if ((z = gptext_utf8_own(z)) != 0) {
        sqlite3_free(*pzErr);
        *pzErr = z;
      }
    }
  }
  sqlite3_finalize(p);
}

/* Parses the options object with SQLite's json_each: one row per key, its
** JSON type and value. Each key is checked against the function's mask and
** its range; the error names the key and what it accepts. */
int gptext_options_parse(sqlite3 *db, const char *zFunc, sqlite3_value *pArg,
                         unsigned allowed, GptOptions *o, char **pzErr) {
  sqlite3_stmt *p = 0;
  int rc = SQLITE_OK;
  memset(o, 0, sizeof(*o));
  o->nMaxTokens = 64;
  o->temperature = 1.0;
  o->topP = 1.0;
  o->seed = 42;
  if (pArg == 0 || sqlite3_value_type(pArg) == SQLITE_NULL) return SQLITE_OK;
  sqlite3_value *pText = 0; /* JSONB's text */
  const char *zGot = 0;      /* what the options are when no object */
  int bNameModel = (allowed & GPTOPT_MODEL) != 0;
  if ((rc = gptext_json_text(db, pArg, &pText)) != SQLITE_OK) goto done;
  if (pText) pArg = pText;
  rc = sqlite3_prepare_v2(db,
      "SELECT key, type, value, json_type(?1) FROM json_each(CASE WHEN json_valid(?1) "
      "AND json_type(?1) = 'object' THEN ?1 ELSE '{}' END)", -1, &p, 0);
  if (rc != SQLITE_OK) goto done;
  if (sqlite3_value_type(pArg) != SQLITE_TEXT) {
    zGot = gptext_json_got(0, pArg);
    goto not_object;
  }
  if (gptext_json_has_nul((const char *)sqlite3_value_text(pArg), gptext_value_bytes(pArg))) {
    gptext_set_error(pzErr, "%s: " GPTEXT_OPTIONS_NUL, zFunc);
    bNameModel = 0; /* the NUL may cut its name short */
    rc = SQLITE_ERROR;
    goto done;
  }
  sqlite3_bind_value(p, 1, pArg);
  {
    /* Distinguish "not an object" from an empty object. */
    char *zType = 0;
    rc = gptext_json_type(db, pArg, &zType);
    int bObject = zType && strcmp(zType, "object") == 0;
    zGot = gptext_json_got(zType, pArg);
    sqlite3_free(zType);
    if (rc != SQLITE_OK) goto done;
    if (!bObject) goto not_object;
  }
  uint32_t seen = 0; /* bit i: aOptKey[i] was read */
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    const char *zKey = (const char *)sqlite3_column_text(p, 0);
    unsigned mask = 0;
    double v = 0;
    for (size_t i = 0; zKey && i < sizeof(aOptKey) / sizeof(aOptKey[0]); i++) {
      if (strcmp(zKey, aOptKey[i].zKey) != 0) continue;
      mask = aOptKey[i].mask;
      /* SQLite's JSON functions read a repeated key's first value, Python's
      ** json its last: refused, as tokenizer files' are */
      if ((mask & allowed) && (seen & (1u << i))) {
        gptext_set_error(pzErr, "%s: option \"%s\" appears twice; give each option once",
                         zFunc, zKey);
        rc = SQLITE_ERROR;
        goto done;
      }
      seen |= 1u << i;
      o->given |= mask;
    }
    if (!zKey || !(mask & allowed)) {
      char *zValid = 0;
      for (size_t i = 0; i < sizeof(aOptKey) / sizeof(aOptKey[0]); i++)
        if (aOptKey[i].mask & allowed)
          zValid = sqlite3_mprintf("%z%s\"%s\"", zValid, zValid ? ", " : "", aOptKey[i].zKey);
      gptext_set_error(pzErr, "%s: unknown option \"%s\"; valid options: %s", zFunc,
                       zKey ? zKey : "", zValid ? zValid : "none");
      sqlite3_free(zValid);
      rc = SQLITE_ERROR;
      goto done;
    }
    if (strcmp(zKey, "model") == 0) {
      rc = opt_string(p, zFunc, zKey, &o->zModel, pzErr);
    } else if (strcmp(zKey, "max_tokens") == 0) {
      rc = opt_number(p, zFunc, zKey, "from 1 to 65536", 1, &v, pzErr);
      if (rc == SQLITE_OK && (v < 1 || v > 65536))
        rc = opt_range(zFunc, zKey, "an integer from 1 to 65536", pzErr);
      if (rc == SQLITE_OK) o->nMaxTokens = (int)v; /* only once in range */
    } else if (strcmp(zKey, "temperature") == 0) {
      rc = opt_number(p, zFunc, zKey, "from 0 to 100", 0, &v, pzErr);
      if (rc == SQLITE_OK && !(v >= 0 && v <= 100))
        rc = opt_range(zFunc, zKey, "a number from 0 to 100 (0 = greedy)", pzErr);
      o->temperature = v;
    } else if (strcmp(zKey, "top_k") == 0) {
      rc = opt_number(p, zFunc, zKey, "from 0 to 1000000", 1, &v, pzErr);
      if (rc == SQLITE_OK && (v < 0 || v > 1000000))
        rc = opt_range(zFunc, zKey, "an integer from 0 to 1000000 (0 = off)", pzErr);
      if (rc == SQLITE_OK) o->topK = (int)v;
    } else if (strcmp(zKey, "top_p") == 0) {
      rc = opt_number(p, zFunc, zKey, "in (0, 1]", 0, &v, pzErr);
      if (rc == SQLITE_OK && !(v > 0 && v <= 1))
        rc = opt_range(zFunc, zKey, "a number in (0, 1]", pzErr);
      o->topP = v;
    } else if (strcmp(zKey, "seed") == 0) {
      rc = opt_number(p, zFunc, zKey, "", 1, &v, pzErr);
      /* a JSON integer past 64 bits comes as a real of type "integer": not
      ** clamped in silence; only a JSON real may be a whole number within */
      const char *zType = (const char *)sqlite3_column_text(p, 1);
      if (rc == SQLITE_OK && sqlite3_column_type(p, 2) != SQLITE_INTEGER &&
          !(zType && strcmp(zType, "real") == 0 && v >= -9223372036854775808.0 &&
            v < 9223372036854775808.0))
        rc = opt_range(zFunc, zKey, "an integer that fits 64 bits", pzErr);
      if (rc == SQLITE_OK) /* (a real out of range does not convert) */
        o->seed = sqlite3_column_type(p, 2) == SQLITE_INTEGER ? sqlite3_column_int64(p, 2)
                                                              : (int64_t)v;
      o->bSeedSet = 1;
    } else if (strcmp(zKey, "stop") == 0) {
      rc = opt_stop(db, p, zFunc, o, pzErr);
    } else if (strcmp(zKey, "truncate") == 0) {
      rc = opt_bool(p, zFunc, zKey, &o->bTruncate, pzErr);
    } else if (strcmp(zKey, "special") == 0) {
      rc = opt_bool(p, zFunc, zKey, &o->bAllowSpecial, pzErr);
    } else if (strcmp(zKey, "replace") == 0) {
      rc = opt_bool(p, zFunc, zKey, &o->bReplace, pzErr);
    } else if (strcmp(zKey, "allow_requantize") == 0) {
      rc = opt_bool(p, zFunc, zKey, &o->bAllowRequantize, pzErr);
    } else if (strcmp(zKey, "generate") == 0) {
      rc = opt_number(p, zFunc, zKey, "from 0 to 65536", 1, &v, pzErr);
      if (rc == SQLITE_OK && (v < 0 || v > 65536))
        rc = opt_range(zFunc, zKey, "an integer from 0 to 65536", pzErr);
      if (rc == SQLITE_OK) o->nGenerate = (int)v;
    } else if (strcmp(zKey, "pool") == 0) {
      rc = opt_string(p, zFunc, zKey, &o->zTemplate, pzErr); /* borrowed slot */
      if (rc == SQLITE_OK) {
        if (strcmp(o->zTemplate, "last") == 0) o->bPoolLast = 1;
        else if (strcmp(o->zTemplate, "mean") != 0)
          rc = opt_range(zFunc, zKey, "\"mean\" or \"last\"", pzErr);
        sqlite3_free(o->zTemplate);
        o->zTemplate = 0;
      }
    } else if (strcmp(zKey, "template") == 0) {
      rc = opt_string(p, zFunc, zKey, &o->zTemplate, pzErr);
      /* its text goes into the prompt, which must be valid UTF-8 */
      if (rc == SQLITE_OK && !gptext_utf8_valid(o->zTemplate, strlen(o->zTemplate)))
        rc = opt_range(zFunc, zKey, "valid UTF-8 text", pzErr);
    } else if (strcmp(zKey, "batch") == 0) {
      rc = opt_number(p, zFunc, zKey, "from 1 to 256", 1, &v, pzErr);
      if (rc == SQLITE_OK && (v < 1 || v > 256))
        rc = opt_range(zFunc, zKey, "an integer from 1 to 256", pzErr);
      if (rc == SQLITE_OK) o->nBatch = (int)v;
    } else if (strcmp(zKey, "threads") == 0) {
      rc = opt_number(p, zFunc, zKey, "from 1 to 256", 1, &v, pzErr);
      if (rc == SQLITE_OK && (v < 1 || v > 256))
        rc = opt_range(zFunc, zKey, "an integer from 1 to 256", pzErr);
      if (rc == SQLITE_OK) o->nThreads = (int)v;
    } else if (strcmp(zKey, "variables") == 0) {
      const char *zType = (const char *)sqlite3_column_text(p, 1);
      if (!zType || strcmp(zType, "object") != 0) {
        rc = opt_range(zFunc, zKey, "a JSON object of template variables", pzErr);
      } else {
        sqlite3_free(o->zVariables);
        o->zVariables = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(p, 2));
        rc = o->zVariables ? SQLITE_OK : SQLITE_NOMEM;
      }
    } else if (strcmp(zKey, "add_generation_prompt") == 0) {
      int b = 1;
      rc = opt_bool(p, zFunc, zKey, &b, pzErr);
      o->bNoGenPrompt = !b;
    } else if (strcmp(zKey, "layer") == 0) {
      /* the model's own count is checked once it is loaded */
      rc = opt_number(p, zFunc, zKey, "from 0 to 255", 1, &v, pzErr);
      if (rc == SQLITE_OK && (v < 0 || v >= GPT_MAX_LAYER))
        rc = opt_range(zFunc, zKey, "an integer from 0 to 255", pzErr);
      if (rc == SQLITE_OK) o->iLayer = (int)v;
    } else if (strcmp(zKey, "head") == 0) {
      const char *zType = (const char *)sqlite3_column_text(p, 1);
      if (zType && strcmp(zType, "text") == 0) {
        const char *zVal = (const char *)sqlite3_column_text(p, 2);
        rc = SQLITE_OK;
        if (zVal && strcmp(zVal, "all") == 0) o->iHead = -1;
        else rc = opt_range(zFunc, zKey, "an integer from 0 to 255 or \"all\"", pzErr);
      } else {
        rc = opt_number(p, zFunc, zKey, "from 0 to 255 or \"all\"", 1, &v, pzErr);
        if (rc == SQLITE_OK && (v < 0 || v >= GPT_MAX_HEAD))
          rc = opt_range(zFunc, zKey, "an integer from 0 to 255 or \"all\"", pzErr);
        if (rc == SQLITE_OK) o->iHead = (int)v;
      }
    }
    if (rc != SQLITE_OK) goto done;
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  goto done;
not_object:
  gptext_set_error(pzErr, "%s: options must be a JSON object, like '%s'%s", zFunc,
                   (allowed & GPTOPT_MAXTOKENS) ? "{\"max_tokens\": 32}" :
                   (allowed & GPTOPT_ATTN_GEN) ? "{\"generate\": 8}" :
                   (allowed & GPTOPT_REPLACE) ? "{\"replace\": true}" :
                   (allowed & GPTOPT_REQUANT) ? "{\"allow_requantize\": true}" :
                   "{\"model\": \"gpt2\"}", zGot ? zGot : "");
  rc = SQLITE_ERROR;
done:
  if (rc != SQLITE_OK && !*pzErr) gptext_set_error(pzErr, "%s: %s", zFunc, sqlite3_errmsg(db));
  sqlite3_finalize(p);
  if (rc == SQLITE_ERROR && bNameModel) options_error_name_model(db, zFunc, pArg, pzErr);
  sqlite3_value_free(pText);
  if (rc != SQLITE_OK) gptext_options_clear(o);
  return rc;
}

/* -------------------------------------------------------- model cache */

/* A cached model, shared across connections. */
typedef struct CacheEntry CacheEntry;
struct CacheEntry {
  GptModel model;          /* what callers see; must stay first */
  char *zKey;              /* database file + '\n' + model name */
  int nRef;                /* callers and connections holding it */
  int bStale;              /* superseded: freed when nRef drops to 0 */
  int bLoading;            /* a thread is reading its weights, without the mutex */
  CacheEntry *pNext;
};

static pthread_mutex_t gCacheMutex = PTHREAD_MUTEX_INITIALIZER;
/* Signalled when an entry's weights finish loading (bLoading drops). */
static pthread_cond_t gCacheLoaded = PTHREAD_COND_INITIALIZER;
static CacheEntry *gCache = 0;
static sqlite3_int64 gnTokenizerLoads = 0; /* counters for gpt_debug() */
static sqlite3_int64 gnWeightLoads = 0;

/* The ids with a token: the tokenizer's size, within the config's vocab_size. */
int gptext_live_vocab(const GptModel *m) {
  int n = m->pTok ? tok_vocab_size(m->pTok) : m->cfg.vocab_size;
  return n >= 1 && n <= m->cfg.vocab_size ? n : m->cfg.vocab_size;
}

/* Frees an entry that nothing references any more. */
static void cache_entry_free(CacheEntry *e) {
  if (!e) return;
  tok_free(e->model.pTok);
  gpt_model_free(e->model.pNet);
  sqlite3_free(e->model.zName);
  sqlite3_free(e->model.zBosText);
  sqlite3_free(e->model.zEosText);
  sqlite3_free(e->model.zChatTemplate);
  sqlite3_free(e->zKey);
  sqlite3_free(e);
}

/* Drops an entry from the list (caller holds the mutex). */
static void cache_unlink(CacheEntry *e) {
  for (CacheEntry **pp = &gCache; *pp; pp = &(*pp)->pNext) {
    if (*pp == e) { *pp = e->pNext; break; }
  }
  e->bStale = 1;
}

/* fork(): the cache is locked across it, so the child gets a consistent
** list. In the child, an entry that a thread of the parent was loading has
** no loader (a call there waited for it forever): it is dropped from the
** list, to be loaded afresh; the loader's reference is never let go, so it
** stays allocated. */
static void cache_before_fork(void) { pthread_mutex_lock(&gCacheMutex); }
static void cache_after_fork_in_parent(void) { pthread_mutex_unlock(&gCacheMutex); }
static void cache_after_fork_in_child(void) {
  pthread_mutex_init(&gCacheMutex, 0);
  pthread_cond_init(&gCacheLoaded, 0);
  for (CacheEntry **pp = &gCache; *pp;) {
    CacheEntry *e = *pp;
    if (e->bLoading) {
      *pp = e->pNext;
      e->bStale = 1;
      e->bLoading = 0;
    } else {
      pp = &e->pNext;
    }
  }
}
static pthread_once_t gCacheForkOnce = PTHREAD_ONCE_INIT;
static void cache_register_fork(void) {
  pthread_atfork(cache_before_fork, cache_after_fork_in_parent, cache_after_fork_in_child);
}

/* Lets go of a reference that gptext_model_acquire gave; NULL is a no-op. The
** last reference to a stale entry frees it, outside the mutex. */
void gptext_model_release(GptModel *p) {
  CacheEntry *e = (CacheEntry *)p, *pFree = 0;
  if (!e) return;
  pthread_mutex_lock(&gCacheMutex);
  if (--e->nRef == 0) {
    if (!e->bStale) cache_unlink(e);
    pFree = e;
  }
  pthread_mutex_unlock(&gCacheMutex);
  cache_entry_free(pFree);
}

/* Takes one more reference to a model already referenced. */
void gptext_model_retain(GptModel *p) {
  pthread_mutex_lock(&gCacheMutex);
  ((CacheEntry *)p)->nRef++;
  pthread_mutex_unlock(&gCacheMutex);
}

#define CONN_MODELS GPT_CONN_MODELS

/* Lets go of model h wherever connection c holds it: its held slots and the
** cached decoder state on it. Every slot is cleared before the first
** release, which may be h's last and free it, name and all. */
static void conn_release(GptConn *c, GptModel *h) {
  int nRef = 0;
  if (c->pStateModel == h) {
    gpt_state_free(c->pState);
    c->pState = 0;
    c->nStateTok = 0;
    c->pStateModel = 0;
    nRef++;
  }
  for (int i = 0; i < CONN_MODELS; i++) {
    if (c->aHeld[i] == h) {
      c->aHeld[i] = 0;
      nRef++;
    }
  }
  while (nRef-- > 0) gptext_model_release(h);
}

void gptext_conn_forget(GptConn *pConn, const char *zName) {
  if (!pConn || !zName) return;
  for (int i = 0; i < CONN_MODELS; i++) {
    if (pConn->aHeld[i] && strcmp(pConn->aHeld[i]->zName, zName) == 0)
      conn_release(pConn, pConn->aHeld[i]);
  }
  if (pConn->pStateModel && strcmp(pConn->pStateModel->zName, zName) == 0)
    conn_release(pConn, pConn->pStateModel);
}

/* Frees the connection's state when it closes: the cached decoder state and
** its references to models, which frees them unless another connection of
** the process still uses them. */
static void conn_destroy(void *p) {
  GptConn *c = (GptConn *)p;
  gpt_state_free(c->pState);
  sqlite3_free(c->aStateTok);
  gptext_model_release(c->pStateModel);
  for (int i = 0; i < CONN_MODELS; i++) gptext_model_release(c->aHeld[i]);
  sqlite3_free(c);
}

/* Reads the config JSON of a gpt_models row into c, checking each value's
** type before it is used. */
static int read_config(sqlite3 *db, const char *zFunc, const char *zName,
                       GPTConfig *c, int *pTied, char **pzErr) {
  static const char *azKey[] = {"n_layer", "n_head", "n_embd", "n_ctx", "vocab_size"};
  int *aOut[] = {&c->n_layer, &c->n_head, &c->n_embd, &c->n_ctx, &c->vocab_size};
  sqlite3_stmt *p = 0;
  int rc;
  /* Llama-family models keep Hugging Face's keys (ext/config.c) */
  rc = sqlite3_prepare_v2(db, "SELECT config FROM main.gpt_models WHERE name = ?1 AND "
                          "json_valid(config) AND json_type(config, '$.model_type') = 'text' "
                          "AND json_extract(config, '$.model_type') <> 'gpt2'", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
  rc = sqlite3_step(p);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) goto sql_error;
  if (rc == SQLITE_ROW) {
    char zMsg[256] = "";
    int bTied = 0;
    rc = gptext_config_read(db, (const char *)sqlite3_column_text(p, 0),
                            gptext_column_bytes(p, 0), c, &bTied, zMsg, sizeof(zMsg));
    *pTied = bTied;
    /* a statement of the reader failed (an interrupt): SQLite's message */
    if (rc != SQLITE_OK && (rc != SQLITE_ERROR || !zMsg[0])) goto sql_error;
    if (rc != SQLITE_OK) {
      gptext_set_error(pzErr, "%s: model '%s': %s%s", zFunc, zName,
                       strncmp(zMsg, "config ", 7) == 0 ? "" : "config ", zMsg);
      rc = SQLITE_ERROR;
    }
    goto done;
  }
  sqlite3_finalize(p);
  p = 0;
  rc = sqlite3_prepare_v2(db,
      "SELECT json_valid(config) AND json_type(config) = 'object', "
      " json_type(config, '$.n_layer'), json_extract(config, '$.n_layer'),"
      " json_type(config, '$.n_head'), json_extract(config, '$.n_head'),"
      " json_type(config, '$.n_embd'), json_extract(config, '$.n_embd'),"
      " json_type(config, '$.n_ctx'), json_extract(config, '$.n_ctx'),"
      " json_type(config, '$.vocab_size'), json_extract(config, '$.vocab_size'),"
      " json_type(config, '$.layer_norm_epsilon'), json_extract(config, '$.layer_norm_epsilon')"
      " FROM main.gpt_models WHERE name = ?1 AND json_valid(config)"
      " UNION ALL SELECT 0,0,0,0,0,0,0,0,0,0,0,0,0 FROM main.gpt_models WHERE name = ?1"
      " AND NOT json_valid(config)", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
  rc = sqlite3_step(p);
  if (rc != SQLITE_ROW) {
    if (rc == SQLITE_DONE) {
      gptext_set_error(pzErr, "%s: no model named '%s'", zFunc, zName);
      rc = SQLITE_ERROR;
      goto done;
    }
    goto sql_error;
  }
  if (!sqlite3_column_int(p, 0)) {
    gptext_set_error(pzErr, "%s: model '%s': gpt_models.config is not a JSON object", zFunc, zName);
    rc = SQLITE_ERROR;
    goto done;
  }
  for (int i = 0; i < 5; i++) {
    static const int aMax[] = {GPT_MAX_LAYER, GPT_MAX_HEAD, GPT_MAX_EMBD, GPT_MAX_CTX,
                               GPT_MAX_VOCAB};
    const char *zType = (const char *)sqlite3_column_text(p, 1 + 2 * i);
    sqlite3_int64 v = sqlite3_column_int64(p, 2 + 2 * i);
    if (!zType || strcmp(zType, "integer") != 0) {
      gptext_set_error(pzErr, "%s: model '%s': config %s must be an integer", zFunc, zName, azKey[i]);
      rc = SQLITE_ERROR;
      goto done;
    }
    if (v < -1000000000 || v > 1000000000) { /* past an int: gpt_config_check cannot say */
      gptext_set_error(pzErr, "%s: model '%s': config %s is %s, expected 1 to %d", zFunc, zName,
                       azKey[i], (const char *)sqlite3_column_text(p, 2 + 2 * i), aMax[i]);
      rc = SQLITE_ERROR;
      goto done;
    }
    *aOut[i] = (int)v;
  }
  {
    const char *zType = (const char *)sqlite3_column_text(p, 11);
    c->ln_eps = 1e-5;
    if (zType) {
      if (strcmp(zType, "real") && strcmp(zType, "integer")) {
        gptext_set_error(pzErr, "%s: model '%s': config layer_norm_epsilon must be a number",
                         zFunc, zName);
        rc = SQLITE_ERROR;
        goto done;
      }
      c->ln_eps = sqlite3_column_double(p, 12);
    }
  }
  {
    char zMsg[200];
    if (gpt_config_check(c, zMsg, sizeof(zMsg))) {
      gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, zName, zMsg);
      rc = SQLITE_ERROR;
      goto done;
    }
  }
  rc = SQLITE_OK;
  goto done;
sql_error:
  gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, zName, sqlite3_errmsg(db));
  rc = gptext_sql_code(db, rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_ERROR : rc);
done:
  sqlite3_finalize(p);
  return rc;
}

/* Reads the model's gpt_tokenizer row into *pzConfig (sqlite3_malloc'd), or
** leaves it NULL when there is none: a GPT-2 model, or a database from
** before the table existed. */
static int read_tokenizer_row(sqlite3 *db, const char *zFunc, GptModel *m, char **pzConfig,
                              char **pzErr) {
  sqlite3_stmt *p = 0;
  int rc = sqlite3_prepare_v2(db, "SELECT config FROM main.gpt_tokenizer WHERE model = ?1", -1, &p, 0);
  *pzConfig = 0;
  if (rc != SQLITE_OK) {
    if (strncmp(sqlite3_errmsg(db), "no such table", 13) == 0) return SQLITE_OK;
    gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, sqlite3_errmsg(db));
    return SQLITE_ERROR;
  }
  sqlite3_bind_text(p, 1, m->zName, -1, SQLITE_STATIC);
  rc = sqlite3_step(p);
  if (rc == SQLITE_ROW) {
    if (sqlite3_column_type(p, 0) != SQLITE_TEXT) {
      gptext_set_error(pzErr, "%s: model '%s': gpt_tokenizer.config is not text", zFunc,
                       m->zName);
      rc = SQLITE_ERROR;
    } else {
      *pzConfig = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(p, 0));
      rc = *pzConfig ? SQLITE_OK : SQLITE_NOMEM;
    }
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_OK;
  } else { /* SQLite's code goes on (an interrupt, SQLITE_BUSY, ...) */
    gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, sqlite3_errmsg(db));
    rc = gptext_sql_code(db, rc);
  }
  sqlite3_finalize(p);
  return rc;
}

/* The scalar fields of a gpt_tokenizer config, checked: the tokenizer's
** size, options and the ids and texts the model keeps. */
typedef struct TokConfig {
  int nTok;                 /* size: ids 0..nTok-1 */
  unsigned opts;            /* TOK_OPT_* */
  int bos, eos, bAddBos;
  int bBosWhole, bEosWhole; /* the text non-empty, with no NUL: checked against its id */
  char *zBos, *zEos, *zTemplate; /* sqlite3_malloc'd or NULL */
  int aStop[GPT_MAX_STOP_IDS];
  int nStop;
} TokConfig;

/* True when column i of p is text of at least one byte and no NUL. */
static int column_text_whole(sqlite3_stmt *p, int i) {
  const char *z = (const char *)sqlite3_column_text(p, i);
  int n = sqlite3_column_bytes(p, i);
  return z && n > 0 && memchr(z, 0, (size_t)n) == 0;
}

/* Checks a gpt_tokenizer config and reads its scalar fields into c. Every
** value is checked for type and range before use: the row is data. */
static int read_tokenizer_config(sqlite3 *db, const char *zFunc, GptModel *m,
                                 const char *zConfig, TokConfig *c, char **pzErr) {
  sqlite3_stmt *p = 0;
  const char *zWhat = 0;
  int rc = sqlite3_prepare_v2(db,
      "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) END = 'object',"
      " CASE WHEN json_valid(?1) AND json_type(?1) = 'object' THEN json_array("
      "  json_extract(?1, '$.type'), json_type(?1, '$.size'), json_extract(?1, '$.size'),"
      "  json_type(?1, '$.normalizer'), json_extract(?1, '$.normalizer'),"
      "  json_type(?1, '$.ignore_merges'), json_type(?1, '$.pre_tokenizer'),"
      "  json_array_length(?1, '$.pre_tokenizer'), json_type(?1, '$.added_tokens'),"
      "  json_array_length(?1, '$.added_tokens'), json_type(?1, '$.bos_id'),"
      "  json_extract(?1, '$.bos_id'), json_type(?1, '$.eos_id'), json_extract(?1, '$.eos_id'),"
      "  json_type(?1, '$.bos'), json_type(?1, '$.eos'), json_type(?1, '$.add_bos'),"
      "  json_type(?1, '$.stop_ids'), json_array_length(?1, '$.stop_ids'),"
      "  json_type(?1, '$.chat_template'),"
      "  (SELECT count(*) FROM json_each(?1, '$.stop_ids') WHERE type <> 'integer'"
      "   OR value < 0 OR value >= json_extract(?1, '$.size'))) END,"
      " CASE WHEN json_valid(?1) THEN json_extract(?1, '$.bos') END,"
      " CASE WHEN json_valid(?1) THEN json_extract(?1, '$.eos') END,"
      " CASE WHEN json_valid(?1) THEN json_extract(?1, '$.chat_template') END",
      -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, zConfig, -1, SQLITE_STATIC);
  rc = sqlite3_step(p);
  if (rc != SQLITE_ROW) goto sql_error;
  if (!sqlite3_column_int(p, 0)) {
    zWhat = "config is not a JSON object";
    goto bad;
  }
  {
    /* the checked fields, as one JSON array to read by index */
    sqlite3_stmt *q = 0;
    rc = sqlite3_prepare_v2(db, "SELECT key, value FROM json_each(?1)", -1, &q, 0);
    if (rc != SQLITE_OK) goto sql_error;
    sqlite3_bind_text(q, 1, (const char *)sqlite3_column_text(p, 1), -1, SQLITE_STATIC);
    const char *az[21] = {0};
    sqlite3_int64 ai[21] = {0};
    char *azCopy[21] = {0};
    int k = 0, rcStep = SQLITE_ROW;
    while (k < 21 && (rcStep = sqlite3_step(q)) == SQLITE_ROW) {
      if (sqlite3_column_type(q, 1) == SQLITE_TEXT) {
        azCopy[k] = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(q, 1));
        az[k] = azCopy[k];
      }
      ai[k] = sqlite3_column_int64(q, 1);
      k++;
    }
    sqlite3_finalize(q);
#define TYPE_IS(i, z) (az[i] && strcmp(az[i], z) == 0)
#define ABSENT(i) (!az[i] || TYPE_IS(i, "null"))
    if (k != 21 && rcStep != SQLITE_DONE) {
      /* an interrupt (or SQLITE_NOMEM) ended the read: SQLite's code goes on */
      for (int i = 0; i < 21; i++) sqlite3_free(azCopy[i]);
      rc = rcStep;
      goto sql_error;
    }
    if (k != 21) zWhat = "out of memory";
    else if (!TYPE_IS(0, "bpe")) zWhat = "type must be \"bpe\"";
    else if (!TYPE_IS(1, "integer") || ai[2] < 256 || ai[2] > m->cfg.vocab_size)
      zWhat = "size must be an integer from 256 to the config's vocab_size";
    else if (!ABSENT(3) && !(TYPE_IS(3, "text") && TYPE_IS(4, "NFC")))
      zWhat = "normalizer must be \"NFC\" or null";
    else if (!ABSENT(5) && !TYPE_IS(5, "true") && !TYPE_IS(5, "false"))
      zWhat = "ignore_merges must be true or false";
    else if (!TYPE_IS(6, "array") || ai[7] > TOK_MAX_SPLITS)
      zWhat = "pre_tokenizer must be an array of at most 8 stages";
    else if (!ABSENT(8) && (!TYPE_IS(8, "array") || ai[9] > TOK_MAX_ADDED))
      zWhat = "added_tokens must be an array of at most 65536 tokens";
    else if (!ABSENT(10) && (!TYPE_IS(10, "integer") || ai[11] < 0 || ai[11] >= ai[2]))
      zWhat = "bos_id must be null or a token id below size";
    else if (!ABSENT(12) && (!TYPE_IS(12, "integer") || ai[13] < 0 || ai[13] >= ai[2]))
      zWhat = "eos_id must be null or a token id below size";
    else if ((!ABSENT(14) && !TYPE_IS(14, "text")) || (!ABSENT(15) && !TYPE_IS(15, "text")) ||
             sqlite3_column_bytes(p, 2) > TOK_MAX_ADDED_LEN ||
             sqlite3_column_bytes(p, 3) > TOK_MAX_ADDED_LEN)
      zWhat = "bos and eos must be null or strings of at most 1024 bytes";
    else if (!ABSENT(16) && !TYPE_IS(16, "true") && !TYPE_IS(16, "false"))
      zWhat = "add_bos must be true or false";
    else if (TYPE_IS(16, "true") && ABSENT(10))
      zWhat = "add_bos is true but bos_id is null";
    else if (!ABSENT(17) && (!TYPE_IS(17, "array") || ai[18] > GPT_MAX_STOP_IDS || ai[20] != 0))
      zWhat = "stop_ids must be an array of at most 8 token ids below size";
    else if (!ABSENT(19) && (!TYPE_IS(19, "text") ||
                             sqlite3_column_bytes(p, 4) > GPT_MAX_CHAT_TEMPLATE))
      zWhat = "chat_template must be null or a string of at most 1 MB";
    if (!zWhat) {
      c->nTok = (int)ai[2];
      c->opts = TOK_OPT_HF | (ABSENT(3) ? 0 : TOK_OPT_NFC) |
                (TYPE_IS(5, "true") ? TOK_OPT_IGNORE_MERGES : 0);
      c->bos = ABSENT(10) ? -1 : (int)ai[11];
      c->eos = ABSENT(12) ? -1 : (int)ai[13];
      c->bAddBos = TYPE_IS(16, "true");
      /* earlier imports stored a token with a NUL as "" or up to the NUL */
      c->bBosWhole = !ABSENT(14) && column_text_whole(p, 2);
      c->bEosWhole = !ABSENT(15) && column_text_whole(p, 3);
      if (!ABSENT(14)) c->zBos = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(p, 2));
      if (!ABSENT(15)) c->zEos = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(p, 3));
      if (!ABSENT(19))
        c->zTemplate = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(p, 4));
      if ((!ABSENT(14) && !c->zBos) || (!ABSENT(15) && !c->zEos) ||
          (!ABSENT(19) && !c->zTemplate))
        zWhat = "out of memory";
    }
#undef TYPE_IS
#undef ABSENT
    for (int i = 0; i < 21; i++) sqlite3_free(azCopy[i]);
  }
  if (zWhat) goto bad;
  sqlite3_finalize(p);
  p = 0;
  rc = sqlite3_prepare_v2(db, "SELECT value FROM json_each(?1, '$.stop_ids')", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, zConfig, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(p)) == SQLITE_ROW && c->nStop < GPT_MAX_STOP_IDS)
    c->aStop[c->nStop++] = sqlite3_column_int(p, 0); /* checked above */
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) goto sql_error;
  rc = SQLITE_OK;
  goto done;
bad:
  gptext_set_error(pzErr, "%s: model '%s': gpt_tokenizer: %s", zFunc, m->zName, zWhat);
  rc = SQLITE_ERROR;
  goto done;
sql_error:
  gptext_set_error(pzErr, "%s: model '%s': gpt_tokenizer: %s", zFunc, m->zName,
                   sqlite3_errmsg(db));
  rc = gptext_sql_code(db, rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_ERROR : rc);
done:
  sqlite3_finalize(p);
  return rc;
}

/* True when z is the text of token id: its bytes, or their byte-level
** spelling (tokenizer_config.json names a vocabulary token as
** tokenizer.json spells it, "\xc4\xa0the" for " the"). */
static int token_text_is(const GPTTokenizer *t, int id, const char *z) {
  int nTok = 0;
  const char *zTok = tok_token_bytes(t, id, &nTok);
  size_t n = strlen(z);
  char zSpelt[2 * TOK_MAX_ADDED_LEN + 1];
  if (!zTok) return 0;
  if ((size_t)nTok == n && memcmp(zTok, z, n) == 0) return 1;
  /* z is at most TOK_MAX_ADDED_LEN bytes: a longer spelling is not z */
  int nSpelt = tok_byte_level(zTok, nTok, zSpelt, (int)sizeof(zSpelt));
  return nSpelt < (int)sizeof(zSpelt) && (size_t)nSpelt == n && memcmp(zSpelt, z, n) == 0;
}

/* Gives the tokenizer the pre-tokenizer stages and added tokens of a
** gpt_tokenizer config. The engine checks each (patterns compile within
** their size limit; an added token's content is its vocabulary token). */
static int apply_tokenizer_config(sqlite3 *db, const char *zFunc, GptModel *m,
                                  const char *zConfig, const TokConfig *c, GPTTokenizer *t,
                                  char **pzErr) {
  sqlite3_stmt *p = 0;
  char zMsg[256];
  int rc;
  if (tok_set_options(t, c->opts, zMsg, sizeof(zMsg))) goto tok_error;
  rc = sqlite3_prepare_v2(db,
      "SELECT key, json_type(value, '$.regex'), json_extract(value, '$.regex'),"
      " json_type(value, '$.string'), json_extract(value, '$.string'), type"
      " FROM json_each(?1, '$.pre_tokenizer')", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, zConfig, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    const char *zR = (const char *)sqlite3_column_text(p, 1);
    const char *zS = (const char *)sqlite3_column_text(p, 3);
    int bRegex = zR && strcmp(zR, "text") == 0, bString = zS && strcmp(zS, "text") == 0;
    if (bRegex == bString) {
      gptext_set_error(pzErr, "%s: model '%s': gpt_tokenizer: pre_tokenizer[%d] must be "
                       "{\"regex\": text} or {\"string\": text}", zFunc, m->zName,
                       sqlite3_column_int(p, 0));
      rc = SQLITE_ERROR;
      goto done;
    }
    int iCol = bRegex ? 2 : 4;
    if (tok_add_split(t, (const char *)sqlite3_column_text(p, iCol),
                      (size_t)gptext_column_bytes(p, iCol), !bRegex, zMsg, sizeof(zMsg)))
      goto tok_error;
  }
  if (rc != SQLITE_DONE) goto sql_error;
  sqlite3_finalize(p);
  rc = sqlite3_prepare_v2(db,
      "SELECT key, json_type(value, '$.id'), json_extract(value, '$.id'),"
      " json_type(value, '$.content'), json_extract(value, '$.content'),"
      " json_type(value, '$.special') FROM json_each(?1, '$.added_tokens')", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, zConfig, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    const char *zIdType = (const char *)sqlite3_column_text(p, 1);
    const char *zType = (const char *)sqlite3_column_text(p, 3);
    const char *zSpecial = (const char *)sqlite3_column_text(p, 5);
    sqlite3_int64 id = sqlite3_column_int64(p, 2);
    if (!zIdType || strcmp(zIdType, "integer") || id < 0 || id >= c->nTok || !zType ||
        strcmp(zType, "text") || !zSpecial ||
        (strcmp(zSpecial, "true") && strcmp(zSpecial, "false"))) {
      gptext_set_error(pzErr, "%s: model '%s': gpt_tokenizer: added_tokens[%d] must be "
                       "{\"id\": 0 to %d, \"content\": text, \"special\": true or false}",
                       zFunc, m->zName, sqlite3_column_int(p, 0), c->nTok - 1);
      rc = SQLITE_ERROR;
      goto done;
    }
    if (tok_add_added(t, (int)id, (const char *)sqlite3_column_text(p, 4),
                      gptext_column_bytes(p, 4), strcmp(zSpecial, "true") == 0, zMsg,
                      sizeof(zMsg)))
      goto tok_error;
  }
  if (rc != SQLITE_DONE) goto sql_error;
  rc = SQLITE_OK;
  goto done;
tok_error:
  gptext_set_error(pzErr, "%s: model '%s': tokenizer: %s", zFunc, m->zName, zMsg);
  /* the tokenizer's allocation failures are SQLite's out-of-memory too */
  rc = strncmp(zMsg, "out of memory", 13) == 0 ? SQLITE_NOMEM : SQLITE_ERROR;
  goto done;
sql_error:
  gptext_set_error(pzErr, "%s: model '%s': gpt_tokenizer: %s", zFunc, m->zName,
                   sqlite3_errmsg(db));
  rc = gptext_sql_code(db, rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_ERROR : rc);
done:
  sqlite3_finalize(p);
  return rc;
}

/* Builds the tokenizer from gpt_vocab and gpt_merges, with the gpt_tokenizer
** row of a tokenizer.json model when it has one. Without that row the model
** is GPT-2's kind, loaded exactly as before the table existed: gpt_vocab
** covers the config's vocab_size. With it, gpt_vocab covers the row's size,
** which may be smaller (ids from there up have no token). */
static int load_tokenizer(sqlite3 *db, const char *zFunc, GptModel *m, char **pzErr) {
  sqlite3_stmt *p = 0;
  char zMsg[256];
  int rc, n = 0, nTok;
  GPTTokenizer *t = 0;
  char *zConfig = 0;
  TokConfig tc;
  memset(&tc, 0, sizeof(tc));
  rc = read_tokenizer_row(db, zFunc, m, &zConfig, pzErr);
  if (rc == SQLITE_OK && zConfig) rc = read_tokenizer_config(db, zFunc, m, zConfig, &tc, pzErr);
  if (rc != SQLITE_OK) goto done;
  nTok = zConfig ? tc.nTok : m->cfg.vocab_size;
  /* the row count first: tok_new() allocates by the tokenizer's size */
  rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM main.gpt_vocab WHERE model = ?1", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, m->zName, -1, SQLITE_STATIC);
  rc = sqlite3_step(p);
  if (rc != SQLITE_ROW) goto sql_error;
  if (sqlite3_column_int64(p, 0) != nTok) {
    gptext_set_error(pzErr, "%s: model '%s': gpt_vocab has %lld tokens, expected %d (%s)",
                     zFunc, m->zName, sqlite3_column_int64(p, 0), nTok,
                     zConfig ? "gpt_tokenizer size" : "config vocab_size");
    rc = SQLITE_ERROR;
    goto done;
  }
  sqlite3_finalize(p);
  p = 0;
  t = tok_new(nTok);
  if (!t) {
    rc = SQLITE_NOMEM;
    goto done;
  }
  rc = sqlite3_prepare_v2(db, "SELECT token_id, token FROM main.gpt_vocab WHERE model = ?1", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, m->zName, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    sqlite3_int64 id = sqlite3_column_int64(p, 0);
    const char *z = (const char *)sqlite3_column_text(p, 1);
    if (sqlite3_column_type(p, 0) != SQLITE_INTEGER || id < 0 || id >= nTok || !z) {
      gptext_set_error(pzErr, "%s: model '%s': gpt_vocab token_id %s is outside the "
                       "vocabulary of %d (%s)", zFunc, m->zName,
                       sqlite3_column_text(p, 0), nTok,
                       zConfig ? "gpt_tokenizer size" : "config vocab_size");
      rc = SQLITE_ERROR;
      goto done;
    }
    if (tok_set_token(t, (int)id, z, sqlite3_column_bytes(p, 1), zMsg, sizeof(zMsg))) goto tok_error;
    n++;
  }
  if (rc != SQLITE_DONE) goto sql_error;
  if (n != nTok) {
    gptext_set_error(pzErr, "%s: model '%s': gpt_vocab has %d tokens, expected %d (%s)",
                     zFunc, m->zName, n, nTok,
                     zConfig ? "gpt_tokenizer size" : "config vocab_size");
    rc = SQLITE_ERROR;
    goto done;
  }
  sqlite3_finalize(p);
  rc = sqlite3_prepare_v2(db, "SELECT rank, left, right FROM main.gpt_merges WHERE model = ?1 "
                          "ORDER BY rank", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, m->zName, -1, SQLITE_STATIC);
  n = 0;
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    const char *zL = (const char *)sqlite3_column_text(p, 1);
    const char *zR = (const char *)sqlite3_column_text(p, 2);
    if (!zL || !zR) {
      gptext_set_error(pzErr, "%s: model '%s': gpt_merges rank %lld has a NULL side", zFunc,
                       m->zName, sqlite3_column_int64(p, 0));
      rc = SQLITE_ERROR;
      goto done;
    }
    if (tok_add_merge(t, n++, zL, sqlite3_column_bytes(p, 1), zR, sqlite3_column_bytes(p, 2),
                      zMsg, sizeof(zMsg)))
      goto tok_error;
  }
  if (rc != SQLITE_DONE) goto sql_error;
  sqlite3_finalize(p);
  p = 0;
  /* its code goes on: an interrupt of one of its statements stays one */
  if (zConfig && (rc = apply_tokenizer_config(db, zFunc, m, zConfig, &tc, t, pzErr)) != SQLITE_OK)
    goto done;
  if (tok_finish(t, zMsg, sizeof(zMsg))) goto tok_error;
  int bBadBos = tc.bBosWhole && tc.bos >= 0 && !token_text_is(t, tc.bos, tc.zBos);
  int bBadEos = tc.bEosWhole && tc.eos >= 0 && !token_text_is(t, tc.eos, tc.zEos);
  if (zConfig && (bBadBos || bBadEos)) {
    /* a template's bos_token would spell another token than the one the
    ** encoder adds, or than the one generation stops at */
    gptext_set_error(pzErr, "%s: model '%s': gpt_tokenizer: %s \"%s\" is not the text of "
                     "%s %d", zFunc, m->zName, bBadBos ? "bos" : "eos",
                     bBadBos ? tc.zBos : tc.zEos, bBadBos ? "bos_id" : "eos_id",
                     bBadBos ? tc.bos : tc.eos);
    rc = SQLITE_ERROR;
    goto done;
  }
  m->pTok = t;
  m->eot = tok_eot_id(t);
  if (zConfig) {
    m->bos = tc.bos;
    m->bAddBos = tc.bAddBos;
    m->zBosText = tc.zBos;
    m->zEosText = tc.zEos;
    m->zChatTemplate = tc.zTemplate;
    tc.zBos = tc.zEos = tc.zTemplate = 0;
    memcpy(m->aStopId, tc.aStop, sizeof(int) * (size_t)tc.nStop);
    m->nStopId = tc.nStop;
  } else if (m->eot >= 0) {
    m->aStopId[m->nStopId++] = m->eot;
    /* GPT-2's tokenizer (vocab.json and merges.txt) has <|endoftext|> as
    ** its bos and eos token, as Hugging Face's GPT2Tokenizer does: a
    ** template given for it renders them */
    m->zBosText = sqlite3_mprintf("<|endoftext|>");
    m->zEosText = sqlite3_mprintf("<|endoftext|>");
    if (!m->zBosText || !m->zEosText) {
      t = 0; /* m->pTok owns it, freed with the entry */
      rc = SQLITE_NOMEM;
      goto done;
    }
  }
  t = 0;
  rc = SQLITE_OK;
  goto done;
tok_error:
  gptext_set_error(pzErr, "%s: model '%s': tokenizer: %s", zFunc, m->zName, zMsg);
  /* the tokenizer's allocation failures are SQLite's out-of-memory too */
  rc = strncmp(zMsg, "out of memory", 13) == 0 ? SQLITE_NOMEM : SQLITE_ERROR;
  goto done;
sql_error:
  /* SQLite's code goes on (SQLITE_BUSY, SQLITE_NOMEM, SQLITE_IOERR_READ, ...) */
  gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, sqlite3_errmsg(db));
  rc = gptext_sql_code(db, rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_ERROR : rc);
done:
  sqlite3_finalize(p);
  tok_free(t);
  sqlite3_free(zConfig);
  sqlite3_free(tc.zBos);
  sqlite3_free(tc.zEos);
  sqlite3_free(tc.zTemplate);
  return rc;
}

/* Internal: the rows changed while they were being loaded; try again. */
#define MODEL_RETRY SQLITE_SCHEMA

/* Reads every tensor into a new weight arena with incremental BLOB I/O.
** Pass 0 checks every row before anything is allocated (the arena is sized
** by the config, which is only as trustworthy as the rows that match it):
** each row's name, and each tensor's rows, whole or in parts (ext/tensors.c:
** dtype, shape and byte length against the config). Pass 1 reads them,
** checking them again. 2-D weights stored as f16 or a block format (q8_0,
** q4_0, q4_k, q6_k) stay so in memory (the forward pass reads them as they
** are); everything else is held as f32. Rows are read in chunks of about 1
** MB: whole blocks, and for Conv1D weights whole stored rows, which the
** engine transposes by tiles. */
static int load_weights(sqlite3 *db, const char *zFunc, GptModel *m, sqlite3_int64 stamp,
                        char **pzErr) {
  sqlite3_stmt *pSnapshot = 0;
  GptTensorRows rows;
  GPTModel *net = 0;
  char zMsg[256];
  char *zRowsMsg = 0;
  unsigned char *aBuf = 0;
  int *aDtype = 0;  /* memory dtype of each tensor */
  const int nChunk = 1 << 20;
  int rc, hasLmHead = 0, nTensor;
  int64_t nRows = 0, nRowsOfTensors = 0;

  memset(&rows, 0, sizeof(rows));
  /* one snapshot for both passes: no commit lands between two tensors (the
  ** caller compares the stamp it resolved with the one after the load) */
  rc = gptext_snapshot_begin(db, m->zName, &pSnapshot);
  if (rc != SQLITE_OK) goto sql_error;
  if (!pSnapshot || sqlite3_column_int64(pSnapshot, 0) != stamp) {
    rc = MODEL_RETRY; /* changed since the caller resolved it */
    goto done;
  }
  rc = gptext_lm_head_of(db, m, zFunc, &hasLmHead, pzErr);
  if (rc != SQLITE_OK) {
    if (!*pzErr) goto sql_error;
    goto done;
  }
  nTensor = gpt_n_tensors(&m->cfg, hasLmHead);
  aDtype = sqlite3_malloc64(sizeof(int) * (size_t)nTensor);
  if (!aDtype) { rc = SQLITE_NOMEM; goto done; }
  rc = gptext_tensor_names_check(db, m->zName, &m->cfg, hasLmHead, &nRows, &zRowsMsg);
  if (rc != SQLITE_OK) {
    if (!zRowsMsg) goto sql_error;
    gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, zRowsMsg);
    goto done;
  }
  if (nRows == 0) { /* gpt_train_tokenizer's models, or every row deleted */
    gptext_set_error(pzErr, "%s: model '%s' has no weights in gpt_tensors, only a "
                     "tokenizer (gpt_train makes a model with it: its \"tokenizer\" option)",
                     zFunc, m->zName);
    rc = SQLITE_ERROR;
    goto done;
  }
  for (int iPass = 0; iPass < 2; iPass++) {
    for (int idx = 0; idx < nTensor; idx++) {
      GPTTensorInfo info;
      gpt_tensor_info(&m->cfg, hasLmHead, idx, &info);
      rc = gptext_tensor_open(db, m->zName, &info, &rows, &zRowsMsg);
      if (rc != SQLITE_OK) {
        if (!zRowsMsg) goto sql_error;
        gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, zRowsMsg);
        goto done;
      }
      int dtype = rows.dtype;
      int dt = info.ndim == 2 && (dtype == GPT_F16 || gpt_dtype_block(dtype, 0)) ? dtype : GPT_F32;
      if (iPass == 0) {
        aDtype[idx] = dt;
        nRowsOfTensors += rows.nPart;
        gptext_tensor_close(&rows);
        continue;
      }
      if (dt != aDtype[idx]) {
        gptext_set_error(pzErr, "%s: model '%s': tensor %s changed while it was loading",
                         zFunc, m->zName, info.name);
        rc = SQLITE_ERROR;
        goto done;
      }
      /* nPer values a chunk: whole blocks (34 bytes for 32 values in q8_0),
      ** or whole stored rows of a Conv1D weight where a row fits */
      int64_t nPer;
      int nBlockBytes = 0, nBlock = gpt_dtype_block(dtype, &nBlockBytes);
      if (nBlock) {
        nPer = (int64_t)(nChunk / nBlockBytes) * nBlock;
      } else {
        nPer = nChunk / gpt_dtype_size(dtype);
        if (info.transposed && nPer >= info.shape[1]) nPer -= nPer % info.shape[1];
      }
      for (int64_t e = 0; e < info.n_elem; e += nPer) {
        int64_t n = info.n_elem - e < nPer ? info.n_elem - e : nPer;
        int64_t off = nBlock ? e / nBlock * nBlockBytes : e * gpt_dtype_size(dtype);
        int64_t len = nBlock ? n / nBlock * nBlockBytes : n * gpt_dtype_size(dtype);
        rc = gptext_tensor_read(&rows, aBuf, (int)len, off);
        if (rc != SQLITE_OK) goto sql_error;
        if (gpt_model_load(net, idx, dtype, e, n, aBuf, zMsg, sizeof(zMsg))) {
          gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, zMsg);
          rc = SQLITE_ERROR;
          goto done;
        }
      }
      gptext_tensor_close(&rows);
      if (gptext_interrupted(db)) { rc = SQLITE_INTERRUPT; goto done; }
    }
    if (iPass == 0) {
      /* every row is one tensor's (the names above), and each tensor's rows
      ** were all taken: none is left over */
      if (nRowsOfTensors != nRows) {
        gptext_set_error(pzErr, "%s: model '%s': gpt_tensors holds %lld rows for its %lld "
                         "tensor rows and parts", zFunc, m->zName, (long long)nRows,
                         (long long)nRowsOfTensors);
        rc = SQLITE_ERROR;
        goto done;
      }
      net = gpt_model_new_dtypes(&m->cfg, hasLmHead, aDtype, zMsg, sizeof(zMsg));
      if (!net) {
        gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, zMsg);
        rc = SQLITE_NOMEM;
        goto done;
      }
      aBuf = sqlite3_malloc64(nChunk);
      if (!aBuf) { rc = SQLITE_NOMEM; goto done; }
    }
  }
  if (gpt_model_ready(net)) {
    gptext_set_error(pzErr, "%s: model '%s': out of memory readying its weights", zFunc, m->zName);
    rc = SQLITE_NOMEM;
    goto done;
  }
  if (m->pTok) gpt_model_set_live_vocab(net, tok_vocab_size(m->pTok));
  m->pNet = net;
  net = 0;
  rc = SQLITE_OK;
  goto done;
sql_error:
  /* SQLite's code goes on (SQLITE_BUSY, SQLITE_NOMEM, SQLITE_IOERR_READ, ...) */
  gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, sqlite3_errmsg(db));
  rc = gptext_sql_code(db, rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_ERROR : rc);
done:
  gptext_tensor_close(&rows);
  sqlite3_finalize(pSnapshot);
  sqlite3_free(zRowsMsg);
  sqlite3_free(aBuf);
  sqlite3_free(aDtype);
  gpt_model_free(net);
  return rc;
}

/* The UTF-8 length of v's text, v converted first. sqlite3_value_bytes
** alone gives a BLOB's own length, and sqlite3_value_text then converts the
** BLOB from a UTF-16 database's encoding to another length: a BLOB prompt in
** such a database was read past its text (uninitialised bytes in gpt_tokens'
** results), or cut short, depending on which argument the compiler took first. */
int gptext_value_bytes(sqlite3_value *v) {
  sqlite3_value_text(v);
  return sqlite3_value_bytes(v);
}

/* gptext_value_bytes of column i of p's row. */
int gptext_column_bytes(sqlite3_stmt *p, int i) {
  sqlite3_column_text(p, i);
  return sqlite3_column_bytes(p, i);
}

/* Whether zName reads as schema.name, which a user may take for a way to
** name a model in that database: 1 for main ("main.m"), 2 for another
** database of db ("aux.m"), else 0. */
static int names_schema(sqlite3 *db, const char *zName) {
  const char *zDot = strchr(zName, '.');
  if (!zDot || zDot == zName || zDot - zName > 200) return 0;
  char zSchema[201];
  memcpy(zSchema, zName, (size_t)(zDot - zName));
  zSchema[zDot - zName] = 0;
  if (sqlite3_stricmp(zSchema, "main") == 0) return 1;
  return sqlite3_db_filename(db, zSchema) != 0 ? 2 : 0;
}

/* Picks the model: the named one, or the only one in the database. */
static int resolve_name(sqlite3 *db, const char *zFunc, const char *zName, char **pzOut,
                        sqlite3_int64 *pStamp, char **pzErr) {
  sqlite3_stmt *p = 0;
  int rc, n = 0;
  char *zList = 0;
  if (zName) {
    rc = sqlite3_prepare_v2(db, "SELECT name, stamp FROM main.gpt_models WHERE name = ?1", -1, &p, 0);
    if (rc == SQLITE_OK) sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
  } else {
    rc = sqlite3_prepare_v2(db, "SELECT name, stamp FROM main.gpt_models ORDER BY name", -1, &p, 0);
  }
  if (rc == SQLITE_ERROR && strstr(sqlite3_errmsg(db), "no such table")) {
    /* The tables do not exist yet: no models. (Any other failure, an
    ** interrupt during the prepare included, is reported as it is.) */
    sqlite3_finalize(p);
    p = 0;
    rc = SQLITE_DONE;
  }
  while (p && (rc = sqlite3_step(p)) == SQLITE_ROW) {
    /* a name that is no text, or holds a NUL, is found by no later lookup
    ** (that read as a model that kept changing: SQLITE_BUSY, "try again");
    ** the type is read first, as a conversion to text changes it */
    int eType = sqlite3_column_type(p, 0);
    const char *z = (const char *)sqlite3_column_text(p, 0);
    if (eType != SQLITE_TEXT || !z || (size_t)sqlite3_column_bytes(p, 0) != strlen(z)) {
      if (eType == SQLITE_TEXT && !z) {
        rc = SQLITE_NOMEM;
        break;
      }
      gptext_set_error(pzErr, "%s: gpt_models has a name that is %s; rename or drop that row",
                       zFunc, eType == SQLITE_TEXT ? "text with a NUL character" : "not text");
      sqlite3_finalize(p);
      sqlite3_free(zList);
      sqlite3_free(*pzOut);
      *pzOut = 0;
      return SQLITE_ERROR;
    }
    if (n == 0) {
      *pzOut = sqlite3_mprintf("%s", z ? z : "");
      *pStamp = sqlite3_column_int64(p, 1);
    }
    zList = sqlite3_mprintf("%z%s'%s'", zList, n ? ", " : "", z ? z : "");
    n++;
  }
  sqlite3_finalize(p);
  if (rc != SQLITE_DONE) {
    gptext_set_error(pzErr, "%s: %s", zFunc, sqlite3_errmsg(db));
    rc = gptext_sql_code(db, rc); /* SQLITE_BUSY, SQLITE_INTERRUPT, ... go on */
  } else if (n == 1) {
    rc = *pzOut ? SQLITE_OK : SQLITE_NOMEM;
  } else if (zName) {
    int iSchema = names_schema(db, zName);
    gptext_set_error(pzErr, "%s: no model named '%s' in gpt_models%s", zFunc, zName,
                     iSchema == 1 ? " (a model is named alone, without its database)"
                     : iSchema == 2 ? " (models are read from the main database only)" : "");
    rc = SQLITE_ERROR;
  } else if (n == 0) {
    gptext_set_error(pzErr, "%s: no model in this database; import one with "
                     "gpt_import(name, path)", zFunc);
    rc = SQLITE_ERROR;
  } else {
    gptext_set_error(pzErr, "%s: %d models in this database (%s); choose one with "
                     "'{\"model\": \"name\"}'", zFunc, n, zList);
    rc = SQLITE_ERROR;
  }
  sqlite3_free(zList);
  if (rc != SQLITE_OK) {
    sqlite3_free(*pzOut);
    *pzOut = 0;
  }
  return rc;
}

/* Remembers e in the connection's held slots (taking a reference), so the
** model stays loaded while the connection lives. Returns an entry whose last
** reference was the slot it replaced, for the caller to free after unlocking
** (the caller holds the mutex). */
static CacheEntry *conn_hold(GptConn *c, CacheEntry *e) {
  int iSlot = CONN_MODELS - 1;
  for (int i = 0; i < CONN_MODELS; i++) {
    CacheEntry *h = (CacheEntry *)c->aHeld[i];
    if (h == e) return 0;
    if (!h || h->bStale || strcmp(h->zKey, e->zKey) == 0) { iSlot = i; break; }
  }
  CacheEntry *pOld = (CacheEntry *)c->aHeld[iSlot];
  e->nRef++;
  c->aHeld[iSlot] = &e->model;
  if (pOld && --pOld->nRef == 0) {
    if (!pOld->bStale) cache_unlink(pOld);
    return pOld;
  }
  return 0;
}

/* The entry c holds for key zKey loaded from rows of stamp (with its
** weights when needWeights), or NULL. Under gCacheMutex. */
static CacheEntry *conn_held_copy(const GptConn *c, const char *zKey, sqlite3_int64 stamp,
                                  int needWeights) {
  if (!c) return 0;
  for (int i = 0; i < CONN_MODELS; i++) {
    CacheEntry *h = (CacheEntry *)c->aHeld[i];
    if (h && !h->bLoading && h->model.stamp == stamp && (!needWeights || h->model.pNet) &&
        strcmp(h->zKey, zKey) == 0)
      return h;
  }
  return 0;
}

/* True when the model's gpt_models.stamp is no longer 'stamp' (or its row is
** gone); false when it is, or when it cannot be read (e.g. interrupted). */
static int stamp_changed(sqlite3 *db, const char *zName, sqlite3_int64 stamp) {
  sqlite3_stmt *p = 0;
  if (gptext_snapshot_begin(db, zName, &p) != SQLITE_OK) return 0;
  int bChanged = !p || sqlite3_column_int64(p, 0) != stamp;
  sqlite3_finalize(p);
  return bChanged;
}


/* The busy timeout of db in milliseconds (PRAGMA busy_timeout), 0 when it
** has none or the pragma fails; -1 when main is in WAL mode, where readers
** never wait for a writer. */
static sqlite3_int64 busy_timeout_ms(sqlite3 *db) {
  sqlite3_stmt *p = 0;
  sqlite3_int64 ms = 0;
  if (sqlite3_prepare_v2(db, "SELECT (SELECT journal_mode FROM pragma_journal_mode) = 'wal', "
                         "(SELECT timeout FROM pragma_busy_timeout)", -1, &p, 0) == SQLITE_OK &&
      sqlite3_step(p) == SQLITE_ROW)
    ms = sqlite3_column_int(p, 0) ? -1 : sqlite3_column_int64(p, 1);
  sqlite3_finalize(p);
  return ms;
}

/* Waits (caller holds the mutex) until entry e, pinned by the caller, is no
** longer loading, in slices of 10 ms, between which the mutex is let go and
** the caller's connection asked whether it was interrupted: the wait
** had no end, and a connection interrupted in it waited on. A connection
** that holds a write transaction on a database in a rollback-journal mode
** waits its busy timeout at most, then gets SQLITE_BUSY: the loader may be
** waiting for its lock (a reader there waits for an exclusive lock), and the
** two stalled each other for as long as the loader's busy timeout lasted,
** or for good. */
static int cache_wait_loaded(CacheEntry *e, sqlite3 *db, const char *zFunc, char **pzErr) {
  int bWriter = sqlite3_txn_state(db, "main") == SQLITE_TXN_WRITE;
  sqlite3_int64 msLimit = -2, msWaited = 0; /* -2: not read yet */
  while (e->bLoading) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 10 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&gCacheLoaded, &gCacheMutex, &ts);
    if (!e->bLoading) break;
    msWaited += 10;
    pthread_mutex_unlock(&gCacheMutex); /* no statement under the mutex */
    int bStop = gptext_interrupted(db);
    if (!bStop && bWriter && msLimit == -2 && (msLimit = busy_timeout_ms(db)) < 0)
      bWriter = 0; /* WAL: the loader does not wait for this writer */
    pthread_mutex_lock(&gCacheMutex);
    if (bStop) return SQLITE_INTERRUPT; /* gptext_model_acquire words it */
    if (bWriter && msWaited > msLimit && e->bLoading) {
      gptext_set_error(pzErr, "%s: model '%s' is being loaded by another connection, which may "
                       "wait for this connection's write transaction; commit it first "
                       "(waited %lld ms, the busy timeout)", zFunc, e->model.zName,
                       (long long)msLimit);
      return SQLITE_BUSY;
    }
  }
  return SQLITE_OK;
}

/* The entry of key zKey (caller holds the mutex), or NULL. */
static CacheEntry *cache_find(const char *zKey) {
  CacheEntry *e = gCache;
  while (e && strcmp(e->zKey, zKey) != 0) e = e->pNext;
  return e;
}

/* Entries whose last reference went while the mutex was held, freed after
** it is released (a model's weights take a while to unmap); an acquire
** lets go of at most three. */
typedef struct CacheFree { CacheEntry *a[4]; int n; } CacheFree;
/* Queues e to be freed once the mutex is released. */
static void cache_free_later(CacheFree *f, CacheEntry *e) {
  if (e && f->n < 4) f->a[f->n++] = e;
}
/* Frees the queued entries; the mutex is no longer held. */
static void cache_free_now(CacheFree *f) {
  for (int i = 0; i < f->n; i++) cache_entry_free(f->a[i]);
  f->n = 0;
}

/* Unlinks e (caller holds the mutex); frees it later unless referenced. */
static void cache_drop(CacheFree *f, CacheEntry *e) {
  if (!e->bStale) cache_unlink(e);
  if (e->nRef == 0) cache_free_later(f, e);
}

/* A new entry for zResolved at stamp, its config and tokenizer read. No
** mutex is held: the statements may wait in the busy handler for another
** connection's lock, and a mutex held there stalled every connection of the
** process (a writer that then called the extension deadlocked with it). */
static int cache_entry_new(sqlite3 *db, const char *zFunc, char **pzKey, char **pzResolved,
                           sqlite3_int64 stamp, CacheEntry **ppNew, char **pzErr) {
  CacheEntry *e = sqlite3_malloc64(sizeof(*e));
  *ppNew = 0;
  if (!e) return SQLITE_NOMEM;
  memset(e, 0, sizeof(*e));
  e->zKey = *pzKey;
  *pzKey = 0;
  e->model.stamp = stamp;
  e->model.zName = *pzResolved;
  *pzResolved = 0;
  e->model.eot = -1;
  e->model.bos = -1;
  e->model.tiedCfg = -1;
  int rc = read_config(db, zFunc, e->model.zName, &e->model.cfg, &e->model.tiedCfg, pzErr);
  if (rc == SQLITE_OK) rc = load_tokenizer(db, zFunc, &e->model, pzErr);
  if (rc != SQLITE_OK) {
    if (stamp_changed(db, e->model.zName, stamp)) rc = MODEL_RETRY;
    cache_entry_free(e);
    return rc;
  }
  *ppNew = e;
  return SQLITE_OK;
}

/* One attempt of gptext_model_acquire. The rows are read by several
** statements, and outside a transaction each reads its own snapshot, so a
** commit by another connection between them (a re-import, a drop) could mix
** two versions of the model. Every such commit changes the stamp, so the
** stamp is read again after anything was loaded: when it moved, the entry is
** discarded and MODEL_RETRY returned. No statement runs under the global
** mutex; two first calls may both read a model's config and tokenizer (the
** second copy is dropped), and its weights load once. */
static int model_acquire_once(GptConn *pConn, sqlite3 *db, const char *zFunc, const char *zName,
                              int needWeights, GptModel **ppModel, char *zWho, size_t nWho,
                              char **pzErr) {
  char *zResolved = 0, *zKey = 0;
  sqlite3_int64 stamp = 0;
  CacheEntry *e = 0, *pNew = 0;
  CacheFree toFree = {{0, 0, 0, 0}, 0};
  int rc, bLoaded = 0, bVerified = 0; /* weights read in a snapshot of stamp */
  *ppModel = 0;
  rc = resolve_name(db, zFunc, zName, &zResolved, &stamp, pzErr);
  if (rc != SQLITE_OK) return rc;
  snprintf(zWho, nWho, "%s", zResolved); /* the name the messages give */
  {
    const char *zFile = sqlite3_db_filename(db, "main");
    if (zFile && zFile[0]) zKey = sqlite3_mprintf("%s\n%s", zFile, zResolved);
    else zKey = sqlite3_mprintf("%p\n%s", (void *)db, zResolved);
  }
  if (!zKey) {
    sqlite3_free(zResolved);
    return SQLITE_NOMEM;
  }

  pthread_mutex_lock(&gCacheMutex);
  /* the copy this connection holds of the rows it reads now, when the
  ** cache's is of other rows: a connection on an older snapshot (an open
  ** transaction, in WAL mode) and one on the newer had each evicted the
  ** other's copy and loaded the whole model again at every call */
  e = conn_held_copy(pConn, zKey, stamp, needWeights);
  if (e) {
    e->nRef++;
    *ppModel = &e->model;
    goto unlock;
  }
  e = cache_find(zKey);
  if (e && e->model.stamp != stamp) { /* rows changed since it was loaded */
    cache_drop(&toFree, e);
    e = 0;
  }
  if (!e) {
    pthread_mutex_unlock(&gCacheMutex);
    cache_free_now(&toFree);
    rc = cache_entry_new(db, zFunc, &zKey, &zResolved, stamp, &pNew, pzErr);
    /* sqlite3_interrupt() during the load: every statement after it failed,
    ** but one whose end was taken for its last row would have left a list
    ** short, so such an entry is not kept (a progress handler's interrupt
    ** ends one statement only, which each read checks itself) */
    if (rc == SQLITE_OK && gptext_interrupted(db)) rc = SQLITE_INTERRUPT;
    if (rc != SQLITE_OK) goto done;
    bLoaded = 1;
    pthread_mutex_lock(&gCacheMutex);
    gnTokenizerLoads++;
    e = cache_find(pNew->zKey);
    if (e && e->model.stamp != stamp) {
      cache_drop(&toFree, e);
      e = 0;
    }
    if (!e) { /* else another thread put the same rows in first: use its entry */
      pNew->pNext = gCache;
      gCache = e = pNew;
      pNew = 0;
    }
  }
  /* Weights are read without the mutex, so that a large model's load does
  ** not stall other connections' calls on other models; a second caller
  ** for the same entry waits for the first load instead of repeating it.
  ** The entry is pinned (nRef) while its loader runs unlocked, and while
  ** others wait for it: whoever lets go of it last frees it. */
  if (needWeights && e->bLoading) {
    e->nRef++;
    rc = cache_wait_loaded(e, db, zFunc, pzErr);
    e->nRef--;
    if (rc != SQLITE_OK) goto unlock; /* the loader still holds it */
    if (e->bStale) { /* its rows changed while it loaded */
      if (e->nRef == 0) cache_free_later(&toFree, e);
      rc = MODEL_RETRY;
      goto unlock;
    }
  }
  if (needWeights && !e->model.pNet) {
    GptModel work = e->model; /* name, config and tokenizer: read-only here */
    bLoaded = 1;
    e->bLoading = 1;
    e->nRef++;
    pthread_mutex_unlock(&gCacheMutex);
    rc = load_weights(db, zFunc, &work, stamp, pzErr);
    if (rc == SQLITE_OK && gptext_interrupted(db)) { /* as for the entry above */
      gpt_model_free(work.pNet);
      work.pNet = 0;
      rc = SQLITE_INTERRUPT;
    }
    int bChanged = rc == MODEL_RETRY;
    /* the stamp is not read after an interrupt, nor after a lock it could
    ** not get: its read waited out the busy timeout a second time, and the
    ** callers waiting for this load with it (gptext_model_acquire words
    ** an interrupt) */
    if (rc != SQLITE_OK && !bChanged && rc != SQLITE_INTERRUPT && rc != SQLITE_BUSY &&
        rc != SQLITE_LOCKED)
      bChanged = stamp_changed(db, work.zName, stamp);
    /* read in one snapshot of the resolved stamp: the rows read before it
    ** (config, tokenizer) were of that stamp too */
    bVerified = rc == SQLITE_OK;
    pthread_mutex_lock(&gCacheMutex);
    e->model.pNet = work.pNet;
    e->bLoading = 0;
    e->nRef--;
    pthread_cond_broadcast(&gCacheLoaded);
    if (rc == SQLITE_OK) gnWeightLoads++;
    if (rc != SQLITE_OK) {
      if (bChanged) rc = MODEL_RETRY;
      if (e->nRef == 0) cache_drop(&toFree, e);
      goto unlock;
    }
  }
  /* pinned while the stamp is read again, unlocked */
  e->nRef++;
  if (bLoaded && !bVerified) {
    pthread_mutex_unlock(&gCacheMutex);
    int bChanged = stamp_changed(db, e->model.zName, stamp);
    pthread_mutex_lock(&gCacheMutex);
    if (bChanged) {
      e->nRef--;
      cache_drop(&toFree, e); /* stale: freed with its last reference */
      rc = MODEL_RETRY;
      goto unlock;
    }
  }
  *ppModel = &e->model;
  if (pConn) cache_free_later(&toFree, conn_hold(pConn, e));
unlock:
  pthread_mutex_unlock(&gCacheMutex);
done:
  cache_free_now(&toFree);
  cache_entry_free(pNew);
  sqlite3_free(zResolved);
  sqlite3_free(zKey);
  return rc;
}

/* Lets go of the connection's held models, other than zKeep, whose rows
** changed or went (another connection's gpt_drop or re-import): their
** weights stayed loaded, and gpt_debug listed them, until the connection
** closed or held four others, so a pooled connection kept a dropped model's
** memory. One stamp query a held model. */
static void conn_forget_changed(GptConn *c, sqlite3 *db, const char *zKeep) {
  if (!c) return;
  /* only after a write to the file, by any connection: a stamp query a held
  ** model a call doubled the time of gpt_token_count over many rows */
  unsigned int version = 0;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_DATA_VERSION, &version) == SQLITE_OK) {
    if (version == c->heldVersion) return;
    c->heldVersion = version;
  }
  for (int i = 0; i < CONN_MODELS; i++) {
    GptModel *h = c->aHeld[i];
    if (!h || (zKeep && strcmp(h->zName, zKeep) == 0)) continue;
    if (stamp_changed(db, h->zName, h->stamp)) conn_release(c, h);
  }
}

/* The depth of this thread's model loads: a load reads the gpt_ tables, and
** a view or trigger in their place that calls the extension again recursed
** until the stack overflowed. */
static _Thread_local int tlAcquireDepth = 0;

/* Resolves and returns a referenced model, loading whatever is missing (see
** model_acquire_once). */
int gptext_model_acquire(GptConn *pConn, sqlite3 *db, const char *zFunc, const char *zName,
                         int needWeights, GptModel **ppModel, char **pzErr) {
  int rc = MODEL_RETRY;
  char zWho[256]; /* the name the messages give: none until one is resolved */
  snprintf(zWho, sizeof(zWho), "%s", zName ? zName : "");
  *ppModel = 0;
  if (tlAcquireDepth > 0) {
    gptext_set_error(pzErr, "%s: called while the extension reads its own tables (a view or "
                     "trigger over a gpt_ table that calls the extension?)", zFunc);
    return SQLITE_ERROR;
  }
  tlAcquireDepth++;
  conn_forget_changed(pConn, db, zName);
  for (int nTry = 0; rc == MODEL_RETRY && nTry < 4; nTry++) {
    /* a try after a commit moved the stamp runs in one read transaction,
    ** held open by a statement stepped to its row: the rows then cannot
    ** change under it (under frequent commits, a reader in WAL mode had
    ** failed every try, each read a snapshot of its own) */
    sqlite3_stmt *pHold = 0;
    if (nTry > 0 && sqlite3_prepare_v2(db, "SELECT count(*) FROM main.gpt_models", -1, &pHold,
                                       0) == SQLITE_OK &&
        sqlite3_step(pHold) != SQLITE_ROW) {
      sqlite3_finalize(pHold);
      pHold = 0;
    }
    sqlite3_free(*pzErr);
    *pzErr = 0;
    rc = model_acquire_once(pConn, db, zFunc, zName, needWeights, ppModel, zWho, sizeof(zWho),
                            pzErr);
    sqlite3_finalize(pHold);
  }
  tlAcquireDepth--;
  /* "zFunc: model 'name'", or "zFunc" before a name was resolved */
  char zPrefix[400];
  if (zWho[0]) snprintf(zPrefix, sizeof(zPrefix), "%s: model '%s'", zFunc, zWho);
  else snprintf(zPrefix, sizeof(zPrefix), "%s", zFunc);
  if (rc == MODEL_RETRY) {
    if (zWho[0])
      gptext_set_error(pzErr, "%s: model '%s' kept changing while it was being loaded; "
                       "try again", zFunc, zWho);
    else
      gptext_set_error(pzErr, "%s: the model kept changing while it was being loaded; "
                       "try again", zFunc);
    rc = SQLITE_BUSY;
  }
  if (rc != SQLITE_OK && *pzErr && strstr(*pzErr, ": string or blob too big")) {
    /* SQLite's bare message, for a row over this connection's limit */
    rc = SQLITE_TOOBIG;
    gptext_set_error(pzErr, "%s: one of %s rows is larger than SQLite's length limit "
                     "(SQLITE_LIMIT_LENGTH %d)", zPrefix, zWho[0] ? "its" : "the model's",
                     sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1));
  }
  /* a statement that failed because of sqlite3_interrupt() makes it an
  ** interrupt, whatever its message */
  if (rc != SQLITE_OK && rc != SQLITE_INTERRUPT && rc != SQLITE_NOMEM && gptext_interrupted(db))
    rc = SQLITE_INTERRUPT;
  if (rc == SQLITE_INTERRUPT) /* one message for every interrupt of the load */
    gptext_set_error(pzErr, "%s: interrupted", zPrefix);
  return rc;
}

/* ---------------------------------------------- table-valued functions */

int gptext_vtab_connect(sqlite3 *db, void *pAux, const char *zSchema, int vtabConfig,
                        sqlite3_vtab **ppVtab) {
  int rc = sqlite3_declare_vtab(db, zSchema);
  if (rc != SQLITE_OK) return rc;
  sqlite3_vtab_config(db, vtabConfig);
  GptVtab *p = sqlite3_malloc64(sizeof(*p));
  if (!p) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  p->db = db;
  p->pConn = (GptConn *)pAux;
  *ppVtab = &p->base;
  return SQLITE_OK;
}

/* xDisconnect (and xDestroy) of every module: the vtab is one allocation. */
int gptext_vtab_disconnect(sqlite3_vtab *pVtab) {
  sqlite3_free(pVtab);
  return SQLITE_OK;
}

/* xOpen of every table-valued function: a zeroed cursor of nByte bytes
** (its sqlite3_vtab_cursor first), from sqlite3_malloc64, which xClose
** frees with sqlite3_free. */
int gptext_tvf_open(size_t nByte, sqlite3_vtab_cursor **ppCur) {
  sqlite3_vtab_cursor *c = sqlite3_malloc64(nByte);
  *ppCur = c;
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, nByte);
  return SQLITE_OK;
}

/* Sets the vtab's error message to zErr (taken over, made valid UTF-8);
** returns rc, SQLITE_ERROR in place of SQLITE_OK. */
int gptext_vtab_error(sqlite3_vtab *pVtab, char *zErr, int rc) {
  sqlite3_free(pVtab->zErrMsg);
  pVtab->zErrMsg = gptext_utf8_own(zErr);
  return rc == SQLITE_OK ? SQLITE_ERROR : rc;
}

/* Shared xBestIndex of the table-valued functions whose only inputs are
** their hidden argument columns (see gpt_ext.h for the idxNum bits). */
int gptext_tvf_best_index(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo,
                          int iFirstHidden, int nHidden, int nRequired,
                          const char *zFunc) {
  int aIdx[16];
  unsigned mask = 0, unusable = 0;
  for (int i = 0; i < nHidden && i < 16; i++) aIdx[i] = -1;
  for (int i = 0; i < pInfo->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &pInfo->aConstraint[i];
    int iArg = c->iColumn - iFirstHidden;
    /* "x IS v" is "x = v" with a NULL v allowed: the argument NULL */
    if (iArg < 0 || iArg >= nHidden ||
        (c->op != SQLITE_INDEX_CONSTRAINT_EQ && c->op != SQLITE_INDEX_CONSTRAINT_IS))
      continue;
    if (!c->usable) {
      unusable |= 1u << iArg;
      continue;
    }
    aIdx[iArg] = i;
    mask |= 1u << iArg;
  }
  if (unusable & ~mask) return SQLITE_CONSTRAINT;
  (void)pVtab;
  (void)zFunc;
  /* A plan without a required argument is legal but useless: SQLite asks for
  ** one when it plans each term of an OR separately. Price it out of reach;
  ** if nothing better exists, xFilter reports the missing argument. */
  int bMissing = 0;
  for (int i = 0; i < nRequired; i++)
    if (!(mask & (1u << i))) bMissing = 1;
  /* argv follows column order; idxNum tells xFilter which arguments it got */
  int nArg = 0;
  for (int i = 0; i < nHidden; i++) {
    if (aIdx[i] < 0) continue;
    pInfo->aConstraintUsage[aIdx[i]].argvIndex = ++nArg;
    pInfo->aConstraintUsage[aIdx[i]].omit = 1;
  }
  pInfo->idxNum = (int)mask;
  pInfo->estimatedCost = bMissing ? 1e300 : 1000.0;
  pInfo->estimatedRows = bMissing ? 2147483647 : 100;
  return SQLITE_OK;
}

/* xFilter's side of the above: the error for a missing required argument. */
int gptext_tvf_missing(sqlite3_vtab *pVtab, int idxNum, int nRequired, const char *zFunc) {
  for (int i = 0; i < nRequired; i++) {
    if (!(idxNum & (1 << i))) {
      return gptext_vtab_error(pVtab, sqlite3_mprintf("%s: argument %d is missing; call it "
                               "as %s(...)", zFunc, i + 1, zFunc), SQLITE_ERROR);
    }
  }
  return SQLITE_OK;
}

/* Keeps copies of the arguments xFilter got (bit i of idxNum: hidden column
** i is in argv, in column order) in apArg[0..nHidden), the others NULL, so
** xColumn can read them back: SQLite checks the argument constraints again
** itself under some plans (the terms around a MULTI-INDEX OR), and a hidden
** column that read back NULL would drop every row. */
int gptext_tvf_keep_args(int idxNum, int nHidden, int argc, sqlite3_value **argv,
                         sqlite3_value **apArg) {
  int iArg = 0;
  for (int i = 0; i < nHidden; i++) {
    sqlite3_value_free(apArg[i]);
    apArg[i] = 0;
    if (!(idxNum & (1 << i)) || iArg >= argc) continue;
    apArg[i] = sqlite3_value_dup(argv[iArg++]);
    if (!apArg[i]) return SQLITE_NOMEM;
  }
  return SQLITE_OK;
}

/* A 64-bit fingerprint (FNV-1a) of a call's arguments: each one's type and
** value, absent ones (NULL pointers) included as such; with bWholeAsInt a
** whole REAL counts as its INTEGER. */
static sqlite3_uint64 fingerprint(sqlite3_value **apArg, int nArg, int bWholeAsInt) {
  sqlite3_uint64 h = 0xcbf29ce484222325ull;
  for (int i = 0; i < nArg; i++) {
    unsigned char aNum[8];
    const unsigned char *z = 0;
    /* an argument not given is NULL, as its hidden column reads back */
    int n = 0, t = apArg[i] ? sqlite3_value_type(apArg[i]) : SQLITE_NULL;
    double d = t == SQLITE_FLOAT ? sqlite3_value_double(apArg[i]) : 0.0;
    /* a whole REAL as its INTEGER where asked (a gpt_batch key: 1 = 1.0 in
    ** SQL), never for arguments, where the prompt 1.0 reads "1.0", not "1" */
    if (bWholeAsInt && t == SQLITE_FLOAT && d == floor(d) && d >= -9223372036854775808.0 &&
        d < 9223372036854775808.0)
      t = SQLITE_INTEGER;
    if (t == SQLITE_INTEGER || t == SQLITE_FLOAT) {
      sqlite3_uint64 u = 0;
      if (t == SQLITE_INTEGER)
        u = sqlite3_value_type(apArg[i]) == SQLITE_FLOAT ? (sqlite3_uint64)(sqlite3_int64)d
                                                         : (sqlite3_uint64)sqlite3_value_int64(apArg[i]);
      else memcpy(&u, &d, 8);
      for (int k = 0; k < 8; k++) aNum[k] = (unsigned char)(u >> (8 * k));
      z = aNum;
      n = 8;
    } else if (t == SQLITE_TEXT || t == SQLITE_BLOB) {
      z = t == SQLITE_TEXT ? sqlite3_value_text(apArg[i]) : sqlite3_value_blob(apArg[i]);
      n = sqlite3_value_bytes(apArg[i]);
    }
    h = (h ^ (unsigned char)t) * 0x100000001b3ull;
    for (int k = 0; z && k < n; k++) h = (h ^ z[k]) * 0x100000001b3ull;
    h = (h ^ 0xff) * 0x100000001b3ull; /* end of this argument */
  }
  return h;
}

sqlite3_uint64 gptext_tvf_fingerprint(sqlite3_value **apArg, int nArg) {
  return fingerprint(apArg, nArg, 0);
}

/* The fingerprint of a key, by its value as SQL compares it: a whole REAL
** as its INTEGER (gpt_batch's rows keyed 1 and 1.0 had drawn different
** samples). */
sqlite3_uint64 gptext_key_fingerprint(sqlite3_value *pKey) {
  return fingerprint(&pKey, 1, 1);
}

/* The rowid of row iRow (0-based) of a call with at most nRows rows and
** argument fingerprint fp: 1 + iRow + nRows * (fp mod M), M as large as
** keeps it under 2^53, the integers a JavaScript number holds exactly (Node's
** better-sqlite3 rounds larger ones, which made rowids of one call collide).
** Within a call every row gets its own rowid, the same row the same one in
** every scan. Calls with other arguments get other ranges (up to a hash
** collision, chance about nRows / 2^53), so a MULTI-INDEX OR whose terms
** call the function with different arguments, which SQLite tells apart by
** rowid, keeps the rows of each. */
#define TVF_ROWID_MAX (((sqlite3_int64)1 << 53) - 1)
sqlite3_int64 gptext_tvf_rowid(sqlite3_uint64 fp, sqlite3_int64 nRows, sqlite3_int64 iRow) {
  if (nRows < 1) nRows = 1;
  sqlite3_uint64 M = (sqlite3_uint64)((TVF_ROWID_MAX - 1) / nRows);
  if (M < 1) M = 1;
  return 1 + iRow + nRows * (sqlite3_int64)(fp % M);
}

/* The tokenizer's poll of the connection's interrupt (ctx is the db). */
static int encode_should_stop(void *ctx) { return gptext_interrupted((sqlite3 *)ctx); }

/* z past what SQLite's tokenizer reads as space: white space (not \v), a
** UTF-8 byte order mark, comments (an unterminated block comment runs to the
** end) and empty statements: ";SELECT ..." prepares the SELECT. */
static const char *sql_skip_space(const char *z) {
  for (;;) {
    while (*z == ' ' || *z == '\t' || *z == '\n' || *z == '\r' || *z == '\f' || *z == ';') z++;
    if ((unsigned char)z[0] == 0xEF && (unsigned char)z[1] == 0xBB && (unsigned char)z[2] == 0xBF) {
      z += 3;
    } else if (z[0] == '-' && z[1] == '-') {
      while (*z && *z != '\n') z++;
    } else if (z[0] == '/' && z[1] == '*') {
      const char *zEnd = strstr(z + 2, "*/");
      z = zEnd ? zEnd + 2 : z + strlen(z);
    } else {
      return z;
    }
  }
}

/* Whether SQL follows a query's first statement: anything but white space,
** comments and empty statements. Read as text, not prepared: preparing a
** PRAGMA applies it ("SELECT 1; PRAGMA query_only = 1" had left the
** connection read-only). A function that runs one query refuses such a
** tail rather than ignore it. */
int gptext_sql_has_more(const char *zTail) {
  return zTail && *sql_skip_space(zTail) != 0;
}

/* Prepares a user's query for a function that reads rows: only a statement
** that begins SELECT, WITH or VALUES is prepared (*pp NULL otherwise, for the
** caller's "one SELECT" error), since SQLite applies a PRAGMA while
** preparing it: "PRAGMA query_only = 1", refused, had still left the
** connection read-only. Nor is a text with a NUL inside: SQLite reads it only
** up to the NUL, which would run another query than the one given. */
int gptext_prepare_query(sqlite3 *db, sqlite3_value *pSql, sqlite3_stmt **pp, const char **pzTail) {
  static const char *const azFirst[] = {"SELECT", "WITH", "VALUES"};
  const char *zSql = (const char *)sqlite3_value_text(pSql);
  *pp = 0;
  if (pzTail) *pzTail = 0;
  if (!zSql || gptext_has_nul(pSql)) return SQLITE_OK;
  const char *z = sql_skip_space(zSql);
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(azFirst[i]);
    if (sqlite3_strnicmp(z, azFirst[i], (int)n) == 0 && !isalnum((unsigned char)z[n]) &&
        z[n] != '_' && z[n] != '$' && (unsigned char)z[n] < 0x80)
      return sqlite3_prepare_v2(db, zSql, -1, pp, pzTail);
  }
  return SQLITE_OK;
}

/* Whether a user's query has a parameter; if so, buf holds the whole
** message: "the query has a parameter, ?1, which zFunc cannot bind; ...".
** A function that runs a query has no values to bind to it, so each
** parameter would read NULL and the rows come out silently wrong: such a
** query is refused. */
int gptext_query_param(sqlite3_stmt *p, const char *zFunc, char *buf, size_t n) {
  if (sqlite3_bind_parameter_count(p) < 1) return 0;
  const char *z = sqlite3_bind_parameter_name(p, 1);
  snprintf(buf, n, "the query has a parameter, %s, which %s cannot bind; write its value into "
           "the query", z ? z : "?1", zFunc);
  return 1;
}

/* SQLITE_OK when the main database takes writes; else SQLITE_READONLY with
** the error "zFunc: model 'zModel': ...". A function that computes for
** minutes before its first write asks first, rather than throw the work
** away at that write. */
int gptext_check_writable(sqlite3 *db, const char *zFunc, const char *zModel, char **pzErr) {
  int bQueryOnly = 0;
  sqlite3_stmt *p = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA query_only", -1, &p, 0) == SQLITE_OK &&
      sqlite3_step(p) == SQLITE_ROW)
    bQueryOnly = sqlite3_column_int(p, 0);
  sqlite3_finalize(p);
  if (sqlite3_db_readonly(db, "main") == 1 || bQueryOnly) {
    gptext_set_error(pzErr, "%s: model '%s': the database is read-only (%s); it writes the "
                     "model there", zFunc, zModel,
                     bQueryOnly ? "PRAGMA query_only is on" : "opened read-only");
    return SQLITE_READONLY;
  }
  return SQLITE_OK;
}

/* How deep steps of users' queries (gptext_query_step) nest on this thread. */
static _Thread_local int tlQueryDepth = 0;

/* sqlite3_step of a user's query, counted in the thread's nesting depth. */
int gptext_query_step(sqlite3_stmt *p) {
  tlQueryDepth++;
  int rc = sqlite3_step(p);
  tlQueryDepth--;
  return rc;
}

/* SQLITE_ERROR with a message when the calling function's query would be
** nested deeper than GPTEXT_QUERY_MAX_DEPTH; else SQLITE_OK. Nesting that
** ends (gpt_batch over another call's outputs) stays within the limit. */
int gptext_query_too_deep(const char *zFunc, const char *zModel, char **pzErr) {
  if (tlQueryDepth < GPTEXT_QUERY_MAX_DEPTH) return SQLITE_OK;
  gptext_set_error(pzErr, "%s%s%s%s: the query calls gpt_batch, gpt_train or gpt_train_tokenizer "
                   "%d levels deep; does it call itself (through a TEMP view, or a query read "
                   "from a table)?", zFunc, zModel ? ": model '" : "", zModel ? zModel : "",
                   zModel ? "'" : "", GPTEXT_QUERY_MAX_DEPTH + 1);
  return SQLITE_ERROR;
}

/* SQLITE_ERROR with a message when a function that writes (zFunc) runs
** inside the query of gpt_batch, gpt_train or gpt_train_tokenizer, which
** must be read-only: SQLite's read-only check of the query cannot see a
** function's writes (gpt_drop in gpt_batch's query dropped the model).
** A writer inside a statement that writes is refused too, before it opens
** a file: a CHECK constraint, generated column or index expression of an
** untrusted schema runs there, and SQLite 3.40 does not hold
** SQLITE_DIRECTONLY functions out of a CHECK (gpt_import, gpt_drop and
** gpt_quantize failed on their savepoint, but gpt_export overwrote a file,
** and gpt_import had opened the path). A statement of the caller's own that
** writes, as INSERT ... SELECT gpt_export(...), is refused alike. */
/* A token of SQL text, as sql_token reads it: kind 'i' (an identifier or
** keyword, z its text with any quotes taken off, empty when longer than z
** holds), 's' (a string literal), 'n' (a number) or the character itself;
** 0 at the end. */
typedef struct SqlToken {
  char kind;
  int bQuoted;
  char z[32];
} SqlToken;

/* Reads the token at p into *t (white space and comments before it skipped,
** sql_skip_space); returns where the next one may start. */
static const char *sql_token(const char *p, SqlToken *t) {
  size_t n = 0;
  int bOver = 0;
  p = sql_skip_space(p);
  memset(t, 0, sizeof(*t));
  unsigned char c = (unsigned char)*p;
  if (!c) return p;
  if (c == '\'') { /* a string: '' inside is a quote */
    t->kind = 's';
    for (p++; *p; p++) {
      if (*p == '\'' && p[1] != '\'') return p + 1;
      if (*p == '\'') p++;
    }
    return p;
  }
  if (c == '"' || c == '`' || c == '[') { /* a quoted identifier */
    char cEnd = c == '[' ? ']' : (char)c;
    t->kind = 'i';
    t->bQuoted = 1;
    for (p++; *p; p++) {
      if (*p == cEnd && (cEnd == ']' || p[1] != cEnd)) { p++; break; }
      if (*p == cEnd) p++; /* "" inside "...": one quote */
      if (n + 1 < sizeof(t->z)) t->z[n++] = *p;
      else bOver = 1;
    }
  } else if (isalnum(c) || c == '_' || c == '$' || c >= 0x80) {
    t->kind = isdigit(c) ? 'n' : 'i';
    for (; isalnum((unsigned char)*p) || *p == '_' || *p == '$' || (unsigned char)*p >= 0x80;
         p++) {
      if (n + 1 < sizeof(t->z)) t->z[n++] = *p;
      else bOver = 1;
    }
  } else {
    t->kind = (char)c;
    return p + 1;
  }
  t->z[bOver ? 0 : n] = 0;
  return p;
}

/* Whether SQL text z calls one of the functions that write: a name of
** them, quoted or not, in any case, then '(' (white space and comments
** between), outside string literals and comments, and not where a name of
** a table, index or module stands (after TABLE, EXISTS, ON, REFERENCES,
** USING or a '.'): "CREATE TABLE gpt_train(...)" is a user's table. A
** textual scan had taken such tables and strings for calls, and missed a
** call with a comment between the name and its parenthesis. */
int gptext_sql_calls_writer(const char *z) {
  static const char *azName[] = {"gpt_import", "gpt_export", "gpt_drop", "gpt_quantize",
                                 "gpt_train", "gpt_train_tokenizer"};
  static const char *azBefore[] = {"table", "exists", "on", "references", "using"};
  SqlToken prev, cur, next;
  memset(&prev, 0, sizeof(prev));
  const char *p = sql_token(z, &cur);
  while (cur.kind) {
    p = sql_token(p, &next);
    int bName = prev.kind == '.';
    for (size_t i = 0; !bName && prev.kind == 'i' && !prev.bQuoted &&
                       i < sizeof(azBefore) / sizeof(azBefore[0]); i++)
      bName = sqlite3_stricmp(prev.z, azBefore[i]) == 0;
    if (cur.kind == 'i' && next.kind == '(' && !bName) {
      for (size_t i = 0; i < sizeof(azName) / sizeof(azName[0]); i++)
        if (sqlite3_stricmp(cur.z, azName[i]) == 0) return 1;
    }
    prev = cur;
    cur = next;
  }
  return 0;
}

/* The first table or index of an attached database (main, temp, any other)
** whose SQL calls a writer, as "main.t"; NULL when none. A schema read
** before the extension was loaded, while a statement ran (reread_schema
** skipped), runs such a call from a generated column in a plain SELECT:
** SQLite checks SQLITE_DIRECTONLY only as it resolves names, which it does
** for tables' columns and constraints and for indexes as it reads the
** schema (views and triggers, resolved as they are used, are refused
** then). Read again, such a schema is refused by SQLite; so gpt_export
** refuses too. *pRc: SQLite's code when the schema cannot be read. */
static char *schema_calls_writer(sqlite3 *db, int *pRc, char **pzMsg) {
  sqlite3_stmt *pDb = 0;
  char *zFound = 0;
  *pRc = SQLITE_OK;
  /* the databases by sqlite3_db_name (3.39+), which no authorizer denies;
  ** an older SQLite reads PRAGMA database_list */
  if (sqlite3_libversion_number() < 3039000 &&
      (*pRc = sqlite3_prepare_v2(db, "SELECT name FROM pragma_database_list", -1, &pDb, 0)) !=
          SQLITE_OK) {
    *pRc = gptext_sql_failure(db, *pRc, pzMsg);
    return 0;
  }
  for (int iDb = 0; *pRc == SQLITE_OK && !zFound; iDb++) {
    const char *zDb;
    if (pDb) {
      int rcDb = sqlite3_step(pDb);
      if (rcDb != SQLITE_ROW) {
        if (rcDb != SQLITE_DONE) *pRc = gptext_sql_failure(db, rcDb, pzMsg);
        break;
      }
      zDb = (const char *)sqlite3_column_text(pDb, 0);
    } else {
      zDb = sqlite3_db_name(db, iDb);
    }
    if (!zDb) break;
    char *zSql = sqlite3_mprintf("SELECT name, sql FROM \"%w\".sqlite_schema WHERE sql IS NOT "
                                 "NULL AND type IN ('table', 'index')", zDb);
    sqlite3_stmt *p = 0;
    if (!zSql) { *pRc = SQLITE_NOMEM; break; }
    int rc = sqlite3_prepare_v2(db, zSql, -1, &p, 0);
    sqlite3_free(zSql);
    if (rc == SQLITE_OK) {
      while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
        const char *zText = (const char *)sqlite3_column_text(p, 1);
        if (zText && gptext_sql_calls_writer(zText)) {
          zFound = sqlite3_mprintf("%s.%s", zDb, (const char *)sqlite3_column_text(p, 0));
          if (!zFound) *pRc = SQLITE_NOMEM;
          rc = SQLITE_DONE;
          break;
        }
      }
    }
    /* SQLite's code and message, read before the statement goes */
    if (rc != SQLITE_DONE) *pRc = gptext_sql_failure(db, rc, pzMsg);
    sqlite3_finalize(p);
  }
  sqlite3_finalize(pDb);
  return zFound;
}

int gptext_query_writes(sqlite3_context *ctx, const char *zFunc, const char *zModel,
                        char **pzErr) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  if (tlQueryDepth > 0) {
    gptext_set_error(pzErr, "%s: model '%s': it writes, and runs inside the query of "
                     "gpt_batch, gpt_train or gpt_train_tokenizer, which must be read-only",
                     zFunc, zModel);
    return SQLITE_ERROR;
  }
  for (sqlite3_stmt *p = sqlite3_next_stmt(db, 0); p; p = sqlite3_next_stmt(db, p)) {
    if (sqlite3_stmt_busy(p) && !sqlite3_stmt_readonly(p)) {
      gptext_set_error(pzErr, "%s: model '%s': " GPTEXT_IN_WRITER "; call %s() from a SELECT "
                       "of its own", zFunc, zModel, zFunc);
      return SQLITE_ERROR;
    }
  }
  return SQLITE_OK;
}

int gptext_schema_unread_check(sqlite3 *db, const GptConn *pConn, char **pzWhy) {
  if (!pConn || !pConn->bSchemaUnread) return SQLITE_OK;
  int rc = SQLITE_OK;
  char *zMsg = 0;
  char *zObj = schema_calls_writer(db, &rc, &zMsg);
  if (zObj) {
    *pzWhy = sqlite3_mprintf("the schema's %s calls a function that writes (gpt_import, "
                             "gpt_export, ...), as only an untrusted file's would; nothing "
                             "that writes runs on this connection", zObj);
    sqlite3_free(zObj);
    sqlite3_free(zMsg);
    return SQLITE_ERROR;
  }
  if (rc == SQLITE_INTERRUPT) {
    sqlite3_free(zMsg);
    zMsg = sqlite3_mprintf("interrupted");
  }
  if (rc != SQLITE_OK) *pzWhy = zMsg;
  else sqlite3_free(zMsg);
  return rc;
}

/* gpt_export's check of the schema, where it was not read again at load:
** before it opens any file. (The row writers check under their write lock,
** in gptext_savepoint_begin.) */
int gptext_schema_check(sqlite3_context *ctx, const char *zFunc, const char *zModel,
                        char **pzErr) {
  char *zWhy = 0;
  int rc = gptext_schema_unread_check(sqlite3_context_db_handle(ctx), sqlite3_user_data(ctx),
                                      &zWhy);
  if (rc != SQLITE_OK)
    gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, zModel, zWhy ? zWhy : "out of memory");
  sqlite3_free(zWhy);
  return rc;
}

/* Encodes text with the model's tokenizer as Hugging Face's
** tokenizer(text).input_ids does: the BOS first when the model's tokenizer
** adds one (unless GPTEXT_ENCODE_NO_BOS), then the ids of the text. */
int gptext_encode(sqlite3 *db, GptModel *m, const char *zFunc, const char *z, int n,
                  int flags, int **paIds, int *pnIds, char **pzErr) {
  int *aIds = 0;
  size_t nIds = 0;
  int nBos = m->bAddBos && m->bos >= 0 && !(flags & GPTEXT_ENCODE_NO_BOS) ? 1 : 0;
  char zMatchErr[160] = "";
  TokEncodeOpts opts = {db ? encode_should_stop : NULL, db, zMatchErr, sizeof(zMatchErr)};
  *paIds = 0;
  *pnIds = 0;
  int rc = tok_encode_opts(m->pTok, z ? z : "", z ? (size_t)n : 0,
                           (flags & GPTEXT_ENCODE_SPECIAL) ? TOK_ALLOW_SPECIAL : 0, &opts, &aIds,
                           &nIds);
  if (rc == TOK_ESTOPPED) {
    gptext_set_error(pzErr, "%s: model '%s': interrupted", zFunc, m->zName);
    return SQLITE_INTERRUPT;
  }
  if (rc == TOK_EWORD) {
    gptext_set_error(pzErr, "%s: model '%s': the text has a word (a run the pre-tokenizer does "
                     "not cut) over the limit of %d bytes", zFunc, m->zName, TOK_MAX_WORD);
    return SQLITE_TOOBIG;
  }
  if (rc == TOK_ELIMIT) {
    gptext_set_error(pzErr, "%s: model '%s': the pre-tokenizer pattern hit its match limit "
                     "(100,000,000 steps or 64 MB a match) on this text", zFunc, m->zName);
    return SQLITE_ERROR;
  }
  if (rc == TOK_EMATCH) {
    gptext_set_error(pzErr, "%s: model '%s': the pre-tokenizer pattern failed on this text: %s",
                     zFunc, m->zName, zMatchErr);
    return SQLITE_ERROR;
  }
  if (rc) {
    gptext_set_error(pzErr, "%s: model '%s': out of memory encoding %d bytes", zFunc,
                     m->zName, n);
    return SQLITE_NOMEM;
  }
  if (nIds > 0x7fffffff / sizeof(int) - 1) {
    free(aIds);
    gptext_set_error(pzErr, "%s: model '%s': the text is %lld tokens, over the limit of %lld",
                     zFunc, m->zName, (long long)nIds,
                     (long long)(0x7fffffff / sizeof(int) - 1));
    return SQLITE_TOOBIG;
  }
  /* hand it over in SQLite's allocator, the one the callers free with */
  /* room for one id even when there are none: callers put a start token there */
  *paIds = sqlite3_malloc64(((nIds + (size_t)nBos) ? nIds + (size_t)nBos : 1) * sizeof(int));
  if (!*paIds) {
    free(aIds);
    return SQLITE_NOMEM;
  }
  if (nBos) (*paIds)[0] = m->bos;
  if (nIds) memcpy(*paIds + nBos, aIds, nIds * sizeof(int));
  free(aIds);
  *pnIds = (int)nIds + nBos;
  return SQLITE_OK;
}

/* ------------------------------------------------------- registration */

/* gpt_version(): the extension's version and what it was built with. */
static void gptVersionFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3_result_text(ctx, "sqlite-gpt " GPT_VERSION, -1, SQLITE_STATIC);
}

/* gpt_debug(): build facts and the process-wide model cache as JSON:
** how many times tokenizers and weights were loaded, and what is cached now.
** Tests use it to show that a model is read once and shared. */
static void gptDebugFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3_str *pStr = sqlite3_str_new(sqlite3_context_db_handle(ctx));
  int n = 0;
  pthread_mutex_lock(&gCacheMutex);
  /* f32_gemv: GPT_KERNELS=blas keeps the set's other kernels but runs f32
  ** decode products on OpenBLAS */
  sqlite3_str_appendf(pStr, "{\"version\":\"%s\",\"sqlite\":\"%s\",\"kernels\":\"%s\","
                      "\"f32_gemv\":\"%s\",\"threads\":%d,\"tokenizer_loads\":%lld,"
                      "\"weight_loads\":%lld,\"cached\":[", GPT_VERSION, sqlite3_libversion(),
                      gpt_kernels()->name, gpt_kernels()->blas_gemv ? "cblas_sgemv" : "own",
                      gpt_threads_default(), gnTokenizerLoads, gnWeightLoads);
  for (CacheEntry *e = gCache; e; e = e->pNext, n++) {
    sqlite3_str_appendall(pStr, n ? ",{\"model\":\"" : "{\"model\":\"");
    for (const unsigned char *z = (const unsigned char *)e->model.zName; *z; z++) {
      if (*z == '"' || *z == '\\') sqlite3_str_appendf(pStr, "\\%c", *z);
      else if (*z < 0x20) sqlite3_str_appendf(pStr, "\\u%04x", *z);
      else sqlite3_str_appendchar(pStr, 1, (char)*z);
    }
    sqlite3_str_appendf(pStr, "\",\"refs\":%d,\"weights\":%s}", e->nRef,
                        e->model.pNet ? "true" : "false");
  }
  pthread_mutex_unlock(&gCacheMutex);
  sqlite3_str_appendall(pStr, "]}");
  int nOut = sqlite3_str_length(pStr), rc = sqlite3_str_errcode(pStr);
  char *z = sqlite3_str_finish(pStr);
  if (!z || rc != SQLITE_OK) gptext_result_str_error(ctx, "gpt_debug", 0, rc ? rc : SQLITE_NOMEM);
  else gptext_result_text(ctx, z, nOut, sqlite3_free); /* model names may be any bytes */
  if (z && rc != SQLITE_OK) sqlite3_free(z);
}

/* Entry point: `.load build/gpt` or load_extension('build/gpt'). One
** connection state is shared by every function and module of the connection
** and freed with it. */
/* Has the connection read its schema again, now that the functions exist.
** SQLite checks SQLITE_DIRECTONLY as it resolves a function's name, and a
** schema read before the extension was loaded (any statement before
** sqlite3_load_extension, as PRAGMA journal_mode=WAL) resolved gpt_drop
** or gpt_export in a generated column or index as no function yet: a plain
** SELECT of that column then ran them. Read again, such a schema is
** refused as "unsafe use", as when the extension is loaded first. Skipped
** while a statement runs (load_extension() called from SQL), whose
** schema must stay: 0 then (gpt_export checks the schema itself, see
** gptext_schema_check). "PRAGMA writable_schema=RESET" also turns
** writable_schema off, so a setting of on is put back. */
static int reread_schema(sqlite3 *db) {
  for (sqlite3_stmt *p = sqlite3_next_stmt(db, 0); p; p = sqlite3_next_stmt(db, p))
    if (sqlite3_stmt_busy(p)) return 0;
  sqlite3_stmt *p = 0;
  int bWritable = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA writable_schema", -1, &p, 0) == SQLITE_OK &&
      sqlite3_step(p) == SQLITE_ROW)
    bWritable = sqlite3_column_int(p, 0);
  sqlite3_finalize(p);
  sqlite3_exec(db, "PRAGMA writable_schema=RESET", 0, 0, 0);
  if (bWritable) sqlite3_exec(db, "PRAGMA writable_schema=ON", 0, 0, 0);
  return 1;
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_gpt_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
  SQLITE_EXTENSION_INIT2(pApi);
  GptConn *pConn = sqlite3_malloc64(sizeof(GptConn));
  int rc;
  if (!pConn) return SQLITE_NOMEM;
  memset(pConn, 0, sizeof(*pConn));
  /* gpt_version owns pConn: its destructor runs when the connection closes */
  rc = sqlite3_create_function_v2(db, "gpt_version", 0,
                                  SQLITE_UTF8 | SQLITE_INNOCUOUS | SQLITE_DETERMINISTIC,
                                  pConn, gptVersionFunc, 0, 0, conn_destroy);
  if (rc != SQLITE_OK) {
    *pzErrMsg = sqlite3_mprintf("gpt: cannot register gpt_version: %s", sqlite3_errstr(rc));
    return rc;
  }
  rc = sqlite3_create_function(db, "gpt_debug", 0, SQLITE_UTF8 | SQLITE_DIRECTONLY, 0,
                               gptDebugFunc, 0, 0);
  if (rc != SQLITE_OK) {
    *pzErrMsg = sqlite3_mprintf("gpt: cannot register gpt_debug: %s", sqlite3_errstr(rc));
    return rc;
  }
  struct { const char *zName; int (*xRegister)(sqlite3 *, GptConn *); } aReg[] = {
    {"gpt_import", gptext_register_import},
    {"gpt_tokens", gptext_register_tokens},
    {"gpt_generate", gptext_register_generate},
    {"gpt_batch", gptext_register_batch},
    {"gpt_attention", gptext_register_analyze},
    {"gpt_attention_svg", gptext_register_svg},
    {"gpt_logprob", gptext_register_score},
    {"gpt_quantize", gptext_register_quantize},
    {"gpt_chat", gptext_register_chat},
    {"gpt_train", gptext_register_train},
    {"gpt_export", gptext_register_gguf},
  };
  for (size_t i = 0; i < sizeof(aReg) / sizeof(aReg[0]); i++) {
    rc = aReg[i].xRegister(db, pConn);
    if (rc != SQLITE_OK) {
      *pzErrMsg = sqlite3_mprintf("gpt: cannot register %s and its companions: %s",
                                  aReg[i].zName, sqlite3_errstr(rc));
      return rc;
    }
  }
  pthread_once(&gCacheForkOnce, cache_register_fork);
  if (!reread_schema(db)) pConn->bSchemaUnread = 1;
  return SQLITE_OK;
}
