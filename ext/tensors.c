/*
** The gpt_tensors rows of one tensor, whole or in row-aligned parts: read
** by the loader (ext/gpt.c), gpt_quantize and gpt_export, written by
** gpt_import (GGUF files and folders) and gpt_quantize, with one set of
** rules and messages. gpt_train sizes its parts with
** gptext_tensor_part_rows.
**
** A tensor whose row would pass SQLite's length limit (SQLITE_LIMIT_LENGTH,
** 1e9 bytes by default: Llama 3 8B's embedding is 1.05 GB in bf16) is
** stored as parts NAME#0, NAME#1, ... of R whole rows each but the last,
** shape [rows of the part, columns]. Only element dtypes (f32, f16, bf16)
** are stored in parts.
*/
#include <stdio.h>
#include <string.h>
#include "gpt_ext.h"

/* Bytes of a gpt_tensors row set aside for its other columns and the
** record's header: the model's name and the tensor's come on top. */
#define TENSOR_ROW_ROOM 256

/* The room a row of tensor zName of zModel needs besides its data: the
** names counted twice, as a UTF-16 database stores them in up to twice
** their UTF-8 bytes. */
static int64_t tensor_row_room(const char *zModel, const char *zName) {
  return 2 * ((int64_t)strlen(zModel) + (int64_t)strlen(zName) + 8) + TENSOR_ROW_ROOM;
}

/* The JSON shape of a part of n rows of info's tensor. */
static void tensor_shape(char *z, size_t nz, const GPTTensorInfo *info, int64_t n) {
  if (info->ndim == 2) snprintf(z, nz, "[%lld,%lld]", (long long)n, (long long)info->shape[1]);
  else snprintf(z, nz, "[%lld]", (long long)n);
}

/* k when zName is its first nBase bytes followed by "#k", k in canonical
** decimal below a million (a part's name); -1 otherwise. */
int gptext_tensor_part_number(const char *zName, size_t nBase) {
  int k = 0, nDigit = 0;
  if (zName[nBase] != '#') return -1;
  for (const char *z = zName + nBase + 1; *z; z++, nDigit++) {
    if (*z < '0' || *z > '9' || nDigit >= 6) return -1;
    k = k * 10 + (*z - '0');
  }
  if (nDigit == 0 || (nDigit > 1 && zName[nBase + 1] == '0')) return -1;
  return k;
}

/* Part k of zBase that zName names, or -1. */
static int tensor_part_of(const char *zName, const char *zBase) {
  size_t n = strlen(zBase);
  if (strncmp(zName, zBase, n) != 0) return -1;
  return gptext_tensor_part_number(zName, n);
}

/* The tensor index of a gpt_tensors row named zName (n bytes, which may
** hold a NUL that C's string functions would stop at): NAME, or NAME#k for
** part k of a tensor stored in parts. -1 for any other name. */
static int tensor_row_index(const GPTConfig *cfg, int hasLmHead, const char *zName, int n) {
  const char *zHash = strrchr(zName, '#');
  char zBase[160];
  if ((size_t)n != strlen(zName)) return -1;
  if (!zHash) return gpt_tensor_index(cfg, hasLmHead, zName);
  if ((size_t)(zHash - zName) >= sizeof(zBase)) return -1;
  if (gptext_tensor_part_number(zName, (size_t)(zHash - zName)) < 0) return -1;
  memcpy(zBase, zName, (size_t)(zHash - zName));
  zBase[zHash - zName] = 0;
  return gpt_tensor_index(cfg, hasLmHead, zBase);
}

/* Checks that every gpt_tensors row of zModel names one of the tensors of
** cfg (with or without lm_head) or a part of one; *pnRows is their count.
** On an unexpected name, SQLITE_ERROR and *pzMsg naming it. */
int gptext_tensor_names_check(sqlite3 *db, const char *zModel, const GPTConfig *cfg,
                              int hasLmHead, int64_t *pnRows, char **pzMsg) {
  sqlite3_stmt *q = 0;
  int rc = sqlite3_prepare_v2(db, "SELECT name FROM main.gpt_tensors WHERE model = ?1 "
                              "ORDER BY name", -1, &q, 0);
  *pnRows = 0;
  *pzMsg = 0;
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text(q, 1, zModel, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    const char *zName = (const char *)sqlite3_column_text(q, 0);
    if (!zName || tensor_row_index(cfg, hasLmHead, zName, sqlite3_column_bytes(q, 0)) < 0) {
      *pzMsg = sqlite3_mprintf("unexpected tensor '%s' in gpt_tensors", zName ? zName : "NULL");
      rc = SQLITE_ERROR;
      break;
    }
    (*pnRows)++;
  }
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Holds one read snapshot of the database across a reader's many
** statements (the loader's, gpt_export's): a statement stepped to its row
** and not yet reset keeps the connection's read transaction open, so
** another connection's commit cannot land between two tensors. *ppStmt is
** NULL when the model has no gpt_models row; finalize it to let go. */
int gptext_snapshot_begin(sqlite3 *db, const char *zModel, sqlite3_stmt **ppStmt) {
  int rc = sqlite3_prepare_v2(db, "SELECT stamp FROM main.gpt_models WHERE name = ?1", -1,
                              ppStmt, 0);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text(*ppStmt, 1, zModel, -1, SQLITE_TRANSIENT);
  rc = sqlite3_step(*ppStmt);
  if (rc == SQLITE_ROW) return SQLITE_OK;
  sqlite3_finalize(*ppStmt);
  *ppStmt = 0;
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* gptext_has_lm_head of model m, which must agree with a Llama-family
** config's tie_word_embeddings: the rows decide the head, and an
** lm_head.weight row added to a tied model ran as its head (and was
** quantized and exported). SQLITE_ERROR with *pzErr naming zFunc and the
** model when they disagree; SQLite's code, and no message, when the query
** fails. */
int gptext_lm_head_of(sqlite3 *db, const GptModel *m, const char *zFunc, int *pHas,
                      char **pzErr) {
  int rc = gptext_has_lm_head(db, m->zName, pHas);
  if (rc != SQLITE_OK || m->tiedCfg < 0 || *pHas != m->tiedCfg) return rc;
  gptext_set_error(pzErr, "%s: model '%s': config says tie_word_embeddings %s, but "
                   "gpt_tensors %s lm_head.weight", zFunc, m->zName,
                   m->tiedCfg ? "true" : "false", *pHas ? "has" : "has no");
  return SQLITE_ERROR;
}

/* Whether model zModel has its own output head (lm_head.weight, whole or
** in parts) rather than the tied embedding: 1 or 0 in *pHas, or SQLite's
** error code. */
int gptext_has_lm_head(sqlite3 *db, const char *zModel, int *pHas) {
  sqlite3_stmt *q = 0;
  int rc = sqlite3_prepare_v2(db, "SELECT EXISTS(SELECT 1 FROM main.gpt_tensors WHERE "
                              "model = ?1 AND (name = 'lm_head.weight' OR "
                              "name GLOB 'lm_head.weight#*'))", -1, &q, 0);
  *pHas = 0;
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text(q, 1, zModel, -1, SQLITE_STATIC);
  rc = sqlite3_step(q);
  if (rc == SQLITE_ROW) *pHas = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* The rows per part of a tensor of nRow rows of nRowBytes bytes (nBytes in
** all) stored as zName of zModel: nRow when one row holds it, 0 when not
** even one row fits. */
int64_t gptext_tensor_part_rows(sqlite3 *db, const char *zModel, const char *zName,
                                int64_t nRow, int64_t nRowBytes, int64_t nBytes) {
  int64_t nMax = sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1) - tensor_row_room(zModel, zName);
  if (nBytes <= nMax) return nRow;
  return nMax > 0 && nRowBytes > 0 ? nMax / nRowBytes : 0;
}

/* Finds the rows of info's tensor, whole or in parts, and checks each as
** the loader does, with the loader's messages. */
int gptext_tensor_open(sqlite3 *db, const char *zModel, const GPTTensorInfo *info,
                       GptTensorRows *p, char **pzMsg) {
  sqlite3_stmt *q = 0;
  char zWant[64];
  int rc, bWhole = 0, nSeen = 0, kLast = -1;
  int64_t nRow = info->shape[0], R = 0, nParts = 0;
  memset(p, 0, sizeof(*p));
  p->db = db;
  p->iOpen = -1;
  p->dtype = -1;
  *pzMsg = 0;
  rc = sqlite3_prepare_v2(db, "SELECT rowid, name, dtype, CASE WHEN json_valid(shape) THEN "
                          "json(shape) END, typeof(data), length(data), CASE WHEN "
                          "json_valid(shape) THEN json_extract(shape, '$[0]') END "
                          "FROM main.gpt_tensors WHERE model = ?1 AND (name = ?2 OR "
                          "(name >= ?2 || '#' AND name < ?2 || '$')) ORDER BY name = ?2 DESC, "
                          "length(name), name", -1, &q, 0);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_text(q, 1, zModel, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, info->name, -1, SQLITE_STATIC);
  /* the whole row first, then parts in order (#0..#9, #10.., canonical) */
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    const char *zName = (const char *)sqlite3_column_text(q, 1);
    const char *zDtype = (const char *)sqlite3_column_text(q, 2);
    const char *zShape = (const char *)sqlite3_column_text(q, 3);
    const char *zType = (const char *)sqlite3_column_text(q, 4);
    int64_t nLen = sqlite3_column_int64(q, 5), nRows = nRow;
    /* "f32" and a NUL and more is no dtype: C would read it as "f32" */
    int bDtypeNul = zDtype && (size_t)sqlite3_column_bytes(q, 2) != strlen(zDtype);
    int dtype = bDtypeNul ? -1 : gpt_row_dtype_from_name(zDtype);
    int k = -1;
    GPTTensorInfo part = *info;
    rc = SQLITE_ERROR;
    if (!zName) zName = "";
    if ((size_t)sqlite3_column_bytes(q, 1) != strlen(zName)) {
      continue; /* a NUL inside: gptext_tensor_names_check refuses it */
    }
    if (strcmp(zName, info->name) != 0) {
      k = tensor_part_of(zName, info->name);
      if (k < 0) continue; /* not this tensor's (NAME#x): refused as above */
      if (bWhole) {
        *pzMsg = sqlite3_mprintf("tensor %s is stored both whole and in parts (%s)",
                                 info->name, zName);
        goto done;
      }
      if (k <= kLast) {
        *pzMsg = sqlite3_mprintf("tensor %s appears twice", zName);
        goto done;
      }
      kLast = k;
      /* part k holds rows k*R .. of the stored shape, R the rows of part 0 */
      nRows = sqlite3_column_int64(q, 6);
      if (k == 0) R = nRows;
      if (R < 1 || R >= nRow || (int64_t)k * R >= nRow || gpt_dtype_block(dtype, 0) ||
          nRows != (nRow - k * R < R ? nRow - k * R : R)) {
        *pzMsg = sqlite3_mprintf("tensor %s is not a part of %s: parts hold %s rows each of "
                                 "its %lld, part 0 first, in f32, f16 or bf16", zName,
                                 info->name, R >= 1 ? "the same number of" : "fewer",
                                 (long long)nRow);
        goto done;
      }
      if (k > 0 && dtype != p->dtype) {
        *pzMsg = sqlite3_mprintf("tensor %s has dtype '%s', unlike part 0", zName,
                                 zDtype ? zDtype : "NULL");
        goto done;
      }
      if (k == 0) { /* a slot for each part */
        nParts = (nRow + R - 1) / R;
        p->aRowid = sqlite3_malloc64(sizeof(sqlite3_int64) * (uint64_t)nParts);
        if (!p->aRowid) {
          rc = SQLITE_NOMEM;
          goto done;
        }
        memset(p->aRowid, 0, sizeof(sqlite3_int64) * (size_t)nParts);
      }
      part.shape[0] = nRows;
      part.n_elem = info->ndim == 2 ? nRows * info->shape[1] : nRows;
    } else {
      /* a table without UNIQUE(model, name) may hold a row twice: two
      ** whole rows made one tensor of twice its bytes, and a read past the
      ** one row's slot */
      if (bWhole) {
        *pzMsg = sqlite3_mprintf("tensor %s appears twice", zName);
        goto done;
      }
      bWhole = 1;
    }
    if (dtype < 0) {
      *pzMsg = sqlite3_mprintf("tensor %s has dtype '%s'%s, expected 'f32', 'f16', 'bf16', "
                               "'q8_0', 'q4_0', 'q4_k' or 'q6_k'", zName,
                               zDtype ? zDtype : "NULL", bDtypeNul ? " and a NUL after it" : "");
      goto done;
    }
    tensor_shape(zWant, sizeof(zWant), info, nRows);
    if (!zShape || strcmp(zShape, zWant) != 0) {
      *pzMsg = sqlite3_mprintf("tensor %s has shape %s, expected %s", zName,
                               zShape ? zShape : "(not a JSON array)", zWant);
      goto done;
    }
    int64_t nWant = gpt_tensor_bytes(&part, dtype);
    if (nWant < 0) {
      *pzMsg = sqlite3_mprintf("tensor %s %s cannot be stored as %s, which needs a 2-D weight "
                               "whose input dimension is a multiple of %d", zName, zWant,
                               zDtype, gpt_dtype_block(dtype, 0));
      goto done;
    }
    if (!zType || strcmp(zType, "blob") != 0) {
      *pzMsg = sqlite3_mprintf("tensor %s has data of type %s, expected a BLOB of %lld bytes "
                               "(%s %s)", zName, zType ? zType : "NULL", (long long)nWant,
                               zDtype, zWant);
      goto done;
    }
    if (nLen != nWant) {
      *pzMsg = sqlite3_mprintf("tensor %s has %lld bytes, expected %lld (%s %s)", zName,
                               (long long)nLen, (long long)nWant, zDtype, zWant);
      goto done;
    }
    if (k < 0) {
      p->aRowid = sqlite3_malloc64(sizeof(sqlite3_int64));
      if (!p->aRowid) {
        rc = SQLITE_NOMEM;
        goto done;
      }
      k = 0;
    }
    p->aRowid[k] = sqlite3_column_int64(q, 0);
    p->dtype = dtype;
    p->nBytes += nLen;
    if (k == 0) p->nPartBytes = nLen;
    nSeen++;
  }
  if (rc == SQLITE_TOOBIG) {
    /* a row stored on its page is read whole, and checked against the limit */
    *pzMsg = sqlite3_mprintf("a row of tensor %s is larger than SQLite's length limit "
                             "(SQLITE_LIMIT_LENGTH %d)", info->name,
                             sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1));
    goto done;
  }
  if (rc != SQLITE_DONE) goto done;
  rc = SQLITE_ERROR;
  if (nSeen == 0 && R == 0) {
    *pzMsg = sqlite3_mprintf("tensor %s is missing from gpt_tensors", info->name);
  } else if (!bWhole && nSeen != nParts) {
    *pzMsg = sqlite3_mprintf("tensor %s has %d of its %lld parts in gpt_tensors", info->name,
                             nSeen, (long long)nParts);
  } else if (p->nBytes != gpt_tensor_bytes(info, p->dtype)) {
    /* every row was checked on its own; this holds them together */
    *pzMsg = sqlite3_mprintf("tensor %s has %lld bytes in its rows, expected %lld",
                             info->name, (long long)p->nBytes,
                             (long long)gpt_tensor_bytes(info, p->dtype));
  } else {
    rc = SQLITE_OK;
    p->nPart = nSeen;
  }
done:
  sqlite3_finalize(q);
  if (rc != SQLITE_OK) gptext_tensor_close(p);
  return rc;
}

/* Reads the whole tensor a chunk of whole elements (or blocks) at a time
** and checks its values as a load would (gpt_rows_check): a copy must not
** write what no reader takes. SQLITE_ERROR with *pzMsg on a bad value. */
int gptext_tensor_check(GptTensorRows *p, const GPTTensorInfo *info, char **pzMsg) {
  int nBlockBytes = 0, nBlock = gpt_dtype_block(p->dtype, &nBlockBytes);
  int unit = nBlock ? nBlockBytes : gpt_dtype_size(p->dtype), rc = SQLITE_OK;
  int64_t per = nBlock ? nBlock : 1, nChunk;
  char zErr[256];
  *pzMsg = 0;
  if (unit <= 0) return SQLITE_ERROR;
  nChunk = ((int64_t)1 << 20) / unit * unit;
  unsigned char *aBuf = sqlite3_malloc64((sqlite3_uint64)nChunk);
  if (!aBuf) return SQLITE_NOMEM;
  for (int64_t off = 0; rc == SQLITE_OK && off < p->nBytes; off += nChunk) {
    int n = (int)(p->nBytes - off < nChunk ? p->nBytes - off : nChunk);
    rc = gptext_tensor_read(p, aBuf, n, off);
    if (rc == SQLITE_OK &&
        gpt_rows_check(info->name, p->dtype, aBuf, off / unit * per, n / unit * per, zErr,
                       sizeof(zErr))) {
      *pzMsg = sqlite3_mprintf("%s", zErr);
      rc = *pzMsg ? SQLITE_ERROR : SQLITE_NOMEM;
    }
  }
  sqlite3_free(aBuf);
  return rc;
}

/* n bytes at byte off of the whole tensor, across its parts: one blob handle,
** reopened on the part's row when the read moves to another part. */
int gptext_tensor_read(GptTensorRows *p, void *buf, int n, int64_t off) {
  unsigned char *z = buf;
  if (off < 0 || n < 0 || off + n > p->nBytes) return SQLITE_RANGE;
  while (n > 0) {
    int k = (int)(off / p->nPartBytes);
    int64_t at = off - (int64_t)k * p->nPartBytes;
    int m = (int)(p->nPartBytes - at < n ? p->nPartBytes - at : n);
    int rc;
    if (k != p->iOpen) {
      rc = p->pBlob ? sqlite3_blob_reopen(p->pBlob, p->aRowid[k])
                    : sqlite3_blob_open(p->db, "main", "gpt_tensors", "data", p->aRowid[k], 0,
                                        &p->pBlob);
      if (rc != SQLITE_OK) {
        p->iOpen = -1;
        return rc;
      }
      p->iOpen = k;
    }
    rc = sqlite3_blob_read(p->pBlob, z, m, (int)at);
    if (rc != SQLITE_OK) return rc;
    z += m;
    off += m;
    n -= m;
  }
  return SQLITE_OK;
}

/* Closes the blob handle and frees the rows' ids. */
void gptext_tensor_close(GptTensorRows *p) {
  if (p->pBlob) sqlite3_blob_close(p->pBlob);
  sqlite3_free(p->aRowid);
  p->pBlob = 0;
  p->aRowid = 0;
  p->iOpen = -1;
}

/* Starts writing a tensor of info's shape in dtype: sizes its parts (one
** BLOB, or whole rows a part) and prepares the insert (gpt_ext.h). */
int gptext_tensor_create(GptTensorWriter *w, sqlite3 *db, const char *zModel,
                         const GPTTensorInfo *info, int dtype, char **pzMsg) {
  int64_t nRow = info->shape[0];
  int64_t nBytes = gpt_tensor_bytes(info, dtype);
  memset(w, 0, sizeof(*w));
  w->db = db;
  w->zModel = zModel;
  w->info = *info;
  w->dtype = dtype;
  *pzMsg = 0;
  if (nBytes < 0) return SQLITE_MISUSE;
  w->nBytes = nBytes;
  w->nRowBytes = nRow > 0 ? nBytes / nRow : 0;
  w->nPartRows = gptext_tensor_part_rows(db, zModel, info->name, nRow, w->nRowBytes, nBytes);
  if (w->nPartRows < nRow && (w->nPartRows < 1 || gpt_dtype_block(dtype, 0))) {
    int nLimit = sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1);
    *pzMsg = w->nPartRows < 1
        ? sqlite3_mprintf("a row of tensor %s (%lld bytes, and %lld for the names and other "
                          "columns of its gpt_tensors row) is larger than a BLOB may be "
                          "(SQLITE_LIMIT_LENGTH %d)", info->name, (long long)w->nRowBytes,
                          (long long)tensor_row_room(zModel, info->name), nLimit)
        : sqlite3_mprintf("tensor %s is %lld bytes of %s, more than a BLOB may be "
                          "(SQLITE_LIMIT_LENGTH %d), and only f32, f16 and bf16 tensors are "
                          "stored in parts", info->name, (long long)nBytes,
                          gpt_dtype_name(dtype), nLimit);
    return SQLITE_TOOBIG;
  }
  return sqlite3_prepare_v2(db, "INSERT INTO main.gpt_tensors(model, name, dtype, shape, data) "
                            "VALUES(?1, ?2, ?3, ?4, zeroblob(?5))", -1, &w->pIns, 0);
}

/* Inserts the next part's row (the whole tensor's when it fits one) and
** opens its BLOB for writing. */
static int tensor_next_part(GptTensorWriter *w) {
  int64_t nRow = w->info.shape[0];
  int64_t r0 = (int64_t)w->iPart * w->nPartRows;
  int64_t n = nRow - r0 < w->nPartRows ? nRow - r0 : w->nPartRows;
  int bWhole = w->nPartRows >= nRow;
  char zShape[64];
  char *zName = bWhole ? sqlite3_mprintf("%s", w->info.name)
                       : sqlite3_mprintf("%s#%d", w->info.name, w->iPart);
  int rc;
  if (!zName) return SQLITE_NOMEM;
  if (bWhole) n = nRow;
  tensor_shape(zShape, sizeof(zShape), &w->info, n);
  sqlite3_bind_text(w->pIns, 1, w->zModel, -1, SQLITE_STATIC);
  sqlite3_bind_text(w->pIns, 2, zName, -1, sqlite3_free);
  sqlite3_bind_text(w->pIns, 3, gpt_dtype_name(w->dtype), -1, SQLITE_STATIC);
  sqlite3_bind_text(w->pIns, 4, zShape, -1, SQLITE_TRANSIENT);
  w->nPartBytes = bWhole ? w->nBytes : n * w->nRowBytes;
  sqlite3_bind_int64(w->pIns, 5, w->nPartBytes);
  rc = sqlite3_step(w->pIns);
  sqlite3_reset(w->pIns);
  if (rc != SQLITE_DONE) return rc;
  if (w->pBlob) {
    rc = sqlite3_blob_reopen(w->pBlob, sqlite3_last_insert_rowid(w->db));
  } else {
    rc = sqlite3_blob_open(w->db, "main", "gpt_tensors", "data",
                           sqlite3_last_insert_rowid(w->db), 1, &w->pBlob);
  }
  if (rc != SQLITE_OK) return rc;
  w->iPart++;
  w->nInPart = 0;
  return SQLITE_OK;
}

/* Appends n bytes to the tensor, a new part's row each time one fills;
** SQLITE_RANGE for more bytes than the tensor holds. */
int gptext_tensor_write(GptTensorWriter *w, const void *a, int64_t n) {
  const unsigned char *z = a;
  if (n < 0 || w->nWritten + n > w->nBytes) return SQLITE_RANGE;
  while (n > 0) {
    int rc;
    if (w->iPart == 0 || w->nInPart == w->nPartBytes) {
      if ((rc = tensor_next_part(w)) != SQLITE_OK) return rc;
    }
    int64_t m = w->nPartBytes - w->nInPart < n ? w->nPartBytes - w->nInPart : n;
    if (m > (1 << 30)) m = 1 << 30;
    rc = sqlite3_blob_write(w->pBlob, z, (int)m, (int)w->nInPart);
    if (rc != SQLITE_OK) return rc;
    z += m;
    n -= m;
    w->nInPart += m;
    w->nWritten += m;
  }
  return SQLITE_OK;
}

/* Ends the tensor: SQLITE_MISUSE unless every byte came, and frees the
** writer's statement and blob handle. */
int gptext_tensor_finish(GptTensorWriter *w) {
  int rc = SQLITE_OK;
  /* an empty tensor still gets its row */
  if (w->pIns && w->iPart == 0) rc = tensor_next_part(w);
  if (rc == SQLITE_OK && w->nWritten != w->nBytes) rc = SQLITE_MISUSE;
  if (w->pBlob) {
    int rc2 = sqlite3_blob_close(w->pBlob);
    if (rc == SQLITE_OK) rc = rc2;
  }
  sqlite3_finalize(w->pIns);
  w->pBlob = 0;
  w->pIns = 0;
  return rc;
}
