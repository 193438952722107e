/*
** mkmodel: writes a small, deterministic GPT-2-shaped model in the Hugging
** Face layout (config.json, model.safetensors, vocab.json, merges.txt), so the
** tests need no downloaded weights. The same arguments always give the same
** bytes: values come from an integer PRNG seeded per tensor name, and are
** exact functions of its bits.
**
**   build/mkmodel OUTDIR [options]      (OUTDIR is created with its parents)
**     --layers N --heads N --embd N --ctx N --vocab N   shape (2 2 64 128 50257)
**     --dtype f32|f16|bf16   storage dtype of every float tensor (f32)
**     --seed N               PRNG seed (1)
**     --eps X                layer_norm_epsilon in config.json (1e-5)
**     --prefix               "transformer." before every name but lm_head
**     --legacy               add the h.i.attn.bias / masked_bias buffers
**     --lm-head              write an untied lm_head.weight
**     --scale-wte A --scale-wpe A --scale-mat K --scale-bias A --scale-ln A
**     --lnf-gain G           weights are uniform in [-A, A] (1.0 0.2 - 0.05);
**                            matrices in +-K/sqrt(fan_in) (K 4); LayerNorm
**                            weights 1 +- A (0.2), ln_f's G*(1 +- A) (G 2).
**                            These defaults give logits with a std of ~9
**                            and varied greedy continuations, not loops.
**   Hostile cases (the importer must refuse them cleanly):
**     --omit NAME            leave tensor NAME out (canonical name)
**     --nan NAME             make the first element of NAME a NaN
**     --no-tokenizer         do not copy vocab.json and merges.txt
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

typedef struct Opts {
  int n_layer, n_head, n_embd, n_ctx, vocab;
  int dtype;
  uint64_t seed;
  double eps;
  int prefix, legacy, lm_head, no_tok;
  double s_wte, s_wpe, s_mat, s_bias, s_ln, lnf_gain;
  const char *omit, *nan_name, *tok_dir;
} Opts;

/* One tensor of the file. kind says how its values are made. */
enum { K_UNIFORM, K_LN_WEIGHT, K_MASK, K_MASKED_BIAS };
typedef struct Tensor {
  char name[64];       /* canonical, without "transformer." */
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
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  buf_add(b, tmp, (size_t)k);
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

static void write_safetensors(const Opts *o, const char *dir) {
  int cap = 5 + 14 * o->n_layer; /* wte wpe ln_f(2) lm_head, 14 per layer */
  Tensor *t = calloc((size_t)cap, sizeof *t);
  if (!t) die("%s", "out of memory");
  int n = build_tensors(o, t);
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

  /* Data order and header order are two different shuffles, so an importer
  ** that relies on either (rather than on data_offsets) fails the tests. */
  int *data_order = malloc(sizeof(int) * (size_t)n);
  int *hdr_order = malloc(sizeof(int) * (size_t)n);
  if (!data_order || !hdr_order) die("%s", "out of memory");
  shuffle(data_order, n, o->seed ^ 0x5eed0fda7aull);
  shuffle(hdr_order, n, o->seed ^ 0x4eade4ull);
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

  char *p = path_join(dir, "model.safetensors");
  write_file(p, out, file_size);
  free(p);
  free(out);
  free(h.z);
  free(data_order);
  free(hdr_order);
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
  Opts o = {2, 2, 64, 128, 50257, GPT_F32, 1, 1e-5, 0, 0, 0, 0,
            1.0, 0.2, 4.0, 0.05, 0.2, 2.0, 0, 0, 0};
  const char *outdir = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : 0;
    if (!strcmp(a, "--layers")) o.n_layer = (int)parse_int(a, v, 1, GPT_MAX_LAYER), i++;
    else if (!strcmp(a, "--heads")) o.n_head = (int)parse_int(a, v, 1, GPT_MAX_HEAD), i++;
    else if (!strcmp(a, "--embd")) o.n_embd = (int)parse_int(a, v, 1, GPT_MAX_EMBD), i++;
    else if (!strcmp(a, "--ctx")) o.n_ctx = (int)parse_int(a, v, 1, GPT_MAX_CTX), i++;
    else if (!strcmp(a, "--vocab")) o.vocab = (int)parse_int(a, v, 1, GPT_MAX_VOCAB), i++;
    else if (!strcmp(a, "--seed")) o.seed = (uint64_t)parse_int(a, v, 0, 0x7fffffffL), i++;
    else if (!strcmp(a, "--eps")) o.eps = parse_num(a, v), i++;
    else if (!strcmp(a, "--dtype")) {
      o.dtype = gpt_dtype_from_name(v);
      if (o.dtype < 0) die("bad value for --dtype: %s (f32, f16 or bf16)", v ? v : "");
      i++;
    }
    else if (!strcmp(a, "--prefix")) o.prefix = 1;
    else if (!strcmp(a, "--legacy")) o.legacy = 1;
    else if (!strcmp(a, "--lm-head")) o.lm_head = 1;
    else if (!strcmp(a, "--no-tokenizer")) o.no_tok = 1;
    else if (!strcmp(a, "--scale-wte")) o.s_wte = parse_num(a, v), i++;
    else if (!strcmp(a, "--scale-wpe")) o.s_wpe = parse_num(a, v), i++;
    else if (!strcmp(a, "--scale-mat")) o.s_mat = parse_num(a, v), i++;
    else if (!strcmp(a, "--scale-bias")) o.s_bias = parse_num(a, v), i++;
    else if (!strcmp(a, "--scale-ln")) o.s_ln = parse_num(a, v), i++;
    else if (!strcmp(a, "--lnf-gain")) o.lnf_gain = parse_num(a, v), i++;
    else if (!strcmp(a, "--omit") && v) o.omit = v, i++;
    else if (!strcmp(a, "--nan") && v) o.nan_name = v, i++;
    else if (!strcmp(a, "--tokenizer") && v) o.tok_dir = v, i++;
    else if (a[0] == '-') die("unknown option %s (see the comment at the top of mkmodel.c)", a);
    else if (!outdir) outdir = a;
    else die("unexpected argument %s", a);
  }
  if (!outdir) {
    fprintf(stderr, "usage: %s OUTDIR [--layers N] [--heads N] [--embd N] [--ctx N] "
            "[--vocab N] [--dtype f32|f16|bf16] [--seed N] [--prefix] [--legacy] "
            "[--lm-head] ...\n", argv[0]);
    return 1;
  }
  make_dirs(outdir);

  write_config(&o, outdir);
  write_safetensors(&o, outdir);
  if (!o.no_tok) {
    char *dir = o.tok_dir ? dup(o.tok_dir) : default_tok_dir(argv[0]);
    const char *files[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2; i++) {
      char *from = path_join(dir, files[i]), *to = path_join(outdir, files[i]);
      copy_file(from, to);
      free(from);
      free(to);
    }
    free(dir);
  }
  return 0;
}
