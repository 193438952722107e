/*
** gpt_import() and gpt_drop(): moving a Hugging Face GPT-2 checkpoint folder
** into the gpt_ tables, and taking a model out again.
**
**   SELECT gpt_import('gpt2', '/models/gpt2');
**   SELECT gpt_import('gpt2', '/models/gpt2', '{"replace": true}');
**   SELECT gpt_drop('gpt2');
**
** The folder holds config.json, model.safetensors, and vocab.json with
** merges.txt (GPT-2) or tokenizer.json (with tokenizer_config.json and
** generation_config.json where present), which is read instead when there.
** JSON (config.json, vocab.json and the safetensors header) is parsed with
** SQLite's own JSON functions over bound parameters; the engine only checks
** the parsed safetensors entries (engine/safetensors.c).
**
** An import is all or nothing: it runs inside one SAVEPOINT, and any error
** rolls back to it, so a failed import changes no row. The work is ordered so
** that every cheap check (config, safetensors header, vocabulary, merges)
** happens before the first byte of tensor data is copied, and the gpt_models
** row is written last. With {"replace": true} the old model's rows are
** deleted in the same savepoint, once config.json and the safetensors header
** have passed their checks. Tensor values are checked too: a NaN or an
** infinity anywhere is an error. Tensor data is streamed: each row is inserted as a
** zeroblob() of the right size and filled with sqlite3_blob_write() from 1 MB
** chunks of the file, so the file is never held in memory.
**
** If sqlite3_interrupt() is called during an import, SQLite refuses every
** further statement of the call, the savepoint included; an interrupted write
** statement then rolls back the whole transaction, as SQLite does for any
** interrupted INSERT, UPDATE or DELETE. The import relies on that to undo
** itself, so an interrupt inside an explicit transaction (BEGIN ... ) rolls
** back that transaction too.
**
** Errors read "gpt_import: model 'NAME': FILE: what, expected X, found Y".
*/
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "gpt_ext.h"
#include "safetensors.h"
#include "template.h"

/* Largest config.json, vocab.json or merges.txt read. */
#define IMP_MAX_TEXT (64 * 1024 * 1024)
/* Bytes of tensor data copied per sqlite3_blob_write(). */
#define IMP_CHUNK (1024 * 1024)
/* Most entries accepted in a safetensors header (GPT-2 XL has 676). */
#define IMP_MAX_ENTRIES 100000

/* One required tensor of the config, and where the file has it. */
typedef struct ImpTensor ImpTensor;
struct ImpTensor {
  GPTTensorInfo info;  /* name and shape the config implies */
  STTensor *pSrc;      /* the header entry, or NULL while not found */
};

/* One safetensors file of the checkpoint and its entries in aEntry. */
typedef struct ImpShard {
  char *zFile;             /* name inside the folder */
  FILE *pFile;
  int64_t iDataOff;        /* file offset of the data section */
  int iFirst, nEntry;      /* its entries: aEntry[iFirst .. iFirst + nEntry) */
} ImpShard;

/* Most shards accepted in model.safetensors.index.json. */
#define IMP_MAX_SHARDS 4096

/* State of one gpt_import() call. */
typedef struct GptImport GptImport;
struct GptImport {
  sqlite3 *db;
  const GptConn *pConn;    /* the connection's state (its schema read again at load?) */
  const char *zFunc;       /* "gpt_import" or "gpt_drop", for messages */
  const char *zName;       /* model name */
  const char *zDir;        /* the folder, as given */
  char *zErr;              /* first error, complete message */
  int rcErr;               /* SQLite's code for it (SQLITE_BUSY, _FULL, ...), or 0 */
  int bInterrupted;        /* the error is an interrupt */
  GptSavepoint sp;         /* the savepoint of the whole call (ext/savepoint.c) */
  GPTConfig cfg;
  /* model.safetensors, or the shards model.safetensors.index.json names */
  ImpShard *aShard;
  int nShard;
  STTensor *aEntry;        /* every header entry, shard after shard */
  int nEntry;
  int nEntryAlloc;
  char **azStr;            /* names and dtypes of aEntry, owned */
  int nStr;
  ImpTensor *aReq;         /* required tensors, sorted by name */
  int nReq;
  int bLmHead;             /* the file has lm_head.weight (GPT-2), or the head is
                           ** untied (config of the other architectures) */
  int bTied;               /* tie_word_embeddings of a Llama-family config */
  /* vocab.json */
  char *zVocab;
  int64_t nVocab;
  int nMerge;              /* merges stored */
  /* summary */
  int64_t nParam;
  int64_t nByte;
  unsigned mDtype;         /* bit (1 << GPT_*) of every stored dtype */
};

/*
** Records an error about FILE (or none when zFile is NULL) unless one is
** already recorded. Returns SQLITE_ERROR so that callers can write
** "return impError(...)".
*/
static int impError(GptImport *p, const char *zFile, const char *zFmt, ...) {
  va_list ap;
  char *zMsg;
  if (p->zErr) return SQLITE_ERROR;
  va_start(ap, zFmt);
  zMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  if (zFile) {
    p->zErr = sqlite3_mprintf("%s: model '%s': %s: %s", p->zFunc, p->zName,
                              zFile, zMsg ? zMsg : "out of memory");
  } else {
    p->zErr = sqlite3_mprintf("%s: model '%s': %s", p->zFunc, p->zName,
                              zMsg ? zMsg : "out of memory");
  }
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/*
** Records "out of memory" with SQLITE_NOMEM as the result code.
*/
static int impNoMem(GptImport *p) {
  if (p->zErr == 0) p->rcErr = SQLITE_NOMEM;
  return impError(p, 0, "out of memory");
}

/*
** Records the error of a failed SQLite call with result code rc: an interrupt
** reads "interrupted", anything else is the connection's error message. The
** call's code (SQLITE_BUSY, SQLITE_FULL, SQLITE_NOMEM, ...) becomes the
** result's, so that a caller can tell "retry later" from "bad input".
*/
static int impSqlError(GptImport *p, int rc) {
  char *zMsg;
  if ((rc & 0xff) == SQLITE_NOMEM) return impNoMem(p);
  /* Copied first: gptext_interrupted() may run a statement. */
  zMsg = sqlite3_mprintf("%s", sqlite3_errmsg(p->db));
  if ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(p->db)) {
    p->bInterrupted = 1;
    impError(p, 0, "interrupted");
  } else {
    if (p->zErr == 0 && rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
      p->rcErr = gptext_sql_code(p->db, rc);
    impError(p, 0, "%s", zMsg ? zMsg : "out of memory");
  }
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/*
** Prepares zSql, recording an error on failure.
*/
static int impPrepare(GptImport *p, const char *zSql, sqlite3_stmt **ppStmt) {
  int rc = sqlite3_prepare_v2(p->db, zSql, -1, ppStmt, 0);
  if (rc != SQLITE_OK) return impSqlError(p, rc);
  return SQLITE_OK;
}

/*
** The length of a prefix of z (n bytes) that is at most 60 bytes and does not
** end inside a UTF-8 character, for quoting file contents in messages.
*/
static int impClip(const char *z, int n) {
  if (n <= 60) return n;
  n = 60;
  while (n > 0 && (((unsigned char)z[n]) & 0xc0) == 0x80) n--;
  return n;
}

/*
** Describes a value of json_type() zType for a message: "a string",
** "an array", ... NULL means the key is missing.
*/
static const char *impJsonKind(const char *zType) {
  if (zType == 0) return "missing";
  if (strcmp(zType, "text") == 0) return "a string";
  if (strcmp(zType, "integer") == 0) return "an integer";
  if (strcmp(zType, "real") == 0) return "a real number";
  if (strcmp(zType, "array") == 0) return "an array";
  if (strcmp(zType, "object") == 0) return "an object";
  return zType; /* null, true, false */
}

/*
** Path of FILE inside the import folder, sqlite3_malloc'd.
*/
static char *impPath(GptImport *p, const char *zFile) {
  size_t n = strlen(p->zDir);
  if (n > 0 && p->zDir[n - 1] == '/') return sqlite3_mprintf("%s%s", p->zDir, zFile);
  return sqlite3_mprintf("%s/%s", p->zDir, zFile);
}

/*
** Opens FILE of the import folder for reading and returns its size in
** *pnSize. On failure records an error naming the file and the system error.
*/
static int impOpen(GptImport *p, const char *zFile, FILE **ppFile, int64_t *pnSize) {
  char *zPath = impPath(p, zFile);
  FILE *f = 0;
  struct stat st;
  int rc = SQLITE_OK;

  *ppFile = 0;
  *pnSize = 0;
  if (zPath == 0) return impNoMem(p);
  {
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer;
    ** it is refused below as not a regular file. */
    int fd = open(zPath, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
      f = fdopen(fd, "rb");
      if (f == 0) close(fd);
    }
  }
  if (f == 0) {
    rc = impError(p, zFile, "cannot open %s: %s", zPath, strerror(errno));
    goto done;
  }
  if (fstat(fileno(f), &st) != 0) {
    rc = impError(p, zFile, "cannot stat %s: %s", zPath, strerror(errno));
    goto done;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = impError(p, zFile, "%s is not a regular file", zPath);
    goto done;
  }
  *pnSize = (int64_t)st.st_size;
  *ppFile = f;
  f = 0;
done:
  if (f) fclose(f);
  sqlite3_free(zPath);
  return rc;
}

/*
** Reads FILE of the import folder, at most IMP_MAX_TEXT bytes, into a
** NUL-terminated sqlite3_malloc'd buffer. A NUL byte inside, or bytes that
** are not UTF-8, are an error: every file read this way is text, which JSON
** and Hugging Face's readers take as UTF-8 only.
*/
static int impReadText(GptImport *p, const char *zFile, char **pz, int64_t *pn) {
  FILE *f = 0;
  int64_t nSize = 0;
  char *z = 0;
  int rc;

  *pz = 0;
  *pn = 0;
  rc = impOpen(p, zFile, &f, &nSize);
  if (rc != SQLITE_OK) goto done;
  if (nSize > IMP_MAX_TEXT) {
    rc = impError(p, zFile, "file is too large, expected at most %d bytes, "
                  "found %lld", IMP_MAX_TEXT, (long long)nSize);
    goto done;
  }
  /* the text is read through SQLite's JSON functions, which cannot take a
  ** value over the connection's length limit (it read as "not valid JSON") */
  if (nSize > sqlite3_limit(p->db, SQLITE_LIMIT_LENGTH, -1)) {
    rc = impError(p, zFile, "%lld bytes is over this connection's SQLITE_LIMIT_LENGTH of %d",
                  (long long)nSize, sqlite3_limit(p->db, SQLITE_LIMIT_LENGTH, -1));
    p->rcErr = SQLITE_TOOBIG; /* as SQLite's own length errors */
    goto done;
  }
  z = sqlite3_malloc64(nSize + 1);
  if (z == 0) {
    rc = impNoMem(p);
    goto done;
  }
  if (nSize > 0) {
    size_t nRead = fread(z, 1, (size_t)nSize, f);
    if (nRead != (size_t)nSize) {
      /* a short read without an error is a file that shrank since its size
      ** was taken (errno then says nothing) */
      if (ferror(f)) rc = impError(p, zFile, "read error: %s", strerror(errno));
      else rc = impError(p, zFile, "the file ends at byte %lld of %lld (changed while read?)",
                         (long long)nRead, (long long)nSize);
      goto done;
    }
  }
  z[nSize] = 0;
  if (memchr(z, 0, (size_t)nSize)) {
    rc = impError(p, zFile, "NUL byte at offset %lld, expected text",
                  (long long)((char *)memchr(z, 0, (size_t)nSize) - z));
    goto done;
  }
  {
    /* SQLite's JSON functions pass any bytes through: a chat template or a
    ** name of invalid UTF-8 was stored, and failed only when used */
    int64_t iBad = gptext_utf8_invalid_at(z, (size_t)nSize);
    if (iBad >= 0) {
      rc = impError(p, zFile, "invalid UTF-8 at offset %lld, expected UTF-8 text",
                    (long long)iBad);
      goto done;
    }
  }
  *pz = z;
  *pn = nSize;
  z = 0;
done:
  sqlite3_free(z);
  if (f) fclose(f);
  return rc;
}

/*
** Checks with json_type() that the nJson bytes of zJson are a JSON object;
** otherwise records "not valid JSON, expected WHAT" or "found an array,
** expected WHAT" about zFile. json_type() is used rather than json_valid(),
** which answers 0 when the parser runs out of memory: an allocation failure
** must read "out of memory", not blame the file.
*/
static int impCheckObject(GptImport *p, const char *zFile, const char *zJson,
                          int64_t nJson, const char *zWhat) {
  sqlite3_stmt *pStmt = 0;
  const char *zType;
  int rc;

  rc = impPrepare(p, "SELECT json_type(?1)", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC,
                      SQLITE_UTF8);
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW) {
    /* "malformed JSON" is SQLITE_ERROR; running out of memory is
    ** SQLITE_NOMEM and an interrupt SQLITE_INTERRUPT */
    if (rc == SQLITE_ERROR && !gptext_interrupted(p->db)) {
      rc = impError(p, zFile, "not valid JSON, expected %s", zWhat);
    } else {
      rc = impSqlError(p, rc);
    }
    goto done;
  }
  rc = SQLITE_OK;
  zType = (const char *)sqlite3_column_text(pStmt, 0);
  if (sqlite3_column_type(pStmt, 0) == SQLITE_NULL) {
    rc = impError(p, zFile, "not valid JSON, expected %s", zWhat);
  } else if (zType == 0) {
    rc = impNoMem(p);
  } else if (strcmp(zType, "object")) {
    rc = impError(p, zFile, "found %s, expected %s", impJsonKind(zType), zWhat);
  }
done:
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Checks that no object of the JSON text zJson (nJson bytes, valid) has a key
** twice: SQLite's JSON functions read the first, Python's json module (and so
** transformers) the last, so such a file would import as another model than
** the one Hugging Face loads. Records an error naming the key's path.
*/
static int impCheckNoDupKeys(GptImport *p, const char *zFile, const char *zJson,
                             int64_t nJson) {
  sqlite3_stmt *pStmt = 0;
  int rc = impPrepare(p, "SELECT fullkey FROM json_tree(?1) WHERE key IS NOT NULL"
                      " GROUP BY parent, key HAVING count(*) > 1 LIMIT 1", &pStmt);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text64(pStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC, SQLITE_UTF8);
  rc = sqlite3_step(pStmt);
  if (rc == SQLITE_ROW) {
    const char *zKey = (const char *)sqlite3_column_text(pStmt, 0);
    int nKey = sqlite3_column_bytes(pStmt, 0);
    rc = zKey ? impError(p, zFile, "%.*s%s appears twice, expected each key once",
                         impClip(zKey, nKey), zKey, impClip(zKey, nKey) < nKey ? "..." : "")
              : impNoMem(p);
  } else {
    rc = rc == SQLITE_DONE ? SQLITE_OK : impSqlError(p, rc);
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Reads config.json into p->cfg and checks it with gpt_config_check().
** Integers must be JSON integers within the range of an int; the context
** length is n_positions, or n_ctx in configs without it; the LayerNorm
** epsilon defaults to 1e-5.
*/
static int impConfig(GptImport *p) {
  static const char *azKey[] = {"n_layer", "n_head", "n_embd", "n_positions",
                                "n_ctx", "vocab_size", "layer_norm_epsilon"};
  const int nKey = (int)(sizeof(azKey) / sizeof(azKey[0]));
  sqlite3_int64 aVal[7];
  int aHave[7];
  sqlite3_stmt *pStmt = 0;
  char *zJson = 0;
  int64_t nJson = 0;
  char zMsg[256];
  int i, rc;

  rc = impReadText(p, "config.json", &zJson, &nJson);
  if (rc != SQLITE_OK) goto done;
  rc = impCheckObject(p, "config.json", zJson, nJson, "a JSON object");
  if (rc == SQLITE_OK) rc = impCheckNoDupKeys(p, "config.json", zJson, nJson);
  if (rc != SQLITE_OK) goto done;
  {
    char zType[64];
    int bHf = gptext_config_is_hf(p->db, zJson, (int)nJson, zType, sizeof(zType));
    if (bHf < 0) {
      rc = impNoMem(p);
      goto done;
    }
    if (bHf) {
      int rcCfg = gptext_config_read(p->db, zJson, (int)nJson, &p->cfg, &p->bTied, zMsg,
                                     sizeof(zMsg));
      /* a statement of the reader failed (an interrupt, out of memory):
      ** SQLite's code goes on, as the loader's does (it was SQLITE_ERROR,
      ** with an empty reason) */
      if (rcCfg != SQLITE_OK && (rcCfg != SQLITE_ERROR || !zMsg[0]))
        rc = impSqlError(p, rcCfg);
      else if (rcCfg != SQLITE_OK)
        rc = impError(p, "config.json", "%s", zMsg);
      goto done;
    }
  }
  rc = impPrepare(p,
      "SELECT json_type(?1, '$.n_layer'), json_extract(?1, '$.n_layer'),"
      " json_type(?1, '$.n_head'), json_extract(?1, '$.n_head'),"
      " json_type(?1, '$.n_embd'), json_extract(?1, '$.n_embd'),"
      " json_type(?1, '$.n_positions'), json_extract(?1, '$.n_positions'),"
      " json_type(?1, '$.n_ctx'), json_extract(?1, '$.n_ctx'),"
      " json_type(?1, '$.vocab_size'), json_extract(?1, '$.vocab_size'),"
      " json_type(?1, '$.layer_norm_epsilon'),"
      " json_extract(?1, '$.layer_norm_epsilon'),"
      " json_type(?1, '$.n_inner'), json_extract(?1, '$.n_inner'),"
      " json_type(?1, '$.activation_function'),"
      " json_extract(?1, '$.activation_function'),"
      " json_type(?1, '$.scale_attn_weights'),"
      " json_type(?1, '$.scale_attn_by_inverse_layer_idx')", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC,
                      SQLITE_UTF8);
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW) {
    rc = impSqlError(p, rc);
    goto done;
  }
  rc = SQLITE_OK;
  p->cfg.ln_eps = 1e-5;
  for (i = 0; i < nKey; i++) {
    const char *zType = (const char *)sqlite3_column_text(pStmt, 2 * i);
    int eType = sqlite3_column_type(pStmt, 2 * i + 1);
    aHave[i] = zType != 0 && strcmp(zType, "null") != 0;
    aVal[i] = 0;
    if (i == nKey - 1) {
      /* layer_norm_epsilon: any finite number, range-checked below */
      double r = sqlite3_column_double(pStmt, 2 * i + 1);
      if (!aHave[i]) continue;
      if ((eType != SQLITE_INTEGER && eType != SQLITE_FLOAT)
          || (strcmp(zType, "integer") && strcmp(zType, "real"))) {
        rc = impError(p, "config.json", "\"%s\" is %s, expected a number",
                      azKey[i], impJsonKind(zType));
        goto done;
      }
      if (!isfinite(r)) {
        rc = impError(p, "config.json", "\"%s\" is not finite, expected a "
                      "number > 0 and <= 1", azKey[i]);
        goto done;
      }
      p->cfg.ln_eps = r;
      continue;
    }
    if (!aHave[i]) continue; /* n_positions and n_ctx are checked below */
    if (strcmp(zType, "integer") != 0) {
      rc = impError(p, "config.json", "\"%s\" is %s, expected an integer",
                    azKey[i], impJsonKind(zType));
      goto done;
    }
    if (eType != SQLITE_INTEGER
        || sqlite3_column_int64(pStmt, 2 * i + 1) < -2147483647LL
        || sqlite3_column_int64(pStmt, 2 * i + 1) > 2147483647LL) {
      rc = impError(p, "config.json", "\"%s\" is out of range, expected an "
                    "integer that fits 32 bits, found %s", azKey[i],
                    (const char *)sqlite3_column_text(pStmt, 2 * i + 1));
      goto done;
    }
    aVal[i] = sqlite3_column_int64(pStmt, 2 * i + 1);
  }
  for (i = 0; i < nKey - 1; i++) {
    if (i == 3 || i == 4) continue;
    if (!aHave[i]) {
      rc = impError(p, "config.json", "\"%s\" is missing, expected an integer",
                    azKey[i]);
      goto done;
    }
  }
  if (!aHave[3] && !aHave[4]) {
    rc = impError(p, "config.json", "\"n_positions\" is missing (and there is "
                  "no \"n_ctx\"), expected an integer");
    goto done;
  }
  {
    /* tie_word_embeddings, true when absent as in GPT2Config: a tied
    ** checkpoint's lm_head.weight, if it has one, is skipped, as
    ** transformers ties it to the embedding whatever the file holds */
    sqlite3_stmt *pTie = 0;
    rc = impPrepare(p, "SELECT json_type(?1, '$.tie_word_embeddings')", &pTie);
    if (rc != SQLITE_OK) goto done;
    sqlite3_bind_text64(pTie, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC, SQLITE_UTF8);
    rc = sqlite3_step(pTie);
    const char *zTie = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(pTie, 0) : 0;
    if (rc != SQLITE_ROW) {
      rc = impSqlError(p, rc);
    } else if (!zTie || strcmp(zTie, "true") == 0) {
      p->bTied = 1;
      rc = SQLITE_OK;
    } else if (strcmp(zTie, "false") == 0) {
      p->bTied = 0;
      rc = SQLITE_OK;
    } else {
      rc = impError(p, "config.json", "\"tie_word_embeddings\" is %s, expected true or false",
                    impJsonKind(zTie));
    }
    sqlite3_finalize(pTie);
    if (rc != SQLITE_OK) goto done;
  }
  p->cfg.n_layer = (int)aVal[0];
  p->cfg.n_head = (int)aVal[1];
  p->cfg.n_embd = (int)aVal[2];
  p->cfg.n_ctx = (int)(aHave[3] ? aVal[3] : aVal[4]);
  p->cfg.vocab_size = (int)aVal[5];
  {
    /* messages name the keys of config.json */
    const char *azName[GPT_KEY_COUNT] = {
      [GPT_KEY_N_LAYER] = azKey[0], [GPT_KEY_N_HEAD] = azKey[1], [GPT_KEY_N_EMBD] = azKey[2],
      [GPT_KEY_N_CTX] = aHave[3] ? azKey[3] : azKey[4], [GPT_KEY_VOCAB_SIZE] = azKey[5]};
    if (gpt_config_check_named(&p->cfg, azName, zMsg, sizeof(zMsg))) {
      rc = impError(p, "config.json", "%s", zMsg);
      goto done;
    }
  }

  /* GPT2Config options that change the computation: only the values of
  ** GPT-2 itself are accepted, so that no model imports to give wrong
  ** results. */
  {
    const char *zInner = (const char *)sqlite3_column_text(pStmt, 14);
    const char *zAct = (const char *)sqlite3_column_text(pStmt, 16);
    const char *zScale = (const char *)sqlite3_column_text(pStmt, 18);
    const char *zInv = (const char *)sqlite3_column_text(pStmt, 19);
    if (zInner && strcmp(zInner, "null") != 0
        && (sqlite3_column_type(pStmt, 15) != SQLITE_INTEGER
            || sqlite3_column_int64(pStmt, 15) != 4 * (sqlite3_int64)p->cfg.n_embd)) {
      rc = impError(p, "config.json", "\"n_inner\" is %s, expected null or %lld "
                    "(4 * n_embd)", (const char *)sqlite3_column_text(pStmt, 15),
                    4 * (sqlite3_int64)p->cfg.n_embd);
      goto done;
    }
    if (zAct && (strcmp(zAct, "text") != 0
                 || (strcmp((const char *)sqlite3_column_text(pStmt, 17), "gelu_new")
                     && strcmp((const char *)sqlite3_column_text(pStmt, 17),
                               "gelu_pytorch_tanh")))) {
      if (strcmp(zAct, "text") != 0) /* null printed as nothing */
        rc = impError(p, "config.json", "\"activation_function\" is %s, expected \"gelu_new\"",
                      impJsonKind(zAct));
      else
        rc = impError(p, "config.json", "\"activation_function\" is \"%s\", expected "
                      "\"gelu_new\"", (const char *)sqlite3_column_text(pStmt, 17));
      goto done;
    }
    if (zScale && strcmp(zScale, "true") != 0) {
      rc = impError(p, "config.json", "\"scale_attn_weights\" is %s, expected "
                    "true", impJsonKind(zScale));
      goto done;
    }
    if (zInv && strcmp(zInv, "false") != 0) {
      rc = impError(p, "config.json", "\"scale_attn_by_inverse_layer_idx\" is "
                    "%s, expected false", impJsonKind(zInv));
      goto done;
    }
  }
done:
  sqlite3_finalize(pStmt);
  sqlite3_free(zJson);
  return rc;
}

/*
** Keeps a copy of n bytes of z for the life of the import and returns it, or
** NULL when out of memory.
*/
static const char *impKeep(GptImport *p, const char *z, int n) {
  char *zCopy;
  char **az;
  if ((p->nStr & (p->nStr - 1)) == 0) {
    az = sqlite3_realloc64(p->azStr, sizeof(char *) * (p->nStr ? 2 * p->nStr : 16));
    if (az == 0) return 0;
    p->azStr = az;
  }
  zCopy = sqlite3_malloc64(n + 1);
  if (zCopy == 0) return 0;
  memcpy(zCopy, z, n);
  zCopy[n] = 0;
  p->azStr[p->nStr++] = zCopy;
  return zCopy;
}

/*
** Parses the safetensors header zJson with SQLite's JSON functions into
** p->aEntry: one row per tensor ("__metadata__" is skipped) with the JSON type
** and value of dtype, shape (up to ST_MAX_DIMS elements) and data_offsets.
** Every value must have the JSON type the format prescribes; ranges are
** checked afterwards by st_validate().
*/
static int impParseHeader(GptImport *p, const char *zFile, const char *zJson, int64_t nJson) {
  sqlite3_stmt *pStmt = 0;
  int rc;

  /* read through SQLite's JSON functions, as a text file is (impReadText) */
  if (nJson > sqlite3_limit(p->db, SQLITE_LIMIT_LENGTH, -1)) {
    rc = impError(p, zFile, "a header of %lld bytes is over this connection's "
                  "SQLITE_LIMIT_LENGTH of %d", (long long)nJson,
                  sqlite3_limit(p->db, SQLITE_LIMIT_LENGTH, -1));
    p->rcErr = SQLITE_TOOBIG;
    goto done;
  }
  rc = impCheckObject(p, zFile, zJson, nJson, "a JSON object as the header");
  if (rc != SQLITE_OK) goto done;
  rc = impPrepare(p,
      "WITH e(k, t, v) AS ("
      "  SELECT key, type, CASE WHEN type = 'object' THEN value END"
      "  FROM json_each(?1) WHERE key IS NOT '__metadata__')"
      "SELECT k, t,"                                                   /* 0 1 */
      " json_type(v, '$.dtype'), json_extract(v, '$.dtype'),"          /* 2 3 */
      " json_type(v, '$.shape'), json_array_length(v, '$.shape'),"     /* 4 5 */
      " (SELECT count(*) FROM json_each(v, '$.shape')"
      "   WHERE type <> 'integer' OR typeof(value) <> 'integer'),"     /* 6 */
      " json_extract(v, '$.shape'),"                                   /* 7 */
      " json_type(v, '$.data_offsets'),"                               /* 8 */
      " json_array_length(v, '$.data_offsets'),"                       /* 9 */
      " (SELECT count(*) FROM json_each(v, '$.data_offsets')"
      "   WHERE type <> 'integer' OR typeof(value) <> 'integer'),"     /* 10 */
      " json_extract(v, '$.data_offsets'),"                            /* 11 */
      " json_extract(v, '$.data_offsets[0]'),"                         /* 12 */
      " json_extract(v, '$.data_offsets[1]'),"                         /* 13 */
      " json_extract(v, '$.shape[0]'), json_extract(v, '$.shape[1]')," /* 14.. */
      " json_extract(v, '$.shape[2]'), json_extract(v, '$.shape[3]'),"
      " json_extract(v, '$.shape[4]'), json_extract(v, '$.shape[5]'),"
      " json_extract(v, '$.shape[6]'), json_extract(v, '$.shape[7]'),"
      " instr(json_extract(v, '$.dtype'), char(0)) OR instr(v, '\\u0000')"  /* 22 */
      " FROM e", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC,
                      SQLITE_UTF8);
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const char *zKey = (const char *)sqlite3_column_text(pStmt, 0);
    int nKey = sqlite3_column_bytes(pStmt, 0);
    const char *zType = (const char *)sqlite3_column_text(pStmt, 1);
    const char *zT;
    STTensor *t;
    int i;

    if (zKey == 0) zKey = "";
    if ((int)strlen(zKey) != nKey) {
      rc = impError(p, zFile, "tensor name \"%s\" has a NUL character", zKey);
      goto done;
    }
    if (zType == 0 || strcmp(zType, "object") != 0) {
      rc = impError(p, zFile, "tensor \"%s\" is %s, expected a JSON object",
                    zKey, impJsonKind(zType));
      goto done;
    }
    if (p->nEntry >= IMP_MAX_ENTRIES) {
      rc = impError(p, zFile, "too many tensors in the header, expected at "
                    "most %d", IMP_MAX_ENTRIES);
      goto done;
    }
    if (p->nEntry >= p->nEntryAlloc) {
      STTensor *a;
      int nAlloc = p->nEntryAlloc ? 2 * p->nEntryAlloc : 256;
      a = sqlite3_realloc64(p->aEntry, sizeof(STTensor) * (sqlite3_uint64)nAlloc);
      if (a == 0) {
        rc = impNoMem(p);
        goto done;
      }
      p->aEntry = a;
      p->nEntryAlloc = nAlloc;
    }
    t = &p->aEntry[p->nEntry];
    memset(t, 0, sizeof(*t));
    t->name = impKeep(p, zKey, nKey);
    if (t->name == 0) {
      rc = impNoMem(p);
      goto done;
    }
    p->nEntry++;

    zT = (const char *)sqlite3_column_text(pStmt, 2);
    if (zT == 0 || strcmp(zT, "text") != 0) {
      rc = impError(p, zFile, "tensor \"%s\": \"dtype\" is %s, expected a "
                    "string", t->name, impJsonKind(zT));
      goto done;
    }
    t->dtype_name = impKeep(p, (const char *)sqlite3_column_text(pStmt, 3),
                            gptext_column_bytes(pStmt, 3));
    if (t->dtype_name == 0) {
      rc = impNoMem(p);
      goto done;
    }
    if ((int)strlen(t->dtype_name) != sqlite3_column_bytes(pStmt, 3) ||
        sqlite3_column_int(pStmt, 22)) {
      /* "F32\u0000..." read as F32 (SQLite 3.40's json_extract stops there) */
      rc = impError(p, zFile, "tensor \"%s\": \"dtype\" holds a NUL character", t->name);
      goto done;
    }

    zT = (const char *)sqlite3_column_text(pStmt, 4);
    if (zT == 0 || strcmp(zT, "array") != 0) {
      rc = impError(p, zFile, "tensor \"%s\": \"shape\" is %s, expected an "
                    "array of integers", t->name, impJsonKind(zT));
      goto done;
    }
    if (sqlite3_column_int(pStmt, 6) != 0) {
      const char *zShape = (const char *)sqlite3_column_text(pStmt, 7);
      int nShape = sqlite3_column_bytes(pStmt, 7);
      rc = impError(p, zFile, "tensor \"%s\": \"shape\" is %.*s%s, expected "
                    "an array of integers", t->name, impClip(zShape, nShape),
                    zShape, impClip(zShape, nShape) < nShape ? "..." : "");
      goto done;
    }
    if (sqlite3_column_int64(pStmt, 5) > ST_MAX_DIMS) {
      rc = impError(p, zFile, "tensor \"%s\" has %lld dimensions, expected at "
                    "most %d", t->name, sqlite3_column_int64(pStmt, 5),
                    ST_MAX_DIMS);
      goto done;
    }
    t->ndim = sqlite3_column_int(pStmt, 5);
    for (i = 0; i < t->ndim; i++) t->shape[i] = sqlite3_column_int64(pStmt, 14 + i);

    zT = (const char *)sqlite3_column_text(pStmt, 8);
    if (zT == 0 || strcmp(zT, "array") != 0
        || sqlite3_column_int(pStmt, 9) != 2
        || sqlite3_column_int(pStmt, 10) != 0) {
      const char *zOff = (const char *)sqlite3_column_text(pStmt, 11);
      int nOff = sqlite3_column_bytes(pStmt, 11);
      if (zT == 0 || strcmp(zT, "array") != 0) {
        rc = impError(p, zFile, "tensor \"%s\": \"data_offsets\" is %s, "
                      "expected an array of 2 integers", t->name, impJsonKind(zT));
      } else {
        rc = impError(p, zFile, "tensor \"%s\": \"data_offsets\" is %.*s%s, "
                      "expected an array of 2 integers", t->name,
                      impClip(zOff, nOff), zOff,
                      impClip(zOff, nOff) < nOff ? "..." : "");
      }
      goto done;
    }
    t->begin = sqlite3_column_int64(pStmt, 12);
    t->end = sqlite3_column_int64(pStmt, 13);
  }
  if (rc != SQLITE_DONE) {
    rc = impSqlError(p, rc);
    goto done;
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** qsort comparator of required tensors, by name.
*/
static int impCmpReq(const void *a, const void *b) {
  return strcmp(((const ImpTensor *)a)->info.name, ((const ImpTensor *)b)->info.name);
}

/*
** bsearch comparator: a name against a required tensor.
*/
static int impCmpKey(const void *pKey, const void *b) {
  return strcmp((const char *)pKey, ((const ImpTensor *)b)->info.name);
}

/*
** The canonical name of a header entry: without "transformer.".
*/
static const char *impCanonical(const char *zName) {
  if (strncmp(zName, "transformer.", 12) == 0) return zName + 12;
  return zName;
}

/*
** True for the causal-mask buffers of older checkpoints, h.N.attn.bias and
** h.N.attn.masked_bias with N a layer of the config: they are skipped.
*/
static int impIsLegacyBuffer(GptImport *p, const char *z) {
  long n = 0;
  int nDigit = 0;
  if (strncmp(z, "h.", 2) != 0) return 0;
  z += 2;
  while (*z >= '0' && *z <= '9' && nDigit < 6) {
    n = n * 10 + (*z - '0');
    z++;
    nDigit++;
  }
  if (nDigit == 0 || (nDigit > 1 && z[-nDigit] == '0') || n >= p->cfg.n_layer) return 0;
  return strcmp(z, ".attn.bias") == 0 || strcmp(z, ".attn.masked_bias") == 0;
}

/*
** True for model.layers.N.self_attn.rotary_emb.inv_freq, a buffer older
** Llama checkpoints saved: the engine computes the frequencies itself.
*/
static int impIsRotaryBuffer(GptImport *p, const char *z) {
  const char *zSuffix = ".self_attn.rotary_emb.inv_freq";
  size_t n = strlen(z), nSuffix = strlen(zSuffix);
  (void)p;
  return strncmp(z, "model.layers.", 13) == 0 && n > nSuffix &&
         strcmp(z + n - nSuffix, zSuffix) == 0;
}

/*
** Opens one safetensors file of the folder as a new shard: reads, parses
** and validates its header, appending its entries to aEntry.
*/
static int impShardOpen(GptImport *p, const char *zFile) {
  char *zJson = 0;
  int64_t nJson = 0, nFile = 0;
  char zMsg[512];
  ImpShard *pShard;
  int rc;
  if (p->nShard % 16 == 0) {
    ImpShard *a = sqlite3_realloc64(p->aShard, sizeof(ImpShard) * (sqlite3_uint64)(p->nShard + 16));
    if (a == 0) return impNoMem(p);
    p->aShard = a;
  }
  pShard = &p->aShard[p->nShard++];
  memset(pShard, 0, sizeof(*pShard));
  pShard->zFile = sqlite3_mprintf("%s", zFile);
  pShard->iFirst = p->nEntry;
  if (pShard->zFile == 0) return impNoMem(p);
  rc = impOpen(p, zFile, &pShard->pFile, &nFile);
  if (rc != SQLITE_OK) goto done;
  if (st_read_header(pShard->pFile, nFile, &zJson, &nJson, &pShard->iDataOff, zMsg,
                     sizeof(zMsg))) {
    rc = impError(p, zFile, "%s", zMsg);
    goto done;
  }
  {
    /* the format's JSON is UTF-8 (Hugging Face's reader refuses anything
    ** else); SQLite's JSON functions would pass stray bytes on into names */
    int64_t iBad = gptext_utf8_invalid_at(zJson, (size_t)nJson);
    if (iBad >= 0) {
      rc = impError(p, zFile, "header is not valid UTF-8 at offset %lld", (long long)(8 + iBad));
      goto done;
    }
  }
  rc = impParseHeader(p, zFile, zJson, nJson);
  if (rc != SQLITE_OK) goto done;
  pShard->nEntry = p->nEntry - pShard->iFirst;
  if (st_validate(p->aEntry + pShard->iFirst, pShard->nEntry, nFile - pShard->iDataOff, zMsg,
                  sizeof(zMsg))) {
    rc = impError(p, zFile, "%s", zMsg);
    goto done;
  }
done:
  free(zJson);
  return rc;
}

/* A header entry's name and index, sorted by name to match the weight_map. */
typedef struct ImpEntryName {
  const char *zName;
  int iEntry;
} ImpEntryName;

/* qsort comparator of ImpEntryName, by name. */
static int impCmpEntry(const void *a, const void *b) {
  return strcmp(((const ImpEntryName *)a)->zName, ((const ImpEntryName *)b)->zName);
}

/* The shard that holds entry t. */
static const ImpShard *impShardOf(const GptImport *p, const STTensor *t) {
  int i = (int)(t - p->aEntry);
  for (int s = 0; s < p->nShard; s++)
    if (i >= p->aShard[s].iFirst && i < p->aShard[s].iFirst + p->aShard[s].nEntry)
      return &p->aShard[s];
  return &p->aShard[0];
}

/*
** Opens the shards of a sharded checkpoint: model.safetensors.index.json's
** weight_map names, for each tensor, the file that holds it. Every file name
** must be a plain name inside the folder (no path separator, no "..", ending
** in ".safetensors"), each is opened once, and every tensor must be in the
** shard the map names, and every mapped tensor in a shard.
*/
static int impShardIndex(GptImport *p) {
  static const char *zIndex = "model.safetensors.index.json";
  sqlite3_stmt *pStmt = 0;
  char *zJson = 0;
  int64_t nJson = 0;
  ImpEntryName *aOrder = 0; /* the entries, by name */
  unsigned char *aSeen = 0; /* (nEntry,) times the map named each entry */
  int rc;

  rc = impReadText(p, zIndex, &zJson, &nJson);
  if (rc != SQLITE_OK) goto done;
  rc = impCheckObject(p, zIndex, zJson, nJson, "a JSON object");
  /* a second "weight_map" would pick other files than transformers' */
  if (rc == SQLITE_OK) rc = impCheckNoDupKeys(p, zIndex, zJson, nJson);
  if (rc != SQLITE_OK) goto done;
  rc = impPrepare(p, "SELECT json_type(?1, '$.weight_map') = 'object', "
                  "(SELECT count(*) FROM json_each(?1, '$.weight_map') WHERE type <> 'text')", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC, SQLITE_UTF8);
  if ((rc = sqlite3_step(pStmt)) != SQLITE_ROW) { rc = impSqlError(p, rc); goto done; }
  if (!sqlite3_column_int(pStmt, 0) || sqlite3_column_int(pStmt, 1) != 0) {
    rc = impError(p, zIndex, "\"weight_map\" must be an object of tensor names to file names");
    goto done;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;
  /* the distinct files, in order of first appearance */
  rc = impPrepare(p, "SELECT value FROM json_each(?1, '$.weight_map') GROUP BY value "
                  "ORDER BY min(id)", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC, SQLITE_UTF8);
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const char *z = (const char *)sqlite3_column_text(pStmt, 0);
    int n = sqlite3_column_bytes(pStmt, 0);
    if (!z || n == 0 || n > 255 || (int)strlen(z) != n || strchr(z, '/') || strchr(z, '\\') ||
        z[0] == '.' || n < 13 || strcmp(z + n - 12, ".safetensors") != 0) {
      rc = impError(p, zIndex, "shard \"%s\" is not a .safetensors file name inside the folder",
                    z ? z : "");
      goto done;
    }
    if (p->nShard >= IMP_MAX_SHARDS) {
      rc = impError(p, zIndex, "more than %d shards", IMP_MAX_SHARDS);
      goto done;
    }
    if ((rc = impShardOpen(p, z)) != SQLITE_OK) goto done;
  }
  if (rc != SQLITE_DONE) { rc = impSqlError(p, rc); goto done; }
  if (p->nShard == 0) {
    rc = impError(p, zIndex, "\"weight_map\" names no file");
    goto done;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;
  /* each mapped name in the shard the map says, once; each entry mapped. One
  ** pass over the map against the entries sorted by name: a json_extract a
  ** tensor parsed the whole index each time on SQLite 3.40 (20,000 entries:
  ** 30 s) */
  aOrder = sqlite3_malloc64(sizeof(ImpEntryName) * (sqlite3_uint64)(p->nEntry ? p->nEntry : 1));
  aSeen = sqlite3_malloc64((sqlite3_uint64)(p->nEntry ? p->nEntry : 1));
  if (!aOrder || !aSeen) { rc = SQLITE_NOMEM; goto done; }
  for (int i = 0; i < p->nEntry; i++) {
    aOrder[i].zName = p->aEntry[i].name;
    aOrder[i].iEntry = i;
  }
  memset(aSeen, 0, (size_t)(p->nEntry ? p->nEntry : 1));
  qsort(aOrder, (size_t)p->nEntry, sizeof(ImpEntryName), impCmpEntry);
  for (int i = 1; i < p->nEntry; i++) {
    const STTensor *a = &p->aEntry[aOrder[i - 1].iEntry], *b = &p->aEntry[aOrder[i].iEntry];
    if (strcmp(a->name, b->name) == 0) {
      rc = impError(p, zIndex, "tensor \"%s\" is in both %s and %s", a->name,
                    impShardOf(p, a)->zFile, impShardOf(p, b)->zFile);
      goto done;
    }
  }
  rc = impPrepare(p, "SELECT key, value FROM json_each(?1, '$.weight_map')", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC, SQLITE_UTF8);
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const char *zKey = (const char *)sqlite3_column_text(pStmt, 0);
    const char *zWhere = (const char *)sqlite3_column_text(pStmt, 1);
    if (!zKey || !zWhere) { rc = SQLITE_NOMEM; goto done; }
    int lo = 0, hi = p->nEntry;
    while (lo < hi) { /* the first entry not before zKey */
      int mid = lo + (hi - lo) / 2;
      if (strcmp(aOrder[mid].zName, zKey) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo == p->nEntry || strcmp(aOrder[lo].zName, zKey) != 0) {
      rc = impError(p, zIndex, "the weight_map puts tensor \"%s\" in %s, which does not hold it",
                    zKey, zWhere);
      goto done;
    }
    const STTensor *t = &p->aEntry[aOrder[lo].iEntry];
    if (aSeen[aOrder[lo].iEntry]++) {
      rc = impError(p, zIndex, "the weight_map names tensor \"%s\" twice", zKey);
      goto done;
    }
    if (strcmp(zWhere, impShardOf(p, t)->zFile) != 0) {
      rc = impError(p, zIndex, "tensor \"%s\" is in %s, but the weight_map says %s", t->name,
                    impShardOf(p, t)->zFile, zWhere);
      goto done;
    }
  }
  if (rc != SQLITE_DONE) { rc = impSqlError(p, rc); goto done; }
  for (int i = 0; i < p->nEntry; i++) {
    if (!aSeen[i]) {
      rc = impError(p, zIndex, "tensor \"%s\" is in %s, but the weight_map does not list it",
                    p->aEntry[i].name, impShardOf(p, &p->aEntry[i])->zFile);
      goto done;
    }
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  sqlite3_free(zJson);
  sqlite3_free(aOrder);
  sqlite3_free(aSeen);
  return rc;
}

/*
** Opens model.safetensors (or, when the folder has none, the shards of
** model.safetensors.index.json), reads and parses the headers, validates
** the entries and matches them with the tensors the config requires: each
** must be there once, with exactly the expected shape and a weight dtype
** (F32, F16, BF16). Legacy attention buffers are skipped; any other name is
** an error.
*/
static int impSafetensors(GptImport *p) {
  const char *zFile = "model.safetensors";
  char *zSingle = impPath(p, zFile);
  struct stat st;
  int i, rc, bSharded;

  if (zSingle == 0) return impNoMem(p);
  bSharded = stat(zSingle, &st) != 0 && errno == ENOENT;
  sqlite3_free(zSingle);
  if (bSharded) {
    char *zIndex = impPath(p, "model.safetensors.index.json");
    if (zIndex == 0) return impNoMem(p);
    bSharded = stat(zIndex, &st) == 0;
    sqlite3_free(zIndex);
  }
  rc = bSharded ? impShardIndex(p) : impShardOpen(p, zFile);
  if (bSharded) zFile = "model.safetensors.index.json";
  if (rc != SQLITE_OK) goto done;

  /* The required list depends on whether the head is tied, by
  ** tie_word_embeddings (a tied checkpoint may still carry a copy of the
  ** head, skipped). */
  p->bLmHead = !p->bTied;
  p->nReq = gpt_n_tensors(&p->cfg, p->bLmHead);
  p->aReq = sqlite3_malloc64(sizeof(ImpTensor) * (sqlite3_uint64)p->nReq);
  if (p->aReq == 0) {
    rc = impNoMem(p);
    goto done;
  }
  for (i = 0; i < p->nReq; i++) {
    gpt_tensor_info(&p->cfg, p->bLmHead, i, &p->aReq[i].info);
    p->aReq[i].pSrc = 0;
  }
  qsort(p->aReq, (size_t)p->nReq, sizeof(ImpTensor), impCmpReq);

  for (i = 0; i < p->nEntry; i++) {
    STTensor *t = &p->aEntry[i];
    const char *zCanon = impCanonical(t->name);
    ImpTensor *r = bsearch(zCanon, p->aReq, (size_t)p->nReq, sizeof(ImpTensor),
                           impCmpKey);
    char zWant[64], zGot[256];
    if (r == 0) {
      if (impIsLegacyBuffer(p, zCanon)) continue;
      if (p->bTied && strcmp(zCanon, "lm_head.weight") == 0) continue;
      if (p->cfg.arch != GPT_ARCH_GPT2 && impIsRotaryBuffer(p, zCanon)) continue;
      rc = impError(p, impShardOf(p, t)->zFile, "unknown tensor \"%s\", expected only %s "
                    "tensors for the config (%d layer%s)", t->name,
                    p->cfg.arch == GPT_ARCH_GPT2 ? "GPT-2" : gpt_arch_name(p->cfg.arch),
                    p->cfg.n_layer, p->cfg.n_layer == 1 ? "" : "s");
      goto done;
    }
    if (r->pSrc) {
      rc = impError(p, impShardOf(p, t)->zFile, "tensor \"%s\" appears twice (also as \"%s\")",
                    t->name, r->pSrc->name);
      goto done;
    }
    r->pSrc = t;
    if (st_dtype_to_gpt(t->dtype) < 0) {
      rc = impError(p, impShardOf(p, t)->zFile, "tensor \"%s\" has dtype \"%s\", expected F32, "
                    "F16 or BF16", t->name, t->dtype_name);
      goto done;
    }
    st_shape_str(r->info.shape, r->info.ndim, zWant, sizeof(zWant));
    st_shape_str(t->shape, t->ndim, zGot, sizeof(zGot));
    if (strcmp(zWant, zGot) != 0) {
      rc = impError(p, impShardOf(p, t)->zFile, "tensor \"%s\" has the wrong shape, expected %s, "
                    "found %s", t->name, zWant, zGot);
      goto done;
    }
  }
  /* The first missing tensor in the model's order (the embedding first). */
  for (i = 0; i < p->nReq; i++) {
    GPTTensorInfo info;
    ImpTensor *r;
    gpt_tensor_info(&p->cfg, p->bLmHead, i, &info);
    r = bsearch(info.name, p->aReq, (size_t)p->nReq, sizeof(ImpTensor), impCmpKey);
    if (r && r->pSrc == 0) {
      char zWant[64];
      st_shape_str(info.shape, info.ndim, zWant, sizeof(zWant));
      rc = impError(p, zFile, "tensor \"%s\" is missing, expected shape %s",
                    info.name, zWant);
      goto done;
    }
  }
done:
  return rc;
}

/*
** Sets every token of the vocabulary object zJson ({"token": id, ...},
** checked already) in pTok, which makes the tokenizer's own checks (byte
** map, repeated strings; errors prefixed with zWhat), then copies it into
** gpt_vocab with one INSERT ... SELECT over json_each().
*/
static int impVocabStore(GptImport *p, const char *zFile, const char *zWhat,
                         const char *zJson, int64_t nJson, GPTTokenizer *pTok) {
  sqlite3_stmt *pStmt = 0;
  char zMsg[256];
  int rc = impPrepare(p, "SELECT value, key FROM json_each(?1)", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC, SQLITE_UTF8);
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    if (tok_set_token(pTok, sqlite3_column_int(pStmt, 0),
                      (const char *)sqlite3_column_text(pStmt, 1),
                      sqlite3_column_bytes(pStmt, 1), zMsg, sizeof(zMsg))) {
      rc = impError(p, zFile, "%s%s", zWhat, zMsg);
      goto done;
    }
  }
  if (rc != SQLITE_DONE) {
    rc = impSqlError(p, rc);
    goto done;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;
  rc = impPrepare(p, "INSERT INTO main.gpt_vocab(model, token_id, token) "
                  "SELECT ?2, value, key FROM json_each(?1) ORDER BY value", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC, SQLITE_UTF8);
  sqlite3_bind_text(pStmt, 2, p->zName, -1, SQLITE_STATIC);
  rc = sqlite3_step(pStmt);
  rc = rc == SQLITE_DONE ? SQLITE_OK : impSqlError(p, rc);
done:
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Checks vocab.json and copies it into gpt_vocab with one INSERT ... SELECT
** over json_each(). Every id must be an integer in [0, vocab_size), each id
** used once, each token once, and the count must equal vocab_size. The
** tokenizer is then built from the same rows (by the caller) for the checks
** the loader will make.
*/
static int impVocab(GptImport *p, GPTTokenizer *pTok) {
  static const char *zFile = "vocab.json";
  sqlite3_stmt *pStmt = 0;
  int rc;

  rc = impReadText(p, zFile, &p->zVocab, &p->nVocab);
  if (rc != SQLITE_OK) goto done;
  rc = impCheckObject(p, zFile, p->zVocab, p->nVocab,
                      "a JSON object mapping tokens to ids");
  if (rc != SQLITE_OK) goto done;

  /* The first token whose id is not an integer in range. */
  rc = impPrepare(p, "SELECT key, type, atom FROM json_each(?1) WHERE type <> "
                  "'integer' OR typeof(value) <> 'integer' OR value < 0 OR "
                  "value >= ?2 LIMIT 1", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, p->zVocab, (sqlite3_uint64)p->nVocab,
                      SQLITE_STATIC, SQLITE_UTF8);
  sqlite3_bind_int(pStmt, 2, p->cfg.vocab_size);
  rc = sqlite3_step(pStmt);
  if (rc == SQLITE_ROW) {
    const char *zKey = (const char *)sqlite3_column_text(pStmt, 0);
    int nKey = sqlite3_column_bytes(pStmt, 0);
    const char *zType = (const char *)sqlite3_column_text(pStmt, 1);
    if (zType && strcmp(zType, "integer") == 0) {
      rc = impError(p, zFile, "token \"%.*s\" has id %s, expected 0 to %d "
                    "(vocab_size of config.json)", impClip(zKey, nKey), zKey,
                    (const char *)sqlite3_column_text(pStmt, 2),
                    p->cfg.vocab_size - 1);
    } else {
      rc = impError(p, zFile, "token \"%.*s\" has an id that is %s, expected "
                    "an integer", impClip(zKey, nKey), zKey, impJsonKind(zType));
    }
    goto done;
  }
  if (rc != SQLITE_DONE) {
    rc = impSqlError(p, rc);
    goto done;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;

  /* Count, distinct ids and distinct tokens. */
  rc = impPrepare(p, "SELECT count(*), count(DISTINCT value), count(DISTINCT key) "
                  "FROM json_each(?1)", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text64(pStmt, 1, p->zVocab, (sqlite3_uint64)p->nVocab,
                      SQLITE_STATIC, SQLITE_UTF8);
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW) {
    rc = impSqlError(p, rc);
    goto done;
  }
  if (sqlite3_column_int64(pStmt, 1) != sqlite3_column_int64(pStmt, 0)) {
    sqlite3_finalize(pStmt);
    pStmt = 0;
    rc = impPrepare(p, "SELECT value, min(key), max(key) FROM json_each(?1) "
                    "GROUP BY value HAVING count(*) > 1 ORDER BY value LIMIT 1",
                    &pStmt);
    if (rc != SQLITE_OK) goto done;
    sqlite3_bind_text64(pStmt, 1, p->zVocab, (sqlite3_uint64)p->nVocab,
                        SQLITE_STATIC, SQLITE_UTF8);
    if (sqlite3_step(pStmt) == SQLITE_ROW) {
      rc = impError(p, zFile, "id %lld is given to more than one token (\"%s\" "
                    "and \"%s\"), expected each id once",
                    sqlite3_column_int64(pStmt, 0),
                    (const char *)sqlite3_column_text(pStmt, 1),
                    (const char *)sqlite3_column_text(pStmt, 2));
    } else {
      rc = impSqlError(p, sqlite3_errcode(p->db));
    }
    goto done;
  }
  if (sqlite3_column_int64(pStmt, 2) != sqlite3_column_int64(pStmt, 0)) {
    rc = impError(p, zFile, "a token appears more than once, expected %lld "
                  "distinct tokens, found %lld", sqlite3_column_int64(pStmt, 0),
                  sqlite3_column_int64(pStmt, 2));
    goto done;
  }
  if (sqlite3_column_int64(pStmt, 0) != p->cfg.vocab_size) {
    rc = impError(p, zFile, "wrong number of tokens, expected %d (vocab_size "
                  "of config.json), found %lld", p->cfg.vocab_size,
                  sqlite3_column_int64(pStmt, 0));
    goto done;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;

  rc = impVocabStore(p, zFile, "", p->zVocab, p->nVocab, pTok);
done:
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Reads merges.txt and stores it in gpt_merges: an optional first line
** starting with "#version", then one merge per line, exactly two non-empty
** tokens separated by one space (a trailing CR is ignored; empty lines are
** skipped). Rank 0 is the first merge. Each merge is also added to the
** tokenizer, which rejects a merge of unknown tokens or one whose result is
** not in the vocabulary.
*/
static int impMerges(GptImport *p, GPTTokenizer *pTok) {
  static const char *zFile = "merges.txt";
  sqlite3_stmt *pStmt = 0;
  char *zText = 0;
  int64_t nText = 0, i = 0;
  int iLine = 0, rc;
  char zMsg[256];

  rc = impReadText(p, zFile, &zText, &nText);
  if (rc != SQLITE_OK) goto done;
  rc = impPrepare(p, "INSERT INTO main.gpt_merges(model, rank, left, right) "
                  "VALUES(?1, ?2, ?3, ?4)", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 1, p->zName, -1, SQLITE_STATIC);
  while (i < nText) {
    char *zLine = &zText[i];
    char *zEol = memchr(zLine, '\n', (size_t)(nText - i));
    int64_t nLine = zEol ? zEol - zLine : nText - i;
    char *zSp;
    int nLeft, nRight;

    i += nLine + 1;
    iLine++;
    if (nLine > 0 && zLine[nLine - 1] == '\r') nLine--;
    if (iLine == 1 && nLine >= 8 && memcmp(zLine, "#version", 8) == 0) continue;
    if (nLine == 0) continue;
    zSp = memchr(zLine, ' ', (size_t)nLine);
    nLeft = zSp ? (int)(zSp - zLine) : 0;
    nRight = zSp ? (int)(nLine - nLeft - 1) : 0;
    if (zSp == 0 || nLeft == 0 || nRight == 0 || nLine > 100000
        || memchr(zSp + 1, ' ', (size_t)nRight)) {
      int n = nLine > 1000 ? 1000 : (int)nLine;
      rc = impError(p, zFile, "line %d is \"%.*s%s\", expected two tokens "
                    "separated by one space", iLine, impClip(zLine, n), zLine,
                    impClip(zLine, n) < nLine ? "..." : "");
      goto done;
    }
    if (tok_add_merge(pTok, p->nMerge, zLine, nLeft, zSp + 1, nRight, zMsg,
                      sizeof(zMsg))) {
      rc = impError(p, zFile, "line %d: %s", iLine, zMsg);
      goto done;
    }
    sqlite3_bind_int(pStmt, 2, p->nMerge);
    sqlite3_bind_text(pStmt, 3, zLine, nLeft, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 4, zSp + 1, nRight, SQLITE_STATIC);
    rc = sqlite3_step(pStmt);
    if (rc != SQLITE_DONE) {
      rc = impSqlError(p, rc);
      goto done;
    }
    sqlite3_reset(pStmt);
    p->nMerge++;
  }
  rc = SQLITE_OK;
  if (tok_finish(pTok, zMsg, sizeof(zMsg))) {
    rc = impError(p, "vocab.json and merges.txt", "%s", zMsg);
    goto done;
  }
done:
  sqlite3_finalize(pStmt);
  sqlite3_free(zText);
  return rc;
}

/* ------------------------------------------------ tokenizer.json import */

/* Largest chat template accepted, and most stop ids (gpt_ext.h). */
#define IMP_MAX_TEMPLATE GPT_MAX_CHAT_TEMPLATE

/* An added token of tokenizer.json, held while importing. */
typedef struct ImpAdded {
  int id;
  int bSpecial;
  char *zContent;          /* sqlite3_malloc'd */
  int nContent;
} ImpAdded;

/* What tokenizer.json and tokenizer_config.json say besides the vocabulary
** and merges; becomes the gpt_tokenizer row. */
typedef struct ImpHf {
  char *zJson;             /* tokenizer.json without model.vocab and model.merges */
  int64_t nJson;
  char *zVocabJson;        /* model.vocab, a JSON object */
  int64_t nVocabJson;
  char *zMergesJson;       /* model.merges, a JSON array */
  int64_t nMergesJson;
  char *zStages;           /* JSON array of Split stages, sqlite3_malloc'd */
  int bNfc;
  int bIgnoreMerges;
  ImpAdded *aAdded;
  int nAdded;
  int nTok;                /* tokens: highest id + 1 */
  int iPrefix;             /* id TemplateProcessing puts before the text, or -1 */
  int bTemplate;           /* a TemplateProcessing was found */
  int bos, eos;            /* ids, or -1 */
  char *zBos, *zEos;       /* their texts, sqlite3_malloc'd, or NULL */
  int bAddBos;
  int aStop[GPT_MAX_STOP_IDS];
  int nStop;
  char *zTemplate;         /* chat_template, sqlite3_malloc'd, or NULL */
} ImpHf;

/*
** Prepares zSql with the nJson bytes of zJson bound as ?1.
*/
static int impJsonPrepare(GptImport *p, const char *zSql, const char *zJson,
                          int64_t nJson, sqlite3_stmt **ppStmt) {
  int rc = impPrepare(p, zSql, ppStmt);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text64(*ppStmt, 1, zJson, (sqlite3_uint64)nJson, SQLITE_STATIC,
                        SQLITE_UTF8);
  }
  return rc;
}

/*
** True when FILE exists in the import folder (whatever it is: impOpen then
** says what is wrong with it).
*/
static int impHasFile(GptImport *p, const char *zFile) {
  struct stat st;
  char *zPath = impPath(p, zFile);
  int bHas = zPath && stat(zPath, &st) == 0;
  sqlite3_free(zPath);
  return bHas;
}

/*
** Appends {"KIND": PATTERN} to the JSON array of Split stages in h->zStages.
*/
static int impHfAddStage(GptImport *p, ImpHf *h, const char *zKind, const char *zPat,
                         int nPat) {
  sqlite3_stmt *pStmt = 0;
  int rc = impPrepare(p, "SELECT json_insert(coalesce(?1, '[]'), '$[#]', "
                      "json_object(?2, ?3))", &pStmt);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text(pStmt, 1, h->zStages, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 2, zKind, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 3, zPat, nPat, SQLITE_STATIC);
  rc = sqlite3_step(pStmt);
  if (rc == SQLITE_ROW) {
    char *z = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(pStmt, 0));
    sqlite3_free(h->zStages);
    h->zStages = z;
    rc = z ? SQLITE_OK : impNoMem(p);
  } else {
    rc = impSqlError(p, rc);
  }
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Reads normalizer, pre_tokenizer and model options of tokenizer.json.
** Accepted: normalizer null, NFC, or a Sequence of NFC; pre_tokenizer
** ByteLevel, or a Sequence of Split (behavior Isolated, not inverted) and
** Digits stages followed by ByteLevel; ByteLevel's use_regex adds GPT-2's
** pattern; add_prefix_space must be false. model is BPE without dropout or
** byte fallback; the decoder is ByteLevel (alone or in a Sequence) or none.
** Anything else is refused by name.
*/
static int impHfOptions(GptImport *p, ImpHf *h) {
  static const char *zFile = "tokenizer.json";
  sqlite3_stmt *pStmt = 0;
  int rc, bByteLevel = 0, nStage = 0;

  rc = impJsonPrepare(p,
      "SELECT json_extract(?1, '$.normalizer.type'),"
      " (SELECT group_concat(coalesce(json_extract(CASE type WHEN 'object' THEN value END,"
      "   '$.type'), 'without a type'), ', ') FROM json_each(?1, '$.normalizer.normalizers')"
      "  WHERE coalesce(json_extract(CASE type WHEN 'object' THEN value END, '$.type'), '?')"
      "   <> 'NFC'),"
      " json_type(?1, '$.normalizer'),"
      " json_extract(?1, '$.model.type'), json_type(?1, '$.model.dropout'),"
      " json_type(?1, '$.model.byte_fallback'),"
      " json_extract(?1, '$.model.continuing_subword_prefix'),"
      " json_extract(?1, '$.model.end_of_word_suffix'),"
      " json_type(?1, '$.model.ignore_merges'), json_extract(?1, '$.decoder.type'),"
      " (SELECT group_concat(coalesce(json_extract(CASE type WHEN 'object' THEN value END,"
      "   '$.type'), 'without a type'), ', ') FROM json_each(?1, '$.decoder.decoders')"
      "  WHERE coalesce(json_extract(CASE type WHEN 'object' THEN value END, '$.type'), '?')"
      "   <> 'ByteLevel'),"
      " (SELECT count(*) FROM json_each(?1, '$.normalizer.normalizers')),"
      " json_type(?1, '$.decoder')",
      h->zJson, h->nJson, &pStmt);
  if (rc != SQLITE_OK) goto done;
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW) {
    rc = impSqlError(p, rc);
    goto done;
  }
  {
    const char *zNorm = (const char *)sqlite3_column_text(pStmt, 0);
    const char *zOther = (const char *)sqlite3_column_text(pStmt, 1);
    const char *zNormType = (const char *)sqlite3_column_text(pStmt, 2);
    const char *zModel = (const char *)sqlite3_column_text(pStmt, 3);
    const char *zDropout = (const char *)sqlite3_column_text(pStmt, 4);
    const char *zFallback = (const char *)sqlite3_column_text(pStmt, 5);
    const char *zPrefix = (const char *)sqlite3_column_text(pStmt, 6);
    const char *zSuffix = (const char *)sqlite3_column_text(pStmt, 7);
    const char *zIgnore = (const char *)sqlite3_column_text(pStmt, 8);
    const char *zDecoder = (const char *)sqlite3_column_text(pStmt, 9);
    const char *zDecOther = (const char *)sqlite3_column_text(pStmt, 10);
    const char *zDecType = (const char *)sqlite3_column_text(pStmt, 12);
    if (zNormType && strcmp(zNormType, "null") != 0) {
      if (zNorm && strcmp(zNorm, "NFC") == 0) {
        h->bNfc = 1;
      } else if (zNorm && strcmp(zNorm, "Sequence") == 0 && !zOther) {
        h->bNfc = sqlite3_column_int(pStmt, 11) > 0;
      } else {
        rc = impError(p, zFile, "normalizer %s is not supported, expected none or NFC",
                      zOther ? zOther : zNorm ? zNorm : "without a type");
        goto done;
      }
    }
    if (zModel && strcmp(zModel, "BPE") != 0) {
      rc = impError(p, zFile, "model type %s is not supported, expected BPE", zModel);
      goto done;
    }
    if (zDropout && strcmp(zDropout, "null") != 0) {
      rc = impError(p, zFile, "model dropout is not supported, expected null");
      goto done;
    }
    if (zFallback && strcmp(zFallback, "false") && strcmp(zFallback, "null")) {
      rc = impError(p, zFile, "model byte_fallback is %s, which is not supported, expected "
                    "false (byte-level BPE)", impJsonKind(zFallback));
      goto done;
    }
    if (zIgnore && strcmp(zIgnore, "true") && strcmp(zIgnore, "false") &&
        strcmp(zIgnore, "null")) {
      rc = impError(p, zFile, "model ignore_merges is %s, expected true or false",
                    impJsonKind(zIgnore));
      goto done;
    }
    /* the decoder turns ids back into text: any other than ByteLevel (a
    ** Metaspace, a Replace, a Strip) would make gpt_detokenize differ from
    ** Hugging Face's decode */
    if (zDecType && strcmp(zDecType, "null") &&
        !(zDecoder && strcmp(zDecoder, "ByteLevel") == 0) &&
        !(zDecoder && strcmp(zDecoder, "Sequence") == 0 && !zDecOther)) {
      rc = impError(p, zFile, "decoder %s is not supported, expected ByteLevel (byte-level BPE)",
                    zDecOther ? zDecOther : zDecoder ? zDecoder : "without a type");
      goto done;
    }
    if ((zPrefix && zPrefix[0]) || (zSuffix && zSuffix[0])) {
      rc = impError(p, zFile, "model continuing_subword_prefix and end_of_word_suffix "
                    "are not supported, expected null or \"\"");
      goto done;
    }
    h->bIgnoreMerges = zIgnore && strcmp(zIgnore, "true") == 0;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;

  /* The pre-tokenizer: one element, or the elements of a Sequence. */
  rc = impJsonPrepare(p,
      "SELECT json_extract(o, '$.type'), json_extract(o, '$.pattern.Regex'),"
      " json_type(o, '$.pattern.Regex'), json_extract(o, '$.pattern.String'),"
      " json_type(o, '$.pattern.String'), json_extract(o, '$.behavior'),"
      " json_type(o, '$.invert'), json_type(o, '$.individual_digits'),"
      " json_type(o, '$.add_prefix_space'), json_type(o, '$.use_regex'), t"
      /* a stage that is a bare string is not JSON: only objects are looked into */
      " FROM (SELECT e.type AS t, CASE e.type WHEN 'object' THEN e.value END AS o"
      "  FROM (SELECT CASE WHEN json_extract(?1, '$.pre_tokenizer.type') = 'Sequence'"
      "   THEN coalesce(?1 -> '$.pre_tokenizer.pretokenizers', '[]')"
      "   ELSE '[' || coalesce(?1 -> '$.pre_tokenizer', 'null') || ']' END AS a),"
      "  json_each(a) AS e)", h->zJson, h->nJson, &pStmt);
  if (rc != SQLITE_OK) goto done;
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const char *zType = (const char *)sqlite3_column_text(pStmt, 0);
    const char *zTrue = "true";
    const char *zKind = (const char *)sqlite3_column_text(pStmt, 10);
    nStage++;
    rc = SQLITE_OK;
    if (zKind && strcmp(zKind, "object") && strcmp(zKind, "null")) {
      rc = impError(p, zFile, "pre_tokenizer %d is %s, expected an object", nStage,
                    impJsonKind(zKind));
      goto done;
    }
    if (!zType) {
      rc = impError(p, zFile, "pre_tokenizer %d has no type, expected ByteLevel, Split or "
                    "Digits (byte-level BPE)", nStage);
      goto done;
    }
    if (bByteLevel) {
      rc = impError(p, zFile, "pre_tokenizer %s comes after ByteLevel, expected ByteLevel "
                    "last", zType);
      goto done;
    }
    if (strcmp(zType, "Split") == 0) {
      const char *zBehavior = (const char *)sqlite3_column_text(pStmt, 5);
      const char *zInvert = (const char *)sqlite3_column_text(pStmt, 6);
      int bRegex = sqlite3_column_text(pStmt, 2) &&
                   strcmp((const char *)sqlite3_column_text(pStmt, 2), "text") == 0;
      int bString = sqlite3_column_text(pStmt, 4) &&
                    strcmp((const char *)sqlite3_column_text(pStmt, 4), "text") == 0;
      if (!zBehavior || strcmp(zBehavior, "Isolated") != 0) {
        rc = impError(p, zFile, "pre_tokenizer Split behavior %s is not supported, expected "
                      "Isolated", zBehavior ? zBehavior : "missing");
        goto done;
      }
      if (zInvert && strcmp(zInvert, zTrue) == 0) {
        rc = impError(p, zFile, "pre_tokenizer Split with invert is not supported");
        goto done;
      }
      if (!bRegex && !bString) {
        rc = impError(p, zFile, "pre_tokenizer Split has no pattern, expected "
                      "{\"Regex\": ...} or {\"String\": ...}");
        goto done;
      }
      rc = impHfAddStage(p, h, bRegex ? "regex" : "string",
                         (const char *)sqlite3_column_text(pStmt, bRegex ? 1 : 3),
                         gptext_column_bytes(pStmt, bRegex ? 1 : 3));
    } else if (strcmp(zType, "Digits") == 0) {
      const char *zEach = (const char *)sqlite3_column_text(pStmt, 7);
      int bEach = zEach && strcmp(zEach, zTrue) == 0;
      rc = impHfAddStage(p, h, "regex", bEach ? "\\p{N}" : "\\p{N}+", -1);
    } else if (strcmp(zType, "ByteLevel") == 0) {
      const char *zPrefix = (const char *)sqlite3_column_text(pStmt, 8);
      const char *zRegex = (const char *)sqlite3_column_text(pStmt, 9);
      if (zPrefix && strcmp(zPrefix, zTrue) == 0) {
        rc = impError(p, zFile, "pre_tokenizer ByteLevel with add_prefix_space is not "
                      "supported, expected false");
        goto done;
      }
      bByteLevel = 1;
      /* use_regex defaults to true */
      if (!zRegex || strcmp(zRegex, zTrue) == 0)
        rc = impHfAddStage(p, h, "regex", tok_gpt2_pattern, -1);
    } else {
      rc = impError(p, zFile, "pre_tokenizer %s is not supported, expected ByteLevel, Split "
                    "or Digits (byte-level BPE)", zType);
      goto done;
    }
    if (rc != SQLITE_OK) goto done;
    if (nStage > TOK_MAX_SPLITS) {
      rc = impError(p, zFile, "pre_tokenizer has more than %d stages", TOK_MAX_SPLITS);
      goto done;
    }
  }
  if (rc != SQLITE_DONE) {
    rc = impSqlError(p, rc);
    goto done;
  }
  if (!bByteLevel) {
    rc = impError(p, zFile, "pre_tokenizer has no ByteLevel, expected byte-level BPE "
                  "(ByteLevel, or Split then ByteLevel)");
    goto done;
  }
  /* no stage at all (ByteLevel without its regex): an empty list, which the
  ** stores below read (out of memory here was overwritten by SQLITE_OK, and
  ** the store then took strlen of NULL) */
  if (!h->zStages && !(h->zStages = sqlite3_mprintf("[]"))) {
    rc = impNoMem(p);
    goto done;
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Reads added_tokens: each an object with an integer id in range, a
** non-empty string content, and no single_word, lstrip or rstrip.
*/
static int impHfAdded(GptImport *p, ImpHf *h) {
  static const char *zFile = "tokenizer.json";
  sqlite3_stmt *pStmt = 0;
  int rc, n;

  rc = impJsonPrepare(p, "SELECT json_type(?1, '$.added_tokens'),"
                      " json_array_length(?1, '$.added_tokens')", h->zJson, h->nJson, &pStmt);
  if (rc != SQLITE_OK) goto done;
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW) {
    rc = impSqlError(p, rc);
    goto done;
  }
  {
    const char *zType = (const char *)sqlite3_column_text(pStmt, 0);
    if (zType && strcmp(zType, "array") && strcmp(zType, "null")) {
      rc = impError(p, zFile, "added_tokens is %s, expected an array", impJsonKind(zType));
      goto done;
    }
  }
  n = sqlite3_column_int(pStmt, 1);
  if (n > TOK_MAX_ADDED) {
    rc = impError(p, zFile, "added_tokens has %d tokens, expected at most %d", n,
                  TOK_MAX_ADDED);
    goto done;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;
  if (n == 0) {
    rc = SQLITE_OK;
    goto done;
  }
  h->aAdded = sqlite3_malloc64(sizeof(ImpAdded) * (sqlite3_uint64)n);
  if (!h->aAdded) {
    rc = impNoMem(p);
    goto done;
  }
  memset(h->aAdded, 0, sizeof(ImpAdded) * (size_t)n);
  rc = impJsonPrepare(p,
      "SELECT json_type(o, '$.id'), json_extract(o, '$.id'),"
      " json_type(o, '$.content'), json_extract(o, '$.content'),"
      " json_type(o, '$.special'), json_type(o, '$.single_word'),"
      " json_type(o, '$.lstrip'), json_type(o, '$.rstrip'), key, type"
      " FROM (SELECT key, type, CASE type WHEN 'object' THEN value END AS o"
      "  FROM json_each(?1, '$.added_tokens'))", h->zJson, h->nJson, &pStmt);
  if (rc != SQLITE_OK) goto done;
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW && h->nAdded < n) {
    const char *zIdType = (const char *)sqlite3_column_text(pStmt, 0);
    const char *zType = (const char *)sqlite3_column_text(pStmt, 2);
    const char *zContent = (const char *)sqlite3_column_text(pStmt, 3);
    int nContent = sqlite3_column_bytes(pStmt, 3);
    sqlite3_int64 id = sqlite3_column_int64(pStmt, 1);
    int k = sqlite3_column_int(pStmt, 8);
    const char *zKind = (const char *)sqlite3_column_text(pStmt, 9);
    if (!zKind || strcmp(zKind, "object")) {
      rc = impError(p, zFile, "added_tokens[%d] is %s, expected an object", k,
                    impJsonKind(zKind));
      goto done;
    }
    if (!zIdType || strcmp(zIdType, "integer") || id < 0 || id >= p->cfg.vocab_size) {
      rc = impError(p, zFile, "added_tokens[%d] has id %s, expected an integer 0 to %d "
                    "(vocab_size of config.json)", k,
                    zIdType && !strcmp(zIdType, "integer")
                        ? (const char *)sqlite3_column_text(pStmt, 1) : impJsonKind(zIdType),
                    p->cfg.vocab_size - 1);
      goto done;
    }
    if (!zType || strcmp(zType, "text") || nContent <= 0 || nContent > TOK_MAX_ADDED_LEN) {
      rc = impError(p, zFile, "added_tokens[%d] content is %s, expected a string of 1 to %d "
                    "bytes", k, zType && !strcmp(zType, "text") ? "too long or empty"
                    : impJsonKind(zType), TOK_MAX_ADDED_LEN);
      goto done;
    }
    for (int c = 5; c <= 7; c++) {
      const char *zFlag = (const char *)sqlite3_column_text(pStmt, c);
      if (zFlag && strcmp(zFlag, "true") == 0) {
        static const char *azFlag[] = {"single_word", "lstrip", "rstrip"};
        rc = impError(p, zFile, "added_tokens[%d] \"%.*s\" has %s, which is not supported",
                      k, impClip(zContent, nContent), zContent, azFlag[c - 5]);
        goto done;
      }
    }
    ImpAdded *a = &h->aAdded[h->nAdded];
    a->id = (int)id;
    a->bSpecial = sqlite3_column_text(pStmt, 4) &&
                  strcmp((const char *)sqlite3_column_text(pStmt, 4), "true") == 0;
    a->zContent = sqlite3_malloc(nContent + 1);
    if (!a->zContent) {
      rc = impNoMem(p);
      goto done;
    }
    memcpy(a->zContent, zContent, (size_t)nContent + 1);
    a->nContent = nContent;
    h->nAdded++;
  }
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    rc = impSqlError(p, rc);
    goto done;
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Checks model.vocab (ids integers in [0, vocab_size), each id and token
** once), sizes the tokenizer to the highest id of it and added_tokens plus
** one, and stores every token in gpt_vocab and in the tokenizer. Added
** tokens missing from model.vocab are stored in byte-level form too.
*/
static int impHfVocab(GptImport *p, ImpHf *h, GPTTokenizer **ppTok) {
  static const char *zFile = "tokenizer.json";
  sqlite3_stmt *pStmt = 0;
  GPTTokenizer *t = 0;
  char zMsg[256];
  sqlite3_int64 nMax = -1;
  int rc;

  rc = impJsonPrepare(p, "SELECT key, type, atom FROM json_each(?1)"
                      " WHERE type <> 'integer' OR value < 0 OR value >= ?2 LIMIT 1",
                      h->zVocabJson, h->nVocabJson, &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_int(pStmt, 2, p->cfg.vocab_size);
  rc = sqlite3_step(pStmt);
  if (rc == SQLITE_ROW) {
    const char *zKey = (const char *)sqlite3_column_text(pStmt, 0);
    int nKey = sqlite3_column_bytes(pStmt, 0);
    const char *zType = (const char *)sqlite3_column_text(pStmt, 1);
    if (zType && strcmp(zType, "integer") == 0) {
      rc = impError(p, zFile, "model.vocab token \"%.*s\" has id %s, expected 0 to %d "
                    "(vocab_size of config.json)", impClip(zKey, nKey), zKey,
                    (const char *)sqlite3_column_text(pStmt, 2), p->cfg.vocab_size - 1);
    } else {
      rc = impError(p, zFile, "model.vocab token \"%.*s\" has an id that is %s, expected "
                    "an integer", impClip(zKey, nKey), zKey, impJsonKind(zType));
    }
    goto done;
  }
  if (rc != SQLITE_DONE) {
    rc = impSqlError(p, rc);
    goto done;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;
  rc = impJsonPrepare(p, "SELECT count(*), count(DISTINCT value), count(DISTINCT key),"
                      " max(value) FROM json_each(?1)",
                      h->zVocabJson, h->nVocabJson, &pStmt);
  if (rc != SQLITE_OK) goto done;
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW) {
    rc = impSqlError(p, rc);
    goto done;
  }
  if (sqlite3_column_int64(pStmt, 1) != sqlite3_column_int64(pStmt, 0) ||
      sqlite3_column_int64(pStmt, 2) != sqlite3_column_int64(pStmt, 0)) {
    rc = impError(p, zFile, "model.vocab repeats an id or a token, expected each once "
                  "(%lld tokens, %lld distinct ids, %lld distinct tokens)",
                  sqlite3_column_int64(pStmt, 0), sqlite3_column_int64(pStmt, 1),
                  sqlite3_column_int64(pStmt, 2));
    goto done;
  }
  if (sqlite3_column_int64(pStmt, 0) > 0) nMax = sqlite3_column_int64(pStmt, 3);
  sqlite3_finalize(pStmt);
  pStmt = 0;
  for (int k = 0; k < h->nAdded; k++)
    if (h->aAdded[k].id > nMax) nMax = h->aAdded[k].id;
  if (nMax + 1 < 256) {
    rc = impError(p, zFile, "the vocabulary has %lld tokens, expected at least 256 (one per "
                  "byte)", nMax + 1);
    goto done;
  }
  h->nTok = (int)(nMax + 1); /* <= vocab_size: every id was checked against it */
  t = tok_new(h->nTok);
  if (!t) {
    rc = impNoMem(p);
    goto done;
  }

  rc = impVocabStore(p, zFile, "model.vocab: ", h->zVocabJson, h->nVocabJson, t);
  if (rc != SQLITE_OK) goto done;

  /* Added tokens: the same bytes as model.vocab's token of that id, or new. */
  rc = impPrepare(p, "INSERT INTO main.gpt_vocab(model, token_id, token) VALUES(?1, ?2, ?3)", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 1, p->zName, -1, SQLITE_STATIC);
  for (int k = 0; k < h->nAdded; k++) {
    ImpAdded *a = &h->aAdded[k];
    int nHave = 0;
    const char *zHave = tok_token_bytes(t, a->id, &nHave);
    if (zHave) {
      if (nHave != a->nContent || memcmp(zHave, a->zContent, (size_t)nHave)) {
        rc = impError(p, zFile, "added token %d \"%.*s\" differs from model.vocab's token %d",
                      a->id, impClip(a->zContent, a->nContent), a->zContent, a->id);
        goto done;
      }
      continue;
    }
    int nLevel = tok_byte_level(a->zContent, a->nContent, 0, 0);
    char *zLevel = sqlite3_malloc(nLevel + 1);
    if (!zLevel) {
      rc = impNoMem(p);
      goto done;
    }
    tok_byte_level(a->zContent, a->nContent, zLevel, nLevel + 1);
    if (tok_set_token(t, a->id, zLevel, nLevel, zMsg, sizeof(zMsg))) {
      sqlite3_free(zLevel);
      rc = impError(p, zFile, "added_tokens: %s", zMsg);
      goto done;
    }
    sqlite3_bind_int(pStmt, 2, a->id);
    sqlite3_bind_text(pStmt, 3, zLevel, nLevel, sqlite3_free);
    rc = sqlite3_step(pStmt);
    sqlite3_reset(pStmt);
    if (rc != SQLITE_DONE) {
      rc = impSqlError(p, rc);
      goto done;
    }
  }
  *ppTok = t;
  t = 0;
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  tok_free(t);
  return rc;
}

/*
** Stores model.merges in gpt_merges and the tokenizer: each either "a b"
** (two tokens separated by one space) or a pair ["a", "b"].
*/
static int impHfMerges(GptImport *p, ImpHf *h, GPTTokenizer *t) {
  static const char *zFile = "tokenizer.json";
  sqlite3_stmt *pStmt = 0, *pIns = 0;
  char zMsg[256];
  int rc;

  rc = impPrepare(p, "INSERT INTO main.gpt_merges(model, rank, left, right) "
                  "VALUES(?1, ?2, ?3, ?4)", &pIns);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pIns, 1, p->zName, -1, SQLITE_STATIC);
  /* (a text value is the bare string, not JSON: only arrays are looked into) */
  rc = impJsonPrepare(p, "SELECT key, type, value,"
                      " CASE type WHEN 'array' THEN json_type(value, '$[0]') END,"
                      " CASE type WHEN 'array' THEN json_extract(value, '$[0]') END,"
                      " CASE type WHEN 'array' THEN json_type(value, '$[1]') END,"
                      " CASE type WHEN 'array' THEN json_extract(value, '$[1]') END,"
                      " CASE type WHEN 'array' THEN json_array_length(value) END"
                      " FROM json_each(?1)", h->zMergesJson, h->nMergesJson, &pStmt);
  if (rc != SQLITE_OK) goto done;
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const char *zType = (const char *)sqlite3_column_text(pStmt, 1);
    const char *zL = 0, *zR = 0;
    int nL = 0, nR = 0;
    int k = sqlite3_column_int(pStmt, 0);
    if (zType && strcmp(zType, "text") == 0) {
      const char *z = (const char *)sqlite3_column_text(pStmt, 2);
      int n = sqlite3_column_bytes(pStmt, 2);
      const char *zSp = z ? memchr(z, ' ', (size_t)n) : 0;
      if (zSp && zSp > z && zSp + 1 < z + n && !memchr(zSp + 1, ' ', (size_t)(z + n - zSp - 1))) {
        zL = z;
        nL = (int)(zSp - z);
        zR = zSp + 1;
        nR = n - nL - 1;
      }
    } else if (zType && strcmp(zType, "array") == 0 && sqlite3_column_int(pStmt, 7) == 2 &&
               sqlite3_column_text(pStmt, 3) && sqlite3_column_text(pStmt, 5) &&
               strcmp((const char *)sqlite3_column_text(pStmt, 3), "text") == 0 &&
               strcmp((const char *)sqlite3_column_text(pStmt, 5), "text") == 0) {
      zL = (const char *)sqlite3_column_text(pStmt, 4);
      nL = sqlite3_column_bytes(pStmt, 4);
      zR = (const char *)sqlite3_column_text(pStmt, 6);
      nR = sqlite3_column_bytes(pStmt, 6);
    }
    if (!zL || !zR || nL == 0 || nR == 0) {
      rc = impError(p, zFile, "model.merges[%d] is not \"a b\" nor [\"a\", \"b\"] with two "
                    "non-empty tokens", k);
      goto done;
    }
    if (tok_add_merge(t, p->nMerge, zL, nL, zR, nR, zMsg, sizeof(zMsg))) {
      rc = impError(p, zFile, "model.merges[%d]: %s", k, zMsg);
      goto done;
    }
    sqlite3_bind_int(pIns, 2, p->nMerge);
    sqlite3_bind_text(pIns, 3, zL, nL, SQLITE_STATIC);
    sqlite3_bind_text(pIns, 4, zR, nR, SQLITE_STATIC);
    rc = sqlite3_step(pIns);
    sqlite3_reset(pIns);
    if (rc != SQLITE_DONE) {
      rc = impSqlError(p, rc);
      goto done;
    }
    p->nMerge++;
  }
  if (rc != SQLITE_DONE) {
    rc = impSqlError(p, rc);
    goto done;
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  sqlite3_finalize(pIns);
  return rc;
}

/*
** Reads the post_processor (alone or in a Sequence): ByteLevel changes no
** ids; TemplateProcessing's "single" may put one special token before the
** text ($A), which becomes h->iPrefix. Anything else is refused by name.
*/
static int impHfPost(GptImport *p, ImpHf *h) {
  static const char *zFile = "tokenizer.json";
  sqlite3_stmt *pStmt = 0, *pItem = 0;
  int rc;

  h->iPrefix = -1;
  rc = impJsonPrepare(p,
      "SELECT json_extract(o, '$.type'), o, t"
      " FROM (SELECT e.type AS t, CASE e.type WHEN 'object' THEN e.value END AS o"
      "  FROM (SELECT CASE WHEN json_extract(?1, '$.post_processor.type') = 'Sequence'"
      "   THEN coalesce(?1 -> '$.post_processor.processors', '[]')"
      "   ELSE '[' || coalesce(?1 -> '$.post_processor', 'null') || ']' END AS a),"
      "  json_each(a) AS e)", h->zJson, h->nJson, &pStmt);
  if (rc != SQLITE_OK) goto done;
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    const char *zType = (const char *)sqlite3_column_text(pStmt, 0);
    const char *zKind = (const char *)sqlite3_column_text(pStmt, 2);
    int bSeq = 0, nBefore = 0, nAfter = 0;
    if (zKind && strcmp(zKind, "object") && strcmp(zKind, "null")) {
      rc = impError(p, zFile, "post_processor is %s, expected an object", impJsonKind(zKind));
      goto done;
    }
    if (!zType || strcmp(zType, "ByteLevel") == 0) continue;
    if (strcmp(zType, "TemplateProcessing") != 0) {
      rc = impError(p, zFile, "post_processor %s is not supported, expected ByteLevel or "
                    "TemplateProcessing", zType);
      goto done;
    }
    h->bTemplate = 1;
    rc = impJsonPrepare(p,
        /* (items that are bare strings are not JSON: only objects are looked into) */
        "WITH si(i, o) AS (SELECT id, CASE type WHEN 'object' THEN value END"
        "  FROM json_each(?1, '$.single')),"
        " st(k, o) AS (SELECT key, CASE type WHEN 'object' THEN value END"
        "  FROM json_each(?1, '$.special_tokens'))"
        "SELECT json_extract(si.o, '$.SpecialToken.id'), json_type(si.o, '$.Sequence'),"
        " json_extract(st.o, '$.ids'), json_array_length(st.o, '$.ids'),"
        " json_extract(st.o, '$.ids[0]'), json_type(st.o, '$.ids[0]')"
        " FROM si LEFT JOIN st ON st.k = json_extract(si.o, '$.SpecialToken.id') ORDER BY si.i",
        (const char *)sqlite3_column_text(pStmt, 1), gptext_column_bytes(pStmt, 1), &pItem);
    if (rc != SQLITE_OK) goto done;
    while ((rc = sqlite3_step(pItem)) == SQLITE_ROW) {
      const char *zName = (const char *)sqlite3_column_text(pItem, 0);
      if (sqlite3_column_type(pItem, 1) != SQLITE_NULL) {
        bSeq = 1;
        continue;
      }
      if (!zName) {
        rc = impError(p, zFile, "post_processor TemplateProcessing has a \"single\" item that "
                      "is neither SpecialToken nor Sequence");
        goto done;
      }
      if (bSeq) nAfter++;
      else nBefore++;
      const char *zIdType = (const char *)sqlite3_column_text(pItem, 5);
      sqlite3_int64 id = sqlite3_column_int64(pItem, 4);
      if (sqlite3_column_int(pItem, 3) != 1 || !zIdType || strcmp(zIdType, "integer") ||
          id < 0 || id >= h->nTok) {
        rc = impError(p, zFile, "post_processor TemplateProcessing special token \"%s\" must "
                      "have one id, 0 to %d", zName, h->nTok - 1);
        goto done;
      }
      h->iPrefix = (int)id;
    }
    if (rc != SQLITE_DONE) {
      rc = impSqlError(p, rc);
      goto done;
    }
    sqlite3_finalize(pItem);
    pItem = 0;
    if (nBefore > 1 || nAfter > 0) {
      rc = impError(p, zFile, "post_processor TemplateProcessing adds %d tokens before the "
                    "text and %d after, expected at most one before (a BOS)", nBefore, nAfter);
      goto done;
    }
  }
  if (rc != SQLITE_DONE) {
    rc = impSqlError(p, rc);
    goto done;
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pItem);
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Resolves a token text of tokenizer_config.json (bos_token, eos_token) to
** its id: the added token with that content, or the vocabulary's token
** spelt so (byte-level, as tokenizer.json's model.vocab spells it: Hugging
** Face's convert_tokens_to_ids; its raw bytes had been looked up, so that
** "\xc4\xa0the" was no token, or another one). *pId is -1 when zText is
** NULL.
*/
static int impHfTokenId(GptImport *p, ImpHf *h, GPTTokenizer *t, const char *zKey,
                        const char *zText, int nText, int *pId) {
  *pId = -1;
  if (!zText) return SQLITE_OK;
  for (int k = 0; k < h->nAdded; k++) {
    if (h->aAdded[k].nContent == nText && memcmp(h->aAdded[k].zContent, zText, (size_t)nText) == 0) {
      *pId = h->aAdded[k].id;
      return SQLITE_OK;
    }
  }
  *pId = tok_token_id_spelt(t, zText, nText);
  if (*pId < 0) {
    return impError(p, "tokenizer_config.json", "%s \"%.*s\" is not a token of "
                    "tokenizer.json", zKey, impClip(zText, nText), zText);
  }
  return SQLITE_OK;
}

/*
** Adds id to the stop ids unless it is there already.
*/
static int impHfStop(GptImport *p, ImpHf *h, int id) {
  for (int k = 0; k < h->nStop; k++)
    if (h->aStop[k] == id) return SQLITE_OK;
  if (h->nStop >= GPT_MAX_STOP_IDS) {
    return impError(p, 0, "more than %d end-of-sequence ids (eos_token, generation_config's "
                    "eos_token_id, end-of-turn tokens)", GPT_MAX_STOP_IDS);
  }
  h->aStop[h->nStop++] = id;
  return SQLITE_OK;
}

/*
** Checks a chat template read from zFile (n bytes at z): no NUL, valid
** UTF-8, and one the interpreter renders (refused now, with the construct
** named, not at the first gpt_chat).
*/
static int impCheckTemplate(GptImport *p, const char *zFile, const char *z, int n) {
  char zTplErr[256];
  /* a "\u0000" cut the stored text, which then rendered less than Hugging
  ** Face renders */
  if (strlen(z) != (size_t)n) return impError(p, zFile, "chat_template contains a NUL character");
  /* "\ud800" (a lone surrogate) decodes to bytes that are not UTF-8, which
  ** every prompt rendered from the template would then hold */
  if (!gptext_utf8_valid(z, (size_t)n))
    return impError(p, zFile, "chat_template is not valid UTF-8 (a lone surrogate escape?), "
                    "expected text");
  if (tpl_check(z, zTplErr, sizeof(zTplErr)))
    return impError(p, zFile, "chat_template cannot be rendered: %s", zTplErr);
  return SQLITE_OK;
}

/*
** Reads tokenizer_config.json when the folder has one (bos_token,
** eos_token, add_bos_token, chat_template, tokenizer_class) and
** generation_config.json's eos_token_id, then settles the BOS and the stop
** ids. A TemplateProcessing decides the BOS, as in Hugging Face's
** PreTrainedTokenizerFast; LlamaTokenizer and GemmaTokenizer classes follow
** add_bos_token instead, as theirs rewrite the post-processor from it.
*/
static int impHfConfig(GptImport *p, ImpHf *h, GPTTokenizer *t) {
  static const char *zFile = "tokenizer_config.json";
  static const char *zJinja = "chat_template.jinja";
  static const char *azEndOfTurn[] = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>",
                                      "<|end_of_text|>"};
  sqlite3_stmt *pStmt = 0;
  char *zText = 0;
  int64_t nText = 0;
  int rc, bAddBosGiven = 0, bAddBos = 0, bLlamaClass = 0;

  h->bos = h->eos = -1;
  if (impHasFile(p, zFile)) {
    rc = impReadText(p, zFile, &zText, &nText);
    if (rc != SQLITE_OK) goto done;
    rc = impCheckObject(p, zFile, zText, nText, "a JSON object");
    if (rc == SQLITE_OK) rc = impCheckNoDupKeys(p, zFile, zText, nText);
    if (rc != SQLITE_OK) goto done;
    rc = impJsonPrepare(p,
        /* a string, or an AddedToken object whose content is a string */
        "SELECT json_type(?1, '$.bos_token'), CASE json_type(?1, '$.bos_token')"
        "   WHEN 'text' THEN json_extract(?1, '$.bos_token') WHEN 'object' THEN"
        "   CASE json_type(?1, '$.bos_token.content') WHEN 'text'"
        "   THEN json_extract(?1, '$.bos_token.content') END END,"
        " json_type(?1, '$.eos_token'), CASE json_type(?1, '$.eos_token')"
        "   WHEN 'text' THEN json_extract(?1, '$.eos_token') WHEN 'object' THEN"
        "   CASE json_type(?1, '$.eos_token.content') WHEN 'text'"
        "   THEN json_extract(?1, '$.eos_token.content') END END,"
        " json_type(?1, '$.add_bos_token'), json_type(?1, '$.chat_template'),"
        " CASE json_type(?1, '$.chat_template') WHEN 'text' THEN json_extract(?1, '$.chat_template')"
        "   WHEN 'array' THEN (SELECT CASE json_type(o, '$.template') WHEN 'text'"
        "   THEN json_extract(o, '$.template') END FROM (SELECT CASE type WHEN 'object' THEN value"
        "   END AS o FROM json_each(?1, '$.chat_template')) WHERE json_extract(o, '$.name') ="
        "   'default') END,"
        " json_extract(?1, '$.tokenizer_class'), json_type(?1, '$.add_eos_token')",
        zText, nText, &pStmt);
    if (rc != SQLITE_OK) goto done;
    rc = sqlite3_step(pStmt);
    if (rc != SQLITE_ROW) {
      rc = impSqlError(p, rc);
      goto done;
    }
    {
      const char *zAdd = (const char *)sqlite3_column_text(pStmt, 4);
      const char *zClass = (const char *)sqlite3_column_text(pStmt, 7);
      const char *zTplType = (const char *)sqlite3_column_text(pStmt, 5);
      if (zAdd && strcmp(zAdd, "true") && strcmp(zAdd, "false") && strcmp(zAdd, "null")) {
        /* a string is refused: Python takes "false" for true */
        rc = impError(p, zFile, "add_bos_token is %s, expected true or false",
                      impJsonKind(zAdd));
        goto done;
      }
      bAddBosGiven = zAdd && (!strcmp(zAdd, "true") || !strcmp(zAdd, "false"));
      bAddBos = zAdd && !strcmp(zAdd, "true");
      bLlamaClass = zClass && (!strncmp(zClass, "LlamaTokenizer", 14) ||
                               !strncmp(zClass, "GemmaTokenizer", 14) ||
                               !strncmp(zClass, "CodeLlamaTokenizer", 18));
      /* those classes append the EOS to every prompt then, which the
      ** engine's encoding does not (it had been left out silently) */
      const char *zAddEos = (const char *)sqlite3_column_text(pStmt, 8);
      if (bLlamaClass && zAddEos && strcmp(zAddEos, "false") && strcmp(zAddEos, "null")) {
        rc = impError(p, zFile, "add_eos_token is %s; an EOS after every prompt "
                      "(%s) is not supported, expected false", impJsonKind(zAddEos), zClass);
        goto done;
      }
      if (zTplType && strcmp(zTplType, "null") && sqlite3_column_type(pStmt, 6) == SQLITE_NULL) {
        rc = impError(p, zFile, "chat_template is %s, expected a string or a list with a "
                      "\"default\" template", impJsonKind(zTplType));
        goto done;
      }
      if (sqlite3_column_bytes(pStmt, 6) > IMP_MAX_TEMPLATE) {
        rc = impError(p, zFile, "chat_template is %d bytes, expected at most %d",
                      sqlite3_column_bytes(pStmt, 6), IMP_MAX_TEMPLATE);
        goto done;
      }
      if (sqlite3_column_type(pStmt, 6) != SQLITE_NULL) {
        h->zTemplate = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(pStmt, 6));
        if (!h->zTemplate) {
          rc = impNoMem(p);
          goto done;
        }
        rc = impCheckTemplate(p, zFile, h->zTemplate, sqlite3_column_bytes(pStmt, 6));
        if (rc != SQLITE_OK) goto done;
      }
      for (int k = 0; k < 2; k++) {
        const char *zTok = (const char *)sqlite3_column_text(pStmt, 1 + 2 * k);
        int nTok = sqlite3_column_bytes(pStmt, 1 + 2 * k);
        const char *zKind = (const char *)sqlite3_column_text(pStmt, 2 * k);
        if (zKind && strcmp(zKind, "null") && (!zTok || nTok == 0 || nTok > TOK_MAX_ADDED_LEN)) {
          rc = impError(p, zFile, "%s is %s, expected a token's text or null",
                        k ? "eos_token" : "bos_token", impJsonKind(zKind));
          goto done;
        }
        if (!zTok) continue;
        rc = impHfTokenId(p, h, t, k ? "eos_token" : "bos_token", zTok, nTok,
                          k ? &h->eos : &h->bos);
        if (rc != SQLITE_OK) goto done;
        char *z = sqlite3_mprintf("%.*s", nTok, zTok);
        if (!z) {
          rc = impNoMem(p);
          goto done;
        }
        if (k) h->zEos = z;
        else h->zBos = z;
      }
    }
    sqlite3_finalize(pStmt);
    pStmt = 0;
  }

  /* chat_template.jinja, where recent transformers save the template; as in
  ** their loader it takes the place of tokenizer_config.json's (a folder with
  ** only the file had imported with no template at all) */
  if (impHasFile(p, zJinja)) {
    char *zTpl = 0;
    int64_t nTpl = 0;
    rc = impReadText(p, zJinja, &zTpl, &nTpl);
    if (rc == SQLITE_OK && nTpl > IMP_MAX_TEMPLATE)
      rc = impError(p, zJinja, "the template is %lld bytes, expected at most %d",
                    (long long)nTpl, IMP_MAX_TEMPLATE);
    if (rc == SQLITE_OK) rc = impCheckTemplate(p, zJinja, zTpl, (int)nTpl);
    if (rc != SQLITE_OK) {
      sqlite3_free(zTpl);
      goto done;
    }
    sqlite3_free(h->zTemplate);
    h->zTemplate = zTpl;
  }

  /* The BOS of tokenizer(text).input_ids. */
  if (h->bTemplate && !(bLlamaClass && bAddBosGiven)) {
    if (h->iPrefix >= 0) {
      h->bAddBos = 1;
      if (h->bos != h->iPrefix) {
        int n = 0;
        const char *z = tok_token_bytes(t, h->iPrefix, &n);
        sqlite3_free(h->zBos);
        h->zBos = 0;
        /* a text only where it is one: a NUL cut it to "", which the loader
        ** then refused as another token's text (as GGUF import does) */
        if (z && n > 0 && !memchr(z, 0, (size_t)n) && gptext_utf8_valid(z, (size_t)n)) {
          h->zBos = sqlite3_mprintf("%.*s", n, z);
          if (!h->zBos) {
            rc = impNoMem(p);
            goto done;
          }
        }
        h->bos = h->iPrefix;
      }
    }
  } else if (bAddBos) {
    if (h->bos < 0) {
      rc = impError(p, zFile, "add_bos_token is true but bos_token is not set");
      goto done;
    }
    h->bAddBos = 1;
  }

  /* Stop ids: eos, generation_config's eos_token_id, end-of-turn tokens. */
  if (h->eos >= 0 && (rc = impHfStop(p, h, h->eos)) != SQLITE_OK) goto done;
  if (impHasFile(p, "generation_config.json")) {
    static const char *zGen = "generation_config.json";
    sqlite3_free(zText);
    zText = 0;
    rc = impReadText(p, zGen, &zText, &nText);
    if (rc != SQLITE_OK) goto done;
    rc = impCheckObject(p, zGen, zText, nText, "a JSON object");
    if (rc == SQLITE_OK) rc = impCheckNoDupKeys(p, zGen, zText, nText);
    if (rc != SQLITE_OK) goto done;
    /* an id or a list of ids (json_each would also walk an object's values) */
    rc = impJsonPrepare(p, "SELECT type, value FROM json_each(?1, '$.eos_token_id')"
                        " WHERE json_type(?1, '$.eos_token_id') <> 'object'"
                        " UNION ALL SELECT 'object', NULL"
                        " WHERE json_type(?1, '$.eos_token_id') = 'object'",
                        zText, nText, &pStmt);
    if (rc != SQLITE_OK) goto done;
    while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
      const char *zType = (const char *)sqlite3_column_text(pStmt, 0);
      sqlite3_int64 id = sqlite3_column_int64(pStmt, 1);
      if (zType && strcmp(zType, "null") == 0) continue;
      if (!zType || strcmp(zType, "integer")) {
        rc = impError(p, zGen, "eos_token_id holds %s, expected token ids 0 to %d",
                      impJsonKind(zType), h->nTok - 1);
        goto done;
      }
      if (id < 0 || id >= h->nTok) {
        rc = impError(p, zGen, "eos_token_id %s is not a token id 0 to %d",
                      (const char *)sqlite3_column_text(pStmt, 1), h->nTok - 1);
        goto done;
      }
      if ((rc = impHfStop(p, h, (int)id)) != SQLITE_OK) goto done;
    }
    if (rc != SQLITE_DONE) {
      rc = impSqlError(p, rc);
      goto done;
    }
    sqlite3_finalize(pStmt);
    pStmt = 0;
  }
  for (int k = 0; k < h->nAdded; k++) {
    if (!h->aAdded[k].bSpecial) continue;
    for (size_t j = 0; j < sizeof(azEndOfTurn) / sizeof(azEndOfTurn[0]); j++) {
      if (strcmp(h->aAdded[k].zContent, azEndOfTurn[j]) == 0 &&
          (rc = impHfStop(p, h, h->aAdded[k].id)) != SQLITE_OK)
        goto done;
    }
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  sqlite3_free(zText);
  return rc;
}

/*
** Writes the gpt_tokenizer row: everything the loader needs besides
** gpt_vocab and gpt_merges (ARCHITECTURE.md describes the JSON).
*/
static int impHfRow(GptImport *p, ImpHf *h) {
  sqlite3_stmt *pStmt = 0;
  sqlite3_str *pStop = sqlite3_str_new(p->db);
  char *zStop;
  int rc;

  sqlite3_str_appendchar(pStop, 1, '[');
  for (int k = 0; k < h->nStop; k++) sqlite3_str_appendf(pStop, "%s%d", k ? "," : "", h->aStop[k]);
  sqlite3_str_appendchar(pStop, 1, ']');
  zStop = sqlite3_str_finish(pStop);
  if (!zStop) return impNoMem(p);
  rc = impJsonPrepare(p,
      "INSERT INTO main.gpt_tokenizer(model, config) VALUES(?2, json_object("
      " 'type', 'bpe', 'size', ?3, 'normalizer', ?4, 'pre_tokenizer', json(?5),"
      " 'ignore_merges', json(?6),"
      " 'added_tokens', (SELECT json_group_array(json_object('id', json_extract(value, '$.id'),"
      "   'content', json_extract(value, '$.content'), 'special',"
      "   json(CASE json_type(value, '$.special') WHEN 'true' THEN 'true' ELSE 'false' END)))"
      "   FROM json_each(?1, '$.added_tokens')),"
      " 'bos_id', ?7, 'bos', ?8, 'eos_id', ?9, 'eos', ?10, 'add_bos', json(?11),"
      " 'stop_ids', json(?12), 'chat_template', ?13))", h->zJson, h->nJson, &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 2, p->zName, -1, SQLITE_STATIC);
  sqlite3_bind_int(pStmt, 3, h->nTok);
  if (h->bNfc) sqlite3_bind_text(pStmt, 4, "NFC", -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 5, h->zStages, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 6, h->bIgnoreMerges ? "true" : "false", -1, SQLITE_STATIC);
  if (h->bos >= 0) sqlite3_bind_int(pStmt, 7, h->bos);
  sqlite3_bind_text(pStmt, 8, h->zBos, -1, SQLITE_STATIC);
  if (h->eos >= 0) sqlite3_bind_int(pStmt, 9, h->eos);
  sqlite3_bind_text(pStmt, 10, h->zEos, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 11, h->bAddBos ? "true" : "false", -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 12, zStop, -1, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 13, h->zTemplate, -1, SQLITE_STATIC);
  rc = sqlite3_step(pStmt);
  rc = rc == SQLITE_DONE ? SQLITE_OK : impSqlError(p, rc);
done:
  sqlite3_finalize(pStmt);
  sqlite3_free(zStop);
  return rc;
}

/*
** Splits tokenizer.json (zFull, nFull bytes) into model.vocab, model.merges
** and the rest, so that each later query parses only the part it reads
** (Llama 3's file is 9 MB, most of it vocabulary and merges).
*/
static int impHfSplit(GptImport *p, ImpHf *h, const char *zFull, int64_t nFull) {
  static const char *zFile = "tokenizer.json";
  sqlite3_stmt *pStmt = 0;
  int rc = impJsonPrepare(p,
      "SELECT json_remove(?1, '$.model.vocab', '$.model.merges'),"
      " json_type(?1, '$.model.vocab'), json_type(?1, '$.model.merges'),"
      " CASE json_type(?1, '$.model.vocab') WHEN 'object' THEN json_extract(?1, '$.model.vocab') END,"
      " CASE json_type(?1, '$.model.merges') WHEN 'array' THEN json_extract(?1, '$.model.merges') END",
      zFull, nFull, &pStmt);
  if (rc != SQLITE_OK) goto done;
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW) {
    rc = impSqlError(p, rc);
    goto done;
  }
  {
    const char *zVocab = (const char *)sqlite3_column_text(pStmt, 1);
    const char *zMerges = (const char *)sqlite3_column_text(pStmt, 2);
    if (!zVocab || strcmp(zVocab, "object")) {
      rc = impError(p, zFile, "model.vocab is %s, expected an object mapping tokens to ids",
                    impJsonKind(zVocab));
      goto done;
    }
    if (!zMerges || strcmp(zMerges, "array")) {
      rc = impError(p, zFile, "model.merges is %s, expected an array", impJsonKind(zMerges));
      goto done;
    }
  }
  {
    char **az[3] = {&h->zJson, &h->zVocabJson, &h->zMergesJson};
    int64_t *an[3] = {&h->nJson, &h->nVocabJson, &h->nMergesJson};
    static const int aiCol[3] = {0, 3, 4};
    for (int k = 0; k < 3; k++) {
      /* the text, then its length (a conversion out of memory gives NULL) */
      const unsigned char *z = sqlite3_column_text(pStmt, aiCol[k]);
      int n = sqlite3_column_bytes(pStmt, aiCol[k]);
      *az[k] = z ? sqlite3_malloc(n + 1) : 0;
      if (!*az[k]) {
        rc = impNoMem(p);
        goto done;
      }
      memcpy(*az[k], z, (size_t)n + 1);
      *an[k] = n;
    }
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Imports the tokenizer of a folder with tokenizer.json instead of
** vocab.json and merges.txt: gpt_vocab (model.vocab and added tokens, in
** byte-level form), gpt_merges and the gpt_tokenizer row. The tokenizer is
** built along the way with every check the loader makes and returned in
** *ppTok. Its size (highest id + 1) may be below config's vocab_size.
*/
static int impHfTokenizer(GptImport *p, GPTTokenizer **ppTok) {
  static const char *zFile = "tokenizer.json";
  ImpHf h;
  GPTTokenizer *t = 0;
  char *zJson = 0;
  int64_t nJson = 0;
  char zMsg[256];
  int rc;

  memset(&h, 0, sizeof(h));
  *ppTok = 0;
  rc = impReadText(p, zFile, &zJson, &nJson);
  if (rc != SQLITE_OK) goto done;
  rc = impCheckObject(p, zFile, zJson, nJson, "a JSON object (Hugging Face tokenizers)");
  if (rc == SQLITE_OK) rc = impHfSplit(p, &h, zJson, nJson);
  sqlite3_free(zJson);
  zJson = 0;
  /* (the rest without model.vocab and model.merges: small, and those two
  ** are checked for repeats on their own) */
  if (rc == SQLITE_OK) rc = impCheckNoDupKeys(p, zFile, h.zJson, h.nJson);
  if (rc == SQLITE_OK) rc = impHfOptions(p, &h);
  if (rc == SQLITE_OK) rc = impHfAdded(p, &h);
  if (rc == SQLITE_OK) rc = impHfVocab(p, &h, &t);
  if (rc == SQLITE_OK) rc = impHfMerges(p, &h, t);
  if (rc == SQLITE_OK) rc = impHfPost(p, &h);
  if (rc != SQLITE_OK) goto done;
  if (tok_set_options(t, TOK_OPT_HF | (h.bNfc ? TOK_OPT_NFC : 0) |
                      (h.bIgnoreMerges ? TOK_OPT_IGNORE_MERGES : 0), zMsg, sizeof(zMsg))) {
    rc = impError(p, zFile, "%s", zMsg);
    goto done;
  }
  {
    /* the stages as stored, through the loader's own path */
    sqlite3_stmt *pStmt = 0;
    rc = impJsonPrepare(p, "SELECT key, json_extract(value, '$.regex'),"
                        " json_extract(value, '$.string') FROM json_each(?1)",
                        h.zStages, (int64_t)strlen(h.zStages), &pStmt);
    int rcStep = SQLITE_ROW;
    while (rc == SQLITE_OK && (rcStep = sqlite3_step(pStmt)) == SQLITE_ROW) {
      int bLit = sqlite3_column_type(pStmt, 1) == SQLITE_NULL;
      if (tok_add_split(t, (const char *)sqlite3_column_text(pStmt, bLit ? 2 : 1),
                        (size_t)sqlite3_column_bytes(pStmt, bLit ? 2 : 1), bLit, zMsg,
                        sizeof(zMsg))) {
        rc = impError(p, zFile, "pre_tokenizer: %s", zMsg);
      }
    }
    /* an interrupt had ended the check early, the stages partly checked */
    if (rc == SQLITE_OK && rcStep != SQLITE_DONE) rc = impSqlError(p, rcStep);
    sqlite3_finalize(pStmt);
    if (rc != SQLITE_OK) goto done;
  }
  for (int k = 0; k < h.nAdded; k++) {
    if (tok_add_added(t, h.aAdded[k].id, h.aAdded[k].zContent, h.aAdded[k].nContent,
                      h.aAdded[k].bSpecial, zMsg, sizeof(zMsg))) {
      rc = impError(p, zFile, "added_tokens: %s", zMsg);
      goto done;
    }
  }
  if (tok_finish(t, zMsg, sizeof(zMsg))) {
    rc = impError(p, zFile, "%s", zMsg);
    goto done;
  }
  rc = impHfConfig(p, &h, t);
  if (rc == SQLITE_OK) rc = impHfRow(p, &h);
  if (rc != SQLITE_OK) goto done;
  *ppTok = t;
  t = 0;
done:
  tok_free(t);
  for (int k = 0; k < h.nAdded; k++) sqlite3_free(h.aAdded[k].zContent);
  sqlite3_free(h.aAdded);
  sqlite3_free(h.zStages);
  sqlite3_free(h.zBos);
  sqlite3_free(h.zEos);
  sqlite3_free(h.zTemplate);
  sqlite3_free(h.zJson);
  sqlite3_free(h.zVocabJson);
  sqlite3_free(h.zMergesJson);
  sqlite3_free(zJson);
  return rc;
}

/*
** Index of the first element of n bytes of dtype (a GPT_* code) that is NaN
** or infinite, or -1. Bytes are little-endian, as in the file. Blocks of 256
** elements are tested without branches (which vectorizes) and only a block
** with a hit is searched element by element.
*/
int64_t gptext_non_finite(int dtype, const unsigned char *a, size_t n) {
  const int nSize = gpt_dtype_size(dtype);
  const uint32_t mExp = dtype == GPT_F32 ? 0x7f800000u
                      : dtype == GPT_BF16 ? 0x7f80u : 0x7c00u;
  const size_t nElem = n / (size_t)nSize;
  size_t i0, i;
  for (i0 = 0; i0 < nElem; i0 += 256) {
    size_t iEnd = nElem - i0 < 256 ? nElem : i0 + 256;
    uint32_t bHit = 0;
    if (nSize == 4) {
      for (i = i0; i < iEnd; i++) {
        const unsigned char *x = &a[4 * i];
        uint32_t u = (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16
                   | (uint32_t)x[3] << 24;
        bHit |= (uint32_t)((u & mExp) == mExp);
      }
    } else {
      for (i = i0; i < iEnd; i++) {
        uint32_t u = (uint32_t)a[2 * i] | (uint32_t)a[2 * i + 1] << 8;
        bHit |= (uint32_t)((u & mExp) == mExp);
      }
    }
    if (bHit == 0) continue;
    for (i = i0; i < iEnd; i++) {
      const unsigned char *x = &a[(size_t)nSize * i];
      uint32_t u = nSize == 4 ? ((uint32_t)x[0] | (uint32_t)x[1] << 8
                                 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24)
                              : ((uint32_t)x[0] | (uint32_t)x[1] << 8);
      if ((u & mExp) == mExp) return (int64_t)i;
    }
  }
  return -1;
}

/* qsort comparator of required tensors by their place in the file. */
static int impCmpOffset(const void *a, const void *b) {
  const STTensor *x = ((const ImpTensor *)a)->pSrc;
  const STTensor *y = ((const ImpTensor *)b)->pSrc;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return 0;
}

/*
** Copies every required tensor into gpt_tensors, in file order, through
** ext/tensors.c's writer (one row, or parts past the BLOB limit), in
** IMP_CHUNK pieces. The interrupt flag is checked between pieces, and
** every piece is checked for NaN and infinities.
*/
static int impTensors(GptImport *p) {
  GptTensorWriter w;
  int bWriter = 0;            /* w created and not yet finished */
  unsigned char *aBuf = 0;
  int i, rc;

  aBuf = sqlite3_malloc64(IMP_CHUNK);
  if (aBuf == 0) {
    rc = impNoMem(p);
    goto done;
  }
  /* Sequential reads: one stdio buffer less. */
  for (i = 0; i < p->nShard; i++) setvbuf(p->aShard[i].pFile, 0, _IONBF, 0);
  qsort(p->aReq, (size_t)p->nReq, sizeof(ImpTensor), impCmpOffset);
  for (i = 0; i < p->nReq; i++) {
    const GPTTensorInfo *pInfo = &p->aReq[i].info;
    const STTensor *t = p->aReq[i].pSrc;
    int dtype = st_dtype_to_gpt(t->dtype);
    int64_t nByte = t->end - t->begin, off;
    const ImpShard *pShard = impShardOf(p, t);
    const char *zFile = pShard->zFile;
    char *zMsg = 0;

    /* one row, or row-aligned parts past the BLOB limit (ext/tensors.c) */
    rc = gptext_tensor_create(&w, p->db, p->zName, pInfo, dtype, &zMsg);
    bWriter = 1;
    if (rc != SQLITE_OK) {
      if (zMsg && !p->zErr) p->rcErr = rc; /* SQLITE_TOOBIG */
      rc = zMsg ? impError(p, zFile, "%s", zMsg) : impSqlError(p, rc);
      sqlite3_free(zMsg);
      goto done;
    }
    if (fseeko(pShard->pFile, (off_t)(pShard->iDataOff + t->begin), SEEK_SET) != 0) {
      rc = impError(p, zFile, "cannot seek to tensor \"%s\": %s", t->name,
                    strerror(errno));
      goto done;
    }
    for (off = 0; off < nByte; off += IMP_CHUNK) {
      int n = (int)(nByte - off < IMP_CHUNK ? nByte - off : IMP_CHUNK);
      int64_t iBad;
      if (gptext_interrupted(p->db)) {
        rc = impSqlError(p, SQLITE_INTERRUPT);
        goto done;
      }
      if (fread(aBuf, 1, (size_t)n, pShard->pFile) != (size_t)n) {
        rc = impError(p, zFile, "cannot read tensor \"%s\" at byte %lld: %s",
                      t->name, (long long)(pShard->iDataOff + t->begin + off),
                      ferror(pShard->pFile) ? strerror(errno) : "the file ends early");
        goto done;
      }
      iBad = gptext_non_finite(dtype, aBuf, (size_t)n);
      if (iBad >= 0) {
        rc = impError(p, zFile, "tensor \"%s\" has a NaN or infinity at element "
                      "%lld, expected finite numbers", t->name,
                      (long long)(off / gpt_dtype_size(dtype) + iBad));
        goto done;
      }
      rc = gptext_tensor_write(&w, aBuf, n);
      if (rc != SQLITE_OK) {
        rc = impSqlError(p, rc);
        goto done;
      }
    }
    bWriter = 0;
    rc = gptext_tensor_finish(&w);
    if (rc != SQLITE_OK) {
      rc = impSqlError(p, rc);
      goto done;
    }
    p->nParam += pInfo->n_elem;
    p->nByte += nByte;
    p->mDtype |= 1u << dtype;
  }
  rc = SQLITE_OK;
done:
  if (bWriter) gptext_tensor_finish(&w);
  sqlite3_free(aBuf);
  return rc;
}

/*
** Writes the gpt_models row (last: the triggers of the tensor, vocab and
** merges tables find no row to restamp until now). config is built with
** json_object().
*/
static int impModelRow(GptImport *p) {
  sqlite3_stmt *pStmt = 0;
  int rc;

  if (p->cfg.arch != GPT_ARCH_GPT2) {
    char *zCfg = gptext_config_json(&p->cfg, p->bTied);
    if (!zCfg) return impNoMem(p);
    rc = impPrepare(p, "INSERT INTO main.gpt_models(name, config, source) VALUES(?1, json(?2), ?3)",
                    &pStmt);
    if (rc == SQLITE_OK) {
      sqlite3_bind_text(pStmt, 1, p->zName, -1, SQLITE_STATIC);
      sqlite3_bind_text(pStmt, 2, zCfg, -1, sqlite3_free);
      gptext_bind_utf8(pStmt, 3, p->zDir);
      rc = sqlite3_step(pStmt);
      rc = rc == SQLITE_DONE ? SQLITE_OK : impSqlError(p, rc);
    } else {
      sqlite3_free(zCfg);
    }
    goto done;
  }
  rc = impPrepare(p, "INSERT INTO main.gpt_models(name, config, source) VALUES(?1, "
                  "json_object('n_layer', ?2, 'n_head', ?3, 'n_embd', ?4, "
                  "'n_ctx', ?5, 'vocab_size', ?6, 'layer_norm_epsilon', ?7), ?8)",
                  &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 1, p->zName, -1, SQLITE_STATIC);
  sqlite3_bind_int(pStmt, 2, p->cfg.n_layer);
  sqlite3_bind_int(pStmt, 3, p->cfg.n_head);
  sqlite3_bind_int(pStmt, 4, p->cfg.n_embd);
  sqlite3_bind_int(pStmt, 5, p->cfg.n_ctx);
  sqlite3_bind_int(pStmt, 6, p->cfg.vocab_size);
  sqlite3_bind_double(pStmt, 7, p->cfg.ln_eps);
  gptext_bind_utf8(pStmt, 8, p->zDir);
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_DONE) {
    rc = impSqlError(p, rc);
    goto done;
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** Counts the rows model zName has in the four tables, or -1 on error (with
** the error recorded). A name with rows in any of them exists.
*/
static sqlite3_int64 impModelRows(GptImport *p, const char *zName) {
  sqlite3_stmt *pStmt = 0;
  sqlite3_int64 n = -1;
  int rc;

  rc = impPrepare(p, "SELECT (SELECT count(*) FROM main.gpt_models WHERE name = ?1)"
                  " + EXISTS(SELECT 1 FROM main.gpt_tensors WHERE model = ?1)"
                  " + EXISTS(SELECT 1 FROM main.gpt_vocab WHERE model = ?1)"
                  " + EXISTS(SELECT 1 FROM main.gpt_merges WHERE model = ?1)"
                  " + EXISTS(SELECT 1 FROM main.gpt_tokenizer WHERE model = ?1)", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 1, zName, -1, SQLITE_STATIC);
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW) {
    impSqlError(p, rc);
    goto done;
  }
  n = sqlite3_column_int64(pStmt, 0);
done:
  sqlite3_finalize(pStmt);
  return n;
}

/*
** Deletes every row of model zName from the four tables, and from
** gpt_train's state and log where those tables exist (a model that replaces
** it must not resume its training run); the number of gpt_tensors rows
** deleted goes to *pnTensor. gpt_models first, so that the triggers of the
** other tables have nothing to restamp. Shared by gpt_drop and both kinds
** of gpt_import with "replace"; an SQLite code, the message in
** sqlite3_errmsg(db).
*/
int gptext_delete_model(sqlite3 *db, const char *zName, sqlite3_int64 *pnTensor) {
  static const struct { const char *zSql, *zTrainTable; } aDel[] = {
    {"DELETE FROM main.gpt_models WHERE name = ?1", 0},
    {"DELETE FROM main.gpt_tensors WHERE model = ?1", 0},
    {"DELETE FROM main.gpt_vocab WHERE model = ?1", 0},
    {"DELETE FROM main.gpt_merges WHERE model = ?1", 0},
    {"DELETE FROM main.gpt_tokenizer WHERE model = ?1", 0},
    {"DELETE FROM main.gpt_train_state WHERE model = ?1", "gpt_train_state"},
    {"DELETE FROM main.gpt_train_log WHERE model = ?1", "gpt_train_log"},
  };
  sqlite3_stmt *pStmt = 0;
  int rc = SQLITE_OK;

  for (int i = 0; i < (int)(sizeof(aDel) / sizeof(aDel[0])); i++) {
    if (aDel[i].zTrainTable) {
      rc = sqlite3_prepare_v2(db, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?1",
                              -1, &pStmt, 0);
      if (rc != SQLITE_OK) goto done;
      sqlite3_bind_text(pStmt, 1, aDel[i].zTrainTable, -1, SQLITE_STATIC);
      rc = sqlite3_step(pStmt);
      sqlite3_finalize(pStmt);
      pStmt = 0;
      if (rc == SQLITE_DONE) continue; /* no such table */
      if (rc != SQLITE_ROW) goto done;
    }
    rc = sqlite3_prepare_v2(db, aDel[i].zSql, -1, &pStmt, 0);
    if (rc != SQLITE_OK) goto done;
    sqlite3_bind_text(pStmt, 1, zName, -1, SQLITE_STATIC);
    rc = sqlite3_step(pStmt);
    if (rc != SQLITE_DONE) goto done;
    if (i == 1 && pnTensor) *pnTensor = sqlite3_changes(db);
    sqlite3_finalize(pStmt);
    pStmt = 0;
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  return rc;
}

/*
** gptext_delete_model for the import or drop in hand, its error recorded.
*/
static int impDeleteModel(GptImport *p, const char *zName, sqlite3_int64 *pnTensor) {
  int rc = gptext_delete_model(p->db, zName, pnTensor);
  return rc == SQLITE_OK ? SQLITE_OK : impSqlError(p, rc);
}

/*
** The outcome of a savepoint step that returned rc with message zMsg (freed
** here): SQLITE_OK, or SQLITE_ERROR with the import's error set, an
** interrupt told apart from the rest.
*/
static int impTxnResult(GptImport *p, int rc, char *zMsg) {
  if (rc != SQLITE_OK) {
    if ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(p->db)) {
      p->bInterrupted = 1;
      impError(p, 0, "interrupted");
    } else {
      if (p->zErr == 0) p->rcErr = rc;
      impError(p, 0, "%s", zMsg ? zMsg : "out of memory");
    }
    rc = SQLITE_ERROR;
  }
  sqlite3_free(zMsg);
  return rc;
}

/*
** Opens savepoint zSave and takes the write lock, waiting out the busy
** timeout as SQLite's own writers do (ext/savepoint.c).
*/
static int impTxnBegin(GptImport *p, const char *zSave) {
  char *zMsg = 0;
  int rc = gptext_savepoint_begin(p->db, p->pConn, &p->sp, zSave, &zMsg);
  return impTxnResult(p, rc, zMsg);
}

/*
** Releases the savepoint, making the work part of the enclosing transaction
** (or committing it when there is none).
*/
static int impTxnCommit(GptImport *p) {
  char *zMsg = 0;
  int rc = gptext_savepoint_release(&p->sp, &zMsg);
  return impTxnResult(p, rc, zMsg);
}

/*
** Undoes everything since the savepoint unless it was released, and
** finalizes its statements.
*/
static void impTxnEnd(GptImport *p) {
  gptext_savepoint_end(&p->sp);
}

/*
** Sets the result of a failed call: the message, with SQLite's code when the
** failure was SQLite's (busy, disk full, out of memory, interrupted).
*/
static void impResultError(sqlite3_context *ctx, GptImport *p) {
  gptext_result_error(ctx, p->zErr);
  if (p->bInterrupted) sqlite3_result_error_code(ctx, SQLITE_INTERRUPT);
  else if (p->rcErr != 0 && p->rcErr != SQLITE_ERROR) sqlite3_result_error_code(ctx, p->rcErr);
}

/*
** Frees everything an import holds but its error message.
*/
static void impClear(GptImport *p) {
  int i;
  for (i = 0; i < p->nShard; i++) {
    if (p->aShard[i].pFile) fclose(p->aShard[i].pFile);
    sqlite3_free(p->aShard[i].zFile);
  }
  sqlite3_free(p->aShard);
  for (i = 0; i < p->nStr; i++) sqlite3_free(p->azStr[i]);
  sqlite3_free(p->azStr);
  sqlite3_free(p->aEntry);
  sqlite3_free(p->aReq);
  sqlite3_free(p->zVocab);
}

/*
** Implementation of gpt_import(NAME, PATH [, OPTIONS]). OPTIONS accepts
** {"replace": true}, which replaces an existing model of that name in the
** same transaction. Returns a one-line summary:
**
**   imported 'NAME': T tensors, P parameters, B bytes (f32), V tokens,
**   M merges from PATH
*/
static void gptImportFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  const sqlite3_int64 iRowidBefore = sqlite3_last_insert_rowid(db);
  GptImport s;
  GptOptions opt;
  GPTTokenizer *pTok = 0;
  char *zErr = 0;
  char *zSummary = 0;
  const char *zName = (const char *)sqlite3_value_text(argv[0]);
  const char *zDir = (const char *)sqlite3_value_text(argv[1]);
  int bOpt = 0, bHandled = 0;
  sqlite3_int64 nExist;
  struct stat st;
  int rc;

  memset(&s, 0, sizeof(s));
  memset(&opt, 0, sizeof(opt));
  s.db = db;
  s.pConn = sqlite3_user_data(ctx);
  s.zFunc = "gpt_import";
  s.zName = zName ? zName : "";
  s.zDir = zDir ? zDir : "";
  if (zName == 0 || zName[0] == 0) {
    s.zErr = sqlite3_mprintf("gpt_import: the model name must be a non-empty "
                             "string");
    goto done;
  }
  if (!gptext_name_ok(argv[0])) {
    s.zErr = sqlite3_mprintf("gpt_import: the model name must be " GPTEXT_NAME_RULE);
    goto done;
  }
  if (gptext_query_writes(ctx, "gpt_import", zName, &s.zErr) != SQLITE_OK) goto done;
  /* its errors name the model, as every other of this function's */
  rc = gptext_options_parse_named(db, "gpt_import", zName, argc > 2 ? argv[2] : 0, GPTOPT_REPLACE,
                                  &opt, &zErr);
  if (rc != SQLITE_OK) {
    s.zErr = zErr ? zErr : sqlite3_mprintf("gpt_import: out of memory");
    s.rcErr = rc;
    zErr = 0;
    goto done;
  }
  bOpt = 1;
  if (zDir == 0 || zDir[0] == 0) {
    impError(&s, 0, "the path must be a folder name, found %s",
             zDir ? "an empty string" : "NULL");
    goto done;
  }
  if (gptext_has_nul(argv[1])) {
    impError(&s, 0, "the path has a NUL character, which would cut it short");
    goto done;
  }
  if (gptext_gguf_is_file(zDir)) {
    /* a llama.cpp GGUF file, by its magic (ext/gguf.c) */
    gptext_gguf_import(ctx, zName, zDir, opt.bReplace);
    bHandled = 1;
    goto done;
  }
  if (stat(zDir, &st) != 0) {
    impError(&s, 0, "cannot open folder %s: %s", zDir, strerror(errno));
    goto done;
  }
  if (!S_ISDIR(st.st_mode)) {
    impError(&s, 0, "%s is neither a GGUF file nor a folder; expected a GGUF file, or a "
             "folder with config.json, model.safetensors (or its shards) and the tokenizer "
             "(tokenizer.json, or vocab.json and merges.txt)", zDir);
    goto done;
  }
  if (impTxnBegin(&s, "gpt_import") != SQLITE_OK) goto done;

  nExist = impModelRows(&s, zName);
  if (nExist < 0) goto done;
  if (nExist > 0 && !opt.bReplace) {
    s.zErr = sqlite3_mprintf("gpt_import: model '%s' already exists; pass "
                             "{\"replace\": true} to overwrite it", zName);
    goto done;
  }
  if (impConfig(&s) != SQLITE_OK) goto done;
  if (impSafetensors(&s) != SQLITE_OK) goto done;
  /* The old model goes once the new one has passed the cheap checks. */
  if (nExist > 0 && impDeleteModel(&s, zName, 0) != SQLITE_OK) goto done;
  if (impHasFile(&s, "tokenizer.json")) {
    if (impHfTokenizer(&s, &pTok) != SQLITE_OK) goto done;
  } else {
    pTok = tok_new(s.cfg.vocab_size);
    if (pTok == 0) {
      impNoMem(&s);
      goto done;
    }
    if (impVocab(&s, pTok) != SQLITE_OK) goto done;
    if (impMerges(&s, pTok) != SQLITE_OK) goto done;
  }
  if (impTensors(&s) != SQLITE_OK) goto done;
  if (impModelRow(&s) != SQLITE_OK) goto done;

  if (impTxnCommit(&s) != SQLITE_OK) goto done;
  {
    /* The stored dtypes, e.g. "f32" or "f32+f16". */
    char zDtypes[32];
    int k, n = 0;
    zDtypes[0] = 0;
    for (k = GPT_F32; k <= GPT_BF16; k++) {
      if (s.mDtype & (1u << k)) {
        n += snprintf(zDtypes + n, sizeof(zDtypes) - (size_t)n, "%s%s",
                      n ? "+" : "", gpt_dtype_name(k));
      }
    }
    zSummary = sqlite3_mprintf(
        "imported '%s': %d tensors, %lld parameters, %lld bytes (%s), "
        "%d tokens, %d merges from %s", zName, s.nReq, (long long)s.nParam,
        (long long)s.nByte, zDtypes, tok_vocab_size(pTok), s.nMerge, zDir);
  }
  if (zSummary == 0) impNoMem(&s);

done:
  impTxnEnd(&s);
  /* as after a trigger, the caller's last_insert_rowid() is what it was */
  sqlite3_set_last_insert_rowid(db, iRowidBefore);
  if (s.zErr && !s.bInterrupted && gptext_interrupted(db)) s.bInterrupted = 1;
  if (bHandled) {
    /* the result is set */
  } else if (s.zErr) {
    impResultError(ctx, &s);
  } else if (zSummary) {
    gptext_result_text(ctx, zSummary, (int)strlen(zSummary), sqlite3_free);
    zSummary = 0;
  } else {
    sqlite3_result_error_nomem(ctx);
  }
  tok_free(pTok);
  impClear(&s);
  if (bOpt) gptext_options_clear(&opt);
  sqlite3_free(s.zErr);
  sqlite3_free(zSummary);
  sqlite3_free(zErr);
}

/*
** Implementation of gpt_drop(NAME): deletes the model's rows from the four
** tables, and its gpt_train state and log, in one savepoint. Returns the
** number of gpt_tensors rows deleted. A name with no rows at all is an
** error.
*/
static void gptDropFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  const sqlite3_int64 iRowidBefore = sqlite3_last_insert_rowid(db);
  GptImport s;
  const char *zName = (const char *)sqlite3_value_text(argv[0]);
  sqlite3_int64 nExist, nTensor = 0;
  int bDone = 0;

  (void)argc;
  memset(&s, 0, sizeof(s));
  s.db = db;
  s.pConn = sqlite3_user_data(ctx);
  s.zFunc = "gpt_drop";
  s.zName = zName ? zName : "";
  if (zName == 0 || zName[0] == 0) {
    s.zErr = sqlite3_mprintf("gpt_drop: the model name must be a non-empty string");
    goto done;
  }
  if (!gptext_name_ok(argv[0])) { /* "m\0x" had dropped model 'm' */
    s.zErr = sqlite3_mprintf("gpt_drop: the model name must be " GPTEXT_NAME_RULE);
    goto done;
  }
  if (gptext_query_writes(ctx, "gpt_drop", zName, &s.zErr) != SQLITE_OK) goto done;
  if (impTxnBegin(&s, "gpt_drop") != SQLITE_OK) goto done;
  nExist = impModelRows(&s, zName);
  if (nExist < 0) goto done;
  if (nExist == 0) {
    s.zErr = sqlite3_mprintf("gpt_drop: no model named '%s'", zName);
    goto done;
  }
  if (impDeleteModel(&s, zName, &nTensor) != SQLITE_OK) goto done;
  if (impTxnCommit(&s) != SQLITE_OK) goto done;
  bDone = 1;
done:
  impTxnEnd(&s);
  /* as after a trigger, the caller's last_insert_rowid() is what it was */
  sqlite3_set_last_insert_rowid(db, iRowidBefore);
  if (s.zErr && !s.bInterrupted && gptext_interrupted(db)) s.bInterrupted = 1;
  if (s.zErr) {
    impResultError(ctx, &s);
  } else if (bDone) {
    gptext_conn_forget(sqlite3_user_data(ctx), zName);
    sqlite3_result_int64(ctx, nTensor);
  } else {
    sqlite3_result_error_nomem(ctx);
  }
  sqlite3_free(s.zErr);
}

/*
** Registers gpt_import (2 or 3 arguments) and gpt_drop, with the connection
** state as user data. Both write, so they are DIRECTONLY (not usable from
** triggers or views) and never deterministic.
*/
int gptext_register_import(sqlite3 *db, GptConn *pConn) {
  const int eFlags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  int rc = sqlite3_create_function(db, "gpt_import", 2, eFlags, pConn,
                                   gptImportFunc, 0, 0);
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "gpt_import", 3, eFlags, pConn,
                                 gptImportFunc, 0, 0);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "gpt_drop", 1, eFlags, pConn, gptDropFunc,
                                 0, 0);
  }
  return rc;
}
