/*
** Training of a byte-level BPE vocabulary (GPT-2's kind): text is split by
** GPT-2's pre-tokenizer pattern (as the encoder compiles it) into words, the
** words counted, and the most frequent adjacent pair of symbols merged, again
** and again, each merge ranked in the order it was learned. Plain C11 and PCRE2; knows nothing of
** SQLite.
**
**   GPTBpe *b = bpe_new(0);
**   bpe_add_text(b, text, n);            (any number of times)
**   bpe_train(b, 1023);                  tokens: 256 bytes + merges
**   bpe_token(b, id, &n); bpe_merge(b, rank, &left, &right);
*/
#ifndef GPT_BPE_H
#define GPT_BPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct GPTBpe GPTBpe;

/* A trainer that keeps at most max_words distinct words (0: 4 million);
** words first seen after that are not counted. NULL when out of memory. */
GPTBpe *bpe_new(int64_t max_words);
void bpe_free(GPTBpe *b);

/* Splits n bytes of text into words and counts them. Invalid UTF-8 bytes
** are words of one byte. Returns 0, -1 when out of memory, or BPE_EWORD
** for a word longer than the encoder takes (TOK_MAX_WORD bytes). */
#define BPE_EWORD (-2)
int bpe_add_text(GPTBpe *b, const char *z, size_t n);

/* Learns merges until there are n_tokens tokens (ids 0..255 are the bytes)
** or no pair occurs twice. should_stop (or NULL) is asked before each
** merge. Returns 0, 1 when should_stop said stop, or -1 when out of memory. */
int bpe_train(GPTBpe *b, int n_tokens, int (*should_stop)(void *), void *ctx);

int bpe_n_tokens(const GPTBpe *b);
int bpe_n_merges(const GPTBpe *b);
/* The raw bytes of token id, length in *n. */
const unsigned char *bpe_token(const GPTBpe *b, int id, int *n);
/* The two token ids that merge rank joins. */
void bpe_merge(const GPTBpe *b, int rank, int *pLeft, int *pRight);
/* Bytes of text and distinct words seen. */
int64_t bpe_n_bytes(const GPTBpe *b);
int64_t bpe_n_words(const GPTBpe *b);
/* Occurrences of words first seen after max_words distinct ones (not
** counted, so the merges depend on which came first). */
int64_t bpe_n_skipped(const GPTBpe *b);

#endif
