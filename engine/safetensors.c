/*
** The safetensors container: reading the header bytes and validating the
** parsed tensor entries against the size of the data section. Every check is
** done before a byte of tensor data is read, so that a truncated file or a
** header that lies is reported with the tensor it concerns.
**
** The file may come from anywhere: no length or offset in it is trusted, and
** every product of dimensions is computed with an overflow check.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"
#include "safetensors.h"

/* Names and element sizes of the dtypes, indexed by STDtype. */
static const struct { const char *zName; int nByte; } stDtypes[ST_N_DTYPE] = {
  {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
  {"U16", 2}, {"I16", 2}, {"F16", 2}, {"BF16", 2},
  {"U32", 4}, {"I32", 4}, {"F32", 4},
  {"U64", 8}, {"I64", 8}, {"F64", 8},
};

/* Maps a header dtype name to its code, or -1 for anything else. */
int st_dtype_from_name(const char *z) {
  int i;
  if (z == 0) return -1;
  for (i = 0; i < ST_N_DTYPE; i++) {
    if (strcmp(z, stDtypes[i].zName) == 0) return i;
  }
  return -1;
}

/* The header spelling of a dtype code. */
const char *st_dtype_name(int dtype) {
  if (dtype < 0 || dtype >= ST_N_DTYPE) return "?";
  return stDtypes[dtype].zName;
}

/* Bytes per element of a dtype code, 0 when unknown. */
int st_dtype_size(int dtype) {
  if (dtype < 0 || dtype >= ST_N_DTYPE) return 0;
  return stDtypes[dtype].nByte;
}

/* The storage dtype of gpt.h that keeps the bytes of this dtype unchanged,
** or -1 when weights may not have this dtype. */
int st_dtype_to_gpt(int dtype) {
  switch (dtype) {
    case ST_F32: return GPT_F32;
    case ST_F16: return GPT_F16;
    case ST_BF16: return GPT_BF16;
  }
  return -1;
}

/* Formats a shape as a JSON-like list, truncating safely if buf is small. */
void st_shape_str(const int64_t *shape, int ndim, char *buf, size_t n_buf) {
  size_t n = 0;
  int i;
  if (n_buf == 0) return;
  buf[0] = 0;
  n += (size_t)snprintf(buf, n_buf, "[");
  for (i = 0; i < ndim && n < n_buf; i++) {
    n += (size_t)snprintf(buf + n, n_buf - n, "%s%lld", i ? ", " : "",
                          (long long)shape[i]);
  }
  if (n < n_buf) snprintf(buf + n, n_buf - n, "]");
}

/* Reads exactly n bytes at file offset off; returns 0, or -1 on a short read
** or an I/O error. */
static int stReadAt(FILE *f, int64_t off, void *buf, size_t n) {
  if (fseeko(f, (off_t)off, SEEK_SET) != 0) return -1;
  if (n > 0 && fread(buf, 1, n, f) != n) return -1;
  return 0;
}

/* Reads and checks the header length, then the header itself. */
int st_read_header(FILE *f, int64_t file_size, char **pzJson, int64_t *pnJson,
                   int64_t *pDataOffset, char *err, size_t n_err) {
  unsigned char aLen[8];
  uint64_t nHdr = 0;
  char *zJson = 0;
  int i;

  *pzJson = 0;
  *pnJson = 0;
  *pDataOffset = 0;
  if (file_size < 8) {
    snprintf(err, n_err,
             "file is %lld bytes, too short for the 8-byte header length",
             (long long)file_size);
    return -1;
  }
  if (stReadAt(f, 0, aLen, 8)) {
    snprintf(err, n_err, "cannot read the header length");
    return -1;
  }
  for (i = 7; i >= 0; i--) nHdr = (nHdr << 8) | aLen[i];
  if (nHdr == 0) {
    snprintf(err, n_err, "header length is 0, expected 1 to %d",
             ST_MAX_HEADER);
    return -1;
  }
  if (nHdr > (uint64_t)(file_size - 8)) {
    snprintf(err, n_err,
             "header length %llu runs past the end of the file (%lld bytes)",
             (unsigned long long)nHdr, (long long)file_size);
    return -1;
  }
  if (nHdr > (uint64_t)ST_MAX_HEADER) {
    snprintf(err, n_err, "header length %llu is over the limit of %d bytes",
             (unsigned long long)nHdr, ST_MAX_HEADER);
    return -1;
  }
  zJson = malloc((size_t)nHdr + 1);
  if (zJson == 0) {
    snprintf(err, n_err, "out of memory reading a header of %llu bytes",
             (unsigned long long)nHdr);
    return -1;
  }
  if (stReadAt(f, 8, zJson, (size_t)nHdr)) {
    snprintf(err, n_err, "cannot read the %llu-byte header",
             (unsigned long long)nHdr);
    free(zJson);
    return -1;
  }
  zJson[nHdr] = 0;
  if (memchr(zJson, 0, (size_t)nHdr) != 0) {
    snprintf(err, n_err, "header has a NUL byte at offset %lld",
             (long long)(8 + ((char *)memchr(zJson, 0, (size_t)nHdr) - zJson)));
    free(zJson);
    return -1;
  }
  *pzJson = zJson;
  *pnJson = (int64_t)nHdr;
  *pDataOffset = 8 + (int64_t)nHdr;
  return 0;
}

/* qsort comparators over pointers to entries: by name, and by byte range. */
static int stCmpName(const void *a, const void *b) {
  const STTensor *x = *(const STTensor *const *)a;
  const STTensor *y = *(const STTensor *const *)b;
  return strcmp(x->name, y->name);
}
static int stCmpBegin(const void *a, const void *b) {
  const STTensor *x = *(const STTensor *const *)a;
  const STTensor *y = *(const STTensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Checks one entry on its own; sets its dtype. */
static int stCheckOne(STTensor *t, int64_t data_size, char *err, size_t n_err) {
  char zShape[256];
  int64_t nElem = 1, nNeed;
  int i, sz;
  int bOverflow = 0, bZero = 0;

  t->dtype = st_dtype_from_name(t->dtype_name);
  if (t->dtype < 0) {
    snprintf(err, n_err, "tensor \"%s\" has unknown dtype \"%s\"",
             t->name, t->dtype_name ? t->dtype_name : "");
    return -1;
  }
  if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
    snprintf(err, n_err, "tensor \"%s\" has %d dimensions, expected at most %d",
             t->name, t->ndim, ST_MAX_DIMS);
    return -1;
  }
  st_shape_str(t->shape, t->ndim, zShape, sizeof zShape);
  for (i = 0; i < t->ndim; i++) {
    if (t->shape[i] < 0) {
      snprintf(err, n_err,
               "tensor \"%s\" has shape %s, expected dimensions >= 0",
               t->name, zShape);
      return -1;
    }
    if (t->shape[i] == 0) bZero = 1;
  }
  if (t->begin < 0 || t->end < t->begin) {
    snprintf(err, n_err, "tensor \"%s\" has data_offsets [%lld, %lld], "
             "expected 0 <= begin <= end",
             t->name, (long long)t->begin, (long long)t->end);
    return -1;
  }
  if (t->end > data_size) {
    snprintf(err, n_err, "tensor \"%s\" data_offsets [%lld, %lld] run past "
             "the end of the data (%lld bytes)", t->name, (long long)t->begin,
             (long long)t->end, (long long)data_size);
    return -1;
  }
  sz = st_dtype_size(t->dtype);
  if (bZero) {
    nNeed = 0;
  } else {
    for (i = 0; i < t->ndim; i++) {
      if (nElem > INT64_MAX / t->shape[i]) { bOverflow = 1; break; }
      nElem *= t->shape[i];
    }
    if (!bOverflow && nElem > INT64_MAX / sz) bOverflow = 1;
    nNeed = bOverflow ? 0 : nElem * sz;
  }
  if (bOverflow) {
    snprintf(err, n_err, "tensor \"%s\" has %lld bytes but shape %s of %s "
             "needs more than %lld", t->name, (long long)(t->end - t->begin),
             zShape, stDtypes[t->dtype].zName, (long long)INT64_MAX);
    return -1;
  }
  if (t->end - t->begin != nNeed) {
    snprintf(err, n_err, "tensor \"%s\" has %lld bytes but shape %s of %s "
             "needs %lld", t->name, (long long)(t->end - t->begin), zShape,
             stDtypes[t->dtype].zName, (long long)nNeed);
    return -1;
  }
  return 0;
}

/* Checks every entry, then that names are unique and ranges disjoint. */
int st_validate(STTensor *a, int n, int64_t data_size, char *err, size_t n_err) {
  STTensor **ap = 0;
  STTensor *pMax = 0;  /* the entry reaching furthest so far, by end */
  int i, rc = 0;

  if (n < 0) n = 0;
  for (i = 0; i < n; i++) {
    if (stCheckOne(&a[i], data_size, err, n_err)) return -1;
  }
  if (n < 2) return 0;
  ap = malloc(sizeof(ap[0]) * (size_t)n);
  if (ap == 0) {
    snprintf(err, n_err, "out of memory checking %d tensors", n);
    return -1;
  }
  for (i = 0; i < n; i++) ap[i] = &a[i];
  qsort(ap, (size_t)n, sizeof(ap[0]), stCmpName);
  for (i = 1; i < n; i++) {
    if (strcmp(ap[i - 1]->name, ap[i]->name) == 0) {
      snprintf(err, n_err, "tensor \"%s\" appears twice", ap[i]->name);
      rc = -1;
      goto done;
    }
  }
  qsort(ap, (size_t)n, sizeof(ap[0]), stCmpBegin);
  for (i = 0; i < n; i++) {
    STTensor *t = ap[i];
    if (t->begin == t->end) continue; /* empty ranges overlap nothing */
    if (pMax && t->begin < pMax->end) {
      snprintf(err, n_err, "tensor \"%s\" data_offsets [%lld, %lld] overlap "
               "tensor \"%s\" data_offsets [%lld, %lld]", t->name,
               (long long)t->begin, (long long)t->end, pMax->name,
               (long long)pMax->begin, (long long)pMax->end);
      rc = -1;
      goto done;
    }
    if (pMax == 0 || t->end > pMax->end) pMax = t;
  }
done:
  free(ap);
  return rc;
}
