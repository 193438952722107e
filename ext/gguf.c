/*
** GGUF in and out: gpt_import() of a llama.cpp model file, and
** gpt_export(), which writes one that llama.cpp loads and runs.
**
**   SELECT gpt_import('qwen', 'Qwen2.5-0.5B-Instruct-Q8_0.gguf');
**   SELECT gpt_export('qwen', 'qwen.gguf');
**   SELECT gpt_export('qwen', 'qwen.gguf', '{"replace": true}');
**
** How it works. engine/gguf.c reads and checks the header (every count,
** length, dimension, offset and the alignment against the file's size).
** Import then maps general.architecture (gpt2, llama, qwen2, qwen3) and the
** <arch>.* keys to a GPTConfig, llama.cpp's tensor names (token_embd,
** blk.N.attn_q, ...) to the Hugging Face names the engine stores, and undoes
** what convert_hf_to_gguf.py did to the layout: GPT-2's Conv1D weights are
** transposed back to (in, out) (quantized rows stay (out, in), as gpt_tensors
** keeps them), and llama's q and k rows are put back from the rotary
** interleave of LlamaModel.permute. Tensor data is streamed from the file
** into zeroblob() rows. The vocabulary, merges and token types of
** tokenizer.ggml.* fill gpt_vocab, gpt_merges and gpt_tokenizer as a
** tokenizer.json import would; tokenizer.ggml.pre names the pre-tokenizer.
** Everything runs in one savepoint.
**
** Export writes GGUF v3: the same mapping backwards, tensors as stored, and
** a private key sqlite_gpt.tokenizer with what GGUF has no key for (the
** exact pre-tokenizer stages, normalizer, ignore_merges, stop ids), and
** sqlite_gpt.rope_scaling with Llama 3.1's parameters beside rope_freqs, so
** that importing an exported file gives back every row bit for bit.
**
** Errors read "gpt_import: model 'NAME': PATH: what, expected X, found Y".
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
#include "kernels_q4.h"
#include "gguf.h"
#include "template.h"

/* Bytes copied per read. */
#define GG_CHUNK (1024 * 1024)
/* Largest string read from metadata (chat templates are capped lower). */
#define GG_MAX_STRING (64 * 1024 * 1024)

/* ------------------------------------------------------------- naming */

/* How a stored tensor is made from a GGUF one (and back). */
enum { GG_COPY = 0, GG_TRANSPOSE = 1, GG_PERMUTE_Q = 2, GG_PERMUTE_K = 3 };

/* One Hugging Face name pattern and its llama.cpp name ("%d" the layer). */
typedef struct GgName {
  const char *zHf;
  const char *zGguf;
  int eXform;      /* GG_* for f32/f16/bf16 rows; quantized rows never transpose */
} GgName;

static const GgName aGpt2Name[] = {
  {"wte.weight", "token_embd.weight", GG_COPY},
  {"wpe.weight", "position_embd.weight", GG_COPY},
  {"h.%d.ln_1.weight", "blk.%d.attn_norm.weight", GG_COPY},
  {"h.%d.ln_1.bias", "blk.%d.attn_norm.bias", GG_COPY},
  {"h.%d.attn.c_attn.weight", "blk.%d.attn_qkv.weight", GG_TRANSPOSE},
  {"h.%d.attn.c_attn.bias", "blk.%d.attn_qkv.bias", GG_COPY},
  {"h.%d.attn.c_proj.weight", "blk.%d.attn_output.weight", GG_TRANSPOSE},
  {"h.%d.attn.c_proj.bias", "blk.%d.attn_output.bias", GG_COPY},
  {"h.%d.ln_2.weight", "blk.%d.ffn_norm.weight", GG_COPY},
  {"h.%d.ln_2.bias", "blk.%d.ffn_norm.bias", GG_COPY},
  {"h.%d.mlp.c_fc.weight", "blk.%d.ffn_up.weight", GG_TRANSPOSE},
  {"h.%d.mlp.c_fc.bias", "blk.%d.ffn_up.bias", GG_COPY},
  {"h.%d.mlp.c_proj.weight", "blk.%d.ffn_down.weight", GG_TRANSPOSE},
  {"h.%d.mlp.c_proj.bias", "blk.%d.ffn_down.bias", GG_COPY},
  {"ln_f.weight", "output_norm.weight", GG_COPY},
  {"ln_f.bias", "output_norm.bias", GG_COPY},
  {"lm_head.weight", "output.weight", GG_COPY},
  {0, 0, 0}
};

static const GgName aLlamaName[] = {
  {"model.embed_tokens.weight", "token_embd.weight", GG_COPY},
  {"model.layers.%d.input_layernorm.weight", "blk.%d.attn_norm.weight", GG_COPY},
  {"model.layers.%d.self_attn.q_proj.weight", "blk.%d.attn_q.weight", GG_PERMUTE_Q},
  {"model.layers.%d.self_attn.k_proj.weight", "blk.%d.attn_k.weight", GG_PERMUTE_K},
  {"model.layers.%d.self_attn.v_proj.weight", "blk.%d.attn_v.weight", GG_COPY},
  {"model.layers.%d.self_attn.q_proj.bias", "blk.%d.attn_q.bias", GG_PERMUTE_Q},
  {"model.layers.%d.self_attn.k_proj.bias", "blk.%d.attn_k.bias", GG_PERMUTE_K},
  {"model.layers.%d.self_attn.v_proj.bias", "blk.%d.attn_v.bias", GG_COPY},
  {"model.layers.%d.self_attn.q_norm.weight", "blk.%d.attn_q_norm.weight", GG_COPY},
  {"model.layers.%d.self_attn.k_norm.weight", "blk.%d.attn_k_norm.weight", GG_COPY},
  {"model.layers.%d.self_attn.o_proj.weight", "blk.%d.attn_output.weight", GG_COPY},
  {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", GG_COPY},
  {"model.layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", GG_COPY},
  {"model.layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight", GG_COPY},
  {"model.layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight", GG_COPY},
  {"model.norm.weight", "output_norm.weight", GG_COPY},
  {"lm_head.weight", "output.weight", GG_COPY},
  {0, 0, 0}
};

/*
** The llama.cpp name of Hugging Face tensor zHf of architecture arch into
** zOut, and the transform between them in *peXform (q/k permutations only
** for llama: qwen2 and qwen3 are converted without them). *piLayer is the
** layer, or -1. Returns 0, or -1 for a name of no pattern.
*/
static int ggNameOf(int arch, const char *zHf, char *zOut, size_t nOut, int *peXform,
                    int *piLayer) {
  const GgName *a = arch == GPT_ARCH_GPT2 ? aGpt2Name : aLlamaName;
  for (int i = 0; a[i].zHf; i++) {
    const char *zPct = strstr(a[i].zHf, "%d");
    int layer = -1;
    if (!zPct) {
      if (strcmp(zHf, a[i].zHf) != 0) continue;
    } else {
      size_t nPre = (size_t)(zPct - a[i].zHf);
      const char *z = zHf + nPre;
      if (strncmp(zHf, a[i].zHf, nPre) != 0 || *z < '0' || *z > '9') continue;
      layer = 0;
      while (*z >= '0' && *z <= '9' && layer < 100000) layer = layer * 10 + (*z++ - '0');
      if (strcmp(z, zPct + 2) != 0) continue;
    }
    snprintf(zOut, nOut, a[i].zGguf, layer);
    *peXform = a[i].eXform;
    if (arch != GPT_ARCH_LLAMA && (*peXform == GG_PERMUTE_Q || *peXform == GG_PERMUTE_K))
      *peXform = GG_COPY;
    *piLayer = layer;
    return 0;
  }
  return -1;
}

/* Stored dtype name of a ggml type, or NULL. */
static const char *ggDtypeName(int type) {
  switch (type) {
    case GGML_F32: return "f32";
    case GGML_F16: return "f16";
    case GGML_BF16: return "bf16";
    case GGML_Q8_0: return "q8_0";
    case GGML_Q4_0: return "q4_0";
    case GGML_Q4_K: return "q4_k";
    case GGML_Q6_K: return "q6_k";
  }
  return 0;
}

/* ggml type of a stored dtype name, or -1. */
static int ggTypeOfDtype(const char *z) {
  static const int aType[] = {GGML_F32, GGML_F16, GGML_BF16, GGML_Q8_0, GGML_Q4_0, GGML_Q4_K,
                              GGML_Q6_K};
  for (size_t i = 0; z && i < sizeof(aType) / sizeof(aType[0]); i++)
    if (strcmp(z, ggDtypeName(aType[i])) == 0) return aType[i];
  return -1;
}

/* True for a GGML type stored in blocks (quantized); false for f32, f16
** and bf16. */
static int ggIsQuant(int type) {
  return type != GGML_F32 && type != GGML_F16 && type != GGML_BF16;
}

/*
** Row r of the stored (Hugging Face) q or k matrix is row ggPermRow(r) of
** llama.cpp's: LlamaModel.permute reshapes each head's hd rows to (2, hd/2)
** and swaps the axes, so stored row h*hd + half*hd/2 + j is row
** h*hd + 2j + half of the file.
*/
static int64_t ggPermRow(int64_t r, int hd) {
  int64_t h = r / hd, k = r % hd, half = k / (hd / 2), j = k % (hd / 2);
  return h * hd + 2 * j + half;
}

/* The pre-tokenizers of tokenizer.ggml.pre that are read: llama.cpp's
** names, the Hugging Face stages they stand for, and what else the
** model's tokenizer.json sets. */
static const char zQwen2Regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char zLlama3Regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
typedef struct GgPre {
  const char *zName;
  const char *zStage1, *zStage2;   /* regexes; zStage1 NULL = GPT-2's pattern */
  int bNfc, bIgnoreMerges;
  int bAddBos;                     /* llama.cpp's add_bos when the file has no
                                   ** tokenizer.ggml.add_bos_token */
} GgPre;
static const GgPre aGgPre[] = {
  {"gpt-2", 0, 0, 0, 0, 0},
  {"llama-bpe", zLlama3Regex, 0, 0, 1, 1},
  {"llama3", zLlama3Regex, 0, 0, 1, 1},
  {"llama-v3", zLlama3Regex, 0, 0, 1, 1},
  {"qwen2", zQwen2Regex, 0, 1, 0, 0},
  {"deepseek-r1-qwen", zQwen2Regex, 0, 1, 0, 0},
  {"smollm", "\\p{N}", 0, 0, 0, 0},
};
#define GG_PRE_LIST "gpt-2, llama-bpe (llama3, llama-v3), qwen2 (deepseek-r1-qwen), smollm"

/* Appends z (n bytes, valid UTF-8) to s as a JSON string, escaped as
** SQLite's json_quote() escapes it. */
static void ggJsonString(sqlite3_str *s, const char *z, int n) {
  sqlite3_str_appendchar(s, 1, '"');
  for (int i = 0; i < n; i++) {
    unsigned char c = (unsigned char)z[i];
    if (c == '"' || c == '\\') {
      sqlite3_str_appendchar(s, 1, '\\');
      sqlite3_str_appendchar(s, 1, (char)c);
    } else if (c < 0x20) {
      sqlite3_str_appendf(s, "\\u%04x", c);
    } else {
      sqlite3_str_appendchar(s, 1, (char)c);
    }
  }
  sqlite3_str_appendchar(s, 1, '"');
}

/* The stages of a GgPre as a JSON array (sqlite3_malloc'd). */
static char *ggPreStages(const GgPre *pre) {
  sqlite3_str *s = sqlite3_str_new(0);
  const char *z = pre->zStage1 ? pre->zStage1 : tok_gpt2_pattern;
  sqlite3_str_appendall(s, "[{\"regex\":");
  ggJsonString(s, z, (int)strlen(z));
  if (pre->zStage1 && strcmp(pre->zStage1, "\\p{N}") == 0) {
    sqlite3_str_appendall(s, "},{\"regex\":");
    ggJsonString(s, tok_gpt2_pattern, (int)strlen(tok_gpt2_pattern));
  }
  sqlite3_str_appendall(s, "}]");
  return sqlite3_str_finish(s);
}

/* ------------------------------------------------------------ import */

/* A required tensor and where the file has it. */
typedef struct GgReq {
  GPTTensorInfo info;        /* Hugging Face name and shape */
  char zGguf[96];            /* llama.cpp name */
  const GGUFTensor *pSrc;    /* or NULL while missing */
  int64_t iRow0;             /* first row of pSrc (a slice of attn_qkv) */
  int eXform;
} GgReq;

/* State of one GGUF import. */
typedef struct GgImport {
  sqlite3 *db;
  const char *zName;
  const char *zPath;
  char *zErr;
  int rcErr;
  int bInterrupted;
  GptSavepoint sp;
  FILE *f;
  GGUFFile *g;
  char zArch[16];
  GPTConfig cfg;
  int bTied;
  GgReq *aReq;
  int nReq;
  GPTTokenizer *pTok;
  int nTok;
  int nMerge;
  int64_t nParam, nByte;
  unsigned mType;            /* bit per stored ggml type index (see ggTypeBit) */
} GgImport;

/* Records an error (the first one only); returns SQLITE_ERROR. */
static int ggError(GgImport *p, const char *zFmt, ...) {
  va_list ap;
  char *zMsg;
  if (p->zErr) return SQLITE_ERROR;
  va_start(ap, zFmt);
  zMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  p->zErr = sqlite3_mprintf("gpt_import: model '%s': %s: %s", p->zName, p->zPath,
                            zMsg ? zMsg : "out of memory");
  if (!zMsg) p->rcErr = SQLITE_NOMEM;
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/* Records an out-of-memory error (SQLITE_NOMEM, unless an error came first). */
static int ggNoMem(GgImport *p) {
  if (!p->zErr) p->rcErr = SQLITE_NOMEM;
  return ggError(p, "out of memory");
}

/* Records the error of a failed SQLite call (interrupts read "interrupted"). */
static int ggSqlError(GgImport *p, int rc) {
  char *zMsg;
  if ((rc & 0xff) == SQLITE_NOMEM) return ggNoMem(p);
  zMsg = sqlite3_mprintf("%s", sqlite3_errmsg(p->db));
  if ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(p->db)) {
    p->bInterrupted = 1;
    if (!p->zErr) p->zErr = sqlite3_mprintf("gpt_import: model '%s': interrupted", p->zName);
  } else {
    if (!p->zErr && rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
      p->rcErr = gptext_sql_code(p->db, rc);
    if (!p->zErr) p->zErr = sqlite3_mprintf("gpt_import: model '%s': %s", p->zName,
                                            zMsg ? zMsg : "out of memory");
  }
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/* sqlite3_prepare_v2, a failure recorded by ggSqlError. */
static int ggPrepare(GgImport *p, const char *zSql, sqlite3_stmt **pp) {
  int rc = sqlite3_prepare_v2(p->db, zSql, -1, pp, 0);
  return rc == SQLITE_OK ? SQLITE_OK : ggSqlError(p, rc);
}

/* The metadata value of "<arch>.zSuffix" (zSuffix with a leading '.'), or of
** zKey itself when it has no leading '.'. */
static const GGUFKV *ggKey(GgImport *p, const char *zKey, char *zFull, size_t nFull) {
  if (zKey[0] == '.') snprintf(zFull, nFull, "%s%s", p->zArch, zKey);
  else snprintf(zFull, nFull, "%s", zKey);
  return gguf_find(p->g, zFull);
}

/* Reads an integer key into *pOut (iDefault when absent and not bRequired),
** range-checked to [iMin, iMax]. */
static int ggInt(GgImport *p, const char *zKey, int bRequired, int64_t iDefault, int64_t iMin,
                 int64_t iMax, int *pOut) {
  char zFull[128];
  const GGUFKV *kv = ggKey(p, zKey, zFull, sizeof(zFull));
  int64_t v;
  if (!kv) {
    if (bRequired) return ggError(p, "metadata \"%s\" is missing, expected an integer", zFull);
    *pOut = (int)iDefault;
    return SQLITE_OK;
  }
  switch (kv->v.type) {
    case GGUF_UINT8: case GGUF_UINT16: case GGUF_UINT32: case GGUF_UINT64:
      v = kv->v.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)kv->v.u;
      break;
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64:
      v = kv->v.i;
      break;
    default:
      return ggError(p, "metadata \"%s\" is of type %s, expected an integer%s", zFull,
                     gguf_type_name(kv->v.type),
                     kv->v.type == GGUF_ARRAY ? " (per-layer values are not supported)" : "");
  }
  if (v < iMin || v > iMax) {
    return ggError(p, "metadata \"%s\" is %lld, expected %lld to %lld", zFull, (long long)v,
                   (long long)iMin, (long long)iMax);
  }
  *pOut = (int)v;
  return SQLITE_OK;
}

/*
** Reads a real key. A float32 becomes the shortest decimal that reads back
** as the same float32 (1e-05, not 9.99999974737875e-06), so a Hugging Face
** value written as float32 by the converter comes back as it was.
*/
static int ggReal(GgImport *p, const char *zKey, double rDefault, double *pOut) {
  char zFull[128];
  const GGUFKV *kv = ggKey(p, zKey, zFull, sizeof(zFull));
  if (!kv) {
    *pOut = rDefault;
    return SQLITE_OK;
  }
  if (kv->v.type == GGUF_FLOAT32) {
    float f = (float)kv->v.f;
    char zNum[32];
    *pOut = kv->v.f;
    for (int prec = 1; prec <= 9 && isfinite(f); prec++) {
      snprintf(zNum, sizeof(zNum), "%.*g", prec, (double)f);
      if (strtof(zNum, 0) == f) {
        *pOut = strtod(zNum, 0);
        break;
      }
    }
  } else if (kv->v.type == GGUF_FLOAT64) {
    *pOut = kv->v.f;
  } else {
    return ggError(p, "metadata \"%s\" is of type %s, expected a float", zFull,
                   gguf_type_name(kv->v.type));
  }
  if (!isfinite(*pOut)) return ggError(p, "metadata \"%s\" is not finite", zFull);
  return SQLITE_OK;
}

/*
** Reads string key zKey into a new NUL-terminated buffer of at most nMax
** bytes (*pz NULL when absent). It must be valid UTF-8 without NUL bytes.
*/
static int ggString(GgImport *p, const char *zKey, int64_t nMax, char **pz, int *pn) {
  char zFull[128];
  const GGUFKV *kv = ggKey(p, zKey, zFull, sizeof(zFull));
  char *z;
  *pz = 0;
  if (pn) *pn = 0;
  if (!kv) return SQLITE_OK;
  if (kv->v.type != GGUF_STRING) {
    return ggError(p, "metadata \"%s\" is of type %s, expected a string", zFull,
                   gguf_type_name(kv->v.type));
  }
  if (kv->v.n > (uint64_t)nMax) {
    return ggError(p, "metadata \"%s\" is %llu bytes, expected at most %lld", zFull,
                   (unsigned long long)kv->v.n, (long long)nMax);
  }
  z = sqlite3_malloc64(kv->v.n + 1);
  if (!z) return ggNoMem(p);
  if (gguf_read_at(p->g, kv->v.off, z, (size_t)kv->v.n)) {
    sqlite3_free(z);
    return ggError(p, "cannot read metadata \"%s\"", zFull);
  }
  z[kv->v.n] = 0;
  if (memchr(z, 0, (size_t)kv->v.n) || !gptext_utf8_valid(z, (size_t)kv->v.n)) {
    sqlite3_free(z);
    return ggError(p, "metadata \"%s\" is not valid UTF-8 text", zFull);
  }
  *pz = z;
  if (pn) *pn = (int)kv->v.n;
  return SQLITE_OK;
}

/* Reads a bool key (absent: bDefault). */
static int ggBool(GgImport *p, const char *zKey, int bDefault, int *pb) {
  char zFull[128];
  const GGUFKV *kv = ggKey(p, zKey, zFull, sizeof(zFull));
  if (!kv) {
    *pb = bDefault;
    return SQLITE_OK;
  }
  if (kv->v.type != GGUF_BOOL)
    return ggError(p, "metadata \"%s\" is of type %s, expected a bool", zFull,
                   gguf_type_name(kv->v.type));
  if (kv->v.u > 1)
    return ggError(p, "metadata \"%s\" is a bool of byte value %llu, expected 0 or 1", zFull,
                   (unsigned long long)kv->v.u);
  *pb = (int)kv->v.u;
  return SQLITE_OK;
}

/*
** Reads sqlite_gpt.rope_scaling, which gpt_export writes beside rope_freqs:
** a JSON object with Llama 3.1's factor, low_freq_factor, high_freq_factor
** and original_max_position_embeddings as the model has them, which the
** divisors alone do not determine. Sets p->cfg's and *pbFound when the key
** is there; the caller checks them against the divisors.
*/
static int ggRopeKey(GgImport *p, int *pbFound) {
  sqlite3_stmt *q = 0;
  char *zJson = 0;
  int rc;
  *pbFound = 0;
  rc = ggString(p, "sqlite_gpt.rope_scaling", 4096, &zJson, 0);
  if (rc != SQLITE_OK || !zJson) return rc;
  rc = ggPrepare(p,
      "SELECT CASE WHEN json_valid(?1) AND json_type(?1) = 'object' THEN"
      "  json_type(?1, '$.factor') IN ('real', 'integer')"
      "  AND json_type(?1, '$.low_freq_factor') IN ('real', 'integer')"
      "  AND json_type(?1, '$.high_freq_factor') IN ('real', 'integer')"
      "  AND json_type(?1, '$.original_max_position_embeddings') = 'integer'"
      "  AND json_extract(?1, '$.original_max_position_embeddings') BETWEEN 1 AND ?2 END,"
      " CASE WHEN json_valid(?1) THEN json_extract(?1, '$.factor') END,"
      " CASE WHEN json_valid(?1) THEN json_extract(?1, '$.low_freq_factor') END,"
      " CASE WHEN json_valid(?1) THEN json_extract(?1, '$.high_freq_factor') END,"
      " CASE WHEN json_valid(?1) THEN json_extract(?1, '$.original_max_position_embeddings') END",
      &q);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(q, 1, zJson, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, GPT_MAX_CTX);
    rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
      rc = ggSqlError(p, rc);
    } else if (!sqlite3_column_int(q, 0)) {
      rc = ggError(p, "metadata \"sqlite_gpt.rope_scaling\" must be a JSON object with numbers "
                   "factor, low_freq_factor, high_freq_factor and an integer "
                   "original_max_position_embeddings of 1 to %d", GPT_MAX_CTX);
    } else {
      p->cfg.rope_factor = sqlite3_column_double(q, 1);
      p->cfg.rope_low_freq_factor = sqlite3_column_double(q, 2);
      p->cfg.rope_high_freq_factor = sqlite3_column_double(q, 3);
      p->cfg.rope_original_ctx = sqlite3_column_int(q, 4);
      *pbFound = 1;
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(q);
  sqlite3_free(zJson);
  return rc;
}

/*
** Llama 3.1's rope scaling from the rope_freqs tensor (convert_hf_to_gguf.py
** writes the per-frequency divisors, not the parameters): factor is the
** largest divisor; low_freq_factor is taken as 1 (Llama 3.x's value) and
** high_freq_factor and original_max_position_embeddings are solved from
** the blended frequencies, or, with none blended, 4 and an original
** context that the boundaries allow (8192 first); a file of gpt_export gives them
** in sqlite_gpt.rope_scaling instead. The result is checked: the divisors
** it implies must equal the tensor's within 1e-5.
*/
static int ggRopeFreqs(GgImport *p, const GGUFTensor *t) {
  int hd = gpt_config_head_dim(&p->cfg), n = hd / 2;
  float aV[GPT_MAX_HEAD_DIM / 2];
  double theta = p->cfg.rope_theta > 0 ? p->cfg.rope_theta : 10000.0;
  double fMax = 1.0;
  int iBlend = -1;
  if (t->type != GGML_F32 || t->n_dims != 1 || t->ne[0] != n) {
    return ggError(p, "tensor \"rope_freqs.weight\" must be F32 of shape [%d] (head_dim / 2)", n);
  }
  if (gguf_read_at(p->g, p->g->data_off + t->offset, aV, sizeof(float) * (size_t)n))
    return ggError(p, "cannot read tensor \"rope_freqs.weight\"");
  for (int i = 0; i < n; i++) {
    if (!isfinite(aV[i]) || aV[i] < 1.0f || aV[i] > 1024.0f)
      return ggError(p, "tensor \"rope_freqs.weight\" has %g at %d, expected 1 to 1024",
                     (double)aV[i], i);
    if (aV[i] > fMax) fMax = aV[i];
  }
  if (fMax <= 1.0) return SQLITE_OK; /* no frequency is scaled */
  {
    /* shortest decimal of the float32 factor */
    char zNum[32];
    for (int prec = 1; prec <= 9; prec++) {
      snprintf(zNum, sizeof(zNum), "%.*g", prec, fMax);
      if (strtof(zNum, 0) == (float)fMax) { fMax = strtod(zNum, 0); break; }
    }
  }
  p->cfg.rope_scaling = GPT_ROPE_LLAMA3;
  p->cfg.rope_factor = fMax;
  p->cfg.rope_low_freq_factor = 1.0;
  p->cfg.rope_high_freq_factor = 4.0;
  p->cfg.rope_original_ctx = 8192;
  {
    int bKey, rc = ggRopeKey(p, &bKey);
    if (rc != SQLITE_OK) return rc;
    if (bKey) goto check;
  }
  for (int i = 0; i < n; i++) {
    if (aV[i] > 1.0f + 1e-6f && aV[i] < (float)fMax * (1.0f - 1e-6f)) { iBlend = i; break; }
  }
  if (iBlend >= 0) {
    /* smooth = (ctx / wave - 1) / (hf - 1) with v = 1 / ((1 - s) / f + s) */
    double v = aV[iBlend], f = fMax;
    double s = (1.0 / v - 1.0 / f) / (1.0 - 1.0 / f);
    double x = pow(theta, -(2.0 * iBlend) / hd) / (2.0 * M_PI); /* 1 / wavelength */
    int iBlend2 = -1;
    for (int i = n - 1; i > iBlend; i--) {
      if (aV[i] > 1.0f + 1e-6f && aV[i] < (float)fMax * (1.0f - 1e-6f)) { iBlend2 = i; break; }
    }
    if (iBlend2 >= 0) {
      double v2 = aV[iBlend2], s2 = (1.0 / v2 - 1.0 / f) / (1.0 - 1.0 / f);
      double x2 = pow(theta, -(2.0 * iBlend2) / hd) / (2.0 * M_PI);
      double a = (s - s2) / (x - x2), b = s - a * x; /* s = a x + b, b = -1 / (hf - 1) */
      double ctx = b < 0 ? -a / b : 0;
      if (isfinite(ctx) && ctx >= 1 && ctx <= GPT_MAX_CTX) {
        p->cfg.rope_high_freq_factor = 1.0 - 1.0 / b;
        p->cfg.rope_original_ctx = (int)floor(ctx + 0.5);
      }
    } else {
      /* with hf = 4: ctx = (3 s + 1) / x */
      double ctx = (3.0 * s + 1.0) / x;
      if (ctx >= 1 && ctx <= GPT_MAX_CTX) p->cfg.rope_original_ctx = (int)floor(ctx + 0.5);
    }
    {
      char zNum[32];
      for (int prec = 1; prec <= 9; prec++) {
        snprintf(zNum, sizeof(zNum), "%.*g", prec, p->cfg.rope_high_freq_factor);
        if (fabs(strtod(zNum, 0) - p->cfg.rope_high_freq_factor) <=
            1e-6 * p->cfg.rope_high_freq_factor) {
          p->cfg.rope_high_freq_factor = strtod(zNum, 0);
          break;
        }
      }
    }
  } else {
    /* Nothing blended: with high_freq_factor 4, every original context in
    ** (4 x the longest wavelength left unscaled, the shortest scaled one)
    ** gives these divisors. 8192 (Llama 3's) when it is one of them, else
    ** the first power of two there, else the first whole number. */
    int iLast = -1;
    while (iLast + 1 < n && aV[iLast + 1] <= 1.0f + 1e-6f) iLast++;
    double lo = iLast >= 0 ? 4.0 * 2 * M_PI * pow(theta, (2.0 * iLast) / hd) : 0.0;
    double hi = iLast + 1 < n ? 2 * M_PI * pow(theta, (2.0 * (iLast + 1)) / hd) : GPT_MAX_CTX + 1.0;
    if (!(8192 > lo && 8192 < hi)) {
      double ctx = 0;
      for (double c = 1; c <= GPT_MAX_CTX && ctx == 0; c *= 2)
        if (c > lo && c < hi) ctx = c;
      if (ctx == 0 && floor(lo) + 1 < hi && floor(lo) + 1 <= GPT_MAX_CTX) ctx = floor(lo) + 1;
      if (ctx >= 1) p->cfg.rope_original_ctx = (int)ctx;
    }
  }
check:
  /* the divisors these parameters give, as the converter computes them */
  for (int i = 0; i < n; i++) {
    double fr = 1.0 / pow(theta, (2.0 * i) / hd), wave = 2 * M_PI / fr, want;
    double lowWave = p->cfg.rope_original_ctx / p->cfg.rope_low_freq_factor;
    double highWave = p->cfg.rope_original_ctx / p->cfg.rope_high_freq_factor;
    if (wave < highWave) want = 1;
    else if (wave > lowWave) want = p->cfg.rope_factor;
    else {
      double sm = (p->cfg.rope_original_ctx / wave - p->cfg.rope_low_freq_factor) /
                  (p->cfg.rope_high_freq_factor - p->cfg.rope_low_freq_factor);
      want = 1.0 / ((1 - sm) / p->cfg.rope_factor + sm);
    }
    if (!(fabs(want - aV[i]) <= 1e-5 * want)) { /* a NaN (high = low factor) fails too */
      return ggError(p, "tensor \"rope_freqs.weight\" is not Llama 3.1's rope scaling: "
                     "element %d is %g, the scaling that fits the others gives %g", i,
                     (double)aV[i], want);
    }
  }
  return SQLITE_OK;
}

/*
** Reads general.architecture and the <arch>.* hyper-parameters into
** p->cfg; vocab_size comes from token_embd's rows. Checked with
** gpt_config_check.
*/
static int ggConfig(GgImport *p) {
  char *zArch = 0, *zScale = 0;
  const GGUFTensor *pEmb;
  char zMsg[256];
  int rc, arch;
  int nKeyLen = 0, nValLen = 0, nRot = 0;
  double rFactor = 0;

  rc = ggString(p, "general.architecture", 64, &zArch, 0);
  if (rc != SQLITE_OK) goto done;
  arch = zArch ? gpt_arch_from_name(zArch) : -1;
  if (arch < 0) {
    rc = ggError(p, "general.architecture is %s%s%s, expected gpt2, llama, qwen2 or qwen3",
                 zArch ? "\"" : "", zArch ? zArch : "missing", zArch ? "\"" : "");
    goto done;
  }
  snprintf(p->zArch, sizeof(p->zArch), "%s", zArch);
  memset(&p->cfg, 0, sizeof(p->cfg));
  p->cfg.arch = arch;
  pEmb = gguf_tensor(p->g, "token_embd.weight");
  if (!pEmb || pEmb->n_dims != 2) {
    rc = ggError(p, "tensor \"token_embd.weight\" is %s, expected a 2-D tensor (the "
                 "vocabulary size is its rows)", pEmb ? "not 2-D" : "missing");
    goto done;
  }
  if (pEmb->ne[1] > GPT_MAX_VOCAB) {
    rc = ggError(p, "tensor \"token_embd.weight\" has %lld rows, expected at most %d tokens",
                 (long long)pEmb->ne[1], GPT_MAX_VOCAB);
    goto done;
  }
  p->cfg.vocab_size = (int)pEmb->ne[1];
  if ((rc = ggInt(p, ".block_count", 1, 0, 1, GPT_MAX_LAYER, &p->cfg.n_layer)) ||
      (rc = ggInt(p, ".embedding_length", 1, 0, 1, GPT_MAX_EMBD, &p->cfg.n_embd)) ||
      (rc = ggInt(p, ".attention.head_count", 1, 0, 1, GPT_MAX_HEAD, &p->cfg.n_head)) ||
      (rc = ggInt(p, ".context_length", 1, 0, 1, GPT_MAX_CTX, &p->cfg.n_ctx)) ||
      (rc = ggInt(p, ".feed_forward_length", arch != GPT_ARCH_GPT2, 4 * (int64_t)p->cfg.n_embd,
                  1, GPT_MAX_FF, &p->cfg.d_ff)))
    goto done;
  if ((rc = ggInt(p, ".attention.head_count_kv", 0, p->cfg.n_head, 1, GPT_MAX_HEAD,
                  &p->cfg.n_kv_head)) ||
      (rc = ggInt(p, ".attention.key_length", 0, 0, 1, GPT_MAX_HEAD_DIM, &nKeyLen)) ||
      (rc = ggInt(p, ".attention.value_length", 0, 0, 1, GPT_MAX_HEAD_DIM, &nValLen)) ||
      (rc = ggInt(p, ".rope.dimension_count", 0, 0, 1, GPT_MAX_HEAD_DIM, &nRot)))
    goto done;
  if (arch == GPT_ARCH_GPT2) {
    if (p->cfg.d_ff != 4 * p->cfg.n_embd || p->cfg.n_kv_head != p->cfg.n_head ||
        (nKeyLen && nKeyLen * p->cfg.n_head != p->cfg.n_embd)) {
      rc = ggError(p, "gpt2 must have feed_forward_length 4 * embedding_length and as many "
                   "key/value heads as heads");
      goto done;
    }
    p->cfg.d_ff = 0;
    p->cfg.n_kv_head = 0;
    if ((rc = ggReal(p, ".attention.layer_norm_epsilon", 1e-5, &p->cfg.ln_eps))) goto done;
  } else {
    p->cfg.head_dim = nKeyLen ? nKeyLen
                              : (p->cfg.n_embd % p->cfg.n_head ? 0 : p->cfg.n_embd / p->cfg.n_head);
    if (p->cfg.head_dim == 0) {
      rc = ggError(p, "%s.attention.key_length is missing and embedding_length %d is not a "
                   "multiple of head_count %d", p->zArch, p->cfg.n_embd, p->cfg.n_head);
      goto done;
    }
    if ((nValLen && nValLen != p->cfg.head_dim) || (nRot && nRot != p->cfg.head_dim)) {
      rc = ggError(p, "%s.attention.value_length (%d) and rope.dimension_count (%d) must equal "
                   "the key length %d", p->zArch, nValLen, nRot, p->cfg.head_dim);
      goto done;
    }
    if ((rc = ggReal(p, ".attention.layer_norm_rms_epsilon", 1e-6, &p->cfg.ln_eps)) ||
        (rc = ggReal(p, ".rope.freq_base", 10000.0, &p->cfg.rope_theta)))
      goto done;
    /* the engine's config reads 0 as "the default", which no file means */
    if (!(p->cfg.rope_theta >= 1.0)) {
      rc = ggError(p, "%s.rope.freq_base is %g, expected 1 to 1e12", p->zArch, p->cfg.rope_theta);
      goto done;
    }
    if ((rc = ggString(p, ".rope.scaling.type", 64, &zScale, 0)) ||
        (rc = ggReal(p, ".rope.scaling.factor", 0, &rFactor)))
      goto done;
    if ((zScale && strcmp(zScale, "none") != 0) || (rFactor != 0 && rFactor != 1)) {
      rc = ggError(p, "%s.rope.scaling.type %s (factor %g) is not supported, expected none "
                   "(or Llama 3.1's scaling through rope_freqs)", p->zArch,
                   zScale ? zScale : "(missing)", rFactor);
      goto done;
    }
  }
  if (gpt_config_check(&p->cfg, zMsg, sizeof(zMsg))) {
    rc = ggError(p, "%s", zMsg);
    goto done;
  }
  {
    const GGUFTensor *pFreqs = gguf_tensor(p->g, "rope_freqs.weight");
    if (pFreqs && arch != GPT_ARCH_LLAMA) {
      rc = ggError(p, "tensor \"rope_freqs.weight\" is only read for llama, not %s", p->zArch);
      goto done;
    }
    if (pFreqs && (rc = ggRopeFreqs(p, pFreqs))) goto done;
    if (pFreqs && gpt_config_check(&p->cfg, zMsg, sizeof(zMsg))) {
      rc = ggError(p, "%s", zMsg);
      goto done;
    }
  }
  rc = SQLITE_OK;
done:
  sqlite3_free(zArch);
  sqlite3_free(zScale);
  return rc;
}

/* Reads bytes [off, off + n) of tensor t's data into buf. */
static int ggReadTensor(GgImport *p, const GGUFTensor *t, int64_t off, void *buf, size_t n) {
  if (off < 0 || (int64_t)n > t->nbytes - off ||
      gguf_read_at(p->g, p->g->data_off + t->offset + off, buf, n)) {
    return ggError(p, "cannot read tensor \"%s\" at byte %lld: %s", t->name,
                   (long long)(p->g->data_off + t->offset + off),
                   ferror(p->f) ? strerror(errno) : "the file ends early");
  }
  return SQLITE_OK;
}

/*
** True when output.weight holds the same bytes as token_embd.weight (GPT-2's
** converter writes the tied head twice).
*/
static int ggSameBytes(GgImport *p, const GGUFTensor *a, const GGUFTensor *b, int *pbSame) {
  unsigned char *x = 0, *y = 0;
  int rc = SQLITE_OK;
  *pbSame = 0;
  if (a->type != b->type || a->nbytes != b->nbytes || a->n_dims != b->n_dims ||
      memcmp(a->ne, b->ne, sizeof(a->ne)) != 0)
    return SQLITE_OK;
  x = sqlite3_malloc64(GG_CHUNK);
  y = sqlite3_malloc64(GG_CHUNK);
  if (!x || !y) {
    rc = ggNoMem(p);
    goto done;
  }
  for (int64_t off = 0; off < a->nbytes; off += GG_CHUNK) {
    size_t n = (size_t)(a->nbytes - off < GG_CHUNK ? a->nbytes - off : GG_CHUNK);
    if ((rc = ggReadTensor(p, a, off, x, n)) || (rc = ggReadTensor(p, b, off, y, n))) goto done;
    if (memcmp(x, y, n) != 0) goto done;
  }
  *pbSame = 1;
done:
  sqlite3_free(x);
  sqlite3_free(y);
  return rc;
}

/*
** Matches the file's tensors with those the config needs: each needed one
** present with the shape and a type the stored row can have, nothing else
** (rope_freqs was read by ggConfig). A llama-family file may hold a fused
** attn_qkv instead of attn_q, attn_k and attn_v: each is then a slice of
** its rows.
*/
static int ggTensors(GgImport *p) {
  const GGUFTensor *pOut = gguf_tensor(p->g, "output.weight");
  const GGUFTensor *pEmb = gguf_tensor(p->g, "token_embd.weight");
  int *aUsed = 0;
  int rc = SQLITE_OK, bLmHead;

  if (pOut && p->cfg.arch == GPT_ARCH_GPT2) {
    int bSame;
    if ((rc = ggSameBytes(p, pOut, pEmb, &bSame))) return rc;
    if (bSame) pOut = 0;
  }
  bLmHead = pOut != 0;
  p->bTied = !bLmHead;
  p->nReq = gpt_n_tensors(&p->cfg, bLmHead);
  p->aReq = sqlite3_malloc64(sizeof(GgReq) * (uint64_t)p->nReq);
  aUsed = sqlite3_malloc64(sizeof(int) * ((uint64_t)p->g->n_tensors + 1));
  if (!p->aReq || !aUsed) {
    rc = ggNoMem(p);
    goto done;
  }
  memset(aUsed, 0, sizeof(int) * ((size_t)p->g->n_tensors + 1));
  for (int i = 0; i < p->nReq; i++) {
    GgReq *r = &p->aReq[i];
    const GGUFTensor *t;
    int layer;
    int64_t nRowWant, nColWant;
    memset(r, 0, sizeof(*r));
    gpt_tensor_info(&p->cfg, bLmHead, i, &r->info);
    if (ggNameOf(p->cfg.arch, r->info.name, r->zGguf, sizeof(r->zGguf), &r->eXform, &layer)) {
      rc = ggError(p, "no llama.cpp name for tensor \"%s\"", r->info.name);
      goto done;
    }
    t = gguf_tensor(p->g, r->zGguf);
    if (!t && layer >= 0 && p->cfg.arch != GPT_ARCH_GPT2 &&
        (strstr(r->zGguf, ".attn_q.") || strstr(r->zGguf, ".attn_k.") ||
         strstr(r->zGguf, ".attn_v."))) {
      /* a slice of the fused attn_qkv: rows [Q | K | V] */
      char zQkv[96];
      int64_t nQ = (int64_t)p->cfg.n_head * gpt_config_head_dim(&p->cfg);
      int64_t nKV = (int64_t)gpt_config_kv_heads(&p->cfg) * gpt_config_head_dim(&p->cfg);
      snprintf(zQkv, sizeof(zQkv), "blk.%d.attn_qkv.%s", layer,
               strstr(r->zGguf, ".bias") ? "bias" : "weight");
      t = gguf_tensor(p->g, zQkv);
      if (t) {
        int64_t nRows = t->n_dims == 2 ? t->ne[1] : t->ne[0];
        if (nRows != nQ + 2 * nKV) {
          rc = ggError(p, "tensor \"%s\" has %lld rows, expected %lld (q, k and v)", zQkv,
                       (long long)nRows, (long long)(nQ + 2 * nKV));
          goto done;
        }
        r->iRow0 = strstr(r->zGguf, ".attn_q.") ? 0 : strstr(r->zGguf, ".attn_k.") ? nQ : nQ + nKV;
        snprintf(r->zGguf, sizeof(r->zGguf), "%s", zQkv);
      }
    }
    if (!t) {
      rc = ggError(p, "tensor \"%s\" is missing (%s of a %s model with %d layer%s)",
                   r->zGguf, r->info.name, p->zArch, p->cfg.n_layer,
                   p->cfg.n_layer == 1 ? "" : "s");
      goto done;
    }
    aUsed[t - p->g->tensors] = 1;
    r->pSrc = t;
    if (r->info.ndim == 2) {
      /* GGUF's ne is (in, out) for every matrix; Conv1D's stored shape is (in, out) */
      nRowWant = r->info.transposed ? r->info.shape[1] : r->info.shape[0];
      nColWant = r->info.transposed ? r->info.shape[0] : r->info.shape[1];
    } else {
      nRowWant = r->info.shape[0];
      nColWant = 1;
    }
    {
      int bOk;
      if (r->info.ndim == 2) {
        bOk = t->n_dims == 2 && t->ne[0] == nColWant &&
              (strstr(r->zGguf, ".attn_qkv.") && p->cfg.arch != GPT_ARCH_GPT2
                   ? 1 : t->ne[1] == nRowWant);
      } else {
        bOk = t->n_dims == 1 && (strstr(r->zGguf, ".attn_qkv.") && p->cfg.arch != GPT_ARCH_GPT2
                                     ? 1 : t->ne[0] == nRowWant);
      }
      if (!bOk) {
        char zGot[96];
        if (t->n_dims == 1) snprintf(zGot, sizeof(zGot), "[%lld]", (long long)t->ne[0]);
        else snprintf(zGot, sizeof(zGot), "[%lld, %lld%s]", (long long)t->ne[0],
                      (long long)t->ne[1], t->n_dims > 2 ? ", ..." : "");
        if (r->info.ndim == 2) {
          rc = ggError(p, "tensor \"%s\" has ne %s, expected [%lld, %lld] (%s)", t->name, zGot,
                       (long long)nColWant, (long long)nRowWant, r->info.name);
        } else {
          rc = ggError(p, "tensor \"%s\" has ne %s, expected [%lld] (%s)", t->name, zGot,
                       (long long)nRowWant, r->info.name);
        }
        goto done;
      }
    }
    if (ggIsQuant(t->type) && r->info.ndim != 2) {
      rc = ggError(p, "tensor \"%s\" is %s, expected F32, F16 or BF16 for a 1-D tensor", t->name,
                   ggml_type_name(t->type));
      goto done;
    }
    if ((r->eXform == GG_PERMUTE_Q || r->eXform == GG_PERMUTE_K) &&
        gpt_config_head_dim(&p->cfg) % 2 != 0) {
      rc = ggError(p, "head_dim %d is odd, expected an even rotary dimension",
                   gpt_config_head_dim(&p->cfg));
      goto done;
    }
  }
  for (int i = 0; i < p->g->n_tensors; i++) {
    const char *z = p->g->tensors[i].name;
    if (aUsed[i]) continue;
    if (strcmp(z, "rope_freqs.weight") == 0) continue;
    if (strcmp(z, "output.weight") == 0 && p->cfg.arch == GPT_ARCH_GPT2) continue; /* tied */
    rc = ggError(p, "unknown tensor \"%s\", expected only the tensors of a %s model with %d "
                 "layers", z, p->zArch, p->cfg.n_layer);
    goto done;
  }
done:
  sqlite3_free(aUsed);
  return rc;
}

/* What ggBadValue finds in data of a ggml type, in words for its error. */
static const char *ggBadWhat(int type) {
  if (type == GGML_F32 || type == GGML_F16 || type == GGML_BF16) return "a NaN or an infinity";
  if (type == GGML_Q8_0) return "a block with a non-finite scale or a value of -128";
  return "a block with a non-finite scale";
}

/*
** Checks n bytes of ggml type data (whole elements or blocks) for values
** the engine refuses: NaN and infinities, and q8_0's -128. Returns the
** index of the first bad element or block, or -1.
*/
static int64_t ggBadValue(int type, const unsigned char *a, size_t n) {
  int block, bytes;
  ggml_type_layout(type, &block, &bytes);
  if (type == GGML_F32) return gptext_non_finite(GPT_F32, a, n);
  if (type == GGML_F16) return gptext_non_finite(GPT_F16, a, n);
  if (type == GGML_BF16) return gptext_non_finite(GPT_BF16, a, n);
  if (type != GGML_Q8_0)  /* the 4- and 6-bit blocks: their f16 scales */
    return gpt_q4_bad_block(gpt_row_dtype_from_name(ggDtypeName(type)), a,
                            (int64_t)(n / (size_t)bytes));
  /* q8_0: a finite scale, and no -128 (the engine's quants are symmetric) */
  for (size_t b = 0; b + (size_t)bytes <= n; b += (size_t)bytes) {
    const unsigned char *x = a + b;
    uint32_t u = (uint32_t)x[0] | (uint32_t)x[1] << 8;
    if ((u & 0x7c00u) == 0x7c00u) return (int64_t)(b / (size_t)bytes);
    for (int k = 0; k < 32; k++)
      if (x[2 + k] == 0x80) return (int64_t)(b / (size_t)bytes);
  }
  return -1;
}

/*
** Copies the required tensors into gpt_tensors, each as a zeroblob() row
** filled in chunks of about GG_CHUNK bytes: straight copies in one run,
** permuted q/k rows one row at a time, and Conv1D weights transposed by
** bands of stored rows (each band reads a slice of every file row).
*/
static int ggStore(GgImport *p) {
  char *zNarrow = 0;         /* sqlite_gpt.tensor_dtypes */
  sqlite3_stmt *pIns = 0;
  GptTensorWriter w;
  int bWriter = 0;            /* w created and not yet finished */
  unsigned char *aBuf = 0, *aRow = 0;
  int rc;

  aBuf = sqlite3_malloc64(GG_CHUNK);
  if (!aBuf) return ggNoMem(p);
  rc = ggPrepare(p, "INSERT INTO main.gpt_tensors(model, name, dtype, shape, data) "
                 "VALUES(?1, ?2, ?3, ?4, iif(typeof(?5) = 'blob', ?5, zeroblob(?5)))", &pIns);
  if (rc != SQLITE_OK) goto done;
  rc = ggString(p, "sqlite_gpt.tensor_dtypes", 1 << 20, &zNarrow, 0);
  if (rc != SQLITE_OK) goto done;
  if (zNarrow) { /* a JSON object of names to dtypes, or refused (it was ignored) */
    sqlite3_stmt *q = 0;
    if ((rc = ggPrepare(p, "SELECT json_valid(?1) AND json_type(?1) = 'object'", &q))) goto done;
    sqlite3_bind_text(q, 1, zNarrow, -1, SQLITE_STATIC);
    int bObject = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (!bObject) {
      rc = ggError(p, "sqlite_gpt.tensor_dtypes is not a JSON object of tensor names to dtypes");
      goto done;
    }
  }
  sqlite3_bind_text(pIns, 1, p->zName, -1, SQLITE_STATIC);
  for (int i = 0; i < p->nReq; i++) {
    GgReq *r = &p->aReq[i];
    const GGUFTensor *t = r->pSrc;
    int block, bytes, esize;
    int bQuant = ggIsQuant(t->type);
    int eXform = r->eXform == GG_TRANSPOSE && bQuant ? GG_COPY : r->eXform;
    int64_t nRow, nCol, nRowBytes, nBytes;
    char zShape[64];

    ggml_type_layout(t->type, &block, &bytes);
    esize = bQuant ? 0 : bytes;
    /* a 1-D tensor gpt_export widened to F32 for llama.cpp: back to its dtype */
    int eNarrow = -1;
    if (r->info.ndim == 1 && t->type == GGML_F32 && zNarrow) {
      sqlite3_stmt *q = 0;
      if ((rc = ggPrepare(p, "SELECT json_extract(?1, '$.' || json_quote(?2))", &q))) goto done;
      sqlite3_bind_text(q, 1, zNarrow, -1, SQLITE_STATIC);
      sqlite3_bind_text(q, 2, t->name, -1, SQLITE_STATIC);
      if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) == SQLITE_TEXT) {
        const char *zTo = (const char *)sqlite3_column_text(q, 0);
        eNarrow = strcmp(zTo, "f16") == 0 ? GGML_F16 : strcmp(zTo, "bf16") == 0 ? GGML_BF16 : -2;
      }
      sqlite3_finalize(q);
      if (eNarrow == -2) {
        rc = ggError(p, "sqlite_gpt.tensor_dtypes names %s for \"%s\", expected f16 or bf16",
                     "another dtype", t->name);
        goto done;
      }
    }
    if (r->info.ndim == 2) {
      nRow = r->info.transposed ? r->info.shape[1] : r->info.shape[0];
      nCol = r->info.transposed ? r->info.shape[0] : r->info.shape[1];
      snprintf(zShape, sizeof(zShape), "[%lld,%lld]", (long long)r->info.shape[0],
               (long long)r->info.shape[1]);
    } else {
      nRow = r->info.shape[0];
      nCol = 1;
      snprintf(zShape, sizeof(zShape), "[%lld]", (long long)r->info.shape[0]);
    }
    /* a 1-D tensor is one file row of nRow values */
    nRowBytes = r->info.ndim == 2 ? nCol / block * bytes : 0;
    nBytes = r->info.ndim == 2 ? nRow * nRowBytes : nRow / block * bytes;
    if (eNarrow >= 0) {
      /* at most GPT_MAX_FF values: read whole, each must narrow exactly */
      float *aF = sqlite3_malloc64((uint64_t)nBytes);
      uint16_t *aH = sqlite3_malloc64((uint64_t)nRow * 2);
      if (!aF || !aH) {
        sqlite3_free(aF);
        sqlite3_free(aH);
        rc = ggNoMem(p);
        goto done;
      }
      /* from row iRow0: the q, k or v slice of a fused bias */
      rc = ggReadTensor(p, t, r->iRow0 * (int64_t)bytes, aF, (size_t)nBytes);
      for (int64_t e = 0; rc == SQLITE_OK && e < nRow; e++) {
        aH[e] = eNarrow == GGML_F16 ? gpt_f32_to_f16(aF[e]) : gpt_f32_to_bf16(aF[e]);
        float back = eNarrow == GGML_F16 ? gpt_f16_to_f32(aH[e]) : gpt_bf16_to_f32(aH[e]);
        if (!isfinite(aF[e])) {
          rc = ggError(p, "tensor \"%s\" element %lld is not finite", t->name, (long long)e);
        } else if (back != aF[e]) {
          rc = ggError(p, "tensor \"%s\" element %lld (%.9g) does not narrow exactly to %s, "
                       "the dtype sqlite_gpt.tensor_dtypes says it was stored in", t->name,
                       (long long)e, (double)aF[e], ggDtypeName(eNarrow));
        }
      }
      if (rc == SQLITE_OK) {
        sqlite3_bind_text(pIns, 2, r->info.name, -1, SQLITE_STATIC);
        sqlite3_bind_text(pIns, 3, ggDtypeName(eNarrow), -1, SQLITE_STATIC);
        sqlite3_bind_text(pIns, 4, zShape, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob64(pIns, 5, aH, (uint64_t)nRow * 2, SQLITE_STATIC);
        rc = sqlite3_step(pIns);
        sqlite3_reset(pIns);
        rc = rc == SQLITE_DONE ? SQLITE_OK : ggSqlError(p, rc);
      }
      sqlite3_free(aF);
      sqlite3_free(aH);
      if (rc != SQLITE_OK) goto done;
      p->nParam += r->info.n_elem;
      p->nByte += nRow * 2;
      p->mType |= eNarrow == GGML_F16 ? 2u : 4u;
      continue;
    }
    /* one row, or row-aligned parts past the BLOB limit (ext/tensors.c) */
    {
      char *zMsg = 0;
      rc = gptext_tensor_create(&w, p->db, p->zName, &r->info,
                                gpt_row_dtype_from_name(ggDtypeName(t->type)), &zMsg);
      bWriter = 1;
      if (rc != SQLITE_OK) {
        if (zMsg && !p->zErr) p->rcErr = rc; /* SQLITE_TOOBIG */
        rc = zMsg ? ggError(p, "%s", zMsg) : ggSqlError(p, rc);
        sqlite3_free(zMsg);
        goto done;
      }
    }
    if (r->info.ndim == 1 || eXform == GG_COPY) {
      /* one run of bytes: rows iRow0.. of the file */
      int64_t off0 = r->iRow0 * (r->info.ndim == 2 ? nRowBytes : (int64_t)bytes);
      int64_t nChunk = bQuant ? GG_CHUNK / bytes * bytes : GG_CHUNK;
      for (int64_t off = 0; off < nBytes; off += nChunk) {
        int n = (int)(nBytes - off < nChunk ? nBytes - off : nChunk);
        if (gptext_interrupted(p->db)) {
          rc = ggSqlError(p, SQLITE_INTERRUPT);
          goto done;
        }
        if ((rc = ggReadTensor(p, t, off0 + off, aBuf, (size_t)n))) goto done;
        int64_t iBad = ggBadValue(t->type, aBuf, (size_t)n);
        if (iBad >= 0) {
          rc = ggError(p, "tensor \"%s\" has %s at %s %lld", t->name, ggBadWhat(t->type),
                       bQuant ? "block" : "element",
                       (long long)((bQuant ? off / bytes : off / esize) + iBad));
          goto done;
        }
        rc = gptext_tensor_write(&w, aBuf, n);
        if (rc != SQLITE_OK) {
          rc = ggSqlError(p, rc);
          goto done;
        }
      }
    } else if (eXform == GG_PERMUTE_Q || eXform == GG_PERMUTE_K) {
      /* rows gathered in file order of ggPermRow, written in runs */
      int hd = gpt_config_head_dim(&p->cfg);
      int64_t nPer = GG_CHUNK / nRowBytes > 0 ? GG_CHUNK / nRowBytes : 1;
      if (nRowBytes > GG_CHUNK) {
        rc = ggError(p, "tensor \"%s\": rows of %lld bytes are too long", t->name,
                     (long long)nRowBytes);
        goto done;
      }
      for (int64_t r0 = 0; r0 < nRow; r0 += nPer) {
        int64_t n = nRow - r0 < nPer ? nRow - r0 : nPer;
        if (gptext_interrupted(p->db)) {
          rc = ggSqlError(p, SQLITE_INTERRUPT);
          goto done;
        }
        for (int64_t k = 0; k < n; k++) {
          int64_t src = r->iRow0 + ggPermRow(r0 + k, hd);
          if ((rc = ggReadTensor(p, t, src * nRowBytes, aBuf + k * nRowBytes, (size_t)nRowBytes)))
            goto done;
        }
        if (ggBadValue(t->type, aBuf, (size_t)(n * nRowBytes)) >= 0) {
          rc = ggError(p, "tensor \"%s\" has %s in rows %lld to %lld", t->name,
                       ggBadWhat(t->type), (long long)r0, (long long)(r0 + n - 1));
          goto done;
        }
        rc = gptext_tensor_write(&w, aBuf, n * nRowBytes);
        if (rc != SQLITE_OK) {
          rc = ggSqlError(p, rc);
          goto done;
        }
      }
    } else {
      /* Conv1D: stored (in, out) = (nCol, nRow) from the file's (nRow, nCol);
      ** a band of B stored rows reads B values of each of the nRow file rows */
      int64_t B = GG_CHUNK / (nRow * esize);
      if (B < 1) B = 1;
      if (B * nRow * esize > GG_CHUNK) {
        sqlite3_free(aBuf);
        aBuf = sqlite3_malloc64((uint64_t)(B * nRow * esize));
        if (!aBuf) {
          rc = ggNoMem(p);
          goto done;
        }
      }
      sqlite3_free(aRow);
      aRow = sqlite3_malloc64((uint64_t)(B * esize));
      if (!aRow) {
        rc = ggNoMem(p);
        goto done;
      }
      for (int64_t c0 = 0; c0 < nCol; c0 += B) {
        int64_t nb = nCol - c0 < B ? nCol - c0 : B;
        if (gptext_interrupted(p->db)) {
          rc = ggSqlError(p, SQLITE_INTERRUPT);
          goto done;
        }
        for (int64_t o = 0; o < nRow; o++) {
          if ((rc = ggReadTensor(p, t, (o * nCol + c0) * esize, aRow, (size_t)(nb * esize))))
            goto done;
          for (int64_t k = 0; k < nb; k++)
            memcpy(aBuf + (k * nRow + o) * esize, aRow + k * esize, (size_t)esize);
        }
        if (ggBadValue(t->type, aBuf, (size_t)(nb * nRow * esize)) >= 0) {
          rc = ggError(p, "tensor \"%s\" has %s", t->name, ggBadWhat(t->type));
          goto done;
        }
        rc = gptext_tensor_write(&w, aBuf, nb * nRow * esize);
        if (rc != SQLITE_OK) {
          rc = ggSqlError(p, rc);
          goto done;
        }
      }
    }
    bWriter = 0;
    rc = gptext_tensor_finish(&w);
    if (rc != SQLITE_OK) {
      rc = ggSqlError(p, rc);
      goto done;
    }
    p->nParam += r->info.n_elem;
    p->nByte += nBytes;
    for (int k = 0; k < 7; k++) {
      static const int aType[] = {GGML_F32, GGML_F16, GGML_BF16, GGML_Q8_0, GGML_Q4_0,
                                  GGML_Q4_K, GGML_Q6_K};
      if (aType[k] == t->type) p->mType |= 1u << k;
    }
  }
  rc = SQLITE_OK;
done:
  if (bWriter) gptext_tensor_finish(&w);
  sqlite3_finalize(pIns);
  sqlite3_free(aBuf);
  sqlite3_free(aRow);
  sqlite3_free(zNarrow);
  return rc;
}

/* Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type). */
#define GG_TOKEN_NORMAL 1
#define GG_TOKEN_CONTROL 3
#define GG_TOKEN_USER_DEFINED 4
#define GG_TOKEN_UNUSED 5

/* End-of-turn tokens that stop a generation when they are special tokens
** (the tokenizer.json import's list). */
static const char *azGgEndOfTurn[] = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>",
                                      "<|end_of_text|>"};

/* Tokenizer facts gathered on import. */
typedef struct GgTok {
  int nFile;             /* tokens in the file */
  int *aType;            /* (nFile,) token types */
  char **azText;         /* (nFile,) token texts as in the file */
  int *anText;
  const GgPre *pPre;
  char *zStages;         /* JSON array of stages (sqlite3_malloc'd) */
  int bNfc, bIgnoreMerges;
  int bos, eos, bAddBos;
  int aStop[GPT_MAX_STOP_IDS];
  int nStop;
  char *zTemplate;
  int bOverride;         /* sqlite_gpt.tokenizer was read */
} GgTok;

/* Adds id to the stop ids unless there. */
static int ggStop(GgImport *p, GgTok *k, int id) {
  for (int i = 0; i < k->nStop; i++)
    if (k->aStop[i] == id) return SQLITE_OK;
  if (k->nStop >= GPT_MAX_STOP_IDS)
    return ggError(p, "more than %d end-of-generation ids", GPT_MAX_STOP_IDS);
  k->aStop[k->nStop++] = id;
  return SQLITE_OK;
}

/* Reads a token id key (absent: -1); it must be below nTok. */
static int ggTokenId(GgImport *p, const char *zKey, int nTok, int *pId) {
  int rc = ggInt(p, zKey, 0, -1, 0, nTok - 1, pId);
  return rc;
}

/*
** Reads sqlite_gpt.tokenizer, written by gpt_export: a JSON object with the
** pre-tokenizer stages, normalizer, ignore_merges and stop ids of the
** model's gpt_tokenizer row, which override what the pre name implies.
** Checked like the row itself.
*/
static int ggTokOverride(GgImport *p, GgTok *k) {
  sqlite3_stmt *pStmt = 0;
  char *zJson = 0;
  int rc, nJson;
  rc = ggString(p, "sqlite_gpt.tokenizer", 1 << 20, &zJson, &nJson);
  if (rc != SQLITE_OK || !zJson) goto done;
  rc = ggPrepare(p,
      "SELECT CASE WHEN NOT json_valid(?1) THEN 0 WHEN json_type(?1) = 'object'"
      "   AND json_type(?1, '$.pre_tokenizer') = 'array'"
      "   AND json_array_length(?1, '$.pre_tokenizer') <= 8"
      "   AND NOT EXISTS(SELECT 1 FROM json_each(?1, '$.pre_tokenizer') WHERE type <> 'object'"
      "     OR (json_type(value, '$.regex') IS NOT 'text') = (json_type(value, '$.string') IS NOT 'text'))"
      "   AND coalesce(json_extract(?1, '$.normalizer'), 'NFC') = 'NFC'"
      "   AND json_type(?1, '$.ignore_merges') IN ('true', 'false')"
      "   AND json_type(?1, '$.stop_ids') = 'array'"
      "   AND json_array_length(?1, '$.stop_ids') <= 8"
      "   AND NOT EXISTS(SELECT 1 FROM json_each(?1, '$.stop_ids') WHERE type <> 'integer'"
      "     OR value < 0 OR value >= ?2) THEN 1 ELSE 0 END,"
      " CASE WHEN json_valid(?1) THEN json_extract(?1, '$.pre_tokenizer') END,"
      " CASE WHEN json_valid(?1) THEN json_extract(?1, '$.normalizer') END,"
      " CASE WHEN json_valid(?1) THEN json_type(?1, '$.ignore_merges') END", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 1, zJson, nJson, SQLITE_STATIC);
  sqlite3_bind_int(pStmt, 2, p->nTok);
  rc = sqlite3_step(pStmt);
  if (rc != SQLITE_ROW) {
    rc = ggSqlError(p, rc);
    goto done;
  }
  if (!sqlite3_column_int(pStmt, 0)) {
    rc = ggError(p, "metadata \"sqlite_gpt.tokenizer\" must be a JSON object with "
                 "pre_tokenizer (at most 8 {\"regex\"} or {\"string\"} stages), normalizer "
                 "(\"NFC\" or null), ignore_merges and stop_ids (at most 8 ids below %d)",
                 p->nTok);
    goto done;
  }
  sqlite3_free(k->zStages);
  k->zStages = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(pStmt, 1));
  k->bNfc = sqlite3_column_type(pStmt, 2) != SQLITE_NULL;
  k->bIgnoreMerges = strcmp((const char *)sqlite3_column_text(pStmt, 3), "true") == 0;
  k->bOverride = 1;
  if (!k->zStages) {
    rc = ggNoMem(p);
    goto done;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;
  k->nStop = 0;
  rc = ggPrepare(p, "SELECT value FROM json_each(?1, '$.stop_ids')", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 1, zJson, nJson, SQLITE_STATIC);
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    if ((rc = ggStop(p, k, sqlite3_column_int(pStmt, 0)))) goto done;
  }
  rc = rc == SQLITE_DONE ? SQLITE_OK : ggSqlError(p, rc);
done:
  sqlite3_finalize(pStmt);
  sqlite3_free(zJson);
  return rc;
}

/*
** Imports tokenizer.ggml.*: the tokens (control and user-defined ones are
** added tokens, special when control; their text is raw and stored in
** byte-level form), the merges, bos/eos, add_bos_token (absent: llama.cpp's
** default for the pre-tokenizer, true for llama-bpe), the chat template,
** and the pre-tokenizer of tokenizer.ggml.pre. Trailing "[PADn]" tokens
** (the converter pads the vocabulary to the embedding's rows, as unused
** tokens, or user-defined ones before) are left out,
** so those ids have no token, as in the Hugging Face import. A GPT-2 file
** whose tokenizer is exactly GPT-2's gets no gpt_tokenizer row, like a
** vocab.json folder.
*/
static int ggTokenizer(GgImport *p) {
  GgTok k;
  sqlite3_stmt *pStmt = 0;
  char *zModel = 0, *zPre = 0, *zText = 0;
  const GGUFKV *pTokens, *pTypes, *pMerges;
  char zMsg[256];
  int rc, bLegacy = 0, eot = -1, eotKey = -1, eomKey = -1;
  int64_t off;

  memset(&k, 0, sizeof(k));
  k.bos = k.eos = -1;
  rc = ggString(p, "tokenizer.ggml.model", 64, &zModel, 0);
  if (rc != SQLITE_OK) goto done;
  if (!zModel || strcmp(zModel, "gpt2") != 0) {
    rc = ggError(p, "tokenizer.ggml.model is %s%s%s, expected \"gpt2\" (byte-level BPE)",
                 zModel ? "\"" : "", zModel ? zModel : "missing", zModel ? "\"" : "");
    goto done;
  }
  rc = ggString(p, "tokenizer.ggml.pre", 256, &zPre, 0);
  if (rc != SQLITE_OK) goto done;
  for (size_t i = 0; zPre && i < sizeof(aGgPre) / sizeof(aGgPre[0]); i++)
    if (strcmp(zPre, aGgPre[i].zName) == 0) k.pPre = &aGgPre[i];
  if (!k.pPre) {
    rc = ggError(p, "tokenizer.ggml.pre %s%s%s is not supported, expected one of " GG_PRE_LIST,
                 zPre ? "\"" : "", zPre ? zPre : "is missing", zPre ? "\"" : "");
    goto done;
  }
  k.zStages = ggPreStages(k.pPre);
  if (!k.zStages) {
    rc = ggNoMem(p);
    goto done;
  }
  k.bNfc = k.pPre->bNfc;
  k.bIgnoreMerges = k.pPre->bIgnoreMerges;

  pTokens = gguf_find(p->g, "tokenizer.ggml.tokens");
  pTypes = gguf_find(p->g, "tokenizer.ggml.token_type");
  pMerges = gguf_find(p->g, "tokenizer.ggml.merges");
  if (!pTokens || pTokens->v.type != GGUF_ARRAY || pTokens->v.elem_type != GGUF_STRING) {
    rc = ggError(p, "tokenizer.ggml.tokens is %s, expected an array of strings",
                 pTokens ? "not an array of strings" : "missing");
    goto done;
  }
  if (pTokens->v.n < 256 || pTokens->v.n > (uint64_t)p->cfg.vocab_size) {
    rc = ggError(p, "tokenizer.ggml.tokens has %llu tokens, expected 256 to %d (the rows of "
                 "token_embd)", (unsigned long long)pTokens->v.n, p->cfg.vocab_size);
    goto done;
  }
  if (pTypes && (pTypes->v.type != GGUF_ARRAY || pTypes->v.n != pTokens->v.n ||
                 pTypes->v.elem_type == GGUF_STRING || pTypes->v.elem_type == GGUF_FLOAT32 ||
                 pTypes->v.elem_type == GGUF_FLOAT64)) {
    rc = ggError(p, "tokenizer.ggml.token_type must be an array of %llu integers",
                 (unsigned long long)pTokens->v.n);
    goto done;
  }
  if (!pMerges || pMerges->v.type != GGUF_ARRAY || pMerges->v.elem_type != GGUF_STRING) {
    rc = ggError(p, "tokenizer.ggml.merges is %s, expected an array of strings",
                 pMerges ? "not an array of strings" : "missing");
    goto done;
  }
  k.nFile = (int)pTokens->v.n;
  k.aType = sqlite3_malloc64(sizeof(int) * (uint64_t)k.nFile);
  k.azText = sqlite3_malloc64(sizeof(char *) * (uint64_t)k.nFile);
  k.anText = sqlite3_malloc64(sizeof(int) * (uint64_t)k.nFile);
  if (!k.aType || !k.azText || !k.anText) {
    rc = ggNoMem(p);
    goto done;
  }
  memset(k.azText, 0, sizeof(char *) * (size_t)k.nFile);
  off = pTokens->v.off;
  for (int i = 0; i < k.nFile; i++) {
    int64_t so;
    uint64_t n;
    int64_t ty = GG_TOKEN_NORMAL;
    if (gguf_array_next_string(p->g, &off, &so, &n)) {
      rc = ggError(p, "cannot read token %d", i);
      goto done;
    }
    if (n == 0 || n > TOK_MAX_ADDED_LEN * 4) {
      rc = ggError(p, "token %d is %llu bytes, expected 1 to %d", i, (unsigned long long)n,
                   TOK_MAX_ADDED_LEN * 4);
      goto done;
    }
    k.azText[i] = sqlite3_malloc64(n + 1);
    if (!k.azText[i]) {
      rc = ggNoMem(p);
      goto done;
    }
    if (gguf_read_at(p->g, so, k.azText[i], (size_t)n)) {
      rc = ggError(p, "cannot read token %d", i);
      goto done;
    }
    k.azText[i][n] = 0;
    k.anText[i] = (int)n;
    if (memchr(k.azText[i], 0, (size_t)n) || !gptext_utf8_valid(k.azText[i], (size_t)n)) {
      rc = ggError(p, "token %d is not valid UTF-8 text", i);
      goto done;
    }
    if (pTypes && gguf_array_int(p->g, &pTypes->v, (uint64_t)i, &ty)) {
      rc = ggError(p, "cannot read the type of token %d", i);
      goto done;
    }
    if (ty < 1 || ty > 6) {
      rc = ggError(p, "token %d has type %lld, expected 1 to 6", i, (long long)ty);
      goto done;
    }
    k.aType[i] = (int)ty;
  }
  /* the converter's padding: trailing "[PADi]", unused (type 5) as
  ** convert_hf_to_gguf.py writes them now, user-defined (4) as it did */
  p->nTok = k.nFile;
  while (p->nTok > 256) {
    char zPad[32];
    int i = p->nTok - 1;
    snprintf(zPad, sizeof(zPad), "[PAD%d]", i);
    if ((k.aType[i] != GG_TOKEN_UNUSED && k.aType[i] != GG_TOKEN_USER_DEFINED) ||
        strcmp(k.azText[i], zPad) != 0)
      break;
    p->nTok--;
  }

  /* ids, flags and the template */
  if ((rc = ggTokenId(p, "tokenizer.ggml.bos_token_id", p->nTok, &k.bos)) ||
      (rc = ggTokenId(p, "tokenizer.ggml.eos_token_id", p->nTok, &k.eos)) ||
      (rc = ggTokenId(p, "tokenizer.ggml.eot_token_id", p->nTok, &eotKey)) ||
      (rc = ggTokenId(p, "tokenizer.ggml.eom_token_id", p->nTok, &eomKey)) ||
      (rc = ggBool(p, "tokenizer.ggml.add_bos_token", k.pPre->bAddBos && k.bos >= 0,
                   &k.bAddBos)))
    goto done;
  if (k.bAddBos && k.bos < 0) {
    rc = ggError(p, "tokenizer.ggml.add_bos_token is true but there is no bos_token_id");
    goto done;
  }
  rc = ggString(p, "tokenizer.chat_template", GPT_MAX_CHAT_TEMPLATE, &k.zTemplate, 0);
  if (rc != SQLITE_OK) goto done;
  if (k.zTemplate) {
    char zTplErr[256];
    if (tpl_check(k.zTemplate, zTplErr, sizeof(zTplErr))) {
      rc = ggError(p, "tokenizer.chat_template cannot be rendered: %s", zTplErr);
      goto done;
    }
  }
  if (k.eos >= 0 && (rc = ggStop(p, &k, k.eos))) goto done;
  if (eotKey >= 0 && (rc = ggStop(p, &k, eotKey))) goto done;
  if (eomKey >= 0 && (rc = ggStop(p, &k, eomKey))) goto done;
  for (int i = 0; i < p->nTok; i++) {
    if (k.aType[i] != GG_TOKEN_CONTROL) continue;
    if (strcmp(k.azText[i], "<|endoftext|>") == 0 && eot < 0) eot = i;
    for (size_t j = 0; j < sizeof(azGgEndOfTurn) / sizeof(azGgEndOfTurn[0]); j++)
      if (strcmp(k.azText[i], azGgEndOfTurn[j]) == 0 && (rc = ggStop(p, &k, i))) goto done;
  }
  if ((rc = ggTokOverride(p, &k))) goto done;

  /* GPT-2 exactly: no gpt_tokenizer row */
  if (p->cfg.arch == GPT_ARCH_GPT2 && !k.bNfc && !k.bIgnoreMerges && !k.bAddBos &&
      !k.zTemplate && p->nTok == p->cfg.vocab_size && eot >= 0 &&
      (k.bos < 0 || k.bos == eot) && (k.eos < 0 || k.eos == eot) &&
      k.nStop == 1 && k.aStop[0] == eot) {
    char *zGpt2 = ggPreStages(&aGgPre[0]);
    bLegacy = zGpt2 && strcmp(zGpt2, k.zStages) == 0;
    for (int i = 0; bLegacy && i < p->nTok; i++)
      if ((k.aType[i] == GG_TOKEN_CONTROL && i != eot) || k.aType[i] == GG_TOKEN_USER_DEFINED)
        bLegacy = 0;
    sqlite3_free(zGpt2);
  }

  /* gpt_vocab and the tokenizer */
  p->pTok = tok_new(p->nTok);
  if (!p->pTok) {
    rc = ggNoMem(p);
    goto done;
  }
  rc = ggPrepare(p, "INSERT INTO main.gpt_vocab(model, token_id, token) VALUES(?1, ?2, ?3)", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 1, p->zName, -1, SQLITE_STATIC);
  for (int i = 0; i < p->nTok; i++) {
    const char *z = k.azText[i];
    int n = k.anText[i];
    char *zLevel = 0;
    if (!bLegacy && (k.aType[i] == GG_TOKEN_CONTROL || k.aType[i] == GG_TOKEN_USER_DEFINED)) {
      int nLevel = tok_byte_level(z, n, 0, 0);
      zLevel = sqlite3_malloc(nLevel + 1);
      if (!zLevel) {
        rc = ggNoMem(p);
        goto done;
      }
      tok_byte_level(z, n, zLevel, nLevel + 1);
      z = zLevel;
      n = nLevel;
    }
    if (tok_set_token(p->pTok, i, z, n, zMsg, sizeof(zMsg))) {
      sqlite3_free(zLevel);
      rc = ggError(p, "tokenizer.ggml.tokens: %s", zMsg);
      goto done;
    }
    sqlite3_bind_int(pStmt, 2, i);
    sqlite3_bind_text(pStmt, 3, z, n, SQLITE_TRANSIENT);
    rc = sqlite3_step(pStmt);
    sqlite3_reset(pStmt);
    sqlite3_free(zLevel);
    if (rc != SQLITE_DONE) {
      rc = ggSqlError(p, rc);
      goto done;
    }
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;

  /* gpt_merges: "left right" */
  rc = ggPrepare(p, "INSERT INTO main.gpt_merges(model, rank, left, right) VALUES(?1, ?2, ?3, ?4)",
                 &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 1, p->zName, -1, SQLITE_STATIC);
  zText = sqlite3_malloc(TOK_MAX_ADDED_LEN * 8 + 1);
  if (!zText) {
    rc = ggNoMem(p);
    goto done;
  }
  off = pMerges->v.off;
  for (uint64_t i = 0; i < pMerges->v.n; i++) {
    int64_t so;
    uint64_t n;
    char *zSp;
    if (gguf_array_next_string(p->g, &off, &so, &n)) {
      rc = ggError(p, "cannot read merge %llu", (unsigned long long)i);
      goto done;
    }
    if (n < 3 || n > TOK_MAX_ADDED_LEN * 8 || gguf_read_at(p->g, so, zText, (size_t)n)) {
      rc = ggError(p, "tokenizer.ggml.merges[%llu] is %llu bytes, expected \"a b\" of at most "
                   "%d", (unsigned long long)i, (unsigned long long)n, TOK_MAX_ADDED_LEN * 8);
      goto done;
    }
    zText[n] = 0;
    zSp = memchr(zText, ' ', (size_t)n);
    if (!zSp || zSp == zText || zSp == zText + n - 1 ||
        memchr(zSp + 1, ' ', (size_t)(zText + n - zSp - 1)) || memchr(zText, 0, (size_t)n) ||
        !gptext_utf8_valid(zText, (size_t)n)) {
      rc = ggError(p, "tokenizer.ggml.merges[%llu] is not two tokens separated by one space",
                   (unsigned long long)i);
      goto done;
    }
    if (tok_add_merge(p->pTok, p->nMerge, zText, (int)(zSp - zText), zSp + 1,
                      (int)(zText + n - zSp - 1), zMsg, sizeof(zMsg))) {
      rc = ggError(p, "tokenizer.ggml.merges[%llu]: %s", (unsigned long long)i, zMsg);
      goto done;
    }
    sqlite3_bind_int(pStmt, 2, p->nMerge);
    sqlite3_bind_text(pStmt, 3, zText, (int)(zSp - zText), SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 4, zSp + 1, (int)(zText + n - zSp - 1), SQLITE_STATIC);
    rc = sqlite3_step(pStmt);
    sqlite3_reset(pStmt);
    if (rc != SQLITE_DONE) {
      rc = ggSqlError(p, rc);
      goto done;
    }
    p->nMerge++;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;

  if (bLegacy) {
    if (tok_finish(p->pTok, zMsg, sizeof(zMsg))) {
      rc = ggError(p, "tokenizer: %s", zMsg);
      goto done;
    }
    rc = SQLITE_OK;
    goto done;
  }

  /* options, stages and added tokens, through the loader's own checks */
  if (tok_set_options(p->pTok, TOK_OPT_HF | (k.bNfc ? TOK_OPT_NFC : 0) |
                      (k.bIgnoreMerges ? TOK_OPT_IGNORE_MERGES : 0), zMsg, sizeof(zMsg))) {
    rc = ggError(p, "tokenizer: %s", zMsg);
    goto done;
  }
  rc = ggPrepare(p, "SELECT json_extract(value, '$.regex'), json_extract(value, '$.string')"
                 " FROM json_each(?1)", &pStmt);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(pStmt, 1, k.zStages, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    int bLit = sqlite3_column_type(pStmt, 0) == SQLITE_NULL;
    if (tok_add_split(p->pTok, (const char *)sqlite3_column_text(pStmt, bLit ? 1 : 0),
                      (size_t)sqlite3_column_bytes(pStmt, bLit ? 1 : 0), bLit, zMsg,
                      sizeof(zMsg))) {
      rc = ggError(p, "pre-tokenizer: %s", zMsg);
      goto done;
    }
  }
  if (rc != SQLITE_DONE) {
    rc = ggSqlError(p, rc);
    goto done;
  }
  rc = SQLITE_OK;
  sqlite3_finalize(pStmt);
  pStmt = 0;
  {
    sqlite3_str *pAdded = sqlite3_str_new(p->db);
    sqlite3_str *pStop = sqlite3_str_new(p->db);
    char *zAdded, *zStop;
    int nAdded = 0;
    sqlite3_str_appendchar(pAdded, 1, '[');
    for (int i = 0; i < p->nTok; i++) {
      if (k.aType[i] != GG_TOKEN_CONTROL && k.aType[i] != GG_TOKEN_USER_DEFINED) continue;
      if (nAdded >= TOK_MAX_ADDED) {
        rc = ggError(p, "more than %d control and user-defined tokens", TOK_MAX_ADDED);
        break;
      }
      if (k.anText[i] > TOK_MAX_ADDED_LEN) {
        rc = ggError(p, "token %d (%s) is %d bytes, expected at most %d", i,
                     k.aType[i] == GG_TOKEN_CONTROL ? "control" : "user-defined", k.anText[i],
                     TOK_MAX_ADDED_LEN);
        break;
      }
      if (tok_add_added(p->pTok, i, k.azText[i], k.anText[i], k.aType[i] == GG_TOKEN_CONTROL,
                        zMsg, sizeof(zMsg))) {
        rc = ggError(p, "token %d: %s", i, zMsg);
        break;
      }
      sqlite3_str_appendf(pAdded, "%s{\"id\":%d,\"content\":", nAdded ? "," : "", i);
      ggJsonString(pAdded, k.azText[i], k.anText[i]);
      sqlite3_str_appendf(pAdded, ",\"special\":%s}",
                          k.aType[i] == GG_TOKEN_CONTROL ? "true" : "false");
      nAdded++;
    }
    sqlite3_str_appendchar(pAdded, 1, ']');
    sqlite3_str_appendchar(pStop, 1, '[');
    for (int i = 0; i < k.nStop; i++) sqlite3_str_appendf(pStop, "%s%d", i ? "," : "", k.aStop[i]);
    sqlite3_str_appendchar(pStop, 1, ']');
    zAdded = sqlite3_str_finish(pAdded);
    zStop = sqlite3_str_finish(pStop);
    if (rc == SQLITE_OK && (!zAdded || !zStop)) rc = ggNoMem(p);
    if (rc == SQLITE_OK && tok_finish(p->pTok, zMsg, sizeof(zMsg))) {
      rc = ggError(p, "tokenizer: %s", zMsg);
    }
    if (rc == SQLITE_OK) {
      rc = ggPrepare(p,
          "INSERT INTO main.gpt_tokenizer(model, config) VALUES(?1, json_object("
          " 'type', 'bpe', 'size', ?2, 'normalizer', ?3, 'pre_tokenizer', json(?4),"
          " 'ignore_merges', json(?5), 'added_tokens', json(?6),"
          " 'bos_id', ?7, 'bos', ?8, 'eos_id', ?9, 'eos', ?10, 'add_bos', json(?11),"
          " 'stop_ids', json(?12), 'chat_template', ?13))", &pStmt);
    }
    if (rc == SQLITE_OK) {
      int nBos = 0, nEos = 0;
      const char *zBos = k.bos >= 0 ? tok_token_bytes(p->pTok, k.bos, &nBos) : 0;
      const char *zEos = k.eos >= 0 ? tok_token_bytes(p->pTok, k.eos, &nEos) : 0;
      sqlite3_bind_text(pStmt, 1, p->zName, -1, SQLITE_STATIC);
      sqlite3_bind_int(pStmt, 2, p->nTok);
      if (k.bNfc) sqlite3_bind_text(pStmt, 3, "NFC", -1, SQLITE_STATIC);
      sqlite3_bind_text(pStmt, 4, k.zStages, -1, SQLITE_STATIC);
      sqlite3_bind_text(pStmt, 5, k.bIgnoreMerges ? "true" : "false", -1, SQLITE_STATIC);
      sqlite3_bind_text(pStmt, 6, zAdded, -1, SQLITE_STATIC);
      if (k.bos >= 0) sqlite3_bind_int(pStmt, 7, k.bos);
      /* the texts name the ids for readers; where one could not be stored
      ** (not UTF-8, a NUL in it, or longer than the loader takes) the id
      ** alone is kept */
      if (zBos && nBos <= TOK_MAX_ADDED_LEN && !memchr(zBos, 0, (size_t)nBos) &&
          gptext_utf8_valid(zBos, (size_t)nBos))
        sqlite3_bind_text(pStmt, 8, zBos, nBos, SQLITE_TRANSIENT);
      if (k.eos >= 0) sqlite3_bind_int(pStmt, 9, k.eos);
      if (zEos && nEos <= TOK_MAX_ADDED_LEN && !memchr(zEos, 0, (size_t)nEos) &&
          gptext_utf8_valid(zEos, (size_t)nEos))
        sqlite3_bind_text(pStmt, 10, zEos, nEos, SQLITE_TRANSIENT);
      sqlite3_bind_text(pStmt, 11, k.bAddBos ? "true" : "false", -1, SQLITE_STATIC);
      sqlite3_bind_text(pStmt, 12, zStop, -1, SQLITE_STATIC);
      sqlite3_bind_text(pStmt, 13, k.zTemplate, -1, SQLITE_STATIC);
      rc = sqlite3_step(pStmt);
      rc = rc == SQLITE_DONE ? SQLITE_OK : ggSqlError(p, rc);
    }
    sqlite3_free(zAdded);
    sqlite3_free(zStop);
  }
done:
  sqlite3_finalize(pStmt);
  for (int i = 0; k.azText && i < k.nFile; i++) sqlite3_free(k.azText[i]);
  sqlite3_free(k.azText);
  sqlite3_free(k.anText);
  sqlite3_free(k.aType);
  sqlite3_free(k.zStages);
  sqlite3_free(k.zTemplate);
  sqlite3_free(zModel);
  sqlite3_free(zPre);
  sqlite3_free(zText);
  return rc;
}

/* Writes the gpt_models row: GPT-2's keys (as a folder import writes
** them), or Hugging Face's (config.c). */
static int ggModelRow(GgImport *p) {
  sqlite3_stmt *pStmt = 0;
  char *zCfg = 0;
  int rc;
  if (p->cfg.arch != GPT_ARCH_GPT2) {
    zCfg = gptext_config_json(&p->cfg, p->bTied);
    if (!zCfg) return ggNoMem(p);
  }
  rc = ggPrepare(p, "INSERT INTO main.gpt_models(name, config, source) VALUES(?1, coalesce(json(?2),"
                 " json_object('n_layer', ?4, 'n_head', ?5, 'n_embd', ?6, 'n_ctx', ?7,"
                 " 'vocab_size', ?8, 'layer_norm_epsilon', ?9)), ?3)", &pStmt);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(pStmt, 1, p->zName, -1, SQLITE_STATIC);
    sqlite3_bind_text(pStmt, 2, zCfg, -1, SQLITE_STATIC);
    gptext_bind_utf8(pStmt, 3, p->zPath);
    sqlite3_bind_int(pStmt, 4, p->cfg.n_layer);
    sqlite3_bind_int(pStmt, 5, p->cfg.n_head);
    sqlite3_bind_int(pStmt, 6, p->cfg.n_embd);
    sqlite3_bind_int(pStmt, 7, p->cfg.n_ctx);
    sqlite3_bind_int(pStmt, 8, p->cfg.vocab_size);
    sqlite3_bind_double(pStmt, 9, p->cfg.ln_eps);
    rc = sqlite3_step(pStmt);
    rc = rc == SQLITE_DONE ? SQLITE_OK : ggSqlError(p, rc);
  }
  sqlite3_finalize(pStmt);
  sqlite3_free(zCfg);
  return rc;
}

int gptext_gguf_is_file(const char *zPath) {
  unsigned char a[4];
  struct stat st;
  int fd, bYes = 0;
  if (!zPath || stat(zPath, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  fd = open(zPath, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return 0;
  bYes = read(fd, a, 4) == 4 && gguf_is_magic(a);
  close(fd);
  return bYes;
}

/*
** gpt_import(NAME, PATH [, OPTIONS]) for a GGUF file (ext/import.c hands it
** over when the file starts with the magic). Runs in one savepoint; with
** bReplace an existing model of that name is deleted once the file's header
** and configuration have passed their checks.
*/
void gptext_gguf_import(sqlite3_context *ctx, const char *zName, const char *zPath,
                        int bReplace) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  GgImport s;
  char zMsg[512];
  char *zSummary = 0;
  sqlite3_stmt *pStmt = 0;
  int64_t nFile = 0;
  struct stat st;

  memset(&s, 0, sizeof(s));
  s.db = db;
  s.zName = zName;
  s.zPath = zPath;
  {
    int fd = open(zPath, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
      s.f = fdopen(fd, "rb");
      if (!s.f) close(fd);
    }
  }
  if (!s.f || fstat(fileno(s.f), &st) != 0 || !S_ISREG(st.st_mode)) {
    ggError(&s, "cannot open the file: %s", s.f ? "not a regular file" : strerror(errno));
    goto done;
  }
  nFile = (int64_t)st.st_size;
  zMsg[0] = 0;
  if (gguf_open(s.f, nFile, &s.g, zMsg, sizeof(zMsg))) {
    ggError(&s, "%s", zMsg);
    goto done;
  }
  {
    char *zErr = 0;
    int rc = gptext_savepoint_begin(db, sqlite3_user_data(ctx), &s.sp, "gpt_import", &zErr);
    if (rc != SQLITE_OK) {
      if ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(db)) {
        s.bInterrupted = 1;
        s.zErr = sqlite3_mprintf("gpt_import: model '%s': interrupted", zName);
      } else {
        s.rcErr = rc;
        s.zErr = sqlite3_mprintf("gpt_import: model '%s': %s", zName, zErr ? zErr : "out of memory");
      }
      sqlite3_free(zErr);
      goto done;
    }
  }
  if (ggPrepare(&s, "SELECT (SELECT count(*) FROM main.gpt_models WHERE name = ?1)"
                " + EXISTS(SELECT 1 FROM main.gpt_tensors WHERE model = ?1)"
                " + EXISTS(SELECT 1 FROM main.gpt_vocab WHERE model = ?1)"
                " + EXISTS(SELECT 1 FROM main.gpt_merges WHERE model = ?1)"
                " + EXISTS(SELECT 1 FROM main.gpt_tokenizer WHERE model = ?1)", &pStmt))
    goto done;
  sqlite3_bind_text(pStmt, 1, zName, -1, SQLITE_STATIC);
  {
    int rc = sqlite3_step(pStmt);
    if (rc != SQLITE_ROW) {
      ggSqlError(&s, rc);
      goto done;
    }
  }
  if (sqlite3_column_int64(pStmt, 0) > 0 && !bReplace) {
    s.zErr = sqlite3_mprintf("gpt_import: model '%s' already exists; pass {\"replace\": true} "
                             "to overwrite it", zName);
    goto done;
  }
  {
    int bExists = sqlite3_column_int64(pStmt, 0) > 0;
    sqlite3_finalize(pStmt);
    pStmt = 0;
    if (ggConfig(&s) || ggTensors(&s)) goto done;
    if (bExists) {
      int rc = gptext_delete_model(s.db, zName, 0);
      if (rc != SQLITE_OK) {
        ggSqlError(&s, rc);
        goto done;
      }
    }
  }
  if (ggTokenizer(&s) || ggStore(&s) || ggModelRow(&s)) goto done;
  {
    char *zErr = 0;
    int rc = gptext_savepoint_release(&s.sp, &zErr);
    if (rc != SQLITE_OK) {
      if (!s.zErr) {
        s.rcErr = rc;
        s.zErr = sqlite3_mprintf("gpt_import: model '%s': %s", zName, zErr ? zErr : "out of memory");
      }
      sqlite3_free(zErr);
      goto done;
    }
  }
  {
    static const char *azType[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"};
    char zTypes[64];
    int n = 0;
    zTypes[0] = 0;
    for (int k = 0; k < 7; k++) {
      if (s.mType & (1u << k))
        n += snprintf(zTypes + n, sizeof(zTypes) - (size_t)n, "%s%s", n ? "+" : "", azType[k]);
    }
    zSummary = sqlite3_mprintf("imported '%s': %d tensors, %lld parameters, %lld bytes (%s), "
                               "%d tokens, %d merges from %s (GGUF v%u, %s)", zName, s.nReq,
                               (long long)s.nParam, (long long)s.nByte, zTypes, s.nTok, s.nMerge,
                               zPath, s.g->version, s.zArch);
    if (!zSummary) ggNoMem(&s);
  }
done:
  sqlite3_finalize(pStmt);
  gptext_savepoint_end(&s.sp);
  if (s.zErr && !s.bInterrupted && gptext_interrupted(db)) s.bInterrupted = 1;
  if (s.zErr) {
    gptext_result_error(ctx, s.zErr);
    if (s.bInterrupted) sqlite3_result_error_code(ctx, SQLITE_INTERRUPT);
    else if (s.rcErr && s.rcErr != SQLITE_ERROR) sqlite3_result_error_code(ctx, s.rcErr);
  } else if (zSummary) {
    gptext_result_text(ctx, zSummary, (int)strlen(zSummary), sqlite3_free);
    zSummary = 0;
  } else {
    sqlite3_result_error_nomem(ctx);
  }
  sqlite3_free(zSummary);
  sqlite3_free(s.zErr);
  sqlite3_free(s.aReq);
  tok_free(s.pTok);
  gguf_free(s.g);
  if (s.f) fclose(s.f);
}

/* ------------------------------------------------------------ export */

/* State of one gpt_export() call. */
typedef struct GgExport {
  sqlite3 *db;
  const char *zModel;
  const char *zPath;
  char *zErr;
  int rcErr;
  FILE *f;
  GptModel *m;
  int bTied;
  char *zTokConfig;          /* the gpt_tokenizer row, or NULL (GPT-2) */
} GgExport;

/* Records an error (the first only). */
static int gxError(GgExport *p, const char *zFmt, ...) {
  va_list ap;
  char *zMsg;
  if (p->zErr) return SQLITE_ERROR;
  va_start(ap, zFmt);
  zMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  p->zErr = sqlite3_mprintf("gpt_export: model '%s': %s", p->zModel, zMsg ? zMsg : "out of memory");
  /* out of memory is SQLITE_NOMEM, as README promises (it was SQLITE_ERROR) */
  if (!zMsg || strncmp(zFmt, "out of memory", 13) == 0) p->rcErr = SQLITE_NOMEM;
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/* Records the error of a failed SQLite call of the export (interrupts read
** "interrupted"). */
static int gxSqlError(GgExport *p, int rc) {
  char *zMsg = 0;
  int code = gptext_sql_failure(p->db, rc, &zMsg);
  if (!p->zErr) p->rcErr = code;
  gxError(p, "%s", code == SQLITE_INTERRUPT ? "interrupted" : zMsg ? zMsg : "out of memory");
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/* Writes n bytes; a failed write is an error naming the file. */
static int gxWrite(GgExport *p, const void *a, size_t n) {
  if (n > 0 && fwrite(a, 1, n, p->f) != n)
    return gxError(p, "cannot write %s: %s", p->zPath, strerror(errno));
  return SQLITE_OK;
}
/* GGUF's integers are little-endian: a uint32, */
static int gxU32(GgExport *p, uint32_t v) {
  unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 24)};
  return gxWrite(p, b, 4);
}
/* a uint64, */
static int gxU64(GgExport *p, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
  return gxWrite(p, b, 8);
}
/* and a string is its uint64 length, then its bytes. */
static int gxStr(GgExport *p, const char *z, size_t n) {
  return gxU64(p, n) || gxWrite(p, z, n) ? SQLITE_ERROR : SQLITE_OK;
}
/* A key and its type. */
static int gxKey(GgExport *p, const char *zKey, int type) {
  return gxStr(p, zKey, strlen(zKey)) || gxU32(p, (uint32_t)type) ? SQLITE_ERROR : SQLITE_OK;
}
/* A metadata pair: the key, then a uint32 value, */
static int gxKvU32(GgExport *p, const char *zKey, uint32_t v) {
  return gxKey(p, zKey, GGUF_UINT32) || gxU32(p, v) ? SQLITE_ERROR : SQLITE_OK;
}
/* a float32 value, */
static int gxKvF32(GgExport *p, const char *zKey, double v) {
  float f = (float)v;
  uint32_t u;
  memcpy(&u, &f, 4);
  return gxKey(p, zKey, GGUF_FLOAT32) || gxU32(p, u) ? SQLITE_ERROR : SQLITE_OK;
}
/* a bool (one byte), */
static int gxKvBool(GgExport *p, const char *zKey, int b) {
  unsigned char c = b ? 1 : 0;
  return gxKey(p, zKey, GGUF_BOOL) || gxWrite(p, &c, 1) ? SQLITE_ERROR : SQLITE_OK;
}
/* or a string value. */
static int gxKvStr(GgExport *p, const char *zKey, const char *z) {
  return gxKey(p, zKey, GGUF_STRING) || gxStr(p, z, strlen(z)) ? SQLITE_ERROR : SQLITE_OK;
}

/* One tensor of the export. */
typedef struct GxTensor {
  char zName[96];            /* llama.cpp name */
  GPTTensorInfo info;        /* stored tensor (for rope_freqs: unused) */
  int type;                  /* ggml type */
  int n_dims;
  int64_t ne[2];
  int64_t nbytes;
  int64_t offset;
  int eXform;
  int eWiden;                /* stored dtype (GGML_F16/BF16) of a 1-D tensor written as F32, or 0 */
  float *aFreqs;             /* rope_freqs values */
} GxTensor;

/* File row f of a permuted q/k matrix is stored row ggUnpermRow(f). */
static int64_t ggUnpermRow(int64_t f, int hd) {
  int64_t h = f / hd, k = f % hd, j = k / 2, half = k % 2;
  return h * hd + half * (hd / 2) + j;
}

/*
** Collects the tensors: every stored one under its llama.cpp name (GPT-2's
** tied head written again as output.weight, which llama.cpp's gpt2 needs),
** and for llama with Llama 3.1 scaling the rope_freqs divisors, computed in
** float32 as convert_hf_to_gguf.py does.
*/
static int gxTensors(GgExport *p, GxTensor **paT, int *pnT) {
  const GPTConfig *c = &p->m->cfg;
  int bLmHead = !p->bTied;
  int n = gpt_n_tensors(c, bLmHead);
  int nT = 0, rc = SQLITE_OK;
  int bExtraHead = c->arch == GPT_ARCH_GPT2 && p->bTied;
  int bFreqs = c->rope_scaling == GPT_ROPE_LLAMA3;
  GxTensor *a = sqlite3_malloc64(sizeof(GxTensor) * (uint64_t)(n + 2));
  if (!a) return gxError(p, "out of memory");
  memset(a, 0, sizeof(GxTensor) * (size_t)(n + 2));
  if (bFreqs && c->arch != GPT_ARCH_LLAMA) {
    rc = gxError(p, "llama.cpp reads Llama 3.1 rope scaling for llama only, not %s",
                 gpt_arch_name(c->arch));
    goto done;
  }
  {
    /* every row one of the model's tensors or parts, as the loader asks */
    int64_t nRows = 0;
    char *zMsg = 0;
    rc = gptext_tensor_names_check(p->db, p->zModel, c, bLmHead, &nRows, &zMsg);
    if (rc != SQLITE_OK) {
      rc = zMsg ? gxError(p, "%s", zMsg) : gxSqlError(p, rc);
      sqlite3_free(zMsg);
      goto done;
    }
  }
  for (int i = 0; i < n; i++) {
    GxTensor *t = &a[nT];
    GptTensorRows rows;
    char *zMsg = 0;
    int layer, block, bytes;
    int64_t nRows, nK;
    gpt_tensor_info(c, bLmHead, i, &t->info);
    if (ggNameOf(c->arch, t->info.name, t->zName, sizeof(t->zName), &t->eXform, &layer)) {
      rc = gxError(p, "tensor %s has no llama.cpp name", t->info.name);
      goto done;
    }
    /* checked here, read by gxTensorData (whole or in parts) */
    rc = gptext_tensor_open(p->db, p->zModel, &t->info, &rows, &zMsg);
    gptext_tensor_close(&rows);
    if (rc != SQLITE_OK) {
      rc = zMsg ? gxError(p, "%s", zMsg) : gxSqlError(p, rc);
      sqlite3_free(zMsg);
      goto done;
    }
    t->type = ggTypeOfDtype(gpt_dtype_name(rows.dtype));
    gpt_tensor_matrix(&t->info, &nRows, &nK);
    ggml_type_layout(t->type, &block, &bytes);
    if (t->info.ndim == 2) {
      t->n_dims = 2;
      t->ne[0] = nK;
      t->ne[1] = nRows;
    } else {
      t->n_dims = 1;
      t->ne[0] = t->info.shape[0];
      t->ne[1] = 1;
    }
    if (ggIsQuant(t->type) && (t->info.ndim != 2 || nK % block != 0)) {
      rc = gxError(p, "tensor %s is %s but not a 2-D weight with rows of whole blocks",
                   t->info.name, ggDtypeName(t->type));
      goto done;
    }
    t->nbytes = t->ne[0] / block * bytes * t->ne[1];
    if (ggIsQuant(t->type) && t->eXform == GG_TRANSPOSE) t->eXform = GG_COPY;
    if (t->n_dims == 1 && (t->type == GGML_F16 || t->type == GGML_BF16)) {
      /* llama.cpp's CPU kernels add and multiply by 1-D tensors in F32 only
      ** (the converter writes them so); sqlite_gpt.tensor_dtypes keeps the
      ** stored dtype for a re-import */
      t->eWiden = t->type;
      t->type = GGML_F32;
      t->nbytes = 4 * t->ne[0];
    }
    nT++;
    if (bExtraHead && strcmp(t->info.name, "wte.weight") == 0) {
      a[nT] = *t;
      snprintf(a[nT].zName, sizeof(a[nT].zName), "output.weight");
      nT++;
    }
  }
  if (bFreqs) {
    GxTensor *t = &a[nT];
    int hd = gpt_config_head_dim(c), nf = hd / 2;
    float base = (float)(c->rope_theta > 0 ? c->rope_theta : 10000.0);
    float lf = (float)c->rope_low_freq_factor, hf = (float)c->rope_high_freq_factor;
    float fac = (float)c->rope_factor, old = (float)c->rope_original_ctx;
    snprintf(t->zName, sizeof(t->zName), "rope_freqs.weight");
    t->type = GGML_F32;
    t->n_dims = 1;
    t->ne[0] = nf;
    t->ne[1] = 1;
    t->nbytes = 4 * (int64_t)nf;
    t->aFreqs = sqlite3_malloc64(sizeof(float) * (uint64_t)nf);
    if (!t->aFreqs) {
      rc = gxError(p, "out of memory");
      goto done;
    }
    for (int i = 0; i < nf; i++) {
      float fr = 1.0f / powf(base, (float)(2 * i) / (float)hd);
      float wave = (float)(2 * M_PI) / fr;
      if (wave < old / hf) t->aFreqs[i] = 1.0f;
      else if (wave > old / lf) t->aFreqs[i] = fac;
      else {
        float sm = (old / wave - lf) / (hf - lf);
        t->aFreqs[i] = 1.0f / ((1.0f - sm) / fac + sm);
      }
    }
    nT++;
  }
  rc = SQLITE_OK;
done:
  if (rc != SQLITE_OK) {
    for (int i = 0; i < nT + 1 && i < n + 2; i++) sqlite3_free(a[i].aFreqs);
    sqlite3_free(a);
    return rc;
  }
  *paT = a;
  *pnT = nT;
  return SQLITE_OK;
}

/*
** Writes one tensor's data: straight from its row, q/k rows in llama.cpp's
** permuted order, Conv1D weights transposed to (out, in) by bands.
*/
static int gxTensorData(GgExport *p, const GxTensor *t, unsigned char *aBuf, int nBuf) {
  GptTensorRows rows;
  char *zMsg = 0;
  int rc = SQLITE_OK, block, bytes;
  if (t->aFreqs) return gxWrite(p, t->aFreqs, (size_t)t->nbytes);
  ggml_type_layout(t->type, &block, &bytes);
  rc = gptext_tensor_open(p->db, p->zModel, &t->info, &rows, &zMsg);
  /* a value no load takes (gpt_import of the file included) is refused */
  if (rc == SQLITE_OK && (rc = gptext_tensor_check(&rows, &t->info, &zMsg)) != SQLITE_OK)
    gptext_tensor_close(&rows);
  if (rc != SQLITE_OK) {
    rc = zMsg ? gxError(p, "%s", zMsg) : gxSqlError(p, rc);
    sqlite3_free(zMsg);
    return rc;
  }
  /* the rows gxTensors described in the header, not others written since */
  if (strcmp(gpt_dtype_name(rows.dtype), ggDtypeName(t->eWiden ? t->eWiden : t->type)) != 0 ||
      rows.nBytes != (t->eWiden ? 2 * t->ne[0] : t->nbytes)) {
    gptext_tensor_close(&rows);
    return gxError(p, "tensor %s changed while it was exported; export it again",
                   t->info.name);
  }
  if (t->eWiden) {
    /* n <= GPT_MAX_FF values of 2 bytes, widened to 4 */
    int64_t n = t->ne[0];
    for (int64_t e0 = 0; e0 < n && rc == SQLITE_OK; e0 += nBuf / 8) {
      int64_t m = n - e0 < nBuf / 8 ? n - e0 : nBuf / 8;
      unsigned char *aIn = aBuf + nBuf / 2;
      float *aOut = (float *)aBuf;
      rc = gptext_tensor_read(&rows, aIn, (int)(2 * m), (2 * e0));
      if (rc != SQLITE_OK) {
        rc = gxSqlError(p, rc);
        break;
      }
      for (int64_t e = 0; e < m; e++) {
        uint16_t h = (uint16_t)(aIn[2 * e] | aIn[2 * e + 1] << 8);
        aOut[e] = t->eWiden == GGML_F16 ? gpt_f16_to_f32(h) : gpt_bf16_to_f32(h);
      }
      rc = gxWrite(p, aOut, (size_t)(4 * m));
    }
  } else if (t->eXform == GG_COPY || t->n_dims == 1) {
    for (int64_t off = 0; off < t->nbytes && rc == SQLITE_OK; off += nBuf) {
      int n = (int)(t->nbytes - off < nBuf ? t->nbytes - off : nBuf);
      rc = gptext_tensor_read(&rows, aBuf, n, off);
      if (rc != SQLITE_OK) rc = gxSqlError(p, rc);
      else rc = gxWrite(p, aBuf, (size_t)n);
    }
  } else if (t->eXform == GG_PERMUTE_Q || t->eXform == GG_PERMUTE_K) {
    int hd = gpt_config_head_dim(&p->m->cfg);
    int64_t nRowBytes = t->ne[0] / block * bytes;
    if (nRowBytes > nBuf) {
      rc = gxError(p, "tensor %s: rows of %lld bytes are too long", t->info.name,
                   (long long)nRowBytes);
    }
    for (int64_t f = 0; f < t->ne[1] && rc == SQLITE_OK; f++) {
      rc = gptext_tensor_read(&rows, aBuf, (int)nRowBytes, (ggUnpermRow(f, hd) * nRowBytes));
      if (rc != SQLITE_OK) rc = gxSqlError(p, rc);
      else rc = gxWrite(p, aBuf, (size_t)nRowBytes);
    }
  } else {
    /* stored (in, out) = (ne[0], ne[1]); file rows are out */
    int64_t nIn = t->ne[0], nOut = t->ne[1], es = bytes;
    int64_t B = nBuf / 2 / (nIn * es);
    unsigned char *aCol = aBuf + nBuf / 2;
    if (B < 1 || nOut * es > nBuf / 2) {
      rc = gxError(p, "tensor %s is too wide to transpose", t->info.name);
    }
    for (int64_t o0 = 0; o0 < nOut && rc == SQLITE_OK; o0 += B) {
      int64_t nb = nOut - o0 < B ? nOut - o0 : B;
      for (int64_t i = 0; i < nIn && rc == SQLITE_OK; i++) {
        rc = gptext_tensor_read(&rows, aCol, (int)(nb * es), ((i * nOut + o0) * es));
        if (rc != SQLITE_OK) {
          rc = gxSqlError(p, rc);
          break;
        }
        for (int64_t k = 0; k < nb; k++) memcpy(aBuf + (k * nIn + i) * es, aCol + k * es, (size_t)es);
      }
      if (rc == SQLITE_OK) rc = gxWrite(p, aBuf, (size_t)(nb * nIn * es));
    }
  }
  gptext_tensor_close(&rows);
  return rc;
}

/*
** The tokenizer metadata: tokens (added tokens by their raw text, normal
** ones in byte-level form, "[PADi]" up to vocab_size as the converter pads),
** token types, merges, ids, add_bos_token, the template, the pre name, and
** sqlite_gpt.tokenizer. *pnKv counts the pairs written.
*/
static int gxTokenizer(GgExport *p, int *pnKv) {
  const GptModel *m = p->m;
  sqlite3_stmt *pStmt = 0;
  char *zStages = 0, *zNorm = 0, *zPrivate = 0;
  int bIgnore = 0, rc, nTok = tok_vocab_size(m->pTok), nVocab = m->cfg.vocab_size;
  int iPre = -1, *aType = 0, eos = -1;
  char **azAdded = 0;

  aType = sqlite3_malloc64(sizeof(int) * (uint64_t)nVocab);
  azAdded = sqlite3_malloc64(sizeof(char *) * (uint64_t)nVocab);
  if (!aType || !azAdded) {
    rc = gxError(p, "out of memory");
    goto done;
  }
  memset(azAdded, 0, sizeof(char *) * (size_t)nVocab);
  /* ids past the tokenizer are the converter's unused "[PADi]" */
  for (int i = 0; i < nVocab; i++) aType[i] = i < nTok ? GG_TOKEN_NORMAL : GG_TOKEN_UNUSED;
  if (p->zTokConfig) {
    rc = sqlite3_prepare_v2(p->db,
        "SELECT json_extract(?1, '$.pre_tokenizer'), json_extract(?1, '$.normalizer'),"
        " json_type(?1, '$.ignore_merges') = 'true', json_extract(?1, '$.eos_id')", -1, &pStmt, 0);
    if (rc != SQLITE_OK) { rc = gxSqlError(p, rc); goto done; }
    sqlite3_bind_text(pStmt, 1, p->zTokConfig, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(pStmt)) != SQLITE_ROW) { rc = gxSqlError(p, rc); goto done; }
    zStages = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(pStmt, 0));
    if (sqlite3_column_type(pStmt, 1) != SQLITE_NULL)
      zNorm = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(pStmt, 1));
    bIgnore = sqlite3_column_int(pStmt, 2);
    eos = sqlite3_column_type(pStmt, 3) == SQLITE_NULL ? -1 : sqlite3_column_int(pStmt, 3);
    sqlite3_finalize(pStmt);
    pStmt = 0;
    rc = sqlite3_prepare_v2(p->db, "SELECT json_extract(value, '$.id'), json_extract(value, "
                            "'$.content'), json_type(value, '$.special') = 'true' FROM "
                            "json_each(?1, '$.added_tokens')", -1, &pStmt, 0);
    if (rc != SQLITE_OK) { rc = gxSqlError(p, rc); goto done; }
    sqlite3_bind_text(pStmt, 1, p->zTokConfig, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
      int id = sqlite3_column_int(pStmt, 0);
      if (id < 0 || id >= nTok) continue; /* checked when the model loaded */
      aType[id] = sqlite3_column_int(pStmt, 2) ? GG_TOKEN_CONTROL : GG_TOKEN_USER_DEFINED;
      sqlite3_free(azAdded[id]);
      azAdded[id] = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(pStmt, 1));
      if (!azAdded[id]) { rc = gxError(p, "out of memory"); goto done; }
    }
    if (rc != SQLITE_DONE) { rc = gxSqlError(p, rc); goto done; }
    sqlite3_finalize(pStmt);
    pStmt = 0;
  } else {
    zStages = ggPreStages(&aGgPre[0]);
    if (m->eot >= 0) {
      aType[m->eot] = GG_TOKEN_CONTROL;
      eos = m->eot;
    }
  }
  if (!zStages || (p->zTokConfig && zNorm == 0 && 0)) {
    rc = gxError(p, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < sizeof(aGgPre) / sizeof(aGgPre[0]) && iPre < 0; i++) {
    char *z = ggPreStages(&aGgPre[i]);
    if (z && strcmp(z, zStages) == 0) iPre = (int)i;
    sqlite3_free(z);
  }
  if (iPre < 0) {
    rc = gxError(p, "its pre-tokenizer %s has no llama.cpp name (known: " GG_PRE_LIST ")",
                 zStages);
    goto done;
  }
  rc = SQLITE_OK;
  if (gxKvStr(p, "tokenizer.ggml.model", "gpt2") ||
      gxKvStr(p, "tokenizer.ggml.pre", aGgPre[iPre].zName)) goto done;
  *pnKv += 2;
  /* tokens */
  if (gxKey(p, "tokenizer.ggml.tokens", GGUF_ARRAY) || gxU32(p, GGUF_STRING) ||
      gxU64(p, (uint64_t)nVocab)) goto done;
  rc = sqlite3_prepare_v2(p->db, "SELECT token_id, token FROM main.gpt_vocab WHERE model = ?1 "
                          "ORDER BY token_id", -1, &pStmt, 0);
  if (rc != SQLITE_OK) { rc = gxSqlError(p, rc); goto done; }
  sqlite3_bind_text(pStmt, 1, p->zModel, -1, SQLITE_STATIC);
  for (int i = 0; i < nTok; i++) {
    rc = sqlite3_step(pStmt);
    if (rc != SQLITE_ROW || sqlite3_column_int(pStmt, 0) != i) {
      rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? gxError(p, "gpt_vocab changed during the "
                                                         "export") : gxSqlError(p, rc);
      goto done;
    }
    if (azAdded[i]) rc = gxStr(p, azAdded[i], strlen(azAdded[i]));
    else rc = gxStr(p, (const char *)sqlite3_column_text(pStmt, 1),
                    (size_t)gptext_column_bytes(pStmt, 1));
    if (rc) goto done;
  }
  sqlite3_finalize(pStmt);
  pStmt = 0;
  for (int i = nTok; i < nVocab; i++) {
    char zPad[32];
    snprintf(zPad, sizeof(zPad), "[PAD%d]", i);
    if ((rc = gxStr(p, zPad, strlen(zPad)))) goto done;
  }
  if (gxKey(p, "tokenizer.ggml.token_type", GGUF_ARRAY) || gxU32(p, GGUF_INT32) ||
      gxU64(p, (uint64_t)nVocab)) goto done;
  for (int i = 0; i < nVocab; i++)
    if ((rc = gxU32(p, (uint32_t)aType[i]))) goto done;
  *pnKv += 2;
  /* merges */
  {
    sqlite3_int64 nMerge = 0;
    rc = sqlite3_prepare_v2(p->db, "SELECT count(*) FROM main.gpt_merges WHERE model = ?1", -1,
                            &pStmt, 0);
    if (rc != SQLITE_OK) { rc = gxSqlError(p, rc); goto done; }
    sqlite3_bind_text(pStmt, 1, p->zModel, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(pStmt)) != SQLITE_ROW) { rc = gxSqlError(p, rc); goto done; }
    nMerge = sqlite3_column_int64(pStmt, 0);
    sqlite3_finalize(pStmt);
    pStmt = 0;
    if (gxKey(p, "tokenizer.ggml.merges", GGUF_ARRAY) || gxU32(p, GGUF_STRING) ||
        gxU64(p, (uint64_t)nMerge)) goto done;
    rc = sqlite3_prepare_v2(p->db, "SELECT left || ' ' || right FROM main.gpt_merges WHERE model = ?1 "
                            "ORDER BY rank", -1, &pStmt, 0);
    if (rc != SQLITE_OK) { rc = gxSqlError(p, rc); goto done; }
    sqlite3_bind_text(pStmt, 1, p->zModel, -1, SQLITE_STATIC);
    for (sqlite3_int64 i = 0; i < nMerge; i++) {
      if ((rc = sqlite3_step(pStmt)) != SQLITE_ROW) {
        rc = rc == SQLITE_DONE ? gxError(p, "gpt_merges changed during the export")
                               : gxSqlError(p, rc);
        goto done;
      }
      if ((rc = gxStr(p, (const char *)sqlite3_column_text(pStmt, 0),
                      (size_t)gptext_column_bytes(pStmt, 0)))) goto done;
    }
    sqlite3_finalize(pStmt);
    pStmt = 0;
    *pnKv += 1;
  }
  if (m->bos >= 0 || (!p->zTokConfig && m->eot >= 0)) {
    if ((rc = gxKvU32(p, "tokenizer.ggml.bos_token_id", (uint32_t)(m->bos >= 0 ? m->bos : m->eot))))
      goto done;
    *pnKv += 1;
  }
  if (eos >= 0) {
    if ((rc = gxKvU32(p, "tokenizer.ggml.eos_token_id", (uint32_t)eos))) goto done;
    *pnKv += 1;
  }
  if ((rc = gxKvBool(p, "tokenizer.ggml.add_bos_token", m->bAddBos)) ||
      (rc = gxKvBool(p, "tokenizer.ggml.add_eos_token", 0)))
    goto done;
  *pnKv += 2;
  if (m->zChatTemplate) {
    if ((rc = gxKvStr(p, "tokenizer.chat_template", m->zChatTemplate))) goto done;
    *pnKv += 1;
  }
  if (p->zTokConfig) {
    sqlite3_str *s = sqlite3_str_new(p->db);
    sqlite3_str_appendf(s, "{\"pre_tokenizer\":%s,\"normalizer\":%s,\"ignore_merges\":%s,"
                        "\"stop_ids\":[", zStages, zNorm ? "\"NFC\"" : "null",
                        bIgnore ? "true" : "false");
    for (int i = 0; i < m->nStopId; i++) sqlite3_str_appendf(s, "%s%d", i ? "," : "", m->aStopId[i]);
    sqlite3_str_appendf(s, "]}");
    zPrivate = sqlite3_str_finish(s);
    if (!zPrivate) { rc = gxError(p, "out of memory"); goto done; }
    if ((rc = gxKvStr(p, "sqlite_gpt.tokenizer", zPrivate))) goto done;
    *pnKv += 1;
  }
  rc = SQLITE_OK;
done:
  sqlite3_finalize(pStmt);
  for (int i = 0; azAdded && i < nVocab; i++) sqlite3_free(azAdded[i]);
  sqlite3_free(azAdded);
  sqlite3_free(aType);
  sqlite3_free(zStages);
  sqlite3_free(zNorm);
  sqlite3_free(zPrivate);
  return rc ? SQLITE_ERROR : SQLITE_OK;
}

/*
** The header: the metadata, counted as it is written (the count goes in
** at the start once known), then the tensor infos.
*/
static int gxHeader(GgExport *p, GxTensor *aT, int nT) {
  const GPTConfig *c = &p->m->cfg;
  char zKey[128];
  const char *zArch = gpt_arch_name(c->arch);
  int nKv = 0, rc, nType[64] = {0};
  long posCount;
  uint32_t fileType = 0;
  if (gxWrite(p, "GGUF", 4) || gxU32(p, 3) || gxU64(p, (uint64_t)nT)) return SQLITE_ERROR;
  posCount = ftell(p->f);
  if (gxU64(p, 0)) return SQLITE_ERROR;
  for (int i = 0; i < nT; i++) if (aT[i].n_dims == 2 && aT[i].type < 64) nType[aT[i].type]++;
  {
    int best = GGML_F32;
    for (int k = 0; k < 64; k++) if (nType[k] > nType[best]) best = k;
    fileType = best == GGML_F16 ? 1 : best == GGML_Q4_0 ? 2 : best == GGML_Q8_0 ? 7
             : best == GGML_Q4_K ? 15 : best == GGML_Q6_K ? 18 : best == GGML_BF16 ? 32 : 0;
  }
#define KEY(s) (snprintf(zKey, sizeof(zKey), "%s%s", zArch, s), zKey)
  if (gxKvStr(p, "general.architecture", zArch) || gxKvStr(p, "general.name", p->zModel) ||
      gxKvU32(p, "general.file_type", fileType) ||
      gxKvU32(p, "general.quantization_version", 2) ||
      gxKvU32(p, KEY(".context_length"), (uint32_t)c->n_ctx) ||
      gxKvU32(p, KEY(".embedding_length"), (uint32_t)c->n_embd) ||
      gxKvU32(p, KEY(".block_count"), (uint32_t)c->n_layer) ||
      gxKvU32(p, KEY(".feed_forward_length"), (uint32_t)gpt_config_ff(c)) ||
      gxKvU32(p, KEY(".attention.head_count"), (uint32_t)c->n_head) ||
      gxKvU32(p, KEY(".attention.head_count_kv"), (uint32_t)gpt_config_kv_heads(c)))
    return SQLITE_ERROR;
  nKv += 10;
  if (c->arch == GPT_ARCH_GPT2) {
    if (gxKvF32(p, KEY(".attention.layer_norm_epsilon"), c->ln_eps)) return SQLITE_ERROR;
    nKv += 1;
  } else {
    if (gxKvF32(p, KEY(".attention.layer_norm_rms_epsilon"), c->ln_eps) ||
        gxKvF32(p, KEY(".rope.freq_base"), c->rope_theta > 0 ? c->rope_theta : 10000.0) ||
        gxKvU32(p, KEY(".rope.dimension_count"), (uint32_t)gpt_config_head_dim(c)) ||
        gxKvU32(p, KEY(".attention.key_length"), (uint32_t)gpt_config_head_dim(c)) ||
        gxKvU32(p, KEY(".attention.value_length"), (uint32_t)gpt_config_head_dim(c)) ||
        gxKvU32(p, KEY(".vocab_size"), (uint32_t)c->vocab_size))
      return SQLITE_ERROR;
    nKv += 6;
  }
#undef KEY
  if (c->rope_scaling == GPT_ROPE_LLAMA3) {
    /* rope_freqs holds only the divisors, from which the parameters cannot
    ** always be solved back: the parameters themselves, for a re-import */
    char *z = sqlite3_mprintf("{\"factor\":%!.17g,\"low_freq_factor\":%!.17g,"
                              "\"high_freq_factor\":%!.17g,"
                              "\"original_max_position_embeddings\":%d}",
                              c->rope_factor, c->rope_low_freq_factor,
                              c->rope_high_freq_factor, c->rope_original_ctx);
    if (!z) return gxError(p, "out of memory");
    rc = gxKvStr(p, "sqlite_gpt.rope_scaling", z);
    sqlite3_free(z);
    if (rc) return rc;
    nKv++;
  }
  {
    sqlite3_str *s = sqlite3_str_new(p->db);
    char *z;
    int nWide = 0;
    sqlite3_str_appendchar(s, 1, '{');
    for (int i = 0; i < nT; i++) {
      if (!aT[i].eWiden) continue;
      sqlite3_str_appendf(s, "%s\"%s\":\"%s\"", nWide++ ? "," : "", aT[i].zName,
                          ggDtypeName(aT[i].eWiden));
    }
    sqlite3_str_appendchar(s, 1, '}');
    z = sqlite3_str_finish(s);
    if (!z) return gxError(p, "out of memory");
    rc = nWide ? gxKvStr(p, "sqlite_gpt.tensor_dtypes", z) : SQLITE_OK;
    sqlite3_free(z);
    if (rc) return rc;
    if (nWide) nKv++;
  }
  if ((rc = gxTokenizer(p, &nKv))) return rc;
  /* tensor infos, offsets aligned to 32 */
  {
    int64_t off = 0;
    for (int i = 0; i < nT; i++) {
      aT[i].offset = off;
      off += (aT[i].nbytes + 31) / 32 * 32;
      if (gxStr(p, aT[i].zName, strlen(aT[i].zName)) || gxU32(p, (uint32_t)aT[i].n_dims) ||
          gxU64(p, (uint64_t)aT[i].ne[0]) || (aT[i].n_dims == 2 && gxU64(p, (uint64_t)aT[i].ne[1])) ||
          gxU32(p, (uint32_t)aT[i].type) || gxU64(p, (uint64_t)aT[i].offset))
        return SQLITE_ERROR;
    }
  }
  {
    long pos = ftell(p->f);
    static const unsigned char aZero[32] = {0};
    if (pos < 0 || fseek(p->f, posCount, SEEK_SET) || gxU64(p, (uint64_t)nKv) ||
        fseek(p->f, pos, SEEK_SET))
      return gxError(p, "cannot seek in %s: %s", p->zPath, strerror(errno));
    if (gxWrite(p, aZero, (size_t)((32 - pos % 32) % 32))) return SQLITE_ERROR;
  }
  return SQLITE_OK;
}

/* The files of the connection's databases (none for in-memory and temporary
** ones) in *paz, *pn of them (free with gxFreeFiles); an SQLite error code when
** they cannot be read. sqlite3_db_name (3.39+), which no authorizer can
** deny: one that denied PRAGMA database_list had turned the checks below off;
** an older SQLite reads the PRAGMA, and a failure refuses the export. */
static int gxDatabaseFiles(sqlite3 *db, char ***paz, int *pn) {
  sqlite3_stmt *pStmt = 0;
  char **az = 0;
  int n = 0, rc = SQLITE_OK;
  *paz = 0;
  *pn = 0;
  if (sqlite3_libversion_number() < 3039000 &&
      (rc = sqlite3_prepare_v2(db, "PRAGMA database_list", -1, &pStmt, 0)) != SQLITE_OK)
    return rc;
  for (int iDb = 0; rc == SQLITE_OK; iDb++) {
    const char *zFile;
    if (pStmt) {
      int rcStep = sqlite3_step(pStmt);
      if (rcStep != SQLITE_ROW) {
        rc = rcStep == SQLITE_DONE ? SQLITE_OK : rcStep;
        break;
      }
      zFile = (const char *)sqlite3_column_text(pStmt, 2);
    } else {
      const char *zName = sqlite3_db_name(db, iDb);
      if (!zName) break;
      zFile = sqlite3_db_filename(db, zName);
    }
    if (!zFile || !zFile[0]) continue;
    char **azNew = sqlite3_realloc64(az, sizeof(char *) * (size_t)(n + 1));
    if (!azNew || !(azNew[n] = sqlite3_mprintf("%s", zFile))) {
      if (azNew) az = azNew;
      rc = SQLITE_NOMEM;
      break;
    }
    az = azNew;
    n++;
  }
  sqlite3_finalize(pStmt);
  *paz = az;
  *pn = n;
  return rc;
}

/* Frees gxDatabaseFiles' list. */
static void gxFreeFiles(char **az, int n) {
  for (int i = 0; i < n; i++) sqlite3_free(az[i]);
  sqlite3_free(az);
}

/* The files beside a database that hold its data: its journal, WAL and
** shared memory (and, "", the database itself). */
static const char *const azDbSuffix[] = {"", "-journal", "-wal", "-shm"};
#define N_DB_SUFFIX ((int)(sizeof(azDbSuffix) / sizeof(azDbSuffix[0])))

/* Whether the file st is one of the database files azFile (nFile, the
** connection's), or the journal or write-ahead log beside one: replacing it
** would destroy the database the export reads. */
static int gxIsDatabaseFile(char **azFile, int nFile, const struct stat *st) {
  int bSame = 0;
  for (int iDb = 0; !bSame && iDb < nFile; iDb++) {
    const char *zFile = azFile[iDb];
    for (int i = 0; !bSame && i < N_DB_SUFFIX; i++) {
      struct stat sd;
      char *z = sqlite3_mprintf("%s%s", zFile, azDbSuffix[i]);
      if (z && stat(z, &sd) == 0 && sd.st_dev == st->st_dev && sd.st_ino == st->st_ino) bSame = 1;
      sqlite3_free(z);
    }
  }
  return bSame;
}

/* The real path of zPath's folder and zPath's last name, in one string
** "folder/name" (sqlite3_malloc'd), or NULL when the folder cannot be
** resolved. Paths that name one file compare equal this way whether or not
** the file exists yet. */
static char *gxResolvedName(const char *zPath) {
  const char *zSlash = strrchr(zPath, '/');
  char *zDir = zSlash ? sqlite3_mprintf("%.*s", (int)(zSlash - zPath) + 1, zPath)
                      : sqlite3_mprintf(".");
  char *zReal = zDir ? realpath(zDir, 0) : 0;
  char *zOut = zReal ? sqlite3_mprintf("%s/%s", zReal, zSlash ? zSlash + 1 : zPath) : 0;
  free(zReal);
  sqlite3_free(zDir);
  return zOut;
}

/* Whether zPath names one of the database files azFile (nFile) or the
** journal, WAL or shared-memory file beside one, existing or not: a GGUF
** written as "main.db-journal" was taken by SQLite for a hot journal. */
static int gxIsDatabaseName(char **azFile, int nFile, const char *zPath) {
  int bSame = 0;
  char *zTarget = gxResolvedName(zPath);
  for (int iDb = 0; zTarget && !bSame && iDb < nFile; iDb++) {
    char *zDb = gxResolvedName(azFile[iDb]);
    size_t n = zDb ? strlen(zDb) : 0;
    for (int i = 0; zDb && !bSame && i < N_DB_SUFFIX; i++)
      bSame = strncmp(zTarget, zDb, n) == 0 && strcmp(zTarget + n, azDbSuffix[i]) == 0;
    sqlite3_free(zDb);
  }
  sqlite3_free(zTarget);
  return bSame;
}

/* Checks that zPath may be written: absent, or (with replace) a regular file
** (not a symbolic link, device, FIFO or directory); in either case none of
** the connection's database files, nor their journals' names. */
static int gxCheckTarget(GgExport *p, const char *zPath, int bReplace) {
  struct stat st;
  char **azFile = 0;
  int nFile = 0, rc = SQLITE_ERROR;
  int rcList = gxDatabaseFiles(p->db, &azFile, &nFile);
  if (rcList != SQLITE_OK)
    /* (before SQLite 3.39, an authorizer that denies PRAGMA database_list) */
    gxError(p, "cannot write %s: the connection's database files, which it must not be, could "
            "not be listed (%s)", zPath, sqlite3_errstr(rcList));
  else if (gxIsDatabaseName(azFile, nFile, zPath))
    gxError(p, "cannot write %s: it is the name of a file of a database of this "
            "connection (the database, its journal, WAL or shared memory)", zPath);
  else if (lstat(zPath, &st) != 0) {
    if (errno == ENOENT) rc = SQLITE_OK;
    else gxError(p, "cannot %s %s: %s", bReplace ? "replace" : "create", zPath, strerror(errno));
  } else if (!S_ISREG(st.st_mode))
    gxError(p, bReplace ? "cannot replace %s: not a regular file (a link, device, FIFO "
                          "or directory)"
                        : "%s exists and is not a regular file (a link, device, FIFO or "
                          "directory)", zPath);
  else if (gxIsDatabaseFile(azFile, nFile, &st))
    gxError(p, "cannot write %s: it is a file of a database of this connection", zPath);
  else if (!bReplace)
    gxError(p, "%s exists; pass {\"replace\": true} to overwrite it", zPath);
  else
    rc = SQLITE_OK;
  gxFreeFiles(azFile, nFile);
  return rc;
}

/* Opens the file the GGUF is written to: a new file beside zPath (*pzTmp,
** its name), put in place once complete (gxCommit), so zPath never holds a
** partial file, even when the process is killed midway (the hidden file
** beside it is what is left then). Without replace zPath must not exist;
** with replace it is never truncated, so a failed export leaves it as it
** was, and nothing is ever opened or deleted at zPath. */
static int gxOpen(GgExport *p, const char *zPath, int bReplace, char **pzTmp) {
  int fd = -1;
  *pzTmp = 0;
  /* without replace, what replace would refuse is named first, not after
  ** a second try */
  if (gxCheckTarget(p, zPath, bReplace)) return SQLITE_ERROR;
  /* in the target's folder (a rename stays on its file system), under a
  ** short name of its own: the target's name plus a suffix could pass the
  ** file system's longest name */
  const char *zSlash = strrchr(zPath, '/');
  int nDir = zSlash ? (int)(zSlash - zPath) + 1 : 0;
  for (int i = 0; fd < 0 && i < 8; i++) {
    unsigned int r;
    sqlite3_randomness(sizeof(r), &r);
    sqlite3_free(*pzTmp);
    *pzTmp = sqlite3_mprintf("%.*s.gpt_export.%08x.tmp", nDir, zPath, r);
    if (!*pzTmp) return gxError(p, "out of memory");
    fd = open(*pzTmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    int e = errno;
    sqlite3_free(*pzTmp);
    *pzTmp = 0;
    return gxError(p, bReplace ? "cannot create a file beside %s: %s" : "cannot create %s: %s",
                   zPath, strerror(e));
  }
  p->f = fdopen(fd, "wb");
  if (!p->f) {
    int e = errno;
    close(fd);
    unlink(*pzTmp); /* the file this call created */
    return gxError(p, "cannot open %s: %s", *pzTmp, strerror(e));
  }
  return SQLITE_OK;
}

/* Puts the complete file zTmp (closed) at zPath: with replace, renamed over
** it, checked again just before; without, linked there only if nothing is
** there yet (a file made meanwhile is not overwritten). Then the folder's
** entry is made durable. */
static int gxCommit(GgExport *p, const char *zTmp, const char *zPath, int bReplace) {
  if (!bReplace) {
    if (link(zTmp, zPath) != 0) {
      if (errno == EEXIST)
        return gxError(p, "%s exists; pass {\"replace\": true} to overwrite it", zPath);
      return gxError(p, "cannot create %s: %s", zPath, strerror(errno));
    }
    unlink(zTmp);
  } else {
    if (gxCheckTarget(p, zPath, 1)) return SQLITE_ERROR;
    if (rename(zTmp, zPath) != 0)
      return gxError(p, "cannot rename %s to %s: %s", zTmp, zPath, strerror(errno));
  }
  const char *zSlash = strrchr(zPath, '/');
  char *zDir = zSlash ? sqlite3_mprintf("%.*s", (int)(zSlash - zPath) + (zSlash == zPath), zPath)
                      : sqlite3_mprintf(".");
  int fd = zDir ? open(zDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  if (fd >= 0) {
    fsync(fd); /* best effort: the file itself is already synced */
    close(fd);
  }
  sqlite3_free(zDir);
  return SQLITE_OK;
}

/* Tries of gpt_export to read a model whose rows another connection keeps
** changing. */
#define GX_SNAPSHOT_TRIES 4

/*
** Implementation of gpt_export(MODEL, PATH [, OPTIONS]): writes the model
** as GGUF v3 to PATH, which must not exist unless {"replace": true} (then it
** must be a regular file, replaced only once the new one is complete).
** Returns a one-line summary. DIRECTONLY: it writes a file.
*/
static void gptExportFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  GgExport s;
  GptOptions opt;
  GxTensor *aT = 0;
  int nT = 0, bOpt = 0, bCreated = 0, bDone = 0;
  unsigned char *aBuf = 0;
  char *zErr = 0, *zTmp = 0;
  const char *zModel = (const char *)sqlite3_value_text(argv[0]);
  const char *zPath = (const char *)sqlite3_value_text(argv[1]);
  sqlite3_int64 nBytes = 0;
  sqlite3_stmt *pSnapshot = 0; /* held until the data is read */

  memset(&s, 0, sizeof(s));
  s.db = sqlite3_context_db_handle(ctx);
  s.zModel = zModel ? zModel : "";
  s.zPath = zPath ? zPath : "";
  if (!zModel || !zModel[0]) {
    s.zErr = sqlite3_mprintf("gpt_export: the model name must be a non-empty string");
    goto done;
  }
  if (!gptext_name_ok(argv[0])) { /* "m\0x" had read model 'm' */
    s.zErr = sqlite3_mprintf("gpt_export: the model name must be " GPTEXT_NAME_RULE);
    goto done;
  }
  if (gptext_query_writes(ctx, "gpt_export", zModel, &s.zErr) != SQLITE_OK ||
      gptext_schema_check(ctx, "gpt_export", zModel, &s.zErr) != SQLITE_OK)
    goto done;
  /* its errors name the model, as every other of this function's */
  if (gptext_options_parse_named(s.db, "gpt_export", zModel, argc > 2 ? argv[2] : 0,
                                 GPTOPT_REPLACE, &opt, &zErr) != SQLITE_OK) {
    s.zErr = zErr ? zErr : sqlite3_mprintf("gpt_export: out of memory");
    zErr = 0;
    goto done;
  }
  bOpt = 1;
  if (!zPath || !zPath[0]) {
    gxError(&s, "the path must be a file name");
    goto done;
  }
  if (gptext_has_nul(argv[1])) {
    gxError(&s, "the path has a NUL character, which would cut it short");
    goto done;
  }
  /* one read snapshot across the many statements below: another
  ** connection's commit meanwhile does not reach the file; and the snapshot
  ** is of the rows the header was made from. A commit between the load and
  ** the snapshot (another connection re-importing the model) takes another
  ** try, as a load does */
  for (int nTry = 1;; nTry++) {
    int rcAcquire = gptext_model_acquire(sqlite3_user_data(ctx), s.db, "gpt_export", zModel, 0,
                                         &s.m, &zErr);
    if (rcAcquire != SQLITE_OK) {
      s.rcErr = rcAcquire;
      s.zErr = zErr;
      zErr = 0;
      goto done;
    }
    if (gptext_snapshot_begin(s.db, s.m->zName, &pSnapshot) != SQLITE_OK) {
      gxError(&s, "cannot read its gpt_models row: %s", sqlite3_errmsg(s.db));
      goto done;
    }
    if (pSnapshot && sqlite3_column_int64(pSnapshot, 0) == s.m->stamp) break;
    if (nTry == GX_SNAPSHOT_TRIES) {
      gxError(&s, "it changed while it was exported, %d times; export it again",
              GX_SNAPSHOT_TRIES);
      goto done;
    }
    sqlite3_finalize(pSnapshot);
    pSnapshot = 0;
    gptext_model_release(s.m);
    s.m = 0;
  }
  {
    sqlite3_stmt *pStmt = 0;
    int bHead = 0;
    int rc = gptext_lm_head_of(s.db, s.m, "gpt_export", &bHead, &zErr);
    if (zErr) {
      s.zErr = zErr;
      zErr = 0;
      goto done;
    }
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(s.db, "SELECT config FROM main.gpt_tokenizer "
                                                 "WHERE model = ?1", -1, &pStmt, 0);
    s.bTied = !bHead;
    if (rc == SQLITE_OK) {
      sqlite3_bind_text(pStmt, 1, zModel, -1, SQLITE_STATIC);
      rc = sqlite3_step(pStmt);
      if (rc == SQLITE_ROW && sqlite3_column_type(pStmt, 0) == SQLITE_TEXT) {
        s.zTokConfig = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(pStmt, 0));
        if (!s.zTokConfig) rc = SQLITE_NOMEM;
      }
      if (rc == SQLITE_DONE) rc = SQLITE_ROW; /* no tokenizer row: GPT-2's files */
    }
    if (rc != SQLITE_ROW) gxSqlError(&s, rc);
    sqlite3_finalize(pStmt);
    if (s.zErr) goto done;
  }
  if (gxTensors(&s, &aT, &nT)) goto done;
  if (gxOpen(&s, zPath, opt.bReplace, &zTmp)) goto done;
  bCreated = 1;
  if (gxHeader(&s, aT, nT)) goto done;
  aBuf = sqlite3_malloc64(GG_CHUNK * 2);
  if (!aBuf) {
    gxError(&s, "out of memory");
    goto done;
  }
  for (int i = 0; i < nT; i++) {
    static const unsigned char aZero[32] = {0};
    if (gptext_interrupted(s.db)) {
      s.rcErr = SQLITE_INTERRUPT;
      gxError(&s, "interrupted");
      goto done;
    }
    if (gxTensorData(&s, &aT[i], aBuf, GG_CHUNK * 2)) goto done;
    if (gxWrite(&s, aZero, (size_t)((32 - aT[i].nbytes % 32) % 32))) goto done;
    nBytes += aT[i].nbytes;
  }
  if (fflush(s.f) != 0 || fsync(fileno(s.f)) != 0) {
    gxError(&s, "cannot write %s: %s", zPath, strerror(errno));
    goto done;
  }
  bDone = !s.zErr;
done:
  /* judged by bDone, never by s.zErr alone: out of memory, an error's
  ** message may not have been allocated, and a partial file would have
  ** replaced the target */
  sqlite3_finalize(pSnapshot);
  if (s.f && fclose(s.f) != 0 && bDone) {
    gxError(&s, "cannot write %s: %s", zPath, strerror(errno));
    bDone = 0;
  }
  if (bDone && gxCommit(&s, zTmp, zPath, opt.bReplace) != SQLITE_OK) bDone = 0;
  /* only the file this call created is removed */
  if (!bDone && bCreated) unlink(zTmp);
  if (!bDone) {
    if (s.zErr) gptext_result_error(ctx, s.zErr);
    else sqlite3_result_error_nomem(ctx);
    if (s.zErr && s.rcErr && s.rcErr != SQLITE_ERROR) sqlite3_result_error_code(ctx, s.rcErr);
  } else {
    char *z = sqlite3_mprintf("exported '%s': %d tensors, %lld bytes of tensor data, %d tokens "
                              "to %s (GGUF v3, %s)", zModel, nT, (long long)nBytes,
                              s.m->cfg.vocab_size, zPath, gpt_arch_name(s.m->cfg.arch));
    if (z) gptext_result_text(ctx, z, (int)strlen(z), sqlite3_free);
    else sqlite3_result_error_nomem(ctx);
  }
  for (int i = 0; i < nT; i++) sqlite3_free(aT[i].aFreqs);
  sqlite3_free(aT);
  sqlite3_free(aBuf);
  sqlite3_free(s.zTokConfig);
  sqlite3_free(s.zErr);
  sqlite3_free(zErr);
  sqlite3_free(zTmp);
  if (s.m) gptext_model_release(s.m);
  if (bOpt) gptext_options_clear(&opt);
}

/*
** Registers gpt_export (2 or 3 arguments): it writes a file, so it is
** DIRECTONLY, and never deterministic.
*/
int gptext_register_gguf(sqlite3 *db, GptConn *pConn) {
  const int eFlags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  int rc = sqlite3_create_function(db, "gpt_export", 2, eFlags, pConn, gptExportFunc, 0, 0);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function(db, "gpt_export", 3, eFlags, pConn, gptExportFunc, 0, 0);
  return rc;
}
