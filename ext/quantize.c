/*
** gpt_quantize(): a compact copy of a model.
**
**   SELECT gpt_quantize('gpt2', 'gpt2-q8', 'q8_0');
**   SELECT gpt_quantize('gpt2', 'gpt2-f16', 'f16');
**   SELECT gpt_quantize('gpt2', 'gpt2-q4', 'q4_k');   -- like llama.cpp's Q4_K_M
**   SELECT gpt_quantize('gpt2', 'gpt2-q40', 'q4_0');
**
** writes model DST beside SRC with every 2-D weight (wte, wpe, lm_head and
** the four linear weights of each block) in the new dtype; biases and
** LayerNorm parameters are copied as they are, and so are the vocabulary and
** the merges. 'f16' rows keep the Hugging Face layout of the other element
** dtypes. 'q8_0' rows hold the weight in (out, in) order with blocks of 32
** along the input dimension (sql/schema.sql has the byte layout); a weight
** whose input dimension is not a multiple of 32 is written as f16 instead.
** The forward pass reads both formats as they are (engine/kernels.c).
**
** 'q4_0' and 'q4_k' write ggml's 4-bit blocks (engine/kernels_q4.h), in the
** same (out, in) order, with a mix of types as llama.cpp's Q4_0 and Q4_K_M
** files have (quantTarget):
**   - the output head (lm_head, or the token embedding when it is tied) is
**     q6_k in both;
**   - with 'q4_k', the value projection (GPT-2's fused c_attn) and the MLP's
**     down projection are q6_k in the layers llama.cpp gives more bits (the
**     first and last eighth, and every third between); every other 2-D
**     weight is q4_k;
**   - with 'q4_0', every other 2-D weight is q4_0.
** A weight whose input dimension is not a multiple of 256 cannot be q4_k or
** q6_k: it takes q4_0 for q4_k and q8_0 for q6_k, and f16 when it is not a
** multiple of 32 either. kernels_q4.c says how the blocks are fitted.
**
** A 2-D weight that SRC holds quantized (q8_0 or 4-bit) is not converted
** to another dtype unless OPTIONS (a JSON object, the fourth argument) is
** {"allow_requantize": true}: each rounding adds its error, as llama.cpp's
** quantize says in refusing without --allow-requantize.
**
** The copy is atomic: it runs in one SAVEPOINT and any error rolls back to
** it. DST must not exist yet. Errors read "gpt_quantize: model 'NAME': ...".
*/
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "gpt_ext.h"
#include "kernels.h"
#include "kernels_q4.h"

/* State of one call. */
typedef struct GptQuant {
  sqlite3 *db;
  const GptConn *pConn;      /* the connection's state (its schema read again at load?) */
  const char *zSrc, *zDst;
  int dtype;                 /* GPT_F16, GPT_Q8_0, GPT_Q4_0 or GPT_Q4_K (a mix, see above) */
  char *zErr;
  int rcErr;                 /* SQLite's code for zErr (SQLITE_BUSY, _FULL, ...), or 0 */
  int bInterrupted;
  GptSavepoint sp;           /* the savepoint of the whole call (ext/savepoint.c) */
  int64_t nIn, nOut;         /* bytes of tensor rows read and written */
  int nTensor;
  int bAllowRequantize;      /* option allow_requantize */
} GptQuant;

static const char zFunc[] = "gpt_quantize";

/* Values converted between two looks at the interrupt flag: 2^18 (a MiB
** of f32; 40 ms of q4_k), whole blocks of every target (32 and 256). */
#define QUANT_CHUNK ((int64_t)1 << 18)

/* Records the first error, about model zModel (the source unless named). */
static int quantError(GptQuant *q, const char *zModel, const char *zFmt, ...) {
  va_list ap;
  char *zMsg;
  if (q->zErr) return SQLITE_ERROR;
  va_start(ap, zFmt);
  zMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  q->zErr = sqlite3_mprintf("%s: model '%s': %s", zFunc, zModel ? zModel : q->zSrc,
                            zMsg ? zMsg : "out of memory");
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/* Records "interrupted", always of the copy the call makes, with
** SQLITE_INTERRUPT as the result code. */
static int quantInterrupted(GptQuant *q) {
  q->bInterrupted = 1;
  return quantError(q, q->zDst, "interrupted");
}

/* Records the error of a failed SQLite call about model zModel (the source
** unless named: a failed write names the copy): "interrupted", or the
** connection's message, with the call's code (SQLITE_BUSY, SQLITE_FULL,
** SQLITE_NOMEM, ...) kept for the result. */
static int quantSqlErrorOf(GptQuant *q, const char *zModel, int rc) {
  if (q->zErr == 0 && rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
    q->rcErr = gptext_sql_code(q->db, rc);
  if ((rc & 0xff) == SQLITE_NOMEM) return quantError(q, zModel, "out of memory");
  char *zMsg = sqlite3_mprintf("%s", sqlite3_errmsg(q->db));
  if ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(q->db)) {
    quantInterrupted(q);
  } else {
    quantError(q, zModel, "%s", zMsg ? zMsg : "out of memory");
  }
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/* quantSqlErrorOf about the source. */
static int quantSqlError(GptQuant *q, int rc) { return quantSqlErrorOf(q, 0, rc); }

/* Records "out of memory" with SQLITE_NOMEM as the result code. */
static int quantNoMem(GptQuant *q) {
  if (q->zErr == 0) q->rcErr = SQLITE_NOMEM;
  return quantError(q, 0, "out of memory");
}

/* Opens the savepoint and takes the write lock, waiting out the busy timeout
** as SQLite's own writers do (ext/savepoint.c). */
static int quantTxnBegin(GptQuant *q) {
  char *zMsg = 0;
  int rc = gptext_savepoint_begin(q->db, q->pConn, &q->sp, zFunc, &zMsg);
  if (rc != SQLITE_OK) {
    if ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(q->db)) {
      quantInterrupted(q);
    } else {
      if (q->zErr == 0) q->rcErr = rc;
      quantError(q, 0, "%s", zMsg ? zMsg : "out of memory");
    }
    rc = SQLITE_ERROR;
  }
  sqlite3_free(zMsg);
  return rc;
}

/* Releases the savepoint (commit) when the copy is complete (bDone), and
** otherwise rolls it back (ext/savepoint.c says how, after an interrupt
** too). Never judged by q->zErr alone: out of memory, the error's message
** itself may not have been allocated, and a half-written copy was
** committed. Whether it committed. */
static int quantTxnEnd(GptQuant *q, int bDone) {
  int bCommitted = 0;
  if (q->sp.bOpen && bDone && !q->zErr) {
    char *zMsg = 0;
    int rc = gptext_savepoint_release(&q->sp, &zMsg);
    if (rc != SQLITE_OK) {
      if ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(q->db)) {
        quantInterrupted(q);
      } else {
        q->rcErr = rc;
        quantError(q, 0, "%s", zMsg ? zMsg : "out of memory");
      }
    } else {
      bCommitted = 1;
    }
    sqlite3_free(zMsg);
  }
  gptext_savepoint_end(&q->sp);
  return bCommitted;
}

/* Runs a statement that writes the copy, with up to three text parameters
** and no result rows; an error names the copy. */
static int quantExec(GptQuant *q, const char *zSql, const char *z1, const char *z2,
                     const char *z3) {
  sqlite3_stmt *p = 0;
  int rc = sqlite3_prepare_v2(q->db, zSql, -1, &p, 0);
  if (rc == SQLITE_OK) {
    if (z1) sqlite3_bind_text(p, 1, z1, -1, SQLITE_STATIC);
    if (z2) sqlite3_bind_text(p, 2, z2, -1, SQLITE_STATIC);
    if (z3) sqlite3_bind_text(p, 3, z3, -1, SQLITE_STATIC);
    rc = sqlite3_step(p);
  }
  sqlite3_finalize(p);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return quantSqlErrorOf(q, q->zDst, rc);
  return SQLITE_OK;
}

/* Reads a whole tensor (its row or parts, of dtype) and widens it into f32
** in memory order: (rows, k) for block-format targets, stored order
** otherwise. */
static int quantRead(GptQuant *q, GptTensorRows *pRows, const GPTTensorInfo *info, int dtype,
                     int bMemoryOrder, float *aOut) {
  unsigned char *aBuf = 0;
  const int nChunk = 1 << 20;
  int64_t nBytes = pRows->nBytes, rows, K;
  int rc = SQLITE_OK;
  aBuf = sqlite3_malloc(nChunk);
  if (!aBuf) return quantNoMem(q);
  gpt_tensor_matrix(info, &rows, &K);
  /* Stored element e of a Conv1D weight is (e / out, e % out) of (in, out);
  ** block formats hold (out, in) */
  int nBlockBytes = 0, nBlock = gpt_dtype_block(dtype, &nBlockBytes);
  int bTranspose = info->transposed && bMemoryOrder && !nBlock;
  int bUntranspose = info->transposed && !bMemoryOrder && nBlock;
  int unit = nBlock ? nBlockBytes : gpt_dtype_size(dtype);
  int64_t per = nBlock ? nBlock : 1, nOut = info->transposed ? rows : 0;
  float aBlock[GPT_QK_K];
  for (int64_t off = 0; off < nBytes; off += nChunk / unit * unit) {
    int n = (int)(nBytes - off < nChunk / unit * unit ? nBytes - off : nChunk / unit * unit);
    if (gptext_interrupted(q->db)) { rc = quantInterrupted(q); goto done; }
    rc = gptext_tensor_read(pRows, aBuf, n, off);
    if (rc != SQLITE_OK) { rc = quantSqlError(q, rc); goto done; }
    int64_t e0 = off / unit * per, nVal = n / unit * per;
    /* values no load takes are refused, not converted */
    char zBad[256];
    if (gpt_rows_check(info->name, dtype, aBuf, e0, nVal, zBad, sizeof(zBad))) {
      rc = quantError(q, 0, "%s", zBad);
      goto done;
    }
    for (int64_t k = 0; k < nVal; k++) {
      float f;
      if (nBlock && dtype != GPT_Q8_0) {
        if (k % nBlock == 0)
          gpt_q4_to_f32(gpt_q4_kernels(), dtype, aBlock, aBuf + k / nBlock * nBlockBytes, 1);
        f = aBlock[k % nBlock];
      } else if (dtype == GPT_Q8_0) {
        const unsigned char *blk = aBuf + k / GPT_Q8_BLOCK * GPT_Q8_BYTES;
        f = gpt_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8))) *
            (float)(int8_t)blk[2 + k % GPT_Q8_BLOCK];
      } else if (dtype == GPT_F32) {
        memcpy(&f, aBuf + 4 * k, 4);
      } else {
        uint16_t h;
        memcpy(&h, aBuf + 2 * k, 2);
        f = dtype == GPT_F16 ? gpt_f16_to_f32(h) : gpt_bf16_to_f32(h);
      }
      int64_t e = e0 + k, d = e;
      if (bTranspose) d = (e % nOut) * K + e / nOut;       /* (in,out) -> (out,in) */
      if (bUntranspose) d = (e % K) * nOut + e / K;        /* (out,in) -> (in,out) */
      aOut[d] = f;
    }
  }
  rc = SQLITE_OK;
done:
  sqlite3_free(aBuf);
  return rc;
}

/* Whether layer iLayer of nLayer gets more bits in llama.cpp's Q4_K_M (its
** use_more_bits): the first and last eighth of the layers, and every third
** layer between. */
static int quantMoreBits(int iLayer, int nLayer) {
  return iLayer < nLayer / 8 || iLayer >= 7 * nLayer / 8 || (iLayer - nLayer / 8) % 3 == 2;
}

/* The layer number in a tensor name "h.N." or "model.layers.N.", or -1. */
static int quantLayerOf(const char *z) {
  int n = 0, nDigit = 0;
  if (strncmp(z, "h.", 2) == 0) z += 2;
  else if (strncmp(z, "model.layers.", 13) == 0) z += 13;
  else return -1;
  for (; *z >= '0' && *z <= '9' && nDigit < 6; z++, nDigit++) n = n * 10 + (*z - '0');
  return nDigit > 0 && *z == '.' ? n : -1;
}

/* The dtype tensor info of a model with nLayer layers is written in (see the
** top of this file); -1 for a 1-D tensor, which is copied as it is. */
static int quantTarget(const GptQuant *q, const GPTTensorInfo *info, int nLayer, int hasLmHead) {
  const char *z = info->name;
  int target = q->dtype, iLayer = -1;
  if (info->ndim != 2) return -1;
  if (q->dtype == GPT_Q4_0 || q->dtype == GPT_Q4_K) {
    int bHead = strcmp(z, "lm_head.weight") == 0 ||
                (!hasLmHead && (strcmp(z, "wte.weight") == 0 ||
                                strcmp(z, "model.embed_tokens.weight") == 0));
    iLayer = quantLayerOf(z);
    if (bHead) {
      target = GPT_Q6_K;
    } else if (q->dtype == GPT_Q4_K && iLayer >= 0 && quantMoreBits(iLayer, nLayer) &&
               (strstr(z, ".attn.c_attn.") || strstr(z, ".self_attn.v_proj.") ||
                strstr(z, ".mlp.c_proj.") || strstr(z, ".mlp.down_proj."))) {
      target = GPT_Q6_K;
    }
  }
  /* fall back where the input dimension does not divide into blocks */
  if (gpt_tensor_bytes(info, target) < 0)
    target = target == GPT_Q4_K ? GPT_Q4_0 : target == GPT_Q6_K ? GPT_Q8_0 : target;
  if (gpt_tensor_bytes(info, target) < 0) target = GPT_F16;
  return target;
}

/* Writes a tensor of the destination in dtype (one row or parts, as
** ext/tensors.c lays them out for the destination's name and the limit):
** n bytes from a, or with a NULL the source's rows pRows as they are, a
** chunk at a time. */
static int quantWrite(GptQuant *q, const GPTTensorInfo *info, int dtype, const void *a,
                      int64_t n, GptTensorRows *pRows) {
  GptTensorWriter w;
  char *zMsg = 0;
  unsigned char *aBuf = 0;
  char zBad[256];
  int bReadFailed = 0; /* else a failure is the copy's */
  int bBadValue = 0;   /* zBad says which */
  int rc = gptext_tensor_create(&w, q->db, q->zDst, info, dtype, &zMsg);
  if (rc == SQLITE_OK && a) {
    rc = gptext_tensor_write(&w, a, n);
  } else if (rc == SQLITE_OK) {
    /* whole elements (or blocks) a chunk, each checked as a load checks
    ** them: a copy must not write what no reader takes */
    int nBlockBytes = 0, nBlock = gpt_dtype_block(dtype, &nBlockBytes);
    int unit = nBlock ? nBlockBytes : gpt_dtype_size(dtype);
    int64_t per = nBlock ? nBlock : 1;
    const int nChunk = (1 << 20) / unit * unit;
    aBuf = sqlite3_malloc(nChunk);
    if (!aBuf) rc = SQLITE_NOMEM;
    for (int64_t off = 0; rc == SQLITE_OK && off < n; off += nChunk) {
      int m = (int)(n - off < nChunk ? n - off : nChunk);
      rc = gptext_tensor_read(pRows, aBuf, m, off);
      if (rc != SQLITE_OK) {
        bReadFailed = 1;
      } else if (gpt_rows_check(info->name, dtype, aBuf, off / unit * per, m / unit * per, zBad,
                                sizeof(zBad))) {
        bBadValue = 1;
        rc = SQLITE_ERROR;
      } else {
        rc = gptext_tensor_write(&w, aBuf, m);
      }
    }
  }
  int rc2 = gptext_tensor_finish(&w);
  if (rc == SQLITE_OK) rc = rc2;
  if (bBadValue) {
    rc = quantError(q, 0, "%s", zBad);
  } else if (zMsg) {
    if (!q->zErr) q->rcErr = rc;
    rc = quantError(q, q->zDst, "%s", zMsg);
  } else if (rc != SQLITE_OK) {
    rc = quantSqlErrorOf(q, bReadFailed ? 0 : q->zDst, rc);
  }
  sqlite3_free(zMsg);
  sqlite3_free(aBuf);
  if (rc == SQLITE_OK) q->nOut += n;
  return rc;
}

/* Writes tensor i of the source into the destination, converted to the
** target dtype (2-D weights) or copied as it is; either may be stored whole
** or in parts (ext/tensors.c). */
static int quantTensor(GptQuant *q, const GPTConfig *cfg, int hasLmHead, int i) {
  GPTTensorInfo info;
  GptTensorRows rows;
  float *aVal = 0;
  void *aDst = 0;
  char *zMsg = 0;
  int rc;
  gpt_tensor_info(cfg, hasLmHead, i, &info);
  rc = gptext_tensor_open(q->db, q->zSrc, &info, &rows, &zMsg);
  if (rc != SQLITE_OK) {
    rc = zMsg ? quantError(q, 0, "%s", zMsg) : quantSqlError(q, rc);
    sqlite3_free(zMsg);
    return rc;
  }
  {
    int dtype = rows.dtype;
    int target = quantTarget(q, &info, cfg->n_layer, hasLmHead);
    int64_t nDst;
    q->nIn += rows.nBytes;
    if (info.ndim != 2 || dtype == target) {
      /* copied as it is */
      rc = quantWrite(q, &info, dtype, 0, rows.nBytes, &rows);
      goto done;
    }
    if (gpt_dtype_block(dtype, 0) != 0 && !q->bAllowRequantize) {
      /* as llama.cpp's quantize refuses without --allow-requantize */
      rc = quantError(q, 0, "tensor %s is %s already; requantizing it to %s adds a second "
                      "rounding to the first (quantize the f32, f16 or bf16 model, or pass "
                      "'{\"allow_requantize\": true}' as the fourth argument)", info.name,
                      gpt_dtype_name(dtype), gpt_dtype_name(target));
      goto done;
    }
    nDst = gpt_tensor_bytes(&info, target);
    aVal = sqlite3_malloc64(sizeof(float) * (size_t)info.n_elem);
    aDst = sqlite3_malloc64((size_t)nDst);
    if (!aVal || !aDst) {
      if (!q->zErr) q->rcErr = SQLITE_NOMEM;
      rc = quantError(q, 0, "out of memory for tensor %s", info.name);
      goto done;
    }
    rc = quantRead(q, &rows, &info, dtype, gpt_dtype_block(target, 0) != 0, aVal);
    if (rc != SQLITE_OK) goto done;
    /* QUANT_CHUNK values at a time, so that an interrupt stops the largest
    ** tensor within one (Llama 3 8B's embedding took minutes at once) */
    for (int64_t e0 = 0; e0 < info.n_elem; e0 += QUANT_CHUNK) {
      int64_t n = info.n_elem - e0 < QUANT_CHUNK ? info.n_elem - e0 : QUANT_CHUNK;
      if (gptext_interrupted(q->db)) { rc = quantInterrupted(q); goto done; }
      if (target == GPT_Q4_0 || target == GPT_Q4_K || target == GPT_Q6_K) {
        int nBlockBytes = 0, nBlock = gpt_dtype_block(target, &nBlockBytes);
        if (gpt_q4_quantize_row(target, (uint8_t *)aDst + e0 / nBlock * nBlockBytes, aVal + e0, n)) {
          rc = quantError(q, 0, "tensor %s has a value that %s cannot hold (NaN, Inf or a "
                          "scale beyond f16)", info.name, gpt_dtype_name(target));
          goto done;
        }
      } else if (target == GPT_Q8_0) {
        if (gpt_q8_quantize_row((uint8_t *)aDst + e0 / GPT_Q8_BLOCK * GPT_Q8_BYTES, aVal + e0, n)) {
          rc = quantError(q, 0, "tensor %s has a value that q8_0 cannot hold (NaN, Inf or "
                          "above 8e6)", info.name);
          goto done;
        }
      } else {
        uint16_t *h = (uint16_t *)aDst;
        for (int64_t k = e0; k < e0 + n; k++) {
          h[k] = gpt_f32_to_f16(aVal[k]);
          if ((h[k] & 0x7c00) == 0x7c00) {
            rc = quantError(q, 0, "tensor %s has the value %g at element %lld, outside the "
                            "range of f16", info.name, (double)aVal[k], (long long)k);
            goto done;
          }
        }
      }
    }
    rc = quantWrite(q, &info, target, aDst, nDst, 0);
  }
done:
  gptext_tensor_close(&rows);
  sqlite3_free(aVal);
  sqlite3_free(aDst);
  return rc;
}

/* Counts the rows of model zName in the five tables: > 0 means it exists. */
static sqlite3_int64 quantModelRows(GptQuant *q, const char *zName) {
  sqlite3_stmt *p = 0;
  sqlite3_int64 n = -1;
  int rc = sqlite3_prepare_v2(q->db,
      "SELECT (SELECT count(*) FROM main.gpt_models WHERE name = ?1)"
      " + (SELECT count(*) FROM main.gpt_tensors WHERE model = ?1)"
      " + (SELECT count(*) FROM main.gpt_vocab WHERE model = ?1)"
      " + (SELECT count(*) FROM main.gpt_merges WHERE model = ?1)"
      " + (SELECT count(*) FROM main.gpt_tokenizer WHERE model = ?1)", -1, &p, 0);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
    rc = sqlite3_step(p);
    if (rc == SQLITE_ROW) n = sqlite3_column_int64(p, 0);
  }
  sqlite3_finalize(p);
  if (n < 0) quantSqlError(q, rc);
  return n;
}

/* gpt_quantize(SRC, DST, DTYPE [, OPTIONS]): see the top of this file.
** Returns a summary of what was written. */
static void gptQuantizeFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  GptConn *pConn = sqlite3_user_data(ctx);
  GptQuant q;
  GptModel *m = 0;
  char *zErr = 0, *zSummary = 0, *zSource = 0;
  const char *zType = (const char *)sqlite3_value_text(argv[2]);
  int hasLmHead = 0, bDone = 0;
  memset(&q, 0, sizeof(q));
  q.db = sqlite3_context_db_handle(ctx);
  q.pConn = pConn;
  const sqlite3_int64 iRowidBefore = sqlite3_last_insert_rowid(q.db);
  q.zSrc = (const char *)sqlite3_value_text(argv[0]);
  q.zDst = (const char *)sqlite3_value_text(argv[1]);
  if (!q.zSrc || !q.zSrc[0] || !q.zDst || !q.zDst[0]) {
    q.zErr = sqlite3_mprintf("%s: the source and destination model names must be "
                             "non-empty strings", zFunc);
    goto done;
  }
  if (!gptext_name_ok(argv[0])) { /* "m\0x" had read model 'm' */
    q.zErr = sqlite3_mprintf("%s: the source model name must be " GPTEXT_NAME_RULE, zFunc);
    goto done;
  }
  if (!gptext_name_ok(argv[1])) {
    q.zErr = sqlite3_mprintf("%s: the destination model name must be " GPTEXT_NAME_RULE, zFunc);
    goto done;
  }
  if (gptext_query_writes(ctx, zFunc, q.zDst, &q.zErr) != SQLITE_OK) goto done;
  if (strcmp(q.zSrc, q.zDst) == 0) {
    quantError(&q, 0, "the destination must be a new model, not the source itself");
    goto done;
  }
  q.dtype = zType && strcmp(zType, "q8_0") == 0 ? GPT_Q8_0
          : zType && strcmp(zType, "q4_0") == 0 ? GPT_Q4_0
          : zType && strcmp(zType, "q4_k") == 0 ? GPT_Q4_K
          : zType && strcmp(zType, "f16") == 0 ? GPT_F16 : -1;
  if (q.dtype < 0) {
    quantError(&q, 0, "dtype must be 'f16', 'q8_0', 'q4_k' or 'q4_0', not %s%s%s",
               zType ? "'" : "",
               zType ? zType : "NULL", zType ? "'" : "");
    goto done;
  }
  if (argc > 3) {
    /* its errors name the source, as every other of this function's */
    GptOptions o;
    if (gptext_options_parse_named(q.db, zFunc, q.zSrc, argv[3], GPTOPT_REQUANT, &o, &q.zErr) !=
        SQLITE_OK)
      goto done;
    q.bAllowRequantize = o.bAllowRequantize;
    gptext_options_clear(&o);
  }
  {
    int rc = gptext_model_acquire(pConn, q.db, zFunc, q.zSrc, 0, &m, &zErr);
    if (rc != SQLITE_OK) {
      q.zErr = zErr ? zErr : sqlite3_mprintf("%s: %s", zFunc, sqlite3_errstr(rc));
      q.bInterrupted = rc == SQLITE_INTERRUPT;
      q.rcErr = rc;
      zErr = 0;
      goto done;
    }
  }
  if (quantTxnBegin(&q) != SQLITE_OK) goto done;
  {
    sqlite3_int64 nExist = quantModelRows(&q, q.zDst);
    if (nExist < 0) goto done;
    if (nExist > 0) {
      quantError(&q, q.zDst, "already exists; drop it first with gpt_drop('%s')", q.zDst);
      goto done;
    }
  }
  if (gptext_lm_head_of(q.db, m, zFunc, &hasLmHead, &zErr) != SQLITE_OK) {
    if (zErr) {
      sqlite3_free(q.zErr);
      q.zErr = zErr;
      zErr = 0;
    } else {
      quantSqlError(&q, SQLITE_ERROR);
    }
    goto done;
  }
  {
    /* every row one of the model's tensors or parts, as the loader asks */
    int64_t nRows = 0;
    char *zMsg = 0;
    int rc = gptext_tensor_names_check(q.db, q.zSrc, &m->cfg, hasLmHead, &nRows, &zMsg);
    if (rc != SQLITE_OK) {
      if (zMsg) quantError(&q, 0, "%s", zMsg);
      else quantSqlError(&q, rc);
      sqlite3_free(zMsg);
      goto done;
    }
  }
  q.nTensor = gpt_n_tensors(&m->cfg, hasLmHead);
  for (int i = 0; i < q.nTensor; i++) {
    if (quantTensor(&q, &m->cfg, hasLmHead, i) != SQLITE_OK) goto done;
    if (gptext_interrupted(q.db)) {
      quantInterrupted(&q);
      goto done;
    }
  }
  if (quantExec(&q, "INSERT INTO main.gpt_vocab(model, token_id, token) SELECT ?2, token_id, "
                "token FROM main.gpt_vocab WHERE model = ?1", q.zSrc, q.zDst, 0)) goto done;
  if (quantExec(&q, "INSERT INTO main.gpt_merges(model, rank, left, right) SELECT ?2, rank, "
                "left, right FROM main.gpt_merges WHERE model = ?1", q.zSrc, q.zDst, 0)) goto done;
  if (quantExec(&q, "INSERT INTO main.gpt_tokenizer(model, config) SELECT ?2, config "
                "FROM main.gpt_tokenizer WHERE model = ?1", q.zSrc, q.zDst, 0)) goto done;
  zSource = sqlite3_mprintf("gpt_quantize(%Q, %Q, %Q)", q.zSrc, q.zDst, zType);
  if (!zSource) { quantNoMem(&q); goto done; }
  if (quantExec(&q, "INSERT INTO main.gpt_models(name, config, source) SELECT ?2, config, ?3 "
                "FROM main.gpt_models WHERE name = ?1", q.zSrc, q.zDst, zSource)) goto done;
  zSummary = sqlite3_mprintf("quantized '%s' to '%s' (%s): %d tensors, %lld bytes, was %lld",
                             q.zSrc, q.zDst, zType, q.nTensor, (long long)q.nOut,
                             (long long)q.nIn);
  if (!zSummary) quantNoMem(&q);
  else bDone = 1;
done:
  bDone = quantTxnEnd(&q, bDone);
  /* as after a trigger, the caller's last_insert_rowid() is what it was */
  sqlite3_set_last_insert_rowid(q.db, iRowidBefore);
  if (q.zErr) {
    gptext_result_error(ctx, q.zErr);
    if (q.bInterrupted) sqlite3_result_error_code(ctx, SQLITE_INTERRUPT);
    else if (q.rcErr != 0 && q.rcErr != SQLITE_ERROR) sqlite3_result_error_code(ctx, q.rcErr);
  } else if (bDone) {
    gptext_result_text(ctx, zSummary, (int)strlen(zSummary), sqlite3_free);
    zSummary = 0;
  } else {
    sqlite3_result_error_nomem(ctx);
  }
  gptext_model_release(m);
  sqlite3_free(q.zErr);
  sqlite3_free(zErr);
  sqlite3_free(zSummary);
  sqlite3_free(zSource);
}

/* Registers gpt_quantize, with and without options: DIRECTONLY, as it
** writes tables and costs much. */
int gptext_register_quantize(sqlite3 *db, GptConn *pConn) {
  int rc = SQLITE_OK;
  for (int nArg = 3; rc == SQLITE_OK && nArg <= 4; nArg++)
    rc = sqlite3_create_function(db, "gpt_quantize", nArg, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                 pConn, gptQuantizeFunc, 0, 0);
  return rc;
}
