/*
** Shared declarations of the SQLite side of sqlite-gpt: schema set-up,
** options, the process-wide model cache and error helpers. Every ext/ file
** includes this instead of sqlite3.h; the engine never sees it.
**
** Error messages read "<function>: model '<name>': <what went wrong>", or
** "<function>: <what>" before a model is known.
*/
#ifndef GPT_EXT_H
#define GPT_EXT_H

#include "sqlite3ext.h"
#ifndef GPT_EXT_MAIN
SQLITE_EXTENSION_INIT3
#endif

#include "gpt.h"
#include "tokenizer.h"
#include "sampler.h"

/* The UTF-8 length of v's text, v converted first: in any order beside
** sqlite3_value_text(v) in one call's arguments (sqlite3_value_bytes alone
** gives a BLOB's own length, which a UTF-16 database's conversion then
** changes). gptext_column_bytes likewise for column i of p's row. */
int gptext_value_bytes(sqlite3_value *v);
int gptext_column_bytes(sqlite3_stmt *p, int i);

/* Creates the tables and triggers of sql/schema.sql when they are missing. */
int gptext_ensure_schema(sqlite3 *db, char **pzErr);

/* True once sqlite3_interrupt() was called on db (works on SQLite 3.40,
** which lacks sqlite3_is_interrupted). */
int gptext_interrupted(sqlite3 *db);

/* UTF-8 (ext/gpt.c). Every TEXT result is valid UTF-8: gptext_result_text
** replaces each ill-formed part with U+FFFD exactly as Python's
** bytes.decode('utf-8', 'replace') does (maximal subparts), so a client's
** decode of the bytes BLOB equals the TEXT. xDel is sqlite3_result_text's. */
size_t gptext_utf8_repair(const char *z, size_t n, char *zOut);
int gptext_utf8_valid(const char *z, size_t n);
/* Where z[0..n) stops being UTF-8: the first ill-formed byte, or -1. */
int64_t gptext_utf8_invalid_at(const char *z, size_t n);
void gptext_result_text(sqlite3_context *ctx, const char *z, int n, void (*xDel)(void *));
/* z (sqlite3_malloc'd) made valid UTF-8 (a repaired copy when it is not;
** NULL stays NULL), and an error result with its message repaired: error
** messages echo names and paths as given. */
char *gptext_utf8_own(char *z);
/* Binds z as text, its ill-formed UTF-8 replaced (ext/gpt.c). */
int gptext_bind_utf8(sqlite3_stmt *p, int i, const char *z);
/* Whether argument v can name a new model: valid UTF-8 with no NUL. */
int gptext_name_ok(sqlite3_value *v);
/* Whether text argument v has a NUL before its end (ext/gpt.c). */
int gptext_has_nul(sqlite3_value *v);
#define GPTEXT_NAME_RULE "valid UTF-8 with no NUL character"
void gptext_result_error(sqlite3_context *ctx, const char *z);
/* The exact bytes as a BLOB (an empty one for n == 0). */
void gptext_result_bytes(sqlite3_context *ctx, const char *z, int n, void (*xDel)(void *));
/* The error for a result that a sqlite3_str could not hold (rc is its
** sqlite3_str_errcode): over SQLite's length limit, named with the limit,
** or out of memory. zModel may be NULL. */
void gptext_result_str_error(sqlite3_context *ctx, const char *zFunc, const char *zModel, int rc);
/* 1 when a result of n bytes fits SQLite's length limit; else 0 with that
** error (naming zFunc, zModel and the limit) set as the result. */
int gptext_result_fits(sqlite3_context *ctx, const char *zFunc, const char *zModel,
                       sqlite3_int64 n);

/* Generation and analysis options, parsed from the JSON object argument. */
typedef struct GptOptions {
  char *zModel;        /* "model", or NULL to pick the only model */
  int nMaxTokens;      /* "max_tokens" >= 1, default 64 */
  double temperature;  /* "temperature" in [0, 100], 0 = greedy; default 1 */
  int topK;            /* "top_k" >= 0, 0 = off; default 0 */
  double topP;         /* "top_p" in (0, 1]; default 1 */
  int64_t seed;        /* "seed"; default 42 */
  int bSeedSet;
  char **azStop;       /* "stop": string or array of strings */
  int nStop;
  int bTruncate;       /* "truncate": left-truncate a too long prompt */
  int bAllowSpecial;   /* "special": "<|endoftext|>" in text is token 50256 */
  int bReplace;        /* "replace" (gpt_import) */
  int nGenerate;       /* "generate" (gpt_attention) */
  int bPoolLast;       /* "pool": "mean" | "last" (gpt_embed) */
  char *zTemplate;     /* "template" (gpt_summarize; a chat template for gpt_chat*) */
  int nThreads;        /* "threads", 0 = default */
  char *zVariables;    /* "variables": JSON object of extra chat-template variables */
  int bNoGenPrompt;    /* "add_generation_prompt": false (gpt_chat_prompt) */
  int nBatch;          /* "batch": sequences in flight (gpt_batch), 0 = default */
  int iLayer;          /* "layer" (gpt_attention_svg), default 0 */
  int iHead;           /* "head" (gpt_attention_svg), default 0; -1 for "all" */
  int bAllowRequantize; /* "allow_requantize" (gpt_quantize) */
  unsigned given;      /* the GPTOPT_ bits of the keys given */
} GptOptions;

/* Which keys a function accepts: a bit mask of these. */
#define GPTOPT_MODEL      0x0001
#define GPTOPT_MAXTOKENS  0x0002 /* max_tokens */
#define GPTOPT_SAMPLING   0x4000 /* temperature top_k top_p seed stop */
#define GPTOPT_GENERATE   (GPTOPT_MAXTOKENS | GPTOPT_SAMPLING)
#define GPTOPT_SPECIAL    0x0004
#define GPTOPT_REPLACE    0x0008
#define GPTOPT_ATTN_GEN   0x0010
#define GPTOPT_POOL       0x0020
#define GPTOPT_TEMPLATE   0x0040
#define GPTOPT_THREADS    0x0080
#define GPTOPT_TRUNCATE   0x0100
#define GPTOPT_CHATVARS   0x0200 /* variables */
#define GPTOPT_GENPROMPT  0x0400 /* add_generation_prompt */
#define GPTOPT_BATCH      0x0800 /* batch */
#define GPTOPT_LAYER_HEAD 0x1000 /* layer, head (gpt_attention_svg) */
#define GPTOPT_REQUANT    0x2000 /* allow_requantize (gpt_quantize) */

/* Fills o with defaults, then applies the JSON object in pArg (NULL or a SQL
** NULL mean no options). An unknown key or out-of-range value is an error
** naming the key and the valid range. Returns SQLITE_OK or an error code with
** *pzErr (sqlite3_malloc'd). */
int gptext_options_parse(sqlite3 *db, const char *zFunc, sqlite3_value *pArg,
                         unsigned allowed, GptOptions *o, char **pzErr);
/* The same for a function whose errors name the model it was given:
** "zFunc: model 'zModel': ..." (gpt_import, gpt_export, gpt_quantize). */
int gptext_options_parse_named(sqlite3 *db, const char *zFunc, const char *zModel,
                               sqlite3_value *pArg, unsigned allowed, GptOptions *o,
                               char **pzErr);
void gptext_options_clear(GptOptions *o);

/* A loaded model: tokenizer always, weights when asked for. Shared by every
** connection of the process that opens the same model of the same database
** file; reloaded when the model's stamp changes. */
#define GPT_MAX_STOP_IDS 8
#define GPT_MAX_CHAT_TEMPLATE (1024 * 1024) /* bytes of a stored chat_template */
typedef struct GptModel {
  char *zName;              /* model name */
  sqlite3_int64 stamp;      /* gpt_models.stamp its rows had when loaded */
  GPTConfig cfg;
  int tiedCfg;              /* a Llama-family config's tie_word_embeddings; -1 for GPT-2's */
  GPTTokenizer *pTok;
  GPTModel *pNet;           /* NULL until weights are needed */
  int eot;                  /* id of <|endoftext|>, or -1 */
  /* From tokenizer.json / tokenizer_config.json (NULL / -1 / 0 for GPT-2
  ** folders, which have none of them). */
  int bos;                  /* id of the bos token, or -1 */
  int bAddBos;              /* prompts are encoded with bos first (HF's input_ids) */
  char *zBosText;           /* bos token's text, for chat templates, or NULL */
  char *zEosText;           /* eos token's text, for chat templates, or NULL */
  char *zChatTemplate;      /* the model's chat template (Jinja), or NULL */
  int aStopId[GPT_MAX_STOP_IDS]; /* ids that end a generation: eos, <|im_end|>, <|eot_id|>, ... */
  int nStopId;
} GptModel;

/* Ids of m that have a token (the tokenizer may cover fewer than the
** head's vocab_size rows): sampling and listings use only these. */
int gptext_live_vocab(const GptModel *m);

/* Per-connection state, handed to every function and module as user data.
** A connection is used by one thread at a time, so its fields need no lock;
** the cached decoder state is checked out while in use, so nested calls in
** one statement each get their own. */
#define GPT_CONN_MODELS 4
typedef struct GptConn {
  GptModel *aHeld[GPT_CONN_MODELS]; /* models kept loaded for this connection */
  GptModel *pStateModel;            /* model the cached state belongs to (held) */
  GPTState *pState;                 /* KV cache of the last generation, or NULL */
  int *aStateTok;                   /* (n_ctx,) tokens whose keys it holds */
  int nStateTok;
  unsigned int heldVersion;         /* main's data version at the last check of aHeld */
  int bSchemaUnread;                /* loaded while a statement ran: its schema not read again */
} GptConn;

/* Resolves the model (zName, or the only one), loads or reuses it, and
** returns a reference in *ppModel. needWeights asks for the weights too.
** Errors name zFunc and the model. */
int gptext_model_acquire(GptConn *pConn, sqlite3 *db, const char *zFunc,
                         const char *zName, int needWeights, GptModel **ppModel,
                         char **pzErr);
void gptext_model_release(GptModel *p);
void gptext_model_retain(GptModel *p);
/* Lets go of the connection's references to models named zName (after
** gpt_drop), so their memory is freed unless another connection uses them. */
void gptext_conn_forget(GptConn *pConn, const char *zName);

/* The vtab of every table-valued function: the connection and its state. */
typedef struct GptVtab {
  sqlite3_vtab base;
  sqlite3 *db;
  GptConn *pConn;
} GptVtab;

/* xConnect/xDisconnect shared by the table-valued functions: declares zSchema,
** applies vtabConfig (SQLITE_VTAB_DIRECTONLY for anything that runs the
** model, SQLITE_VTAB_INNOCUOUS for pure lookups) and allocates a GptVtab whose
** pConn is pAux. */
int gptext_vtab_connect(sqlite3 *db, void *pAux, const char *zSchema, int vtabConfig,
                        sqlite3_vtab **ppVtab);
int gptext_vtab_disconnect(sqlite3_vtab *pVtab);
/* Sets pVtab->zErrMsg to zErr (taking ownership), freeing the old message. */
int gptext_vtab_error(sqlite3_vtab *pVtab, char *zErr, int rc);

/* Table-valued functions: hidden columns iFirstHidden..iFirstHidden+nHidden-1
** are the arguments, the first nRequired of them required. Usable equality
** constraints on them get argvIndex in column order and idxNum is the mask
** of those present (bit i = hidden column i). An unusable constraint on an
** argument returns SQLITE_CONSTRAINT so the planner tries another order; a
** plan missing a required argument costs 1e300, and xFilter then calls
** gptext_tvf_missing, which names the function and the argument. */
int gptext_tvf_best_index(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo,
                          int iFirstHidden, int nHidden, int nRequired,
                          const char *zFunc);
int gptext_tvf_missing(sqlite3_vtab *pVtab, int idxNum, int nRequired, const char *zFunc);

/* xOpen's work: a zeroed cursor of nByte bytes (sqlite3_malloc64). */
int gptext_tvf_open(size_t nByte, sqlite3_vtab_cursor **ppCur);

/* Copies the arguments xFilter got into apArg[0..nHidden) (NULL for those
** absent) for the hidden columns to read back; SQLITE_NOMEM on failure. */
int gptext_tvf_keep_args(int idxNum, int nHidden, int argc, sqlite3_value **argv,
                         sqlite3_value **apArg);

/* Rowids of table-valued functions: a function of the row's position in
** the call (iRow of at most nRows) and of the call's arguments (their
** fingerprint), so they are unique within a result under every plan. */
sqlite3_uint64 gptext_tvf_fingerprint(sqlite3_value **apArg, int nArg);
/* The same of one key by its SQL value: a whole REAL as its INTEGER. */
sqlite3_uint64 gptext_key_fingerprint(sqlite3_value *pKey);
sqlite3_int64 gptext_tvf_rowid(sqlite3_uint64 fp, sqlite3_int64 nRows, sqlite3_int64 iRow);

/* Flags of gptext_encode(). With none, text is encoded as Hugging Face's
** tokenizer(text).input_ids: the model's BOS first when its tokenizer adds
** one, special tokens as plain text. */
#define GPTEXT_ENCODE_SPECIAL 1 /* special tokens in text are their ids ({"special": true}) */
#define GPTEXT_ENCODE_NO_BOS  2 /* no BOS: a piece of a longer text, or rendered chat */
/* A rendered chat prompt: it already holds its special tokens, BOS included. */
#define GPTEXT_ENCODE_CHAT    (GPTEXT_ENCODE_SPECIAL | GPTEXT_ENCODE_NO_BOS)

/* Encodes n bytes of text for model m with GPTEXT_ENCODE_* flags (0 or 1,
** the "special" option, keep their old meaning); errors name zFunc and the
** model. An interrupt of db (or NULL) stops it (SQLITE_INTERRUPT). */
int gptext_encode(sqlite3 *db, GptModel *m, const char *zFunc, const char *z, int n,
                  int flags, int **paIds, int *pnIds, char **pzErr);

/* Fits a prompt into the window leaving room for nReserve new tokens: a
** prompt longer than n_ctx is an error; with o->bTruncate a prompt of more
** than max(1, n_ctx - nReserve) tokens keeps its last that many, the
** model's BOS kept first when the prompt starts with it. An empty prompt
** becomes <|endoftext|> (or the BOS, or the eos, for vocabularies without
** one).
** *paIds is sqlite3_malloc'd and may be replaced. */
int gptext_fit_prompt(GptModel *m, const char *zFunc, const GptOptions *o,
                      int nReserve, int **paIds, int *pnIds, char **pzErr);

/* Runs tokens through the decoder, reusing the connection's cached KV state
** when it holds a prefix of them; on return the state holds exactly aIds and
** logits (V,) are those after the last token. Returns a checked-out state
** in *ppState that the caller returns with gptext_state_put. */
int gptext_prefill(GptConn *pConn, sqlite3 *db, GptModel *m, const char *zFunc,
                   const int *aIds, int nIds, float *logits, GPTState **ppState,
                   char **pzErr);
void gptext_state_put(GptConn *pConn, GptModel *m, GPTState *pState,
                      const int *aIds, int nIds);

/* One generation: the tokens, their log-probabilities at temperature 1, the
** text cut before any stop string, and why it ended. */
typedef struct GptGeneration {
  int *aTok;             /* generated ids, <|endoftext|> excluded */
  double *aLogprob;      /* log p(token | everything before) at temperature 1 */
  int nTok;
  char *zText;           /* decoded text of aTok, cut before a stop string */
  int nText;
  const char *zFinish;   /* "eos" | "stop" | "length" | "context" */
} GptGeneration;

/* Generates from the prompt ids with options o. Checks interrupts every
** token. Returns SQLITE_OK, SQLITE_INTERRUPT or an error with *pzErr. */
int gptext_generate(GptConn *pConn, sqlite3 *db, GptModel *m, const char *zFunc,
                    const GptOptions *o, const int *aPrompt, int nPrompt,
                    GptGeneration *g, char **pzErr);
void gptext_generation_clear(GptGeneration *g);

/* One step of a generation (shared by gpt_generate and gpt_batch): samples
** the next token from logits (V,) with sp, given nAll tokens already in the
** window, and appends it to g (g's arrays hold o->nMaxTokens + 1 entries)
** unless it ends the generation (with its log-probability when g->aLogprob
** is not NULL). Returns 1 when the generation is over
** (g->zFinish says why: "length", "context", "eos" or "stop"), 0 when *pTok
** must be fed next, or SQLITE_NOMEM as a negative -1. *pTok is the token
** appended to g (the last one may end it, on a stop string or a limit), or
** -1 when none was. */
int gptext_generation_step(GptModel *m, const GptOptions *o, GPTSampler *sp,
                           const float *logits, int nAll, GptGeneration *g, int *pTok);
/* The attention path shared by gpt_attention and gpt_attention_svg
** (ext/analyze.c). gptext_attention_sequence encodes pText, fits it into the
** window and, with o->nGenerate, generates that many tokens after it (o's
** generation options); *paTok (sqlite3_malloc'd) is the whole sequence, NULL
** with *pnTok 0 when there is nothing to attend to. gptext_attention_begin
** makes a decoder state and begins one batch over the sequence;
** gptext_attention_layer then runs layer iLayer (layers in order, each once),
** handing the probabilities to io->want_attention / io->on_attention, on
** nThreads threads (the "threads" option; 0 for all cores). Errors
** name zFunc and the model; an interrupt is SQLITE_INTERRUPT with
** "<zFunc>: interrupted". */
int gptext_attention_sequence(GptConn *pConn, sqlite3 *db, GptModel *m, const char *zFunc,
                              sqlite3_value *pText, GptOptions *o, int **paTok, int *pnTok,
                              char **pzErr);
int gptext_attention_begin(GptModel *m, const char *zFunc, const int *aTok, int nTok,
                           GPTState **ppState, char **pzErr);
int gptext_attention_layer(GptModel *m, const char *zFunc, GPTState *s, int iLayer,
                           int nThreads, GPTForwardIO *io, char **pzErr);

/* One tensor's gpt_tensors rows, whole or in row-aligned parts NAME#0,
** NAME#1, ... (ext/tensors.c), as gpt_import writes them and the loader
** reads them. gptext_tensor_open finds and checks the rows of info's tensor
** (the config's name and shape): one dtype, each row's shape and length;
** on an error *pzMsg (sqlite3_malloc'd) names the row and what was wrong.
** gptext_tensor_read reads n bytes at byte off of the whole tensor. */
typedef struct GptTensorRows {
  sqlite3 *db;
  int dtype;                 /* of the rows: GPT_F32, GPT_F16, ... */
  int nPart;                 /* rows: 1 for a whole row */
  int64_t nBytes;            /* of the whole tensor */
  int64_t nPartBytes;        /* of each part but the last */
  sqlite3_int64 *aRowid;     /* nPart rowids, in part order */
  sqlite3_blob *pBlob;       /* open on part iOpen, or NULL */
  int iOpen;
} GptTensorRows;
int gptext_tensor_open(sqlite3 *db, const char *zModel, const GPTTensorInfo *info,
                       GptTensorRows *p, char **pzMsg);
int gptext_tensor_read(GptTensorRows *p, void *buf, int n, int64_t off);
void gptext_tensor_close(GptTensorRows *p);
/* Reads all of an open tensor and checks its values as a load does;
** SQLITE_ERROR with *pzMsg naming the tensor and the bad block or element. */
int gptext_tensor_check(GptTensorRows *p, const GPTTensorInfo *info, char **pzMsg);

/* Writes a new tensor of info's name and shape in dtype: one row when it
** fits a BLOB (SQLITE_LIMIT_LENGTH, less room for the row's other columns),
** else parts of as many whole rows as fit (f32, f16 and bf16 only;
** otherwise SQLITE_TOOBIG with *pzMsg naming the limit). Bytes go in with
** gptext_tensor_write in order; gptext_tensor_finish checks that all came
** and frees the writer (call it on every path after a create). */
typedef struct GptTensorWriter {
  sqlite3 *db;
  const char *zModel;
  GPTTensorInfo info;
  int dtype;
  int64_t nBytes, nRowBytes, nPartRows;
  int64_t nWritten;          /* bytes of the tensor written so far */
  int iPart;                 /* rows inserted so far */
  int64_t nPartBytes, nInPart; /* of the row being written */
  sqlite3_stmt *pIns;
  sqlite3_blob *pBlob;
} GptTensorWriter;
int gptext_tensor_create(GptTensorWriter *w, sqlite3 *db, const char *zModel,
                         const GPTTensorInfo *info, int dtype, char **pzMsg);
int gptext_tensor_write(GptTensorWriter *w, const void *a, int64_t n);
int gptext_tensor_finish(GptTensorWriter *w);
/* k when zName is its first nBase bytes and "#k" (a part's name, k in
** canonical decimal below a million), else -1. */
int gptext_tensor_part_number(const char *zName, size_t nBase);
/* Whether every gpt_tensors row of zModel names a tensor of cfg or a part
** of one (*pnRows: how many rows); else SQLITE_ERROR with *pzMsg. */
int gptext_tensor_names_check(sqlite3 *db, const char *zModel, const GPTConfig *cfg,
                              int hasLmHead, int64_t *pnRows, char **pzMsg);
/* One read snapshot across many statements: keep *ppStmt (stepped to
** zModel's gpt_models row, or NULL) until the reads are done, then
** finalize it. */
int gptext_snapshot_begin(sqlite3 *db, const char *zModel, sqlite3_stmt **ppStmt);
/* Whether zModel has lm_head.weight (whole or in parts): *pHas 1 or 0. */
int gptext_has_lm_head(sqlite3 *db, const char *zModel, int *pHas);
/* The same for loaded model m, checked against its config's
** tie_word_embeddings: SQLITE_ERROR with *pzErr when they disagree
** (ext/tensors.c). */
int gptext_lm_head_of(sqlite3 *db, const GptModel *m, const char *zFunc, int *pHas,
                      char **pzErr);
/* Rows a part of a tensor stored as zName of zModel holds: nRow when one
** row holds all nBytes, 0 when not even one row of nRowBytes fits. */
int64_t gptext_tensor_part_rows(sqlite3 *db, const char *zModel, const char *zName,
                                int64_t nRow, int64_t nRowBytes, int64_t nBytes);

/* The savepoint of a writer (ext/savepoint.c): gpt_import, gpt_drop,
** gpt_quantize and every later writer run in one, so they wait out the busy
** timeout for the write lock as SQLite's own writers do, and fail all or
** nothing. */
typedef struct GptSavepoint {
  sqlite3 *db;
  sqlite3_stmt *apStmt[5]; /* SAVEPOINT, RELEASE, ROLLBACK TO, a write that
                           ** changes nothing, ROLLBACK */
  int bOpen;               /* opened and not yet released or rolled back */
  int bOwnTxn;             /* the savepoint began the transaction */
} GptSavepoint;

/* Opens a savepoint named for zFunc and the call (a caller's savepoint of
** that name is never touched) and takes the write lock up front, then (pConn,
** may be NULL) refuses a schema not read again at load that calls a writer
** (gptext_schema_unread_check). Returns SQLite's code (SQLITE_BUSY after the
** busy timeout, ...) with *pzMsg, which must be NULL on entry,
** sqlite3_malloc'd and without the function's name. */
int gptext_savepoint_begin(sqlite3 *db, const GptConn *pConn, GptSavepoint *pSave,
                           const char *zFunc, char **pzMsg);
/* Releases (commits) the savepoint; on failure it stays open to be undone. */
int gptext_savepoint_release(GptSavepoint *pSave, char **pzMsg);
/* Rolls back unless released, then finalizes; safe to call twice. */
void gptext_savepoint_end(GptSavepoint *pSave);
/* SQLite's code for a failed call that returned rc: the connection's
** extended code when it is of rc's kind (SQLITE_BUSY_SNAPSHOT, ...). */
int gptext_sql_code(sqlite3 *db, int rc);
/* A failed call's code (SQLITE_INTERRUPT when interrupted) and a copy of its
** message, read before the interrupt check can replace them. */
int gptext_sql_failure(sqlite3 *db, int rc, char **pzMsg);

/* Llama-family configs (ext/config.c): Hugging Face's config.json keys, read
** the same way from a file at import and from gpt_models.config at load.
** gptext_config_is_hf tells whether zJson has a model_type other than gpt2
** (copied into zType): 1 or 0, -1 out of memory. gptext_config_read fills c and *pbTied or returns an
** error with a message in zErr naming the key. gptext_config_json gives the
** stored form (sqlite3_malloc'd). */
int gptext_config_is_hf(sqlite3 *db, const char *zJson, int nJson, char *zType, size_t nType);
int gptext_config_read(sqlite3 *db, const char *zJson, int nJson, GPTConfig *c, int *pbTied,
                       char *zErr, size_t nErr);
char *gptext_config_json(const GPTConfig *c, int bTied);

/* Index of the first element of n little-endian bytes of dtype (GPT_F32,
** GPT_F16 or GPT_BF16) that is NaN or infinite, or -1 (ext/import.c). */
int64_t gptext_non_finite(int dtype, const unsigned char *a, size_t n);

/* sqlite3_mprintf-style helpers that also free the previous *pzErr. */
void gptext_set_error(char **pzErr, const char *zFormat, ...);

/* Registration of each ext/ file; pConn is the user data of every function. */
int gptext_register_import(sqlite3 *db, GptConn *pConn);   /* gpt_import, gpt_drop */
/* Deletes model zName's rows, its training state and log too (ext/import.c). */
int gptext_delete_model(sqlite3 *db, const char *zName, sqlite3_int64 *pnTensor);
/* Whether SQL follows a query's first statement (ext/gpt.c): 1 or 0. */
int gptext_sql_has_more(const char *zTail);
/* sqlite3_prepare_v2 of a user's query (text without a NUL) when it begins
** SELECT, WITH or VALUES; else SQLITE_OK with *pp NULL, and nothing prepared
** (ext/gpt.c). */
int gptext_prepare_query(sqlite3 *db, sqlite3_value *pSql, sqlite3_stmt **pp, const char **pzTail);
/* Whether JSON text of n bytes holds a NUL, the escape \u0000 or a NUL byte
** (ext/gpt.c): options refuse it, with this message after the function's
** (and model's) name. */
int gptext_json_has_nul(const char *z, int n);
/* The JSON type of a value ("array", "object", ...) in *pzType
** (sqlite3_malloc'd), NULL when it is not JSON; an SQLite error code (an
** interrupt's among them) when the check itself fails (ext/gpt.c). */
int gptext_json_type(sqlite3 *db, sqlite3_value *pVal, char **pzType);
/* What a JSON argument that is not the object or array asked for is, for its
** error: "; got a JSON array", "; got malformed JSON", ... from its JSON type
** (gptext_json_type's, NULL when not JSON) and its SQL type (ext/gpt.c). */
const char *gptext_json_got(const char *zType, sqlite3_value *pVal);

/* A JSON argument given as a JSONB array or object (SQLite 3.45+) turned into
** JSON text with json(), in *ppText, a protected copy to free with
** sqlite3_value_free; NULL when pArg is to be read as it is (text, or any
** other BLOB). An SQLite error code when the check itself fails. */
int gptext_json_text(sqlite3 *db, sqlite3_value *pArg, sqlite3_value **ppText);
#define GPTEXT_OPTIONS_NUL "the options hold a NUL character (\"\\u0000\" or a NUL byte), which no option takes"
/* SQLITE_OK, or SQLITE_READONLY with an error naming zFunc and zModel
** when the main database is read-only or PRAGMA query_only is on. */
int gptext_check_writable(sqlite3 *db, const char *zFunc, const char *zModel, char **pzErr);
/* 1 when a user's query has a parameter, buf then holding the message
** that refuses it for zFunc; else 0. */
int gptext_query_param(sqlite3_stmt *p, const char *zFunc, char *buf, size_t n);
/* Users' queries that gpt_batch, gpt_train and gpt_train_tokenizer run
** (ext/gpt.c): gptext_query_step steps one, counting how deep such steps
** nest on this thread; gptext_query_too_deep, called before a function runs
** its query, gives an error (in *pzErr, naming zModel unless NULL) past
** GPTEXT_QUERY_MAX_DEPTH, since a
** query that calls its own function again (a TEMP view over the call that
** its query reads, a query read from a table that runs its own row)
** recursed until the stack overflowed and the process died.
** gptext_query_writes, called first by each function that writes rows or
** files (gpt_import, gpt_drop, gpt_quantize, gpt_train, gpt_train_tokenizer,
** gpt_export), refuses to run inside such a query at all, since those
** queries must be read-only, and inside a statement of the connection that
** writes (see there). */
#define GPTEXT_QUERY_MAX_DEPTH 8
#define GPTEXT_IN_WRITER "cannot run while a statement that writes is running on this " \
  "connection (an INSERT, UPDATE or DELETE, or a CHECK constraint, trigger, generated column " \
  "or index of the schema, calling it; or one not yet finished, as an INSERT ... RETURNING " \
  "read partway)"
int gptext_query_step(sqlite3_stmt *p);
int gptext_query_writes(sqlite3_context *ctx, const char *zFunc, const char *zModel, char **pzErr);
/* The check that no table or index of a schema not read again at load
** (pConn->bSchemaUnread) calls a writer (ext/gpt.c): SQLITE_ERROR, or
** SQLite's code when the schema cannot be read, with *pzWhy (no function
** name; sqlite3_malloc'd). Every writer runs it: the row writers under their
** write lock (gptext_savepoint_begin), gpt_export before it opens a file
** (gptext_schema_check, whose message names the function and model). */
int gptext_schema_unread_check(sqlite3 *db, const GptConn *pConn, char **pzWhy);
/* Whether SQL text z (a table's or index's) calls a writer, read as SQLite's
** tokens (ext/gpt.c; fuzzed by tests/fuzz/fuzz_schema_scan.c). */
int gptext_sql_calls_writer(const char *z);
int gptext_schema_check(sqlite3_context *ctx, const char *zFunc, const char *zModel,
                        char **pzErr);
int gptext_query_too_deep(const char *zFunc, const char *zModel, char **pzErr);
int gptext_register_tokens(sqlite3 *db, GptConn *pConn);   /* gpt_tokens, gpt_tokenize, ... */
int gptext_register_generate(sqlite3 *db, GptConn *pConn); /* gpt_generate, gpt_next_tokens */
int gptext_register_batch(sqlite3 *db, GptConn *pConn);    /* gpt_batch */
int gptext_register_analyze(sqlite3 *db, GptConn *pConn);  /* gpt_attention, gpt_generate_tokens */
int gptext_register_score(sqlite3 *db, GptConn *pConn);    /* gpt_logprob, gpt_perplexity, gpt_embed, gpt_summarize */
int gptext_register_quantize(sqlite3 *db, GptConn *pConn); /* gpt_quantize */
int gptext_register_train(sqlite3 *db, GptConn *pConn);    /* gpt_train, gpt_train_tokenizer */
int gptext_register_chat(sqlite3 *db, GptConn *pConn);     /* gpt_chat, gpt_chat_prompt */
int gptext_register_gguf(sqlite3 *db, GptConn *pConn);     /* gpt_export */

/* GGUF import (ext/gguf.c): gptext_gguf_is_file tells a regular file that
** starts with GGUF's magic; gptext_gguf_import runs gpt_import(zName,
** zPath) on it and sets ctx's result. */
int gptext_gguf_is_file(const char *zPath);
void gptext_gguf_import(sqlite3_context *ctx, const char *zName, const char *zPath, int bReplace);
int gptext_register_svg(sqlite3 *db, GptConn *pConn);      /* gpt_attention_svg */

/* For gpt_summarize on a model with a chat template: the prompt template
** ("{text}" once, in a user turn, with the generation prompt) rendered from
** the model's chat template with zVariables (a JSON object, or NULL) over
** {"enable_thinking": false}, in *pzTpl (sqlite3_malloc'd); *pzTpl is NULL
** when the model has no chat template. */
int gptext_chat_summary_template(GptModel *m, const char *zFunc, const char *zVariables,
                                 char **pzTpl, char **pzErr);

#endif
