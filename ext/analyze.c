/*
** Looking inside a generation: attention weights and per-token generation.
**
**   SELECT * FROM gpt_attention('The cat sat') WHERE layer = 3 AND head = 5;
**   SELECT * FROM gpt_attention('The cat', '{"generate": 8}') WHERE query_pos = 9;
**   SELECT step, token, logprob, finish_reason FROM gpt_generate_tokens('Once', '{"max_tokens": 8}');
**
** gpt_attention(text [, options]) has one row per (layer, head, query_pos,
** key_pos) with key_pos <= query_pos (the causal pairs): the tokens' text and
** the softmax probability with which the query attends to the key, so each
** (layer, head, query_pos) sums to 1. Options: model; special; truncate (keep
** the end of a text longer than the window); "generate": n to first generate
** n tokens from the text, with gpt_generate's options (temperature, top_k,
** top_p, seed, stop; greedy only when temperature is 0), after which the rows
** cover the text plus every generated token (the one that completed a stop
** string included, <|endoftext|> not). With "generate", "generate" is the
** number of tokens ("max_tokens" is refused as unknown). A text with no
** tokens gives no rows; with "generate" it starts from <|endoftext|>, as
** gpt_generate does, and that token is position 0. The rowid is a function
** of (layer, head, query_pos, key_pos) and the arguments, so it is the same
** row's under every plan (gptext_tvf_rowid).
**
** gpt_generate_tokens(prompt [, options]): one row per generated token, with
** exactly gpt_generate's options and output: step (1 for the first token),
** token_id, token (its text), logprob (log-probability at temperature 1 given
** everything before it), finish_reason, NULL except on the last row:
** 'eos', 'stop', 'length' or 'context', and bytes (the token's exact bytes,
** a BLOB). The bytes concatenate to gpt_generate_bytes's; the token column is
** each token's bytes made valid UTF-8 on its own (a character split across
** tokens shows as U+FFFD in each), so it concatenates to gpt_generate's text
** whenever no character is split. With a stop string the rows end with the token in
** which the stop string begins: its text is cut where the stop string starts
** (possibly to ''), and the tokens after it, which only completed the stop
** string, are not rows. When generation ends before any token (the model's
** first choice is <|endoftext|>, or the prompt fills the window) there is one
** row with step 1, token_id NULL, token '', bytes X'', logprob NULL and the
** finish_reason, so the reason is never lost. The rowid is a function of
** step and the arguments.
**
** Both read back their arguments in the hidden columns (text or prompt, and
** options): SQLite checks those constraints again itself under some plans.
**
** How gpt_attention works: xFilter fits the text (and generates, when asked)
** and starts one batch over the whole sequence in a fresh decoder state; the
** pass then advances one layer at a time (gpt_batch_layer) as xNext consumes
** the rows, keeping only the wanted heads' probabilities of the layer being
** read. The forward pass runs once per xFilter, never per row, and stops at
** the last wanted layer. Layer, head and query_pos equality and IN
** constraints are pushed down (see attnBestIndex), so that
** `WHERE layer = 3 AND head = 5` materializes one head of one layer. The
** sequence and the layer-by-layer pass are shared with gpt_attention_svg
** (ext/svg.c) through gptext_attention_sequence/_begin/_layer.
*/
#include "gpt_ext.h"
#include <math.h>
#include <string.h>

/* ------------------------------------------- shared with gpt_attention_svg */

/* The sequence whose attention gpt_attention and gpt_attention_svg show
** (see gpt_ext.h): the text's tokens fitted into the window, then
** o->nGenerate generated ones when asked. */
int gptext_attention_sequence(GptConn *pConn, sqlite3 *db, GptModel *m, const char *zFunc,
                              sqlite3_value *pText, GptOptions *o, int **paTok, int *pnTok,
                              char **pzErr) {
  GptGeneration g;
  int *aIds = 0, nIds = 0;
  memset(&g, 0, sizeof(g));
  *paTok = 0;
  *pnTok = 0;
  if ((o->given & GPTOPT_SAMPLING) && o->nGenerate == 0) { /* else taken and ignored */
    gptext_set_error(pzErr, "%s: model '%s': the sampling options (\"temperature\", \"top_k\", "
                     "\"top_p\", \"seed\", \"stop\") act only with \"generate\" of 1 or more",
                     zFunc, m->zName);
    return SQLITE_ERROR;
  }
  int rc = gptext_encode(db, m, zFunc, (const char *)sqlite3_value_text(pText),
                         gptext_value_bytes(pText), o->bAllowSpecial, &aIds, &nIds, pzErr);
  if (rc != SQLITE_OK || (nIds == 0 && o->nGenerate == 0)) goto done; /* nothing to attend to */
  rc = gptext_fit_prompt(m, zFunc, o, o->nGenerate, &aIds, &nIds, pzErr);
  if (rc == SQLITE_OK && o->nGenerate > 0) {
    o->nMaxTokens = o->nGenerate;
    rc = gptext_generate(pConn, db, m, zFunc, o, aIds, nIds, &g, pzErr);
  }
  if (rc != SQLITE_OK) goto done;
  *paTok = sqlite3_malloc64(sizeof(int) * (size_t)(nIds + g.nTok));
  if (!*paTok) { rc = SQLITE_NOMEM; goto done; }
  memcpy(*paTok, aIds, sizeof(int) * (size_t)nIds);
  if (g.nTok) memcpy(*paTok + nIds, g.aTok, sizeof(int) * (size_t)g.nTok);
  *pnTok = nIds + g.nTok;
done:
  sqlite3_free(aIds);
  gptext_generation_clear(&g);
  return rc;
}

/* A fresh decoder state for nTok tokens with one batch over all of them
** begun (gpt_batch_begin); layers are then run by gptext_attention_layer. */
int gptext_attention_begin(GptModel *m, const char *zFunc, const int *aTok, int nTok,
                           GPTState **ppState, char **pzErr) {
  char zMsg[200];
  *ppState = gpt_state_new(m->pNet, nTok);
  if (!*ppState) return SQLITE_NOMEM;
  int rc = gpt_batch_begin(m->pNet, *ppState, aTok, nTok, zMsg, sizeof(zMsg));
  if (rc == GPT_OK) return SQLITE_OK;
  gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, zMsg);
  gpt_state_free(*ppState);
  *ppState = 0;
  return rc == GPT_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;
}

/* Runs layer iLayer of the batch (gpt_batch_layer) on nThreads threads, its
** attention going to io's callbacks; the errors name zFunc and the model. */
int gptext_attention_layer(GptModel *m, const char *zFunc, GPTState *s, int iLayer,
                           int nThreads, GPTForwardIO *io, char **pzErr) {
  int nPrevThreads = gpt_threads_set(nThreads);
  int rc = gpt_batch_layer(m->pNet, s, iLayer, io);
  gpt_threads_set(nPrevThreads);
  if (rc == GPT_OK) return SQLITE_OK;
  if (rc == GPT_ABORTED) {
    gptext_set_error(pzErr, "%s: model '%s': interrupted", zFunc, m->zName);
    return SQLITE_INTERRUPT;
  }
  if (rc == GPT_OVERFLOW) {
    gptext_set_error(pzErr, "%s: model '%s': non-finite hidden state: the weights overflow "
                     "float32", zFunc, m->zName);
    return SQLITE_ERROR;
  }
  gptext_set_error(pzErr, "%s: model '%s': out of memory", zFunc, m->zName);
  return SQLITE_NOMEM;
}

/* ---------------------------------------------------------- gpt_attention */

/* Columns of gpt_attention; text and options are the hidden arguments. */
#define ATTN_COL_LAYER   0
#define ATTN_COL_HEAD    1
#define ATTN_COL_QUERY   2
#define ATTN_COL_KEY     3
#define ATTN_COL_QTOKEN  4
#define ATTN_COL_KTOKEN  5
#define ATTN_COL_WEIGHT  6
#define ATTN_COL_TEXT    7
#define ATTN_COL_OPTIONS 8

/* idxNum bits (see attnBestIndex). argv holds the present ones in this order:
** text, options, layer, head, query_pos. */
/* The most weights one layer of a call holds (its wanted heads, the causal
** part of its wanted queries): 1 GiB of floats. */
#define ATTN_MAX_WEIGHTS ((sqlite3_int64)1 << 28)

#define ATTN_IDX_TEXT     0x01
#define ATTN_IDX_OPTIONS  0x02
#define ATTN_IDX_LAYER    0x04 /* layer = ? */
#define ATTN_IDX_HEAD     0x08 /* head = ? */
#define ATTN_IDX_QUERY    0x10 /* query_pos = ? */
#define ATTN_IDX_LAYER_IN 0x20 /* layer IN (...), all at once */
#define ATTN_IDX_HEAD_IN  0x40 /* head IN (...), all at once */
#define ATTN_IDX_QUERY_IN 0x80 /* query_pos IN (...), all at once */

/* sqlite3_vtab_in() and friends exist since 3.38: compiled in when the
** headers have them, used when the library running us has them. */
#if SQLITE_VERSION_NUMBER >= 3038000
# define ATTN_HAVE_VTAB_IN 1
#else
# define ATTN_HAVE_VTAB_IN 0
#endif

/* A set of wanted indexes 0..n-1: a flag per index and the sorted list. */
typedef struct AttnSet {
  unsigned char *ab;   /* (n,) 1 when wanted */
  int *a;              /* wanted indexes, ascending */
  int n;               /* number wanted */
} AttnSet;

typedef struct AttnCursor {
  sqlite3_vtab_cursor base;
  GptModel *m;
  int *aTok;           /* the sequence: text plus generated tokens */
  int nTok;
  GPTState *s;         /* decoder state of the batch in progress */
  int nLayerRun;       /* layers of the batch computed so far */
  int nThreads;        /* the "threads" option (0: all cores) */
  AttnSet layer, head, query;
  sqlite3_int64 *aQOff; /* (query.n,) offset of each wanted query's row */
  sqlite3_int64 nPacked; /* floats per head: sum of (q + 1) over wanted q */
  float *aProb;        /* (head.n, nPacked) probabilities of the current layer */
  int iL, iH, iQ, iK;  /* the current row, as indexes into the sets (iK: key) */
  int bEof;
  char *zErr;          /* error raised by a callback of the pass */
  sqlite3_value *apArg[2]; /* copies of text and options, or NULL */
  sqlite3_uint64 fp;   /* their fingerprint, for the rowid */
} AttnCursor;

/* Declares the columns. DIRECTONLY: it runs the model. */
static int attnConnect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                       sqlite3_vtab **ppVtab, char **pzErr) {
  (void)argc; (void)argv; (void)pzErr;
  return gptext_vtab_connect(db, pAux, "CREATE TABLE x(layer INTEGER, head INTEGER, "
                             "query_pos INTEGER, key_pos INTEGER, query_token TEXT, "
                             "key_token TEXT, weight REAL, text HIDDEN, options HIDDEN)",
                             SQLITE_VTAB_DIRECTONLY, ppVtab);
}

/* xOpen: a cursor with no rows until xFilter runs. */
static int attnOpen(sqlite3_vtab *p, sqlite3_vtab_cursor **ppCur) {
  (void)p;
  int rc = gptext_tvf_open(sizeof(AttnCursor), ppCur);
  if (rc == SQLITE_OK) ((AttnCursor *)*ppCur)->bEof = 1;
  return rc;
}

/* Frees a set of wanted layers, heads or query positions and empties it. */
static void attnSetClear(AttnSet *p) {
  sqlite3_free(p->ab);
  sqlite3_free(p->a);
  memset(p, 0, sizeof(*p));
}

/* Forgets the current text: the state, the sets, the model reference. */
static void attnReset(AttnCursor *c) {
  gpt_state_free(c->s);
  sqlite3_free(c->aTok);
  sqlite3_free(c->aQOff);
  sqlite3_free(c->aProb);
  sqlite3_free(c->zErr);
  attnSetClear(&c->layer);
  attnSetClear(&c->head);
  attnSetClear(&c->query);
  gptext_model_release(c->m);
  sqlite3_value_free(c->apArg[0]);
  sqlite3_value_free(c->apArg[1]);
  memset((char *)c + sizeof(c->base), 0, sizeof(*c) - sizeof(c->base));
  c->bEof = 1;
}

/* xClose: frees what the cursor holds, then the cursor. */
static int attnClose(sqlite3_vtab_cursor *cur) {
  attnReset((AttnCursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

/* xBestIndex. idxNum bits:
**   0x01  text = ?          (required: the function's first argument)
**   0x02  options = ?       (the second argument)
**   0x04  layer = ?         0x20  layer IN (...)
**   0x08  head = ?          0x40  head IN (...)
**   0x10  query_pos = ?     0x80  query_pos IN (...)
** The present constraints are in argv in that order: text, options, layer,
** head, query_pos. An IN bit means the argument is the whole right-hand side,
** read with sqlite3_vtab_in_first/next (all-at-once processing, SQLite 3.38
** and later), so the forward pass still runs once for the whole list. On an
** older SQLite an IN looks like an equality, and SQLite calls xFilter once per
** value (correct, but one pass per value). Per column the first usable
** equality wins over an IN; the other constraints are left to SQLite. Every
** pushed constraint is omitted from SQLite's own checks: xFilter applies it
** exactly. Rows come out ordered by layer, head, query_pos, key_pos, so an
** ORDER BY on a prefix of those, ascending, is consumed.
** Cost: a full pass is costed at 1e6 and each pushed filter divides it, so
** the planner prefers plans that push layer, head and query_pos down (unless
** the options may be NULL: see below). A plan without the text costs 1e300
** instead of failing, because SQLite also plans each term of an OR without
** the arguments; xFilter reports a text that is really missing. */
static int attnBestIndex(sqlite3_vtab *pVtab, sqlite3_index_info *pInfo) {
  (void)pVtab;
  int aIdx[5] = {-1, -1, -1, -1, -1}; /* text, options, layer, head, query_pos */
  int aIn[5] = {0, 0, 0, 0, 0};
  unsigned unusable = 0;
  int bCanIn = 0;
#if ATTN_HAVE_VTAB_IN
  bCanIn = sqlite3_libversion_number() >= 3038000;
#endif
  for (int i = 0; i < pInfo->nConstraint; i++) {
    const struct sqlite3_index_constraint *p = &pInfo->aConstraint[i];
    int iSlot;
    /* the text and options may also come as "x IS v" (v NULL: the argument
    ** NULL); layer, head and query_pos are output columns, which SQLite
    ** checks itself under any other operator */
    int bIs = p->op == SQLITE_INDEX_CONSTRAINT_IS &&
              (p->iColumn == ATTN_COL_TEXT || p->iColumn == ATTN_COL_OPTIONS);
    if (p->op != SQLITE_INDEX_CONSTRAINT_EQ && !bIs) continue;
    switch (p->iColumn) {
      case ATTN_COL_TEXT: iSlot = 0; break;
      case ATTN_COL_OPTIONS: iSlot = 1; break;
      case ATTN_COL_LAYER: iSlot = 2; break;
      case ATTN_COL_HEAD: iSlot = 3; break;
      case ATTN_COL_QUERY: iSlot = 4; break;
      default: continue;
    }
    if (!p->usable) {
      if (iSlot < 2) unusable |= 1u << iSlot;
      continue;
    }
    int bIn = 0;
#if ATTN_HAVE_VTAB_IN
    if (bCanIn && iSlot >= 2) bIn = sqlite3_vtab_in(pInfo, i, -1);
#endif
    /* first one wins; an equality replaces an IN */
    if (aIdx[iSlot] < 0 || (aIn[iSlot] && !bIn)) {
      aIdx[iSlot] = i;
      aIn[iSlot] = bIn;
    }
  }
  if (unusable & ~((aIdx[0] >= 0 ? 1u : 0u) | (aIdx[1] >= 0 ? 2u : 0u)))
    return SQLITE_CONSTRAINT;
  if (aIdx[0] < 0) {
    /* No text here. SQLite also asks about the terms of an OR one at a time,
    ** without the arguments, so this is not an error yet: a plan too costly
    ** to choose, and xFilter reports a text that is really missing. */
    pInfo->idxNum = 0;
    pInfo->estimatedCost = 1e300;
    pInfo->estimatedRows = 0x7fffffff;
    return SQLITE_OK;
  }
  /* Options given by "=" whose value may be NULL (a NULL literal, a
  ** parameter, a column of another table): a MULTI-INDEX OR checks each
  ** term's "options = ?" again after its scans (SQLite 3.53), and no row
  ** passes "options = NULL". Pushed filters then earn no discount, so the
  ** split OR (two scans or more) always costs more than one scan. */
  int bDiscount = 1;
  if (aIdx[1] >= 0 && pInfo->aConstraint[aIdx[1]].op == SQLITE_INDEX_CONSTRAINT_EQ) {
    bDiscount = 0;
#if ATTN_HAVE_VTAB_IN
    sqlite3_value *pOptions = 0;
    if (bCanIn && sqlite3_vtab_rhs_value(pInfo, aIdx[1], &pOptions) == SQLITE_OK &&
        pOptions && sqlite3_value_type(pOptions) != SQLITE_NULL)
      bDiscount = 1;
#endif
  }
  int nArg = 0, idxNum = 0;
  double cost = 1e6, rows = 1e5;
  for (int k = 0; k < 5; k++) {
    if (aIdx[k] < 0) continue;
    pInfo->aConstraintUsage[aIdx[k]].argvIndex = ++nArg;
    pInfo->aConstraintUsage[aIdx[k]].omit = 1;
    if (k < 2) {
      idxNum |= 1 << k;
      continue;
    }
    idxNum |= aIn[k] ? (ATTN_IDX_LAYER_IN << (k - 2)) : (ATTN_IDX_LAYER << (k - 2));
#if ATTN_HAVE_VTAB_IN
    if (aIn[k]) sqlite3_vtab_in(pInfo, aIdx[k], 1);
#endif
    if (!bDiscount) continue;
    cost /= aIn[k] ? 5 : 10;
    rows /= aIn[k] ? 5 : 10;
  }
  (void)bCanIn;
  /* ORDER BY layer [, head [, query_pos [, key_pos]]], all ascending */
  if (pInfo->nOrderBy > 0 && pInfo->nOrderBy <= 4) {
    int bOrdered = 1;
    for (int i = 0; i < pInfo->nOrderBy; i++) {
      if (pInfo->aOrderBy[i].desc || pInfo->aOrderBy[i].iColumn != i) bOrdered = 0;
    }
    pInfo->orderByConsumed = bOrdered;
  }
  pInfo->idxNum = idxNum;
  pInfo->estimatedCost = cost;
  pInfo->estimatedRows = (sqlite3_int64)rows;
  return SQLITE_OK;
}

/* The error of a call without its first argument, reported by xFilter (see
** attnBestIndex for why not earlier). */
static char *attnMissingText(const char *zFunc) {
  return sqlite3_mprintf("%s: argument 1 is missing; call it as %s(...)", zFunc, zFunc);
}

/* The index a constraint value stands for, or -1 when no row can have it
** (NULL, not a whole number, or out of range). Text that looks like a number
** counts as that number, as it would against an INTEGER column. */
static int attnValueIndex(sqlite3_value *v, int n) {
  int t = sqlite3_value_numeric_type(v);
  if (t == SQLITE_INTEGER) {
    sqlite3_int64 x = sqlite3_value_int64(v);
    return x >= 0 && x < n ? (int)x : -1;
  }
  if (t == SQLITE_FLOAT) {
    double d = sqlite3_value_double(v);
    if (d >= 0 && d < n && d == floor(d)) return (int)d;
  }
  return -1;
}

/* Builds the set of wanted indexes 0..n-1 from a constraint: all of them
** when pVal is NULL, one for an equality, the listed ones for an IN. */
static int attnSetInit(AttnSet *p, int n, sqlite3_value *pVal, int bIn) {
  p->ab = sqlite3_malloc64((size_t)n);
  p->a = sqlite3_malloc64(sizeof(int) * (size_t)n);
  if (!p->ab || !p->a) return SQLITE_NOMEM;
  memset(p->ab, pVal ? 0 : 1, (size_t)n);
  if (pVal && !bIn) {
    int i = attnValueIndex(pVal, n);
    if (i >= 0) p->ab[i] = 1;
  }
#if ATTN_HAVE_VTAB_IN
  if (pVal && bIn) {
    sqlite3_value *pElem = 0;
    int rc;
    for (rc = sqlite3_vtab_in_first(pVal, &pElem); rc == SQLITE_OK && pElem;
         rc = sqlite3_vtab_in_next(pVal, &pElem)) {
      int i = attnValueIndex(pElem, n);
      if (i >= 0) p->ab[i] = 1;
    }
    if (rc != SQLITE_OK && rc != SQLITE_DONE) return rc;
  }
#else
  (void)bIn;
#endif
  p->n = 0;
  for (int i = 0; i < n; i++) if (p->ab[i]) p->a[p->n++] = i;
  return SQLITE_OK;
}

/* Forward pass callbacks: which heads to hand over, and keeping them. */
static int attnWant(void *ctx, int layer, int head) {
  AttnCursor *c = (AttnCursor *)ctx;
  return layer == c->layer.a[c->iL] && c->head.ab[head];
}

/* Copies the wanted query rows of one head, causal part only, into aProb. */
static int attnKeep(void *ctx, int layer, int head, int q0, int n_q, int n_k,
                    const float *probs) {
  AttnCursor *c = (AttnCursor *)ctx;
  int iH = 0;
  (void)layer;
  while (iH < c->head.n && c->head.a[iH] != head) iH++;
  if (iH == c->head.n) return 0;
  float *dst = c->aProb + (size_t)iH * c->nPacked;
  for (int i = 0; i < c->query.n; i++) {
    int q = c->query.a[i];
    if (q < q0 || q >= q0 + n_q || q >= n_k) continue;
    memcpy(dst + c->aQOff[i], probs + (size_t)(q - q0) * n_k, sizeof(float) * (size_t)(q + 1));
  }
  return 0;
}

/* The forward pass's stop test: true once the statement is interrupted. */
static int attnStop(void *ctx) {
  return gptext_interrupted(((GptVtab *)((AttnCursor *)ctx)->base.pVtab)->db);
}

/* Runs layers up to the current wanted layer c->layer.a[c->iL], keeping its
** wanted heads' probabilities in aProb. Layers are run in order and each one
** once, so the whole statement costs at most one forward pass. */
static int attnRunLayer(AttnCursor *c) {
  GPTForwardIO io;
  int target = c->layer.a[c->iL];
  memset(&io, 0, sizeof(io));
  io.want_attention = attnWant;
  io.on_attention = attnKeep;
  io.should_stop = attnStop;
  io.ctx = c;
  while (c->nLayerRun <= target) {
    int rc = gptext_attention_layer(c->m, "gpt_attention", c->s, c->nLayerRun, c->nThreads,
                                    &io, &c->zErr);
    if (rc != SQLITE_OK) return rc;
    c->nLayerRun++;
  }
  return SQLITE_OK;
}

/* Parses the arguments, fits the text (generating first when asked), builds
** the wanted sets and runs the pass up to the first wanted layer. */
static int attnFilter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                      sqlite3_value **argv) {
  static const char zFunc[] = "gpt_attention";
  (void)idxStr;
  AttnCursor *c = (AttnCursor *)cur;
  GptVtab *pVtab = (GptVtab *)cur->pVtab;
  GptOptions o;
  sqlite3_value *apArg[5] = {0, 0, 0, 0, 0};
  int rc = SQLITE_OK;
  char *zErr = 0;
  memset(&o, 0, sizeof(o));
  attnReset(c);
  for (int k = 0, iArg = 0; k < 5; k++) {
    int bits = k < 2 ? (1 << k) : ((ATTN_IDX_LAYER | ATTN_IDX_LAYER_IN) << (k - 2));
    if ((idxNum & bits) && iArg < argc) apArg[k] = argv[iArg++];
  }
  if (!apArg[0]) return gptext_vtab_error(&pVtab->base, attnMissingText(zFunc), SQLITE_ERROR);
  /* text and options come first in argv */
  if (gptext_tvf_keep_args(idxNum & 3, 2, argc, argv, c->apArg)) return SQLITE_NOMEM;
  c->fp = gptext_tvf_fingerprint(c->apArg, 2);
  if (sqlite3_value_type(apArg[0]) == SQLITE_NULL) return SQLITE_OK;
  rc = gptext_options_parse(pVtab->db, zFunc, apArg[1],
                            GPTOPT_MODEL | GPTOPT_SPECIAL | GPTOPT_TRUNCATE | GPTOPT_ATTN_GEN |
                            GPTOPT_SAMPLING | GPTOPT_THREADS, &o, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_model_acquire(pVtab->pConn, pVtab->db, zFunc, o.zModel, 1, &c->m, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_attention_sequence(pVtab->pConn, pVtab->db, c->m, zFunc, apArg[0], &o,
                                   &c->aTok, &c->nTok, &zErr);
  if (rc != SQLITE_OK || c->nTok == 0) goto done; /* nothing to attend to: no rows */
  c->nThreads = o.nThreads;

  rc = attnSetInit(&c->layer, c->m->cfg.n_layer, apArg[2], (idxNum & ATTN_IDX_LAYER_IN) != 0);
  if (rc == SQLITE_OK)
    rc = attnSetInit(&c->head, c->m->cfg.n_head, apArg[3], (idxNum & ATTN_IDX_HEAD_IN) != 0);
  if (rc == SQLITE_OK)
    rc = attnSetInit(&c->query, c->nTok, apArg[4], (idxNum & ATTN_IDX_QUERY_IN) != 0);
  if (rc != SQLITE_OK) goto done;
  if (c->layer.n == 0 || c->head.n == 0 || c->query.n == 0) goto done; /* no rows */

  /* Memory bound: aProb holds one layer's wanted heads, causal part of the
  ** wanted queries only: at most n_head * T * (T + 1) / 2 floats (T the
  ** sequence length; 25 MB for GPT-2 small at T = 1024), never
  ** n_layer * n_head * T * T. The engine adds its own T * T score scratch
  ** of one head, the KV cache and the batch activations. */
  c->aQOff = sqlite3_malloc64(sizeof(sqlite3_int64) * (size_t)c->query.n);
  if (!c->aQOff) { rc = SQLITE_NOMEM; goto done; }
  {
    sqlite3_int64 nPacked = 0;
    for (int i = 0; i < c->query.n; i++) {
      c->aQOff[i] = nPacked;
      nPacked += c->query.a[i] + 1;
    }
    c->nPacked = nPacked;
    /* (offsets were ints: 65,536 tokens passed INT_MAX and wrote before
    ** the buffer) */
    if (nPacked > ATTN_MAX_WEIGHTS / c->head.n) {
      /* only = and IN reach the function (a range is SQLite's own check) */
      zErr = sqlite3_mprintf("%s: model '%s': %d head%s of %d query positions hold %lld "
                             "weights a layer, more than the limit of %lld; choose heads or "
                             "query positions with head = or IN (...), query_pos = or IN (...)",
                             zFunc, c->m->zName, c->head.n, c->head.n == 1 ? "" : "s",
                             c->query.n, (long long)nPacked * c->head.n,
                             (long long)ATTN_MAX_WEIGHTS);
      rc = SQLITE_ERROR;
      goto done;
    }
    c->aProb = sqlite3_malloc64(sizeof(float) * (size_t)nPacked * (size_t)c->head.n);
    if (!c->aProb) { rc = SQLITE_NOMEM; goto done; }
  }
  rc = gptext_attention_begin(c->m, zFunc, c->aTok, c->nTok, &c->s, &zErr);
  if (rc != SQLITE_OK) goto done;
  rc = attnRunLayer(c);
  if (rc != SQLITE_OK) {
    zErr = c->zErr;
    c->zErr = 0;
    goto done;
  }
  c->bEof = 0;

done:
  gptext_options_clear(&o);
  if (rc != SQLITE_OK) {
    if (!zErr) {
      if (rc == SQLITE_NOMEM && c->m)
        zErr = sqlite3_mprintf("%s: model '%s': out of memory", zFunc, c->m->zName);
      else
        zErr = sqlite3_mprintf("%s: %s", zFunc, sqlite3_errstr(rc));
    }
    attnReset(c);
    return gptext_vtab_error(&pVtab->base, zErr, rc);
  }
  return SQLITE_OK;
}

/* Next key, else next wanted query, head, then layer (which runs the pass
** on to that layer). */
static int attnNext(sqlite3_vtab_cursor *cur) {
  AttnCursor *c = (AttnCursor *)cur;
  if (++c->iK <= c->query.a[c->iQ]) return SQLITE_OK;
  c->iK = 0;
  if (++c->iQ < c->query.n) return SQLITE_OK;
  c->iQ = 0;
  if (++c->iH < c->head.n) return SQLITE_OK;
  c->iH = 0;
  if (++c->iL >= c->layer.n) {
    c->bEof = 1;
    return SQLITE_OK;
  }
  int rc = attnRunLayer(c);
  if (rc != SQLITE_OK) {
    c->bEof = 1;
    char *zErr = c->zErr;
    c->zErr = 0;
    return gptext_vtab_error(cur->pVtab, zErr, rc);
  }
  return SQLITE_OK;
}

/* xEof: true past the last row. */
static int attnEof(sqlite3_vtab_cursor *cur) {
  return ((AttnCursor *)cur)->bEof;
}

/* xColumn: column i of the current (layer, head, query, key) row; the
** hidden columns read back the arguments. */
static int attnColumn(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  AttnCursor *c = (AttnCursor *)cur;
  int q = c->query.a[c->iQ], n = 0;
  const char *z;
  switch (i) {
    case ATTN_COL_LAYER: sqlite3_result_int(ctx, c->layer.a[c->iL]); break;
    case ATTN_COL_HEAD: sqlite3_result_int(ctx, c->head.a[c->iH]); break;
    case ATTN_COL_QUERY: sqlite3_result_int(ctx, q); break;
    case ATTN_COL_KEY: sqlite3_result_int(ctx, c->iK); break;
    case ATTN_COL_QTOKEN:
    case ATTN_COL_KTOKEN:
      z = tok_token_bytes(c->m->pTok, c->aTok[i == ATTN_COL_QTOKEN ? q : c->iK], &n);
      gptext_result_text(ctx, z, z ? n : 0, SQLITE_TRANSIENT);
      break;
    case ATTN_COL_WEIGHT:
      sqlite3_result_double(ctx, c->aProb[(size_t)c->iH * c->nPacked + c->aQOff[c->iQ] + c->iK]);
      break;
    case ATTN_COL_TEXT:
    case ATTN_COL_OPTIONS: /* the arguments read back */
      if (c->apArg[i - ATTN_COL_TEXT]) sqlite3_result_value(ctx, c->apArg[i - ATTN_COL_TEXT]);
      break;
    default: break;
  }
  return SQLITE_OK;
}

/* The rowid is the row's identity, not a counter: a plan that scans the
** function more than once (each term of a MULTI-INDEX OR) tells rows apart by
** rowid, so the same (layer, head, query_pos, key_pos) must give the same
** rowid in every scan and different ones different rowids. The index is
** below n_layer * n_head * T * T, well inside 64 bits for any window. */
static int attnRowid(sqlite3_vtab_cursor *cur, sqlite_int64 *pRowid) {
  AttnCursor *c = (AttnCursor *)cur;
  sqlite3_int64 T = c->nTok, nLH = (sqlite3_int64)c->m->cfg.n_layer * c->m->cfg.n_head;
  sqlite3_int64 lh = (sqlite3_int64)c->layer.a[c->iL] * c->m->cfg.n_head + c->head.a[c->iH];
  *pRowid = gptext_tvf_rowid(c->fp, nLH * T * T, (lh * T + c->query.a[c->iQ]) * T + c->iK);
  return SQLITE_OK;
}

static sqlite3_module attnModule = {
  0, 0, attnConnect, attnBestIndex, gptext_vtab_disconnect, 0, attnOpen, attnClose,
  attnFilter, attnNext, attnEof, attnColumn, attnRowid,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* ---------------------------------------------------- gpt_generate_tokens */

typedef struct GenTokCursor {
  sqlite3_vtab_cursor base;
  GptModel *m;
  GptGeneration g;
  int nRow;            /* rows: tokens up to the stop point, or 1 placeholder */
  int nLastText;       /* bytes of the last row's token text */
  int iRow;
  sqlite3_value *apArg[2]; /* copies of prompt and options, or NULL */
  sqlite3_uint64 fp;       /* their fingerprint, for the rowid */
} GenTokCursor;

#define GENTOK_COL_BYTES 5
#define GENTOK_COL_PROMPT 6

static int genTokConnect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                         sqlite3_vtab **ppVtab, char **pzErr) {
  (void)argc; (void)argv; (void)pzErr;
  return gptext_vtab_connect(db, pAux, "CREATE TABLE x(step INTEGER, token_id INTEGER, "
                             "token TEXT, logprob REAL, finish_reason TEXT, bytes BLOB, "
                             "prompt HIDDEN, options HIDDEN)", SQLITE_VTAB_DIRECTONLY, ppVtab);
}

/* xOpen: a cursor with no rows until xFilter generates. */
static int genTokOpen(sqlite3_vtab *p, sqlite3_vtab_cursor **ppCur) {
  (void)p;
  return gptext_tvf_open(sizeof(GenTokCursor), ppCur);
}

/* Frees the generation, the model reference and the kept arguments: the
** cursor is empty again. */
static void genTokReset(GenTokCursor *c) {
  gptext_generation_clear(&c->g);
  gptext_model_release(c->m);
  c->m = 0;
  c->nRow = 0;
  c->nLastText = 0;
  c->iRow = 0;
  for (int i = 0; i < 2; i++) {
    sqlite3_value_free(c->apArg[i]);
    c->apArg[i] = 0;
  }
}

/* xClose: frees what the cursor holds, then the cursor. */
static int genTokClose(sqlite3_vtab_cursor *cur) {
  genTokReset((GenTokCursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

/* idxNum bit 0: prompt; bit 1: options (gptext_tvf_best_index). */
static int genTokBestIndex(sqlite3_vtab *p, sqlite3_index_info *pInfo) {
  return gptext_tvf_best_index(p, pInfo, GENTOK_COL_PROMPT, 2, 1, "gpt_generate_tokens");
}

/* Runs the whole generation (gptext_generate, as gpt_generate does), then
** decides the rows: the tokens whose text starts before the end of the
** (stop-cut) text, the last one cut to it. A NULL prompt gives no rows. */
static int genTokFilter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                        sqlite3_value **argv) {
  static const char zFunc[] = "gpt_generate_tokens";
  (void)idxStr;
  GenTokCursor *c = (GenTokCursor *)cur;
  GptVtab *pVtab = (GptVtab *)cur->pVtab;
  GptOptions o;
  int *aIds = 0, nIds = 0, rc;
  char *zErr = 0;
  memset(&o, 0, sizeof(o));
  genTokReset(c);
  if (argc < 1 || !(idxNum & 1))
    return gptext_vtab_error(&pVtab->base, attnMissingText(zFunc), SQLITE_ERROR);
  if (gptext_tvf_keep_args(idxNum, 2, argc, argv, c->apArg)) return SQLITE_NOMEM;
  c->fp = gptext_tvf_fingerprint(c->apArg, 2);
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return SQLITE_OK;
  rc = gptext_options_parse(pVtab->db, zFunc, (idxNum & 2) && argc > 1 ? argv[1] : 0,
                            GPTOPT_MODEL | GPTOPT_GENERATE | GPTOPT_TRUNCATE | GPTOPT_SPECIAL |
                            GPTOPT_THREADS, &o, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_model_acquire(pVtab->pConn, pVtab->db, zFunc, o.zModel, 1, &c->m, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_encode(pVtab->db, c->m, zFunc, (const char *)sqlite3_value_text(argv[0]),
                       gptext_value_bytes(argv[0]), o.bAllowSpecial, &aIds, &nIds, &zErr);
  if (rc == SQLITE_OK) rc = gptext_fit_prompt(c->m, zFunc, &o, o.nMaxTokens, &aIds, &nIds, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_generate(pVtab->pConn, pVtab->db, c->m, zFunc, &o, aIds, nIds, &c->g, &zErr);
  sqlite3_free(aIds);
  gptext_options_clear(&o);
  if (rc != SQLITE_OK) {
    if (!zErr) zErr = sqlite3_mprintf("%s: %s", zFunc, sqlite3_errstr(rc));
    genTokReset(c);
    return gptext_vtab_error(&pVtab->base, zErr, rc);
  }
  if (c->g.nTok == 0) {
    c->nRow = 1; /* the placeholder row that carries finish_reason */
    return SQLITE_OK;
  }
  /* The row whose token holds byte nText (where a stop string starts) is the
  ** last; without a cut every token is a row and the last ends at nText. */
  int off = 0;
  c->nRow = c->g.nTok;
  for (int i = 0; i < c->g.nTok; i++) {
    int n = 0;
    tok_token_bytes(c->m->pTok, c->g.aTok[i], &n);
    if (off + n > c->g.nText || i == c->g.nTok - 1) {
      c->nRow = i + 1;
      c->nLastText = c->g.nText - off;
      if (c->nLastText < 0) c->nLastText = 0;
      if (c->nLastText > n) c->nLastText = n;
      break;
    }
    off += n;
  }
  return SQLITE_OK;
}

/* xNext: the next generated token. */
static int genTokNext(sqlite3_vtab_cursor *cur) {
  ((GenTokCursor *)cur)->iRow++;
  return SQLITE_OK;
}

/* xEof: true past the last token. */
static int genTokEof(sqlite3_vtab_cursor *cur) {
  GenTokCursor *c = (GenTokCursor *)cur;
  return c->iRow >= c->nRow;
}

/* xColumn: column i of the current token's row; the finish reason on the
** last row only, and the hidden columns read back the arguments. */
static int genTokColumn(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  GenTokCursor *c = (GenTokCursor *)cur;
  int bLast = c->iRow == c->nRow - 1, bToken = c->g.nTok > 0, n = 0;
  const char *z;
  switch (i) {
    case 0: sqlite3_result_int(ctx, c->iRow + 1); break;
    case 1: if (bToken) sqlite3_result_int(ctx, c->g.aTok[c->iRow]); break;
    case 2:
    case GENTOK_COL_BYTES:
      z = bToken ? tok_token_bytes(c->m->pTok, c->g.aTok[c->iRow], &n) : 0;
      if (bLast) n = c->nLastText;
      if (i == 2) gptext_result_text(ctx, z, z ? n : 0, SQLITE_TRANSIENT);
      else gptext_result_bytes(ctx, z, z ? n : 0, SQLITE_TRANSIENT);
      break;
    case 3: if (bToken) sqlite3_result_double(ctx, c->g.aLogprob[c->iRow]); break;
    case 4:
      if (bLast && c->g.zFinish) sqlite3_result_text(ctx, c->g.zFinish, -1, SQLITE_STATIC);
      break;
    default: /* the hidden arguments read back */
      if (i - GENTOK_COL_PROMPT < 2 && c->apArg[i - GENTOK_COL_PROMPT])
        sqlite3_result_value(ctx, c->apArg[i - GENTOK_COL_PROMPT]);
      break;
  }
  return SQLITE_OK;
}

/* xRowid: unique under every plan (gptext_tvf_rowid). */
static int genTokRowid(sqlite3_vtab_cursor *cur, sqlite_int64 *pRowid) {
  GenTokCursor *c = (GenTokCursor *)cur;
  *pRowid = gptext_tvf_rowid(c->fp, c->nRow, c->iRow); /* see gpt_ext.h */
  return SQLITE_OK;
}

static sqlite3_module genTokModule = {
  0, 0, genTokConnect, genTokBestIndex, gptext_vtab_disconnect, 0, genTokOpen, genTokClose,
  genTokFilter, genTokNext, genTokEof, genTokColumn, genTokRowid,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Registers gpt_attention and gpt_generate_tokens, both eponymous-only and
** DIRECTONLY (they run the model). */
int gptext_register_analyze(sqlite3 *db, GptConn *pConn) {
  int rc = sqlite3_create_module(db, "gpt_attention", &attnModule, pConn);
  if (rc == SQLITE_OK) rc = sqlite3_create_module(db, "gpt_generate_tokens", &genTokModule, pConn);
  return rc;
}
