/*
** Byte-level BPE tokenizer: GPT-2's, and the tokenizer.json kind of Llama 3,
** Qwen2 and Qwen3.
**
** Built from the vocabulary (token strings in GPT-2's byte-to-unicode form,
** exactly as they appear in vocab.json or tokenizer.json's model.vocab) and
** the ranked merges, then used read-only: one tokenizer may be shared by many
** threads. Pre-tokenization uses GPT-2's pattern through PCRE2 with Unicode
** classes, or the model's own Split patterns (tok_add_split). A tokenizer
** from tokenizer.json also has added tokens (tok_add_added), matched as whole
** strings before anything else, and may normalize to NFC first.
** Plain C11; knows nothing of SQLite.
*/
#ifndef GPT_TOKENIZER_H
#define GPT_TOKENIZER_H

#include <stddef.h>

typedef struct GPTTokenizer GPTTokenizer;

/* Flags for tok_encode(). */
#define TOK_ALLOW_SPECIAL 1 /* special added tokens ("<|endoftext|>") in text become
                              ** their ids, not plain text */

/* Options for tok_set_options(), from tokenizer.json. */
#define TOK_OPT_HF            1 /* added tokens come from tok_add_added only: no
                                ** implicit special "<|endoftext|>" as for GPT-2 */
#define TOK_OPT_NFC           2 /* normalizer NFC: text is normalized before splitting */
#define TOK_OPT_IGNORE_MERGES 4 /* BPE's ignore_merges: a word that is a token is that token */

/* Most Split stages of a pre-tokenizer, added tokens, and bytes of one added
** token or pattern. */
#define TOK_MAX_SPLITS 8
#define TOK_MAX_ADDED 65536
#define TOK_MAX_ADDED_LEN 1024
#define TOK_MAX_PATTERN 8192
/* The longest pre-token (a run the pre-tokenizer does not cut, such as 4 MB
** of letters) that goes through BPE, whose scratch is about 84 bytes a byte
** of the word (336 MB here); a longer one is an error (TOK_EWORD). */
#define TOK_MAX_WORD (4 << 20)

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

/* Sets TOK_OPT_* flags (before tok_finish). Returns 0, or -1 with err. */
int tok_set_options(GPTTokenizer *t, unsigned opts, char *err, size_t n_err);

/* Appends a Split stage to the pre-tokenizer (Hugging Face's Split with
** behavior Isolated: matches and the text between them are the pieces).
** Stages apply in turn, each to the pieces of the one before; with none, the
** pre-tokenizer is GPT-2's pattern. z (n bytes) is a pattern in the syntax of
** Hugging Face's regex engine (Oniguruma / Rust regex), rewritten for PCRE2
** here, or with bLiteral a plain string to match. Returns 0, or -1 with the
** compile error in err. */
int tok_add_split(GPTTokenizer *t, const char *z, size_t n, int bLiteral, char *err,
                  size_t n_err);

/* GPT-2's pattern as Hugging Face writes it (ByteLevel with use_regex). */
extern const char tok_gpt2_pattern[];
/* A Hugging Face (Oniguruma) pattern of n bytes rewritten for PCRE2 with
** PCRE2_UTF | PCRE2_UCP, as the pre-tokenizer compiles it, into a malloc'd
** string in *pzOut. Returns 0, or -1 with a message in err. */
int tok_pcre_pattern(const char *z, size_t n, char **pzOut, char *err, size_t n_err);

/* Declares token id, already set with tok_set_token(), an added token whose
** text is the raw bytes z (n long): in encoded text it is matched as a whole
** string before pre-tokenization, a special one only with TOK_ALLOW_SPECIAL.
** Returns 0, or -1 with err (the slot's bytes differ, too many, too long). */
int tok_add_added(GPTTokenizer *t, int id, const char *z, int n, int bSpecial, char *err,
                  size_t n_err);

/* Writes the byte-level spelling (vocab.json form, UTF-8) of the n raw bytes
** of z into out when it has room for it and a NUL. Returns its length in
** bytes (at most 2n), whether or not it fitted. */
int tok_byte_level(const char *z, int n, char *out, int n_out);

/* Validates (every slot set, no duplicate strings, every merge result in the
** vocabulary) and compiles the pre-tokenizer. Returns 0 or -1 with err. */
int tok_finish(GPTTokenizer *t, char *err, size_t n_err);

/* Encodes n bytes of text. Invalid UTF-8 is encoded byte-wise: each invalid
** byte is a pre-token of its own, so decode(encode(x)) == x for any bytes.
** On success returns 0 and a malloc'd array in *ids (free with free()) of
** *n_ids ids. Returns -1 on out of memory, or one of TOK_E* below. */
int tok_encode(const GPTTokenizer *t, const char *text, size_t n, int flags,
               int **ids, size_t *n_ids);

#define TOK_ELIMIT (-2)    /* a pre-tokenizer match hit its limit on this text */
#define TOK_EMATCH (-3)    /* a pre-tokenizer match failed otherwise (opts->err says how) */
#define TOK_ESTOPPED (-4)  /* opts->should_stop asked to stop */
#define TOK_EWORD (-5)     /* a pre-token is longer than TOK_MAX_WORD */

/* What a caller of tok_encode_opts may ask for (every field optional). */
typedef struct TokEncodeOpts {
  int (*should_stop)(void *ctx); /* asked every few milliseconds of work; nonzero stops */
  void *ctx;
  char *err;                     /* TOK_EMATCH's message, NUL-terminated */
  size_t n_err;
} TokEncodeOpts;

/* tok_encode, with opts (or NULL). */
int tok_encode_opts(const GPTTokenizer *t, const char *text, size_t n, int flags,
                    const TokEncodeOpts *opts, int **ids, size_t *n_ids);

/* The raw bytes of token id (not NUL-terminated), with their length in *n.
** NULL when id is out of range. */
const char *tok_token_bytes(const GPTTokenizer *t, int id, int *n);

/* Appends the raw bytes of ids to a malloc'd string in *out (NUL-terminated,
** length in *n_out). Returns 0, -1 on out of memory, or -2 with the first
** bad id in *bad_id when an id is out of range. */
int tok_decode(const GPTTokenizer *t, const int *ids, size_t n_ids, char **out,
               size_t *n_out, int *bad_id);

/* Number of token ids the tokenizer covers: ids 0..size-1 all have a token.
** A model's vocab_size may be larger (Qwen pads its embedding); ids from
** here up have no token and must never be sampled nor listed. */
int tok_vocab_size(const GPTTokenizer *t);
/* The id of the token whose raw bytes are z (n long), or -1. */
int tok_token_id(const GPTTokenizer *t, const char *z, int n);
/* The id of the token spelt z (n long) in the vocabulary's byte-level
** form, or -1 (also when out of memory). */
int tok_token_id_spelt(const GPTTokenizer *t, const char *z, int n);
/* 1 when id is a special added token, else 0. */
int tok_is_special(const GPTTokenizer *t, int id);
/* The id of "<|endoftext|>", or -1 when the vocabulary has none. */
int tok_eot_id(const GPTTokenizer *t);

#endif
