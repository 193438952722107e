/*
** The decoder's forward pass, for every architecture of the slot tables
** below (GPT-2, Llama, Qwen2, Qwen3).
**
** How it works: all weights live in one arena, addressed through a pointer
** table whose sizes come from the config (llm.c's layout); each tensor is
** held as f32, or a 2-D one as f16, q8_0 or a 4-bit block format (see gpt.h).
** A forward pass appends n tokens to a KV cache: n == 1 is a decode step,
** done with the gemv kernels of kernels.h on the weights as they are, which
** reads every weight once and is bound by memory bandwidth; n > 1 (a prefill,
** or gpt_forward_seqs' rows of several sequences, each with its own cache)
** runs the kernels' tiled gemm, which gives each token exactly the value the
** gemv would give it alone.
**
** Every pass runs on a team of the thread pool (threads.h): matrix products
** split their output rows (decode) or columns (prefill), attention splits the
** heads, LayerNorm and the residual the tokens. Each output value is
** computed by one thread, the same way whatever the split, so results do not
** depend on the thread count. Layers are free functions with their shapes
** in comments; B is always 1 here, T is the number of new tokens, P the
** number of cached positions before them.
*/
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "blas.h"
#include "gpt.h"
#include "gpt_internal.h"
#include "kernels.h"
#include "kernels_q4.h"
#include "threads.h"

/* A weight matrix as a product reads it: (rows, k) in dtype. */
typedef struct Mat {
  const void *w;
  int dtype;
  int rows, k;
  int packed;  /* q8_0 rows packed for the kernels (gpt_model_ready) */
} Mat;

/* One block's weights, resolved once at load from the slot table: the pass
** reads these and never a tensor index. Absent parts are NULL. q, k and v
** (gate and up) that lie one after another in the arena are also one fused
** matrix, multiplied in one pass over the input. */
typedef struct Layer {
  const float *attn_norm_w, *attn_norm_b, *ffn_norm_w, *ffn_norm_b;
  const float *q_norm, *k_norm;       /* (hd,) per-head RMSNorm (Qwen3) */
  Mat q, k, v, o, gate, up, down;
  const float *q_b, *k_b, *v_b, *o_b, *up_b, *down_b;
  Mat qkv;                            /* q|k|v fused, or .w NULL */
  const float *qkv_b;                 /* its bias when every part has one */
  Mat gate_up;                        /* gate|up fused, or .w NULL */
} Layer;

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
  int q8_packed;         /* the q8_0 tensors' rows are packed (gpt_model_ready) */
  /* resolved from the pointer table */
  int rms_norm, rope, swiglu;
  int n_kv_head, head_dim, d_q, d_kv, d_ff;
  Mat tok_emb, pos_emb, head;
  const float *out_norm_w, *out_norm_b;
  Layer *layer;          /* (n_layer,) */
  int n_live;            /* ids >= n_live have no token: their logits are -inf */
  double *inv_freq;      /* (hd/2,) RoPE frequencies, llama3 scaling applied */
};

struct GPTState {
  const GPTModel *m;
  int cap;               /* max positions (<= n_ctx) */
  int len;               /* positions in the cache */
  /* head-major, so that a decode step reads each head's keys and values
  ** in order (q8_0 decode at 128-192 positions, 2 threads: the attention
  ** kernels took 8.3% of the CPU samples in the (L, cap, C) layout, 6.1%
  ** in this one); only the key/value heads, and only n_cache positions,
  ** grown as passes need them */
  int n_cache;           /* positions allocated (<= cap) */
  float *k_cache;        /* (L, KVH, n_cache, hd) */
  float *v_cache;        /* (L, KVH, n_cache, hd) */
  /* scratch for a batch of up to n_scratch tokens */
  int n_scratch;
  float *x;              /* (T, C) residual stream */
  float *xn;             /* (T, C) norm output */
  float *qkv;            /* (T, Q + 2 KV) */
  float *atty;           /* (T, Q) attention output before the output projection */
  float *fc;             /* (T, F) GELU MLP, (T, 2F) gate|up for SwiGLU */
  float *hid;            /* (T, F) silu(gate) * up */
  float *rope_cs;        /* (T, hd/2, 2) cos, sin of the batch's positions */
  int n_att;             /* threads the att scratch is sized for */
  int att_rows;          /* query rows a member's part of it holds */
  int att_keys;          /* keys a row of it holds */
  float *att;            /* (n_att, att_rows, att_keys) scores, a member's own */
  size_t n_att_floats;   /* att's size */
  float *logit_block;    /* (LOGIT_ROWS, V) for per-position logits */
  float *tmp;            /* (max(2F, Q, C),) decode scratch */
  GPTQ8Act xq;           /* (n_xq, widest row) inputs quantized for q8_0 rows */
  void *xq_sliced;       /* a decode input laid out for packed rows (q8_slice_act), or NULL */
  int n_xq;              /* tokens xq holds */
  GPTQ4Act xq4;          /* decode input quantized for 4-bit rows (q4 hook) */
  GPTQ4Act xq4t;         /* (n_xq4t, widest row) several tokens quantized for them */
  int n_xq4t;            /* tokens xq4t holds */
  int n_wide;            /* threads the wide scratch is sized for */
  float *wide;           /* (n_wide, GEMM_COLS, max_k) compact weights widened */
  int batch_T;           /* tokens of the batch in progress */
  const char *overflow;  /* what was not finite after GPT_OVERFLOW ("logits", ...) */
  GPTTape *tape;         /* activations saved for training, or NULL */
};

#define LOGIT_ROWS 32
/* Work below these many multiply-adds runs on the caller's thread alone: a
** parallel region costs a few microseconds, and much more when another
** process holds a core. */
#define PAR_MIN_GEMV ((int64_t)1 << 17)
#define PAR_MIN_GEMM ((int64_t)1 << 21)
/* Row-wise work (norms, rotary positions, the cache copy) is split from
** here: its statistics in double and its scattered stores cost several
** times a multiply-add a value, and the other member would only wait (a
** decode step of 16 rows of 768). */
#define PAR_MIN_ROWS ((int64_t)1 << 13)
/* Attention's floor is lower: its work per multiply-add is several times a
** product's (short dot products, a softmax), and a decode step's attention
** on the caller alone left the other members idle for a tenth of the step. */
#define PAR_MIN_ATT ((int64_t)1 << 14)
/* Rows of W one claim of a several-token product takes (see gemm_task): a
** multiple of the kernels' row groups (6 f32 rows, 4 q8_0, 2 on AVX2). */
#define GEMM_COLS 96

/* ------------------------------------------------------- architectures */

/* What a tensor is for (R_*, in gpt_internal.h, which the trainer reads
** too). The forward pass asks for tensors by role; which roles an
** architecture stores, under which names and shapes, is its slot table
** below. */

/* Symbolic dimensions of a slot's shape: vocabulary, positions, channels,
** query width (heads x head_dim), key/value width, fused q|k|v width, MLP
** width, head_dim. */
enum { D_NONE, D_V, D_P, D_C, D_Q, D_KV, D_QKV, D_F, D_HD };

/* When a slot is present. */
enum { W_ALWAYS, W_UNTIED };

typedef struct ArchSlot {
  int role;
  const char *zName;   /* Hugging Face name; %d is the layer */
  int d0, d1;          /* stored shape; d1 = D_NONE for 1-D */
  int conv1d;          /* stored (in, out): memory holds the transpose */
  int when;
} ArchSlot;

typedef struct ArchDesc {
  const char *zName;
  int rms_norm;        /* RMSNorm (weight only) instead of LayerNorm */
  int rope;            /* rotary positions instead of a position table */
  int swiglu;          /* down(silu(gate(x)) * up(x)) instead of GELU */
  const ArchSlot *aSlot;
  int nSlot;
} ArchDesc;

#define SLOTS(a) a, (int)(sizeof(a) / sizeof(a[0]))

/* GPT-2: per-layer slots in the order of the checkpoints. */
static const ArchSlot aGpt2Slot[] = {
  {R_TOK_EMB, "wte.weight", D_V, D_C, 0, W_ALWAYS},
  {R_POS_EMB, "wpe.weight", D_P, D_C, 0, W_ALWAYS},
  {R_ATTN_NORM_W, "h.%d.ln_1.weight", D_C, D_NONE, 0, W_ALWAYS},
  {R_ATTN_NORM_B, "h.%d.ln_1.bias", D_C, D_NONE, 0, W_ALWAYS},
  {R_QKV_W, "h.%d.attn.c_attn.weight", D_C, D_QKV, 1, W_ALWAYS},
  {R_QKV_B, "h.%d.attn.c_attn.bias", D_QKV, D_NONE, 0, W_ALWAYS},
  {R_O_W, "h.%d.attn.c_proj.weight", D_Q, D_C, 1, W_ALWAYS},
  {R_O_B, "h.%d.attn.c_proj.bias", D_C, D_NONE, 0, W_ALWAYS},
  {R_FFN_NORM_W, "h.%d.ln_2.weight", D_C, D_NONE, 0, W_ALWAYS},
  {R_FFN_NORM_B, "h.%d.ln_2.bias", D_C, D_NONE, 0, W_ALWAYS},
  {R_UP_W, "h.%d.mlp.c_fc.weight", D_C, D_F, 1, W_ALWAYS},
  {R_UP_B, "h.%d.mlp.c_fc.bias", D_F, D_NONE, 0, W_ALWAYS},
  {R_DOWN_W, "h.%d.mlp.c_proj.weight", D_F, D_C, 1, W_ALWAYS},
  {R_DOWN_B, "h.%d.mlp.c_proj.bias", D_C, D_NONE, 0, W_ALWAYS},
  {R_OUT_NORM_W, "ln_f.weight", D_C, D_NONE, 0, W_ALWAYS},
  {R_OUT_NORM_B, "ln_f.bias", D_C, D_NONE, 0, W_ALWAYS},
  {R_HEAD, "lm_head.weight", D_V, D_C, 0, W_UNTIED},
};

/* Llama and its relatives. q, k and v (and gate and up) are adjacent, so
** that in the arena they usually form one matrix the pass multiplies once. */
#define LLAMA_ATTN_SLOTS                                                     \
  {R_ATTN_NORM_W, "model.layers.%d.input_layernorm.weight", D_C, D_NONE, 0, W_ALWAYS}, \
  {R_Q_W, "model.layers.%d.self_attn.q_proj.weight", D_Q, D_C, 0, W_ALWAYS},         \
  {R_K_W, "model.layers.%d.self_attn.k_proj.weight", D_KV, D_C, 0, W_ALWAYS},        \
  {R_V_W, "model.layers.%d.self_attn.v_proj.weight", D_KV, D_C, 0, W_ALWAYS}
#define LLAMA_QKV_BIAS_SLOTS                                                 \
  {R_Q_B, "model.layers.%d.self_attn.q_proj.bias", D_Q, D_NONE, 0, W_ALWAYS},        \
  {R_K_B, "model.layers.%d.self_attn.k_proj.bias", D_KV, D_NONE, 0, W_ALWAYS},       \
  {R_V_B, "model.layers.%d.self_attn.v_proj.bias", D_KV, D_NONE, 0, W_ALWAYS}
#define LLAMA_REST_SLOTS                                                     \
  {R_O_W, "model.layers.%d.self_attn.o_proj.weight", D_C, D_Q, 0, W_ALWAYS},         \
  {R_FFN_NORM_W, "model.layers.%d.post_attention_layernorm.weight", D_C, D_NONE, 0, W_ALWAYS}, \
  {R_GATE_W, "model.layers.%d.mlp.gate_proj.weight", D_F, D_C, 0, W_ALWAYS},         \
  {R_UP_W, "model.layers.%d.mlp.up_proj.weight", D_F, D_C, 0, W_ALWAYS},             \
  {R_DOWN_W, "model.layers.%d.mlp.down_proj.weight", D_C, D_F, 0, W_ALWAYS}
#define LLAMA_GLOBAL_SLOTS                                                   \
  {R_TOK_EMB, "model.embed_tokens.weight", D_V, D_C, 0, W_ALWAYS},                   \
  {R_OUT_NORM_W, "model.norm.weight", D_C, D_NONE, 0, W_ALWAYS},                     \
  {R_HEAD, "lm_head.weight", D_V, D_C, 0, W_UNTIED}

static const ArchSlot aLlamaSlot[] = {
  LLAMA_ATTN_SLOTS, LLAMA_REST_SLOTS, LLAMA_GLOBAL_SLOTS,
};
static const ArchSlot aQwen2Slot[] = {
  LLAMA_ATTN_SLOTS, LLAMA_QKV_BIAS_SLOTS, LLAMA_REST_SLOTS, LLAMA_GLOBAL_SLOTS,
};
static const ArchSlot aQwen3Slot[] = {
  LLAMA_ATTN_SLOTS,
  {R_Q_NORM, "model.layers.%d.self_attn.q_norm.weight", D_HD, D_NONE, 0, W_ALWAYS},
  {R_K_NORM, "model.layers.%d.self_attn.k_norm.weight", D_HD, D_NONE, 0, W_ALWAYS},
  LLAMA_REST_SLOTS, LLAMA_GLOBAL_SLOTS,
};

static const ArchDesc aArch[GPT_ARCH_COUNT] = {
  {"gpt2", 0, 0, 0, SLOTS(aGpt2Slot)},
  {"llama", 1, 1, 1, SLOTS(aLlamaSlot)},
  {"qwen2", 1, 1, 1, SLOTS(aQwen2Slot)},
  {"qwen3", 1, 1, 1, SLOTS(aQwen3Slot)},
};

int gpt_arch_from_name(const char *z) {
  for (int i = 0; z && i < GPT_ARCH_COUNT; i++)
    if (strcmp(z, aArch[i].zName) == 0) return i;
  return -1;
}

const char *gpt_arch_name(int arch) {
  return arch >= 0 && arch < GPT_ARCH_COUNT ? aArch[arch].zName : "?";
}

/* The description of c's architecture (GPT-2's for an unknown one, which
** gpt_config_check refuses). */
static const ArchDesc *arch_of(const GPTConfig *c) {
  return &aArch[c->arch >= 0 && c->arch < GPT_ARCH_COUNT ? c->arch : 0];
}

int gpt_config_kv_heads(const GPTConfig *c) { return c->n_kv_head > 0 ? c->n_kv_head : c->n_head; }
int gpt_config_head_dim(const GPTConfig *c) {
  return c->head_dim > 0 ? c->head_dim : c->n_embd / c->n_head;
}
int gpt_config_ff(const GPTConfig *c) { return c->d_ff > 0 ? c->d_ff : 4 * c->n_embd; }

/* The value of a symbolic dimension. */
static int64_t dim_of(const GPTConfig *c, int d) {
  int64_t hd = gpt_config_head_dim(c);
  switch (d) {
    case D_V: return c->vocab_size;
    case D_P: return c->n_ctx;
    case D_C: return c->n_embd;
    case D_Q: return (int64_t)c->n_head * hd;
    case D_KV: return (int64_t)gpt_config_kv_heads(c) * hd;
    case D_QKV: return ((int64_t)c->n_head + 2 * (int64_t)gpt_config_kv_heads(c)) * hd;
    case D_F: return gpt_config_ff(c);
    case D_HD: return hd;
    default: return 0;
  }
}

/* Slots of an architecture split into globals before the layers (those
** whose role is below R_FIRST_LAYER and that come first in the table), the
** per-layer run, and the globals after it. Tensor i of a model is found by
** walking that order, skipping absent slots. */
static int slot_present(const ArchSlot *s, int has_lm_head) {
  return s->when == W_ALWAYS || (s->when == W_UNTIED && has_lm_head);
}

/* Tensor i as (slot, layer), or -1 when i is past the last tensor. */
static int tensor_slot(const GPTConfig *c, int has_lm_head, int i, int *pLayer) {
  const ArchDesc *a = arch_of(c);
  int iFirst = -1, iEnd = -1;
  for (int s = 0; s < a->nSlot; s++) {
    if (a->aSlot[s].role >= R_FIRST_LAYER) {
      if (iFirst < 0) iFirst = s;
      iEnd = s + 1;
    }
  }
  /* globals before the layers */
  for (int s = 0; s < iFirst; s++) {
    if (!slot_present(&a->aSlot[s], has_lm_head)) continue;
    if (i-- == 0) { *pLayer = -1; return s; }
  }
  int nPer = iEnd - iFirst;
  if (i < (int64_t)nPer * c->n_layer) {
    *pLayer = i / nPer;
    return iFirst + i % nPer;
  }
  i -= nPer * c->n_layer;
  for (int s = iEnd; s < a->nSlot; s++) {
    if (!slot_present(&a->aSlot[s], has_lm_head)) continue;
    if (i-- == 0) { *pLayer = -1; return s; }
  }
  return -1;
}

int gpt_n_tensors(const GPTConfig *c, int has_lm_head) {
  const ArchDesc *a = arch_of(c);
  int n = 0;
  for (int s = 0; s < a->nSlot; s++) {
    if (!slot_present(&a->aSlot[s], has_lm_head)) continue;
    n += a->aSlot[s].role >= R_FIRST_LAYER ? c->n_layer : 1;
  }
  return n;
}

/* Describes tensor i: its name, the shape it is stored in, and whether it is
** a Conv1D weight that memory keeps transposed. */
void gpt_tensor_info(const GPTConfig *c, int has_lm_head, int i, GPTTensorInfo *o) {
  int layer = -1;
  int s = tensor_slot(c, has_lm_head, i, &layer);
  memset(o, 0, sizeof(*o));
  o->ndim = 1;
  if (s < 0) return;
  const ArchSlot *slot = &arch_of(c)->aSlot[s];
  snprintf(o->name, sizeof(o->name), slot->zName, layer);
  o->ndim = slot->d1 == D_NONE ? 1 : 2;
  o->shape[0] = dim_of(c, slot->d0);
  o->shape[1] = o->ndim == 2 ? dim_of(c, slot->d1) : 0;
  o->transposed = slot->conv1d;
  o->n_elem = o->ndim == 2 ? o->shape[0] * o->shape[1] : o->shape[0];
}

/* The role of tensor i (R_*), or -1. */
static int tensor_role(const GPTConfig *c, int has_lm_head, int i, int *pLayer) {
  int s = tensor_slot(c, has_lm_head, i, pLayer);
  return s < 0 ? -1 : arch_of(c)->aSlot[s].role;
}

/* Training (gpt_internal.h): the same, for the backward pass. */
int gpt_tensor_role(const GPTConfig *c, int has_lm_head, int i, int *pLayer) {
  return tensor_role(c, has_lm_head, i, pLayer);
}

/* Finds a tensor by its name: the slot whose pattern matches it, then its
** place in the order of tensor_slot (globals before the layers, the layers
** slot by slot, the globals after). Per-layer slots are always present. */
int gpt_tensor_index(const GPTConfig *c, int has_lm_head, const char *zName) {
  const ArchDesc *a = arch_of(c);
  int iFirst = -1, nPer = 0, nBefore = 0, nAfter = 0;
  for (int s = 0; s < a->nSlot; s++)
    if (a->aSlot[s].role >= R_FIRST_LAYER) { if (iFirst < 0) iFirst = s; nPer++; }
  for (int s = 0; s < a->nSlot; s++) {
    const ArchSlot *slot = &a->aSlot[s];
    if (!slot_present(slot, has_lm_head)) continue;
    if (slot->role < R_FIRST_LAYER) {
      int idx = s < iFirst ? nBefore : nBefore + nPer * c->n_layer + nAfter;
      if (strcmp(slot->zName, zName) == 0) return idx;
      if (s < iFirst) nBefore++; else nAfter++;
      continue;
    }
    /* "prefix%dsuffix": a layer number in canonical form in between */
    const char *zPct = strstr(slot->zName, "%d");
    size_t nPre = (size_t)(zPct - slot->zName);
    if (strncmp(zName, slot->zName, nPre) != 0) continue;
    const char *z = zName + nPre;
    int l = 0, nDigit = 0;
    while (*z >= '0' && *z <= '9' && nDigit < 4) { l = l * 10 + (*z - '0'); z++; nDigit++; }
    if (nDigit > 0 && (nDigit == 1 || zName[nPre] != '0') && l < c->n_layer &&
        strcmp(z, zPct + 2) == 0)
      return nBefore + l * nPer + (s - iFirst);
  }
  return -1;
}

/* Parameters of a config, computed in 64 bits from checked int fields (the
** tied head counted once). */
int64_t gpt_n_params(const GPTConfig *c, int has_lm_head) {
  const ArchDesc *a = arch_of(c);
  int64_t n = 0;
  for (int s = 0; s < a->nSlot; s++) {
    const ArchSlot *slot = &a->aSlot[s];
    if (!slot_present(slot, has_lm_head)) continue;
    int64_t e = dim_of(c, slot->d0) * (slot->d1 == D_NONE ? 1 : dim_of(c, slot->d1));
    n += slot->role >= R_FIRST_LAYER ? e * c->n_layer : e;
  }
  return n;
}

int gpt_config_check(const GPTConfig *c, char *err, size_t n_err) {
  return gpt_config_check_named(c, NULL, err, n_err);
}

/* A field as messages write it: the file's key in quotes
** ("max_position_embeddings"), or the engine's own name. */
static const char *config_key(char *buf, size_t n, const char *const *names, int key,
                              const char *own) {
  if (!names || key < 0 || !names[key]) return own;
  snprintf(buf, n, "\"%s\"", names[key]);
  return buf;
}

/* Checks every config value against its range before anything is sized by
** it, so that hostile configs never reach an allocation. */
int gpt_config_check_named(const GPTConfig *c, const char *const names[GPT_KEY_COUNT],
                           char *err, size_t n_err) {
  const char *pre = names ? "" : "config "; /* "config n_ctx is ..." by the engine's names */
  char k1[80], k2[80];
  struct { int key; const char *zKey; int v, lo, hi; } a[] = {
    {GPT_KEY_N_LAYER, "n_layer", c->n_layer, 1, GPT_MAX_LAYER},
    {GPT_KEY_N_HEAD, "n_head", c->n_head, 1, GPT_MAX_HEAD},
    {GPT_KEY_N_EMBD, "n_embd", c->n_embd, 1, GPT_MAX_EMBD},
    {GPT_KEY_N_CTX, "n_ctx", c->n_ctx, 1, GPT_MAX_CTX},
    {GPT_KEY_VOCAB_SIZE, "vocab_size", c->vocab_size, 1, GPT_MAX_VOCAB},
    {-1, "arch", c->arch, 0, GPT_ARCH_COUNT - 1},
    {GPT_KEY_N_KV_HEAD, "n_kv_head", c->n_kv_head, 0, GPT_MAX_HEAD},
    {GPT_KEY_HEAD_DIM, "head_dim", c->head_dim, 0, GPT_MAX_HEAD_DIM},
    {GPT_KEY_D_FF, "d_ff", c->d_ff, 0, GPT_MAX_FF},
    {-1, "rope_scaling", c->rope_scaling, GPT_ROPE_NONE, GPT_ROPE_LLAMA3},
  };
  for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++) {
    if (a[i].v < a[i].lo || a[i].v > a[i].hi) {
      /* 0 is the engine's "as GPT-2" for the optional sizes; a file's is >= 1 */
      int lo = names && a[i].key >= 0 && a[i].lo == 0 ? 1 : a[i].lo;
      snprintf(err, n_err, "%s%s is %d, expected %d to %d", pre,
               config_key(k1, sizeof(k1), names, a[i].key, a[i].zKey), a[i].v, lo, a[i].hi);
      return -1;
    }
  }
  if (c->head_dim == 0 && c->n_embd % c->n_head != 0) {
    snprintf(err, n_err, "%s%s %d is not divisible by %s %d", pre,
             config_key(k1, sizeof(k1), names, GPT_KEY_N_EMBD, "n_embd"), c->n_embd,
             config_key(k2, sizeof(k2), names, GPT_KEY_N_HEAD, "n_head"), c->n_head);
    return -1;
  }
  if (c->arch != GPT_ARCH_GPT2 && gpt_config_head_dim(c) > GPT_MAX_HEAD_DIM) {
    snprintf(err, n_err, "%s%s is %d, expected 1 to %d", pre,
             config_key(k1, sizeof(k1), names, GPT_KEY_HEAD_DIM, "head_dim"),
             gpt_config_head_dim(c), GPT_MAX_HEAD_DIM);
    return -1;
  }
  if (c->n_head % gpt_config_kv_heads(c) != 0) {
    snprintf(err, n_err, "%s%s %d is not a multiple of %s %d", pre,
             config_key(k1, sizeof(k1), names, GPT_KEY_N_HEAD, "n_head"), c->n_head,
             config_key(k2, sizeof(k2), names, GPT_KEY_N_KV_HEAD, "n_kv_head"),
             gpt_config_kv_heads(c));
    return -1;
  }
  if (c->arch == GPT_ARCH_GPT2 && (c->n_kv_head || c->head_dim || c->d_ff || c->rope_scaling)) {
    snprintf(err, n_err, "config of a gpt2 model sets n_kv_head, head_dim, d_ff or rope_scaling");
    return -1;
  }
  if (arch_of(c)->rope) {
    if (gpt_config_head_dim(c) % 2 != 0) {
      snprintf(err, n_err, "%s%s %d is odd, expected an even value for rotary positions", pre,
               config_key(k1, sizeof(k1), names, GPT_KEY_HEAD_DIM, "head_dim"),
               gpt_config_head_dim(c));
      return -1;
    }
    if (!(c->rope_theta == 0.0 || (c->rope_theta >= 1.0 && c->rope_theta <= 1e12))) {
      snprintf(err, n_err, "%s is %g, expected 1 to 1e12",
               names ? "\"rope_theta\"" : "config rope_theta", c->rope_theta);
      return -1;
    }
    if (c->rope_scaling == GPT_ROPE_LLAMA3 &&
        !(c->rope_factor >= 1.0 && c->rope_factor <= 1024.0 &&
          c->rope_low_freq_factor > 0.0 && c->rope_low_freq_factor <= 1024.0 &&
          c->rope_high_freq_factor > c->rope_low_freq_factor &&
          c->rope_high_freq_factor <= 1024.0 && c->rope_original_ctx >= 1 &&
          c->rope_original_ctx <= GPT_MAX_CTX)) {
      snprintf(err, n_err, "%s llama3 needs factor 1 to 1024, 0 < "
               "low_freq_factor < high_freq_factor <= 1024 and "
               "original_max_position_embeddings 1 to %d",
               names ? "\"rope_scaling\"" : "config rope_scaling", GPT_MAX_CTX);
      return -1;
    }
  }
  if (!(c->ln_eps > 0.0 && c->ln_eps <= 1.0)) {
    snprintf(err, n_err, names ? "\"%s\" is %g, expected > 0 and <= 1"
                               : "config %s is %g, expected > 0 and <= 1",
             arch_of(c)->rms_norm ? "rms_norm_eps" : "layer_norm_epsilon", c->ln_eps);
    return -1;
  }
  if (gpt_n_params(c, 1) > GPT_MAX_PARAMS) {
    snprintf(err, n_err, "the config implies %lld parameters, more than the limit of %lld",
             (long long)gpt_n_params(c, 1), (long long)GPT_MAX_PARAMS);
    return -1;
  }
  return 0;
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
  int nBlockBytes = 0, nBlock = gpt_dtype_block(dtype, &nBlockBytes); /* q4 hook: any block format */
  if (nBlock) {
    gpt_tensor_matrix(info, &rows, &k);
    if (info->ndim != 2 || k % nBlock != 0) return -1;
    return rows * (k / nBlock) * nBlockBytes;
  }
  if (gpt_dtype_size(dtype) == 0) return -1;
  return info->n_elem * gpt_dtype_size(dtype);
}

/* Large arenas are aligned to 2 MB and asked to use transparent huge pages
** where the system has them: fewer page faults while loading, fewer TLB
** misses while decoding streams through every weight. KV caches of 2 MB and
** more too (cache_alloc). */
#define ARENA_HUGE ((size_t)2 << 20)

/* *pn bytes rounded up to whole 2 MB pages (the rounded size left in *pn),
** asked to use transparent huge pages; freed with free(). NULL where the
** rounding would overflow. */
static void *huge_alloc(size_t *pn) {
  if (*pn > SIZE_MAX - ARENA_HUGE) return NULL;
  size_t n = *pn = (*pn + ARENA_HUGE - 1) / ARENA_HUGE * ARENA_HUGE;
  void *p = aligned_alloc(ARENA_HUGE, n);
#ifdef MADV_HUGEPAGE
  if (p) madvise(p, n, MADV_HUGEPAGE);
#endif
  return p;
}

/* Faults the whole pages of [p, p + n) in with a system call a 32 MB piece
** (Linux 5.14+; harmless where refused), where a first touch of each page
** would trap once a page. What that saves depends on the host: 5-11 us a
** trap against 0.5-0.9 us a page on one virtual machine; on another, whose
** first write to a page costs 11-22 us, only half (bench/results/HISTORY.md).
** The call holds the process's memory map for its length: one call over an
** 800 MB arena (0.16-1.3 s) held every other thread's mmap and munmap, so
** other connections' calls stalled while a large model loaded. */
#define FAULT_IN_PIECE ((uintptr_t)32 << 20)
static void fault_in(void *p, size_t n) {
#ifdef MADV_POPULATE_WRITE
  long sz = sysconf(_SC_PAGESIZE);
  uintptr_t page = sz > 0 ? (uintptr_t)sz : 4096, a = ((uintptr_t)p + page - 1) & ~(page - 1);
  uintptr_t b = ((uintptr_t)p + n) & ~(page - 1);
  for (; b > a; a += FAULT_IN_PIECE)
    if (madvise((void *)a, b - a < FAULT_IN_PIECE ? b - a : FAULT_IN_PIECE, MADV_POPULATE_WRITE))
      break;
#else
  (void)p;
  (void)n;
#endif
}

/* Whether an arena of n bytes sits on 2 MB pages (from 8 MB on). */
static int arena_is_huge(size_t n) { return n >= 4 * ARENA_HUGE; }

/* The weight arena: 64-byte aligned with a line to spare, or from 8 MB on,
** 2 MB aligned on 2 MB pages (huge_alloc), faulted in a tensor at a time as
** gpt_model_load meets each (so that a loader can stop between tensors: an
** 8B model's 16 GB took seconds at once). NULL when out of memory. */
static unsigned char *arena_alloc(size_t n) {
  if (!arena_is_huge(n)) return aligned_alloc(64, (n + 63) / 64 * 64 + 64);
  return huge_alloc(&n);
}

/* The matrix of tensor i as products read it. */
static Mat mat_of(const GPTModel *m, int i) {
  GPTTensorInfo info;
  int64_t rows, k;
  gpt_tensor_info(&m->cfg, m->has_lm_head, i, &info);
  gpt_tensor_matrix(&info, &rows, &k);
  Mat w = {m->tensor[i], m->dtype[i], (int)rows, (int)k, 0};
  w.packed = m->q8_packed && w.dtype == GPT_Q8_0;
  return w;
}

/* Bytes of the first r rows of w. */
static size_t mat_row_bytes(const Mat *w, int r) {
  int nBlockBytes = 0, nBlock = gpt_dtype_block(w->dtype, &nBlockBytes); /* q4 hook */
  if (nBlock) return (size_t)r * (size_t)(w->k / nBlock) * (size_t)nBlockBytes;
  return (size_t)r * (size_t)w->k * (w->dtype == GPT_F32 ? 4 : 2);
}

/* a and b as one matrix when b's rows follow a's in memory, else .w NULL. */
static Mat mat_fuse(const Mat *a, const Mat *b) {
  Mat f = {0, 0, 0, 0, 0};
  if (a->w && b->w && a->dtype == b->dtype && a->k == b->k && a->packed == b->packed &&
      (const char *)a->w + mat_row_bytes(a, a->rows) == (const char *)b->w) {
    f = *a;
    f.rows = a->rows + b->rows;
  }
  return f;
}

/* Row r0.. of w as a matrix of n rows (GPT-2's fused c_attn as q, k, v). */
static Mat mat_rows(const Mat *w, int r0, int n) {
  Mat s = *w;
  s.w = (const char *)w->w + mat_row_bytes(w, r0);
  s.rows = n;
  return s;
}

/* RoPE frequencies theta^(-2i/hd), with Llama 3.1's scaling: wavelengths
** longer than the original context / low_freq_factor are stretched by
** factor, shorter than / high_freq_factor kept, and those between blended
** (transformers' _compute_llama3_parameters). */
static void rope_frequencies(const GPTConfig *c, double *inv_freq, int hd) {
  double theta = c->rope_theta > 0 ? c->rope_theta : 10000.0;
  for (int i = 0; i < hd / 2; i++) {
    double f = 1.0 / pow(theta, (2.0 * i) / hd);
    if (c->rope_scaling == GPT_ROPE_LLAMA3) {
      double lowWave = c->rope_original_ctx / c->rope_low_freq_factor;
      double highWave = c->rope_original_ctx / c->rope_high_freq_factor;
      double wave = 2.0 * M_PI / f;
      if (wave > lowWave) {
        f = f / c->rope_factor;
      } else if (wave >= highWave) {
        double smooth = (c->rope_original_ctx / wave - c->rope_low_freq_factor) /
                        (c->rope_high_freq_factor - c->rope_low_freq_factor);
        f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
      }
    }
    inv_freq[i] = f;
  }
}

/* Fills the resolved fields (Layer table, embeddings, head, RoPE) from the
** pointer table. Returns -1 when out of memory. */
static int model_resolve(GPTModel *m) {
  const GPTConfig *c = &m->cfg;
  const ArchDesc *a = arch_of(c);
  m->rms_norm = a->rms_norm;
  m->rope = a->rope;
  m->swiglu = a->swiglu;
  m->n_kv_head = gpt_config_kv_heads(c);
  m->head_dim = gpt_config_head_dim(c);
  m->d_q = c->n_head * m->head_dim;
  m->d_kv = m->n_kv_head * m->head_dim;
  m->d_ff = gpt_config_ff(c);
  m->layer = calloc((size_t)c->n_layer, sizeof(Layer));
  m->inv_freq = calloc((size_t)m->head_dim / 2 + 1, sizeof(double));
  if (!m->layer || !m->inv_freq) return -1;
  rope_frequencies(c, m->inv_freq, m->head_dim);
  for (int i = 0; i < m->n_tensors; i++) {
    int l = -1, role = tensor_role(c, m->has_lm_head, i, &l);
    const float *f = (const float *)m->tensor[i];
    Mat w = mat_of(m, i);
    Layer *L = l >= 0 ? &m->layer[l] : NULL;
    switch (role) {
      case R_TOK_EMB: m->tok_emb = w; break;
      case R_POS_EMB: m->pos_emb = w; break;
      case R_OUT_NORM_W: m->out_norm_w = f; break;
      case R_OUT_NORM_B: m->out_norm_b = f; break;
      case R_HEAD: m->head = w; break;
      case R_ATTN_NORM_W: L->attn_norm_w = f; break;
      case R_ATTN_NORM_B: L->attn_norm_b = f; break;
      case R_QKV_W: L->qkv = w; break;
      case R_QKV_B: L->qkv_b = f; break;
      case R_Q_W: L->q = w; break;
      case R_K_W: L->k = w; break;
      case R_V_W: L->v = w; break;
      case R_Q_B: L->q_b = f; break;
      case R_K_B: L->k_b = f; break;
      case R_V_B: L->v_b = f; break;
      case R_Q_NORM: L->q_norm = f; break;
      case R_K_NORM: L->k_norm = f; break;
      case R_O_W: L->o = w; break;
      case R_O_B: L->o_b = f; break;
      case R_FFN_NORM_W: L->ffn_norm_w = f; break;
      case R_FFN_NORM_B: L->ffn_norm_b = f; break;
      case R_GATE_W: L->gate = w; break;
      case R_UP_W: L->up = w; break;
      case R_UP_B: L->up_b = f; break;
      case R_DOWN_W: L->down = w; break;
      case R_DOWN_B: L->down_b = f; break;
      default: break;
    }
  }
  if (!m->has_lm_head) m->head = m->tok_emb;
  m->n_live = c->vocab_size;
  for (int l = 0; l < c->n_layer; l++) {
    Layer *L = &m->layer[l];
    if (L->qkv.w) {
      L->q = mat_rows(&L->qkv, 0, m->d_q);
      L->k = mat_rows(&L->qkv, m->d_q, m->d_kv);
      L->v = mat_rows(&L->qkv, m->d_q + m->d_kv, m->d_kv);
    } else {
      Mat qk = mat_fuse(&L->q, &L->k);
      L->qkv = mat_fuse(&qk, &L->v);
      /* the biases fuse too, or the parts go one by one */
      if (L->qkv.w && L->q_b) {
        if (L->k_b == L->q_b + m->d_q && L->v_b == L->k_b + m->d_kv) L->qkv_b = L->q_b;
        else L->qkv.w = NULL;
      }
    }
    if (m->swiglu) L->gate_up = mat_fuse(&L->gate, &L->up);
  }
  return 0;
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
    if (dt != GPT_F32 && (info.ndim != 2 || (dt != GPT_F16 && !gpt_dtype_block(dt, 0)))) dt = -1;
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
  if (model_resolve(m)) goto oom;
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
  free(m->layer);
  free(m->inv_freq);
  free(m);
}

const GPTConfig *gpt_model_config(const GPTModel *m) { return &m->cfg; }
void gpt_model_set_live_vocab(GPTModel *m, int n) {
  m->n_live = n >= 1 && n <= m->cfg.vocab_size ? n : m->cfg.vocab_size;
}
int gpt_model_ready(GPTModel *m) {
  const GPTKernels *k = gpt_kernels();
  int packed = 0;
  if (m->q8_packed || !k->q8_pack) return 0;
  for (int i = 0; i < m->n_tensors; i++) {
    if (m->dtype[i] != GPT_Q8_0) continue;
    Mat w = mat_of(m, i);
    packed = k->q8_pack(m->tensor[i], w.rows, w.k);
    if (!packed) return 0; /* the set reads rows as stored: none was packed */
  }
  if (!packed) return 0;
  /* the resolved matrices carry the packing: resolve again */
  m->q8_packed = 1;
  free(m->layer);
  free(m->inv_freq);
  m->layer = NULL;
  m->inv_freq = NULL;
  return model_resolve(m);
}

int gpt_model_tensor_packed(const GPTModel *m, int i) {
  return i >= 0 && i < m->n_tensors && m->q8_packed && m->dtype[i] == GPT_Q8_0;
}

size_t gpt_model_bytes(const GPTModel *m) { return m->n_bytes; }
int gpt_model_has_lm_head(const GPTModel *m) { return m->has_lm_head; }
int gpt_model_tensor_dtype(const GPTModel *m, int i) {
  return i >= 0 && i < m->n_tensors ? m->dtype[i] : -1;
}
void *gpt_model_tensor_data(GPTModel *m, int i) {
  return i >= 0 && i < m->n_tensors ? m->tensor[i] : NULL;
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

/* A 4- or 6-bit block format (kernels_q4.h). */
static int is_q4_dtype(int dtype) {
  return dtype == GPT_Q4_0 || dtype == GPT_Q4_K || dtype == GPT_Q6_K;
}

/* The first element of n in dtype (f32, f16, bf16) at src that is a NaN
** or an Inf, or -1. */
static int64_t first_non_finite(int dtype, const void *src, int64_t n) {
  if (all_finite(dtype, src, n)) return -1;
  const unsigned char *p = src;
  for (int64_t k = 0; k < n; k++) {
    if (dtype == GPT_F32) {
      uint32_t u;
      memcpy(&u, p + 4 * k, 4);
      if ((u & 0x7f800000u) == 0x7f800000u) return k;
    } else {
      uint16_t h, m = dtype == GPT_F16 ? 0x7c00 : 0x7f80;
      memcpy(&h, p + 2 * k, 2);
      if ((h & m) == m) return k;
    }
  }
  return -1;
}

int gpt_rows_check(const char *name, int dtype, const void *src, int64_t first, int64_t n,
                   char *err, size_t n_err) {
  int nBytes = 0, nVal = gpt_dtype_block(dtype, &nBytes);
  const uint8_t *s = (const uint8_t *)src;
  int64_t bad;
  if (nVal && (first % nVal || n % nVal)) {
    snprintf(err, n_err, "tensor %s cannot be read from %s at %lld+%lld", name,
             gpt_dtype_name(dtype), (long long)first, (long long)n);
    return -1;
  }
  if (dtype == GPT_Q8_0) {
    for (int64_t b = 0; b < n / GPT_Q8_BLOCK; b++) {
      const uint8_t *blk = s + b * GPT_Q8_BYTES;
      uint16_t h = (uint16_t)(blk[0] | (blk[1] << 8));
      int ok = (h & 0x7c00) != 0x7c00;
      for (int j = 0; j < GPT_Q8_BLOCK; j++) ok &= blk[2 + j] != 0x80;
      if (!ok) {
        snprintf(err, n_err, "tensor %s: q8_0 block %lld has a non-finite scale or a "
                 "value of -128", name, (long long)((first / GPT_Q8_BLOCK) + b));
        return -1;
      }
    }
  } else if (nVal) {
    if ((bad = gpt_q4_bad_block(dtype, s, n / nVal)) >= 0) {
      snprintf(err, n_err, "tensor %s: %s block %lld has a non-finite scale", name,
               gpt_dtype_name(dtype), (long long)(first / nVal + bad));
      return -1;
    }
  } else if ((bad = first_non_finite(dtype, src, n)) >= 0) {
    snprintf(err, n_err, "tensor %s has a NaN or Inf at element %lld", name,
             (long long)(first + bad));
    return -1;
  }
  return 0;
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
  if (i < 0 || i >= m->n_tensors || (gpt_dtype_size(dtype) == 0 && !gpt_dtype_block(dtype, 0))) {
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
  if (first == 0 && arena_is_huge(m->n_bytes))
    fault_in(dst, (size_t)gpt_tensor_bytes(&info, dd)); /* see arena_alloc */
  if (is_q4_dtype(dtype)) {
    /* q4 hook: 4- and 6-bit blocks are checked (finite scales) and copied,
    ** or widened for a tensor held in f32 or f16 */
    int nBytes = 0, nVal = gpt_dtype_block(dtype, &nBytes);
    const uint8_t *s = (const uint8_t *)src;
    float tmp[GPT_QK_K];
    if (gpt_tensor_bytes(&info, dtype) < 0 || first % nVal || n % nVal ||
        (dd != dtype && dd != GPT_F32 && dd != GPT_F16)) {
      snprintf(err, n_err, "tensor %s cannot be read from %s at %lld+%lld", info.name,
               gpt_dtype_name(dtype), (long long)first, (long long)n);
      return -1;
    }
    if (gpt_rows_check(info.name, dtype, s, first, n, err, n_err)) return -1;
    if (dd == dtype) {
      memcpy((uint8_t *)dst + first / nVal * nBytes, s, (size_t)(n / nVal * nBytes));
      return 0;
    }
    for (int64_t b = 0; b < n / nVal; b++) {
      gpt_q4_to_f32(gpt_q4_kernels(), dtype, tmp, s + b * nBytes, 1);
      for (int j = 0; j < nVal; j++) {
        int64_t e = first + b * nVal + j;
        if (!isfinite(tmp[j]) || (dd == GPT_F16 && (gpt_f32_to_f16(tmp[j]) & 0x7c00) == 0x7c00)) {
          snprintf(err, n_err, "tensor %s has a NaN or Inf at element %lld%s", info.name,
                   (long long)e, dd == GPT_F16 ? " (as f16)" : "");
          return -1;
        }
        if (dd == GPT_F32) ((float *)dst)[e] = tmp[j];
        else ((uint16_t *)dst)[e] = gpt_f32_to_f16(tmp[j]);
      }
    }
    return 0;
  }
  if (dtype == GPT_Q8_0) {
    const uint8_t *s = (const uint8_t *)src;
    if (gpt_tensor_bytes(&info, GPT_Q8_0) < 0 || first % GPT_Q8_BLOCK || n % GPT_Q8_BLOCK) {
      snprintf(err, n_err, "tensor %s cannot be read from q8_0 at %lld+%lld", info.name,
               (long long)first, (long long)n);
      return -1;
    }
    if (gpt_rows_check(info.name, GPT_Q8_0, s, first, n, err, n_err)) return -1;
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
  if (gpt_dtype_block(dd, 0)) { /* q4 hook: any block format */
    snprintf(err, n_err, "tensor %s is held as %s and takes %s rows only, not %s",
             info.name, gpt_dtype_name(dd), gpt_dtype_name(dd), gpt_dtype_name(dtype));
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

/* The widest activation row of a pass: the input of any product, and any
** decode scratch row. */
static size_t widest_row(const GPTModel *m) {
  size_t w = (size_t)m->cfg.n_embd;
  size_t qkv = (size_t)m->d_q + 2 * (size_t)m->d_kv, ff = (size_t)m->d_ff * (m->swiglu ? 2 : 1);
  if (qkv > w) w = qkv;
  if (ff > w) w = ff;
  return w;
}

/* n bytes aligned to a cache line, for the buffers the kernels stream
** through: a 64-byte load from a row that starts off a line reads two
** lines (an f16 prefill, both of whose operands sat at malloc's 16-byte
** alignment, ran at 0.7 of f32's speed). Freed with free(). */
static void *line_alloc(size_t n) {
  return aligned_alloc(64, (n + 63) / 64 * 64);
}

/* n bytes of a KV cache, freed with free(): from 2 MB on, on 2 MB pages. A
** decode step stores its keys and values as the next row of every (layer,
** head) run, which on 4 KB pages is a page, and a TLB miss, a run: 2
** threads, Zen 5 in a virtual machine, the step's stores of GPT-2 124M's 12
** heads took 7.2-8.0 us a layer on 4 KB pages, 2.3-2.6 on 2 MB; SmolLM2's 3
** with the rotary positions 2.4 -> 1.4. */
static float *cache_alloc(size_t n) {
  return n < ARENA_HUGE ? line_alloc(n) : huge_alloc(&n);
}

/* Grows the KV cache to hold at least need positions (doubling, up to cap),
** moving the positions already held: each (layer, head) run of n_cache rows
** becomes a run of the new size. */
static int state_grow_cache(GPTState *s, int need) {
  if (need <= s->n_cache) return 0;
  if (need > s->cap) return -1;
  int n = s->n_cache < 64 ? 64 : s->n_cache;
  while (n < need) n = n > s->cap / 2 ? s->cap : 2 * n;
  if (n > s->cap) n = s->cap;
  if (n < need) return -1;
  const GPTModel *m = s->m;
  size_t runs = (size_t)m->cfg.n_layer * (size_t)m->n_kv_head, hd = (size_t)m->head_dim;
  size_t bytes = runs * (size_t)n * hd * sizeof(float);
  float *k = cache_alloc(bytes), *v = cache_alloc(bytes);
  if (!k || !v) {
    free(k);
    free(v);
    return -1;
  }
  /* each new position a decode step writes starts on a new page of each
  ** (layer, head) run every 16 positions or so: GPT-2 124M took 18 traps a
  ** token, SmolLM2-135M 11 */
  fault_in(k, bytes);
  fault_in(v, bytes);
  for (size_t r = 0; r < runs && s->len > 0; r++) {
    memcpy(k + r * n * hd, s->k_cache + r * s->n_cache * hd, (size_t)s->len * hd * sizeof(float));
    memcpy(v + r * n * hd, s->v_cache + r * s->n_cache * hd, (size_t)s->len * hd * sizeof(float));
  }
  free(s->k_cache);
  free(s->v_cache);
  s->k_cache = k;
  s->v_cache = v;
  s->n_cache = n;
  return 0;
}

/* The most query heads a decode step scores at once against one cache head
** (the attention kernels take three queries a call). */
#define ATT_GROUP_MAX 3

/* Rows a member's attention scores hold: the batch's tokens, or a decode
** step's query heads that read one cache head. */
static size_t att_rows(const GPTState *s) { return (size_t)s->att_rows; }

/* Most scores a member holds: a prompt's query rows are scored in blocks of
** at most this many over the keys they see (a row's values do not depend on
** its block). Rows as one block, a 9,654-token prompt held 780 MB of scores
** on 2 threads, and a 128k-token one would take 64 GB a member. */
#define ATT_SCORES_MAX ((size_t)4 << 20)

/* Query rows a block of a prompt's attention takes against keys keys: all
** rows where they fit ATT_SCORES_MAX, at least ATT_GROUP_MAX. */
static int att_block_rows(int rows, int keys) {
  size_t fit = ATT_SCORES_MAX / (size_t)(keys > 0 ? keys : 1);
  if (fit < ATT_GROUP_MAX) fit = ATT_GROUP_MAX;
  return (size_t)rows < fit ? rows : (int)fit;
}

/* Grows the batch scratch to hold T tokens, with attention scores for nth
** threads, each for rows of one sequence (a block of a prompt's rows, or a
** decode step's run of query heads) against up to keys keys: sized by the
** pass's rows, 16 prompts of 1,000 tokens on 16 threads held a gigabyte of
** scores where one prompt's rows take 64 MB. The scores' memory only grows;
** their shape is the pass's. */
static int state_reserve(GPTState *s, int T, int rows, int nth, int keys) {
  const GPTModel *m = s->m;
  if (T > s->n_scratch) {
    size_t C = (size_t)m->cfg.n_embd, t = (size_t)T;
    size_t ff = (size_t)m->d_ff;
    float *p[7];
    size_t n[7] = {t * C, t * C, t * ((size_t)m->d_q + 2 * (size_t)m->d_kv), t * (size_t)m->d_q,
                   t * ff * (m->swiglu ? 2 : 1), m->swiglu ? t * ff : 1,
                   t * ((size_t)m->head_dim / 2 + 1) * 2};
    for (int i = 0; i < 7; i++) {
      p[i] = line_alloc(n[i] * sizeof(float));
      if (!p[i]) {
        while (i-- > 0) free(p[i]);
        return -1;
      }
    }
    free(s->x); free(s->xn); free(s->qkv); free(s->atty); free(s->fc); free(s->hid);
    free(s->rope_cs);
    s->x = p[0]; s->xn = p[1]; s->qkv = p[2]; s->atty = p[3]; s->fc = p[4]; s->hid = p[5];
    s->rope_cs = p[6];
    s->n_scratch = T;
  }
  if (rows < ATT_GROUP_MAX) rows = ATT_GROUP_MAX;
  if (nth < s->n_att) nth = s->n_att;
  if (keys < s->att_keys) keys = s->att_keys;
  size_t need = (size_t)nth * (size_t)rows * (size_t)keys;
  if (!s->att || need > s->n_att_floats) {
    float *a = line_alloc(need * sizeof(float));
    if (!a) return -1;
    free(s->att);
    s->att = a;
    s->n_att_floats = need;
  }
  s->n_att = nth;
  s->att_rows = rows;
  s->att_keys = keys;
  return 0;
}

/* Grows the per-thread buffers for widened compact weights. */
static int state_reserve_wide(GPTState *s, int nth) {
  if (nth <= s->n_wide) return 0;
  float *w = line_alloc((size_t)nth * GEMM_COLS * (size_t)s->m->max_k * sizeof(float));
  if (!w) return -1;
  free(s->wide);
  s->wide = w;
  s->n_wide = nth;
  return 0;
}

/* A state for up to max_T positions, clamped to the context. The cache
** itself is allocated as passes need it. */
GPTState *gpt_state_new(const GPTModel *m, int max_T) {
  if (max_T < 1) max_T = 1;
  if (max_T > m->cfg.n_ctx) max_T = m->cfg.n_ctx;
  GPTState *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->m = m;
  s->cap = max_T;
  size_t W = widest_row(m);
  s->tmp = line_alloc(W * sizeof(float));
  s->xq.q = line_alloc(W);
  s->xq.aq = line_alloc(W);
  s->xq.d = malloc((W / GPT_Q8_BLOCK + 1) * sizeof(float));
  s->n_xq = 1;
  /* optional: without it the packed gemv lays the input out each call */
  if (m->q8_packed && gpt_kernels()->q8_slice_act)
    s->xq_sliced = line_alloc(gpt_q8_sliced_bytes((int)W));
  if (!s->tmp || !s->xq.q || !s->xq.aq || !s->xq.d || gpt_q4_act_alloc(&s->xq4, W) ||
      state_grow_cache(s, max_T < 64 ? max_T : 64) || state_reserve(s, 1, 1, 1, s->n_cache)) {
    gpt_state_free(s);
    return NULL;
  }
  return s;
}

void gpt_state_free(GPTState *s) {
  if (!s) return;
  free(s->k_cache); free(s->v_cache);
  free(s->x); free(s->xn); free(s->qkv); free(s->atty); free(s->fc); free(s->hid);
  free(s->rope_cs); free(s->att);
  free(s->logit_block);
  free(s->tmp);
  free(s->xq.q); free(s->xq.aq); free(s->xq.d);
  free(s->xq_sliced);
  gpt_q4_act_free(&s->xq4);
  gpt_q4_act_free(&s->xq4t);
  free(s->wide);
  free(s);
}

int gpt_state_len(const GPTState *s) { return s->len; }
int gpt_state_capacity(const GPTState *s) { return s->cap; }
void gpt_state_truncate(GPTState *s, int len) {
  if (len >= 0 && len < s->len) s->len = len;
}
void gpt_state_set_tape(GPTState *s, GPTTape *tape) { s->tape = tape; }

/* Training's tape (gpt_internal.h): dst (n,) = src when a tape is attached. */
static void tape_save(const GPTState *s, float *dst, const float *src, size_t n) {
  if (s->tape && dst) memcpy(dst, src, n * sizeof(float));
}

/* --------------------------------------------------------------- layers */

/* One sequence of a pass: n tokens appended to state s's cache, in rows
** row0..row0+n-1 of the batch. A pass over one state has one segment; a
** decode step of several sequences has one per sequence. */
typedef struct PassSeg {
  GPTState *s;
  const int *tokens;  /* (n,) */
  int n, row0;
  float *logits;      /* out (V,) after the last token, or NULL */
} PassSeg;

/* What every layer function needs: the model, the state whose scratch the
** batch's rows use, the segments whose caches they extend, the team that
** runs the pass and the kernel set. */
typedef struct Pass {
  const GPTModel *m;
  GPTState *s;
  PassSeg *seg;
  int n_seg;
  GPTTeam *team;
  const GPTKernels *k;
  /* Past its keys and values, the last layer computes each segment's last
  ** row alone (see last_rows_only). */
  int last_rows;
} Pass;

/* True for layer l of p when it computes each segment's last row alone. */
static int keeps_last_rows(const Pass *p, int l) {
  return p->last_rows && l == p->m->cfg.n_layer - 1;
}

/* True for a pass of gpt_forward_seqs: its rows extend the caches of other
** states than the one whose scratch holds them (one sequence or several). */
static int pass_of_seqs(const Pass *p) { return p->n_seg > 1 || p->seg[0].s != p->s; }

/* dst (n,) = row r of w, widened to f32. */
static void mat_row(const GPTKernels *k, const Mat *w, int r, int c0, int n, float *dst) {
  if (w->dtype == GPT_F32) {
    memcpy(dst, (const float *)w->w + (size_t)r * w->k + c0, (size_t)n * sizeof(float));
  } else if (w->dtype == GPT_F16) {
    k->f16_to_f32(dst, (const uint16_t *)w->w + (size_t)r * w->k + c0, (size_t)n);
  } else if (w->dtype == GPT_Q8_0) {
    const uint8_t *row = (const uint8_t *)w->w + (size_t)r * (w->k / GPT_Q8_BLOCK) * GPT_Q8_BYTES;
    if (w->packed) gpt_q8_packed_to_f32(dst, row, w->k, c0 / GPT_Q8_BLOCK, n / GPT_Q8_BLOCK);
    else
      k->q8_to_f32(dst, row + (size_t)(c0 / GPT_Q8_BLOCK) * GPT_Q8_BYTES, (size_t)n / GPT_Q8_BLOCK);
  } else { /* q4 hook: 4- and 6-bit blocks, c0 and n whole blocks */
    int nBytes = 0, nVal = gpt_dtype_block(w->dtype, &nBytes);
    const uint8_t *row = (const uint8_t *)w->w + mat_row_bytes(w, r);
    gpt_q4_to_f32(gpt_q4_kernels(), w->dtype, dst, row + (size_t)(c0 / nVal) * nBytes,
                  (size_t)(n / nVal));
  }
}

/* out (T, C) = tok_emb[tokens] (+ pos_emb[pos0 + t] with learned positions) */
static void encoder_forward(const Pass *p, float *out, const int *tokens, int pos0, int T) {
  const GPTModel *m = p->m;
  int C = m->cfg.n_embd;
  float *pe = p->s->tmp;
  for (int t = 0; t < T; t++) {
    float *o = out + (size_t)t * C;
    mat_row(p->k, &m->tok_emb, tokens[t], 0, C, o);
    if (m->pos_emb.w) {
      mat_row(p->k, &m->pos_emb, pos0 + t, 0, C, pe);
      for (int c = 0; c < C; c++) o[c] = o[c] + pe[c];
    }
  }
}

/* out (T, C) = LayerNorm(inp (T, C)) * w + b for rows t0..t1, or with b
** NULL RMSNorm: inp / sqrt(mean(inp^2) + eps) * w. Statistics in double so
** long rows keep float32's last digit. Rows are ld floats apart. */
static void norm_rows(float *out, const float *inp, const float *w, const float *b, int rms,
                      int t0, int t1, int C, size_t ld, double eps) {
  for (int t = t0; t < t1; t++) {
    const float *x = inp + (size_t)t * ld;
    float *o = out + (size_t)t * ld;
    if (rms) {
      float rstd = (float)(1.0 / sqrt(gpt_row_sq(x, C) / C + eps));
      for (int c = 0; c < C; c++) o[c] = x[c] * rstd * w[c];
      continue;
    }
    double mean = gpt_row_sum(x, C) / C, sq = gpt_row_sq_dev(x, C, mean);
    float rstd = (float)(1.0 / sqrt(sq / C + eps)), fmean = (float)mean;
    for (int c = 0; c < C; c++) o[c] = (x[c] - fmean) * rstd * w[c] + b[c];
  }
}

typedef struct LnTask {
  float *out; const float *inp, *w, *b; int rms, T, C; double eps;
} LnTask;

static void ln_task(void *arg, int ith, int nth) {
  LnTask *a = (LnTask *)arg;
  int t0, t1;
  gpt_team_split(a->T, 1, ith, nth, &t0, &t1);
  norm_rows(a->out, a->inp, a->w, a->b, a->rms, t0, t1, a->C, (size_t)a->C, a->eps);
}

/* The model's norm (LayerNorm with w, b; RMSNorm with w) over (T, C). */
static void norm_forward(const Pass *p, float *out, const float *inp, const float *w,
                         const float *b, int T) {
  int C = p->m->cfg.n_embd;
  LnTask a = {out, inp, w, b, p->m->rms_norm, T, C, p->m->cfg.ln_eps};
  if (T < 2 || (int64_t)T * C < PAR_MIN_ROWS) ln_task(&a, 0, 1);
  else gpt_team_run(p->team, ln_task, &a);
}

/* Qwen3's q/k norm and rotary positions, in place on rows t0..t1 of the
** batch's q and k heads of qkv (T, Q + 2 KV): each head (hd,) is RMSNormed
** with w (hd,) when given, then rotated in Hugging Face's rotate-half
** convention: pairs (i, i + hd/2) turn by angle pos * inv_freq[i]. */
static void qk_heads_rows(const Pass *p, const Layer *L, float *qkv, int t0, int t1) {
  const GPTModel *m = p->m;
  int hd = m->head_dim, half = hd / 2, NH = m->cfg.n_head, KVH = m->n_kv_head;
  size_t ld = (size_t)m->d_q + 2 * (size_t)m->d_kv;
  for (int t = t0; t < t1; t++) {
    const float *cs = p->s->rope_cs + (size_t)t * half * 2;
    for (int h = 0; h < NH + KVH; h++) {
      float *x = qkv + (size_t)t * ld + (size_t)h * hd;
      const float *w = h < NH ? L->q_norm : L->k_norm;
      if (w) norm_rows(x, x, w, NULL, 1, 0, 1, hd, (size_t)hd, m->cfg.ln_eps);
      if (!m->rope) continue;
      for (int i = 0; i < half; i++) {
        float c = cs[2 * i], sn = cs[2 * i + 1], x0 = x[i], x1 = x[i + half];
        x[i] = x0 * c - x1 * sn;
        x[i + half] = x1 * c + x0 * sn;
      }
    }
  }
}

/* Rows t0..t1 of the batch's keys and values, from qkv (T, Q + 2 KV) into
** layer l's cache of the sequence each row belongs to, at its position. */
static void kv_store_rows(const Pass *p, int l, const float *qkv, int t0, int t1) {
  const GPTModel *m = p->m;
  int KVH = m->n_kv_head, hd = m->head_dim, Q = m->d_q, KV = m->d_kv;
  size_t ldq = (size_t)Q + 2 * (size_t)KV;
  for (int i = 0; i < p->n_seg; i++) {
    const PassSeg *g = &p->seg[i];
    int a = t0 > g->row0 ? t0 : g->row0, b = t1 < g->row0 + g->n ? t1 : g->row0 + g->n;
    size_t nc = (size_t)g->s->n_cache;
    float *kc = g->s->k_cache + (size_t)l * KVH * nc * hd;
    float *vc = g->s->v_cache + (size_t)l * KVH * nc * hd;
    for (int t = a; t < b; t++) {
      const float *row = qkv + (size_t)t * ldq;
      size_t pos = (size_t)g->s->len + (size_t)(t - g->row0);
      for (int h = 0; h < KVH; h++) {
        size_t at = ((size_t)h * nc + pos) * hd;
        memcpy(kc + at, row + Q + h * hd, (size_t)hd * sizeof(float));
        memcpy(vc + at, row + Q + KV + h * hd, (size_t)hd * sizeof(float));
      }
    }
  }
}

typedef struct HeadsTask {
  const Pass *p;
  const Layer *L;
  float *qkv;
  int l, T, qk;   /* qk: the q/k norm or rotary positions apply */
} HeadsTask;

/* Member ith's rows: their q and k heads, then their keys and values into
** the caches. */
static void heads_task(void *arg, int ith, int nth) {
  HeadsTask *a = (HeadsTask *)arg;
  int t0, t1;
  gpt_team_split(a->T, 1, ith, nth, &t0, &t1);
  if (a->qk) qk_heads_rows(a->p, a->L, a->qkv, t0, t1);
  kv_store_rows(a->p, a->l, a->qkv, t0, t1);
}

/* The batch's q and k heads normed and rotated in place, and its keys and
** values appended to layer l's caches, split over the team for a batch of
** rows. With a tape, the rotated heads are saved in between. */
static void heads_forward(const Pass *p, int l, float *qkv, int T, GPTTapeLayer *tl) {
  const GPTModel *m = p->m;
  const Layer *L = &m->layer[l];
  size_t ldq = (size_t)m->d_q + 2 * (size_t)m->d_kv;
  HeadsTask a = {p, L, qkv, l, T, m->rope || L->q_norm};
  int par = T >= 2 && (int64_t)T * (int64_t)ldq >= PAR_MIN_ROWS;
  if (tl) { /* the tape keeps the rotated heads: save them before the copy */
    if (a.qk) qk_heads_rows(p, L, qkv, 0, T);
    tape_save(p->s, tl->qkv, qkv, (size_t)T * ldq);
    a.qk = 0;
  }
  if (par) gpt_team_run(p->team, heads_task, &a);
  else heads_task(&a, 0, 1);
}

/* Rows row0..row0+T-1 of the batch's cos and sin (T, hd/2, 2), at
** positions pos0..pos0+T-1, from angles computed in double. */
static void rope_table(const Pass *p, int row0, int pos0, int T) {
  const GPTModel *m = p->m;
  int half = m->head_dim / 2;
  for (int t = 0; t < T; t++) {
    float *cs = p->s->rope_cs + (size_t)(row0 + t) * half * 2;
    for (int i = 0; i < half; i++) {
      double ang = (double)(pos0 + t) * m->inv_freq[i];
      cs[2 * i] = (float)cos(ang);
      cs[2 * i + 1] = (float)sin(ang);
    }
  }
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

/* x (n,) += y (n,): the residual, over the team when it is long enough. */
static void residual_forward(const Pass *p, float *x, const float *y, size_t n) {
  AddTask a = {x, y, n};
  if (n < PAR_MIN_GEMV) add_task(&a, 0, 1);
  else gpt_team_run(p->team, add_task, &a);
}

/* A matrix product: out (T, OC) = inp (T, K) @ W^T + bias, W (OC, K), out's
** rows ldo floats apart. With add, out += the product instead (decode only:
** the residual); with gelu, gelu is applied to the result. then: the product
** the pass runs next, which idle workers read ahead (touch_next_product). */
typedef struct MatTask {
  const Pass *p;
  float *out;
  const float *inp;
  Mat w;
  const float *bias;
  int T;
  int add, gelu;
  size_t ldo;
  int chunk;            /* rows a decode chunk holds (a gemm's: GEMM_COLS) */
  const GPTBlas *blas;  /* OpenBLAS where it may be called (blas.h), or NULL */
  const Mat *then;      /* the product that follows, or NULL */
  struct MemberShare *share; /* each member's unclaimed chunks */
  int n_first;          /* decode: the caller's first chunks, claimed for it by share_out */
} MatTask;

/* A member's part of a product (a decode step's rows, or the columns of a
** product of several tokens), its unclaimed chunks [lo, hi) as
** hi << 32 | lo, alone on its cache line: the owner claims from lo, so its
** rows stream forward (the kernels' prefetch ahead, and the hardware's,
** stay useful from one chunk to the next), and a member that has run out
** of its own takes chunks from the back of another's (2 threads, the
** SmolLM2 shape in q8_0: 236 -> 250 tok/s, where the caller claimed from
** the front of the whole product and the others from the back). */
typedef struct MemberShare {
  _Alignas(64) _Atomic uint64_t ends;
} MemberShare;

/* Chunks are claimed, not assigned: a member that runs late (on a busy
** machine) takes fewer, and no one waits for it. Which member computes a
** value never changes the value. The first of n items claimed at once. */
static int claim(atomic_int *pNext, int n) { return atomic_fetch_add(pNext, n); }

/* A share's chunks [lo, hi) are claimed from either end: by their owner
** from the front, by a member that has run out of its own from the back,
** one at a time. A decode owner (greedy) takes all but the last chunk at
** once, a gemm's owner half of what is left (at least one). Each gemv call
** starts its streams afresh, so fewer, longer calls read faster: 2
** threads, Zen 5, interleaved runs, the products' own rates, SmolLM2-shaped
** q8_0 decode 42.7 -> 49.2 GB/s (960 x 576) and 53.9 -> 57.7 (3072 x 576),
** 1.08x the tokens a second; f16 1.06x, gpt2-shaped q8_0 1.05x (against
** half at a time; a quarter at a time was slower still). A gemm works a
** chunk at a time either way, and keeps half its share for the others to
** balance the slower member of a long prefill. The first chunk claimed,
** or -1 when none is left; *pN: how many. A claim is a locked instruction,
** which waits for every load in flight: one a 16 KB chunk cost a streaming
** decode step 5% of the caller's time. */
static uint32_t owner_claim(uint32_t left, int greedy) {
  if (greedy) return left > 2 ? left - 1 : 1;
  return left / 2 > 1 ? left / 2 : 1;
}

/* Claims chunks of one share (above): from its front (the owner) or one
** from its back (back). */
static int claim_run(_Atomic uint64_t *pEnds, int back, int greedy, int *pN) {
  uint64_t e = atomic_load(pEnds);
  for (;;) {
    uint32_t lo = (uint32_t)e, hi = (uint32_t)(e >> 32);
    if (lo >= hi) return -1;
    uint32_t n = back ? 1 : owner_claim(hi - lo, greedy);
    uint64_t ne = back ? (uint64_t)(hi - 1) << 32 | lo : (uint64_t)hi << 32 | (lo + n);
    if (atomic_compare_exchange_weak(pEnds, &e, ne)) {
      *pN = (int)n;
      return (int)(back ? hi - 1 : lo);
    }
  }
}

/* The most a worker reads ahead of a product: a part of a core's L2, so
** that the rows are still there when it claims them. */
#define TOUCH_MAX_BYTES ((size_t)256 << 10)

/* Rows a decode claim takes: about GEMV_CHUNK_BYTES of W, in whole groups
** of unit rows, at least 16. Small, so that the member that finishes last
** finishes soon after the others; a claim on a member's own cache line
** costs little. */
#define GEMV_CHUNK_BYTES ((size_t)16 << 10)

/* The unit of a decode claim. An owner reads all but the last chunk of its
** share in one call (claim_run), so the chunks set only how finely the
** members even out at the end: 16-row units for short rows (64 rows up to
** 256 KB), 4 for long ones; cblas_sgemv takes 64 rows a call. (64-row
** units, which every call of the claims by halves needed for the kernels'
** streams far apart, left the caller waiting for the worker's last chunk:
** 2 threads, Zen 5, interleaved runs, medians of paired ratios 1.041
** SmolLM2-shaped q8_0, 1.046 f16, 1.043 gpt2-shaped q8_0; 4-row units
** everywhere: 0.941 gpt2-shaped.) */
static int gemv_unit(const GPTKernels *k, const Mat *w) {
  if (k->blas_gemv && w->dtype == GPT_F32) return 64;
  return 64 * mat_row_bytes(w, 1) <= ((size_t)256 << 10) ? 16 : 4;
}

/* Rows of w a decode chunk holds: about GEMV_CHUNK_BYTES, at least 16 and at
** most all of them, rounded up to whole units. */
static int gemv_chunk_rows(const Mat *w, int unit) {
  size_t row = mat_row_bytes(w, 1);
  size_t rows = row ? (GEMV_CHUNK_BYTES + row - 1) / row : 16;
  if (rows < 16) rows = 16;
  if (rows > (size_t)w->rows) rows = (size_t)w->rows;
  if (rows < 1) rows = 1; /* never a chunk of none, which would divide by zero */
  return (int)((rows + (size_t)unit - 1) / (size_t)unit * (size_t)unit);
}

/* Hands n_chunks chunks out to nth members, a contiguous share each. With
** greedy, the caller's first claim (of a decode step) is made here, before
** the run is published: its first locked instruction then comes after its
** first call, not before it, waiting for the run's stores to reach the
** others. The chunks claimed for the caller, from its share's start (0). */
static int share_out(MemberShare *share, int n_chunks, int nth, int greedy) {
  int n_first = 0;
  for (int i = 0; i < nth; i++) {
    int lo, hi;
    gpt_team_split(n_chunks, 1, i, nth, &lo, &hi);
    if (i == 0 && greedy && hi > lo) {
      n_first = (int)owner_claim((uint32_t)(hi - lo), 1);
      lo += n_first;
    }
    /* relaxed: gpt_team_run publishes them; a sequentially consistent store
    ** waited for each line to come back from the member that claimed from
    ** it last */
    atomic_store_explicit(&share[i].ends, (uint64_t)hi << 32 | (uint32_t)lo,
                          memory_order_relaxed);
  }
  return n_first;
}

/* Member ith of nth: the rows of the next product it will claim first (the
** start of its share, at most TOUCH_MAX_BYTES), read into its cache while
** it would otherwise wait: a worker while the caller works alone between
** two products (norms, attention, SwiGLU), where an idle worker held half
** of a 2-thread decode step's bandwidth idle with it; the caller while the
** others finish their shares (2 threads, Zen 5, interleaved runs,
** SmolLM2-shaped q8_0 decode: median of paired ratios 1.037, gpt2-shaped
** 1.009). */
static void touch_next_product(const Mat *w, int ith, int nth) {
  if (!w || !w->w) return;
  int chunk = gemv_chunk_rows(w, gemv_unit(gpt_kernels(), w)), lo, hi;
  gpt_team_split((w->rows + chunk - 1) / chunk, 1, ith, nth, &lo, &hi);
  int r0 = lo * chunk < w->rows ? lo * chunk : w->rows;
  int r1 = hi * chunk < w->rows ? hi * chunk : w->rows;
  size_t start = mat_row_bytes(w, r0), n = mat_row_bytes(w, r1) - start;
  gpt_team_touch_after(ith, (const char *)w->w + start, n < TOUCH_MAX_BYTES ? n : TOUCH_MAX_BYTES);
}

/* Decode: rows r0..r1 of the product (whole groups of gemv_unit's rows but
** for W's last rows). */
static void gemv_rows(const MatTask *a, int r0, int r1) {
  const GPTKernels *k = a->p->k;
  int K = a->w.k, mode = a->add ? GPT_GEMV_ADD : GPT_GEMV_SET;
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
  } else if (a->w.dtype == GPT_Q8_0) {
    (a->w.packed ? k->gemv_q8p : k->gemv_q8)(a->out, (const uint8_t *)a->w.w, &a->p->s->xq,
                                             a->bias, r0, r1, K, mode);
  } else { /* q4 hook */
    gpt_q4_gemv(gpt_q4_kernels(), a->w.dtype, a->out, (const uint8_t *)a->w.w, &a->p->s->xq4,
                a->bias, r0, r1, K, mode);
  }
  if (a->gelu) k->gelu(a->out + r0, (size_t)(r1 - r0));
}

/* Decode: member ith's own share of the chunks, then what is left of the
** others'. */
static void gemv_task(void *arg, int ith, int nth) {
  MatTask *a = (MatTask *)arg;
  if (ith == 0 && a->n_first > 0) {
    int r1 = a->n_first * a->chunk;
    gemv_rows(a, 0, r1 < a->w.rows ? r1 : a->w.rows);
  }
  for (int i = 0, owner = ith; i < nth; i++, owner = (owner + 1) % nth) {
    int ch, n;
    while ((ch = claim_run(&a->share[owner].ends, i > 0, 1, &n)) >= 0) {
      int r0 = ch * a->chunk, r1 = (ch + n) * a->chunk;
      gemv_rows(a, r0, r1 < a->w.rows ? r1 : a->w.rows);
    }
  }
  if (nth > 1) touch_next_product(a->then, ith, nth);
}

/* Chunk ch of the product's columns, on member ith. */
static void gemm_cols(const MatTask *a, int ch, int ith) {
  const GPTKernels *k = a->p->k;
  int K = a->w.k, OC = a->w.rows, T = a->T;
  int c0 = ch * GEMM_COLS, n = OC - c0 < GEMM_COLS ? OC - c0 : GEMM_COLS;
  const float *bias = a->bias ? a->bias + c0 : NULL;
  if (a->w.dtype == GPT_Q8_0) {
    const uint8_t *w = (const uint8_t *)a->w.w + mat_row_bytes(&a->w, c0);
    (a->w.packed ? k->gemm_q8p : k->gemm_q8)(a->out + c0, a->ldo, w, &a->p->s->xq, T, bias, 0, n,
                                             K, GPT_GEMV_SET);
  } else if (is_q4_dtype(a->w.dtype)) {
    const uint8_t *w = (const uint8_t *)a->w.w + mat_row_bytes(&a->w, c0);
    gpt_q4_gemm(gpt_q4_kernels(), a->w.dtype, a->out + c0, a->ldo, w, &a->p->s->xq4t, T, bias,
                0, n, K, GPT_GEMV_SET);
  } else {
    const float *w = (const float *)a->w.w + (size_t)c0 * K;
    if (a->w.dtype != GPT_F32) {
      float *wide = a->p->s->wide + (size_t)ith * GEMM_COLS * a->p->m->max_k;
      for (int i = 0; i < n; i++) mat_row(k, &a->w, c0 + i, 0, K, wide + (size_t)i * K);
      w = wide;
    }
    k->gemm_f32(a->out + c0, a->ldo, w, a->inp, (size_t)K, T, bias, 0, n, K, GPT_GEMV_SET);
  }
  if (a->gelu)
    for (int t = 0; t < T; t++) k->gelu(a->out + (size_t)t * a->ldo + c0, (size_t)n);
}

/* Several tokens (a prefill, or a decode step of several sequences): out's
** columns (W's rows) in chunks of GEMM_COLS, owned and claimed as a decode
** product's rows are, each chunk one call of the kernels' gemm, whose
** value for a token is the one the decode gemv gives that token alone
** (kernels.h). f16 rows are widened into the member's buffer first
** (exactly: the kernels' f16 arithmetic is their f32 arithmetic on the
** widened values); q8_0 and 4-bit rows meet the tokens quantized once for
** all chunks (s->xq, s->xq4t). */
static void gemm_task(void *arg, int ith, int nth) {
  MatTask *a = (MatTask *)arg;
  for (int i = 0, owner = ith; i < nth; i++, owner = (owner + 1) % nth) {
    int ch, n;
    while ((ch = claim_run(&a->share[owner].ends, i > 0, 0, &n)) >= 0)
      for (int j = 0; j < n; j++) gemm_cols(a, ch + j, ith);
  }
  if (nth > 1) touch_next_product(a->then, ith, nth);
}

typedef struct QuantizeTask {
  GPTQ4Act *X;
  const float *inp;
  int T, K, dtype;
} QuantizeTask;

/* Member ith's run of the tokens. */
static void quantize_q4_task(void *arg, int ith, int nth) {
  QuantizeTask *q = (QuantizeTask *)arg;
  int t0 = (int)((int64_t)q->T * ith / nth), t1 = (int)((int64_t)q->T * (ith + 1) / nth);
  for (int t = t0; t < t1; t++) {
    GPTQ4Act x = gpt_q4_act_token(q->X, t, q->K);
    gpt_q4_quantize_act(&x, q->dtype, q->inp + (size_t)t * q->K, q->K);
  }
}

/* Quantizes the T tokens of inp (T, K) into s->xq4t for rows of a 4-bit
** dtype, as the decode gemv's input is, growing it as needed; the team
** shares the tokens (a token's bytes do not depend on who quantized it). */
static int quantize_tokens_q4(const Pass *p, const float *inp, int T, int K, int dtype) {
  GPTState *s = p->s;
  if (T > s->n_xq4t) {
    GPTQ4Act a;
    size_t n = (size_t)T * widest_row(s->m);
    if (gpt_q4_act_alloc(&a, n)) return GPT_NOMEM;
    gpt_q4_act_free(&s->xq4t);
    s->xq4t = a;
    s->n_xq4t = T;
  }
  QuantizeTask q = {&s->xq4t, inp, T, K, dtype};
  if ((int64_t)T * K < PAR_MIN_GEMV) quantize_q4_task(&q, 0, 1);
  else gpt_team_run(p->team, quantize_q4_task, &q);
  return GPT_OK;
}

/* Quantizes the T tokens of inp (T, K) into s->xq for q8_0 rows, growing it
** as needed. */
static int quantize_tokens(const Pass *p, const float *inp, int T, int K) {
  GPTState *s = p->s;
  size_t W = widest_row(s->m);
  if (T > s->n_xq) {
    int8_t *q = line_alloc((size_t)T * W), *aq = line_alloc((size_t)T * W);
    float *d = malloc(((size_t)T * W / GPT_Q8_BLOCK + 1) * sizeof(float));
    if (!q || !aq || !d) {
      free(q); free(aq); free(d);
      return GPT_NOMEM;
    }
    free(s->xq.q); free(s->xq.aq); free(s->xq.d);
    s->xq.q = q; s->xq.aq = aq; s->xq.d = d;
    s->n_xq = T;
  }
  for (int t = 0; t < T; t++) {
    GPTQ8Act x = gpt_q8_act_token(&s->xq, t, K);
    p->k->q8_quantize_act(&x, inp + (size_t)t * K, K);
  }
  return GPT_OK;
}

/* The product of MatTask, run over the team: a decode step's gemv as
** claimed shares of chunks, several tokens' as the gemm. */
static int matmul_forward_ld(const Pass *p, float *out, size_t ldo, const float *inp,
                             const Mat *w, const float *bias, int T, int add, int gelu,
                             const Mat *then) {
  MatTask a = {p, out, inp, *w, bias, T, add, gelu, ldo, 0, NULL, then, NULL, 0};
  MemberShare share[GPT_MAX_THREADS];
  if (T == 1) {
    /* asked once a pass: OpenBLAS only where its allocations cannot fail */
    if (p->k->blas_gemv) a.blas = gpt_blas();
    int serial = (int64_t)w->rows * w->k < PAR_MIN_GEMV;
    int nth = serial ? 1 : gpt_team_size(p->team);
    if (w->dtype == GPT_Q8_0) p->k->q8_quantize_act(&p->s->xq, inp, w->k);
    /* laid out once for all the product's calls (which would each do it) */
    if (w->packed && p->k->q8_slice_act && p->s->xq_sliced) {
      p->k->q8_slice_act(p->s->xq_sliced, &p->s->xq, w->k);
      p->s->xq.sliced = p->s->xq_sliced;
    }
    if (is_q4_dtype(w->dtype)) gpt_q4_quantize_act(&p->s->xq4, w->dtype, inp, w->k);
    if (nth == 1) {
      /* alone, in one call: claims end in calls of a few rows, too few for
      ** the kernel's streams far apart */
      gemv_rows(&a, 0, w->rows);
    } else {
      a.chunk = gemv_chunk_rows(w, gemv_unit(p->k, w));
      a.n_first = share_out(share, (w->rows + a.chunk - 1) / a.chunk, nth, 1);
      a.share = share;
      gpt_team_run(p->team, gemv_task, &a);
    }
    p->s->xq.sliced = NULL; /* the next quantization makes it stale */
  } else {
    /* f16 is widened a chunk at a time */
    if (w->dtype != GPT_F32 && w->dtype != GPT_Q8_0 && !is_q4_dtype(w->dtype) &&
        state_reserve_wide(p->s, gpt_team_capacity(p->team)))
      return GPT_NOMEM;
    if (w->dtype == GPT_Q8_0 && quantize_tokens(p, inp, T, w->k)) return GPT_NOMEM;
    if (is_q4_dtype(w->dtype) && quantize_tokens_q4(p, inp, T, w->k, w->dtype)) return GPT_NOMEM;
    int serial = (int64_t)T * w->rows * w->k < PAR_MIN_GEMM;
    share_out(share, (w->rows + GEMM_COLS - 1) / GEMM_COLS, serial ? 1 : gpt_team_size(p->team), 0);
    a.share = share;
    if (serial) gemm_task(&a, 0, 1);
    else gpt_team_run(p->team, gemm_task, &a);
  }
  return GPT_OK;
}

/* The same with out's rows packed, (T, OC). */
/* matmul_forward_ld with out's rows packed (ldo = OC). */
static int matmul_forward(const Pass *p, float *out, const float *inp, const Mat *w,
                          const float *bias, int T, int add, int gelu, const Mat *then) {
  return matmul_forward_ld(p, out, (size_t)w->rows, inp, w, bias, T, add, gelu, then);
}

/* In place: each row of p (T, ld) becomes softmax over its first n_i entries,
** n_i = P + t + 1 (causal); the masked tail is zeroed. */
static void causal_softmax(const GPTKernels *k, float *p, int T, int ld, int P) {
  for (int t = 0; t < T; t++) {
    float *row = p + (size_t)t * ld;
    int n = P + t + 1;
    float mx = k->max(row, n); /* a NaN among the scores makes the row NaN either way */
    float sum = k->exp_sum(row, n, mx, 1.0f);
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) row[j] *= inv;
    for (int j = n; j < ld; j++) row[j] = 0.0f;
  }
}

/* Causal multi-head attention for T new queries against P+T cached keys.
** qkv (T, Q + 2 KV) -> out (T, Q); k, v are this layer's cache, (KVH,
** n_cache, hd). Query head h reads key/value head h / (NH / KVH), as
** Hugging Face's repeat_kv does. One head is a unit of work (see
** att_segs_task); the scores are the member's own (T, P+T). */
typedef struct AttTask {
  const Pass *p;
  float *out;
  const float *qkv, *k, *v;
  int P, T, NH, group, hd, cache_rows, layer;
  size_t ld_qkv, ld_out;
  GPTForwardIO *io;
  int rc;
} AttTask;

/* Hands the probabilities of query head h's rows to the tape and to
** io->on_attention: (rows, nk) in att for queries from position q0. */
static int attention_keep(AttTask *a, int h, int q0, int rows, int nk, const float *att) {
  GPTForwardIO *io = a->io;
  if (a->p->s->tape)
    tape_save(a->p->s, a->p->s->tape->layer[a->layer].att + (size_t)h * a->T * nk, att,
              (size_t)rows * nk);
  if (io && io->on_attention && io->want_attention && io->want_attention(io->ctx, a->layer, h) &&
      io->on_attention(io->ctx, a->layer, h, q0, rows, nk, att))
    return GPT_ABORTED;
  return GPT_OK;
}

/* Query heads h0..h1 of AttTask, scores in the member's own att, which
** holds block rows: a prompt's rows go in blocks of that many, each against
** the keys it sees (a taped pass's are one block). */
static void attention_heads(AttTask *a, int h0, int h1, float *att, int block) {
  const GPTKernels *kern = a->p->k;
  int T = a->T, P = a->P, hd = a->hd;
  float scale = 1.0f / sqrtf((float)hd);
  for (int h = h0, n_q; h < h1; h += n_q) {
    const float *qh = a->qkv + (size_t)h * hd;
    size_t kv = (size_t)(h / a->group) * a->cache_rows * hd;
    const float *kh = a->k + kv, *vh = a->v + kv;
    float *oh = a->out + (size_t)h * hd;
    n_q = 1;
    if (T > 1) {
      /* rows r0.. of head h, the queries at P + r0.., each against the P +
      ** r0 + r + 1 keys it sees: scores (rows, nk) = Q @ K_h^T (the decode
      ** kernels, not sgemm, whose buffer allocation never gives up: blas.c),
      ** then out (rows, hd) = probabilities @ V_h over the unmasked keys */
      for (int r0 = 0; r0 < T; r0 += block) {
        int rows = T - r0 < block ? T - r0 : block, q0 = P + r0, nk = q0 + rows;
        kern->att_scores_n(att, (size_t)nk, qh + (size_t)r0 * a->ld_qkv, a->ld_qkv, rows, kh,
                           (size_t)hd, q0 + 1, 1, hd, scale);
        causal_softmax(kern, att, rows, nk, q0);
        if ((a->rc = attention_keep(a, h, q0, rows, nk, att))) return;
        kern->att_values_n(oh + (size_t)r0 * a->ld_out, a->ld_out, att, (size_t)nk, rows, vh,
                           (size_t)hd, q0 + 1, 1, hd);
      }
      continue;
    }
    /* a decode step scores the query heads that read one cache head together
    ** (as the queries of a prompt), each key and value row read once for
    ** all: each head's scores and sums are those it gets alone */
    while (n_q < ATT_GROUP_MAX && h + n_q < h1 && (h + n_q) / a->group == h / a->group) n_q++;
    int nk = P + 1;
    kern->att_scores_n(att, (size_t)nk, qh, (size_t)hd, n_q, kh, (size_t)hd, P + 1, 0, hd, scale);
    for (int j = 0; j < n_q; j++) {
      causal_softmax(kern, att + (size_t)j * nk, 1, nk, P);
      if ((a->rc = attention_keep(a, h + j, P, 1, nk, att + (size_t)j * nk))) return;
    }
    kern->att_values_n(oh, (size_t)hd, att, (size_t)nk, n_q, vh, (size_t)hd, P + 1, 0, hd);
  }
}

/* a (one call's attention) for sequence i of pass p in layer l: its rows of
** qkv and atty, its cache. */
static void att_of_seg(AttTask *a, const Pass *p, int i, int l, GPTForwardIO *io) {
  const GPTModel *m = p->m;
  const PassSeg *g = &p->seg[i];
  size_t nc = (size_t)g->s->n_cache, hd = (size_t)m->head_dim, Q = (size_t)m->d_q;
  size_t cache = ((size_t)l * (size_t)m->n_kv_head) * nc * hd;
  /* the last layer of a pass that reads only the last rows: segment i's
  ** last query alone, at its position, its output at row i */
  int last = keeps_last_rows(p, l), row = last ? g->row0 + g->n - 1 : g->row0;
  memset(a, 0, sizeof(*a));
  a->p = p;
  a->out = p->s->atty + (size_t)(last ? i : g->row0) * Q;
  a->ld_qkv = Q + 2 * (size_t)m->d_kv;
  a->qkv = p->s->qkv + (size_t)row * a->ld_qkv;
  a->k = g->s->k_cache + cache;
  a->v = g->s->v_cache + cache;
  a->P = g->s->len + (last ? g->n - 1 : 0);
  a->T = last ? 1 : g->n;
  a->NH = m->cfg.n_head;
  a->group = m->cfg.n_head / m->n_kv_head;
  a->hd = m->head_dim;
  a->cache_rows = (int)nc;
  a->layer = l;
  a->ld_out = Q;
  a->io = io;
  a->rc = GPT_OK;
}

/* Every sequence's attention in layer l in one parallel region: the items
** are (sequence, run of query heads) pairs, claimed in order (a decode step
** of gpt_batch has a sequence a row, each too small to split alone). Each
** member has its own scores, (att_rows(s), att_keys).
**
** A prefill item is one query head. In a decode step (one token a
** sequence) an item takes a run of the heads that read one key/value head
** (GQA), n_sub runs a group: the member that reads a cache head from memory
** then serves its other query heads from its own cache, where one head an
** item had every member fetch every cache head (SmolLM2's 3 query heads a
** cache head read the cache three times). */
typedef struct AttSegsTask {
  const Pass *p;
  int layer;
  int n_sub;          /* runs a key/value head's query heads are cut into */
  GPTForwardIO *io;
  atomic_int next;
} AttSegsTask;

static void att_segs_task(void *arg, int ith, int nth) {
  AttSegsTask *t = (AttSegsTask *)arg;
  GPTState *s = t->p->s;
  const GPTModel *m = t->p->m;
  int group = m->cfg.n_head / m->n_kv_head, n_sub = t->n_sub;
  int per_seg = m->n_kv_head * n_sub, n_items = t->p->n_seg * per_seg;
  /* items in runs of an eighth of a member's share where there are many (a
  ** gpt_batch step: one claim an item, each a locked add on a line the
  ** members pass back and forth, took a quarter of its attention: 16
  ** sequences of GPT-2 124M, 2 threads, 180-184 -> 138-141 us a layer) */
  int run = n_items / (8 * nth) > 1 ? n_items / (8 * nth) : 1;
  for (int first; (first = claim(&t->next, run)) < n_items;)
    for (int item = first; item < first + run && item < n_items; item++) {
      AttTask a;
      int j = item % per_seg, kv = j / n_sub, sub = j % n_sub;
      att_of_seg(&a, t->p, item / per_seg, t->layer, t->io);
      attention_heads(&a, kv * group + sub * group / n_sub,
                      kv * group + (sub + 1) * group / n_sub,
                      s->att + (size_t)ith * att_rows(s) * (size_t)s->att_keys, att_rows(s));
    }
  /* a worker out of items reads ahead of the output projection */
  if (nth > 1) touch_next_product(&m->layer[t->layer].o, ith, nth);
}

/* The attention of layer l for every sequence of the pass, whose keys and
** values are in their caches. */
static int attention_forward(const Pass *p, int l, GPTForwardIO *io) {
  if (io && io->on_attention) {
    /* callbacks run on the caller's thread, one head after another */
    for (int i = 0; i < p->n_seg; i++) {
      AttTask a;
      att_of_seg(&a, p, i, l, io);
      attention_heads(&a, 0, a.NH, p->s->att, att_rows(p->s));
      if (a.rc) return a.rc;
    }
    return GPT_OK;
  }
  int64_t work = 0;
  int last = keeps_last_rows(p, l), decode = 1, group = p->m->cfg.n_head / p->m->n_kv_head;
  for (int i = 0; i < p->n_seg; i++) {
    int n = last ? 1 : p->seg[i].n;
    work += (int64_t)n * (p->seg[i].s->len + p->seg[i].n) * p->m->d_q;
    if (n > 1) decode = 0;
  }
  AttSegsTask t = {p, l, group, io, 0};
  if (decode) {
    /* whole groups, unless that leaves a member with no item (SmolLM2-shaped
    ** decode on 2 threads, 3 groups of 3: attention 0.8 -> 0.6 ms a token) */
    int nth = gpt_team_size(p->team), units = p->n_seg * p->m->n_kv_head;
    t.n_sub = 1;
    while (t.n_sub < group && units * t.n_sub < nth) t.n_sub++;
  }
  if (work < PAR_MIN_ATT) att_segs_task(&t, 0, 1);
  else gpt_team_run(p->team, att_segs_task, &t);
  return GPT_OK;
}

/* ---------------------------------------------------------- forward pass */

/* Checks n tokens to append to state gs: 1 or more, within its capacity,
** each in the vocabulary. GPT_OK, or GPT_ERROR with err. */
static int tokens_check(const GPTModel *m, const GPTState *gs, const int *tokens, int n,
                        char *err, size_t n_err) {
  if (n < 1 || n > gs->cap - gs->len) {
    snprintf(err, n_err, "%d tokens after %d do not fit the cache of %d positions", n, gs->len,
             gs->cap);
    return GPT_ERROR;
  }
  for (int t = 0; t < n; t++) {
    if (tokens[t] < 0 || tokens[t] >= m->cfg.vocab_size) {
      snprintf(err, n_err, "token id %d at position %d is outside the vocabulary of %d",
               tokens[t], gs->len + t, m->cfg.vocab_size);
      return GPT_ERROR;
    }
  }
  return GPT_OK;
}

/* Checks the batch's segments, makes room for them (each cache, and the
** scratch of p->s for all rows) and embeds their tokens into p->s->x. */
static int batch_begin(const Pass *p, char *err, size_t n_err) {
  const GPTModel *m = p->m;
  GPTState *s = p->s;
  const GPTConfig *c = &m->cfg;
  int T = 0, keys = 0, rows = 0;
  for (int i = 0; i < p->n_seg; i++) {
    const PassSeg *g = &p->seg[i];
    GPTState *gs = g->s;
    if (tokens_check(m, gs, g->tokens, g->n, err, n_err)) return GPT_ERROR;
    if (gs->m != m || (pass_of_seqs(p) && gs->tape)) {
      snprintf(err, n_err, "sequence %d of the batch has a state of another model or a tape",
               i);
      return GPT_ERROR;
    }
    if (gs->tape && (gs->len != 0 || g->n > gs->tape->T)) {
      snprintf(err, n_err, "a taped pass of %d tokens after %d exceeds the tape's %d from 0",
               g->n, gs->len, gs->tape->T);
      return GPT_ERROR;
    }
    if (state_grow_cache(gs, gs->len + g->n)) {
      snprintf(err, n_err, "out of memory for a batch of %d tokens after %d", g->n, gs->len);
      return GPT_NOMEM;
    }
    if (gs->n_cache > keys) keys = gs->n_cache;
    if (g->n > rows) rows = g->n;
    T += g->n;
  }
  /* a taped pass keeps every row's scores for the backward pass */
  if (!s->tape) rows = att_block_rows(rows, keys);
  if (state_reserve(s, T, rows, gpt_team_capacity(p->team), keys)) {
    snprintf(err, n_err, "out of memory for a batch of %d tokens", T);
    return GPT_NOMEM;
  }
  for (int i = 0, row = 0; i < p->n_seg; i++) {
    PassSeg *g = &p->seg[i];
    g->row0 = row;
    encoder_forward(p, s->x + (size_t)row * c->n_embd, g->tokens, g->s->len, g->n);
    if (m->rope) rope_table(p, row, g->s->len, g->n);
    row += g->n;
  }
  /* tape: RoPE's backward turns by the same angles */
  if (s->tape && m->rope)
    tape_save(s, s->tape->rope_cs, s->rope_cs, (size_t)T * (size_t)(m->head_dim / 2) * 2);
  s->batch_T = T;
  return GPT_OK;
}

/* True when every value of x (n,) is finite: x * 0 is NaN exactly for an
** infinity or a NaN, and a sum keeps it. Eight sums, which GCC turns into
** vectors without -ffast-math: one sum waited on each add (4 cycles a
** value; 0.7 ms for a batch's 16 rows of GPT-2 logits). */
static int finite_f32(const float *x, size_t n) {
  float acc[8] = {0}, sum = 0.0f;
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += x[i + j] * 0.0f;
  for (; i < n; i++) acc[0] += x[i] * 0.0f;
  for (int j = 0; j < 8; j++) sum += acc[j];
  return sum == 0.0f;
}

/* out (T, F) = silu(gate) * up, gate and up the halves of fc (T, 2F), for
** rows t0..t1. */
static void swiglu_rows(const GPTKernels *k, float *out, const float *fc, int t0, int t1, int F) {
  for (int t = t0; t < t1; t++) {
    const float *g = fc + (size_t)t * 2 * F;
    k->silu_mul(out + (size_t)t * F, g, g + F, (size_t)F);
  }
}

typedef struct SwigluTask {
  const GPTKernels *k; float *out; const float *fc; int T, F;
} SwigluTask;

static void swiglu_task(void *arg, int ith, int nth) {
  SwigluTask *a = (SwigluTask *)arg;
  int t0, t1;
  gpt_team_split(a->T, 1, ith, nth, &t0, &t1);
  swiglu_rows(a->k, a->out, a->fc, t0, t1, a->F);
}

/* SwiGLU over the batch, its rows split over the team (SmolLM2-shaped
** prefill of 512 tokens on 2 threads: 547-553 -> 557-579 tok/s, with
** expf a value). */
static void swiglu_forward(const Pass *p, float *out, const float *fc, int T, int F) {
  SwigluTask a = {p->k, out, fc, T, F};
  if (T < 4 || (int64_t)T * F < PAR_MIN_GEMV) swiglu_task(&a, 0, 1);
  else gpt_team_run(p->team, swiglu_task, &a);
}

/* The first product of a layer's attention and of its MLP (a decode
** step's next product after the one before them). */
static const Mat *attn_first(const Layer *L) { return L->qkv.w ? &L->qkv : &L->q; }
static const Mat *mlp_first(const GPTModel *m, const Layer *L) {
  return !m->swiglu ? &L->up : L->gate_up.w ? &L->gate_up : &L->gate;
}

/* Block l over the batch: x += attn(norm_1(x)); x += mlp(norm_2(x)). Keys
** and values of the batch are appended to layer l's cache. Shapes:
** x (T, C) -> qkv (T, Q + 2 KV) -> atty (T, Q) -> x; x -> fc (T, F or 2F)
** -> x. */
static int batch_layer(const Pass *p, int l, GPTForwardIO *io) {
  const GPTModel *m = p->m;
  GPTState *s = p->s;
  const Layer *L = &m->layer[l];
  int C = m->cfg.n_embd, T = s->batch_T, rc;
  int Q = m->d_q, KV = m->d_kv, F = m->d_ff;
  size_t ldq = (size_t)Q + 2 * (size_t)KV;
  if (T < 1) return GPT_ERROR;
  if (io && io->should_stop && io->should_stop(io->ctx)) return GPT_ABORTED;
  GPTTapeLayer *tl = s->tape ? &s->tape->layer[l] : NULL;
  size_t TC = (size_t)T * C;

  if (tl) tape_save(s, tl->x_in, s->x, TC);
  norm_forward(p, s->xn, s->x, L->attn_norm_w, L->attn_norm_b, T);
  if (tl) tape_save(s, tl->ln1, s->xn, TC);
  if (L->qkv.w) {
    if ((rc = matmul_forward_ld(p, s->qkv, ldq, s->xn, &L->qkv, L->qkv_b, T, 0, 0, &L->o)))
      return rc;
  } else {
    if ((rc = matmul_forward_ld(p, s->qkv, ldq, s->xn, &L->q, L->q_b, T, 0, 0, &L->k)))
      return rc;
    if ((rc = matmul_forward_ld(p, s->qkv + Q, ldq, s->xn, &L->k, L->k_b, T, 0, 0, &L->v)))
      return rc;
    if ((rc = matmul_forward_ld(p, s->qkv + Q + KV, ldq, s->xn, &L->v, L->v_b, T, 0, 0,
                                 &L->o)))
      return rc;
  }
  /* tape: the q/k norm's backward reads its input */
  if (tl && L->q_norm) tape_save(s, tl->qkv_pre, s->qkv, (size_t)T * ldq);
  /* each sequence's keys and values go to its cache, and its queries attend
  ** to that cache alone */
  heads_forward(p, l, s->qkv, T, tl);
  if ((rc = attention_forward(p, l, io))) return rc;
  if (keeps_last_rows(p, l)) {
    /* from here on, one row a segment: its last, which attention left at
    ** row i; the residual's rows follow (row0 + n - 1 >= i, so no row is
    ** overwritten before it is read) */
    for (int i = 0; i < p->n_seg; i++)
      memmove(s->x + (size_t)i * C, s->x + (size_t)(p->seg[i].row0 + p->seg[i].n - 1) * C,
              (size_t)C * sizeof(float));
    T = s->batch_T = p->n_seg;
    TC = (size_t)T * C;
  }
  if (tl) tape_save(s, tl->atty, s->atty, (size_t)T * Q);
  if (T == 1) { /* the residual is added by the product itself */
    if ((rc = matmul_forward(p, s->x, s->atty, &L->o, L->o_b, 1, 1, 0, mlp_first(m, L))))
      return rc;
  } else {
    if ((rc = matmul_forward(p, s->xn, s->atty, &L->o, L->o_b, T, 0, 0, mlp_first(m, L))))
      return rc;
    residual_forward(p, s->x, s->xn, (size_t)T * C);
  }

  if (tl) tape_save(s, tl->x_mid, s->x, TC);
  norm_forward(p, s->xn, s->x, L->ffn_norm_w, L->ffn_norm_b, T);
  if (tl) tape_save(s, tl->ln2, s->xn, TC);
  const float *h = s->fc;
  if (m->swiglu) {
    size_t ld = 2 * (size_t)F;
    if (L->gate_up.w) {
      if ((rc = matmul_forward_ld(p, s->fc, ld, s->xn, &L->gate_up, NULL, T, 0, 0, &L->down)))
        return rc;
    } else {
      if ((rc = matmul_forward_ld(p, s->fc, ld, s->xn, &L->gate, NULL, T, 0, 0, &L->up)))
        return rc;
      if ((rc = matmul_forward_ld(p, s->fc + F, ld, s->xn, &L->up, NULL, T, 0, 0, &L->down)))
        return rc;
    }
    if (tl) tape_save(s, tl->fc, s->fc, (size_t)T * 2 * F);
    swiglu_forward(p, s->hid, s->fc, T, F);
    h = s->hid;
  } else if (tl) { /* the tape keeps GELU's input */
    if ((rc = matmul_forward(p, s->fc, s->xn, &L->up, L->up_b, T, 0, 0, &L->down)))
      return rc;
    tape_save(s, tl->fc, s->fc, (size_t)T * F);
    p->k->gelu(s->fc, (size_t)T * F);
  } else {
    if ((rc = matmul_forward(p, s->fc, s->xn, &L->up, L->up_b, T, 0, 1, &L->down)))
      return rc;
  }
  if (tl) tape_save(s, tl->hid, h, (size_t)T * F);
  const Mat *after = l + 1 < m->cfg.n_layer ? attn_first(&m->layer[l + 1]) : &m->head;
  if (T == 1) {
    if ((rc = matmul_forward(p, s->x, h, &L->down, L->down_b, 1, 1, 0, after))) return rc;
  } else {
    if ((rc = matmul_forward(p, s->xn, h, &L->down, L->down_b, T, 0, 0, after))) return rc;
    residual_forward(p, s->x, s->xn, (size_t)T * C);
  }
  /* (T, C): weights that overflow float32 show here first, in every caller */
  if (!finite_f32(s->x, (size_t)T * C)) {
    s->overflow = "hidden state";
    return GPT_OVERFLOW;
  }
  return GPT_OK;
}

/* logits (V,): ids past the tokenizer (a vocabulary padded for speed, as
** Qwen's 151,936) get -inf, so they are never sampled nor listed. */
static void mask_dead_ids(const GPTModel *m, float *logits) {
  for (int i = m->n_live; i < m->cfg.vocab_size; i++) logits[i] = -INFINITY;
}

/* The end of a pass over several sequences: each one's logits after its
** last token, (n_seg, V) in blocks of LOGIT_ROWS rows through the head, then
** every cache committed. The final norm's rows are in p->s->xn. */
static int batch_end_seqs(const Pass *p) {
  const GPTModel *m = p->m;
  GPTState *s = p->s;
  int C = m->cfg.n_embd, V = m->cfg.vocab_size, rc;
  if (!s->logit_block) {
    s->logit_block = malloc((size_t)LOGIT_ROWS * V * sizeof(float));
    if (!s->logit_block) return GPT_NOMEM;
  }
  /* the last row of each sequence, gathered into x (free after the norm) */
  for (int i = 0; i < p->n_seg; i++) {
    int row = p->last_rows ? i : p->seg[i].row0 + p->seg[i].n - 1;
    memcpy(s->x + (size_t)i * C, s->xn + (size_t)row * C, (size_t)C * sizeof(float));
  }
  for (int i0 = 0; i0 < p->n_seg; i0 += LOGIT_ROWS) {
    int rows = p->n_seg - i0 < LOGIT_ROWS ? p->n_seg - i0 : LOGIT_ROWS;
    if ((rc = matmul_forward(p, s->logit_block, s->x + (size_t)i0 * C, &m->head, NULL, rows,
                             0, 0, NULL)))
      return rc;
    if (!finite_f32(s->logit_block, (size_t)rows * V)) {
      s->overflow = "logits";
      return GPT_OVERFLOW;
    }
    for (int r = 0; r < rows; r++) {
      float *out = p->seg[i0 + r].logits;
      if (!out) continue;
      memcpy(out, s->logit_block + (size_t)r * V, (size_t)V * sizeof(float));
      mask_dead_ids(m, out);
    }
  }
  for (int i = 0; i < p->n_seg; i++) p->seg[i].s->len += p->seg[i].n;
  s->batch_T = 0;
  return GPT_OK;
}

/* The final norm, then whatever io asks for: the hidden rows, per-position
** logits in blocks, the last token's logits. Commits the batch to the
** cache, unless a value overflowed (GPT_OVERFLOW, with s->overflow saying
** where). A pass over several sequences gives each its logits instead. */
static int batch_end(const Pass *p, GPTForwardIO *io) {
  const GPTModel *m = p->m;
  GPTState *s = p->s;
  const GPTConfig *c = &m->cfg;
  int C = c->n_embd, V = c->vocab_size, T = s->batch_T, rc;
  const Mat *head = &m->head;
  if (T < 1) return GPT_ERROR;
  if (s->tape) tape_save(s, s->tape->x_f, s->x, (size_t)T * C);
  norm_forward(p, s->xn, s->x, m->out_norm_w, m->out_norm_b, T);
  if (!finite_f32(s->xn, (size_t)T * C)) {
    s->overflow = "hidden state";
    return GPT_OVERFLOW;
  }
  if (pass_of_seqs(p)) return batch_end_seqs(p);
  if (s->tape) {
    tape_save(s, s->tape->ln_f, s->xn, (size_t)T * C);
    if (s->tape->logits &&
        (rc = matmul_forward(p, s->tape->logits, s->xn, head, NULL, T, 0, 0, NULL)))
      return rc;
  }
  int P = s->len;
  s->len += p->seg[0].n; /* T, or 1 where the last layer kept the last row alone */
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
      /* (rows, V) = xn (rows, C) @ head^T: a row's values do not depend on
      ** the block it is in (kernels.h) */
      if ((rc = matmul_forward(p, s->logit_block, s->xn + (size_t)t0 * C, head, NULL, rows, 0, 0,
                                NULL)))
        return rc;
      /* checked before the dead ids get their -inf */
      if (!finite_f32(s->logit_block, (size_t)rows * V)) {
        s->overflow = "logits";
        s->len = P;
        return GPT_OVERFLOW;
      }
      for (int r = 0; r < rows; r++) mask_dead_ids(m, s->logit_block + (size_t)r * V);
      if (io->on_logits(io->ctx, P + t0, rows, s->logit_block)) return GPT_ABORTED;
    }
  }
  if (io->logits) {
    /* logits (V,) = head (V, C) @ xn[T-1] */
    if ((rc = matmul_forward(p, io->logits, s->xn + (size_t)(T - 1) * C, head, NULL, 1, 0, 0, NULL)))
      return rc;
    if (!finite_f32(io->logits, (size_t)V)) {
      s->overflow = "logits";
      s->len = P;
      return GPT_OVERFLOW;
    }
    mask_dead_ids(m, io->logits);
  }
  return GPT_OK;
}

/* A pass's team and kernels, for the thread count of the calling thread,
** over the one sequence of state s: the n tokens of the batch in progress
** (or those given to gpt_batch_begin). */
static void pass_open(Pass *p, PassSeg *seg, const GPTModel *m, GPTState *s,
                      const int *tokens, int n) {
  memset(seg, 0, sizeof(*seg));
  seg->s = s;
  seg->tokens = tokens;
  seg->n = tokens ? n : s->batch_T;
  p->m = m;
  p->s = s;
  p->seg = seg;
  p->n_seg = 1;
  p->k = gpt_kernels();
  p->team = gpt_team_acquire(gpt_threads_get());
  p->last_rows = 0;
}

static void pass_close(Pass *p) { gpt_team_release(p->team); }

int gpt_batch_begin(const GPTModel *m, GPTState *s, const int *tokens, int n,
                    char *err, size_t n_err) {
  Pass p;
  PassSeg seg;
  if (!tokens) return GPT_ERROR;
  pass_open(&p, &seg, m, s, tokens, n);
  int rc = batch_begin(&p, err, n_err);
  pass_close(&p);
  return rc;
}

int gpt_batch_layer(const GPTModel *m, GPTState *s, int l, GPTForwardIO *io) {
  Pass p;
  PassSeg seg;
  if (l < 0 || l >= m->cfg.n_layer) return GPT_ERROR;
  pass_open(&p, &seg, m, s, NULL, 0);
  int rc = batch_layer(&p, l, io);
  pass_close(&p);
  return rc;
}

int gpt_batch_end(const GPTModel *m, GPTState *s, GPTForwardIO *io) {
  Pass p;
  PassSeg seg;
  pass_open(&p, &seg, m, s, NULL, 0);
  int rc = batch_end(&p, io);
  pass_close(&p);
  return rc;
}

/* Whether the pass reads nothing of its last layer but each segment's last
** row (the next token's logits): no tape, no hidden rows, no per-position
** logits nor attention, and some row to spare. Then that layer computes
** every row's keys and values for the cache, and the rest for the last rows
** alone, as llama.cpp does: a prompt of n tokens skips n - 1 rows of the
** layer's attention, projection and MLP. Each kept row's values are those
** of the whole layer (a row's products never depend on the others). */
static int last_rows_only(const Pass *p, const GPTForwardIO *io) {
  if (p->s->tape || p->s->batch_T <= p->n_seg) return 0;
  return !io || (!io->hidden && !io->on_logits && !io->on_attention);
}

/* The whole pass over p's segments: begin, every layer, end, on one team,
** which it releases. On failure no cache grows, so a caller can retry or
** stop cleanly, and err says why. */
static int pass_run(Pass *p, GPTForwardIO *io, char *err, size_t n_err) {
  GPTState *s = p->s;
  int rc = batch_begin(p, err, n_err);
  if (rc == GPT_OK) p->last_rows = last_rows_only(p, io);
  for (int l = 0; rc == GPT_OK && l < p->m->cfg.n_layer; l++) rc = batch_layer(p, l, io);
  if (rc == GPT_OK) rc = batch_end(p, io);
  pass_close(p);
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

/* Tokens a pass takes at most: a longer prompt runs as several passes, as
** llama.cpp's micro-batches of 512, so that its scratch ((T, C) rows a few
** times over) stays bounded: one pass of a 32k-token prompt on a 1B model
** would hold 4 GB. A token's values do not depend on the pass it is in. */
#define PASS_TOKENS_MAX 512

int gpt_forward(const GPTModel *m, GPTState *s, const int *tokens, int n,
                GPTForwardIO *io, char *err, size_t n_err) {
  Pass p;
  PassSeg seg;
  if (!tokens) return GPT_ERROR;
  if (n <= PASS_TOKENS_MAX || s->tape) {
    pass_open(&p, &seg, m, s, tokens, n);
    return pass_run(&p, io, err, n_err);
  }
  if (tokens_check(m, s, tokens, n, err, n_err)) return GPT_ERROR;
  /* passes in order, the logits from the last; on failure the cache goes
  ** back to its length before the call */
  int len0 = s->len, rc = GPT_OK;
  for (int t0 = 0; rc == GPT_OK && t0 < n; t0 += PASS_TOKENS_MAX) {
    int nt = n - t0 < PASS_TOKENS_MAX ? n - t0 : PASS_TOKENS_MAX;
    GPTForwardIO part;
    if (io) {
      part = *io;
      if (t0 + nt < n) part.logits = NULL;
      if (io->hidden) part.hidden = io->hidden + (size_t)t0 * m->cfg.n_embd;
    }
    pass_open(&p, &seg, m, s, tokens + t0, nt);
    rc = pass_run(&p, io ? &part : NULL, err, n_err);
  }
  if (rc != GPT_OK) gpt_state_truncate(s, len0);
  return rc;
}

/* Several sequences in one pass (see gpt.h): the products read each weight
** once for all of them, each sequence attends to its own cache. */
int gpt_forward_seqs(const GPTModel *m, GPTState *scratch, const GPTSeq *seqs, int n_seq,
                     GPTForwardIO *io, char *err, size_t n_err) {
  Pass p;
  PassSeg one;
  if (n_seq < 1 || n_seq > GPT_MAX_SEQS) {
    snprintf(err, n_err, "%d sequences in one pass: 1 to %d", n_seq, GPT_MAX_SEQS);
    return GPT_ERROR;
  }
  for (int i = 0; i < n_seq; i++) {
    if (!seqs[i].s || !seqs[i].tokens || seqs[i].s == scratch) {
      snprintf(err, n_err, "sequence %d of the batch has no state, no tokens or the "
               "batch's own state", i);
      return GPT_ERROR;
    }
    for (int j = 0; j < i; j++) {
      if (seqs[j].s == seqs[i].s) {
        snprintf(err, n_err, "sequences %d and %d of the batch share a state", j, i);
        return GPT_ERROR;
      }
    }
  }
  for (int i = 0; i < n_seq; i++)
    if (tokens_check(m, seqs[i].s, seqs[i].tokens, seqs[i].n, err, n_err)) return GPT_ERROR;
  PassSeg *aSeg = calloc((size_t)n_seq, sizeof(PassSeg));
  int *aLen0 = malloc((size_t)n_seq * sizeof(int));
  if (!aSeg || !aLen0) {
    free(aSeg);
    free(aLen0);
    return GPT_NOMEM;
  }
  for (int i = 0; i < n_seq; i++) aLen0[i] = seqs[i].s->len;
  /* only the interrupt check of io applies to several sequences */
  GPTForwardIO stop;
  memset(&stop, 0, sizeof(stop));
  if (io) {
    stop.should_stop = io->should_stop;
    stop.ctx = io->ctx;
  }
  /* passes of at most PASS_TOKENS_MAX tokens (one where they fit): whole
  ** sequences in order, one longer than the room left cut into pieces over
  ** the passes that follow, its logits from its last piece */
  int rc = GPT_OK, i = 0, done = 0; /* sequence i's tokens already run */
  while (rc == GPT_OK && i < n_seq) {
    int n_seg = 0;
    for (int room = PASS_TOKENS_MAX; room > 0 && i < n_seq; n_seg++) {
      int left = seqs[i].n - done, take = left < room ? left : room;
      aSeg[n_seg].s = seqs[i].s;
      aSeg[n_seg].tokens = seqs[i].tokens + done;
      aSeg[n_seg].n = take;
      aSeg[n_seg].logits = take == left ? seqs[i].logits : NULL;
      room -= take;
      done += take;
      if (done == seqs[i].n) i++, done = 0;
    }
    pass_open(&p, &one, m, scratch, aSeg[0].tokens, aSeg[0].n);
    p.seg = aSeg;
    p.n_seg = n_seg;
    rc = pass_run(&p, &stop, err, n_err);
  }
  /* on failure no cache grows */
  if (rc != GPT_OK)
    for (int j = 0; j < n_seq; j++) gpt_state_truncate(seqs[j].s, aLen0[j]);
  free(aSeg);
  free(aLen0);
  return rc;
}

/* Copies the first n positions of src's cache into dst (see gpt.h). */
int gpt_state_copy_prefix(GPTState *dst, const GPTState *src, int n) {
  const GPTModel *m = src->m;
  if (dst->m != m || n < 0 || n > src->len || n > dst->cap) return GPT_ERROR;
  if (dst == src) {
    gpt_state_truncate(dst, n);
    return GPT_OK;
  }
  if (state_grow_cache(dst, n)) return GPT_NOMEM;
  size_t hd = (size_t)m->head_dim, runs = (size_t)m->cfg.n_layer * m->n_kv_head;
  for (size_t r = 0; r < runs; r++) {
    memcpy(dst->k_cache + r * dst->n_cache * hd, src->k_cache + r * src->n_cache * hd,
           (size_t)n * hd * sizeof(float));
    memcpy(dst->v_cache + r * dst->n_cache * hd, src->v_cache + r * src->n_cache * hd,
           (size_t)n * hd * sizeof(float));
  }
  dst->len = n;
  return GPT_OK;
}
