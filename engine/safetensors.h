/*
** The safetensors container: an 8-byte little-endian header length N, N bytes
** of JSON describing every tensor, then the data. Each tensor entry names a
** dtype, a shape and data_offsets [begin, end) relative to the first byte
** after the header.
**
** This file reads the header bytes and validates the entries once something
** else has parsed the JSON (sqlite-gpt parses it with SQLite's JSON functions:
** the engine holds no JSON parser). Plain C11; knows nothing of SQLite.
**
** Messages written to err never name the file; callers prefix it.
*/
#ifndef GPT_SAFETENSORS_H
#define GPT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Largest header accepted (bytes), and most dimensions of a tensor. */
#define ST_MAX_HEADER 100000000
#define ST_MAX_DIMS 8

/* Every dtype of the format. Only F32, F16 and BF16 hold weights here; the
** others are known so that legacy buffers (e.g. attn.bias masks) can be
** sized, checked and skipped. */
typedef enum {
  ST_BOOL = 0, ST_U8, ST_I8, ST_F8_E4M3, ST_F8_E5M2,
  ST_U16, ST_I16, ST_F16, ST_BF16,
  ST_U32, ST_I32, ST_F32,
  ST_U64, ST_I64, ST_F64,
  ST_N_DTYPE
} STDtype;

/* "F32" (as spelled in the header) -> STDtype, or -1 when unknown. */
int st_dtype_from_name(const char *z);
const char *st_dtype_name(int dtype);
/* Bytes per element, 0 for an unknown code. */
int st_dtype_size(int dtype);
/* The GPT_* storage dtype of gpt.h for F32, F16 and BF16, else -1. */
int st_dtype_to_gpt(int dtype);

/* One header entry. name and dtype_name are borrowed from the caller, who
** fills every field but dtype, which st_validate sets. */
typedef struct STTensor {
  const char *name;
  const char *dtype_name;  /* as in the header, e.g. "F32" */
  int dtype;               /* STDtype, set by st_validate */
  int ndim;                /* 0..ST_MAX_DIMS */
  int64_t shape[ST_MAX_DIMS];
  int64_t begin, end;      /* data_offsets, relative to the data section */
} STTensor;

/* Reads the header of the file f of file_size bytes from its start. On
** success returns 0, a malloc'd NUL-terminated copy of the header in *pzJson
** (free with free()) of *pnJson bytes, and in *pDataOffset the file offset
** of the data section. A header length that is 0, above ST_MAX_HEADER or past
** the end of the file, a short read, or a NUL byte in the header give -1 with
** a message in err. */
int st_read_header(FILE *f, int64_t file_size, char **pzJson, int64_t *pnJson,
                   int64_t *pDataOffset, char *err, size_t n_err);

/* Checks the n entries of a header against a data section of data_size
** bytes: dtype known, every dimension >= 0, (end - begin) equal to the
** product of the shape times the dtype size (without overflow),
** 0 <= begin <= end <= data_size, no name twice and no two byte ranges
** overlapping. Sets a[i].dtype. Returns 0, or -1 with a message in err naming
** the tensor. */
int st_validate(STTensor *a, int n, int64_t data_size, char *err, size_t n_err);

/* Writes "[d0, d1, ...]" to buf (always NUL-terminated). */
void st_shape_str(const int64_t *shape, int ndim, char *buf, size_t n_buf);

#endif
