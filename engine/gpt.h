/*
** The decoder of every supported architecture (GPT-2, Llama, Qwen2, Qwen3):
** configuration, a weight arena with a pointer table, and one forward pass
** over a KV cache (prefill as one batch on the kernels' tiled gemm or
** cblas_sgemm, decoding one token at a time on the gemv kernels of
** kernels.h), run by the thread pool of threads.h.
**
** Plain C11 and CBLAS; knows nothing of SQLite. A GPTModel is immutable once
** loaded and may be shared by many threads; each generation owns a GPTState.
**
** GPT-2's linear weights arrive in Hugging Face's Conv1D layout (in, out), the
** other architectures' in nn.Linear's (out, in); memory always holds (out,
** in), so that a decode step is one row-major gemv and prefill one gemm with
** the weight transposed. 2-D weights may be held in
** f16 or q8_0: decoding reads them as they are; prefill widens a slice at a
** time for sgemm.
*/
#ifndef GPT_ENGINE_H
#define GPT_ENGINE_H

#include <stddef.h>
#include <stdint.h>

/* Hard limits on a config, checked before any allocation. */
#define GPT_MAX_LAYER 256
#define GPT_MAX_HEAD 256
#define GPT_MAX_EMBD 16384
#define GPT_MAX_HEAD_DIM 1024
#define GPT_MAX_FF 131072
#define GPT_MAX_CTX 131072
#define GPT_MAX_VOCAB 1000000
#define GPT_MAX_PARAMS ((int64_t)10000000000) /* 40 GB of f32: 8B models fit */

/* Architectures. Each is one row of the slot table in gpt.c: the tensors it
** stores (by Hugging Face name) and the kinds of its norm, positions and
** MLP. The forward pass is the same code for all of them. */
typedef enum {
  GPT_ARCH_GPT2 = 0,  /* LayerNorm, learned positions, GELU, biases, Conv1D */
  GPT_ARCH_LLAMA = 1, /* RMSNorm, RoPE, SwiGLU, no biases (Llama 3, SmolLM2) */
  GPT_ARCH_QWEN2 = 2, /* llama + q/k/v biases */
  GPT_ARCH_QWEN3 = 3, /* llama + per-head q/k RMSNorm before RoPE */
  GPT_ARCH_COUNT
} GPTArch;
/* "gpt2" | "llama" | "qwen2" | "qwen3" -> GPT_ARCH_*, or -1. */
int gpt_arch_from_name(const char *z);
const char *gpt_arch_name(int arch);

#define GPT_ROPE_NONE 0
#define GPT_ROPE_LLAMA3 1 /* Llama 3.1's frequency scaling */

/* A model's shape. Fields after ln_eps are zero for GPT-2, so configs written
** field by field before they existed keep their meaning: 0 means the GPT-2
** value (n_kv_head = n_head, head_dim = n_embd / n_head, d_ff = 4 n_embd). */
typedef struct GPTConfig {
  int n_layer;      /* transformer blocks */
  int n_head;       /* query heads */
  int n_embd;       /* channels C */
  int n_ctx;        /* positions: rows of wpe, or max_position_embeddings */
  int vocab_size;   /* rows of the token embedding (may exceed the tokenizer) */
  double ln_eps;    /* LayerNorm or RMSNorm epsilon */
  int arch;         /* GPT_ARCH_* */
  int n_kv_head;    /* key/value heads (GQA; 1 = MQA); 0: n_head */
  int head_dim;     /* 0: n_embd / n_head */
  int d_ff;         /* MLP hidden size; 0: 4 n_embd */
  double rope_theta;           /* RoPE base; 0: 10000 */
  int rope_scaling;            /* GPT_ROPE_* */
  double rope_factor;          /* llama3: factor, low/high frequency factors */
  double rope_low_freq_factor;
  double rope_high_freq_factor;
  int rope_original_ctx;       /* llama3: original_max_position_embeddings */
} GPTConfig;

/* The derived dimensions of a checked config. */
int gpt_config_kv_heads(const GPTConfig *c);
int gpt_config_head_dim(const GPTConfig *c);
int gpt_config_ff(const GPTConfig *c);

/* Returns 0 when every value is in range, else -1 with a message naming the
** key, the value and the valid range. gpt_config_check_named names the
** fields as the file they came from does ("max_position_embeddings" for
** n_ctx): names[GPT_KEY_...], each NULL for the engine's own name. */
enum {
  GPT_KEY_N_LAYER, GPT_KEY_N_HEAD, GPT_KEY_N_EMBD, GPT_KEY_N_CTX, GPT_KEY_VOCAB_SIZE,
  GPT_KEY_N_KV_HEAD, GPT_KEY_HEAD_DIM, GPT_KEY_D_FF, GPT_KEY_COUNT
};
int gpt_config_check(const GPTConfig *c, char *err, size_t n_err);
int gpt_config_check_named(const GPTConfig *c, const char *const names[GPT_KEY_COUNT],
                           char *err, size_t n_err);

/* Storage dtypes of tensor rows. GPT_Q8_0 is a block format, not an element
** type: n values are n/32 blocks of 34 bytes, an f16 scale d (little-endian)
** followed by 32 int8 values q in [-127, 127], each standing for d * q. A
** q8_0 row holds a 2-D weight in (out, in) order with its blocks along the
** input dimension: Conv1D weights (stored (in, out) in the other dtypes) are
** transposed; wte, wpe and lm_head keep their (rows, n_embd) order.
** GPT_Q4_0, GPT_Q4_K and GPT_Q6_K are ggml's 4- and 6-bit block formats,
** byte for byte, held the same way (engine/kernels_q4.h has the layouts):
** q4_0 blocks of 32 values in 18 bytes, q4_k and q6_k super-blocks of 256
** values in 144 and 210 bytes. */
typedef enum {
  GPT_F32 = 0, GPT_F16 = 1, GPT_BF16 = 2, GPT_Q8_0 = 3,
  GPT_Q4_0 = 4, GPT_Q4_K = 5, GPT_Q6_K = 6
} GPTDtype;
/* "f32" | "f16" | "bf16" -> dtype, or -1. */
int gpt_dtype_from_name(const char *z);
/* The same, the block formats ("q8_0", "q4_0", "q4_k", "q6_k") included:
** every dtype a gpt_tensors row may have. */
int gpt_row_dtype_from_name(const char *z);
const char *gpt_dtype_name(int dtype);
int gpt_dtype_size(int dtype); /* bytes per element; 0 for block formats and unknown */
/* Values per block of a block format (32 or 256), its bytes in *pBytes;
** 0 for an element dtype or an unknown code. */
int gpt_dtype_block(int dtype, int *pBytes);
float gpt_f16_to_f32(uint16_t h);
float gpt_bf16_to_f32(uint16_t h);
uint16_t gpt_f32_to_f16(float f);  /* round to nearest even */
uint16_t gpt_f32_to_bf16(float f); /* round to nearest even */

/* One tensor the model needs, by its canonical Hugging Face name. */
typedef struct GPTTensorInfo {
  char name[96];      /* e.g. "h.3.attn.c_attn.weight" */
  int ndim;           /* 1 or 2 */
  int64_t shape[2];   /* as stored: Hugging Face shape */
  int64_t n_elem;
  int transposed;     /* stored (in, out), kept in memory as (out, in) */
} GPTTensorInfo;

/* The matrix a 2-D tensor is in memory, (rows, k) with k the input
** dimension of its products: Conv1D weights are (out, in), the others as
** stored. 1-D tensors give (n, 1). */
void gpt_tensor_matrix(const GPTTensorInfo *info, int64_t *pRows, int64_t *pK);
/* Bytes of a gpt_tensors row holding the tensor in dtype, or -1 when the
** dtype cannot hold it (a block format needs a 2-D tensor whose k is a
** multiple of its block: 32 for q8_0 and q4_0, 256 for q4_k and q6_k). */
int64_t gpt_tensor_bytes(const GPTTensorInfo *info, int dtype);

/* Number of tensors a model of this config needs (lm_head.weight included
** when has_lm_head), and the i-th of them. */
int gpt_n_tensors(const GPTConfig *c, int has_lm_head);
void gpt_tensor_info(const GPTConfig *c, int has_lm_head, int i, GPTTensorInfo *out);
/* Index of the tensor called zName, or -1 when the model has no such tensor. */
int gpt_tensor_index(const GPTConfig *c, int has_lm_head, const char *zName);
/* Total parameter count (the tied head counted once). */
int64_t gpt_n_params(const GPTConfig *c, int has_lm_head);

typedef struct GPTModel GPTModel;

/* Allocates the arena for a checked config, every tensor in f32. NULL with
** err on failure. */
GPTModel *gpt_model_new(const GPTConfig *c, int has_lm_head, char *err, size_t n_err);
/* The same with tensor i held in memory as aDtype[i]: GPT_F32 for any
** tensor; GPT_F16 or a block format (see gpt_tensor_bytes) for 2-D tensors, which
** the forward pass then reads as they are, without widening. */
GPTModel *gpt_model_new_dtypes(const GPTConfig *c, int has_lm_head, const int *aDtype,
                               char *err, size_t n_err);
void gpt_model_free(GPTModel *m);
const GPTConfig *gpt_model_config(const GPTModel *m);
/* Ids from n on have no token (the tokenizer covers fewer ids than the
** head's rows): every pass gives them logits of -inf. Set once, before the
** model is shared. */
void gpt_model_set_live_vocab(GPTModel *m, int n);
/* Readies the loaded weights for the kernel set in use: where the set reads
** q8_0 rows packed (kernels.h), packs every q8_0 tensor in place. Call once,
** after every tensor is loaded and before the model is shared; loading into
** the model afterwards is not allowed. Returns -1 when out of memory. */
int gpt_model_ready(GPTModel *m);
/* Whether tensor i's q8_0 rows are packed (gpt_q8_packed_to_f32 widens a
** row), as gpt_model_ready left them. */
int gpt_model_tensor_packed(const GPTModel *m, int i);
size_t gpt_model_bytes(const GPTModel *m);  /* bytes of weights in memory */
int gpt_model_has_lm_head(const GPTModel *m); /* an untied head of its own */
int gpt_model_tensor_dtype(const GPTModel *m, int i);

/* Loads n elements of tensor i, starting at element 'first' in stored
** (Hugging Face) order, from src in dtype, converting to the tensor's memory
** dtype and transposing as needed. For dtype GPT_Q8_0, src holds n/32 blocks
** and first and n count values of the (out, in) order, both multiples of 32
** (a q8_0 tensor in memory takes only q8_0 rows); the other block formats
** likewise, in whole blocks of theirs, and a tensor held in one takes only
** its own rows. Rejects NaN and Inf (block scales included, and q8_0 values
** of -128). Returns 0 or -1 with err. */
int gpt_model_load(GPTModel *m, int i, int dtype, int64_t first, int64_t n,
                   const void *src, char *err, size_t n_err);

/* Checks n stored elements of tensor `name` in dtype at src, from element
** first (block formats: whole blocks, first and n multiples of the block),
** for what gpt_model_load refuses: a NaN or Inf, a non-finite block scale, a
** q8_0 value of -128. Returns 0, or -1 with err (the loader's words), so
** that a copy (gpt_quantize, gpt_export) refuses what no load would take. */
int gpt_rows_check(const char *name, int dtype, const void *src, int64_t first, int64_t n,
                   char *err, size_t n_err);

/* Threads of the forward passes that the calling OS thread runs: n >= 1, or
** 0 for the default, the number of cores the process may use (also the most
** a pass takes). Returns the previous setting. Results do not depend on it. */
int gpt_threads_set(int n);
int gpt_threads_get(void);      /* what the next pass will ask for, capped */
int gpt_threads_default(void);  /* cores available to the process */

/* The CPU bandwidth limit of the process's cgroups, in cores rounded up
** (a container run with --cpus=2 on a 64-core host has all 64 in its
** affinity mask), or 0 for none: the smallest of cgroup v2's cpu.max, or
** v1's cpu.cfs_quota_us, of the cgroups cgroupFile (/proc/self/cgroup)
** names and those above them, under root (/sys/fs/cgroup). */
int gpt_cgroup_cpu_limit(const char *cgroupFile, const char *root);

/* Per-generation state: KV cache for up to max_T positions, and scratch.
** The cache holds only the key/value heads and grows with the positions a
** pass actually uses, so a short call on a long-context model stays small. */
typedef struct GPTState GPTState;
GPTState *gpt_state_new(const GPTModel *m, int max_T);
void gpt_state_free(GPTState *s);
int gpt_state_len(const GPTState *s);      /* positions held in the cache */
int gpt_state_capacity(const GPTState *s); /* max_T */
/* Forgets cached positions from len on (len <= current length). */
void gpt_state_truncate(GPTState *s, int len);

/* What a forward pass hands back besides the KV cache. Every field may be 0. */
typedef struct GPTForwardIO {
  float *logits;  /* out (V,): logits after the last token */
  float *hidden;  /* out (n, C): ln_f output of every token of the batch */
  /* Logits of every position of the batch, delivered in row blocks:
  ** (rows, V) for positions pos0..pos0+rows-1. Return nonzero to abort. */
  int (*on_logits)(void *ctx, int pos0, int rows, const float *logits);
  /* Attention probabilities of (layer, head) for the batch's queries:
  ** (n_q, n_k) row-major, query q0+i against keys 0..n_k-1; entries past the
  ** causal limit are 0. Asked only for pairs where want_attention is true. */
  int (*want_attention)(void *ctx, int layer, int head);
  int (*on_attention)(void *ctx, int layer, int head, int q0, int n_q, int n_k,
                      const float *probs);
  /* Called between layers; nonzero aborts the pass (e.g. an interrupt). */
  int (*should_stop)(void *ctx);
  void *ctx;
} GPTForwardIO;

/* Return codes of the forward pass. */
#define GPT_OK 0
#define GPT_ERROR 1     /* message in err */
#define GPT_NOMEM 2
#define GPT_ABORTED 3   /* a callback returned nonzero */
/* A hidden state or the logits are not finite: finite weights too large for
** float32 (e.g. 3e38) overflow. gpt_forward's message names which. */
#define GPT_OVERFLOW 4

/* Runs tokens[0..n) at positions len..len+n-1 and appends them to the cache.
** n == 1 is a decode step; larger n is one batched prefill. Token ids and the
** capacity are checked first. */
int gpt_forward(const GPTModel *m, GPTState *s, const int *tokens, int n,
                GPTForwardIO *io, char *err, size_t n_err);

/* The same pass, one layer at a time, for callers that consume each layer's
** output before the next is computed (the attention table): begin embeds,
** layer runs block l (in order 0..n_layer-1), end applies ln_f and the head.*/
int gpt_batch_begin(const GPTModel *m, GPTState *s, const int *tokens, int n,
                    char *err, size_t n_err);
int gpt_batch_layer(const GPTModel *m, GPTState *s, int l, GPTForwardIO *io);
int gpt_batch_end(const GPTModel *m, GPTState *s, GPTForwardIO *io);

/* Several sequences in one pass, e.g. a decode step of B generations: sequence
** i appends tokens[0..n) to its own state s (each at its own position) and
** gets the logits (V,) after its last token in logits (NULL: none). Each
** product reads every weight once for all rows, and each sequence's logits
** and cache are bit for bit those of gpt_forward on that sequence alone.
** scratch is a state of the same model that holds the rows of the pass (its
** own cache is not touched); the states must be distinct, not scratch, and
** without a tape. Of io only should_stop is used. On failure no cache grows. */
typedef struct GPTSeq {
  GPTState *s;
  const int *tokens;
  int n;
  float *logits;
} GPTSeq;
#define GPT_MAX_SEQS 4096
int gpt_forward_seqs(const GPTModel *m, GPTState *scratch, const GPTSeq *seqs, int n_seq,
                     GPTForwardIO *io, char *err, size_t n_err);

/* dst's cache becomes the first n positions of src's (same model; n at most
** src's length and dst's capacity): a shared prompt beginning computed once.
** Returns GPT_OK, GPT_ERROR or GPT_NOMEM. */
int gpt_state_copy_prefix(GPTState *dst, const GPTState *src, int n);

#endif
