/*
** Byte-level BPE tokenizers (GPT-2's, and the tokenizer.json kind of Llama 3,
** Qwen2 and Qwen3), in plain C11 with PCRE2 for the pre-tokenizer and
** utf8proc for NFC.
**
** How text becomes ids (tok_encode):
**
**   1. The text is cut at every added token (tokenizer.json's added_tokens;
**      for GPT-2 just "<|endoftext|>"), which becomes that token's id: the
**      leftmost match, the longest at that position, as Hugging Face's
**      AddedVocabulary does. Special ones count only with TOK_ALLOW_SPECIAL;
**      otherwise they are plain text (like tiktoken's encode_ordinary).
**   2. Each piece is split into maximal runs of valid UTF-8. Every byte that
**      is not part of a valid character is a pre-token of its own, so any
**      byte string encodes and decode(encode(x)) == x always holds.
**   3. With TOK_OPT_NFC each run is normalized to NFC (utf8proc), as
**      Hugging Face's normalizer does with its Unicode 9.0 tables (nfc_as_hf).
**   4. The pre-tokenizer cuts each run into pre-tokens ("words"): GPT-2's
**      regex, or the model's Split stages one after another, each cutting
**      the pieces of the one before (matches and the gaps between them).
**   5. Each word is turned into bytes-as-tokens and merged by BPE: the
**      adjacent pair with the lowest merge rank is merged first (leftmost
**      first on ties), until no pair has a merge. With TOK_OPT_IGNORE_MERGES
**      a word that is itself a token is that token (Llama 3).
**
** Patterns are written for Hugging Face's regex engine (Oniguruma, or Rust's
** regex) and rewritten for PCRE2 in one place, translate_pattern(): \s and
** \S become Unicode's White_Space property (which both engines mean by
** them; PCRE2's own \s differs), Oniguruma's \h (a hex digit) and \uHHHH
** are spelt out. (?i:...), \p{L}, possessive quantifiers and look-arounds
** mean the same in PCRE2.
**
** The vocabulary arrives in the form of vocab.json: every byte is spelled as
** one printable Unicode character (OpenAI's bytes_to_unicode()). We convert
** each token back to its raw bytes once, at load, so that encoding and
** decoding work on bytes only.
**
** Two open-addressing hash tables make BPE fast: raw bytes -> token id, and
** (left id, right id) -> (rank, merged id). A word whose whole string is a
** token that BPE would produce anyway (checked for every token in
** tok_finish) skips merging altogether; that covers most English words.
** Long words merge in O(n log n) through a binary heap over a linked list of
** symbols, so no input can make a word quadratic.
**
** Once tok_finish() succeeds the tokenizer is read-only. Every tok_encode()
** call keeps its scratch space, PCRE2 match data and word cache in its own
** EncodeState, so any number of threads can encode with one tokenizer.
*/
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tokenizer.h"

/* Largest vocabulary tok_new() accepts; keeps every table size in range. */
#define TOK_MAX_VOCAB (1 << 24)

/* The special token recognised by TOK_ALLOW_SPECIAL. */
static const char zEndOfText[] = "<|endoftext|>";
#define N_END_OF_TEXT 13

/* GPT-2's pattern, as Hugging Face's ByteLevel pre-tokenizer spells it.
** OpenAI runs it with Python's regex module (tiktoken with Rust's regex),
** where \s is exactly Unicode's White_Space property; translate_pattern()
** makes PCRE2 read it so (PCRE2's own \s also takes U+180E). */
const char tok_gpt2_pattern[] =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Most backtracking steps one pre-tokenizer match may take in a tokenizer
** from tokenizer.json, whose pattern is stored data: a pathological pattern
** fails the encode instead of hanging it. Sane patterns take a handful of
** steps a character. */
#define TOK_MATCH_LIMIT 100000000
/* and at most this much backtracking memory a match, in KiB */
#define TOK_HEAP_LIMIT_KB 65536

/* bytes_to_unicode() maps every byte to a code point below this. */
#define N_BYTE_CP 324

/* An added token: matched as a whole string before pre-tokenization. Its
** bytes are the token's own, in the pool. */
typedef struct AddedToken {
  int id;
  int bSpecial;             /* matched only with TOK_ALLOW_SPECIAL */
  const unsigned char *z;   /* its bytes (set by index_added, once the pool is whole) */
  int n;
  int parent;               /* the longest added token that is a proper prefix, or -1 */
} AddedToken;

/* One entry of the merge table; rank < 0 marks an empty slot. */
typedef struct MergeSlot {
  uint64_t key;   /* left id << 32 | right id */
  int rank;       /* line number in merges.txt after "#version", from 0 */
  int merged;     /* id of left+right */
} MergeSlot;

struct GPTTokenizer {
  int nVocab;
  /* Raw bytes of every token, one after the other in zPool. */
  unsigned char *zPool;
  size_t nPool, nPoolAlloc;
  size_t *aTokOff;          /* offset of token id in zPool */
  int *aTokLen;             /* its length; -1 while the slot is unset */
  unsigned char *aWhole;    /* 1 when BPE of the token's bytes gives itself */
  /* Raw bytes -> id: open addressing, linear probing, never over half full. */
  int *aStrSlot;            /* token id, or -1 when empty */
  uint32_t *aStrHash;       /* hash of that token, to skip most memcmp()s */
  uint32_t mStrMask;
  /* (left id, right id) -> merge: open addressing, grown at half full. */
  MergeSlot *aMerge;
  uint32_t mMergeMask;
  size_t nMerge;
  int lastRank;             /* rank of the last merge added, -1 before any */
  /* bytes_to_unicode() both ways, and the token of every single byte. */
  uint16_t aByteToCp[256];
  int16_t aCpToByte[N_BYTE_CP];
  int aByteId[256];
  int eotId;                /* id of "<|endoftext|>", or -1 */
  unsigned opts;            /* TOK_OPT_* */
  /* The pre-tokenizer: Split stages applied in turn (GPT-2's pattern alone
  ** unless tok_add_split() gave others). */
  pcre2_code *apSplit[TOK_MAX_SPLITS];
  unsigned char abJit[TOK_MAX_SPLITS]; /* stage compiled by the JIT */
  int nSplit;
  pcre2_match_context *pMatchCtx; /* match limit for stored patterns, or NULL */
  /* Added tokens, sorted by their bytes (tok_finish). */
  AddedToken *aAdded;
  int nAdded, nAddedAlloc;
  int bAnyPlain;            /* some added token is not special */
  unsigned char aFirst[256];/* bit 1: a plain added token starts with the byte, bit 2: a special one */
  unsigned char *aAddedKind;/* (nVocab,) 0, or 1 for a plain added token, 2 for a special one */
  int bFinished;
};

/* One candidate merge in the BPE heap. */
typedef struct HeapEntry {
  uint64_t order;           /* rank << 32 | position: lowest rank, then leftmost */
  int left, right, merged;  /* the ids it expects to find, and the result */
} HeapEntry;

/* A remembered word of this call: where it occurred in the input and where
** its ids are in the output. Words repeat a lot in real text. */
typedef struct CacheSlot {
  const unsigned char *z;   /* the word in the caller's text; NULL when empty */
  uint32_t n;
  uint32_t nIds;
  size_t iIds;              /* offset of its ids in aOut */
} CacheSlot;

/* Everything one tok_encode() call writes to. */
typedef struct EncodeState {
  const GPTTokenizer *t;
  pcre2_match_data *apMatch[TOK_MAX_SPLITS]; /* one per Split stage */
  int bLimit;               /* a pre-tokenizer match hit TOK_MATCH_LIMIT */
  int iMatchErr;            /* PCRE2's code for another failed match, or 0 */
  int bStopped;             /* opts->should_stop asked to stop */
  int bLongWord;            /* a pre-token is over TOK_MAX_WORD bytes */
  const TokEncodeOpts *opts;  /* or NULL */
  uint32_t nWork;           /* merges and matches since should_stop was asked */
  uint32_t nPoll;           /* ask after this many */
  int64_t tPoll;            /* when it was last asked, or 0 */
  unsigned char **azNorm;   /* NFC copies of runs: words in the cache point into them */
  size_t nNorm, nNormAlloc;
  int *aOut;                /* the ids so far */
  size_t nOut, nOutAlloc;
  /* BPE scratch, sized for the longest word seen so far */
  int *aSymId;              /* token at each symbol start; -1 once merged away */
  int *aSymNext;            /* next live symbol, -1 at the end */
  int *aSymPrev;            /* previous live symbol, -1 at the start */
  HeapEntry *aHeap;
  size_t nSymAlloc, nHeap, nHeapAlloc;
  CacheSlot *aCache;        /* direct-mapped; NULL for short texts */
  uint32_t mCacheMask;
} EncodeState;

/* Whether the caller asks the encoding to stop, polled every nPoll merges
** or matches: one word of megabytes is otherwise minutes of BPE that
** nothing can interrupt. nPoll adapts so that polls come about every
** millisecond or two (a poll may run an SQL statement): 65,536 steps of
** plain text, one for a pathological pattern whose every match takes a
** tenth of a second. */
#define TOK_POLL_MAX 65536
static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static int should_stop(EncodeState *s) {
  if (!s->opts || !s->opts->should_stop || ++s->nWork < s->nPoll) return 0;
  int64_t now = mono_ns(), since = now - s->tPoll;
  if (s->tPoll == 0 || since > 4000000) {
    s->nPoll = s->nPoll > 1 ? s->nPoll / 2 : 1;
  } else if (since < 1000000) {
    s->nPoll = s->nPoll < TOK_POLL_MAX ? s->nPoll * 2 : TOK_POLL_MAX;
  }
  s->tPoll = now;
  s->nWork = 0;
  if (s->opts->should_stop(s->opts->ctx)) s->bStopped = 1;
  return s->bStopped;
}

/* Longest word, in bytes, that goes into the word cache. */
#define CACHE_MAX_WORD 64

/* Writes a printf-style message to err (when there is room) and returns -1,
** so that error paths read "return fail(err, n_err, ...)". */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(char *err, size_t n_err, const char *zFmt, ...) {
  if (err && n_err > 0) {
    va_list ap;
    va_start(ap, zFmt);
    vsnprintf(err, n_err, zFmt, ap);
    va_end(ap);
  }
  return -1;
}

/* How many bytes of z (n long) to quote in an error message: at most 48,
** cut back to the start of a UTF-8 character so the message stays valid. */
static int quote_len(const char *z, int n) {
  if (n <= 48) return n;
  n = 48;
  while (n > 0 && ((unsigned char)z[n] & 0xC0) == 0x80) n--;
  return n;
}

/* Hashes n bytes; any decent mix will do, words are short. */
static uint32_t hash_bytes(const unsigned char *z, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, z, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    z += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t w = 0;
    memcpy(&w, z, n);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
  }
  h ^= h >> 29;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 32;
  return (uint32_t)h;
}

/* The id whose raw bytes are z (n long, hash h), or -1. */
static int str_lookup(const GPTTokenizer *t, const unsigned char *z, size_t n,
                      uint32_t h) {
  for (uint32_t i = h & t->mStrMask;; i = (i + 1) & t->mStrMask) {
    int id = t->aStrSlot[i];
    if (id < 0) return -1;
    if (t->aStrHash[i] == h && (size_t)t->aTokLen[id] == n &&
        memcmp(t->zPool + t->aTokOff[id], z, n) == 0)
      return id;
  }
}

/* The slot of pair key in a merge table of mask+1 slots (a power of two):
** where it is, or the empty slot where it would go. */
static uint32_t merge_slot(const MergeSlot *a, uint32_t mask, uint64_t key) {
  uint64_t h = key * 0x9E3779B97F4A7C15ull;
  uint32_t i = (uint32_t)(h >> 32) & mask;
  while (a[i].rank >= 0 && a[i].key != key) i = (i + 1) & mask;
  return i;
}

/* The merge of ids (left, right), or NULL when the pair never merges. */
static const MergeSlot *merge_lookup(const GPTTokenizer *t, int left, int right) {
  uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  const MergeSlot *p = &t->aMerge[merge_slot(t->aMerge, t->mMergeMask, key)];
  return p->rank >= 0 ? p : NULL;
}

/* Doubles the merge table. Returns 0, or -1 when out of memory. */
static int merge_grow(GPTTokenizer *t) {
  uint32_t nOld = t->mMergeMask + 1;
  if (nOld > (UINT32_MAX >> 2)) return -1;
  uint32_t nNew = nOld * 2;
  MergeSlot *aNew = malloc(sizeof(MergeSlot) * (size_t)nNew);
  if (!aNew) return -1;
  for (uint32_t i = 0; i < nNew; i++) aNew[i].rank = -1;
  for (uint32_t i = 0; i < nOld; i++) {
    if (t->aMerge[i].rank < 0) continue;
    aNew[merge_slot(aNew, nNew - 1, t->aMerge[i].key)] = t->aMerge[i];
  }
  free(t->aMerge);
  t->aMerge = aNew;
  t->mMergeMask = nNew - 1;
  return 0;
}

/* Fills both directions of OpenAI's bytes_to_unicode(): the printable bytes
** '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves; the other 68
** bytes, in increasing order, become U+0100, U+0101, ... */
static void build_byte_map(GPTTokenizer *t) {
  int nExtra = 0;
  for (int i = 0; i < N_BYTE_CP; i++) t->aCpToByte[i] = -1;
  for (int b = 0; b < 256; b++) {
    int bPrintable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                     (b >= 0xAE && b <= 0xFF);
    int cp = bPrintable ? b : 256 + nExtra++;
    t->aByteToCp[b] = (uint16_t)cp;
    t->aCpToByte[cp] = (int16_t)b;
  }
}

/* Converts a byte-level string (UTF-8, n bytes) to raw bytes in out, which
** has room for n bytes. Returns the raw length, or -1 when z holds invalid
** UTF-8 or a character outside the byte map. */
static int byte_level_to_raw(const GPTTokenizer *t, const char *z, int n,
                             unsigned char *out) {
  int nOut = 0;
  for (int i = 0; i < n;) {
    unsigned c = (unsigned char)z[i];
    unsigned cp;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if (c >= 0xC2 && c <= 0xDF && i + 1 < n &&
               ((unsigned char)z[i + 1] & 0xC0) == 0x80) {
      cp = (c & 0x1F) << 6 | ((unsigned char)z[i + 1] & 0x3F);
      i += 2;
    } else {
      return -1; /* every mapped code point is below U+0800 */
    }
    if (cp >= N_BYTE_CP || t->aCpToByte[cp] < 0) return -1;
    out[nOut++] = (unsigned char)t->aCpToByte[cp];
  }
  return nOut;
}

/* Allocates a tokenizer with n_vocab empty slots. NULL when out of memory or
** when n_vocab is not in 1..TOK_MAX_VOCAB. */
GPTTokenizer *tok_new(int n_vocab) {
  if (n_vocab <= 0 || n_vocab > TOK_MAX_VOCAB) return NULL;
  GPTTokenizer *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->nVocab = n_vocab;
  t->lastRank = -1;
  t->eotId = -1;
  build_byte_map(t);
  for (int b = 0; b < 256; b++) t->aByteId[b] = -1;
  /* at most half full, so probing always ends at an empty slot */
  uint32_t nStr = 16;
  while (nStr < 2 * (uint32_t)n_vocab) nStr *= 2;
  t->mStrMask = nStr - 1;
  t->aStrSlot = malloc(sizeof(int) * nStr);
  t->aStrHash = malloc(sizeof(uint32_t) * nStr);
  t->aTokOff = malloc(sizeof(size_t) * (size_t)n_vocab);
  t->aTokLen = malloc(sizeof(int) * (size_t)n_vocab);
  t->aWhole = calloc((size_t)n_vocab, 1);
  t->mMergeMask = 1023;
  t->aMerge = malloc(sizeof(MergeSlot) * (t->mMergeMask + 1));
  if (!t->aStrSlot || !t->aStrHash || !t->aTokOff || !t->aTokLen ||
      !t->aWhole || !t->aMerge) {
    tok_free(t);
    return NULL;
  }
  for (uint32_t i = 0; i < nStr; i++) t->aStrSlot[i] = -1;
  for (int i = 0; i < n_vocab; i++) t->aTokLen[i] = -1;
  for (uint32_t i = 0; i <= t->mMergeMask; i++) t->aMerge[i].rank = -1;
  return t;
}

/* Frees a tokenizer and everything it owns; NULL is fine. */
void tok_free(GPTTokenizer *t) {
  if (!t) return;
  for (int i = 0; i < t->nSplit; i++) pcre2_code_free(t->apSplit[i]);
  pcre2_match_context_free(t->pMatchCtx);
  free(t->aAdded);
  free(t->aAddedKind);
  free(t->zPool);
  free(t->aTokOff);
  free(t->aTokLen);
  free(t->aWhole);
  free(t->aStrSlot);
  free(t->aStrHash);
  free(t->aMerge);
  free(t);
}

/* Stores token id from its byte-level spelling: converts it to raw bytes,
** appends them to the pool and indexes them by content. */
int tok_set_token(GPTTokenizer *t, int id, const char *z, int n, char *err,
                  size_t n_err) {
  if (!t) return fail(err, n_err, "no tokenizer");
  if (t->bFinished) return fail(err, n_err, "tokenizer is already finished");
  if (id < 0 || id >= t->nVocab)
    return fail(err, n_err, "vocab token %d is outside 0..%d", id, t->nVocab - 1);
  if (t->aTokLen[id] >= 0) return fail(err, n_err, "vocab token %d is set twice", id);
  if (n <= 0 || !z) return fail(err, n_err, "vocab token %d is empty", id);
  /* the raw form is never longer than the byte-level one */
  if ((size_t)n > SIZE_MAX - t->nPool) return fail(err, n_err, "out of memory");
  if (t->nPool + (size_t)n > t->nPoolAlloc) {
    size_t nNew = t->nPoolAlloc ? t->nPoolAlloc : 65536;
    while (nNew < t->nPool + (size_t)n) {
      if (nNew > SIZE_MAX / 2) return fail(err, n_err, "out of memory");
      nNew *= 2;
    }
    unsigned char *zNew = realloc(t->zPool, nNew);
    if (!zNew) return fail(err, n_err, "out of memory");
    t->zPool = zNew;
    t->nPoolAlloc = nNew;
  }
  unsigned char *zRaw = t->zPool + t->nPool;
  int nRaw = byte_level_to_raw(t, z, n, zRaw);
  if (nRaw < 0)
    return fail(err, n_err, "vocab token %d has a character outside GPT-2's byte map", id);
  uint32_t h = hash_bytes(zRaw, (size_t)nRaw);
  int other = str_lookup(t, zRaw, (size_t)nRaw, h);
  if (other >= 0)
    return fail(err, n_err, "vocab token %d repeats token %d \"%.*s\"", id, other,
                quote_len(z, n), z);
  uint32_t i = h & t->mStrMask;
  while (t->aStrSlot[i] >= 0) i = (i + 1) & t->mStrMask;
  t->aStrSlot[i] = id;
  t->aStrHash[i] = h;
  t->aTokOff[id] = t->nPool;
  t->aTokLen[id] = nRaw;
  t->nPool += (size_t)nRaw;
  if (nRaw == 1) t->aByteId[zRaw[0]] = id;
  if (nRaw == N_END_OF_TEXT && memcmp(zRaw, zEndOfText, N_END_OF_TEXT) == 0)
    t->eotId = id;
  return 0;
}

/* Looks up a byte-level token spelling: its id, or -1 when no token has it. */
static int byte_level_lookup(const GPTTokenizer *t, const char *z, int n,
                             unsigned char *zBuf) {
  int nRaw = byte_level_to_raw(t, z, n, zBuf);
  if (nRaw <= 0) return -1;
  return str_lookup(t, zBuf, (size_t)nRaw, hash_bytes(zBuf, (size_t)nRaw));
}

/* Records that ids (left, right) merge into the token spelt left+right, at
** 'rank'. The vocabulary must be loaded first: both sides and the result
** must already be tokens. */
int tok_add_merge(GPTTokenizer *t, int rank, const char *zLeft, int nLeft,
                  const char *zRight, int nRight, char *err, size_t n_err) {
  if (!t) return fail(err, n_err, "no tokenizer");
  if (t->bFinished) return fail(err, n_err, "tokenizer is already finished");
  if (rank <= t->lastRank || rank >= INT_MAX)
    return fail(err, n_err, "merge %d comes after merge %d; ranks must increase",
                rank, t->lastRank);
  if (nLeft <= 0 || nRight <= 0 || !zLeft || !zRight)
    return fail(err, n_err, "merge %d has an empty side", rank);
  if (nLeft > INT_MAX - nRight)
    return fail(err, n_err, "merge %d is too long", rank);
  unsigned char *zBuf = malloc((size_t)nLeft + (size_t)nRight);
  if (!zBuf) return fail(err, n_err, "out of memory");
  int rc = 0;
  int left = byte_level_lookup(t, zLeft, nLeft, zBuf);
  int right = left < 0 ? -1 : byte_level_lookup(t, zRight, nRight, zBuf);
  if (left < 0 || right < 0) {
    const char *z = left < 0 ? zLeft : zRight;
    int n = left < 0 ? nLeft : nRight;
    rc = fail(err, n_err, "merge %d names unknown token \"%.*s\"", rank,
              quote_len(z, n), z);
    goto done;
  }
  /* the result, spelt as raw bytes: left's then right's */
  int nL = t->aTokLen[left], nR = t->aTokLen[right];
  memcpy(zBuf, t->zPool + t->aTokOff[left], (size_t)nL);
  memcpy(zBuf + nL, t->zPool + t->aTokOff[right], (size_t)nR);
  int merged = str_lookup(t, zBuf, (size_t)(nL + nR),
                          hash_bytes(zBuf, (size_t)(nL + nR)));
  if (merged < 0) {
    int nQL = quote_len(zLeft, nLeft);
    int nQR = nQL < nLeft ? 0 : quote_len(zRight, nRight);
    rc = fail(err, n_err, "merge %d makes \"%.*s%.*s\", which is not in the vocabulary",
              rank, nQL, zLeft, nQR, zRight);
    goto done;
  }
  if (t->nMerge + 1 > (size_t)(t->mMergeMask + 1) / 2 && merge_grow(t) != 0) {
    rc = fail(err, n_err, "out of memory");
    goto done;
  }
  uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  MergeSlot *p = &t->aMerge[merge_slot(t->aMerge, t->mMergeMask, key)];
  if (p->rank >= 0) {
    rc = fail(err, n_err, "merge %d repeats merge %d", rank, p->rank);
    goto done;
  }
  p->key = key;
  p->rank = rank;
  p->merged = merged;
  t->nMerge++;
  t->lastRank = rank;
done:
  free(zBuf);
  return rc;
}

/* Frees the scratch space of one encode call. */
static void state_free(EncodeState *s) {
  for (int i = 0; i < TOK_MAX_SPLITS; i++) pcre2_match_data_free(s->apMatch[i]);
  for (size_t i = 0; i < s->nNorm; i++) free(s->azNorm[i]);
  free(s->azNorm);
  free(s->aOut);
  free(s->aSymId);
  free(s->aSymNext);
  free(s->aSymPrev);
  free(s->aHeap);
  free(s->aCache);
}

/* Appends one id to the output. Returns 0, or -1 when out of memory. */
static int push_id(EncodeState *s, int id) {
  if (s->nOut == s->nOutAlloc) {
    size_t nNew = s->nOutAlloc ? s->nOutAlloc * 2 : 64;
    if (nNew > SIZE_MAX / sizeof(int)) return -1;
    int *aNew = realloc(s->aOut, nNew * sizeof(int));
    if (!aNew) return -1;
    s->aOut = aNew;
    s->nOutAlloc = nNew;
  }
  s->aOut[s->nOut++] = id;
  return 0;
}

/* Makes the BPE scratch hold a word of n bytes: n symbols and up to 3n heap
** entries (n-1 initial pairs plus at most two new ones per merge). */
static int reserve_symbols(EncodeState *s, size_t n) {
  if (n <= s->nSymAlloc) return 0;
  if (n > (size_t)INT_MAX / 4 || n > SIZE_MAX / (3 * sizeof(HeapEntry))) return -1;
  size_t nAlloc = s->nSymAlloc ? s->nSymAlloc : 64;
  while (nAlloc < n) nAlloc *= 2;
  int *aId = realloc(s->aSymId, nAlloc * sizeof(int));
  if (!aId) return -1;
  s->aSymId = aId;
  int *aNext = realloc(s->aSymNext, nAlloc * sizeof(int));
  if (!aNext) return -1;
  s->aSymNext = aNext;
  int *aPrev = realloc(s->aSymPrev, nAlloc * sizeof(int));
  if (!aPrev) return -1;
  s->aSymPrev = aPrev;
  HeapEntry *aHeap = realloc(s->aHeap, 3 * nAlloc * sizeof(HeapEntry));
  if (!aHeap) return -1;
  s->aHeap = aHeap;
  s->nSymAlloc = nAlloc;
  s->nHeapAlloc = 3 * nAlloc;
  return 0;
}

/* Pushes the pair starting at symbol i onto the heap when it has a merge. */
static void heap_push_pair(EncodeState *s, int i) {
  int j = s->aSymNext[i];
  if (j < 0) return;
  const MergeSlot *m = merge_lookup(s->t, s->aSymId[i], s->aSymId[j]);
  if (!m) return;
  HeapEntry e = {(uint64_t)(uint32_t)m->rank << 32 | (uint32_t)i, s->aSymId[i],
                 s->aSymId[j], m->merged};
  /* sift up; capacity is guaranteed by reserve_symbols() */
  size_t k = s->nHeap++;
  while (k > 0) {
    size_t parent = (k - 1) / 2;
    if (s->aHeap[parent].order <= e.order) break;
    s->aHeap[k] = s->aHeap[parent];
    k = parent;
  }
  s->aHeap[k] = e;
}

/* Removes the heap's smallest entry into *out. */
static void heap_pop(EncodeState *s, HeapEntry *out) {
  *out = s->aHeap[0];
  HeapEntry last = s->aHeap[--s->nHeap];
  size_t n = s->nHeap, k = 0;
  for (;;) {
    size_t c = 2 * k + 1;
    if (c >= n) break;
    if (c + 1 < n && s->aHeap[c + 1].order < s->aHeap[c].order) c++;
    if (last.order <= s->aHeap[c].order) break;
    s->aHeap[k] = s->aHeap[c];
    k = c;
  }
  if (n > 0) s->aHeap[k] = last;
}

/* Runs BPE over the n bytes of one word and appends the resulting ids.
**
** Symbols live in a linked list indexed by their first byte. The heap holds
** every mergeable adjacent pair ordered by (rank, position); entries go
** stale when a neighbour merges, and are recognised on pop because the ids
** they expect are no longer there (a position's id only ever grows into a
** longer token, so it cannot come back). For GPT-2's merges, whose two
** sides are always made by earlier merges, this equals the reference bpe()
** that merges every occurrence of the best pair in one sweep. */
static int bpe_word(EncodeState *s, const unsigned char *z, size_t n) {
  const GPTTokenizer *t = s->t;
  if (n > TOK_MAX_WORD) {
    s->bLongWord = 1;
    return -1;
  }
  if (reserve_symbols(s, n) != 0) return -1;
  int nSym = (int)n;
  for (int i = 0; i < nSym; i++) {
    s->aSymId[i] = t->aByteId[z[i]];
    s->aSymNext[i] = i + 1 < nSym ? i + 1 : -1;
    s->aSymPrev[i] = i - 1;
  }
  s->nHeap = 0;
  for (int i = 0; i + 1 < nSym; i++) {
    if (should_stop(s)) return -1;
    heap_push_pair(s, i);
  }
  while (s->nHeap > 0) {
    HeapEntry e;
    if (should_stop(s)) return -1;
    heap_pop(s, &e);
    int i = (int)(uint32_t)e.order;
    int j = s->aSymNext[i];
    if (s->aSymId[i] != e.left || j < 0 || s->aSymId[j] != e.right) continue;
    s->aSymId[i] = e.merged;
    s->aSymId[j] = -1;
    int k = s->aSymNext[j];
    s->aSymNext[i] = k;
    if (k >= 0) s->aSymPrev[k] = i;
    if (s->aSymPrev[i] >= 0) heap_push_pair(s, s->aSymPrev[i]);
    heap_push_pair(s, i);
  }
  for (int i = 0; i >= 0; i = s->aSymNext[i])
    if (push_id(s, s->aSymId[i]) != 0) return -1;
  return 0;
}

/* Appends the ids of one pre-token: a single byte directly, a cached word
** by copying its earlier ids, a word that is itself a token as that token,
** and anything else through BPE. */
static int encode_word(EncodeState *s, const unsigned char *z, size_t n) {
  const GPTTokenizer *t = s->t;
  if (n == 1) return push_id(s, t->aByteId[z[0]]);
  uint32_t h = hash_bytes(z, n);
  CacheSlot *pSlot = NULL;
  if (s->aCache && n <= CACHE_MAX_WORD) {
    pSlot = &s->aCache[h & s->mCacheMask];
    if (pSlot->z && pSlot->n == n && memcmp(pSlot->z, z, n) == 0) {
      for (uint32_t i = 0; i < pSlot->nIds; i++)
        if (push_id(s, s->aOut[pSlot->iIds + i]) != 0) return -1;
      return 0;
    }
  }
  size_t iStart = s->nOut;
  int id = str_lookup(t, z, n, h);
  if (id >= 0 && (t->aWhole[id] || (t->opts & TOK_OPT_IGNORE_MERGES))) {
    if (push_id(s, id) != 0) return -1;
  } else if (bpe_word(s, z, n) != 0) {
    return -1;
  }
  if (pSlot) {
    pSlot->z = z;
    pSlot->n = (uint32_t)n;
    pSlot->nIds = (uint32_t)(s->nOut - iStart);
    pSlot->iIds = iStart;
  }
  return 0;
}

/* Length of the valid UTF-8 character at the start of z (n > 0 bytes), or 0
** when the first byte does not start one. Strict: no overlong forms, no
** surrogates, nothing above U+10FFFF. */
static size_t utf8_char_len(const unsigned char *z, size_t n) {
  unsigned c = z[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0; /* continuation byte, or overlong 2-byte lead */
  if (c < 0xE0) return n >= 2 && (z[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (n < 3 || (z[2] & 0xC0) != 0x80) return 0;
    unsigned lo = c == 0xE0 ? 0xA0 : 0x80; /* E0 80..9F would be overlong */
    unsigned hi = c == 0xED ? 0x9F : 0xBF; /* ED A0..BF would be surrogates */
    return z[1] >= lo && z[1] <= hi ? 3 : 0;
  }
  if (c < 0xF5) {
    if (n < 4 || (z[2] & 0xC0) != 0x80 || (z[3] & 0xC0) != 0x80) return 0;
    unsigned lo = c == 0xF0 ? 0x90 : 0x80; /* F0 80..8F would be overlong */
    unsigned hi = c == 0xF4 ? 0x8F : 0xBF; /* F4 90.. would pass U+10FFFF */
    return z[1] >= lo && z[1] <= hi ? 4 : 0;
  }
  return 0;
}

/* Length of the longest valid UTF-8 prefix of z (n bytes). */
static size_t utf8_valid_prefix(const unsigned char *z, size_t n) {
  size_t i = 0;
  while (i < n) {
    /* ASCII, the common case, eight bytes at a time */
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, z + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    size_t nChar = utf8_char_len(z + i, n - i);
    if (nChar == 0) break;
    i += nChar;
  }
  return i;
}

/* Runs Split stage k over the n bytes of piece z and passes each piece it
** makes (the matches and the gaps between them, as Hugging Face's Split
** with behavior Isolated) to the next stage; after the last stage a piece is
** a word for BPE. An empty match cuts nothing: the search moves one
** character on, as Rust's find_iter does. */
static int split_piece(EncodeState *s, int k, const unsigned char *z, size_t n) {
  const GPTTokenizer *t = s->t;
  if (k == t->nSplit) return encode_word(s, z, n);
  size_t prev = 0, from = 0;
  while (from < n) {
    /* pcre2_jit_match() skips pcre2_match()'s checks: a seventh of the time
    ** on English text; the subject is valid UTF-8 already */
    int rc = t->abJit[k]
                 ? pcre2_jit_match(t->apSplit[k], z, n, from, 0, s->apMatch[k], t->pMatchCtx)
                 : pcre2_match(t->apSplit[k], z, n, from, PCRE2_NO_UTF_CHECK, s->apMatch[k],
                               t->pMatchCtx);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && rc != PCRE2_ERROR_MATCHLIMIT) {
      /* e.g. a JIT stack limit: the interpreter has no such limit */
      rc = pcre2_match(t->apSplit[k], z, n, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       s->apMatch[k], t->pMatchCtx);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
          rc == PCRE2_ERROR_HEAPLIMIT)
        s->bLimit = 1;
      else if (rc != PCRE2_ERROR_NOMEMORY)
        s->iMatchErr = rc;
      return -1;
    }
    if (should_stop(s)) return -1;
    PCRE2_SIZE *aOv = pcre2_get_ovector_pointer(s->apMatch[k]);
    size_t iStart = aOv[0], iEnd = aOv[1];
    /* \K can report a start before the search point: such a match is not a
    ** tiling, so the rest stays one piece */
    if (iStart < from || iStart > iEnd || iEnd > n) break;
    if (iEnd == iStart) {
      size_t nChar = utf8_char_len(z + iStart, n - iStart);
      from = iStart + (nChar ? nChar : 1);
      continue;
    }
    if (iStart > prev && split_piece(s, k + 1, z + prev, iStart - prev) != 0) return -1;
    if (split_piece(s, k + 1, z + iStart, iEnd - iStart) != 0) return -1;
    prev = from = iEnd;
  }
  if (prev < n) return split_piece(s, k + 1, z + prev, n - prev);
  return 0;
}

/* Code points new since Unicode 9.0 that NFC could move, join or split:
** the marks of Unicode 17.0 and the characters with a canonical
** decomposition, made by tests/tools/hf_nfc_cases.mjs. Hugging Face's NFC
** has Unicode 9.0's tables, so to it each is an unassigned starter, left
** where it is; utf8proc's newer tables would reorder marks across it
** (a U+0898 U+0323 -> U+1EA1 U+0898) or compose it (U+11935 U+11930 ->
** U+11938). */
static const uint32_t hf_nfc_opaque[][2] = {
    {0x7FD, 0x7FD}, {0x897, 0x89F}, {0x8CA, 0x8D3}, {0x9FE, 0x9FE}, {0xAFA, 0xAFF},
    {0xB55, 0xB55}, {0xC04, 0xC04}, {0xC3C, 0xC3C}, {0xCF3, 0xCF3}, {0xD00, 0xD00},
    {0xD3B, 0xD3C}, {0xD81, 0xD81}, {0xEBA, 0xEBA}, {0xECE, 0xECE}, {0x1715, 0x1715},
    {0x180F, 0x180F}, {0x1ABF, 0x1ADD}, {0x1AE0, 0x1AEB}, {0x1CF7, 0x1CF7}, {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C}, {0xA8FF, 0xA8FF}, {0x10D24, 0x10D27}, {0x10D69, 0x10D6D}, {0x10EAB, 0x10EAC},
    {0x10EFA, 0x10EFF}, {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x11073, 0x11074},
    {0x110C2, 0x110C2}, {0x11145, 0x11146}, {0x111CE, 0x111CF}, {0x11241, 0x11241}, {0x1133B, 0x1133B},
    {0x113B8, 0x113C0}, {0x113C2, 0x113C2}, {0x113C5, 0x113C5}, {0x113C7, 0x113CA}, {0x113CC, 0x113D0},
    {0x113D2, 0x113D2}, {0x113E1, 0x113E2}, {0x1145E, 0x1145E}, {0x1182C, 0x1183A}, {0x11930, 0x11935},
    {0x11937, 0x11938}, {0x1193B, 0x1193E}, {0x11940, 0x11940}, {0x11942, 0x11943}, {0x119D1, 0x119D7},
    {0x119DA, 0x119E0}, {0x119E4, 0x119E4}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A39}, {0x11A3B, 0x11A3E},
    {0x11A47, 0x11A47}, {0x11A51, 0x11A5B}, {0x11A8A, 0x11A99}, {0x11B60, 0x11B67}, {0x11D31, 0x11D36},
    {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D8A, 0x11D8E},
    {0x11D90, 0x11D91}, {0x11D93, 0x11D97}, {0x11EF3, 0x11EF6}, {0x11F00, 0x11F01}, {0x11F03, 0x11F03},
    {0x11F34, 0x11F3A}, {0x11F3E, 0x11F42}, {0x11F5A, 0x11F5A}, {0x13440, 0x13440}, {0x13447, 0x13455},
    {0x1611E, 0x1612F}, {0x16F4F, 0x16F4F}, {0x16F7F, 0x16F87}, {0x16FE4, 0x16FE4}, {0x16FF0, 0x16FF1},
    {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF}, {0x1E5EE, 0x1E5EF}, {0x1E6E3, 0x1E6E3}, {0x1E6E6, 0x1E6E6},
    {0x1E6EE, 0x1E6EF}, {0x1E6F5, 0x1E6F5},
};

/* Whether code point c is in hf_nfc_opaque (a binary search). */
static int is_hf_nfc_opaque(uint32_t c) {
  size_t lo = 0, hi = sizeof(hf_nfc_opaque) / sizeof(hf_nfc_opaque[0]);
  if (c < hf_nfc_opaque[0][0]) return 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (c < hf_nfc_opaque[mid][0]) hi = mid;
    else if (c > hf_nfc_opaque[mid][1]) lo = mid + 1;
    else return 1;
  }
  return 0;
}

/* The code point of the valid UTF-8 character at z (len bytes). */
static uint32_t utf8_decode_valid(const unsigned char *z, size_t len) {
  static const unsigned char lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  uint32_t c = z[0] & lead_mask[len];
  for (size_t i = 1; i < len; i++) c = (c << 6) | (z[i] & 0x3F);
  return c;
}

/* NFC of a valid UTF-8 run as Hugging Face's normalizer gives it: utf8proc's
** NFC of each stretch between hf_nfc_opaque characters, which stay as they
** are (a starter stops reordering and composition across it, so the
** stretches are independent). Returns the length and the malloc'd text in
** *pOut, or -1 when out of memory. */
static ptrdiff_t nfc_as_hf(const unsigned char *z, size_t n, unsigned char **pOut) {
  unsigned char *out = NULL;
  size_t nOut = 0, nAlloc = 0, from = 0, i = 0;
  *pOut = NULL;
  for (;;) {
    size_t len = 0;
    int opaque = 0;
    if (i < n) {
      len = utf8_char_len(z + i, n - i);
      opaque = len > 1 && is_hf_nfc_opaque(utf8_decode_valid(z + i, len));
      if (!opaque) {
        i += len;
        continue;
      }
    }
    /* the stretch [from, i), normalized, then the opaque character as is */
    utf8proc_uint8_t *zNorm = NULL;
    utf8proc_ssize_t nNorm = 0;
    if (i > from) {
      nNorm = utf8proc_map(z + from, (utf8proc_ssize_t)(i - from), &zNorm,
                           UTF8PROC_STABLE | UTF8PROC_COMPOSE);
      if (nNorm < 0 || !zNorm) goto fail;
    }
    if (from == 0 && i == n) {
      *pOut = zNorm; /* the usual case: no opaque character */
      return nNorm;
    }
    size_t nNeed = nOut + (size_t)nNorm + len + 1;
    if (nNeed > nAlloc) { /* doubling: a text of many opaque marks stays linear */
      size_t nNew = nAlloc * 2 > nNeed ? nAlloc * 2 : nNeed;
      unsigned char *grown = realloc(out, nNew);
      if (!grown) {
        free(zNorm);
        goto fail;
      }
      out = grown;
      nAlloc = nNew;
    }
    if (nNorm > 0) memcpy(out + nOut, zNorm, (size_t)nNorm);
    free(zNorm);
    nOut += (size_t)nNorm;
    memcpy(out + nOut, z + i, len);
    nOut += len;
    out[nOut] = 0;
    if (i == n) break;
    i += len;
    from = i;
  }
  *pOut = out;
  return (ptrdiff_t)nOut;
fail:
  free(out);
  return -1;
}

/* Normalizes a valid UTF-8 run to NFC when the tokenizer asks for it (ASCII
** is NFC already), then pre-tokenizes and encodes it. The normalized copy
** lives until the end of the call: the word cache points into it. */
static int encode_valid_run(EncodeState *s, const unsigned char *z, size_t n) {
  if (s->t->opts & TOK_OPT_NFC) {
    size_t i = 0;
    while (i < n && z[i] < 0x80) i++;
    if (i < n) {
      if (n > (size_t)PTRDIFF_MAX / 4) return -1;
      if (s->nNorm == s->nNormAlloc) {
        size_t nNew = s->nNormAlloc ? 2 * s->nNormAlloc : 16;
        unsigned char **a = realloc(s->azNorm, nNew * sizeof(*a));
        if (!a) return -1;
        s->azNorm = a;
        s->nNormAlloc = nNew;
      }
      unsigned char *zNorm = NULL;
      ptrdiff_t nNorm = nfc_as_hf(z, n, &zNorm);
      if (nNorm < 0) return -1;
      s->azNorm[s->nNorm++] = zNorm;
      z = zNorm;
      n = (size_t)nNorm;
    }
  }
  return split_piece(s, 0, z, n);
}

/* Encodes ordinary text: valid UTF-8 runs through the pre-tokenizer, every
** invalid byte as a pre-token of its own. */
static int encode_ordinary(EncodeState *s, const unsigned char *z, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t nValid = utf8_valid_prefix(z + i, n - i);
    if (nValid > 0 && encode_valid_run(s, z + i, nValid) != 0) return -1;
    i += nValid;
    while (i < n && utf8_char_len(z + i, n - i) == 0) {
      if (push_id(s, s->t->aByteId[z[i]]) != 0) return -1;
      i++;
    }
  }
  return 0;
}

/* Byte order of (za, na) and (zb, nb), a prefix first. */
static int bytes_cmp(const unsigned char *za, size_t na, const unsigned char *zb, size_t nb) {
  int c = memcmp(za, zb, na < nb ? na : nb);
  if (c) return c;
  return na < nb ? -1 : na > nb;
}

/* The longest added token that is a prefix of z (n bytes) and may match
** under mask, as its index in aAdded, or -1. The largest token not after z
** shares with z a prefix of m bytes; every added prefix of z is a prefix of
** it no longer than m, so its chain of prefixes (parent) holds the answer.
** A binary search and at most TOK_MAX_ADDED_LEN steps, where a scan of every
** token with z's first byte took 1.8 s for 10 KB of HTML against 33,000
** "<...>" tokens. */
static int longest_added(const GPTTokenizer *t, const unsigned char *z, size_t n,
                         unsigned mask) {
  int lo = 0, hi = t->nAdded; /* the first token after z */
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    const AddedToken *a = &t->aAdded[mid];
    if (bytes_cmp(a->z, (size_t)a->n, z, n) <= 0) lo = mid + 1;
    else hi = mid;
  }
  int k = lo - 1;
  if (k < 0) return -1;
  size_t m = 0, nMax = (size_t)t->aAdded[k].n < n ? (size_t)t->aAdded[k].n : n;
  while (m < nMax && t->aAdded[k].z[m] == z[m]) m++;
  while (k >= 0 && ((size_t)t->aAdded[k].n > m || (t->aAdded[k].bSpecial && !(mask & 2))))
    k = t->aAdded[k].parent;
  return k;
}

/* Finds the next added token in z (n bytes) that may match under mask (bit
** 1 plain, bit 2 special): the leftmost, and the longest there. Returns its
** offset with the id in *pId and its length in *pLen, or n when none. */
static size_t find_added(const GPTTokenizer *t, const unsigned char *z, size_t n,
                         unsigned mask, int *pId, size_t *pLen) {
  for (size_t i = 0; i < n; i++) {
    if (!(t->aFirst[z[i]] & mask)) {
      /* most text never starts an added token; "<" is the usual first byte */
      continue;
    }
    int k = longest_added(t, z + i, n - i, mask);
    if (k >= 0) {
      *pId = t->aAdded[k].id;
      *pLen = (size_t)t->aAdded[k].n;
      return i;
    }
  }
  return n;
}

/* Encodes text into a malloc'd array of ids; see tokenizer.h. Returns -1
** (out of memory) also when the tokenizer is not finished or a single
** pre-token is over INT_MAX/4 bytes. */
int tok_encode(const GPTTokenizer *t, const char *text, size_t n, int flags,
               int **ids, size_t *n_ids) {
  return tok_encode_opts(t, text, n, flags, NULL, ids, n_ids);
}

int tok_encode_opts(const GPTTokenizer *t, const char *text, size_t n, int flags,
                    const TokEncodeOpts *opts, int **ids, size_t *n_ids) {
  if (!ids || !n_ids) return -1;
  *ids = NULL;
  *n_ids = 0;
  if (!t || !t->bFinished || (n > 0 && !text)) return -1;
  EncodeState s;
  memset(&s, 0, sizeof(s));
  s.nPoll = 64;
  s.t = t;
  s.opts = opts;
  int rc = 0;
  for (int k = 0; k < t->nSplit; k++) {
    s.apMatch[k] = pcre2_match_data_create_from_pattern(t->apSplit[k], NULL);
    if (!s.apMatch[k]) rc = -1;
  }
  /* GPT-2 averages about four bytes a token on English; huge texts start
  ** smaller and grow, rather than reserving gigabytes up front */
  s.nOutAlloc = n / 3 + 16;
  if (s.nOutAlloc > ((size_t)1 << 22)) s.nOutAlloc = (size_t)1 << 22;
  s.aOut = malloc(s.nOutAlloc * sizeof(int));
  /* a word cache pays off only on texts long enough for words to repeat */
  if (n >= 1024) {
    uint32_t nCache = 256;
    while (nCache < 65536 && nCache < n / 16) nCache *= 2;
    s.aCache = calloc(nCache, sizeof(CacheSlot));
    s.mCacheMask = nCache - 1;
  }
  if (!s.aOut || (n >= 1024 && !s.aCache)) rc = -1;
  /* which added tokens may match: plain ones always, special ones on request */
  unsigned mask = 1 | ((flags & TOK_ALLOW_SPECIAL) ? 2 : 0);
  int bAny = t->nAdded > 0 && (t->bAnyPlain || (mask & 2));
  const unsigned char *z = (const unsigned char *)text;
  size_t i = 0;
  while (rc == 0 && i < n) {
    int id = -1;
    size_t nTok = 0;
    size_t iEnd = bAny ? i + find_added(t, z + i, n - i, mask, &id, &nTok) : n;
    rc = encode_ordinary(&s, z + i, iEnd - i);
    if (rc == 0 && id >= 0) {
      rc = push_id(&s, id);
      iEnd += nTok;
    }
    i = iEnd;
  }
  if (rc == 0) {
    *ids = s.aOut;
    *n_ids = s.nOut;
    s.aOut = NULL;
  } else if (s.bStopped) {
    rc = TOK_ESTOPPED;
  } else if (s.bLongWord) {
    rc = TOK_EWORD;
  } else if (s.bLimit) {
    rc = TOK_ELIMIT;
  } else if (s.iMatchErr) {
    rc = TOK_EMATCH;
    if (opts && opts->err && opts->n_err > 0) {
      PCRE2_UCHAR8 aMsg[120];
      if (pcre2_get_error_message(s.iMatchErr, aMsg, sizeof(aMsg)) < 0) aMsg[0] = 0;
      snprintf(opts->err, opts->n_err, "%s (PCRE2 error %d)", (const char *)aMsg, s.iMatchErr);
    }
  }
  state_free(&s);
  return rc;
}

/* The letters (\p{L}) and numbers (\p{N}) of Unicode 15.0 to 16.0, which
** Hugging Face's tokenizers (0.23: Unicode 16 tables) has and Debian 12's
** PCRE2 10.42 (Unicode 14) lacks: 9,272 and 120 code points that were
** "other" here, so '\U00013FAD<v' split apart where Hugging Face keeps a
** word. Measured by classifying every code point with both; added to every
** \p{L} and \p{N} of a pattern (a newer PCRE2 already has them). */
#define TOK_UNICODE16_L \
  "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}" \
  "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}" \
  "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}" \
  "\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}" \
  "\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}\\x{16D40}-" \
  "\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}" \
  "\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}" \
  "\\x{31350}-\\x{323AF}"
/* Oniguruma's \w with Unicode (for a class's inside): letters, marks,
** decimal digits, letter numbers (Roman numerals), connector punctuation,
** the Latin-1 superscripts and fractions, and the circled and squared
** letters that are Alphabetic (So): every code point its ^\w$ takes and
** PCRE2's does not, found by a scan of both (libonig 6.9.8). */
#define TOK_ONIG_WORD \
  "\\p{L}" TOK_UNICODE16_L "\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}" \
  "\\x{24B6}-\\x{24E9}\\x{1F130}-\\x{1F149}\\x{1F150}-\\x{1F169}\\x{1F170}-\\x{1F189}"
#define TOK_UNICODE16_N \
  "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}" \
  "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}" \
  "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"

/* Rewrites a pattern of Hugging Face's regex engine (Oniguruma, or Rust's
** regex) for PCRE2 with PCRE2_UTF | PCRE2_UCP, or quotes a literal string,
** into a malloc'd NUL-terminated string in *pzOut. The one place where the
** dialects meet:
**   \s, \S      -> \p{White_Space}, \P{White_Space} (PCRE2's \s also takes
**                  U+180E, theirs is exactly White_Space)
**   \h, \H      -> a hex digit class (Oniguruma's meaning; PCRE2's \h is
**                  horizontal space)
**   \uHHHH      -> \x{HHHH} (PCRE2 has no \u)
**   \p{L}, \p{N} -> with the letters and numbers of Unicode 15 and 16 (and
**                  \P{L}, \P{N} outside a class: without them)
**   \w, \W, \b, \B -> Oniguruma's word characters (TOK_ONIG_WORD) and their
**                  boundaries (PCRE2's \w lacks the marks)
**   ^, $        -> line anchors, as in Oniguruma's Ruby syntax: compiled with
**                  PCRE2_MULTILINE
** POSIX classes ([[:alpha:]]), whose Unicode meanings differ, are refused.
** Everything else ((?i:...), \p{..}, {1,3}, possessive quantifiers, look-
** arounds) means the same. Returns 0, or -1 with err. */
static int translate_pattern(const char *z, size_t n, int bLiteral, char **pzOut,
                             char *err, size_t n_err) {
  *pzOut = NULL;
  if (n > TOK_MAX_PATTERN)
    return fail(err, n_err, "pattern is %zu bytes, over the limit of %d", n, TOK_MAX_PATTERN);
  size_t nProp = 0; /* \p, \P, \w, \W, \b or \B: room for what they become */
  for (size_t i = 0; i + 1 < n; i++)
    if (z[i] == '\\' && strchr("pPwWbB", z[i + 1]) && z[i + 1]) nProp++;
  char *zOut = malloc(8 * n + 16 + nProp * (4 * sizeof(TOK_ONIG_WORD) + 64));
  if (!zOut) return fail(err, n_err, "out of memory");
  size_t j = 0;
  int bClass = 0;
#define EMIT(str) (memcpy(zOut + j, str, sizeof(str) - 1), j += sizeof(str) - 1)
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)z[i];
    if (bLiteral) {
      /* any ASCII punctuation escaped is itself in PCRE2 */
      if (c < 0x80 && c > ' ' && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                                   (c >= 'A' && c <= 'Z')))
        zOut[j++] = '\\';
      zOut[j++] = (char)c;
      i++;
      continue;
    }
    if (c == '\\') {
      if (i + 1 >= n) {
        free(zOut);
        return fail(err, n_err, "pattern ends with a backslash");
      }
      char d = z[i + 1];
      if (d == 's') {
        EMIT("\\p{White_Space}");
      } else if (d == 'S') {
        EMIT("\\P{White_Space}");
      } else if (d == 'h') {
        if (bClass) EMIT("0-9A-Fa-f");
        else EMIT("[0-9A-Fa-f]");
      } else if (d == 'H' && !bClass) {
        EMIT("[^0-9A-Fa-f]");
      } else if (d == 'H') {
        free(zOut);
        return fail(err, n_err, "\\H inside a character class is not supported");
      } else if ((d == 'p' || d == 'P') && i + 5 <= n && z[i + 2] == '{' &&
                 (z[i + 3] == 'L' || z[i + 3] == 'N') && z[i + 4] == '}' &&
                 !(d == 'P' && bClass)) {
        /* \p{L} -> [\p{L}...] (in a class: \p{L}...); \P{L} -> [^\p{L}...] */
        if (!bClass) EMIT("[");
        if (!bClass && d == 'P') EMIT("^");
        if (z[i + 3] == 'L') EMIT("\\p{L}" TOK_UNICODE16_L);
        else EMIT("\\p{N}" TOK_UNICODE16_N);
        if (!bClass) EMIT("]");
        i += 5;
        continue;
      } else if ((d == 'w' || d == 'W') && !(d == 'W' && bClass)) {
        /* Oniguruma's word characters (TOK_ONIG_WORD); PCRE2's \w lacks
        ** the marks, so an Indic vowel sign split a word */
        if (!bClass) EMIT("[");
        if (!bClass && d == 'W') EMIT("^");
        EMIT(TOK_ONIG_WORD);
        if (!bClass) EMIT("]");
      } else if (d == 'W') {
        free(zOut);
        return fail(err, n_err, "\\W inside a character class is not supported");
      } else if ((d == 'b' || d == 'B') && !bClass) {
        /* a boundary of those word characters (in a class \b is a backspace) */
        if (d == 'b')
          EMIT("(?:(?<=[" TOK_ONIG_WORD "])(?![" TOK_ONIG_WORD "])|(?<![" TOK_ONIG_WORD
               "])(?=[" TOK_ONIG_WORD "]))");
        else
          EMIT("(?:(?<=[" TOK_ONIG_WORD "])(?=[" TOK_ONIG_WORD "])|(?<![" TOK_ONIG_WORD
               "])(?![" TOK_ONIG_WORD "]))");
      } else if (d == 'u') {
        int bHex = i + 6 <= n;
        for (size_t k = i + 2; bHex && k < i + 6; k++)
          bHex = (z[k] >= '0' && z[k] <= '9') || (z[k] >= 'a' && z[k] <= 'f') ||
                 (z[k] >= 'A' && z[k] <= 'F');
        if (!bHex) {
          free(zOut);
          return fail(err, n_err, "\\u at offset %zu is not followed by four hex digits", i);
        }
        EMIT("\\x{");
        memcpy(zOut + j, z + i + 2, 4);
        j += 4;
        zOut[j++] = '}';
        i += 6;
        continue;
      } else {
        zOut[j++] = '\\';
        zOut[j++] = d;
      }
      i += 2;
      continue;
    }
    if (!bClass && c == '[') {
      bClass = 1;
      zOut[j++] = '[';
      i++;
      if (i < n && z[i] == '^') zOut[j++] = z[i++];
      if (i < n && z[i] == ']') zOut[j++] = z[i++]; /* a leading ] is literal */
      continue;
    }
    if (bClass && c == '[' && i + 1 < n && z[i + 1] == ':') {
      /* a POSIX class [:name:]: Oniguruma's Unicode meaning of each
      ** ([:alpha:] takes marks, ...) is not PCRE2's; refused, not guessed */
      const char *zEnd = NULL;
      for (size_t k = i + 2; k + 1 < n && !zEnd && z[k] != ']'; k++)
        if (z[k] == ':' && z[k + 1] == ']') zEnd = z + k + 2;
      if (zEnd) { /* (a ']' before ":]" ends no class name: "[[:a]b:]" is none) */
        int nName = (int)(zEnd - (z + i));
        free(zOut);
        return fail(err, n_err, "the POSIX class %.*s is not supported", nName > 40 ? 40 : nName,
                    z + i);
      }
    }
    if (bClass && c == ']') bClass = 0;
    zOut[j++] = (char)c;
    i++;
  }
#undef EMIT
  zOut[j] = 0;
  *pzOut = zOut;
  return 0;
}

int tok_pcre_pattern(const char *z, size_t n, char **pzOut, char *err, size_t n_err) {
  return translate_pattern(z, n, 0, pzOut, err, n_err);
}

/* Compiles a Hugging Face pattern (or literal) into Split stage nSplit. */
static int compile_split(GPTTokenizer *t, const char *z, size_t n, int bLiteral, char *err,
                         size_t n_err) {
  if (t->nSplit >= TOK_MAX_SPLITS)
    return fail(err, n_err, "more than %d Split stages", TOK_MAX_SPLITS);
  char *zPcre = NULL;
  if (translate_pattern(z, n, bLiteral, &zPcre, err, n_err)) return -1;
  int errorCode;
  PCRE2_SIZE errorOffset;
  pcre2_code *pRe = pcre2_compile((PCRE2_SPTR)zPcre, PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &errorCode,
                                  &errorOffset, NULL);
  free(zPcre);
  if (!pRe) {
    char zMsg[120];
    pcre2_get_error_message(errorCode, (PCRE2_UCHAR *)zMsg, sizeof(zMsg));
    return fail(err, n_err, "pre-tokenizer pattern %d: %s", t->nSplit + 1, zMsg);
  }
  /* the JIT is several times faster; without it the interpreter still works */
  t->abJit[t->nSplit] = pcre2_jit_compile(pRe, PCRE2_JIT_COMPLETE) == 0;
  t->apSplit[t->nSplit++] = pRe;
  return 0;
}

/* Appends a Split stage; see tokenizer.h. */
int tok_add_split(GPTTokenizer *t, const char *z, size_t n, int bLiteral, char *err,
                  size_t n_err) {
  if (!t) return fail(err, n_err, "no tokenizer");
  if (t->bFinished) return fail(err, n_err, "tokenizer is already finished");
  if (!z || n == 0) return fail(err, n_err, "pre-tokenizer pattern %d is empty", t->nSplit + 1);
  return compile_split(t, z, n, bLiteral, err, n_err);
}

/* Sets the TOK_OPT_* flags. A tokenizer from tokenizer.json gets a match
** limit on its patterns, which are stored data. */
int tok_set_options(GPTTokenizer *t, unsigned opts, char *err, size_t n_err) {
  if (!t) return fail(err, n_err, "no tokenizer");
  if (t->bFinished) return fail(err, n_err, "tokenizer is already finished");
  if (opts & ~(unsigned)(TOK_OPT_HF | TOK_OPT_NFC | TOK_OPT_IGNORE_MERGES))
    return fail(err, n_err, "unknown tokenizer options 0x%x", opts);
  t->opts = opts;
  if ((opts & TOK_OPT_HF) && !t->pMatchCtx) {
    t->pMatchCtx = pcre2_match_context_create(NULL);
    if (!t->pMatchCtx) return fail(err, n_err, "out of memory");
    pcre2_set_match_limit(t->pMatchCtx, TOK_MATCH_LIMIT);
    /* the interpreter's backtracking memory (PCRE2's default is 20 GB: a
    ** pattern of 500 empty groups took 700 MB for 100 bytes of text) */
    pcre2_set_heap_limit(t->pMatchCtx, TOK_HEAP_LIMIT_KB);
  }
  return 0;
}

/* Declares an added token; see tokenizer.h. */
int tok_add_added(GPTTokenizer *t, int id, const char *z, int n, int bSpecial, char *err,
                  size_t n_err) {
  if (!t) return fail(err, n_err, "no tokenizer");
  if (t->bFinished) return fail(err, n_err, "tokenizer is already finished");
  if (id < 0 || id >= t->nVocab)
    return fail(err, n_err, "added token id %d is outside 0..%d", id, t->nVocab - 1);
  if (!z || n <= 0 || n > TOK_MAX_ADDED_LEN)
    return fail(err, n_err, "added token %d is %d bytes, expected 1 to %d", id, n,
                TOK_MAX_ADDED_LEN);
  if (t->aTokLen[id] != n || memcmp(t->zPool + t->aTokOff[id], z, (size_t)n) != 0)
    return fail(err, n_err, "added token %d \"%.*s\" is not the vocabulary's token %d", id,
                quote_len(z, n), z, id);
  if (!t->aAddedKind) {
    t->aAddedKind = calloc((size_t)t->nVocab, 1);
    if (!t->aAddedKind) return fail(err, n_err, "out of memory");
  }
  if (t->aAddedKind[id]) return fail(err, n_err, "added token %d is given twice", id);
  if (t->nAdded >= TOK_MAX_ADDED)
    return fail(err, n_err, "more than %d added tokens", TOK_MAX_ADDED);
  if (t->nAdded == t->nAddedAlloc) {
    int nNew = t->nAddedAlloc ? 2 * t->nAddedAlloc : 64;
    AddedToken *a = realloc(t->aAdded, (size_t)nNew * sizeof(*a));
    if (!a) return fail(err, n_err, "out of memory");
    t->aAdded = a;
    t->nAddedAlloc = nNew;
  }
  memset(&t->aAdded[t->nAdded], 0, sizeof(AddedToken));
  t->aAdded[t->nAdded].id = id;
  t->aAdded[t->nAdded].bSpecial = bSpecial != 0;
  t->nAdded++;
  t->aAddedKind[id] = bSpecial ? 2 : 1;
  return 0;
}

/* qsort comparator of added tokens, by their bytes (unique: vocabulary
** tokens never repeat). */
static int added_cmp(const void *a, const void *b) {
  const AddedToken *x = a, *y = b;
  return bytes_cmp(x->z, (size_t)x->n, y->z, (size_t)y->n);
}

/* Sorts the added tokens for longest_added(), links each to its longest
** added prefix, and fills the first-byte table. */
static void index_added(GPTTokenizer *t) {
  for (int k = 0; k < t->nAdded; k++) {
    AddedToken *a = &t->aAdded[k];
    a->z = t->zPool + t->aTokOff[a->id];
    a->n = t->aTokLen[a->id];
  }
  if (t->nAdded > 1) qsort(t->aAdded, (size_t)t->nAdded, sizeof(AddedToken), added_cmp);
  /* in byte order, a token's added prefixes are the chain of prefixes of
  ** the token before it (each token between a prefix and the token starts
  ** with that prefix): the first on that chain that is one is the longest */
  memset(t->aFirst, 0, sizeof(t->aFirst));
  t->bAnyPlain = 0;
  for (int k = 0; k < t->nAdded; k++) {
    AddedToken *a = &t->aAdded[k];
    int p = k - 1;
    while (p >= 0 && !(t->aAdded[p].n < a->n &&
                       memcmp(t->aAdded[p].z, a->z, (size_t)t->aAdded[p].n) == 0))
      p = t->aAdded[p].parent;
    a->parent = p;
    t->aFirst[a->z[0]] |= a->bSpecial ? 2 : 1;
    if (!a->bSpecial) t->bAnyPlain = 1;
  }
}

/* Checks that the vocabulary is complete and usable, marks the tokens that
** BPE reproduces from their own bytes, and compiles the pre-tokenizer. */
int tok_finish(GPTTokenizer *t, char *err, size_t n_err) {
  if (!t) return fail(err, n_err, "no tokenizer");
  if (t->bFinished) return fail(err, n_err, "tokenizer is already finished");
  for (int id = 0; id < t->nVocab; id++)
    if (t->aTokLen[id] < 0) return fail(err, n_err, "vocab token %d is not set", id);
  /* without all 256 bytes some text could not be encoded at all */
  for (int b = 0; b < 256; b++)
    if (t->aByteId[b] < 0)
      return fail(err, n_err, "the vocabulary has no token for byte 0x%02X", b);

  /* A word that equals a token is usually that token, but not always (BPE
  ** might never build it); remembering which tokens BPE rebuilds from their
  ** own bytes makes the whole-word shortcut in encode_word() exact. */
  EncodeState s;
  memset(&s, 0, sizeof(s));
  s.nPoll = 64;
  s.t = t;
  int rc = 0;
  /* (with ignore_merges every token is taken whole: nothing to mark) */
  for (int id = 0; id < t->nVocab && rc == 0 && !(t->opts & TOK_OPT_IGNORE_MERGES); id++) {
    int n = t->aTokLen[id];
    if (n == 1) {
      t->aWhole[id] = 1;
      continue;
    }
    s.nOut = 0;
    rc = bpe_word(&s, t->zPool + t->aTokOff[id], (size_t)n);
    t->aWhole[id] = rc == 0 && s.nOut == 1 && s.aOut[0] == id;
  }
  state_free(&s);
  if (rc != 0) return fail(err, n_err, "out of memory");

  /* no stage given: GPT-2's pattern, except for tokenizer.json's ByteLevel
  ** without use_regex, whose whole text is one word */
  if (t->nSplit == 0 && !(t->opts & TOK_OPT_HF) &&
      compile_split(t, tok_gpt2_pattern, strlen(tok_gpt2_pattern), 0, err, n_err))
    return -1;
  /* GPT-2: "<|endoftext|>" is the one special token */
  if (!(t->opts & TOK_OPT_HF) && t->nAdded == 0 && t->eotId >= 0 &&
      tok_add_added(t, t->eotId, zEndOfText, N_END_OF_TEXT, 1, err, n_err))
    return -1;
  index_added(t);
  t->bFinished = 1;
  return 0;
}

/* The raw bytes of token id, or NULL when id is out of range or unset. */
const char *tok_token_bytes(const GPTTokenizer *t, int id, int *n) {
  if (!t || id < 0 || id >= t->nVocab || t->aTokLen[id] < 0) {
    if (n) *n = 0;
    return NULL;
  }
  if (n) *n = t->aTokLen[id];
  return (const char *)t->zPool + t->aTokOff[id];
}

/* Concatenates the raw bytes of ids. Sizes everything first, so a bad id is
** reported before anything is allocated. */
int tok_decode(const GPTTokenizer *t, const int *ids, size_t n_ids, char **out,
               size_t *n_out, int *bad_id) {
  if (out) *out = NULL;
  if (n_out) *n_out = 0;
  if (!t || !out || (n_ids > 0 && !ids)) return -1;
  size_t nTotal = 0;
  for (size_t i = 0; i < n_ids; i++) {
    int id = ids[i];
    if (id < 0 || id >= t->nVocab || t->aTokLen[id] < 0) {
      if (bad_id) *bad_id = id;
      return -2;
    }
    if ((size_t)t->aTokLen[id] > SIZE_MAX - 1 - nTotal) return -1;
    nTotal += (size_t)t->aTokLen[id];
  }
  char *z = malloc(nTotal + 1);
  if (!z) return -1;
  size_t k = 0;
  for (size_t i = 0; i < n_ids; i++) {
    memcpy(z + k, t->zPool + t->aTokOff[ids[i]], (size_t)t->aTokLen[ids[i]]);
    k += (size_t)t->aTokLen[ids[i]];
  }
  z[k] = 0;
  *out = z;
  if (n_out) *n_out = k;
  return 0;
}

/* Number of token slots. */
int tok_vocab_size(const GPTTokenizer *t) { return t ? t->nVocab : 0; }

/* The id of "<|endoftext|>", or -1 when the vocabulary has none. */
int tok_eot_id(const GPTTokenizer *t) { return t ? t->eotId : -1; }

/* The id whose raw bytes are z (n long), or -1. */
int tok_token_id(const GPTTokenizer *t, const char *z, int n) {
  if (!t || !z || n <= 0) return -1;
  return str_lookup(t, (const unsigned char *)z, (size_t)n,
                    hash_bytes((const unsigned char *)z, (size_t)n));
}

/* The id whose byte-level spelling (the vocabulary's, bytes_to_unicode) is
** z (n long), or -1: how Hugging Face's convert_tokens_to_ids reads a
** token's text, where "\xc4\xa0the" spells " the". */
int tok_token_id_spelt(const GPTTokenizer *t, const char *z, int n) {
  if (!t || !z || n <= 0) return -1;
  unsigned char *zBuf = malloc((size_t)n); /* the raw form is never longer */
  int id = zBuf ? byte_level_lookup(t, z, n, zBuf) : -1;
  free(zBuf);
  return id;
}

/* 1 when id is a special added token. */
int tok_is_special(const GPTTokenizer *t, int id) {
  return t && t->aAddedKind && id >= 0 && id < t->nVocab && t->aAddedKind[id] == 2;
}

/* The byte-level spelling of raw bytes (OpenAI's bytes_to_unicode()). */
int tok_byte_level(const char *z, int n, char *out, int n_out) {
  int nLen = 0, nExtra = 0;
  uint16_t aCp[256];
  for (int b = 0; b < 256; b++) {
    int bPrintable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                     (b >= 0xAE && b <= 0xFF);
    aCp[b] = (uint16_t)(bPrintable ? b : 256 + nExtra++);
  }
  for (int i = 0; i < n; i++) nLen += aCp[(unsigned char)z[i]] < 0x80 ? 1 : 2;
  if (out && nLen < n_out) {
    int j = 0;
    for (int i = 0; i < n; i++) {
      unsigned cp = aCp[(unsigned char)z[i]];
      if (cp < 0x80) {
        out[j++] = (char)cp;
      } else {
        out[j++] = (char)(0xC0 | cp >> 6);
        out[j++] = (char)(0x80 | (cp & 0x3F));
      }
    }
    out[j] = 0;
  }
  return nLen;
}
