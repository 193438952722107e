/*
** mkmodel: writes a small, deterministic model in the Hugging Face layout, so
** the tests need no downloaded weights: GPT-2 (config.json, model.safetensors,
** vocab.json, merges.txt) or a Llama-family decoder (llama, qwen2, qwen3:
** config.json, model.safetensors or shards with their index, tokenizer.json,
** tokenizer_config.json). The same arguments always give the same bytes:
** values come from an integer PRNG seeded per tensor name, and are exact
** functions of its bits.
**
**   build/mkmodel OUTDIR [options]      (OUTDIR is created with its parents)
**     --arch gpt2|llama|qwen2|qwen3                                  (gpt2)
**     --layers N --heads N --embd N --ctx N --vocab N   shape (2 2 64 128 50257;
**                            for the Llama family vocab is 50259, or 50260
**                            with --bos, and ctx is max_position_embeddings)
**     --dtype f32|f16|bf16   storage dtype of every float tensor (f32)
**     --seed N               PRNG seed (1)
**     --eps X                layer_norm_epsilon or rms_norm_eps in config.json
**                            (1e-5; 1e-6 for qwen2 and qwen3)
**     --prefix               "transformer." before every name but lm_head
**     --legacy               add the h.i.attn.bias / masked_bias buffers
**     --lm-head, --untied    write an untied lm_head.weight (--tied: tied,
**                            the default)
**     --scale-wte A --scale-wpe A --scale-mat K --scale-bias A --scale-ln A
**     --lnf-gain G           weights are uniform in [-A, A] (1.0 0.2 - 0.05);
**                            matrices in +-K/sqrt(fan_in) (K 4); LayerNorm
**                            weights 1 +- A (0.2), ln_f's G*(1 +- A) (G 2).
**                            These defaults give logits with a std of ~9
**                            and varied greedy continuations, not loops.
**   Llama family only (names and layout as Hugging Face's checkpoints:
**   model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ...,
**   every matrix (out, in) as nn.Linear stores it):
**     --kv-heads N           num_key_value_heads (= heads)
**     --head-dim N           head_dim (embd/heads); written to config.json
**                            when given, and always for qwen3
**     --ffn N                intermediate_size (2*embd)
**     --rope-theta X         (10000; 1000000 for qwen2 and qwen3)
**     --rope-scaling llama3  rope_scaling {factor 32, low 1, high 4,
**                            original_max_position_embeddings 8192}
**     --shards N             model-0000i-of-0000N.safetensors and
**                            model.safetensors.index.json (1: one file)
**     --bos                  Llama 3 style: a <|begin_of_text|> token that a
**                            TemplateProcessing post-processor puts first
**     --pattern qwen2|llama3 the pre-tokenizer's Split regex (qwen2)
**     --merge-pairs          merges as ["a", "b"] pairs, not "a b" strings
**     --nfc                  an NFC normalizer (Qwen2's); none by default
**     The values: embeddings and lm_head +-scale-wte, matrices as above,
**     q/k/v biases (qwen2) +-0.5 unless --scale-bias, RMSNorm and q/k norm
**     weights 1 +- scale-ln, the final norm lnf-gain*(1 +- scale-ln).
**   The tokenizer of the Llama family is GPT-2's BPE (vocab.json, merges.txt)
**   with added tokens <|endoftext|> 50256, <|im_start|> 50257, <|im_end|>
**   50258 (and <|begin_of_text|> 50259 with --bos); a vocab_size above that
**   leaves ids without a token, as Qwen's padding does. A smaller one keeps
**   the first vocab-3 (vocab-4) ids of GPT-2's BPE, with the merges that
**   make them, and numbers the added tokens after them.
**   Example, SmolLM2-135M's shape (make bench; 538 MB in f32, 8 s):
**     build/mkmodel DIR --arch llama --layers 30 --embd 576 --heads 9
**       --kv-heads 3 --ffn 1536 --vocab 49152 --ctx 8192 --rope-theta 100000
**       --lnf-gain 0.65    (logits with a std of ~9 at this width)
**   Hostile cases (the importer must refuse them cleanly):
**     --omit NAME            leave tensor NAME out (canonical name)
**     --nan NAME             make the first element of NAME a NaN
**     --no-tokenizer         write no tokenizer files
**     --tokenizer DIR        where vocab.json and merges.txt are (default:
**                            tests/data next to this binary's build/)
*/
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "gpt.h"

enum { ARCH_GPT2, ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3 };

typedef struct Opts {
  int arch;            /* ARCH_* */
  int n_layer, n_head, n_embd, n_ctx, vocab;
  int dtype;
  uint64_t seed;
  double eps;
  int prefix, legacy, lm_head, no_tok;
  double s_wte, s_wpe, s_mat, s_bias, s_ln, lnf_gain;
  const char *omit, *nan_name, *tok_dir;
  /* Llama family */
  int n_kv_head, head_dim, ffn; /* 0: default */
  int head_dim_given;  /* write head_dim to config.json */
  double rope_theta;   /* 0: the arch's default */
  int rope_llama3;     /* rope_scaling llama3 */
  int shards;          /* safetensors files */
  int bos;             /* <|begin_of_text|> and TemplateProcessing */
  int pattern_llama3;  /* Llama 3's Split regex, not Qwen2's */
  int merge_pairs;     /* merges as [a, b] */
  int nfc;             /* NFC normalizer */
  int vocab_given, eps_given, bias_given;
} Opts;

/* One tensor of the file. kind says how its values are made. */
enum { K_UNIFORM, K_LN_WEIGHT, K_MASK, K_MASKED_BIAS };
typedef struct Tensor {
  char name[80];       /* canonical, without "transformer." */
  const char *st_dtype; /* safetensors dtype */
  int ndim;
  int64_t shape[4];
  int64_t n_elem;
  int elem_size;
  int kind;
  double scale;
  double gain;         /* K_LN_WEIGHT: centre of the values */
  uint64_t offset;     /* in the data section */
} Tensor;

static void die(const char *fmt, const char *arg) {
  fprintf(stderr, "mkmodel: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n");
  exit(1);
}

/* ------------------------------------------------------------------ PRNG */

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* FNV-1a: each tensor gets its own stream, so its values do not depend on
** which other tensors exist or on their order. */
static uint64_t name_hash(const char *z) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *z; z++) h = (h ^ (unsigned char)*z) * 0x100000001b3ull;
  return h;
}

/* Uniform in (-1, 1) from 24 bits: (2r+1-2^24)/2^24, exact in double. */
static double unit(uint64_t *s) {
  int64_t r = (int64_t)(splitmix64(s) >> 40);
  return (double)(2 * r + 1 - (1 << 24)) / (double)(1 << 24);
}

/* ------------------------------------------------------------------ tensors */

static void add(Tensor *t, int *n, const char *name, int ndim, int64_t d0,
                int64_t d1, int kind, double scale, const Opts *o) {
  Tensor *x = &t[(*n)++];
  memset(x, 0, sizeof *x);
  snprintf(x->name, sizeof x->name, "%s", name);
  x->ndim = ndim;
  x->shape[0] = d0;
  x->shape[1] = d1;
  x->n_elem = ndim == 0 ? 1 : ndim == 1 ? d0 : d0 * d1;
  x->kind = kind;
  x->scale = scale;
  x->gain = 1.0;
  x->st_dtype = o->dtype == GPT_F32 ? "F32" : o->dtype == GPT_F16 ? "F16" : "BF16";
  x->elem_size = gpt_dtype_size(o->dtype);
}

/* Fills the list in canonical order; returns the count. */
static int build_tensors(const Opts *o, Tensor *t) {
  int n = 0;
  int64_t C = o->n_embd;
  double mC = o->s_mat / sqrt((double)C);        /* fan_in C */
  double m4C = o->s_mat / sqrt((double)(4 * C)); /* fan_in 4C */
  char nm[64];
  add(t, &n, "wte.weight", 2, o->vocab, C, K_UNIFORM, o->s_wte, o);
  add(t, &n, "wpe.weight", 2, o->n_ctx, C, K_UNIFORM, o->s_wpe, o);
  for (int l = 0; l < o->n_layer; l++) {
#define ADD(suffix, nd, a, b, kind, sc) \
    snprintf(nm, sizeof nm, "h.%d.%s", l, suffix); add(t, &n, nm, nd, a, b, kind, sc, o)
    ADD("ln_1.weight", 1, C, 0, K_LN_WEIGHT, o->s_ln);
    ADD("ln_1.bias", 1, C, 0, K_UNIFORM, o->s_bias);
    ADD("attn.c_attn.weight", 2, C, 3 * C, K_UNIFORM, mC);
    ADD("attn.c_attn.bias", 1, 3 * C, 0, K_UNIFORM, o->s_bias);
    ADD("attn.c_proj.weight", 2, C, C, K_UNIFORM, mC);
    ADD("attn.c_proj.bias", 1, C, 0, K_UNIFORM, o->s_bias);
    ADD("ln_2.weight", 1, C, 0, K_LN_WEIGHT, o->s_ln);
    ADD("ln_2.bias", 1, C, 0, K_UNIFORM, o->s_bias);
    ADD("mlp.c_fc.weight", 2, C, 4 * C, K_UNIFORM, mC);
    ADD("mlp.c_fc.bias", 1, 4 * C, 0, K_UNIFORM, o->s_bias);
    ADD("mlp.c_proj.weight", 2, 4 * C, C, K_UNIFORM, m4C);
    ADD("mlp.c_proj.bias", 1, C, 0, K_UNIFORM, o->s_bias);
    if (o->legacy) {
      /* Old transformers checkpoints saved these buffers; not weights. */
      ADD("attn.bias", 2, o->n_ctx, o->n_ctx, K_MASK, 0);
      t[n - 1].ndim = 4;
      t[n - 1].shape[0] = t[n - 1].shape[1] = 1;
      t[n - 1].shape[2] = t[n - 1].shape[3] = o->n_ctx;
      t[n - 1].st_dtype = "BOOL";
      t[n - 1].elem_size = 1;
      ADD("attn.masked_bias", 0, 0, 0, K_MASKED_BIAS, 0);
    }
#undef ADD
  }
  add(t, &n, "ln_f.weight", 1, C, 0, K_LN_WEIGHT, o->s_ln * o->lnf_gain, o);
  t[n - 1].gain = o->lnf_gain;
  add(t, &n, "ln_f.bias", 1, C, 0, K_UNIFORM, o->s_bias, o);
  if (o->lm_head) add(t, &n, "lm_head.weight", 2, o->vocab, C, K_UNIFORM, o->s_wte, o);
  return n;
}

/* Head dim, KV heads and FFN width of a Llama-family model, defaults applied. */
static int llama_head_dim(const Opts *o) { return o->head_dim ? o->head_dim : o->n_embd / o->n_head; }
static int llama_kv_heads(const Opts *o) { return o->n_kv_head ? o->n_kv_head : o->n_head; }
static int llama_ffn(const Opts *o) { return o->ffn ? o->ffn : 2 * o->n_embd; }

/* The Llama-family list, in Hugging Face's order (model.layers.N.*), every
** matrix (out, in) as nn.Linear holds it; returns the count. */
static int build_tensors_llama(const Opts *o, Tensor *t) {
  int n = 0;
  int64_t C = o->n_embd, hd = llama_head_dim(o);
  int64_t Q = o->n_head * hd, KV = llama_kv_heads(o) * hd, F = llama_ffn(o);
  char nm[80];
  add(t, &n, "model.embed_tokens.weight", 2, o->vocab, C, K_UNIFORM, o->s_wte, o);
  for (int l = 0; l < o->n_layer; l++) {
#define ADD(suffix, nd, a, b, kind, sc) do { \
    snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix); add(t, &n, nm, nd, a, b, kind, sc, o); \
  } while (0)
    ADD("input_layernorm.weight", 1, C, 0, K_LN_WEIGHT, o->s_ln);
    ADD("self_attn.q_proj.weight", 2, Q, C, K_UNIFORM, o->s_mat / sqrt((double)C));
    if (o->arch == ARCH_QWEN2) ADD("self_attn.q_proj.bias", 1, Q, 0, K_UNIFORM, o->s_bias);
    ADD("self_attn.k_proj.weight", 2, KV, C, K_UNIFORM, o->s_mat / sqrt((double)C));
    if (o->arch == ARCH_QWEN2) ADD("self_attn.k_proj.bias", 1, KV, 0, K_UNIFORM, o->s_bias);
    ADD("self_attn.v_proj.weight", 2, KV, C, K_UNIFORM, o->s_mat / sqrt((double)C));
    if (o->arch == ARCH_QWEN2) ADD("self_attn.v_proj.bias", 1, KV, 0, K_UNIFORM, o->s_bias);
    ADD("self_attn.o_proj.weight", 2, C, Q, K_UNIFORM, o->s_mat / sqrt((double)Q));
    if (o->arch == ARCH_QWEN3) {
      ADD("self_attn.q_norm.weight", 1, hd, 0, K_LN_WEIGHT, o->s_ln);
      ADD("self_attn.k_norm.weight", 1, hd, 0, K_LN_WEIGHT, o->s_ln);
    }
    ADD("post_attention_layernorm.weight", 1, C, 0, K_LN_WEIGHT, o->s_ln);
    ADD("mlp.gate_proj.weight", 2, F, C, K_UNIFORM, o->s_mat / sqrt((double)C));
    ADD("mlp.up_proj.weight", 2, F, C, K_UNIFORM, o->s_mat / sqrt((double)C));
    ADD("mlp.down_proj.weight", 2, C, F, K_UNIFORM, o->s_mat / sqrt((double)F));
#undef ADD
  }
  add(t, &n, "model.norm.weight", 1, C, 0, K_LN_WEIGHT, o->s_ln * o->lnf_gain, o);
  t[n - 1].gain = o->lnf_gain;
  if (o->lm_head) add(t, &n, "lm_head.weight", 2, o->vocab, C, K_UNIFORM, o->s_wte, o);
  return n;
}

static void put_value(unsigned char *p, int dtype, float f) {
  if (dtype == GPT_F32) {
    memcpy(p, &f, 4); /* little-endian hosts only, like the engine */
  } else {
    uint16_t h = dtype == GPT_F16 ? gpt_f32_to_f16(f) : gpt_f32_to_bf16(f);
    p[0] = (unsigned char)(h & 0xff);
    p[1] = (unsigned char)(h >> 8);
  }
}

static void fill(const Opts *o, const Tensor *x, unsigned char *p) {
  if (x->kind == K_MASK) {
    int64_t T = x->shape[2];
    for (int64_t i = 0; i < T; i++)
      for (int64_t j = 0; j < T; j++) p[i * T + j] = j <= i;
    return;
  }
  if (x->kind == K_MASKED_BIAS) {
    put_value(p, o->dtype, -1e4f);
    return;
  }
  uint64_t s = o->seed * 0x9e3779b97f4a7c15ull ^ name_hash(x->name);
  splitmix64(&s);
  for (int64_t i = 0; i < x->n_elem; i++) {
    double v = x->scale * unit(&s);
    if (x->kind == K_LN_WEIGHT) v += x->gain;
    put_value(p + i * x->elem_size, o->dtype, (float)v);
  }
  if (o->nan_name && strcmp(o->nan_name, x->name) == 0) put_value(p, o->dtype, NAN);
}

/* ------------------------------------------------------------------ output */

typedef struct Buf { char *z; size_t n, cap; } Buf;

static void buf_add(Buf *b, const char *z, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->z = realloc(b->z, b->cap);
    if (!b->z) die("%s", "out of memory");
  }
  memcpy(b->z + b->n, z, n);
  b->n += n;
  b->z[b->n] = 0;
}

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0) die("%s", "printf failed");
  if ((size_t)k < sizeof tmp) {
    buf_add(b, tmp, (size_t)k);
  } else { /* longer than tmp: format again into the heap */
    char *z = malloc((size_t)k + 1);
    if (!z) die("%s", "out of memory");
    vsnprintf(z, (size_t)k + 1, fmt, ap2);
    buf_add(b, z, (size_t)k);
    free(z);
  }
  va_end(ap2);
}

static char *path_join(const char *dir, const char *file) {
  size_t n = strlen(dir) + strlen(file) + 2;
  char *z = malloc(n);
  if (!z) die("%s", "out of memory");
  snprintf(z, n, "%s/%s", dir, file);
  return z;
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) die("cannot write %s", path);
  if (n && fwrite(p, 1, n, f) != n) die("cannot write %s", path);
  if (fclose(f) != 0) die("cannot write %s", path);
}

static void copy_file(const char *from, const char *to) {
  FILE *f = fopen(from, "rb");
  if (!f) die("cannot read %s (use --tokenizer DIR or --no-tokenizer)", from);
  Buf b = {0};
  char tmp[65536];
  size_t k;
  while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) buf_add(&b, tmp, k);
  fclose(f);
  write_file(to, b.z, b.n);
  free(b.z);
}

/* Deterministic Fisher-Yates permutation of 0..n-1. */
static void shuffle(int *perm, int n, uint64_t seed) {
  uint64_t s = seed;
  for (int i = 0; i < n; i++) perm[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(splitmix64(&s) % (uint64_t)(i + 1));
    int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
  }
}

static void write_config(const Opts *o, const char *dir) {
  Buf b = {0};
  const char *torch = o->dtype == GPT_F32 ? "float32" : o->dtype == GPT_F16 ? "float16" : "bfloat16";
  char eps[32];
  if (o->eps == 1e-5) snprintf(eps, sizeof eps, "1e-05"); /* as transformers writes it */
  else snprintf(eps, sizeof eps, "%.17g", o->eps);
  buf_printf(&b,
    "{\n"
    "  \"activation_function\": \"gelu_new\",\n"
    "  \"architectures\": [\"GPT2LMHeadModel\"],\n"
    "  \"attn_pdrop\": 0.1,\n"
    "  \"bos_token_id\": 50256,\n"
    "  \"embd_pdrop\": 0.1,\n"
    "  \"eos_token_id\": 50256,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"layer_norm_epsilon\": %s,\n"
    "  \"model_type\": \"gpt2\",\n", eps);
  buf_printf(&b,
    "  \"n_ctx\": %d,\n"
    "  \"n_embd\": %d,\n"
    "  \"n_head\": %d,\n"
    "  \"n_layer\": %d,\n"
    "  \"n_positions\": %d,\n"
    "  \"resid_pdrop\": 0.1,\n"
    "  \"tie_word_embeddings\": %s,\n"
    "  \"torch_dtype\": \"%s\",\n"
    "  \"vocab_size\": %d\n"
    "}\n",
    o->n_ctx, o->n_embd, o->n_head, o->n_layer, o->n_ctx,
    o->lm_head ? "false" : "true", torch, o->vocab);
  char *p = path_join(dir, "config.json");
  write_file(p, b.z, b.n);
  free(p);
  free(b.z);
}

/* Writes t[0..n) as one safetensors file at PATH. stream is 0 for a single
** file and the shard number for shards, so each shard has its own orders. */
static void write_safetensors_file(const Opts *o, const char *path, Tensor *t, int n,
                                   uint64_t stream) {
  /* Data order and header order are two different shuffles, so an importer
  ** that relies on either (rather than on data_offsets) fails the tests. */
  int *data_order = malloc(sizeof(int) * (size_t)n);
  int *hdr_order = malloc(sizeof(int) * (size_t)n);
  if (!data_order || !hdr_order) die("%s", "out of memory");
  shuffle(data_order, n, o->seed ^ 0x5eed0fda7aull ^ stream * 0x9e3779b97f4a7c15ull);
  shuffle(hdr_order, n, o->seed ^ 0x4eade4ull ^ stream * 0xbf58476d1ce4e5b9ull);
  uint64_t total = 0;
  for (int i = 0; i < n; i++) {
    Tensor *x = &t[data_order[i]];
    x->offset = total;
    total += (uint64_t)x->n_elem * (uint64_t)x->elem_size;
  }

  Buf h = {0};
  buf_printf(&h, "{\"__metadata__\":{\"format\":\"pt\",\"generator\":\"mkmodel seed %llu\"}",
             (unsigned long long)o->seed);
  for (int i = 0; i < n; i++) {
    const Tensor *x = &t[hdr_order[i]];
    const char *pre = o->prefix && strcmp(x->name, "lm_head.weight") != 0 ? "transformer." : "";
    buf_printf(&h, ",\"%s%s\":{\"dtype\":\"%s\",\"shape\":[", pre, x->name, x->st_dtype);
    for (int d = 0; d < x->ndim; d++)
      buf_printf(&h, "%s%lld", d ? "," : "", (long long)x->shape[d]);
    uint64_t size = (uint64_t)x->n_elem * (uint64_t)x->elem_size;
    buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)x->offset,
               (unsigned long long)(x->offset + size));
  }
  buf_add(&h, "}", 1);
  while (h.n % 8) buf_add(&h, " ", 1); /* data starts 8-byte aligned */

  size_t file_size = 8 + h.n + (size_t)total;
  unsigned char *out = malloc(file_size);
  if (!out) die("%s", "out of memory");
  uint64_t hl = h.n;
  for (int i = 0; i < 8; i++) out[i] = (unsigned char)(hl >> (8 * i));
  memcpy(out + 8, h.z, h.n);
  for (int i = 0; i < n; i++) fill(o, &t[i], out + 8 + h.n + t[i].offset);

  write_file(path, out, file_size);
  free(out);
  free(h.z);
  free(data_order);
  free(hdr_order);
}

/* ------------------------------------------------------------------ Llama family */

static const char *const azArchName[] = {"gpt2", "llama", "qwen2", "qwen3"};
static const char *const azArchClass[] = {"GPT2LMHeadModel", "LlamaForCausalLM",
                                          "Qwen2ForCausalLM", "Qwen3ForCausalLM"};

/* A double as Python's json.dumps writes it: integral values with ".0",
** else the shortest digits that read back (1e-05, 0.02, 500000.0). */
static void fmt_py_float(char *z, size_t n, double v) {
  if (v == floor(v) && fabs(v) < 1e16) {
    snprintf(z, n, "%.1f", v);
    return;
  }
  for (int p = 1; p <= 17; p++) {
    snprintf(z, n, "%.*g", p, v);
    if (strtod(z, 0) == v) break;
  }
}

/* Appends Z to B as a JSON string, quotes included. */
static void buf_json_string(Buf *b, const char *z, size_t n) {
  buf_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)z[i];
    if (c == '"') buf_add(b, "\\\"", 2);
    else if (c == '\\') buf_add(b, "\\\\", 2);
    else if (c == '\n') buf_add(b, "\\n", 2);
    else if (c == '\t') buf_add(b, "\\t", 2);
    else if (c < 0x20) buf_printf(b, "\\u%04x", c);
    else buf_add(b, (const char *)&z[i], 1);
  }
  buf_add(b, "\"", 1);
}

/* Token ids of the Llama-family tokenizer: GPT-2's BPE ids below nBase, then
** the added tokens. nBase is 50256 (GPT-2's <|endoftext|> keeps its id), or
** fewer when --vocab is below the tokenizer's size. */
typedef struct TokIds {
  int nBase;                 /* BPE ids 0..nBase-1 */
  int eot, im_start, im_end; /* <|endoftext|> <|im_start|> <|im_end|> */
  int bot;                   /* <|begin_of_text|>, -1 without --bos */
  int n;                     /* ids with a token */
} TokIds;

static TokIds tok_ids(const Opts *o) {
  TokIds k;
  int nSpecial = 3 + (o->bos ? 1 : 0);
  k.nBase = o->vocab - nSpecial < 50256 ? o->vocab - nSpecial : 50256;
  k.eot = k.nBase;
  k.im_start = k.nBase + 1;
  k.im_end = k.nBase + 2;
  k.bot = o->bos ? k.nBase + 3 : -1;
  k.n = k.nBase + nSpecial;
  return k;
}

static void write_config_llama(const Opts *o, const char *dir) {
  Buf b = {0};
  const char *torch = o->dtype == GPT_F32 ? "float32" : o->dtype == GPT_F16 ? "float16" : "bfloat16";
  TokIds k = tok_ids(o);
  char eps[40], theta[40];
  fmt_py_float(eps, sizeof eps, o->eps);
  fmt_py_float(theta, sizeof theta, o->rope_theta);
  int qwen = o->arch == ARCH_QWEN2 || o->arch == ARCH_QWEN3;
  /* Keys sorted, as transformers' save_pretrained writes them. */
  buf_printf(&b, "{\n  \"architectures\": [\n    \"%s\"\n  ],\n", azArchClass[o->arch]);
  if (o->arch != ARCH_QWEN2) buf_printf(&b, "  \"attention_bias\": false,\n");
  buf_printf(&b, "  \"attention_dropout\": 0.0,\n");
  buf_printf(&b, "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n", o->bos ? k.bot : k.eot,
             k.im_end);
  if (o->head_dim_given || o->arch == ARCH_QWEN3)
    buf_printf(&b, "  \"head_dim\": %d,\n", llama_head_dim(o));
  buf_printf(&b, "  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n", o->n_embd);
  buf_printf(&b, "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n", llama_ffn(o));
  buf_printf(&b, "  \"max_position_embeddings\": %d,\n", o->n_ctx);
  if (qwen) buf_printf(&b, "  \"max_window_layers\": %d,\n", o->n_layer);
  if (o->arch == ARCH_LLAMA) buf_printf(&b, "  \"mlp_bias\": false,\n");
  buf_printf(&b, "  \"model_type\": \"%s\",\n", azArchName[o->arch]);
  buf_printf(&b, "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n",
             o->n_head, o->n_layer);
  buf_printf(&b, "  \"num_key_value_heads\": %d,\n", llama_kv_heads(o));
  if (o->arch == ARCH_LLAMA) buf_printf(&b, "  \"pretraining_tp\": 1,\n");
  buf_printf(&b, "  \"rms_norm_eps\": %s,\n", eps);
  if (o->rope_llama3)
    buf_printf(&b, "  \"rope_scaling\": {\n    \"factor\": 32.0,\n    \"high_freq_factor\": 4.0,\n"
               "    \"low_freq_factor\": 1.0,\n    \"original_max_position_embeddings\": 8192,\n"
               "    \"rope_type\": \"llama3\"\n  },\n");
  else
    buf_printf(&b, "  \"rope_scaling\": null,\n");
  buf_printf(&b, "  \"rope_theta\": %s,\n", theta);
  if (o->arch == ARCH_QWEN2) buf_printf(&b, "  \"sliding_window\": %d,\n", o->n_ctx);
  if (o->arch == ARCH_QWEN3) buf_printf(&b, "  \"sliding_window\": null,\n");
  buf_printf(&b, "  \"tie_word_embeddings\": %s,\n", o->lm_head ? "false" : "true");
  buf_printf(&b, "  \"torch_dtype\": \"%s\",\n  \"transformers_version\": \"4.51.3\",\n", torch);
  buf_printf(&b, "  \"use_cache\": true,\n");
  if (qwen) buf_printf(&b, "  \"use_sliding_window\": false,\n");
  buf_printf(&b, "  \"vocab_size\": %d\n}\n", o->vocab);
  char *p = path_join(dir, "config.json");
  write_file(p, b.z, b.n);
  free(p);
  free(b.z);
}

/* The pre-tokenizer patterns of Qwen2 (single digits) and Llama 3 (digits
** in threes), as JSON string bodies. */
static const char zQwen2Pattern[] =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}"
  "\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";
static const char zLlama3Pattern[] =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s"
  "\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";

/* A ChatML template like Qwen2.5's (without its tools branch); with --bos it
** starts with the BOS text, as Llama 3's does. */
static const char zChatTemplate[] =
  "{%- if messages[0]['role'] == 'system' %}\n"
  "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
  "{%- else %}\n"
  "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
  "assistant.<|im_end|>\\n' }}\n"
  "{%- endif %}\n"
  "{%- for message in messages %}\n"
  "    {%- if not (message.role == 'system' and loop.first) %}\n"
  "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
  "    {%- endif %}\n"
  "{%- endfor %}\n"
  "{%- if add_generation_prompt %}\n"
  "    {{- '<|im_start|>assistant\\n' }}\n"
  "{%- endif %}\n";

/* Reads a whole file; dies if it cannot. */
static char *read_all(const char *path, size_t *pn) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot read %s (use --tokenizer DIR or --no-tokenizer)", path);
  Buf b = {0};
  char tmp[65536];
  size_t k;
  while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) buf_add(&b, tmp, k);
  fclose(f);
  if (!b.z) buf_add(&b, "", 0);
  *pn = b.n;
  return b.z;
}

/* Appends vocab.json's entries with ids below nKeep to B, one per line, as
** they are written there (keys keep their JSON escapes). vocab.json is
** GPT-2's own, a flat object of string -> integer. */
static void add_vocab_entries(Buf *b, const char *z, size_t n, int nKeep) {
  size_t i = 0;
  int first = 1;
  while (i < n && z[i] != '{') i++;
  i++;
  for (;;) {
    while (i < n && (z[i] == ' ' || z[i] == '\n' || z[i] == '\r' || z[i] == '\t' || z[i] == ','))
      i++;
    if (i >= n || z[i] == '}') break;
    if (z[i] != '"') die("%s", "vocab.json: expected a string key");
    size_t k0 = i++;
    while (i < n && z[i] != '"') i += z[i] == '\\' ? 2 : 1;
    size_t k1 = ++i; /* past the closing quote */
    while (i < n && (z[i] == ' ' || z[i] == ':')) i++;
    char *end;
    long id = strtol(z + i, &end, 10);
    if (end == z + i) die("%s", "vocab.json: expected an id");
    i = (size_t)(end - z);
    if (id < nKeep) {
      buf_printf(b, "%s      ", first ? "" : ",\n");
      buf_add(b, z + k0, k1 - k0);
      buf_printf(b, ": %ld", id);
      first = 0;
    }
  }
}

/* Appends the first nKeep merges of merges.txt to B as JSON, "a b" strings
** or ["a", "b"] pairs. GPT-2's merge of rank r makes token 256 + r. */
static void add_merges(Buf *b, const char *z, size_t n, int nKeep, int pairs) {
  size_t i = 0;
  int k = 0;
  while (i < n && k < nKeep) {
    size_t e = i;
    while (e < n && z[e] != '\n') e++;
    size_t len = e - i;
    if (len && z[e - 1] == '\r') len--;
    if (len > 0 && !(len >= 8 && memcmp(z + i, "#version", 8) == 0)) {
      const char *sp = memchr(z + i, ' ', len);
      if (!sp) die("%s", "merges.txt: a line without a space");
      buf_printf(b, "%s      ", k ? ",\n" : "");
      if (pairs) {
        buf_add(b, "[", 1);
        buf_json_string(b, z + i, (size_t)(sp - (z + i)));
        buf_add(b, ", ", 2);
        buf_json_string(b, sp + 1, len - (size_t)(sp - (z + i)) - 1);
        buf_add(b, "]", 1);
      } else {
        buf_json_string(b, z + i, len);
      }
      k++;
    }
    i = e + 1;
  }
  if (k < nKeep) die("%s", "merges.txt: fewer merges than the vocabulary needs");
}

/* One added token as tokenizer.json lists it. */
static void add_added_token(Buf *b, int id, const char *z, int last) {
  buf_printf(b, "    {\n      \"id\": %d,\n      \"content\": \"%s\",\n      \"single_word\": false,\n"
             "      \"lstrip\": false,\n      \"rstrip\": false,\n      \"normalized\": false,\n"
             "      \"special\": true\n    }%s\n", id, z, last ? "" : ",");
}

/* tokenizer.json in the layout of Qwen2's (and, with --bos, Llama 3's
** post-processor): Split + ByteLevel pre-tokenizer, byte-level BPE. */
static void write_tokenizer_json(const Opts *o, const char *dir, const char *tokdir) {
  TokIds k = tok_ids(o);
  Buf b = {0};
  buf_printf(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
             "  \"added_tokens\": [\n");
  add_added_token(&b, k.eot, "<|endoftext|>", 0);
  add_added_token(&b, k.im_start, "<|im_start|>", 0);
  add_added_token(&b, k.im_end, "<|im_end|>", !o->bos);
  if (o->bos) add_added_token(&b, k.bot, "<|begin_of_text|>", 1);
  buf_printf(&b, "  ],\n  \"normalizer\": %s,\n", o->nfc ? "{\n    \"type\": \"NFC\"\n  }" : "null");
  buf_printf(&b, "  \"pre_tokenizer\": {\n    \"type\": \"Sequence\",\n    \"pretokenizers\": [\n"
             "      {\n        \"type\": \"Split\",\n        \"pattern\": {\n          \"Regex\": \"%s\"\n"
             "        },\n        \"behavior\": \"Isolated\",\n        \"invert\": false\n      },\n"
             "      {\n        \"type\": \"ByteLevel\",\n        \"add_prefix_space\": false,\n"
             "        \"trim_offsets\": false,\n        \"use_regex\": false\n      }\n    ]\n  },\n",
             o->pattern_llama3 ? zLlama3Pattern : zQwen2Pattern);
  if (o->bos) {
    buf_printf(&b, "  \"post_processor\": {\n    \"type\": \"Sequence\",\n    \"processors\": [\n"
               "      {\n        \"type\": \"ByteLevel\",\n        \"add_prefix_space\": true,\n"
               "        \"trim_offsets\": false,\n        \"use_regex\": true\n      },\n"
               "      {\n        \"type\": \"TemplateProcessing\",\n        \"single\": [\n"
               "          {\"SpecialToken\": {\"id\": \"<|begin_of_text|>\", \"type_id\": 0}},\n"
               "          {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}\n        ],\n"
               "        \"pair\": [\n"
               "          {\"SpecialToken\": {\"id\": \"<|begin_of_text|>\", \"type_id\": 0}},\n"
               "          {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}},\n"
               "          {\"SpecialToken\": {\"id\": \"<|begin_of_text|>\", \"type_id\": 1}},\n"
               "          {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}\n        ],\n"
               "        \"special_tokens\": {\n          \"<|begin_of_text|>\": {\n"
               "            \"id\": \"<|begin_of_text|>\",\n            \"ids\": [%d],\n"
               "            \"tokens\": [\"<|begin_of_text|>\"]\n          }\n        }\n"
               "      }\n    ]\n  },\n", k.bot);
  } else {
    buf_printf(&b, "  \"post_processor\": {\n    \"type\": \"ByteLevel\",\n"
               "    \"add_prefix_space\": false,\n    \"trim_offsets\": false,\n"
               "    \"use_regex\": false\n  },\n");
  }
  buf_printf(&b, "  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": false,\n"
             "    \"trim_offsets\": false,\n    \"use_regex\": false\n  },\n");
  buf_printf(&b, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
             "    \"unk_token\": null,\n    \"continuing_subword_prefix\": \"\",\n"
             "    \"end_of_word_suffix\": \"\",\n    \"fuse_unk\": false,\n"
             "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {\n");
  size_t n;
  char *path = path_join(tokdir, "vocab.json");
  char *z = read_all(path, &n);
  /* GPT-2's vocab.json holds <|endoftext|> at 50256 too, as GPT-2's own
  ** tokenizer.json does; a truncated vocabulary drops it. */
  add_vocab_entries(&b, z, n, k.nBase < 50256 ? k.nBase : 50257);
  free(z);
  free(path);
  buf_printf(&b, "\n    },\n    \"merges\": [\n");
  path = path_join(tokdir, "merges.txt");
  z = read_all(path, &n);
  add_merges(&b, z, n, k.nBase - 256, o->merge_pairs);
  free(z);
  free(path);
  buf_printf(&b, "\n    ]\n  }\n}\n");
  path = path_join(dir, "tokenizer.json");
  write_file(path, b.z, b.n);
  free(path);
  free(b.z);
}

/* One entry of tokenizer_config.json's added_tokens_decoder. */
static void add_token_decoder(Buf *b, int id, const char *z, int last) {
  buf_printf(b, "    \"%d\": {\n      \"content\": \"%s\",\n      \"lstrip\": false,\n"
             "      \"normalized\": false,\n      \"rstrip\": false,\n      \"single_word\": false,\n"
             "      \"special\": true\n    }%s\n", id, z, last ? "" : ",");
}

/* tokenizer_config.json: Qwen2.5's keys (bos null, eos <|im_end|>, no BOS
** added); with --bos, Llama 3's (bos <|begin_of_text|>, added by the
** tokenizer.json post-processor, no add_bos_token key). */
static void write_tokenizer_config(const Opts *o, const char *dir) {
  TokIds k = tok_ids(o);
  Buf b = {0}, tmpl = {0};
  buf_printf(&b, "{\n");
  if (!o->bos) buf_printf(&b, "  \"add_bos_token\": false,\n  \"add_prefix_space\": false,\n");
  buf_printf(&b, "  \"added_tokens_decoder\": {\n");
  add_token_decoder(&b, k.eot, "<|endoftext|>", 0);
  add_token_decoder(&b, k.im_start, "<|im_start|>", 0);
  add_token_decoder(&b, k.im_end, "<|im_end|>", !o->bos);
  if (o->bos) add_token_decoder(&b, k.bot, "<|begin_of_text|>", 1);
  buf_printf(&b, "  },\n  \"bos_token\": %s,\n  \"chat_template\": ",
             o->bos ? "\"<|begin_of_text|>\"" : "null");
  if (o->bos) buf_printf(&tmpl, "{{- bos_token }}\n");
  buf_add(&tmpl, zChatTemplate, strlen(zChatTemplate));
  buf_json_string(&b, tmpl.z, tmpl.n);
  buf_printf(&b, ",\n  \"clean_up_tokenization_spaces\": false,\n  \"eos_token\": \"<|im_end|>\",\n"
             "  \"errors\": \"replace\",\n  \"model_max_length\": %d,\n"
             "  \"pad_token\": \"<|endoftext|>\",\n  \"split_special_tokens\": false,\n"
             "  \"tokenizer_class\": \"%s\",\n  \"unk_token\": null\n}\n", o->n_ctx,
             o->bos ? "PreTrainedTokenizerFast" : "Qwen2Tokenizer");
  char *p = path_join(dir, "tokenizer_config.json");
  write_file(p, b.z, b.n);
  free(p);
  free(b.z);
  free(tmpl.z);
}

/* qsort order of tensor names, for the index's weight_map. */
static int cmp_tensor_ptr(const void *a, const void *b) {
  return strcmp((*(const Tensor *const *)a)->name, (*(const Tensor *const *)b)->name);
}

/* Writes the weights: model.safetensors, or --shards files split in
** canonical order by bytes, with model.safetensors.index.json as
** transformers' save_pretrained writes it (weight_map sorted by name). */
static void write_safetensors(const Opts *o, const char *dir) {
  int cap = 8 + 16 * o->n_layer; /* at most 14 (GPT-2) or 16 per layer */
  Tensor *t = calloc((size_t)cap, sizeof *t);
  if (!t) die("%s", "out of memory");
  int n = o->arch == ARCH_GPT2 ? build_tensors(o, t) : build_tensors_llama(o, t);
  if (o->omit) {
    int k = 0;
    for (int i = 0; i < n; i++) if (strcmp(t[i].name, o->omit) != 0) t[k++] = t[i];
    if (k == n) die("--omit: no tensor called %s", o->omit);
    n = k;
  }
  if (o->nan_name) {
    int found = 0;
    for (int i = 0; i < n; i++) found |= strcmp(t[i].name, o->nan_name) == 0;
    if (!found) die("--nan: no tensor called %s", o->nan_name);
  }

  if (o->shards <= 1) {
    char *p = path_join(dir, "model.safetensors");
    write_safetensors_file(o, p, t, n, 0);
    free(p);
    free(t);
    return;
  }
  if (o->shards > n) die("%s", "--shards: more shards than tensors");
  uint64_t total = 0;
  for (int i = 0; i < n; i++) total += (uint64_t)t[i].n_elem * (uint64_t)t[i].elem_size;
  /* Shard s starts at the first tensor (in canonical order) with s/N of the
  ** bytes before it; every shard keeps at least one tensor. */
  int N = o->shards;
  int *start = malloc(sizeof(int) * (size_t)(N + 1));
  int *shard_of = malloc(sizeof(int) * (size_t)n);
  if (!start || !shard_of) die("%s", "out of memory");
  uint64_t before = 0;
  int i = 0;
  start[0] = 0;
  start[N] = n;
  for (int s = 1; s < N; s++) {
    while (i < n && before < total / (uint64_t)N * (uint64_t)s)
      before += (uint64_t)t[i].n_elem * (uint64_t)t[i].elem_size, i++;
    start[s] = i > start[s - 1] ? i : start[s - 1] + 1;
  }
  for (int s = N - 1; s >= 1; s--)
    if (start[s] > start[s + 1] - 1) start[s] = start[s + 1] - 1;
  for (int s = 0; s < N; s++)
    for (int k = start[s]; k < start[s + 1]; k++) shard_of[k] = s;
  free(start);
  int s;
  Tensor *sub = calloc((size_t)n, sizeof *sub);
  Tensor **byname = malloc(sizeof(Tensor *) * (size_t)n);
  if (!sub || !byname) die("%s", "out of memory");
  for (s = 0; s < o->shards; s++) {
    int k = 0;
    for (int i = 0; i < n; i++) if (shard_of[i] == s) sub[k++] = t[i];
    if (k == 0) die("%s", "--shards: a shard would be empty");
    char file[64];
    snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, o->shards);
    char *p = path_join(dir, file);
    write_safetensors_file(o, p, sub, k, (uint64_t)(s + 1));
    free(p);
  }
  for (int i = 0; i < n; i++) byname[i] = &t[i];
  qsort(byname, (size_t)n, sizeof *byname, cmp_tensor_ptr);
  Buf b = {0};
  buf_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
             (unsigned long long)total);
  for (int i = 0; i < n; i++) {
    int sh = shard_of[byname[i] - t];
    buf_printf(&b, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", byname[i]->name, sh + 1,
               o->shards, i + 1 < n ? "," : "");
  }
  buf_printf(&b, "  }\n}\n");
  char *p = path_join(dir, "model.safetensors.index.json");
  write_file(p, b.z, b.n);
  free(p);
  free(b.z);
  free(sub);
  free(byname);
  free(shard_of);
  free(t);
}

/* ------------------------------------------------------------------ main */

static long parse_int(const char *opt, const char *z, long lo, long hi) {
  char *end;
  errno = 0;
  long v = z ? strtol(z, &end, 10) : 0;
  if (!z || errno || *end || end == z || v < lo || v > hi) die("bad value for %s", opt);
  return v;
}

static double parse_num(const char *opt, const char *z) {
  char *end;
  double v = z ? strtod(z, &end) : 0;
  if (!z || *end || end == z) die("bad value for %s", opt);
  return v;
}

static char *dup(const char *z) {
  char *r = malloc(strlen(z) + 1);
  if (!r) die("%s", "out of memory");
  return strcpy(r, z);
}

/* tests/data, found from this binary's place in build/. */
static char *default_tok_dir(const char *argv0) {
  const char *slash = strrchr(argv0, '/');
  if (!slash) return dup("tests/data");
  size_t n = (size_t)(slash - argv0);
  char *z = malloc(n + 32);
  if (!z) die("%s", "out of memory");
  memcpy(z, argv0, n);
  snprintf(z + n, 32, "/../tests/data");
  return z;
}

/* Creates dir and any missing parents, as mkdir -p does, so a fresh clone's
** build/models/NAME needs no folder made first. */
static void make_dirs(const char *dir) {
  if (!dir[0]) die("%s", "empty OUTDIR");
  char *z = dup(dir);
  for (char *p = z + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(z, 0777) != 0 && errno != EEXIST) die("cannot create %s", z);
    *p = '/';
  }
  if (mkdir(z, 0777) != 0 && errno != EEXIST) die("cannot create %s", z);
  free(z);
}

int main(int argc, char **argv) {
  Opts o = {.arch = ARCH_GPT2, .n_layer = 2, .n_head = 2, .n_embd = 64, .n_ctx = 128,
            .vocab = 50257, .dtype = GPT_F32, .seed = 1, .eps = 1e-5,
            .s_wte = 1.0, .s_wpe = 0.2, .s_mat = 4.0, .s_bias = 0.05, .s_ln = 0.2,
            .lnf_gain = 2.0, .shards = 1};
  const char *outdir = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : 0;
    if (!strcmp(a, "--arch")) {
      o.arch = -1;
      for (int k = 0; k < 4; k++) if (v && !strcmp(v, azArchName[k])) o.arch = k;
      if (o.arch < 0) die("bad value for --arch: %s (gpt2, llama, qwen2 or qwen3)", v ? v : "");
      i++;
    }
    else if (!strcmp(a, "--layers")) o.n_layer = (int)parse_int(a, v, 1, GPT_MAX_LAYER), i++;
    else if (!strcmp(a, "--heads")) o.n_head = (int)parse_int(a, v, 1, GPT_MAX_HEAD), i++;
    else if (!strcmp(a, "--embd")) o.n_embd = (int)parse_int(a, v, 1, GPT_MAX_EMBD), i++;
    else if (!strcmp(a, "--ctx")) o.n_ctx = (int)parse_int(a, v, 1, 1 << 21), i++;
    else if (!strcmp(a, "--vocab")) o.vocab = (int)parse_int(a, v, 1, GPT_MAX_VOCAB), i++, o.vocab_given = 1;
    else if (!strcmp(a, "--seed")) o.seed = (uint64_t)parse_int(a, v, 0, 0x7fffffffL), i++;
    else if (!strcmp(a, "--eps")) o.eps = parse_num(a, v), i++, o.eps_given = 1;
    else if (!strcmp(a, "--dtype")) {
      o.dtype = gpt_dtype_from_name(v);
      if (o.dtype < 0) die("bad value for --dtype: %s (f32, f16 or bf16)", v ? v : "");
      i++;
    }
    else if (!strcmp(a, "--prefix")) o.prefix = 1;
    else if (!strcmp(a, "--legacy")) o.legacy = 1;
    else if (!strcmp(a, "--lm-head") || !strcmp(a, "--untied")) o.lm_head = 1;
    else if (!strcmp(a, "--tied")) o.lm_head = 0;
    else if (!strcmp(a, "--no-tokenizer")) o.no_tok = 1;
    else if (!strcmp(a, "--scale-wte")) o.s_wte = parse_num(a, v), i++;
    else if (!strcmp(a, "--scale-wpe")) o.s_wpe = parse_num(a, v), i++;
    else if (!strcmp(a, "--scale-mat")) o.s_mat = parse_num(a, v), i++;
    else if (!strcmp(a, "--scale-bias")) o.s_bias = parse_num(a, v), i++, o.bias_given = 1;
    else if (!strcmp(a, "--scale-ln")) o.s_ln = parse_num(a, v), i++;
    else if (!strcmp(a, "--lnf-gain")) o.lnf_gain = parse_num(a, v), i++;
    else if (!strcmp(a, "--kv-heads")) o.n_kv_head = (int)parse_int(a, v, 1, GPT_MAX_HEAD), i++;
    else if (!strcmp(a, "--head-dim")) {
      o.head_dim = (int)parse_int(a, v, 2, 4096), i++;
      o.head_dim_given = 1;
    }
    else if (!strcmp(a, "--ffn")) o.ffn = (int)parse_int(a, v, 1, 1 << 20), i++;
    else if (!strcmp(a, "--rope-theta")) o.rope_theta = parse_num(a, v), i++;
    else if (!strcmp(a, "--rope-scaling")) {
      if (!v || strcmp(v, "llama3")) die("bad value for --rope-scaling: %s (llama3)", v ? v : "");
      o.rope_llama3 = 1, i++;
    }
    else if (!strcmp(a, "--shards")) o.shards = (int)parse_int(a, v, 1, 99), i++;
    else if (!strcmp(a, "--bos")) o.bos = 1;
    else if (!strcmp(a, "--pattern")) {
      if (!v || (strcmp(v, "qwen2") && strcmp(v, "llama3")))
        die("bad value for --pattern: %s (qwen2 or llama3)", v ? v : "");
      o.pattern_llama3 = !strcmp(v, "llama3"), i++;
    }
    else if (!strcmp(a, "--merge-pairs")) o.merge_pairs = 1;
    else if (!strcmp(a, "--nfc")) o.nfc = 1;
    else if (!strcmp(a, "--omit") && v) o.omit = v, i++;
    else if (!strcmp(a, "--nan") && v) o.nan_name = v, i++;
    else if (!strcmp(a, "--tokenizer") && v) o.tok_dir = v, i++;
    else if (a[0] == '-') die("unknown option %s (see the comment at the top of mkmodel.c)", a);
    else if (!outdir) outdir = a;
    else die("unexpected argument %s", a);
  }
  if (!outdir) {
    fprintf(stderr, "usage: %s OUTDIR [--arch gpt2|llama|qwen2|qwen3] [--layers N] [--heads N] "
            "[--embd N] [--ctx N] [--vocab N] [--dtype f32|f16|bf16] [--seed N] ... "
            "(see the comment at the top of mkmodel.c)\n", argv[0]);
    return 1;
  }
  if (o.arch == ARCH_GPT2) {
    if (o.n_kv_head || o.head_dim || o.ffn || o.rope_theta != 0 || o.rope_llama3 ||
        o.shards > 1 || o.bos || o.pattern_llama3 || o.merge_pairs || o.nfc)
      die("%s", "--kv-heads, --head-dim, --ffn, --rope-*, --shards, --bos, --pattern, "
          "--merge-pairs and --nfc need --arch llama, qwen2 or qwen3");
    if (o.n_ctx > GPT_MAX_CTX) die("%s", "bad value for --ctx");
  } else {
    int qwen = o.arch != ARCH_LLAMA;
    if (o.prefix || o.legacy) die("%s", "--prefix and --legacy are GPT-2's");
    if (!o.vocab_given) o.vocab = o.bos ? 50260 : 50259;
    if (!o.eps_given) o.eps = qwen ? 1e-6 : 1e-5;
    if (!o.bias_given) o.s_bias = 0.5;
    if (o.rope_theta == 0) o.rope_theta = qwen ? 1000000.0 : 10000.0;
    if (o.rope_theta <= 1) die("%s", "bad value for --rope-theta");
    if (!o.head_dim && o.n_embd % o.n_head) die("%s", "--embd is not a multiple of --heads: give --head-dim");
    if (llama_head_dim(&o) % 2) die("%s", "the head dim must be even (RoPE rotates pairs)");
    if (o.n_head % llama_kv_heads(&o)) die("%s", "--heads is not a multiple of --kv-heads");
    if (!o.no_tok && o.vocab < 256 + 3 + o.bos) die("%s", "--vocab is below 256 bytes and the added tokens");
  }
  make_dirs(outdir);

  if (o.arch == ARCH_GPT2) write_config(&o, outdir);
  else write_config_llama(&o, outdir);
  write_safetensors(&o, outdir);
  if (!o.no_tok) {
    char *dir = o.tok_dir ? dup(o.tok_dir) : default_tok_dir(argv[0]);
    if (o.arch == ARCH_GPT2) {
      const char *files[] = {"vocab.json", "merges.txt"};
      for (int i = 0; i < 2; i++) {
        char *from = path_join(dir, files[i]), *to = path_join(outdir, files[i]);
        copy_file(from, to);
        free(from);
        free(to);
      }
    } else {
      write_tokenizer_json(&o, outdir, dir);
      write_tokenizer_config(&o, outdir);
    }
    free(dir);
  }
  return 0;
}
