/*
** Fuzz target: byte-level BPE training (engine/bpe.c), as
** gpt_train_tokenizer runs it, on arbitrary bytes.
**
** The first byte sets the vocabulary size (257 + byte * 2 tokens); the rest
** is the text, fed in pieces split at NUL bytes (rows). Oracles, besides the
** sanitizers: the learned vocabulary and merges, written in byte-level form
** as gpt_train_tokenizer writes them, build a tokenizer (tokenizer.c) that
** accepts every token and merge; no token's bytes repeat; and the text
** encodes and decodes back to exactly its bytes.
**
** Seeds: tests/fuzz/bpe/.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"
#include "bpe.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  int nVocab = 257 + data[0] * 2;
  const char *z = (const char *)data + 1;
  size_t n = size - 1;
  GPTBpe *b = bpe_new(1000);
  if (!b) return 0;
  size_t i0 = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || z[i] == 0) {
      if (bpe_add_text(b, z + i0, i - i0)) abort();
      i0 = i + 1;
    }
  }
  if (bpe_train(b, nVocab, 0, 0)) abort();
  int nTok = bpe_n_tokens(b);
  if (nTok < 256 || nTok > nVocab) abort();
  GPTTokenizer *t = tok_new(nTok);
  char zErr[256], *zBuf = malloc(2 * 65536 + 16), *zBuf2 = malloc(2 * 65536 + 16);
  for (int id = 0; id < nTok; id++) {
    int nb;
    const unsigned char *raw = bpe_token(b, id, &nb);
    int nl = tok_byte_level((const char *)raw, nb, zBuf, 2 * 65536 + 16);
    if (tok_set_token(t, id, zBuf, nl, zErr, sizeof(zErr))) {
      fprintf(stderr, "token %d: %s\n", id, zErr);
      abort();
    }
  }
  for (int r = 0; r < bpe_n_merges(b); r++) {
    int l, rr, nl, nr;
    bpe_merge(b, r, &l, &rr);
    const unsigned char *a1 = bpe_token(b, l, &nl), *a2 = bpe_token(b, rr, &nr);
    nl = tok_byte_level((const char *)a1, nl, zBuf, 2 * 65536 + 16);
    nr = tok_byte_level((const char *)a2, nr, zBuf2, 2 * 65536 + 16);
    if (tok_add_merge(t, r, zBuf, nl, zBuf2, nr, zErr, sizeof(zErr))) {
      fprintf(stderr, "merge %d: %s\n", r, zErr);
      abort();
    }
  }
  if (tok_finish(t, zErr, sizeof(zErr))) {
    fprintf(stderr, "tok_finish: %s\n", zErr);
    abort();
  }
  int *ids = 0;
  size_t nIds = 0;
  if (tok_encode(t, z, n, 0, &ids, &nIds) == 0) {
    char *zOut = 0;
    size_t nOut = 0;
    int bad = -1;
    if (tok_decode(t, ids, nIds, &zOut, &nOut, &bad) != 0 || nOut != n ||
        (n && memcmp(zOut, z, n) != 0))
      abort();
    free(zOut);
    free(ids);
  }
  tok_free(t);
  bpe_free(b);
  free(zBuf);
  free(zBuf2);
  return 0;
}
