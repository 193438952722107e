/*
** Shared helpers of the libFuzzer targets (tests/fuzz/fuzz_*.c) and of the C
** tests that drive the extension in-process (tests/unit/ memory, interrupt and threads tests).
**
** The extension's sources are compiled into the program with -DSQLITE_CORE,
** so sqlite3ext.h maps every sqlite3_* call straight to the linked
** libsqlite3, and sqlite3_gpt_init(db, &zErr, 0) registers the functions on
** a connection like `.load` would.
**
** fz_model_make() builds a small GPT-2 model in memory, in the Hugging Face
** layout: config.json, vocab.json (the 256 byte tokens, "ab", "Ġa", "abab",
** "<|endoftext|>"), merges.txt ("a b", "Ġ a", "ab ab") and model.safetensors
** with deterministic small weights. The fuzz targets write it to a private
** temporary folder and import it, or replace one of its files with the fuzz
** input.
*/
#ifndef GPT_FUZZ_COMMON_H
#define GPT_FUZZ_COMMON_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Entry point of the extension (ext/gpt.c). */
int sqlite3_gpt_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

/* Vocabulary of the small model: 256 bytes + 4 tokens. */
#define FZ_VOCAB 260

typedef struct FzModel {
  char *zConfig;          /* config.json */
  size_t nConfig;
  char *zVocab;           /* vocab.json */
  size_t nVocab;
  char *zMerges;          /* merges.txt */
  size_t nMerges;
  unsigned char *aSt;     /* model.safetensors */
  size_t nSt;
} FzModel;

/* Flags of fz_model_make(). */
#define FZ_LMHEAD 1   /* an untied lm_head.weight */
#define FZ_PREFIX 2   /* "transformer." before every name but lm_head.weight */
#define FZ_NO_EOT 4   /* token 259 is "ba", not <|endoftext|>: generation never
                      ** ends early, it runs to max_tokens or the window */

/* Builds the small model. dtype: 0 f32, 1 f16, 2 bf16 (GPTDtype); weights
** depend on seed. Returns 0, or -1 when out of memory or the shape is not a
** valid config. */
int fz_model_make(FzModel *p, int n_layer, int n_head, int n_embd, int n_ctx,
                  int dtype, int flags, unsigned seed);
void fz_model_free(FzModel *p);

/* A private folder for this process (created on first call, removed with
** its files at exit): under /dev/shm when it exists, else $TMPDIR or /tmp. */
const char *fz_tmpdir(void);
/* Writes n bytes to zDir/zName. Returns 0 or -1. */
int fz_write(const char *zDir, const char *zName, const void *p, size_t n);
/* Writes the four files of the model into zDir. Returns 0 or -1. */
int fz_write_model(const char *zDir, const FzModel *p);

/* Opens a connection (":memory:" when zFile is NULL) with the extension
** registered. Exits the process on failure: that is the harness failing,
** not the code under test. */
sqlite3 *fz_open(const char *zFile);

/* Makes the forward passes of this thread run on it alone: pins the thread
** to the CPU it is on (the "threads" option defaults to the CPUs a thread may
** use) and sets one thread. The fuzz targets want many executions per
** second, not a thread pool spinning beside them. */
void fz_single_thread(void);

/* Runs SQL with up to two text parameters bound (?1, ?2; NULL binds NULL),
** stepping every row. Returns the result code; *pzErr (when not NULL) gets a
** sqlite3_malloc'd copy of the error message. */
int fz_exec(sqlite3 *db, const char *zSql, const char *z1, int n1,
            const char *z2, int n2, char **pzErr);

/* The oracle every target applies to a call of a gpt_ function: an error
** must be an ordinary SQL error whose message names the function (starts
** with "gpt_"), or an interrupt / out-of-memory. Anything else (an empty
** message, SQLITE_INTERNAL, SQLITE_MISUSE, SQLITE_CORRUPT) traps, so
** libFuzzer records the input. */
void fz_check(int rc, const char *zErr, const char *zSql);

/* The small model's tokenizer as a tokenizer.json (NFC, a Split with Llama
** 3's pattern then ByteLevel, merges as pairs, <|endoftext|> a special added
** token that TemplateProcessing puts first). malloc'd, length in *pn; NULL
** when out of memory. */
char *fz_tokenizer_json(const FzModel *p, size_t *pn);
/* A tokenizer_config.json for it. */
#define FZ_TOKENIZER_CONFIG \
  "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": {\"content\": \"<|endoftext|>\"}, " \
  "\"add_bos_token\": true, \"chat_template\": \"{{ messages }}\"}"

/* Reads a whole file into a malloc'd NUL-terminated buffer; NULL on error. */
char *fz_read_file(const char *zPath, size_t *pn);

#endif
