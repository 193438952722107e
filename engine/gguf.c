/*
** The GGUF reader (gguf.h): the header, metadata and tensor infos of a file,
** checked against the file's size before anything is allocated or read.
**
** How it works: one sequential pass with a cursor. Each read first checks
** that the bytes exist; each count is bounded by the smallest size its
** elements can take in the bytes that remain, so a file cannot make the
** reader allocate more than a small multiple of its own size. Arrays are
** walked (string lengths checked, nothing kept) to find where they end.
** After the pass the tensors are sorted by offset to check alignment,
** bounds and overlap.
*/
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include "gguf.h"

/* Reading state of gguf_open. */
typedef struct Cursor {
  GGUFFile *g;
  int64_t pos;
  uint64_t n_strings;   /* strings of the metadata arrays so far */
  char *err;
  size_t n_err;
} Cursor;

/* Writes a message into the cursor's buffer; returns -1. */
static int gguf_fail(Cursor *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, c->n_err, fmt, ap);
  va_end(ap);
  return -1;
}

int gguf_is_magic(const unsigned char *p) {
  return p[0] == 'G' && p[1] == 'G' && p[2] == 'U' && p[3] == 'F';
}

int gguf_read_at(const GGUFFile *g, int64_t off, void *buf, size_t n) {
  if (off < 0 || off > g->n_file || (int64_t)n > g->n_file - off) return -1;
  if (fseeko(g->f, (off_t)off, SEEK_SET) != 0) return -1;
  if (n > 0 && fread(buf, 1, n, g->f) != n) return -1;
  return 0;
}

/* Reads n bytes at the cursor and advances it; what kind of thing is read
** goes into the message when the file ends first. */
static int cur_read(Cursor *c, void *buf, size_t n, const char *what) {
  if ((int64_t)n > c->g->n_file - c->pos) {
    return gguf_fail(c, "the file ends inside %s at byte %lld (it has %lld bytes)", what,
                     (long long)c->pos, (long long)c->g->n_file);
  }
  if (gguf_read_at(c->g, c->pos, buf, n)) {
    return gguf_fail(c, "read error at byte %lld", (long long)c->pos);
  }
  c->pos += (int64_t)n;
  return 0;
}

static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int cur_u32(Cursor *c, uint32_t *p, const char *what) {
  unsigned char b[4];
  if (cur_read(c, b, 4, what)) return -1;
  *p = le32(b);
  return 0;
}
static int cur_u64(Cursor *c, uint64_t *p, const char *what) {
  unsigned char b[8];
  if (cur_read(c, b, 8, what)) return -1;
  *p = le64(b);
  return 0;
}

/* Bytes left after the cursor. */
static int64_t cur_left(const Cursor *c) { return c->g->n_file - c->pos; }

/* Reads a string's length and skips its bytes, which must be in the file
** and at most nMax long. Its offset and length go to *pOff and *pLen. */
static int cur_skip_string(Cursor *c, uint64_t nMax, int64_t *pOff, uint64_t *pLen,
                           const char *what) {
  uint64_t n;
  if (cur_u64(c, &n, what)) return -1;
  if (n > nMax) {
    return gguf_fail(c, "%s at byte %lld is %llu bytes long, expected at most %llu", what,
                     (long long)(c->pos - 8), (unsigned long long)n, (unsigned long long)nMax);
  }
  if (n > (uint64_t)cur_left(c)) {
    return gguf_fail(c, "%s at byte %lld is %llu bytes long, but the file has only %lld "
                     "more", what, (long long)(c->pos - 8), (unsigned long long)n,
                     (long long)cur_left(c));
  }
  *pOff = c->pos;
  *pLen = n;
  c->pos += (int64_t)n;
  return 0;
}

/* Reads a string (at most GGUF_MAX_KEY bytes, no NUL inside) into a new
** NUL-terminated buffer. */
static int cur_string(Cursor *c, char **pz, const char *what) {
  int64_t off;
  uint64_t n;
  char *z;
  if (cur_skip_string(c, GGUF_MAX_KEY, &off, &n, what)) return -1;
  z = malloc((size_t)n + 1);
  if (!z) return gguf_fail(c, "out of memory");
  if (gguf_read_at(c->g, off, z, (size_t)n)) {
    free(z);
    return gguf_fail(c, "read error at byte %lld", (long long)off);
  }
  z[n] = 0;
  if (memchr(z, 0, (size_t)n)) {
    free(z);
    return gguf_fail(c, "%s at byte %lld has a NUL byte", what, (long long)off);
  }
  *pz = z;
  return 0;
}

/* Bytes of a fixed-size value type; 0 for strings and arrays. */
static int type_size(int t) {
  switch (t) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    default: return 0;
  }
}

const char *gguf_type_name(int t) {
  static const char *az[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                             "bool", "string", "array", "uint64", "int64", "float64"};
  return t >= 0 && t < GGUF_TYPE_COUNT ? az[t] : "unknown";
}

/* Decodes a fixed-size scalar of type t from b into v. */
static void scalar_decode(int t, const unsigned char *b, GGUFValue *v) {
  uint64_t u = 0;
  int n = type_size(t);
  for (int i = n - 1; i >= 0; i--) u = u << 8 | b[i];
  v->u = u;
  switch (t) {
    case GGUF_INT8: v->i = (int8_t)u; break;
    case GGUF_INT16: v->i = (int16_t)u; break;
    case GGUF_INT32: v->i = (int32_t)(uint32_t)u; break;
    case GGUF_INT64: v->i = (int64_t)u; break;
    case GGUF_FLOAT32: {
      uint32_t w = (uint32_t)u;
      float f;
      memcpy(&f, &w, 4);
      v->f = f;
      break;
    }
    case GGUF_FLOAT64: memcpy(&v->f, &u, 8); break;
    default: v->i = (int64_t)u; break;
  }
}

/* Reads one value of type t (the key names it in messages). */
static int cur_value(Cursor *c, int t, GGUFValue *v, const char *key) {
  unsigned char b[8];
  v->type = t;
  if (t == GGUF_STRING) {
    return cur_skip_string(c, (uint64_t)c->g->n_file, &v->off, &v->n, "a string value");
  }
  if (t == GGUF_ARRAY) {
    uint32_t et;
    uint64_t n;
    if (cur_u32(c, &et, "an array type") || cur_u64(c, &n, "an array length")) return -1;
    if (et >= GGUF_TYPE_COUNT || et == GGUF_ARRAY) {
      return gguf_fail(c, "metadata \"%s\" is an array of %s (type %u), expected an array "
                       "of numbers, bools or strings", key, gguf_type_name((int)et), et);
    }
    v->elem_type = (int)et;
    v->n = n;
    v->off = c->pos;
    if (et == GGUF_STRING) {
      /* each string takes at least its 8-byte length */
      if (n > (uint64_t)cur_left(c) / 8) {
        return gguf_fail(c, "metadata \"%s\" promises %llu strings, more than the %lld bytes "
                         "left can hold", key, (unsigned long long)n, (long long)cur_left(c));
      }
      if (n > GGUF_MAX_STRINGS - c->n_strings) {
        return gguf_fail(c, "metadata \"%s\" promises %llu strings, which with the %llu before "
                         "it pass the %d a file's arrays may hold", key, (unsigned long long)n,
                         (unsigned long long)c->n_strings, GGUF_MAX_STRINGS);
      }
      c->n_strings += n;
      for (uint64_t i = 0; i < n; i++) {
        int64_t off;
        uint64_t len;
        if (cur_skip_string(c, (uint64_t)c->g->n_file, &off, &len, "an array string")) return -1;
      }
      return 0;
    }
    if (n > (uint64_t)cur_left(c) / (uint64_t)type_size((int)et)) {
      return gguf_fail(c, "metadata \"%s\" promises %llu values of %s, more than the %lld "
                       "bytes left can hold", key, (unsigned long long)n,
                       gguf_type_name((int)et), (long long)cur_left(c));
    }
    c->pos += (int64_t)(n * (uint64_t)type_size((int)et));
    return 0;
  }
  if (t < 0 || t >= GGUF_TYPE_COUNT) {
    return gguf_fail(c, "metadata \"%s\" has value type %d, expected 0 to %d", key, t,
                     GGUF_TYPE_COUNT - 1);
  }
  if (cur_read(c, b, (size_t)type_size(t), "a metadata value")) return -1;
  scalar_decode(t, b, v);
  return 0;
}

/* The supported ggml types: name, block size in values, block bytes. */
static const struct {
  int type;
  const char *name;
  int block, bytes;
} aGgmlType[] = {
  {GGML_F32, "F32", 1, 4},     {GGML_F16, "F16", 1, 2},    {GGML_BF16, "BF16", 1, 2},
  {GGML_Q8_0, "Q8_0", 32, 34}, {GGML_Q4_0, "Q4_0", 32, 18}, {GGML_Q4_K, "Q4_K", 256, 144},
  {GGML_Q6_K, "Q6_K", 256, 210},
};

/* Names of every ggml type, for messages about the unsupported ones. */
static const char *azGgmlName[] = {
  "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
  "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
  "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
  "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8",
  "IQ4_NL_8_8", "MXFP4",
};

const char *ggml_type_name(int type) {
  if (type < 0 || type >= (int)(sizeof(azGgmlName) / sizeof(azGgmlName[0]))) return 0;
  return azGgmlName[type];
}

int ggml_type_layout(int type, int *pBlock, int *pBytes) {
  for (size_t i = 0; i < sizeof(aGgmlType) / sizeof(aGgmlType[0]); i++) {
    if (aGgmlType[i].type == type) {
      *pBlock = aGgmlType[i].block;
      *pBytes = aGgmlType[i].bytes;
      return 1;
    }
  }
  *pBlock = *pBytes = 0;
  return 0;
}

/* Reads one tensor info and computes its size. */
static int cur_tensor(Cursor *c, GGUFTensor *t, int idx) {
  uint32_t nd, type;
  uint64_t off;
  int block, bytes;
  int64_t nElem = 1;
  char zWhat[48];
  snprintf(zWhat, sizeof(zWhat), "the name of tensor %d", idx);
  if (cur_string(c, &t->name, zWhat)) return -1;
  if (cur_u32(c, &nd, "a tensor's dimension count")) return -1;
  if (nd < 1 || nd > GGUF_MAX_DIMS) {
    return gguf_fail(c, "tensor \"%s\" has %u dimensions, expected 1 to %d", t->name, nd,
                     GGUF_MAX_DIMS);
  }
  t->n_dims = (int)nd;
  for (int i = 0; i < GGUF_MAX_DIMS; i++) t->ne[i] = 1;
  for (uint32_t i = 0; i < nd; i++) {
    uint64_t ne;
    if (cur_u64(c, &ne, "a tensor's dimensions")) return -1;
    /* the file must hold at least one byte per 32 values of any type */
    if (ne < 1 || ne > (uint64_t)c->g->n_file * 32) {
      return gguf_fail(c, "tensor \"%s\" dimension %u is %llu, expected 1 to %lld", t->name, i,
                       (unsigned long long)ne, (long long)c->g->n_file * 32);
    }
    if ((uint64_t)nElem > (uint64_t)INT64_MAX / ne) {
      return gguf_fail(c, "tensor \"%s\" has more than 2^63 values, more than the file can hold",
                       t->name);
    }
    t->ne[i] = (int64_t)ne;
    nElem *= (int64_t)ne;
  }
  if (nElem > c->g->n_file * 32) {
    return gguf_fail(c, "tensor \"%s\" has %lld values, more than the file can hold", t->name,
                     (long long)nElem);
  }
  if (cur_u32(c, &type, "a tensor's type") || cur_u64(c, &off, "a tensor's offset")) return -1;
  t->type = (int)type;
  if (!ggml_type_layout((int)type, &block, &bytes)) {
    const char *z = ggml_type_name((int)type);
    return gguf_fail(c, "tensor \"%s\" has ggml type %s%s%u%s, which is not supported; "
                     "supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K", t->name,
                     z ? z : "", z ? " (" : "", type, z ? ")" : "");
  }
  if (t->ne[0] % block != 0) {
    return gguf_fail(c, "tensor \"%s\" of type %s has %lld values a row, expected a multiple "
                     "of %d", t->name, ggml_type_name((int)type), (long long)t->ne[0], block);
  }
  if (off > (uint64_t)c->g->n_file) {
    return gguf_fail(c, "tensor \"%s\" has offset %llu, past the end of the file", t->name,
                     (unsigned long long)off);
  }
  t->offset = (int64_t)off;
  t->nbytes = nElem / block * bytes;
  return 0;
}

static int cmp_tensor_off(const void *a, const void *b) {
  const GGUFTensor *x = *(const GGUFTensor *const *)a, *y = *(const GGUFTensor *const *)b;
  if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
  return x < y ? -1 : x > y; /* file order, so messages do not depend on qsort */
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Fails unless the names of n records (the char * at byte off of each
** stride bytes from base: metadata keys, tensor names) are all different,
** naming the first one that appears twice. Sorted: comparing each with
** every earlier one took 65,536 keys of a 66 MB file a minute. */
static int names_unique(Cursor *c, const void *base, size_t n, size_t stride, size_t off,
                        const char *zWhat) {
  const char **az = malloc(sizeof(*az) * (n + 1));
  if (!az) return gguf_fail(c, "out of memory");
  for (size_t i = 0; i < n; i++)
    memcpy(&az[i], (const char *)base + i * stride + off, sizeof(*az));
  qsort(az, n, sizeof(*az), cmp_str);
  int rc = 0;
  for (size_t i = 1; rc == 0 && i < n; i++)
    if (strcmp(az[i - 1], az[i]) == 0) rc = gguf_fail(c, "%s \"%s\" appears twice", zWhat, az[i]);
  free(az);
  return rc;
}

int gguf_open(FILE *f, int64_t n_file, GGUFFile **pp, char *err, size_t n_err) {
  GGUFFile *g = calloc(1, sizeof(GGUFFile));
  GGUFTensor **ap = 0;
  Cursor c;
  unsigned char magic[4];
  uint32_t version;
  uint64_t nTensor, nKV;
  int rc = -1;

  *pp = 0;
  c.g = g;
  c.pos = 0;
  c.n_strings = 0;
  c.err = err;
  c.n_err = n_err;
  if (!g) return gguf_fail(&c, "out of memory");
  g->f = f;
  g->n_file = n_file;
  g->alignment = 32;
  if (cur_read(&c, magic, 4, "the magic")) goto done;
  if (!gguf_is_magic(magic)) {
    gguf_fail(&c, "not a GGUF file (no \"GGUF\" magic)");
    goto done;
  }
  if (cur_u32(&c, &version, "the version")) goto done;
  if (version != 2 && version != 3) {
    gguf_fail(&c, "GGUF version %u is not supported, expected 2 or 3%s", version,
              version > 0x00ffffff ? " (a big-endian file?)" : "");
    goto done;
  }
  g->version = version;
  if (cur_u64(&c, &nTensor, "the tensor count") || cur_u64(&c, &nKV, "the metadata count"))
    goto done;
  /* a pair takes at least 8 + 4 + 1 bytes, a tensor info 8 + 4 + 8 + 4 + 8 */
  if (nKV > GGUF_MAX_KV || nKV > (uint64_t)cur_left(&c) / 13) {
    gguf_fail(&c, "the header promises %llu metadata pairs, expected at most %d and what "
              "%lld bytes can hold", (unsigned long long)nKV, GGUF_MAX_KV,
              (long long)cur_left(&c));
    goto done;
  }
  if (nTensor > GGUF_MAX_TENSORS || nTensor > (uint64_t)cur_left(&c) / 32) {
    gguf_fail(&c, "the header promises %llu tensors, expected at most %d and what %lld "
              "bytes can hold", (unsigned long long)nTensor, GGUF_MAX_TENSORS,
              (long long)cur_left(&c));
    goto done;
  }
  g->kv = calloc((size_t)nKV + 1, sizeof(GGUFKV));
  g->tensors = calloc((size_t)nTensor + 1, sizeof(GGUFTensor));
  if (!g->kv || !g->tensors) {
    gguf_fail(&c, "out of memory");
    goto done;
  }
  for (uint64_t i = 0; i < nKV; i++) {
    GGUFKV *kv = &g->kv[i];
    uint32_t t;
    if (cur_string(&c, &kv->key, "a metadata key")) goto done;
    g->n_kv++;
    if (cur_u32(&c, &t, "a metadata type")) goto done;
    if (cur_value(&c, (int)t, &kv->v, kv->key)) goto done;
    if (strcmp(kv->key, "general.alignment") == 0) {
      if (kv->v.type != GGUF_UINT32 || kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) != 0 ||
          kv->v.u > GGUF_MAX_ALIGNMENT) {
        gguf_fail(&c, "general.alignment must be a uint32 power of two up to %d",
                  GGUF_MAX_ALIGNMENT);
        goto done;
      }
      g->alignment = (uint32_t)kv->v.u;
    }
  }
  if (names_unique(&c, g->kv, (size_t)g->n_kv, sizeof(GGUFKV), offsetof(GGUFKV, key), "metadata"))
    goto done;
  for (uint64_t i = 0; i < nTensor; i++) {
    if (cur_tensor(&c, &g->tensors[i], (int)i)) {
      g->n_tensors = (int)i + 1;
      goto done;
    }
    g->n_tensors++;
  }
  /* the data section starts at the next multiple of the alignment */
  g->data_off = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
  if (g->n_tensors > 0 && g->data_off > n_file) {
    gguf_fail(&c, "the data section would start at byte %lld, past the end of the file",
              (long long)g->data_off);
    goto done;
  }
  ap = malloc(sizeof(GGUFTensor *) * ((size_t)g->n_tensors + 1));
  if (!ap) {
    gguf_fail(&c, "out of memory");
    goto done;
  }
  if (names_unique(&c, g->tensors, (size_t)g->n_tensors, sizeof(GGUFTensor),
                   offsetof(GGUFTensor, name), "tensor"))
    goto done;
  for (int i = 0; i < g->n_tensors; i++) ap[i] = &g->tensors[i];
  qsort(ap, (size_t)g->n_tensors, sizeof(*ap), cmp_tensor_off);
  for (int i = 0; i < g->n_tensors; i++) {
    const GGUFTensor *t = ap[i];
    if (t->offset % g->alignment != 0) {
      gguf_fail(&c, "tensor \"%s\" has offset %lld, expected a multiple of the alignment %u",
                t->name, (long long)t->offset, g->alignment);
      goto done;
    }
    if (t->nbytes > n_file - g->data_off - t->offset) {
      gguf_fail(&c, "tensor \"%s\" (%lld bytes at data offset %lld) runs past the end of the "
                "file (%lld bytes)", t->name, (long long)t->nbytes, (long long)t->offset,
                (long long)n_file);
      goto done;
    }
    if (i > 0 && ap[i - 1]->offset + ap[i - 1]->nbytes > t->offset) {
      gguf_fail(&c, "tensors \"%s\" and \"%s\" overlap", ap[i - 1]->name, t->name);
      goto done;
    }
  }
  *pp = g;
  g = 0;
  rc = 0;
done:
  free(ap);
  gguf_free(g);
  return rc;
}

void gguf_free(GGUFFile *g) {
  if (!g) return;
  for (int i = 0; i < g->n_kv; i++) free(g->kv[i].key);
  for (int i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
  free(g->kv);
  free(g->tensors);
  free(g);
}

const GGUFKV *gguf_find(const GGUFFile *g, const char *key) {
  for (int i = 0; i < g->n_kv; i++)
    if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
  return 0;
}

const GGUFTensor *gguf_tensor(const GGUFFile *g, const char *name) {
  for (int i = 0; i < g->n_tensors; i++)
    if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
  return 0;
}

int gguf_array_int(const GGUFFile *g, const GGUFValue *v, uint64_t i, int64_t *pOut) {
  unsigned char b[8];
  GGUFValue x;
  int n = type_size(v->elem_type);
  if (v->type != GGUF_ARRAY || n == 0 || i >= v->n) return -1;
  if (v->elem_type == GGUF_FLOAT32 || v->elem_type == GGUF_FLOAT64) return -1;
  if (gguf_read_at(g, v->off + (int64_t)i * n, b, (size_t)n)) return -1;
  scalar_decode(v->elem_type, b, &x);
  *pOut = x.i;
  if (v->elem_type == GGUF_UINT64 && x.u > (uint64_t)INT64_MAX) *pOut = INT64_MAX;
  return 0;
}

int gguf_array_next_string(const GGUFFile *g, int64_t *pOff, int64_t *pStrOff, uint64_t *pLen) {
  unsigned char b[8];
  uint64_t n;
  if (gguf_read_at(g, *pOff, b, 8)) return -1;
  n = le64(b);
  if (n > (uint64_t)(g->n_file - *pOff - 8)) return -1;
  *pStrOff = *pOff + 8;
  *pLen = n;
  *pOff += 8 + (int64_t)n;
  return 0;
}
