/*
** Shared helpers of the fuzz targets and in-process C tests: see
** fuzz_common.h.
*/
#include "fuzz_common.h"

#include <dirent.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "gpt.h"

/* ------------------------------------------------------------- buffers */

typedef struct Buf {
  char *z;
  size_t n, nAlloc;
  int bOom;
} Buf;

static void buf_append(Buf *b, const void *p, size_t n) {
  if (b->bOom) return;
  if (b->n + n + 1 > b->nAlloc) {
    size_t nNew = b->nAlloc ? b->nAlloc * 2 : 4096;
    while (nNew < b->n + n + 1) nNew *= 2;
    char *z = realloc(b->z, nNew);
    if (!z) {
      b->bOom = 1;
      return;
    }
    b->z = z;
    b->nAlloc = nNew;
  }
  memcpy(b->z + b->n, p, n);
  b->n += n;
  b->z[b->n] = 0;
}

static void buf_printf(Buf *b, const char *zFmt, ...) {
  char z[512];
  va_list ap;
  va_start(ap, zFmt);
  int n = vsnprintf(z, sizeof(z), zFmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(z)) {
    b->bOom = 1;
    return;
  }
  buf_append(b, z, (size_t)n);
}

/* ---------------------------------------------------------- the model */

/* GPT-2's bytes_to_unicode(): the code point that spells byte b. */
static unsigned byte_cp(int b) {
  static unsigned aCp[256];
  static int bInit = 0;
  if (!bInit) {
    int n = 0;
    for (int i = 0; i < 256; i++) {
      int bPrint = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE);
      aCp[i] = bPrint ? (unsigned)i : 256u + (unsigned)n++;
    }
    bInit = 1;
  }
  return aCp[b];
}

/* Appends a byte-level token string, JSON-escaped, for raw bytes z[0..n). */
static void append_token_json(Buf *b, const char *z, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned cp = byte_cp((unsigned char)z[i]);
    char u[2];
    if (cp == '"' || cp == '\\') {
      u[0] = '\\';
      u[1] = (char)cp;
      buf_append(b, u, 2);
    } else if (cp < 0x80) {
      u[0] = (char)cp;
      buf_append(b, u, 1);
    } else {
      u[0] = (char)(0xC0 | (cp >> 6));
      u[1] = (char)(0x80 | (cp & 0x3F));
      buf_append(b, u, 2);
    }
  }
}

/* splitmix64 seeded per tensor: deterministic values in [-1, 1). */
static double rnd(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) / 4503599627370496.0 - 1.0;
}

int fz_model_make(FzModel *p, int n_layer, int n_head, int n_embd, int n_ctx, int dtype,
                  int flags, unsigned seed0) {
  const char *azExtra[] = {"ab", " a", "abab", (flags & FZ_NO_EOT) ? "ba" : "<|endoftext|>"};
  const int bLmHead = (flags & FZ_LMHEAD) != 0, bPrefix = (flags & FZ_PREFIX) != 0;
  GPTConfig cfg = {.n_layer = n_layer, .n_head = n_head, .n_embd = n_embd, .n_ctx = n_ctx,
                   .vocab_size = FZ_VOCAB, .ln_eps = 1e-5};
  Buf cfgJson = {0}, vocab = {0}, merges = {0}, hdr = {0}, data = {0};
  int nTensor = gpt_n_tensors(&cfg, bLmHead);
  char zErr[200];
  memset(p, 0, sizeof(*p));
  if (gpt_config_check(&cfg, zErr, sizeof(zErr))) return -1;

  buf_printf(&cfgJson, "{\"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"n_positions\": %d, "
             "\"vocab_size\": %d, \"layer_norm_epsilon\": 1e-05, \"model_type\": \"gpt2\", "
             "\"tie_word_embeddings\": %s}\n",
             n_layer, n_head, n_embd, n_ctx, FZ_VOCAB, bLmHead ? "false" : "true");

  buf_append(&vocab, "{", 1);
  for (int id = 0; id < FZ_VOCAB; id++) {
    char c = (char)id;
    buf_append(&vocab, id ? ", \"" : "\"", id ? 3 : 1);
    if (id < 256) append_token_json(&vocab, &c, 1);
    else append_token_json(&vocab, azExtra[id - 256], strlen(azExtra[id - 256]));
    buf_printf(&vocab, "\": %d", id);
  }
  buf_append(&vocab, "}\n", 2);

  buf_printf(&merges, "#version: 0.2\na b\n");
  append_token_json(&merges, " ", 1);
  buf_printf(&merges, " a\nab ab\n%s", (flags & FZ_NO_EOT) ? "b a\n" : "");

  /* header entries and data, tensors one after the other */
  const char *zDtype = dtype == GPT_F16 ? "F16" : dtype == GPT_BF16 ? "BF16" : "F32";
  int esz = gpt_dtype_size(dtype);
  buf_printf(&hdr, "{\"__metadata__\": {\"format\": \"pt\"}");
  for (int i = 0; i < nTensor; i++) {
    GPTTensorInfo info;
    gpt_tensor_info(&cfg, bLmHead, i, &info);
    uint64_t seed = 0x5eed + seed0;
    for (const char *z = info.name; *z; z++) seed = (seed ^ (unsigned char)*z) * 0x100000001b3ull;
    int bLn = strstr(info.name, "ln_") && strstr(info.name, ".weight");
    size_t begin = data.n;
    for (int64_t e = 0; e < info.n_elem; e++) {
      double v = bLn ? 1.0 + 0.2 * rnd(&seed) : 0.5 * rnd(&seed);
      float f = (float)v;
      unsigned char a[4];
      if (dtype == GPT_F32) {
        memcpy(a, &f, 4);
      } else {
        uint16_t h = dtype == GPT_F16 ? gpt_f32_to_f16(f) : gpt_f32_to_bf16(f);
        a[0] = (unsigned char)(h & 0xff);
        a[1] = (unsigned char)(h >> 8);
      }
      buf_append(&data, a, (size_t)esz);
    }
    const char *zPre = bPrefix && strcmp(info.name, "lm_head.weight") ? "transformer." : "";
    if (info.ndim == 2) {
      buf_printf(&hdr, ", \"%s%s\": {\"dtype\": \"%s\", \"shape\": [%lld, %lld], "
                 "\"data_offsets\": [%zu, %zu]}", zPre, info.name, zDtype,
                 (long long)info.shape[0], (long long)info.shape[1], begin, data.n);
    } else {
      buf_printf(&hdr, ", \"%s%s\": {\"dtype\": \"%s\", \"shape\": [%lld], "
                 "\"data_offsets\": [%zu, %zu]}", zPre, info.name, zDtype,
                 (long long)info.shape[0], begin, data.n);
    }
  }
  buf_append(&hdr, "}", 1);

  if (cfgJson.bOom || vocab.bOom || merges.bOom || hdr.bOom || data.bOom) goto oom;
  p->nSt = 8 + hdr.n + data.n;
  p->aSt = malloc(p->nSt);
  if (!p->aSt) goto oom;
  for (int i = 0; i < 8; i++) p->aSt[i] = (unsigned char)((uint64_t)hdr.n >> (8 * i));
  memcpy(p->aSt + 8, hdr.z, hdr.n);
  memcpy(p->aSt + 8 + hdr.n, data.z, data.n);
  free(hdr.z);
  free(data.z);
  p->zConfig = cfgJson.z;
  p->nConfig = cfgJson.n;
  p->zVocab = vocab.z;
  p->nVocab = vocab.n;
  p->zMerges = merges.z;
  p->nMerges = merges.n;
  return 0;
oom:
  free(cfgJson.z);
  free(vocab.z);
  free(merges.z);
  free(hdr.z);
  free(data.z);
  memset(p, 0, sizeof(*p));
  return -1;
}

void fz_model_free(FzModel *p) {
  free(p->zConfig);
  free(p->zVocab);
  free(p->zMerges);
  free(p->aSt);
  memset(p, 0, sizeof(*p));
}

/* ------------------------------------------------------------- files */

static char gzTmp[512];

/* Removes zPath and, when it is a folder, everything in it. */
static void remove_tree(const char *zPath) {
  struct stat st;
  if (lstat(zPath, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(zPath);
    if (d) {
      struct dirent *e;
      char zChild[1024];
      while ((e = readdir(d)) != 0) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(zChild, sizeof(zChild), "%s/%s", zPath, e->d_name);
        remove_tree(zChild);
      }
      closedir(d);
    }
    rmdir(zPath);
  } else {
    unlink(zPath);
  }
}

static void tmp_cleanup(void) {
  if (!gzTmp[0]) return;
  remove_tree(gzTmp);
  gzTmp[0] = 0;
}

const char *fz_tmpdir(void) {
  if (gzTmp[0]) return gzTmp;
  struct stat st;
  const char *zBase = getenv("TMPDIR");
  if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
    zBase = "/dev/shm";
  if (!zBase || !zBase[0]) zBase = "/tmp";
  snprintf(gzTmp, sizeof(gzTmp), "%s/sqlite-gpt-fuzz-%ld", zBase, (long)getpid());
  if (mkdir(gzTmp, 0700) != 0 && (stat(gzTmp, &st) != 0 || !S_ISDIR(st.st_mode))) {
    fprintf(stderr, "fuzz: cannot create %s\n", gzTmp);
    exit(2);
  }
  atexit(tmp_cleanup);
  return gzTmp;
}

int fz_write(const char *zDir, const char *zName, const void *p, size_t n) {
  char zPath[1024];
  snprintf(zPath, sizeof(zPath), "%s/%s", zDir, zName);
  FILE *f = fopen(zPath, "wb");
  if (!f) return -1;
  size_t nOut = n ? fwrite(p, 1, n, f) : 0;
  int rc = fclose(f);
  return nOut == n && rc == 0 ? 0 : -1;
}

int fz_write_model(const char *zDir, const FzModel *p) {
  if (fz_write(zDir, "config.json", p->zConfig, p->nConfig)) return -1;
  if (fz_write(zDir, "vocab.json", p->zVocab, p->nVocab)) return -1;
  if (fz_write(zDir, "merges.txt", p->zMerges, p->nMerges)) return -1;
  if (fz_write(zDir, "model.safetensors", p->aSt, p->nSt)) return -1;
  return 0;
}

char *fz_read_file(const char *zPath, size_t *pn) {
  FILE *f = fopen(zPath, "rb");
  if (!f) return NULL;
  Buf b = {0};
  char a[65536];
  size_t n;
  while ((n = fread(a, 1, sizeof(a), f)) > 0) buf_append(&b, a, n);
  int bErr = ferror(f);
  fclose(f);
  if (bErr || b.bOom) {
    free(b.z);
    return NULL;
  }
  if (!b.z) buf_append(&b, "", 0);
  if (pn) *pn = b.n;
  return b.z;
}

/* ---------------------------------------------------------- databases */

sqlite3 *fz_open(const char *zFile) {
  sqlite3 *db = 0;
  char *zErr = 0;
  if (sqlite3_open(zFile ? zFile : ":memory:", &db) != SQLITE_OK ||
      sqlite3_gpt_init(db, &zErr, 0) != SQLITE_OK) {
    fprintf(stderr, "fuzz: cannot open a database with the extension: %s\n",
            zErr ? zErr : db ? sqlite3_errmsg(db) : "out of memory");
    exit(2);
  }
  return db;
}

void fz_single_thread(void) {
  /* the "threads" option's default is the CPUs this thread may run on */
  cpu_set_t set;
  int cpu = sched_getcpu();
  if (cpu >= 0) {
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
  }
  gpt_threads_set(1);
}

int fz_exec(sqlite3 *db, const char *zSql, const char *z1, int n1, const char *z2, int n2,
            char **pzErr) {
  sqlite3_stmt *p = 0;
  if (pzErr) *pzErr = 0;
  int rc = sqlite3_prepare_v2(db, zSql, -1, &p, 0);
  if (rc == SQLITE_OK) {
    int nParam = sqlite3_bind_parameter_count(p);
    if (nParam >= 1) {
      if (z1) sqlite3_bind_text(p, 1, z1, n1, SQLITE_TRANSIENT);
      else sqlite3_bind_null(p, 1);
    }
    if (nParam >= 2) {
      if (z2) sqlite3_bind_text(p, 2, z2, n2, SQLITE_TRANSIENT);
      else sqlite3_bind_null(p, 2);
    }
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
      /* read every column, as a caller would */
      for (int i = 0; i < sqlite3_column_count(p); i++) {
        (void)sqlite3_column_text(p, i);
        (void)sqlite3_column_bytes(p, i);
      }
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK && pzErr) *pzErr = sqlite3_mprintf("%s", sqlite3_errmsg(db));
  sqlite3_finalize(p);
  return rc;
}

void fz_check(int rc, const char *zErr, const char *zSql) {
  int ePrim = rc & 0xff;
  if (ePrim == SQLITE_OK) return;
  if (ePrim == SQLITE_NOMEM || ePrim == SQLITE_INTERRUPT) return;
  if ((ePrim == SQLITE_ERROR || ePrim == SQLITE_TOOBIG) && zErr && strncmp(zErr, "gpt_", 4) == 0)
    return;
  fprintf(stderr, "fuzz oracle: rc=%d (%s) message \"%s\" from: %s\n", rc, sqlite3_errstr(rc),
          zErr ? zErr : "(null)", zSql);
  __builtin_trap();
}

/* The small model's tokenizer as a Hugging Face tokenizer.json (built with
** SQLite's JSON functions from its vocab.json): NFC, a Split with Llama 3's
** pattern then ByteLevel, merges as pairs, and <|endoftext|> (259) as a special
** added token that TemplateProcessing puts first. malloc'd; NULL when out of memory. */
char *fz_tokenizer_json(const FzModel *p, size_t *pn) {
  sqlite3 *db = 0;
  sqlite3_stmt *pStmt = 0;
  char *z = NULL;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) goto done;
  if (sqlite3_prepare_v2(db,
      "SELECT json_object('version', '1.0',"
      " 'added_tokens', json_array(json_object('id', 259, 'content', '<|endoftext|>',"
      "   'single_word', json('false'), 'lstrip', json('false'), 'rstrip', json('false'),"
      "   'normalized', json('false'), 'special', json('true'))),"
      " 'normalizer', json_object('type', 'NFC'),"
      " 'pre_tokenizer', json_object('type', 'Sequence', 'pretokenizers', json_array("
      "   json_object('type', 'Split', 'pattern', json_object('Regex', ?2),"
      "     'behavior', 'Isolated', 'invert', json('false')),"
      "   json_object('type', 'ByteLevel', 'add_prefix_space', json('false'),"
      "     'use_regex', json('false')))),"
      " 'post_processor', json_object('type', 'TemplateProcessing', 'single', json_array("
      "   json_object('SpecialToken', json_object('id', '<|endoftext|>', 'type_id', 0)),"
      "   json_object('Sequence', json_object('id', 'A', 'type_id', 0))),"
      "   'special_tokens', json_object('<|endoftext|>', json_object('id', '<|endoftext|>',"
      "   'ids', json_array(259), 'tokens', json_array('<|endoftext|>')))),"
      " 'model', json_object('type', 'BPE', 'dropout', NULL, 'ignore_merges', json('false'),"
      "   'vocab', json(?1), 'merges', json_array(json_array('a', 'b'),"
      "   json_array('\xc4\xa0', 'a'), json_array('ab', 'ab'))))",
      -1, &pStmt, 0) != SQLITE_OK)
    goto done;
  sqlite3_bind_text(pStmt, 1, p->zVocab, (int)p->nVocab, SQLITE_STATIC);
  sqlite3_bind_text(pStmt, 2, "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                    -1, SQLITE_STATIC);
  if (sqlite3_step(pStmt) == SQLITE_ROW) {
    size_t n = (size_t)sqlite3_column_bytes(pStmt, 0);
    z = malloc(n + 1);
    if (z) {
      memcpy(z, sqlite3_column_text(pStmt, 0), n + 1);
      if (pn) *pn = n;
    }
  }
done:
  sqlite3_finalize(pStmt);
  sqlite3_close(db);
  return z;
}
