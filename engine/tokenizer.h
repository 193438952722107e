/*
** GPT-2 byte-level BPE tokenizer.
**
** Built from the vocabulary (token strings in GPT-2's byte-to-unicode form,
** exactly as they appear in vocab.json) and the ranked merges (merges.txt),
** then used read-only: one tokenizer may be shared by many threads.
** Pre-tokenization uses GPT-2's pattern through PCRE2 with Unicode classes.
** Plain C11; knows nothing of SQLite.
*/
#ifndef GPT_TOKENIZER_H
#define GPT_TOKENIZER_H

#include <stddef.h>

typedef struct GPTTokenizer GPTTokenizer;

/* Flags for tok_encode(). */
#define TOK_ALLOW_SPECIAL 1 /* "<|endoftext|>" in text becomes its id, not plain text */

/* A tokenizer with n_vocab empty slots, or NULL when out of memory. */
GPTTokenizer *tok_new(int n_vocab);
void tok_free(GPTTokenizer *t);

/* Sets the token for slot id from its byte-level string (vocab.json form,
** UTF-8, n bytes). Returns 0, or -1 with a message in err. */
int tok_set_token(GPTTokenizer *t, int id, const char *z, int n, char *err, size_t n_err);

/* Adds the merge of rank 'rank' (0 = first line after "#version"), whose
** two sides are byte-level strings. Ranks must be added in increasing order.
** Returns 0, or -1 with a message naming the unknown token. */
int tok_add_merge(GPTTokenizer *t, int rank, const char *zLeft, int nLeft,
                  const char *zRight, int nRight, char *err, size_t n_err);

/* Validates (every slot set, no duplicate strings, every merge result in the
** vocabulary) and compiles the pre-tokenizer. Returns 0 or -1 with err. */
int tok_finish(GPTTokenizer *t, char *err, size_t n_err);

/* Encodes n bytes of text. Invalid UTF-8 is encoded byte-wise: each invalid
** byte is a pre-token of its own, so decode(encode(x)) == x for any bytes.
** On success returns 0 and a malloc'd array in *ids (free with free()) of
** *n_ids ids. Returns -1 on out of memory. */
int tok_encode(const GPTTokenizer *t, const char *text, size_t n, int flags,
               int **ids, size_t *n_ids);

/* The raw bytes of token id (not NUL-terminated), with their length in *n.
** NULL when id is out of range. */
const char *tok_token_bytes(const GPTTokenizer *t, int id, int *n);

/* Appends the raw bytes of ids to a malloc'd string in *out (NUL-terminated,
** length in *n_out). Returns 0, -1 on out of memory, or -2 with the first
** bad id in *bad_id when an id is out of range. */
int tok_decode(const GPTTokenizer *t, const int *ids, size_t n_ids, char **out,
               size_t *n_out, int *bad_id);

int tok_vocab_size(const GPTTokenizer *t);
/* The id of "<|endoftext|>", or -1 when the vocabulary has none. */
int tok_eot_id(const GPTTokenizer *t);

#endif
