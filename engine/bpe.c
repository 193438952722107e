/*
** Byte-level BPE training (see bpe.h).
**
** How it works: words (pre-tokens) go into an open-addressing hash table of
** their bytes with their counts. Training turns each distinct word into a
** sequence of symbols (bytes first), then repeats: count every adjacent pair
** over all words, weighted by the word's count, in a hash table keyed by the
** pair; merge the most frequent (ties: the smaller pair of ids, so a run is
** reproducible) in every word. A merge whose bytes are already a token (two
** ways to spell the same string) reuses that token, so the vocabulary never
** holds a string twice.
*/
#include <stdlib.h>
#include <string.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "bpe.h"

/* GPT-2's pattern (tokenizer.c's tok_gpt2_pattern, in PCRE2's syntax). */
static const char zPattern[] =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct WordSlot {
  uint64_t h;        /* hash, 0 = empty */
  size_t off;        /* bytes in the pool */
  int len;
  int64_t count;
} WordSlot;

struct GPTBpe {
  pcre2_code *re;
  pcre2_match_data *md;
  unsigned char *pool;   /* bytes of the distinct words */
  size_t nPool, capPool;
  WordSlot *slot;
  size_t nSlot, nUsed;   /* nSlot a power of two */
  int64_t maxWords, nBytes;
  /* the vocabulary */
  unsigned char **tok;
  int *tokLen;
  int nTok, capTok;
  int *mergeL, *mergeR;
  int nMerge, capMerge;
};

static uint64_t hash_bytes(const unsigned char *z, int n) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < n; i++) h = (h ^ z[i]) * 1099511628211ull;
  return h ? h : 1;
}

GPTBpe *bpe_new(int64_t max_words) {
  GPTBpe *b = calloc(1, sizeof(*b));
  if (!b) return NULL;
  int ec;
  PCRE2_SIZE eo;
  b->re = pcre2_compile((PCRE2_SPTR)zPattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec,
                        &eo, NULL);
  if (b->re) {
    pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE);
    b->md = pcre2_match_data_create_from_pattern(b->re, NULL);
  }
  b->maxWords = max_words > 0 ? max_words : 4000000;
  b->nSlot = 1 << 16;
  b->slot = calloc(b->nSlot, sizeof(WordSlot));
  if (!b->re || !b->md || !b->slot) {
    bpe_free(b);
    return NULL;
  }
  return b;
}

void bpe_free(GPTBpe *b) {
  if (!b) return;
  if (b->md) pcre2_match_data_free(b->md);
  if (b->re) pcre2_code_free(b->re);
  free(b->pool);
  free(b->slot);
  for (int i = 0; i < b->nTok; i++) free(b->tok[i]);
  free(b->tok);
  free(b->tokLen);
  free(b->mergeL);
  free(b->mergeR);
  free(b);
}

/* Doubles the word table. */
static int grow_words(GPTBpe *b) {
  size_t n = b->nSlot * 2;
  WordSlot *a = calloc(n, sizeof(WordSlot));
  if (!a) return -1;
  for (size_t i = 0; i < b->nSlot; i++) {
    if (!b->slot[i].h) continue;
    size_t j = b->slot[i].h & (n - 1);
    while (a[j].h) j = (j + 1) & (n - 1);
    a[j] = b->slot[i];
  }
  free(b->slot);
  b->slot = a;
  b->nSlot = n;
  return 0;
}

/* Counts one word (n >= 1 bytes). */
static int add_word(GPTBpe *b, const unsigned char *z, int n) {
  uint64_t h = hash_bytes(z, n);
  size_t j = h & (b->nSlot - 1);
  while (b->slot[j].h) {
    WordSlot *s = &b->slot[j];
    if (s->h == h && s->len == n && memcmp(b->pool + s->off, z, (size_t)n) == 0) {
      s->count++;
      return 0;
    }
    j = (j + 1) & (b->nSlot - 1);
  }
  if ((int64_t)b->nUsed >= b->maxWords) return 0;
  if (b->nPool + (size_t)n > b->capPool) {
    size_t cap = b->capPool ? b->capPool * 2 : 1 << 20;
    while (cap < b->nPool + (size_t)n) cap *= 2;
    unsigned char *p = realloc(b->pool, cap);
    if (!p) return -1;
    b->pool = p;
    b->capPool = cap;
  }
  memcpy(b->pool + b->nPool, z, (size_t)n);
  WordSlot s = {h, b->nPool, n, 1};
  b->nPool += (size_t)n;
  b->slot[j] = s;
  b->nUsed++;
  if (b->nUsed * 2 > b->nSlot) return grow_words(b);
  return 0;
}

/* Bytes of the UTF-8 character at z (n left), or 0 when invalid. */
static int utf8_len(const unsigned char *z, size_t n) {
  unsigned c = z[0];
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || (size_t)len > n) return 0;
  for (int i = 1; i < len; i++)
    if ((z[i] & 0xc0) != 0x80) return 0;
  if (len == 2 && c < 0xc2) return 0;
  if (len == 3 && ((c == 0xe0 && z[1] < 0xa0) || (c == 0xed && z[1] >= 0xa0))) return 0;
  if (len == 4 && ((c == 0xf0 && z[1] < 0x90) || c > 0xf4 || (c == 0xf4 && z[1] >= 0x90)))
    return 0;
  return len;
}

/* Splits a valid UTF-8 run into words with the pattern. */
static int add_valid(GPTBpe *b, const unsigned char *z, size_t n) {
  size_t from = 0, prev = 0;
  while (from < n) {
    int rc = pcre2_match(b->re, z, n, from, PCRE2_NO_UTF_CHECK, b->md, NULL);
    if (rc < 0) break;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(b->md);
    if (ov[0] < from || ov[1] > n) break;
    if (ov[1] == ov[0]) {
      int c = utf8_len(z + ov[0], n - ov[0]);
      from = ov[0] + (c ? (size_t)c : 1);
      continue;
    }
    if (ov[0] > prev && add_word(b, z + prev, (int)(ov[0] - prev))) return -1;
    if (add_word(b, z + ov[0], (int)(ov[1] - ov[0]))) return -1;
    prev = from = ov[1];
  }
  if (n > prev && add_word(b, z + prev, (int)(n - prev))) return -1;
  return 0;
}

int bpe_add_text(GPTBpe *b, const char *zText, size_t n) {
  const unsigned char *z = (const unsigned char *)zText;
  size_t i = 0;
  b->nBytes += (int64_t)n;
  while (i < n) {
    size_t j = i;
    int c;
    while (j < n && (c = utf8_len(z + j, n - j)) > 0) j += (size_t)c;
    if (j > i && add_valid(b, z + i, j - i)) return -1;
    if (j < n && add_word(b, z + j, 1)) return -1; /* an invalid byte */
    i = j < n ? j + 1 : j;
  }
  return 0;
}

/* Appends a token of n bytes; returns its id or -1. */
static int add_token(GPTBpe *b, const unsigned char *z, int n) {
  if (b->nTok == b->capTok) {
    int cap = b->capTok ? b->capTok * 2 : 512;
    unsigned char **t = realloc(b->tok, (size_t)cap * sizeof(*t));
    if (!t) return -1;
    b->tok = t;
    int *l = realloc(b->tokLen, (size_t)cap * sizeof(int));
    if (!l) return -1;
    b->tokLen = l;
    b->capTok = cap;
  }
  unsigned char *p = malloc((size_t)n);
  if (!p) return -1;
  memcpy(p, z, (size_t)n);
  b->tok[b->nTok] = p;
  b->tokLen[b->nTok] = n;
  return b->nTok++;
}

typedef struct PairSlot { uint64_t key; int64_t count; } PairSlot; /* key 0 = empty */

int bpe_train(GPTBpe *b, int n_tokens, int (*should_stop)(void *), void *ctx) {
  int rc = -1;
  int **sym = NULL, *nSym = NULL;
  int64_t *cnt = NULL;
  PairSlot *pair = NULL;
  size_t nW = 0, total = 0, nPair = 1;
  unsigned char *buf = NULL;
  if (b->nTok == 0)
    for (int i = 0; i < 256; i++) {
      unsigned char c = (unsigned char)i;
      if (add_token(b, &c, 1) < 0) return -1;
    }
  sym = calloc(b->nUsed + 1, sizeof(int *));
  nSym = calloc(b->nUsed + 1, sizeof(int));
  cnt = calloc(b->nUsed + 1, sizeof(int64_t));
  if (!sym || !nSym || !cnt) goto done;
  for (size_t i = 0; i < b->nSlot; i++) {
    const WordSlot *s = &b->slot[i];
    if (!s->h) continue;
    sym[nW] = malloc((size_t)s->len * sizeof(int));
    if (!sym[nW]) goto done;
    for (int k = 0; k < s->len; k++) sym[nW][k] = b->pool[s->off + k];
    nSym[nW] = s->len;
    cnt[nW] = s->count;
    total += (size_t)s->len;
    nW++;
  }
  while (nPair < 2 * total + 2) nPair *= 2;
  pair = malloc(nPair * sizeof(PairSlot));
  if (!pair) goto done;
  while (b->nTok < n_tokens) {
    if (should_stop && should_stop(ctx)) {
      rc = 1;
      goto done;
    }
    memset(pair, 0, nPair * sizeof(PairSlot));
    uint64_t bestKey = 0;
    int64_t best = 0;
    for (size_t w = 0; w < nW; w++) {
      for (int k = 0; k + 1 < nSym[w]; k++) {
        uint64_t key = ((uint64_t)(uint32_t)sym[w][k] << 32 | (uint32_t)sym[w][k + 1]) + 1;
        size_t j = (key * 0x9e3779b97f4a7c15ull >> 20) & (nPair - 1);
        while (pair[j].key && pair[j].key != key) j = (j + 1) & (nPair - 1);
        pair[j].key = key;
        pair[j].count += cnt[w];
        if (pair[j].count > best || (pair[j].count == best && key < bestKey)) {
          best = pair[j].count;
          bestKey = key;
        }
      }
    }
    if (best < 2) break;
    int l = (int)((bestKey - 1) >> 32), r = (int)((bestKey - 1) & 0xffffffffu);
    int n = b->tokLen[l] + b->tokLen[r];
    free(buf);
    buf = malloc((size_t)n);
    if (!buf) goto done;
    memcpy(buf, b->tok[l], (size_t)b->tokLen[l]);
    memcpy(buf + b->tokLen[l], b->tok[r], (size_t)b->tokLen[r]);
    int id = -1;
    for (int t = 256; t < b->nTok && id < 0; t++)
      if (b->tokLen[t] == n && memcmp(b->tok[t], buf, (size_t)n) == 0) id = t;
    if (id < 0 && (id = add_token(b, buf, n)) < 0) goto done;
    if (b->nMerge == b->capMerge) {
      int cap = b->capMerge ? b->capMerge * 2 : 512;
      int *ml = realloc(b->mergeL, (size_t)cap * sizeof(int));
      if (!ml) goto done;
      b->mergeL = ml;
      int *mr = realloc(b->mergeR, (size_t)cap * sizeof(int));
      if (!mr) goto done;
      b->mergeR = mr;
      b->capMerge = cap;
    }
    b->mergeL[b->nMerge] = l;
    b->mergeR[b->nMerge] = r;
    b->nMerge++;
    for (size_t w = 0; w < nW; w++) {
      int o = 0;
      for (int k = 0; k < nSym[w]; k++) {
        if (k + 1 < nSym[w] && sym[w][k] == l && sym[w][k + 1] == r) {
          sym[w][o++] = id;
          k++;
        } else {
          sym[w][o++] = sym[w][k];
        }
      }
      nSym[w] = o;
    }
  }
  rc = 0;
done:
  for (size_t w = 0; sym && w < nW; w++) free(sym[w]);
  free(sym); free(nSym); free(cnt); free(pair); free(buf);
  return rc;
}

int bpe_n_tokens(const GPTBpe *b) { return b->nTok; }
int bpe_n_merges(const GPTBpe *b) { return b->nMerge; }
const unsigned char *bpe_token(const GPTBpe *b, int id, int *n) {
  if (id < 0 || id >= b->nTok) { *n = 0; return NULL; }
  *n = b->tokLen[id];
  return b->tok[id];
}
void bpe_merge(const GPTBpe *b, int rank, int *pLeft, int *pRight) {
  *pLeft = rank >= 0 && rank < b->nMerge ? b->mergeL[rank] : -1;
  *pRight = rank >= 0 && rank < b->nMerge ? b->mergeR[rank] : -1;
}
int64_t bpe_n_bytes(const GPTBpe *b) { return b->nBytes; }
int64_t bpe_n_words(const GPTBpe *b) { return (int64_t)b->nUsed; }
