/*
** The GPT-2 forward pass.
**
** How it works: all weights live in one arena, addressed through a pointer
** table whose sizes come from the config (llm.c's layout); each tensor is
** held as f32, or a 2-D one as f16 or q8_0 (see gpt.h). A forward pass
** appends n tokens to a KV cache: n > 1 is a prefill, done with sgemm over
** the whole batch (compact weights widened a slice at a time; the engine's
** own gemm where OpenBLAS must not be called, see blas.c); n == 1 is a
** decode step, done with the gemv kernels of kernels.h on the weights as they
** are, which reads every weight once and is bound by memory bandwidth.
**
** Every pass runs on a team of the thread pool (threads.h): matrix products
** split their output rows (decode) or columns (prefill), attention splits the
** heads, LayerNorm and the residual the tokens. Each output value is
** computed by one thread, the same way whatever the split, so results do not
** depend on the thread count. Layers are free functions with their shapes
** in comments; B is always 1 here, T is the number of new tokens, P the
** number of cached positions before them.
*/
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "blas.h"
#include "gpt.h"
#include "kernels.h"
#include "threads.h"

/* Tensors of one block, in the order of the pointer table. */
enum {
  L_LN1W, L_LN1B, L_QKVW, L_QKVB, L_PROJW, L_PROJB,
  L_LN2W, L_LN2B, L_FCW, L_FCB, L_FCPROJW, L_FCPROJB, L_COUNT
};
static const char *const azLayerTensor[L_COUNT] = {
  "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
  "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
  "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
};

struct GPTModel {
  GPTConfig cfg;
  int has_lm_head;
  int n_tensors;
  unsigned char *arena;  /* every weight */
  size_t n_bytes;        /* bytes in the arena */
  void **tensor;         /* pointer table into the arena, by tensor index */
  int *dtype;            /* memory dtype of each tensor */
  int max_k;             /* largest input dimension of a 2-D tensor */
  int has_compact;       /* some tensor is f16 or q8_0 */
};

/* A weight matrix as a product reads it: (rows, k) in dtype. */
typedef struct Mat {
  const void *w;
  int dtype;
  int rows, k;
} Mat;

struct GPTState {
  const GPTModel *m;
  int cap;               /* max positions (<= n_ctx) */
  int len;               /* positions in the cache */
  /* head-major, so that a decode step reads each head's keys and values
  ** in order (q8_0 decode at 128-192 positions, 2 threads: the attention
  ** kernels took 8.3% of the CPU samples in the (L, cap, C) layout, 6.1%
  ** in this one) */
  float *k_cache;        /* (L, NH, cap, hd) */
  float *v_cache;        /* (L, NH, cap, hd) */
  /* scratch for a batch of up to n_scratch tokens */
  int n_scratch;
  float *x;              /* (T, C) residual stream */
  float *xn;             /* (T, C) LayerNorm output */
  float *qkv;            /* (T, 3C) */
  float *atty;           /* (T, C) attention output before c_proj */
  float *fc;             /* (T, 4C) */
  int n_att;             /* threads the att scratch is sized for */
  float *att;            /* (n_att, T, P+T) scores, one head per thread */
  float *logit_block;    /* (LOGIT_ROWS, V) for per-position logits */
  float *tmp;            /* (4C,) decode scratch */
  GPTQ8Act xq;           /* decode input quantized for q8_0 rows, (4C,) */
  int n_wide;            /* threads the wide scratch is sized for */
  float *wide;           /* (n_wide, GEMM_COLS, max_k) compact weights widened */
  int batch_T;           /* tokens of the batch in progress */
  const char *overflow;  /* what was not finite after GPT_OVERFLOW ("logits", ...) */
};

#define LOGIT_ROWS 32
/* Work below these many multiply-adds runs on the caller's thread alone: a
** parallel region costs a few microseconds, and much more when another
** process holds a core. */
#define PAR_MIN_GEMV ((int64_t)1 << 17)
#define PAR_MIN_GEMM ((int64_t)1 << 21)
/* Columns of one sgemm in a prefill (see gemm_task). */
#define GEMM_COLS 128
/* Batches up to this many tokens go through the kernels' gemm_f32, which
** reads each weight from cache once per three tokens; OpenBLAS's sgemm
** packs both operands first, which pays off only for longer batches (124M
** model, 2 threads: 19 against 31 ms at 2 tokens, 33 against 38 at 16, 85
** against 88 at 64, even at about 100). */
#ifndef GEMM_SMALL_T
#define GEMM_SMALL_T 64
#endif

/* Checks every config value against its range before anything is sized by
** it, so that hostile configs never reach an allocation. */
int gpt_config_check(const GPTConfig *c, char *err, size_t n_err) {
  struct { const char *zKey; int v, lo, hi; } a[] = {
    {"n_layer", c->n_layer, 1, GPT_MAX_LAYER},
    {"n_head", c->n_head, 1, GPT_MAX_HEAD},
    {"n_embd", c->n_embd, 1, GPT_MAX_EMBD},
    {"n_ctx", c->n_ctx, 1, GPT_MAX_CTX},
    {"vocab_size", c->vocab_size, 1, GPT_MAX_VOCAB},
  };
  for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++) {
    if (a[i].v < a[i].lo || a[i].v > a[i].hi) {
      snprintf(err, n_err, "config %s is %d, expected %d to %d", a[i].zKey,
               a[i].v, a[i].lo, a[i].hi);
      return -1;
    }
  }
  if (c->n_embd % c->n_head != 0) {
    snprintf(err, n_err, "config n_embd %d is not divisible by n_head %d",
             c->n_embd, c->n_head);
    return -1;
  }
  if (!(c->ln_eps > 0.0 && c->ln_eps <= 1.0)) {
    snprintf(err, n_err, "config layer_norm_epsilon is %g, expected > 0 and <= 1",
             c->ln_eps);
    return -1;
  }
  if (gpt_n_params(c, 1) > GPT_MAX_PARAMS) {
    snprintf(err, n_err, "config implies %lld parameters, more than the limit of %lld",
             (long long)gpt_n_params(c, 1), (long long)GPT_MAX_PARAMS);
    return -1;
  }
  return 0;
}

/* Tensors: wte, wpe, L blocks of L_COUNT, ln_f.weight, ln_f.bias, lm_head. */
int gpt_n_tensors(const GPTConfig *c, int has_lm_head) {
  return 2 + c->n_layer * L_COUNT + 2 + (has_lm_head ? 1 : 0);
}

/* Describes tensor i: its name, the shape it is stored in, and whether it is
** a Conv1D weight that memory keeps transposed. */
void gpt_tensor_info(const GPTConfig *c, int has_lm_head, int i, GPTTensorInfo *o) {
  int64_t C = c->n_embd;
  int nBlock = c->n_layer * L_COUNT;
  memset(o, 0, sizeof(*o));
  o->ndim = 1;
  if (i == 0 || i == 1) {
    snprintf(o->name, sizeof(o->name), i == 0 ? "wte.weight" : "wpe.weight");
    o->ndim = 2;
    o->shape[0] = i == 0 ? c->vocab_size : c->n_ctx;
    o->shape[1] = C;
  } else if (i < 2 + nBlock) {
    int l = (i - 2) / L_COUNT, k = (i - 2) % L_COUNT;
    snprintf(o->name, sizeof(o->name), "h.%d.%s", l, azLayerTensor[k]);
    switch (k) {
      case L_QKVW: o->ndim = 2; o->shape[0] = C; o->shape[1] = 3 * C; break;
      case L_QKVB: o->shape[0] = 3 * C; break;
      case L_PROJW: o->ndim = 2; o->shape[0] = C; o->shape[1] = C; break;
      case L_FCW: o->ndim = 2; o->shape[0] = C; o->shape[1] = 4 * C; break;
      case L_FCB: o->shape[0] = 4 * C; break;
      case L_FCPROJW: o->ndim = 2; o->shape[0] = 4 * C; o->shape[1] = C; break;
      default: o->shape[0] = C; break;
    }
    o->transposed = o->ndim == 2;
  } else if (i == 2 + nBlock || i == 3 + nBlock) {
    snprintf(o->name, sizeof(o->name), i == 2 + nBlock ? "ln_f.weight" : "ln_f.bias");
    o->shape[0] = C;
  } else if (has_lm_head && i == 4 + nBlock) {
    snprintf(o->name, sizeof(o->name), "lm_head.weight");
    o->ndim = 2;
    o->shape[0] = c->vocab_size;
    o->shape[1] = C;
  }
  o->n_elem = o->ndim == 2 ? o->shape[0] * o->shape[1] : o->shape[0];
}

/* Finds a tensor by canonical name; a linear scan is fine for ~150 names. */
int gpt_tensor_index(const GPTConfig *c, int has_lm_head, const char *zName) {
  GPTTensorInfo info;
  int n = gpt_n_tensors(c, has_lm_head);
  for (int i = 0; i < n; i++) {
    gpt_tensor_info(c, has_lm_head, i, &info);
    if (strcmp(info.name, zName) == 0) return i;
  }
  return -1;
}

/* Parameters of a config, computed in 64 bits from checked int fields. */
int64_t gpt_n_params(const GPTConfig *c, int has_lm_head) {
  int64_t C = c->n_embd;
  int64_t perLayer = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C +
                     (4 * C * C + 4 * C) + (4 * C * C + C);
  int64_t n = (int64_t)c->vocab_size * C + (int64_t)c->n_ctx * C +
              c->n_layer * perLayer + 2 * C;
  if (has_lm_head) n += (int64_t)c->vocab_size * C;
  return n;
}

/* The matrix of 2-D tensor i (see gpt.h). */
void gpt_tensor_matrix(const GPTTensorInfo *info, int64_t *pRows, int64_t *pK) {
  if (info->ndim != 2) {
    *pRows = info->shape[0];
    *pK = 1;
  } else if (info->transposed) {
    *pRows = info->shape[1];
    *pK = info->shape[0];
  } else {
    *pRows = info->shape[0];
    *pK = info->shape[1];
  }
}

/* Bytes of a row holding the tensor in dtype; -1 when impossible. */
int64_t gpt_tensor_bytes(const GPTTensorInfo *info, int dtype) {
  int64_t rows, k;
  if (dtype == GPT_Q8_0) {
    gpt_tensor_matrix(info, &rows, &k);
    if (info->ndim != 2 || k % GPT_Q8_BLOCK != 0) return -1;
    return rows * (k / GPT_Q8_BLOCK) * GPT_Q8_BYTES;
  }
  if (gpt_dtype_size(dtype) == 0) return -1;
  return info->n_elem * gpt_dtype_size(dtype);
}

/* Large arenas are aligned to 2 MB and asked to use transparent huge pages
** where the system has them: fewer page faults while loading, fewer TLB
** misses while decoding streams through every weight. (Not the KV cache:
** in 2 MB pages a short generation would fault in all of it.) */
#define ARENA_HUGE ((size_t)2 << 20)

static unsigned char *arena_alloc(size_t n) {
  if (n < 4 * ARENA_HUGE) return aligned_alloc(64, (n + 63) / 64 * 64 + 64);
  n = (n + ARENA_HUGE - 1) / ARENA_HUGE * ARENA_HUGE;
  unsigned char *p = aligned_alloc(ARENA_HUGE, n);
#ifdef MADV_HUGEPAGE
  if (p) madvise(p, n, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_WRITE
  /* fault the whole arena in at once (Linux 5.14+; harmless where refused) */
  if (p) madvise(p, n, MADV_POPULATE_WRITE);
#endif
  return p;
}

/* Allocates the arena (each tensor in its memory dtype, 64-byte aligned) and
** the pointer table for a config. */
GPTModel *gpt_model_new_dtypes(const GPTConfig *c, int has_lm_head, const int *aDtype,
                               char *err, size_t n_err) {
  if (gpt_config_check(c, err, n_err)) return NULL;
  GPTModel *m = calloc(1, sizeof(*m));
  if (!m) goto oom;
  m->cfg = *c;
  m->has_lm_head = has_lm_head;
  m->n_tensors = gpt_n_tensors(c, has_lm_head);
  m->tensor = calloc((size_t)m->n_tensors, sizeof(void *));
  m->dtype = calloc((size_t)m->n_tensors, sizeof(int));
  if (!m->tensor || !m->dtype) goto oom;
  size_t off = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    GPTTensorInfo info;
    int64_t rows, k, nb;
    int dt = aDtype ? aDtype[i] : GPT_F32;
    gpt_tensor_info(c, has_lm_head, i, &info);
    gpt_tensor_matrix(&info, &rows, &k);
    if (dt != GPT_F32 && (info.ndim != 2 || (dt != GPT_F16 && dt != GPT_Q8_0))) dt = -1;
    nb = dt < 0 ? -1 : gpt_tensor_bytes(&info, dt);
    if (nb < 0) {
      snprintf(err, n_err, "tensor %s cannot be held as %s", info.name,
               aDtype ? gpt_dtype_name(aDtype[i]) : "?");
      gpt_model_free(m);
      return NULL;
    }
    m->dtype[i] = dt;
    if (dt != GPT_F32) m->has_compact = 1;
    if (info.ndim == 2 && k > m->max_k) m->max_k = (int)k;
    off += ((size_t)nb + 63) / 64 * 64;
  }
  m->n_bytes = off;
  m->arena = arena_alloc(off);
  if (!m->arena) goto oom;
  off = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, has_lm_head, i, &info);
    m->tensor[i] = m->arena + off;
    off += ((size_t)gpt_tensor_bytes(&info, m->dtype[i]) + 63) / 64 * 64;
  }
  return m;
oom:
  snprintf(err, n_err, "out of memory allocating %lld parameters",
           (long long)gpt_n_params(c, has_lm_head));
  gpt_model_free(m);
  return NULL;
}

GPTModel *gpt_model_new(const GPTConfig *c, int has_lm_head, char *err, size_t n_err) {
  return gpt_model_new_dtypes(c, has_lm_head, NULL, err, n_err);
}

void gpt_model_free(GPTModel *m) {
  if (!m) return;
  free(m->arena);
  free(m->tensor);
  free(m->dtype);
  free(m);
}

const GPTConfig *gpt_model_config(const GPTModel *m) { return &m->cfg; }
size_t gpt_model_bytes(const GPTModel *m) { return m->n_bytes; }
int gpt_model_tensor_dtype(const GPTModel *m, int i) {
  return i >= 0 && i < m->n_tensors ? m->dtype[i] : -1;
}

/* Reads element k of src in dtype as f32. */
static inline float load_elem(int dtype, const void *src, int64_t k) {
  if (dtype == GPT_F32) {
    float f;
    memcpy(&f, (const char *)src + 4 * k, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, (const char *)src + 2 * k, 2);
  return dtype == GPT_F16 ? gpt_f16_to_f32(h) : gpt_bf16_to_f32(h);
}

/* Stores stored element si of src (dtype sd) at index di of dst (memory
** dtype dd: f32 or f16). Returns 0 when the value is not finite. */
static inline int put_elem(void *dst, int dd, int64_t di, int sd, const void *src, int64_t si) {
  if (dd == GPT_F16 && sd == GPT_F16) {
    uint16_t h;
    memcpy(&h, (const char *)src + 2 * si, 2);
    ((uint16_t *)dst)[di] = h;
    return (h & 0x7c00) != 0x7c00;
  }
  float f = load_elem(sd, src, si);
  if (dd == GPT_F32) {
    ((float *)dst)[di] = f;
    return isfinite(f);
  }
  uint16_t h = gpt_f32_to_f16(f);
  ((uint16_t *)dst)[di] = h;
  return (h & 0x7c00) != 0x7c00;
}

/* True when every value of src (n values of dtype) is finite. An exponent
** of all ones, plus one at its lowest bit, carries into the sign bit, so
** the test is adds and ors over 8 lanes that compilers vectorize; the slow
** paths find the culprit's index. */
static int all_finite(int dtype, const void *src, int64_t n) {
  const unsigned char *p = src;
  int64_t k = 0;
  if (dtype == GPT_F32) {
    uint32_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, u[8], any = 0;
    for (; k + 8 <= n; k += 8) {
      memcpy(u, p + 4 * k, sizeof(u));
      for (int j = 0; j < 8; j++) acc[j] |= (u[j] & 0x7f800000u) + 0x00800000u;
    }
    for (; k < n; k++) {
      memcpy(u, p + 4 * k, 4);
      acc[0] |= (u[0] & 0x7f800000u) + 0x00800000u;
    }
    for (int j = 0; j < 8; j++) any |= acc[j];
    return !(any & 0x80000000u);
  } else {
    uint16_t m = dtype == GPT_F16 ? 0x7c00 : 0x7f80, one = dtype == GPT_F16 ? 0x0400 : 0x0080;
    uint16_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, h[8], any = 0;
    for (; k + 8 <= n; k += 8) {
      memcpy(h, p + 2 * k, sizeof(h));
      for (int j = 0; j < 8; j++) acc[j] |= (uint16_t)((h[j] & m) + one);
    }
    for (; k < n; k++) {
      memcpy(h, p + 2 * k, 2);
      acc[0] |= (uint16_t)((h[0] & m) + one);
    }
    for (int j = 0; j < 8; j++) any |= acc[j];
    return !(any & 0x8000);
  }
}

/* Moves stored elements [first, first+n) of a Conv1D weight (nIn, nOut) into
** its (nOut, nIn) memory. Whole stored rows go in 16 x 16 tiles, so that
** reads and writes both stay within a few cache lines; the partial rows at
** either end go one element at a time. Returns a non-finite stored element
** (the first one met), or -1. */
static int64_t move_transposed(void *dst, int dd, int sd, const void *src, int64_t first,
                               int64_t n, int64_t nIn, int64_t nOut) {
  int64_t bad = -1, e = first, end = first + n;
  while (e < end && (e % nOut != 0 || end - e < nOut)) { /* head, or a short run */
    int64_t stop = e % nOut != 0 ? e + (nOut - e % nOut) : end;
    if (stop > end) stop = end;
    for (; e < stop; e++)
      if (!put_elem(dst, dd, (e % nOut) * nIn + e / nOut, sd, src, e - first) && bad < 0)
        bad = e;
    if (e % nOut != 0) return bad;
  }
  int64_t r0 = e / nOut, r1 = end / nOut; /* whole stored rows r0..r1 */
  for (int64_t rb = r0; rb < r1; rb += 16) {
    int64_t rEnd = rb + 16 < r1 ? rb + 16 : r1;
    for (int64_t cb = 0; cb < nOut; cb += 16) {
      int64_t cEnd = cb + 16 < nOut ? cb + 16 : nOut;
      for (int64_t c = cb; c < cEnd; c++)
        for (int64_t r = rb; r < rEnd; r++)
          if (!put_elem(dst, dd, c * nIn + r, sd, src, r * nOut + c - first) && bad < 0)
            bad = r * nOut + c;
    }
  }
  for (e = r1 * nOut; e < end; e++)
    if (!put_elem(dst, dd, (e % nOut) * nIn + e / nOut, sd, src, e - first) && bad < 0)
      bad = e;
  return bad;
}

/* Converts (and for Conv1D weights transposes) a run of stored elements into
** the tensor's memory. Stored element e of an (in, out) weight is row e/out,
** column e%out; in memory it goes to (column, row) of the (out, in) matrix.
** q8_0 rows are already in memory order: blocks are checked and copied, or
** widened for a tensor held in f32 or f16. */
int gpt_model_load(GPTModel *m, int i, int dtype, int64_t first, int64_t n,
                   const void *src, char *err, size_t n_err) {
  GPTTensorInfo info;
  int64_t bad = -1;
  if (i < 0 || i >= m->n_tensors || (gpt_dtype_size(dtype) == 0 && dtype != GPT_Q8_0)) {
    snprintf(err, n_err, "bad tensor index %d or dtype %d", i, dtype);
    return -1;
  }
  gpt_tensor_info(&m->cfg, m->has_lm_head, i, &info);
  if (first < 0 || n < 0 || first > info.n_elem - n) {
    snprintf(err, n_err, "tensor %s: elements %lld..%lld outside its %lld",
             info.name, (long long)first, (long long)(first + n), (long long)info.n_elem);
    return -1;
  }
  void *dst = m->tensor[i];
  int dd = m->dtype[i];
  if (dtype == GPT_Q8_0) {
    const uint8_t *s = (const uint8_t *)src;
    if (gpt_tensor_bytes(&info, GPT_Q8_0) < 0 || first % GPT_Q8_BLOCK || n % GPT_Q8_BLOCK) {
      snprintf(err, n_err, "tensor %s cannot be read from q8_0 at %lld+%lld", info.name,
               (long long)first, (long long)n);
      return -1;
    }
    for (int64_t b = 0; b < n / GPT_Q8_BLOCK; b++) {
      const uint8_t *blk = s + b * GPT_Q8_BYTES;
      uint16_t h = (uint16_t)(blk[0] | (blk[1] << 8));
      int ok = (h & 0x7c00) != 0x7c00;
      for (int j = 0; j < GPT_Q8_BLOCK; j++) ok &= blk[2 + j] != 0x80;
      if (!ok) {
        snprintf(err, n_err, "tensor %s: q8_0 block %lld has a non-finite scale or a "
                 "value of -128", info.name, (long long)((first / GPT_Q8_BLOCK) + b));
        return -1;
      }
    }
    if (dd == GPT_Q8_0) {
      memcpy((uint8_t *)dst + first / GPT_Q8_BLOCK * GPT_Q8_BYTES, s,
             (size_t)(n / GPT_Q8_BLOCK * GPT_Q8_BYTES));
    } else {
      float tmp[GPT_Q8_BLOCK];
      for (int64_t b = 0; b < n / GPT_Q8_BLOCK; b++) {
        gpt_kernels()->q8_to_f32(tmp, s + b * GPT_Q8_BYTES, 1);
        for (int j = 0; j < GPT_Q8_BLOCK; j++) {
          int64_t e = first + b * GPT_Q8_BLOCK + j;
          if (dd == GPT_F32) ((float *)dst)[e] = tmp[j];
          else ((uint16_t *)dst)[e] = gpt_f32_to_f16(tmp[j]);
        }
      }
    }
    return 0;
  }
  if (dd == GPT_Q8_0) {
    snprintf(err, n_err, "tensor %s is held as q8_0 and takes q8_0 rows only, not %s",
             info.name, gpt_dtype_name(dtype));
    return -1;
  }
  if (dd == dtype && all_finite(dtype, src, n) &&
      (!info.transposed || (first % info.shape[1] == 0 && n % info.shape[1] == 0))) {
    /* the common cases: a straight copy, or whole rows to transpose */
    int esz = gpt_dtype_size(dtype);
    int64_t nOut = info.transposed ? info.shape[1] : 1, r0 = first / nOut;
    if (!info.transposed)
      memcpy((char *)dst + first * esz, src, (size_t)(n * esz));
    else if (esz == 4)
      gpt_kernels()->transpose_f32((float *)dst + r0, (size_t)info.shape[0], src, (size_t)nOut,
                                   (int)(n / nOut), (int)nOut);
    else
      gpt_kernels()->transpose_u16((uint16_t *)dst + r0, (size_t)info.shape[0], src,
                                   (size_t)nOut, (int)(n / nOut), (int)nOut);
    return 0;
  }
  /* conversions, partial rows, and runs with a NaN or Inf to report */
  if (!info.transposed) {
    for (int64_t k = 0; k < n; k++)
      if (!put_elem(dst, dd, first + k, dtype, src, k) && bad < 0) bad = first + k;
  } else {
    bad = move_transposed(dst, dd, dtype, src, first, n, info.shape[0], info.shape[1]);
  }
  if (bad >= 0) {
    snprintf(err, n_err, "tensor %s has a NaN or Inf at element %lld%s", info.name,
             (long long)bad, dd == GPT_F16 && dtype != GPT_F16 ? " (as f16)" : "");
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- state */

/* Grows the batch scratch to hold T tokens against up to cap keys, with
** attention scores for nth threads. */
static int state_reserve(GPTState *s, int T, int nth) {
  size_t C = (size_t)s->m->cfg.n_embd;
  if (T > s->n_scratch) {
    float *p[5];
    size_t n[5] = {T * C, T * C, T * 3 * C, T * C, T * 4 * C};
    for (int i = 0; i < 5; i++) {
      p[i] = malloc(n[i] * sizeof(float));
      if (!p[i]) {
        while (i-- > 0) free(p[i]);
        return -1;
      }
    }
    free(s->x); free(s->xn); free(s->qkv); free(s->atty); free(s->fc);
    s->x = p[0]; s->xn = p[1]; s->qkv = p[2]; s->atty = p[3]; s->fc = p[4];
    s->n_scratch = T;
    free(s->att);
    s->att = 0;
    s->n_att = 0;
  }
  if (nth > s->n_att || !s->att) {
    float *a = malloc((size_t)nth * s->n_scratch * (size_t)s->cap * sizeof(float));
    if (!a) return -1;
    free(s->att);
    s->att = a;
    s->n_att = nth;
  }
  return 0;
}

/* Grows the per-thread buffers for widened compact weights. */
static int state_reserve_wide(GPTState *s, int nth) {
  if (nth <= s->n_wide) return 0;
  float *w = malloc((size_t)nth * GEMM_COLS * (size_t)s->m->max_k * sizeof(float));
  if (!w) return -1;
  free(s->wide);
  s->wide = w;
  s->n_wide = nth;
  return 0;
}

/* A state with a KV cache for max_T positions, clamped to the context. */
GPTState *gpt_state_new(const GPTModel *m, int max_T) {
  if (max_T < 1) max_T = 1;
  if (max_T > m->cfg.n_ctx) max_T = m->cfg.n_ctx;
  GPTState *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->m = m;
  s->cap = max_T;
  size_t C = (size_t)m->cfg.n_embd;
  size_t n = (size_t)m->cfg.n_layer * (size_t)max_T * C;
  s->k_cache = malloc(n * sizeof(float));
  s->v_cache = malloc(n * sizeof(float));
  s->tmp = malloc(4 * C * sizeof(float));
  s->xq.q = malloc(4 * C);
  s->xq.aq = malloc(4 * C);
  s->xq.d = malloc((4 * C / GPT_Q8_BLOCK + 1) * sizeof(float));
  if (!s->k_cache || !s->v_cache || !s->tmp || !s->xq.q || !s->xq.aq || !s->xq.d ||
      state_reserve(s, 1, 1)) {
    gpt_state_free(s);
    return NULL;
  }
  return s;
}

void gpt_state_free(GPTState *s) {
  if (!s) return;
  free(s->k_cache); free(s->v_cache);
  free(s->x); free(s->xn); free(s->qkv); free(s->atty); free(s->fc); free(s->att);
  free(s->logit_block);
  free(s->tmp);
  free(s->xq.q); free(s->xq.aq); free(s->xq.d);
  free(s->wide);
  free(s);
}

int gpt_state_len(const GPTState *s) { return s->len; }
int gpt_state_capacity(const GPTState *s) { return s->cap; }
void gpt_state_truncate(GPTState *s, int len) {
  if (len >= 0 && len < s->len) s->len = len;
}

/* --------------------------------------------------------------- layers */

/* What every layer function needs: the model, the state, the team that runs
** the pass and the kernel set. */
typedef struct Pass {
  const GPTModel *m;
  GPTState *s;
  GPTTeam *team;
  const GPTKernels *k;
} Pass;

static Mat mat_of(const GPTModel *m, int i) {
  GPTTensorInfo info;
  int64_t rows, k;
  gpt_tensor_info(&m->cfg, m->has_lm_head, i, &info);
  gpt_tensor_matrix(&info, &rows, &k);
  Mat w = {m->tensor[i], m->dtype[i], (int)rows, (int)k};
  return w;
}

/* dst (n,) = row r of w, widened to f32. */
static void mat_row(const GPTKernels *k, const Mat *w, int r, int c0, int n, float *dst) {
  if (w->dtype == GPT_F32) {
    memcpy(dst, (const float *)w->w + (size_t)r * w->k + c0, (size_t)n * sizeof(float));
  } else if (w->dtype == GPT_F16) {
    k->f16_to_f32(dst, (const uint16_t *)w->w + (size_t)r * w->k + c0, (size_t)n);
  } else {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * (w->k / GPT_Q8_BLOCK) * GPT_Q8_BYTES;
    k->q8_to_f32(dst, row + (size_t)(c0 / GPT_Q8_BLOCK) * GPT_Q8_BYTES, (size_t)n / GPT_Q8_BLOCK);
  }
}

/* out (T, C) = wte[tokens] + wpe[pos0 + t] */
static void encoder_forward(const Pass *p, float *out, const int *tokens, const Mat *wte,
                            const Mat *wpe, int pos0, int T, int C) {
  float *pe = p->s->tmp;
  for (int t = 0; t < T; t++) {
    float *o = out + (size_t)t * C;
    mat_row(p->k, wte, tokens[t], 0, C, o);
    mat_row(p->k, wpe, pos0 + t, 0, C, pe);
    for (int c = 0; c < C; c++) o[c] = o[c] + pe[c];
  }
}

/* out (T, C) = LayerNorm(inp (T, C)) * w + b for rows t0..t1; statistics in
** double so long rows keep float32's last digit. */
static void layernorm_rows(float *out, const float *inp, const float *w, const float *b,
                           int t0, int t1, int C, double eps) {
  for (int t = t0; t < t1; t++) {
    const float *x = inp + (size_t)t * C;
    double sum = 0, sq = 0;
    for (int c = 0; c < C; c++) sum += x[c];
    double mean = sum / C;
    for (int c = 0; c < C; c++) { double d = x[c] - mean; sq += d * d; }
    float rstd = (float)(1.0 / sqrt(sq / C + eps)), fmean = (float)mean;
    float *o = out + (size_t)t * C;
    for (int c = 0; c < C; c++) o[c] = (x[c] - fmean) * rstd * w[c] + b[c];
  }
}

typedef struct LnTask {
  float *out; const float *inp, *w, *b; int T, C; double eps;
} LnTask;

static void ln_task(void *arg, int ith, int nth) {
  LnTask *a = (LnTask *)arg;
  int t0, t1;
  gpt_team_split(a->T, 1, ith, nth, &t0, &t1);
  layernorm_rows(a->out, a->inp, a->w, a->b, t0, t1, a->C, a->eps);
}

static void layernorm_forward(const Pass *p, float *out, const float *inp, const float *w,
                              const float *b, int T, int C, double eps) {
  LnTask a = {out, inp, w, b, T, C, eps};
  if (T < 4 || (int64_t)T * C < PAR_MIN_GEMV) layernorm_rows(out, inp, w, b, 0, T, C, eps);
  else gpt_team_run(p->team, ln_task, &a);
}

/* x (n,) += y (n,), split over the team for a batch. */
typedef struct AddTask { float *x; const float *y; size_t n; } AddTask;

static void add_task(void *arg, int ith, int nth) {
  AddTask *a = (AddTask *)arg;
  int lo, hi, units = (int)((a->n + 1023) / 1024);
  gpt_team_split(units, 1, ith, nth, &lo, &hi);
  size_t end = (size_t)hi * 1024 < a->n ? (size_t)hi * 1024 : a->n;
  for (size_t i = (size_t)lo * 1024; i < end; i++) a->x[i] += a->y[i];
}

static void residual_forward(const Pass *p, float *x, const float *y, size_t n) {
  AddTask a = {x, y, n};
  if (n < PAR_MIN_GEMV) add_task(&a, 0, 1);
  else gpt_team_run(p->team, add_task, &a);
}

/* A matrix product: out (T, OC) = inp (T, K) @ W^T + bias, W (OC, K). With
** add, out += the product instead (decode only: the residual); with gelu,
** gelu is applied to the result. */
typedef struct MatTask {
  const Pass *p;
  float *out;
  const float *inp;
  Mat w;
  const float *bias;
  int T;
  int add, gelu;
  int chunk;            /* rows (decode) or columns (prefill) a claim takes */
  atomic_int next;      /* the next unclaimed chunk */
  const GPTBlas *blas;  /* OpenBLAS where it may be called (blas.h), or NULL */
} MatTask;

/* Chunks are claimed, not assigned: a member that runs late (on a busy
** machine) takes fewer, and no one waits for it. Which member computes a
** value never changes the value. */
static int claim(atomic_int *pNext) { return atomic_fetch_add(pNext, 1); }

/* Decode: rows of W in chunks of a->chunk rows (a multiple of 64 on the
** cblas_sgemv path, of 4 otherwise). */
static void gemv_task(void *arg, int ith, int nth) {
  MatTask *a = (MatTask *)arg;
  const GPTKernels *k = a->p->k;
  int K = a->w.k, mode = a->add ? GPT_GEMV_ADD : GPT_GEMV_SET, ch;
  (void)ith; (void)nth;
  while ((ch = claim(&a->next)) * a->chunk < a->w.rows) {
    int r0 = ch * a->chunk, r1 = r0 + a->chunk < a->w.rows ? r0 + a->chunk : a->w.rows;
    if (a->w.dtype == GPT_F32 && k->blas_gemv && a->blas) {
      /* cblas_sgemv as sgemv(bias) with beta 1, 64 rows a call (OpenBLAS's
      ** rounding may depend on how many rows it is handed) */
      float *y = a->add ? a->p->s->tmp : a->out;
      if (a->bias) memcpy(y + r0, a->bias + r0, (size_t)(r1 - r0) * sizeof(float));
      else memset(y + r0, 0, (size_t)(r1 - r0) * sizeof(float));
      for (int c = r0; c < r1; c += 64)
        a->blas->sgemv(CblasRowMajor, CblasNoTrans, r1 - c < 64 ? r1 - c : 64, K, 1.0f,
                    (const float *)a->w.w + (size_t)c * K, K, a->inp, 1, 1.0f, y + c, 1);
      if (a->add)
        for (int r = r0; r < r1; r++) a->out[r] += y[r];
    } else if (a->w.dtype == GPT_F32) {
      k->gemv_f32(a->out, (const float *)a->w.w, a->inp, a->bias, r0, r1, K, mode);
    } else if (a->w.dtype == GPT_F16) {
      k->gemv_f16(a->out, (const uint16_t *)a->w.w, a->inp, a->bias, r0, r1, K, mode);
    } else {
      k->gemv_q8(a->out, (const uint8_t *)a->w.w, &a->p->s->xq, a->bias, r0, r1, K, mode);
    }
    if (a->gelu) k->gelu(a->out + r0, (size_t)(r1 - r0));
  }
}

/* Prefill: out's columns (W's rows) in fixed chunks of GEMM_COLS, the chunks
** split over the team; each chunk is one single-threaded sgemm (or gemm_f32
** for a short batch), compact weights widened into the member's buffer
** first. The chunks do not depend on the team size because OpenBLAS's
** rounding depends on the width of the product it is handed: so each value
** comes out the same for any threads.
** Members claim chunks as they go (see claim). */
static void gemm_task(void *arg, int ith, int nth) {
  MatTask *a = (MatTask *)arg;
  int K = a->w.k, OC = a->w.rows, T = a->T, ch;
  (void)nth;
  while ((ch = claim(&a->next)) * GEMM_COLS < OC) {
    int c0 = ch * GEMM_COLS, n = OC - c0 < GEMM_COLS ? OC - c0 : GEMM_COLS;
    const float *w = (const float *)a->w.w + (size_t)c0 * K;
    if (a->w.dtype != GPT_F32) {
      float *wide = a->p->s->wide + (size_t)ith * GEMM_COLS * a->p->m->max_k;
      for (int i = 0; i < n; i++) mat_row(a->p->k, &a->w, c0 + i, 0, K, wide + (size_t)i * K);
      w = wide;
    }
    if (T <= GEMM_SMALL_T || !a->blas) {
      a->p->k->gemm_f32(a->out + c0, (size_t)OC, w, a->inp, (size_t)K, T,
                        a->bias ? a->bias + c0 : NULL, 0, n, K);
    } else {
      for (int t = 0; t < T; t++) {
        float *o = a->out + (size_t)t * OC + c0;
        if (a->bias) memcpy(o, a->bias + c0, (size_t)n * sizeof(float));
        else memset(o, 0, (size_t)n * sizeof(float));
      }
      a->blas->sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n, K, 1.0f, a->inp, K, w, K,
                     1.0f, a->out + c0, OC);
    }
    if (a->gelu)
      for (int t = 0; t < T; t++) a->p->k->gelu(a->out + (size_t)t * OC + c0, (size_t)n);
  }
}

static int matmul_forward(const Pass *p, float *out, const float *inp, const Mat *w,
                          const float *bias, int T, int add, int gelu) {
  MatTask a = {p, out, inp, *w, bias, T, add, gelu, 0, 0, NULL};
  /* asked once a pass: OpenBLAS only where its allocations cannot fail */
  if (T > GEMM_SMALL_T || p->k->blas_gemv) a.blas = gpt_blas();
  if (T == 1) {
    /* about eight chunks a member, in whole 4-row groups (64 for sgemv) */
    int nth = gpt_team_size(p->team);
    int unit = p->k->blas_gemv && w->dtype == GPT_F32 && a.blas ? 64 : 4;
    int chunk = (w->rows + 8 * nth - 1) / (8 * nth);
    if (chunk < 16) chunk = 16;
    a.chunk = (chunk + unit - 1) / unit * unit;
    if (w->dtype == GPT_Q8_0) p->k->q8_quantize_act(&p->s->xq, inp, w->k);
    if ((int64_t)w->rows * w->k < PAR_MIN_GEMV) gemv_task(&a, 0, 1);
    else gpt_team_run(p->team, gemv_task, &a);
  } else {
    if (w->dtype != GPT_F32 && state_reserve_wide(p->s, gpt_team_size(p->team)))
      return GPT_NOMEM;
    if ((int64_t)T * w->rows * w->k < PAR_MIN_GEMM) gemm_task(&a, 0, 1);
    else gpt_team_run(p->team, gemm_task, &a);
  }
  return GPT_OK;
}

/* In place: each row of p (T, ld) becomes softmax over its first n_i entries,
** n_i = P + t + 1 (causal); the masked tail is zeroed. */
static void causal_softmax(const GPTKernels *k, float *p, int T, int ld, int P) {
  for (int t = 0; t < T; t++) {
    float *row = p + (size_t)t * ld;
    int n = P + t + 1;
    float mx = row[0];
    for (int j = 1; j < n; j++) if (row[j] > mx) mx = row[j];
    float sum = k->exp_sum(row, n, mx, 1.0f);
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) row[j] *= inv;
    for (int j = n; j < ld; j++) row[j] = 0.0f;
  }
}

/* Causal multi-head attention for T new queries against P+T cached keys.
** qkv (T, 3C) -> out (T, C); k, v (P+T, C) are this layer's cache rows.
** Heads are split over the team; each member has its own (T, P+T) scores. */
typedef struct AttTask {
  const Pass *p;
  float *out;
  const float *qkv, *k, *v;  /* k, v: this layer's cache, (NH, cap, hd) */
  int P, T, C, NH, cap, layer;
  GPTForwardIO *io;
  int rc;
  atomic_int next;     /* the next unclaimed head */
} AttTask;

static void attention_heads(AttTask *a, int h0, int h1, float *att) {
  const GPTKernels *kern = a->p->k;
  int C = a->C, T = a->T, P = a->P, hd = C / a->NH, nk = P + T;
  float scale = 1.0f / sqrtf((float)hd);
  GPTForwardIO *io = a->io;
  for (int h = h0; h < h1; h++) {
    const float *qh = a->qkv + h * hd;
    const float *kh = a->k + (size_t)h * a->cap * hd, *vh = a->v + (size_t)h * a->cap * hd;
    /* scores (T, nk) = Q_h (T, hd) @ K_h^T, each query against the P + t + 1
    ** keys it sees (the decode kernels, not sgemm, whose buffer allocation
    ** never gives up: blas.c) */
    for (int t = 0; t < T; t++)
      kern->att_scores(att + (size_t)t * nk, qh + (size_t)t * 3 * C, kh, (size_t)hd, P + t + 1,
                       hd, scale);
    causal_softmax(kern, att, T, nk, P);
    if (io && io->on_attention && io->want_attention &&
        io->want_attention(io->ctx, a->layer, h) &&
        io->on_attention(io->ctx, a->layer, h, P, T, nk, att)) {
      a->rc = GPT_ABORTED;
      return;
    }
    float *oh = a->out + h * hd;
    /* out_h (T, hd) = P (T, nk) @ V_h (nk, hd), over the unmasked keys */
    for (int t = 0; t < T; t++)
      kern->att_values(oh + (size_t)t * C, att + (size_t)t * nk, vh, (size_t)hd, P + t + 1, hd);
  }
}

static void att_task(void *arg, int ith, int nth) {
  AttTask *a = (AttTask *)arg;
  int h;
  (void)nth;
  while ((h = claim(&a->next)) < a->NH)
    attention_heads(a, h, h + 1, a->p->s->att + (size_t)ith * a->T * (a->P + a->T));
}

static int attention_forward(const Pass *p, float *out, const float *qkv, const float *k,
                             const float *v, int P, int T, int C, int NH, int layer,
                             GPTForwardIO *io) {
  AttTask a = {p, out, qkv, k, v, P, T, C, NH, p->s->cap, layer, io, GPT_OK, 0};
  if (io && io->on_attention) {
    /* callbacks run on the caller's thread, one head after another */
    attention_heads(&a, 0, NH, p->s->att);
  } else if ((int64_t)T * (P + T) * C < PAR_MIN_GEMV) {
    att_task(&a, 0, 1);
  } else {
    gpt_team_run(p->team, att_task, &a);
  }
  return a.rc;
}

/* ---------------------------------------------------------- forward pass */

/* Checks the batch and embeds it into s->x. */
static int batch_begin(const Pass *p, const int *tokens, int n, char *err, size_t n_err) {
  const GPTModel *m = p->m;
  GPTState *s = p->s;
  const GPTConfig *c = &m->cfg;
  if (n < 1 || n > s->cap - s->len) {
    snprintf(err, n_err, "%d tokens after %d do not fit the cache of %d positions", n,
             s->len, s->cap);
    return GPT_ERROR;
  }
  for (int t = 0; t < n; t++) {
    if (tokens[t] < 0 || tokens[t] >= c->vocab_size) {
      snprintf(err, n_err, "token id %d at position %d is outside the vocabulary of %d",
               tokens[t], s->len + t, c->vocab_size);
      return GPT_ERROR;
    }
  }
  if (state_reserve(s, n, gpt_team_size(p->team))) {
    snprintf(err, n_err, "out of memory for a batch of %d tokens", n);
    return GPT_NOMEM;
  }
  Mat wte = mat_of(m, 0), wpe = mat_of(m, 1);
  encoder_forward(p, s->x, tokens, &wte, &wpe, s->len, n, c->n_embd);
  s->batch_T = n;
  return GPT_OK;
}

/* True when every value of x (n,) is finite: x * 0 is NaN exactly for an
** infinity or a NaN, and the sum keeps it (vectorizes; no -ffast-math). */
static int finite_f32(const float *x, size_t n) {
  float acc = 0.0f;
  for (size_t i = 0; i < n; i++) acc += x[i] * 0.0f;
  return acc == 0.0f;
}

/* Block l over the batch: x += attn(ln_1(x)); x += mlp(ln_2(x)). Keys and
** values of the batch are appended to layer l's cache. */
static int batch_layer(const Pass *p, int l, GPTForwardIO *io) {
  const GPTModel *m = p->m;
  GPTState *s = p->s;
  const GPTConfig *c = &m->cfg;
  int C = c->n_embd, T = s->batch_T, P = s->len, base = 2 + l * L_COUNT, rc;
  int NH = c->n_head, hd = C / NH;
  const float *w[L_COUNT];
  for (int i = 0; i < L_COUNT; i++) w[i] = (const float *)m->tensor[base + i];
  Mat qkvw = mat_of(m, base + L_QKVW), projw = mat_of(m, base + L_PROJW);
  Mat fcw = mat_of(m, base + L_FCW), fcprojw = mat_of(m, base + L_FCPROJW);
  float *kc = s->k_cache + (size_t)l * s->cap * C;
  float *vc = s->v_cache + (size_t)l * s->cap * C;
  if (T < 1) return GPT_ERROR;
  if (io && io->should_stop && io->should_stop(io->ctx)) return GPT_ABORTED;
  if (state_reserve(s, T, gpt_team_size(p->team))) return GPT_NOMEM;

  layernorm_forward(p, s->xn, s->x, w[L_LN1W], w[L_LN1B], T, C, c->ln_eps);
  if ((rc = matmul_forward(p, s->qkv, s->xn, &qkvw, w[L_QKVB], T, 0, 0))) return rc;
  for (int t = 0; t < T; t++) {
    const float *row = s->qkv + (size_t)t * 3 * C;
    for (int h = 0; h < NH; h++) {
      size_t at = ((size_t)h * s->cap + (size_t)(P + t)) * hd;
      memcpy(kc + at, row + C + h * hd, (size_t)hd * sizeof(float));
      memcpy(vc + at, row + 2 * C + h * hd, (size_t)hd * sizeof(float));
    }
  }
  rc = attention_forward(p, s->atty, s->qkv, kc, vc, P, T, C, NH, l, io);
  if (rc) return rc;
  if (T == 1) { /* the residual is added by the product itself */
    if ((rc = matmul_forward(p, s->x, s->atty, &projw, w[L_PROJB], 1, 1, 0))) return rc;
  } else {
    if ((rc = matmul_forward(p, s->xn, s->atty, &projw, w[L_PROJB], T, 0, 0))) return rc;
    residual_forward(p, s->x, s->xn, (size_t)T * C);
  }

  layernorm_forward(p, s->xn, s->x, w[L_LN2W], w[L_LN2B], T, C, c->ln_eps);
  if ((rc = matmul_forward(p, s->fc, s->xn, &fcw, w[L_FCB], T, 0, 1))) return rc;
  if (T == 1) {
    if ((rc = matmul_forward(p, s->x, s->fc, &fcprojw, w[L_FCPROJB], 1, 1, 0))) return rc;
  } else {
    if ((rc = matmul_forward(p, s->xn, s->fc, &fcprojw, w[L_FCPROJB], T, 0, 0))) return rc;
    residual_forward(p, s->x, s->xn, (size_t)T * C);
  }
  /* (T, C): weights that overflow float32 show here first, in every caller */
  if (!finite_f32(s->x, (size_t)T * C)) {
    s->overflow = "hidden state";
    return GPT_OVERFLOW;
  }
  return GPT_OK;
}

/* ln_f, then whatever io asks for: the hidden rows, per-position logits in
** blocks, the last token's logits. Commits the batch to the cache, unless a
** value overflowed (GPT_OVERFLOW, with s->overflow saying where). */
static int batch_end(const Pass *p, GPTForwardIO *io) {
  const GPTModel *m = p->m;
  GPTState *s = p->s;
  const GPTConfig *c = &m->cfg;
  int C = c->n_embd, V = c->vocab_size, T = s->batch_T, nBlock = c->n_layer * L_COUNT, rc;
  Mat head = mat_of(m, m->has_lm_head ? 4 + nBlock : 0);
  if (T < 1) return GPT_ERROR;
  layernorm_forward(p, s->xn, s->x, (const float *)m->tensor[2 + nBlock],
                    (const float *)m->tensor[3 + nBlock], T, C, c->ln_eps);
  if (!finite_f32(s->xn, (size_t)T * C)) {
    s->overflow = "hidden state";
    return GPT_OVERFLOW;
  }
  int P = s->len;
  s->len += T;
  s->batch_T = 0;
  if (!io) return GPT_OK;
  if (io->hidden) memcpy(io->hidden, s->xn, (size_t)T * C * sizeof(float));
  if (io->on_logits) {
    if (!s->logit_block) {
      s->logit_block = malloc((size_t)LOGIT_ROWS * V * sizeof(float));
      if (!s->logit_block) return GPT_NOMEM;
    }
    for (int t0 = 0; t0 < T; t0 += LOGIT_ROWS) {
      int rows = T - t0 < LOGIT_ROWS ? T - t0 : LOGIT_ROWS;
      /* (rows, V) = xn (rows, C) @ head^T; one row goes through the batch
      ** path too, so that it matches the rows of a longer block */
      MatTask a = {p, s->logit_block, s->xn + (size_t)t0 * C, head, NULL, rows, 0, 0, 0, 0,
                   rows > GEMM_SMALL_T ? gpt_blas() : NULL};
      if (head.dtype != GPT_F32 && state_reserve_wide(s, gpt_team_size(p->team)))
        return GPT_NOMEM;
      gpt_team_run(p->team, gemm_task, &a);
      if (!finite_f32(s->logit_block, (size_t)rows * V)) {
        s->overflow = "logits";
        s->len = P;
        return GPT_OVERFLOW;
      }
      if (io->on_logits(io->ctx, P + t0, rows, s->logit_block)) return GPT_ABORTED;
    }
  }
  if (io->logits) {
    /* logits (V,) = head (V, C) @ xn[T-1] */
    if ((rc = matmul_forward(p, io->logits, s->xn + (size_t)(T - 1) * C, &head, NULL, 1, 0, 0)))
      return rc;
    if (!finite_f32(io->logits, (size_t)V)) {
      s->overflow = "logits";
      s->len = P;
      return GPT_OVERFLOW;
    }
  }
  return GPT_OK;
}

/* A pass's team and kernels, for the thread count of the calling thread. */
static void pass_open(Pass *p, const GPTModel *m, GPTState *s) {
  p->m = m;
  p->s = s;
  p->k = gpt_kernels();
  p->team = gpt_team_acquire(gpt_threads_get());
}

static void pass_close(Pass *p) { gpt_team_release(p->team); }

int gpt_batch_begin(const GPTModel *m, GPTState *s, const int *tokens, int n,
                    char *err, size_t n_err) {
  Pass p;
  pass_open(&p, m, s);
  int rc = batch_begin(&p, tokens, n, err, n_err);
  pass_close(&p);
  return rc;
}

int gpt_batch_layer(const GPTModel *m, GPTState *s, int l, GPTForwardIO *io) {
  Pass p;
  if (l < 0 || l >= m->cfg.n_layer) return GPT_ERROR;
  pass_open(&p, m, s);
  int rc = batch_layer(&p, l, io);
  pass_close(&p);
  return rc;
}

int gpt_batch_end(const GPTModel *m, GPTState *s, GPTForwardIO *io) {
  Pass p;
  pass_open(&p, m, s);
  int rc = batch_end(&p, io);
  pass_close(&p);
  return rc;
}

/* The whole pass: begin, every layer, end, on one team. On failure the cache
** keeps its old length, so a caller can retry or stop cleanly. */
int gpt_forward(const GPTModel *m, GPTState *s, const int *tokens, int n,
                GPTForwardIO *io, char *err, size_t n_err) {
  Pass p;
  pass_open(&p, m, s);
  int rc = batch_begin(&p, tokens, n, err, n_err);
  for (int l = 0; rc == GPT_OK && l < m->cfg.n_layer; l++) rc = batch_layer(&p, l, io);
  if (rc == GPT_OK) rc = batch_end(&p, io);
  pass_close(&p);
  if (rc != GPT_OK) {
    s->batch_T = 0;
    if (rc == GPT_NOMEM) snprintf(err, n_err, "out of memory");
    if (rc == GPT_ABORTED) snprintf(err, n_err, "interrupted");
    if (rc == GPT_OVERFLOW)
      snprintf(err, n_err, "non-finite %s: the weights overflow float32",
               s->overflow ? s->overflow : "values");
  }
  return rc;
}
