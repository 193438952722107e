/*
** GGUF, llama.cpp's model file: a reader that trusts nothing, and the ggml
** tensor types the importer and exporter know.
**
** A GGUF file (versions 2 and 3, little-endian) is a header (magic "GGUF",
** version, tensor count, metadata count), the metadata key/value pairs, the
** tensor infos (name, dimensions ne[0..n) with ne[0] the contiguous one,
** ggml type, offset), padding to the alignment, and the tensor data.
** gguf_open() reads and checks everything but the tensor data: every count,
** length and dimension is bounded by what the file can hold before anything
** is allocated, offsets are aligned, tensors lie inside the file and do not
** overlap. Strings and arrays stay in the file: entries record where they
** are, and the caller reads them with gguf_read_string() and the array
** helpers, so a 150,000-token vocabulary is never held twice.
**
** Plain C11 over stdio; knows nothing of SQLite.
*/
#ifndef GPT_GGUF_H
#define GPT_GGUF_H

#include <stdint.h>
#include <stdio.h>

/* Metadata value types of the format. */
enum {
  GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4,
  GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9,
  GGUF_UINT64 = 10, GGUF_INT64 = 11, GGUF_FLOAT64 = 12, GGUF_TYPE_COUNT
};

/* The ggml tensor types this project stores (ggml.h's numbering). */
#define GGML_F32 0
#define GGML_F16 1
#define GGML_Q4_0 2
#define GGML_Q8_0 8
#define GGML_Q4_K 12
#define GGML_Q6_K 14
#define GGML_BF16 30

/* Limits: beyond them a file is refused, whatever it holds. */
#define GGUF_MAX_KV 65536            /* metadata pairs */
#define GGUF_MAX_TENSORS 100000
#define GGUF_MAX_KEY 1024            /* bytes of a key or a tensor name */
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_ALIGNMENT (1 << 24)
/* strings in all metadata arrays together: a header is walked a string at a
** time, and 2 million empty ones (16 MB) took 2.6 s; a real file's vocabulary
** and merges hold a few hundred thousand each */
#define GGUF_MAX_STRINGS (1 << 23)

/* One metadata value. Scalars are read; strings and arrays are located. */
typedef struct GGUFValue {
  int type;          /* GGUF_* */
  uint64_t u;        /* unsigned integers and bool */
  int64_t i;         /* signed integers */
  double f;          /* floats */
  int64_t off;       /* string: its bytes; array: its first element */
  uint64_t n;        /* string: bytes; array: elements */
  int elem_type;     /* array: GGUF_* of the elements */
} GGUFValue;

typedef struct GGUFKV {
  char *key;         /* NUL-terminated, no NUL inside */
  GGUFValue v;
} GGUFKV;

typedef struct GGUFTensor {
  char *name;
  int n_dims;
  int64_t ne[GGUF_MAX_DIMS]; /* ne[0] contiguous; unused ones are 1 */
  int type;          /* ggml type */
  int64_t offset;    /* from the start of the data section */
  int64_t nbytes;
} GGUFTensor;

typedef struct GGUFFile {
  FILE *f;           /* not owned */
  int64_t n_file;
  uint32_t version;
  GGUFKV *kv;
  int n_kv;
  GGUFTensor *tensors;
  int n_tensors;
  uint32_t alignment;
  int64_t data_off;  /* file offset of the data section */
} GGUFFile;

/* True when the 4 bytes at p are GGUF's magic. */
int gguf_is_magic(const unsigned char *p);

/* Reads and checks the header of f (n_file bytes long). Returns 0 and a
** GGUFFile in *pp (free with gguf_free), or -1 with a message in err. */
int gguf_open(FILE *f, int64_t n_file, GGUFFile **pp, char *err, size_t n_err);
void gguf_free(GGUFFile *g);

/* The entry of key, or NULL. */
const GGUFKV *gguf_find(const GGUFFile *g, const char *key);
/* The tensor called name, or NULL. */
const GGUFTensor *gguf_tensor(const GGUFFile *g, const char *name);

/* Reads n bytes at file offset off into buf (n + 1 bytes, NUL-terminated).
** Returns 0 or -1. */
int gguf_read_at(const GGUFFile *g, int64_t off, void *buf, size_t n);

/* Element i of an array of fixed-size numbers (not strings) as an integer
** or a double. Returns 0 or -1 (read error, or a float for the integer). */
int gguf_array_int(const GGUFFile *g, const GGUFValue *v, uint64_t i, int64_t *pOut);

/* Walks an array of strings in order: start with *pOff = v->off, then each
** call gives the next string's offset and length and advances *pOff. The
** lengths were checked by gguf_open. Returns 0 or -1 on a read error. */
int gguf_array_next_string(const GGUFFile *g, int64_t *pOff, int64_t *pStrOff, uint64_t *pLen);

/* ggml type facts: name ("f32", "q4_K", ...) or NULL when unknown to ggml;
** block size in values and bytes of a block; 0 for types whose layout this
** reader does not know. */
const char *ggml_type_name(int type);
int ggml_type_layout(int type, int *pBlock, int *pBytes);

/* Name of a metadata value type. */
const char *gguf_type_name(int type);

#endif
