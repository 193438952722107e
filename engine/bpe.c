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
#include "tokenizer.h"

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
  int64_t nSkipped;      /* occurrences of words past maxWords, not counted */
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
  /* GPT-2's pattern as the encoder compiles it (its \s is White_Space, its
  ** letters and numbers include Unicode 15 and 16's), so training splits
  ** text into the words the trained tokenizer will see */
  char *zPcre = NULL, zErr[128];
  if (tok_pcre_pattern(tok_gpt2_pattern, strlen(tok_gpt2_pattern), &zPcre, zErr,
                       sizeof(zErr)) == 0)
    b->re = pcre2_compile((PCRE2_SPTR)zPcre, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec,
                          &eo, NULL);
  free(zPcre);
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

/* Counts one word (n >= 1 bytes); -2 past the encoder's limit, which the
** trained tokenizer could not encode. */
static int add_word(GPTBpe *b, const unsigned char *z, int n) {
  if (n > TOK_MAX_WORD) return BPE_EWORD;
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
  if ((int64_t)b->nUsed >= b->maxWords) {
    b->nSkipped++;
    return 0;
  }
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
    int rw;
    if (ov[0] > prev && (rw = add_word(b, z + prev, (int)(ov[0] - prev)))) return rw;
    if ((rw = add_word(b, z + ov[0], (int)(ov[1] - ov[0])))) return rw;
    prev = from = ov[1];
  }
  if (n > prev && n - prev > (size_t)TOK_MAX_WORD) return BPE_EWORD;
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
    int rc;
    if (j > i && (rc = add_valid(b, z + i, j - i))) return rc;
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

/* A pair of adjacent symbols: its count over all words (each weighted by
** the word's count), and the words it has occurred in (a word may be listed
** after the pair left it, or twice; a merge finds nothing there then).
** key is (left << 32 | right) + 1, 0 for an empty slot. */
typedef struct PairSlot {
  uint64_t key;
  int64_t count;
  int *aWord;
  size_t nWord, nWordAlloc;
  int iTouched;        /* the last merge that changed the count */
} PairSlot;

/* A heap entry: the pair's count when it was pushed (stale once it moved). */
typedef struct PairEntry { int64_t count; uint64_t key; } PairEntry;

/* The training state: the words as symbols, the pairs, the heap. */
typedef struct BpeRun {
  int **sym, *nSym;
  int64_t *cnt;
  int *seen;                /* the last merge that visited the word */
  size_t nW;
  PairSlot *pair;
  size_t nPair, nPairUsed;  /* slots (a power of two), used */
  PairEntry *heap;
  size_t nHeap, nHeapAlloc;
  uint64_t *aTouched;       /* keys whose counts the current merge changed */
  size_t nTouched, nTouchedAlloc;
  /* merged token bytes -> id, to reuse a token spelt twice */
  int *aTokSlot;
  size_t nTokSlot, nTokUsed;
} BpeRun;

static uint64_t pair_key(int l, int r) { return ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1; }

static size_t pair_home(uint64_t key, size_t n) {
  return (size_t)(key * 0x9e3779b97f4a7c15ull >> 20) & (n - 1);
}

/* The slot of key: where it is, or NULL when absent and bAdd is 0, or when
** out of memory. Grows the table at half full. */
static PairSlot *pair_find(BpeRun *r, uint64_t key, int bAdd) {
  size_t j = pair_home(key, r->nPair);
  while (r->pair[j].key && r->pair[j].key != key) j = (j + 1) & (r->nPair - 1);
  if (r->pair[j].key == key) return &r->pair[j];
  if (!bAdd) return NULL;
  if ((r->nPairUsed + 1) * 2 > r->nPair) {
    size_t n = r->nPair * 2;
    PairSlot *a = calloc(n, sizeof(PairSlot));
    if (!a) return NULL;
    for (size_t i = 0; i < r->nPair; i++) {
      if (!r->pair[i].key) continue;
      size_t k = pair_home(r->pair[i].key, n);
      while (a[k].key) k = (k + 1) & (n - 1);
      a[k] = r->pair[i];
    }
    free(r->pair);
    r->pair = a;
    r->nPair = n;
    j = pair_home(key, n);
    while (r->pair[j].key) j = (j + 1) & (n - 1);
  }
  r->pair[j].key = key;
  r->pair[j].iTouched = -1;
  r->nPairUsed++;
  return &r->pair[j];
}

/* Makes room for one more element in the array *pa of *pnAlloc elements of
** size elem holding n: doubles it (from first). Returns 0, or -1 when out
** of memory (the array stays as it was). */
static int grow(void **pa, size_t *pnAlloc, size_t n, size_t elem, size_t first) {
  if (n < *pnAlloc) return 0;
  size_t nNew = *pnAlloc ? 2 * *pnAlloc : first;
  void *a = realloc(*pa, nNew * elem);
  if (!a) return -1;
  *pa = a;
  *pnAlloc = nNew;
  return 0;
}

/* Whether heap entry a comes out before b: the larger count, then the
** smaller pair (the rule of the whole-table scan this replaces). */
static int entry_before(const PairEntry *a, const PairEntry *b) {
  return a->count > b->count || (a->count == b->count && a->key < b->key);
}

static int heap_push(BpeRun *r, int64_t count, uint64_t key) {
  if (grow((void **)&r->heap, &r->nHeapAlloc, r->nHeap, sizeof(PairEntry), 4096)) return -1;
  size_t i = r->nHeap++;
  PairEntry e = {count, key};
  while (i > 0 && entry_before(&e, &r->heap[(i - 1) / 2])) {
    r->heap[i] = r->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  r->heap[i] = e;
  return 0;
}

static PairEntry heap_pop(BpeRun *r) {
  PairEntry top = r->heap[0], e = r->heap[--r->nHeap];
  size_t i = 0, n = r->nHeap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && entry_before(&r->heap[c + 1], &r->heap[c])) c++;
    if (!entry_before(&r->heap[c], &e)) break;
    r->heap[i] = r->heap[c];
    i = c;
  }
  if (n > 0) r->heap[i] = e;
  return top;
}

/* Adds d to the count of pair (a, b) of word w; with d > 0, lists w under
** the pair. iMerge marks the pair changed (its final count is pushed after
** the merge). */
static int pair_add(BpeRun *r, int a, int b, int64_t d, size_t w, int iMerge) {
  PairSlot *p = pair_find(r, pair_key(a, b), 1);
  if (!p) return -1;
  p->count += d;
  if (d > 0 && (p->nWord == 0 || p->aWord[p->nWord - 1] != (int)w)) {
    if (grow((void **)&p->aWord, &p->nWordAlloc, p->nWord, sizeof(int), 2)) return -1;
    p->aWord[p->nWord++] = (int)w;
  }
  if (p->iTouched != iMerge) {
    p->iTouched = iMerge;
    if (grow((void **)&r->aTouched, &r->nTouchedAlloc, r->nTouched, sizeof(uint64_t), 1024))
      return -1;
    r->aTouched[r->nTouched++] = p->key;
  }
  return 0;
}

/* Adds d to the count of each adjacent pair of word w (pair_add). */
static int word_pairs(BpeRun *r, size_t w, int64_t d, int iMerge) {
  const int *a = r->sym[w];
  for (int k = 0; k + 1 < r->nSym[w]; k++)
    if (pair_add(r, a[k], a[k + 1], d, w, iMerge)) return -1;
  return 0;
}

/* Merges each (l, rt) of word w into id, left to right, and moves only the
** counts of the pairs each merge changes: (prev, l) -> (prev, id), (l, rt)
** gone, (rt, next) -> (id, next), as Hugging Face's trainer does. prev is
** the symbol already written, a merged one included, so that runs such as
** l rt l rt come out right. (Taking all of a word's pairs away and adding
** them back cost its whole length a merge: one word of 1 MiB to 2,000
** tokens took 90 s.) */
static int word_merge(BpeRun *r, size_t w, int l, int rt, int id, int iMerge) {
  int *a = r->sym[w], n = r->nSym[w], o = 0;
  int64_t c = r->cnt[w];
  for (int k = 0; k < n; k++) {
    if (k + 1 < n && a[k] == l && a[k + 1] == rt) {
      if (o > 0 && (pair_add(r, a[o - 1], l, -c, w, iMerge) ||
                    pair_add(r, a[o - 1], id, c, w, iMerge)))
        return -1;
      if (pair_add(r, l, rt, -c, w, iMerge)) return -1;
      if (k + 2 < n && (pair_add(r, rt, a[k + 2], -c, w, iMerge) ||
                        pair_add(r, id, a[k + 2], c, w, iMerge)))
        return -1;
      a[o++] = id;
      k++;
    } else {
      a[o++] = a[k];
    }
  }
  r->nSym[w] = o;
  return 0;
}

/* The id of the token of bytes z (n long), -1 when none: merged tokens
** (ids from 256) by their bytes. */
static int tok_find(const GPTBpe *b, const BpeRun *r, const unsigned char *z, int n,
                    size_t *pSlot) {
  size_t j = hash_bytes(z, n) & (r->nTokSlot - 1);
  for (; r->aTokSlot[j] >= 0; j = (j + 1) & (r->nTokSlot - 1)) {
    int t = r->aTokSlot[j];
    if (b->tokLen[t] == n && memcmp(b->tok[t], z, (size_t)n) == 0) break;
  }
  *pSlot = j;
  return r->aTokSlot[j];
}

/* Makes the token table n slots (a power of two) holding every merged
** token so far. */
static int tok_rebuild(const GPTBpe *b, BpeRun *r, size_t n) {
  int *a = malloc(n * sizeof(int));
  if (!a) return -1;
  free(r->aTokSlot);
  r->aTokSlot = a;
  r->nTokSlot = n;
  r->nTokUsed = 0;
  for (size_t i = 0; i < n; i++) a[i] = -1;
  for (int t = 256; t < b->nTok; t++) {
    size_t j;
    if (tok_find(b, r, b->tok[t], b->tokLen[t], &j) < 0) {
      a[j] = t;
      r->nTokUsed++;
    }
  }
  return 0;
}

/* Files the newest token, id, under its bytes; grows the table at half
** full. */
static int tok_index(const GPTBpe *b, BpeRun *r, int id) {
  size_t j;
  if ((r->nTokUsed + 1) * 2 > r->nTokSlot) return tok_rebuild(b, r, 2 * r->nTokSlot);
  if (tok_find(b, r, b->tok[id], b->tokLen[id], &j) < 0) {
    r->aTokSlot[j] = id;
    r->nTokUsed++;
  }
  return 0;
}

/* How it trains: every pair's count is kept up to date, not recounted a
** merge. A merge changes only the words its pair occurs in, and in each only
** the pairs around the merged ones (word_merge); the pairs whose counts
** changed go into a heap with their new counts, and an entry whose count has
** moved since is dropped when it comes out. The merges are those of a full
** recount a merge (the largest count, then the smaller pair): Tiny
** Shakespeare to 8,192 tokens, 7.4 -> 0.5 s. */
int bpe_train(GPTBpe *b, int n_tokens, int (*should_stop)(void *), void *ctx) {
  int rc = -1;
  BpeRun r;
  unsigned char *buf = NULL;
  memset(&r, 0, sizeof(r));
  if (b->nTok == 0)
    for (int i = 0; i < 256; i++) {
      unsigned char c = (unsigned char)i;
      if (add_token(b, &c, 1) < 0) return -1;
    }
  r.sym = calloc(b->nUsed + 1, sizeof(int *));
  r.nSym = calloc(b->nUsed + 1, sizeof(int));
  r.cnt = calloc(b->nUsed + 1, sizeof(int64_t));
  r.seen = calloc(b->nUsed + 1, sizeof(int));
  r.nPair = 1024;
  r.pair = calloc(r.nPair, sizeof(PairSlot));
  if (!r.sym || !r.nSym || !r.cnt || !r.seen || !r.pair) goto done;
  for (size_t i = 0; i < b->nSlot; i++) {
    const WordSlot *s = &b->slot[i];
    if (!s->h) continue;
    r.sym[r.nW] = malloc((size_t)s->len * sizeof(int));
    if (!r.sym[r.nW]) goto done;
    for (int k = 0; k < s->len; k++) r.sym[r.nW][k] = b->pool[s->off + k];
    r.nSym[r.nW] = s->len;
    r.cnt[r.nW] = s->count;
    r.nW++;
  }
  size_t nTokSlot = 1024;
  while (nTokSlot < 4 * (size_t)b->nTok) nTokSlot *= 2;
  if (tok_rebuild(b, &r, nTokSlot)) goto done;
  for (size_t w = 0; w < r.nW; w++)
    if (word_pairs(&r, w, r.cnt[w], 0)) goto done;
  for (int iMerge = 1; b->nTok < n_tokens; iMerge++) {
    if (should_stop && should_stop(ctx)) {
      rc = 1;
      goto done;
    }
    /* every pair changed since the last merge, at its count now */
    for (size_t i = 0; i < r.nTouched; i++) {
      PairSlot *p = pair_find(&r, r.aTouched[i], 0);
      if (p && p->count >= 2 && heap_push(&r, p->count, p->key)) goto done;
    }
    r.nTouched = 0;
    PairSlot *best = NULL;
    while (r.nHeap > 0 && !best) {
      PairEntry e = heap_pop(&r);
      PairSlot *p = pair_find(&r, e.key, 0);
      if (p && p->count == e.count) best = p;
    }
    if (!best || best->count < 2) break;
    uint64_t bestKey = best->key;
    int l = (int)((bestKey - 1) >> 32), rt = (int)((bestKey - 1) & 0xffffffffu);
    int n = b->tokLen[l] + b->tokLen[rt];
    free(buf);
    buf = malloc((size_t)n);
    if (!buf) goto done;
    memcpy(buf, b->tok[l], (size_t)b->tokLen[l]);
    memcpy(buf + b->tokLen[l], b->tok[rt], (size_t)b->tokLen[rt]);
    size_t slot;
    int id = tok_find(b, &r, buf, n, &slot);
    if (id < 0) {
      if ((id = add_token(b, buf, n)) < 0 || tok_index(b, &r, id)) goto done;
    }
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
    b->mergeR[b->nMerge] = rt;
    b->nMerge++;
    /* the words the pair occurs in; the list is taken first, since new
    ** pairs may move the table (best included) */
    int *aWord = best->aWord;
    size_t nWord = best->nWord;
    best->aWord = NULL;
    best->nWord = best->nWordAlloc = 0;
    for (size_t iw = 0; iw < nWord; iw++) {
      size_t w = (size_t)aWord[iw];
      /* a word is listed again each time a merge rescans it: once a merge
      ** (two long words took minutes, each listed under the other's pairs
      ** over and over) */
      if (r.seen[w] == iMerge) continue;
      r.seen[w] = iMerge;
      if (word_merge(&r, w, l, rt, id, iMerge)) { free(aWord); goto done; }
    }
    free(aWord);
  }
  rc = 0;
done:
  for (size_t w = 0; r.sym && w < r.nW; w++) free(r.sym[w]);
  for (size_t i = 0; r.pair && i < r.nPair; i++) free(r.pair[i].aWord);
  free(r.sym); free(r.nSym); free(r.cnt); free(r.seen); free(r.pair); free(r.heap);
  free(r.aTouched); free(r.aTokSlot); free(buf);
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
int64_t bpe_n_skipped(const GPTBpe *b) { return b->nSkipped; }
