/*
** Generation in SQL.
**
**   SELECT gpt_generate(body, '{"max_tokens": 32, "temperature": 0}') FROM docs;
**   SELECT * FROM gpt_next_tokens('The capital of France is', 5);
**   SELECT gpt_generate_bytes(body) FROM docs;        -- the exact bytes, a BLOB
**
** gpt_generate returns the continuation without the prompt, as valid UTF-8:
** tokens are bytes and a sampled sequence need not be valid UTF-8, so each
** ill-formed part becomes U+FFFD exactly as Python's
** bytes.decode('utf-8', 'replace') does. gpt_generate_bytes takes the same
** arguments and returns the generation's exact bytes as a BLOB (stop strings
** match on those bytes in both). Options (all
** optional): model; max_tokens (1..65536, default 64); temperature (0..100,
** default 1, 0 = greedy); top_k (0 = off); top_p ((0, 1], default 1); seed
** (default 42); stop (a string or array of strings; the text ends before the
** first one); truncate (keep the end of a prompt longer than the window);
** special (read "<|endoftext|>" in the prompt as the token); threads (how
** many threads the forward pass uses, default the number of cores; the
** output does not depend on it).
**
** How it works: the prompt runs as one batch, then each new token is one
** decode step over the KV cache. <|endoftext|>, a stop string, max_tokens and
** a full window (prompt + output = n_ctx) all end it normally. The RNG lives
** in the call, seeded from the options, so the same call gives the same text.
** The connection keeps the KV cache of its last call: a prompt that shares a
** prefix with the previous one only runs its new tokens.
*/
#include "gpt_ext.h"
#include "sampler.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fits the prompt into the window (see gpt_ext.h). */
int gptext_fit_prompt(GptModel *m, const char *zFunc, const GptOptions *o, int nReserve,
                      int **paIds, int *pnIds, char **pzErr) {
  int nCtx = m->cfg.n_ctx;
  if (*pnIds == 0) {
    int start = m->eot >= 0 ? m->eot : m->bos >= 0 ? m->bos : m->nStopId > 0 ? m->aStopId[0] : -1;
    if (start < 0) {
      gptext_set_error(pzErr, "%s: model '%s': the prompt is empty and the vocabulary has "
                       "no <|endoftext|>, bos or eos to start from", zFunc, m->zName);
      return SQLITE_ERROR;
    }
    (*paIds)[0] = start; /* gptext_encode always allocates at least one slot */
    *pnIds = 1;
  }
  int nKeep = nCtx - nReserve < 1 ? 1 : nCtx - nReserve;
  if (*pnIds > nCtx && !o->bTruncate) {
    gptext_set_error(pzErr, "%s: model '%s': the %s has %d tokens but the context "
                     "window (n_ctx) is %d; shorten it or pass {\"truncate\": true}",
                     zFunc, m->zName, strcmp(zFunc, "gpt_embed") == 0 ? "text" : "prompt",
                     *pnIds, nCtx);
    return SQLITE_TOOBIG;
  }
  /* truncate leaves the output its room: a prompt that filled the window
  ** to within a token gave 0 to 2 tokens where one more gave them all */
  if (o->bTruncate && *pnIds > nKeep) {
    /* the BOS the tokenizer put first stays first */
    int nBos = m->bAddBos && m->bos >= 0 && (*paIds)[0] == m->bos && nKeep >= 2 ? 1 : 0;
    memmove(*paIds + nBos, *paIds + (*pnIds - (nKeep - nBos)),
            (size_t)(nKeep - nBos) * sizeof(int));
    *pnIds = nKeep;
  }
  return SQLITE_OK;
}

/* The forward pass's interrupt check. */
static int stop_on_interrupt(void *ctx) { return gptext_interrupted((sqlite3 *)ctx); }

/* Checks out the connection's cached state when it belongs to m. */
static GPTState *state_get(GptConn *pConn, GptModel *m, int *pnReuse) {
  *pnReuse = 0;
  if (!pConn || !pConn->pState || pConn->pStateModel != m) return 0;
  GPTState *s = pConn->pState;
  pConn->pState = 0;
  *pnReuse = pConn->nStateTok;
  return s;
}

/* Runs the prompt, reusing a cached prefix (see gpt_ext.h). */
int gptext_prefill(GptConn *pConn, sqlite3 *db, GptModel *m, const char *zFunc,
                   const int *aIds, int nIds, float *logits, GPTState **ppState,
                   char **pzErr) {
  int nCached = 0, nCommon = 0;
  GPTState *s = state_get(pConn, m, &nCached);
  GPTForwardIO io;
  char zMsg[200];
  *ppState = 0;
  if (s) {
    while (nCommon < nCached && nCommon < nIds && pConn->aStateTok[nCommon] == aIds[nCommon])
      nCommon++;
    /* at least the last prompt token must run, to give its logits */
    if (nCommon >= nIds) nCommon = nIds - 1;
    gpt_state_truncate(s, nCommon);
  } else {
    s = gpt_state_new(m->pNet, m->cfg.n_ctx);
    if (!s) {
      gptext_set_error(pzErr, "%s: model '%s': out of memory for a KV cache of %d positions",
                       zFunc, m->zName, m->cfg.n_ctx);
      return SQLITE_NOMEM;
    }
  }
  memset(&io, 0, sizeof(io));
  io.logits = logits;
  io.should_stop = stop_on_interrupt;
  io.ctx = db;
  int rc = gpt_forward(m->pNet, s, aIds + nCommon, nIds - nCommon, &io, zMsg, sizeof(zMsg));
  if (rc != GPT_OK) {
    gpt_state_free(s);
    if (rc == GPT_ABORTED) {
      gptext_set_error(pzErr, "%s: model '%s': interrupted", zFunc, m->zName);
      return SQLITE_INTERRUPT;
    }
    gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, zMsg);
    return rc == GPT_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;
  }
  *ppState = s;
  return SQLITE_OK;
}

/* Returns a state to the connection's cache with the tokens it now holds;
** the previously cached one, if any, is freed. */
void gptext_state_put(GptConn *pConn, GptModel *m, GPTState *s, const int *aIds, int nIds) {
  if (!s) return;
  if (!pConn || nIds > m->cfg.n_ctx) {
    gpt_state_free(s);
    return;
  }
  if (pConn->pStateModel != m) {
    sqlite3_free(pConn->aStateTok);
    pConn->aStateTok = sqlite3_malloc64(sizeof(int) * (size_t)m->cfg.n_ctx);
    pConn->nStateTok = 0;
    gpt_state_free(pConn->pState);
    pConn->pState = 0;
    if (!pConn->aStateTok) {
      gpt_state_free(s);
      gptext_model_release(pConn->pStateModel);
      pConn->pStateModel = 0;
      return;
    }
    /* take a reference, so the weights outlive the state */
    gptext_model_retain(m);
    gptext_model_release(pConn->pStateModel);
    pConn->pStateModel = m;
  }
  gpt_state_free(pConn->pState);
  pConn->pState = s;
  memcpy(pConn->aStateTok, aIds, (size_t)nIds * sizeof(int));
  pConn->nStateTok = gpt_state_len(s) < nIds ? gpt_state_len(s) : nIds;
}

/* Frees a generation's tokens, log-probabilities and text, and zeroes it. */
void gptext_generation_clear(GptGeneration *g) {
  sqlite3_free(g->aTok);
  sqlite3_free(g->aLogprob);
  sqlite3_free(g->zText);
  memset(g, 0, sizeof(*g));
}

/* Where the first stop string starts in z[0..n), or -1. Only the tail that
** the last token can have completed is searched. */
static int find_stop(const GptOptions *o, const char *z, int n, int nSearchFrom) {
  int iBest = -1;
  for (int k = 0; k < o->nStop; k++) {
    int nStop = (int)strlen(o->azStop[k]);
    int i0 = nSearchFrom - nStop + 1 > 0 ? nSearchFrom - nStop + 1 : 0;
    for (int i = i0; i + nStop <= n; i++) {
      if (memcmp(z + i, o->azStop[k], (size_t)nStop) == 0) {
        if (iBest < 0 || i < iBest) iBest = i;
        break;
      }
    }
  }
  return iBest;
}

/* One step of a generation (see gpt_ext.h). */
int gptext_generation_step(GptModel *m, const GptOptions *o, GPTSampler *sp,
                           const float *logits, int nAll, GptGeneration *g, int *pTok) {
  const int nLive = gptext_live_vocab(m), nCtx = m->cfg.n_ctx;
  *pTok = -1;
  if (g->nTok >= o->nMaxTokens) { g->zFinish = "length"; return 1; }
  if (nAll >= nCtx) { g->zFinish = "context"; return 1; }
  int tok = gpt_sample(sp, logits);
  for (int j = 0; j < m->nStopId; j++) {
    if (tok == m->aStopId[j]) { g->zFinish = "eos"; return 1; }
  }
  int nBytes = 0;
  const char *zTok = tok_token_bytes(m->pTok, tok, &nBytes);
  char *zNew = sqlite3_realloc64(g->zText, (size_t)g->nText + nBytes + 1);
  if (!zNew) return -1;
  g->zText = zNew;
  memcpy(g->zText + g->nText, zTok, (size_t)nBytes);
  int nBefore = g->nText;
  g->nText += nBytes;
  g->zText[g->nText] = 0;
  g->aTok[g->nTok] = tok;
  /* a pass over the vocabulary: only for callers that keep log-probabilities */
  if (g->aLogprob) g->aLogprob[g->nTok] = logits[tok] - gpt_logsumexp(logits, nLive);
  g->nTok++;
  *pTok = tok;
  int iStop = o->nStop ? find_stop(o, g->zText, g->nText, nBefore) : -1;
  if (iStop >= 0) {
    g->nText = iStop;
    g->zText[iStop] = 0;
    g->zFinish = "stop";
    return 1;
  }
  if (g->nTok >= o->nMaxTokens) { g->zFinish = "length"; return 1; }
  if (nAll + 1 >= nCtx) { g->zFinish = "context"; return 1; }
  return 0;
}

/* The generation loop (see gpt_ext.h). */
int gptext_generate(GptConn *pConn, sqlite3 *db, GptModel *m, const char *zFunc,
                    const GptOptions *o, const int *aPrompt, int nPrompt, GptGeneration *g,
                    char **pzErr) {
  /* logits are (V,); only the ids with a token (nLive) are sampled */
  const int V = m->cfg.vocab_size, nLive = gptext_live_vocab(m), nCtx = m->cfg.n_ctx;
  GPTSampler sampler;
  GPTState *s = 0;
  float *logits = 0;
  int *aAll = 0; /* prompt + generated, for the state cache */
  int nAll = nPrompt, rc, nCap = 0;
  int nPrevThreads = gpt_threads_set(o->nThreads); /* the "threads" option */
  char zMsg[200];
  memset(g, 0, sizeof(*g));
  memset(&sampler, 0, sizeof(sampler));
  nCap = o->nMaxTokens < nCtx ? o->nMaxTokens : nCtx;
  logits = sqlite3_malloc64(sizeof(float) * (size_t)V);
  aAll = sqlite3_malloc64(sizeof(int) * ((size_t)nPrompt + nCap + 1));
  g->aTok = sqlite3_malloc64(sizeof(int) * ((size_t)nCap + 1));
  g->aLogprob = sqlite3_malloc64(sizeof(double) * ((size_t)nCap + 1));
  g->zText = sqlite3_malloc64(1);
  if (!logits || !aAll || !g->aTok || !g->aLogprob || !g->zText ||
      gpt_sampler_init(&sampler, nLive, (float)o->temperature, o->topK, (float)o->topP,
                       (uint64_t)o->seed)) {
    rc = SQLITE_NOMEM;
    goto done;
  }
  g->zText[0] = 0;
  memcpy(aAll, aPrompt, sizeof(int) * (size_t)nPrompt);
  rc = gptext_prefill(pConn, db, m, zFunc, aPrompt, nPrompt, logits, &s, pzErr);
  if (rc != SQLITE_OK) goto done;
  g->zFinish = "length";
  for (;;) {
    int tok, bDone = gptext_generation_step(m, o, &sampler, logits, nAll, g, &tok);
    if (bDone < 0) { rc = SQLITE_NOMEM; goto done; }
    if (tok >= 0) aAll[nAll++] = tok;
    if (bDone) break;
    if (gptext_interrupted(db)) {
      gptext_set_error(pzErr, "%s: model '%s': interrupted", zFunc, m->zName);
      rc = SQLITE_INTERRUPT;
      goto done;
    }
    GPTForwardIO io;
    memset(&io, 0, sizeof(io));
    io.logits = logits;
    rc = gpt_forward(m->pNet, s, &tok, 1, &io, zMsg, sizeof(zMsg));
    if (rc != GPT_OK) {
      gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, zMsg);
      rc = rc == GPT_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;
      goto done;
    }
  }
  rc = SQLITE_OK;
done:
  if (s) {
    /* the cache holds every token fed so far: the prompt and all but the
    ** last generated token */
    gptext_state_put(pConn, m, s, aAll, gpt_state_len(s));
  }
  if (rc == SQLITE_NOMEM && !*pzErr)
    gptext_set_error(pzErr, "%s: model '%s': out of memory", zFunc, m->zName);
  gpt_sampler_free(&sampler);
  sqlite3_free(logits);
  sqlite3_free(aAll);
  if (rc != SQLITE_OK) gptext_generation_clear(g);
  gpt_threads_set(nPrevThreads);
  return rc;
}

/* Reports an error through the context and frees the message. */
static void result_error(sqlite3_context *ctx, int rc, char *zErr) {
  if (zErr) gptext_result_error(ctx, zErr);
  if (rc != SQLITE_ERROR || !zErr) sqlite3_result_error_code(ctx, rc);
  sqlite3_free(zErr);
}

/* gpt_generate(prompt [, options]): the continuation of prompt as text;
** gpt_generate_bytes (bBytes): its exact bytes as a BLOB. A NULL prompt
** gives NULL. */
static void generate(sqlite3_context *ctx, int argc, sqlite3_value **argv, int bBytes) {
  const char *zFunc = bBytes ? "gpt_generate_bytes" : "gpt_generate";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  GptConn *pConn = sqlite3_user_data(ctx);
  GptOptions o;
  GptModel *m = 0;
  GptGeneration g;
  int *aIds = 0, nIds = 0, rc;
  char *zErr = 0;
  memset(&g, 0, sizeof(g));
  memset(&o, 0, sizeof(o));
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  rc = gptext_options_parse(db, zFunc, argc > 1 ? argv[1] : 0,
                            GPTOPT_MODEL | GPTOPT_GENERATE | GPTOPT_TRUNCATE | GPTOPT_SPECIAL |
                            GPTOPT_THREADS, &o, &zErr);
  if (rc == SQLITE_OK) rc = gptext_model_acquire(pConn, db, zFunc, o.zModel, 1, &m, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_encode(db, m, zFunc, (const char *)sqlite3_value_text(argv[0]),
                       gptext_value_bytes(argv[0]), o.bAllowSpecial, &aIds, &nIds, &zErr);
  if (rc == SQLITE_OK) rc = gptext_fit_prompt(m, zFunc, &o, o.nMaxTokens, &aIds, &nIds, &zErr);
  if (rc == SQLITE_OK) rc = gptext_generate(pConn, db, m, zFunc, &o, aIds, nIds, &g, &zErr);
  if (rc != SQLITE_OK) {
    result_error(ctx, rc, zErr);
    zErr = 0;
  } else if (!gptext_result_fits(ctx, zFunc, m->zName, g.nText)) {
    /* the error is set: named, not SQLite's "string or blob too big" */
  } else if (bBytes) {
    gptext_result_bytes(ctx, g.zText, g.nText, sqlite3_free);
    g.zText = 0;
  } else {
    gptext_result_text(ctx, g.zText, g.nText, sqlite3_free);
    g.zText = 0;
  }
  sqlite3_free(zErr);
  gptext_generation_clear(&g);
  sqlite3_free(aIds);
  gptext_model_release(m);
  gptext_options_clear(&o);
}

/* gpt_generate(prompt [, options]): the continuation as TEXT. */
static void gptGenerateFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  generate(ctx, argc, argv, 0);
}

/* gpt_generate_bytes(prompt [, options]): the continuation's exact bytes,
** as a BLOB. */
static void gptGenerateBytesFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  generate(ctx, argc, argv, 1);
}

/* ------------------------------------------------------- gpt_next_tokens */

/* gpt_next_tokens(prompt [, k [, options]]): the k most likely next tokens
** (default 10, capped at vocab_size), from the full softmax at temperature 1.
** Columns: rank (1 = most likely), token_id, token (valid
** UTF-8), logit, prob, bytes (the token's exact bytes, a BLOB); the hidden
** prompt, k and options read back the arguments. */
typedef struct NextCursor {
  sqlite3_vtab_cursor base;
  GptModel *m;
  int *aId;        /* (k,) ids, most likely first */
  float *aLogit;   /* (k,) */
  double lse;      /* log-sum-exp of all logits */
  int k;
  int iRow;
  sqlite3_value *apArg[3];  /* copies of prompt, k, options, or NULL */
  sqlite3_uint64 fp;        /* their fingerprint, for the rowid */
} NextCursor;

#define NEXT_COL_BYTES 5
#define NEXT_COL_PROMPT 6

static int nextConnect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                       sqlite3_vtab **ppVtab, char **pzErr) {
  (void)argc; (void)argv; (void)pzErr;
  return gptext_vtab_connect(db, pAux, "CREATE TABLE x(rank INTEGER, token_id INTEGER, "
                             "token TEXT, logit REAL, prob REAL, bytes BLOB, prompt HIDDEN, "
                             "k HIDDEN, options HIDDEN)", SQLITE_VTAB_DIRECTONLY, ppVtab);
}

/* xOpen: a cursor with no rows until xFilter runs the prompt. */
static int nextOpen(sqlite3_vtab *p, sqlite3_vtab_cursor **ppCur) {
  (void)p;
  return gptext_tvf_open(sizeof(NextCursor), ppCur);
}

/* Frees the ranked ids and logits, the model reference and the kept
** arguments: the cursor is empty again. */
static void nextReset(NextCursor *c) {
  sqlite3_free(c->aId);
  sqlite3_free(c->aLogit);
  gptext_model_release(c->m);
  c->aId = 0;
  c->aLogit = 0;
  c->m = 0;
  c->k = 0;
  c->iRow = 0;
  for (int i = 0; i < 3; i++) {
    sqlite3_value_free(c->apArg[i]);
    c->apArg[i] = 0;
  }
}

/* xClose: frees what the cursor holds, then the cursor. */
static int nextClose(sqlite3_vtab_cursor *cur) {
  nextReset((NextCursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

/* idxNum bit 0: prompt; bit 1: k; bit 2: options. */
static int nextBestIndex(sqlite3_vtab *p, sqlite3_index_info *pInfo) {
  return gptext_tvf_best_index(p, pInfo, NEXT_COL_PROMPT, 3, 1, "gpt_next_tokens");
}

/* Runs the prompt and keeps the top k of its next-token logits, found by a
** partial insertion into a sorted array of k (k is small next to V). */
static int nextFilter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                      sqlite3_value **argv) {
  static const char zFunc[] = "gpt_next_tokens";
  (void)idxStr;
  NextCursor *c = (NextCursor *)cur;
  GptVtab *pVtab = (GptVtab *)cur->pVtab;
  GptOptions o;
  GPTState *s = 0;
  float *logits = 0;
  int *aIds = 0, nIds = 0, iArg = 1, rc = SQLITE_OK;
  sqlite3_int64 k = 10;
  char *zErr = 0;
  memset(&o, 0, sizeof(o));
  nextReset(c);
  if (gptext_tvf_missing(&pVtab->base, idxNum, 1, zFunc)) return SQLITE_ERROR;
  if (gptext_tvf_keep_args(idxNum, 3, argc, argv, c->apArg)) return SQLITE_NOMEM;
  c->fp = gptext_tvf_fingerprint(c->apArg, 3);
  if (argc < 1 || sqlite3_value_type(argv[0]) == SQLITE_NULL) return SQLITE_OK;
  if (idxNum & 2) {
    sqlite3_value *pK = argv[iArg++];
    if (sqlite3_value_type(pK) != SQLITE_NULL) {
      /* 3.0 is 3, as k = 3.0 equals k = 3 in SQL; a whole number past 64 bits
      ** (1e30) is capped as 2^63 - 1 is, at the vocabulary */
      int eType = sqlite3_value_numeric_type(pK);
      double d = sqlite3_value_double(pK);
      int bWhole = eType == SQLITE_INTEGER ||
                   (eType == SQLITE_FLOAT && d >= 1 && isfinite(d) && d == floor(d));
      if (!bWhole || (eType == SQLITE_INTEGER && sqlite3_value_int64(pK) < 1)) {
        /* options given second, as every other function takes them */
        const char *zK = (const char *)sqlite3_value_text(pK);
        int bOpt = eType == SQLITE_TEXT && zK && zK[strspn(zK, " \t\r\n")] == '{';
        zErr = sqlite3_mprintf("%s: k must be a positive integer (the call is %s(prompt [, k "
                               "[, options]])%s)", zFunc, zFunc,
                               bOpt ? "; options come third, after k or NULL for its default" : "");
        rc = SQLITE_ERROR;
        goto done;
      }
      k = eType == SQLITE_INTEGER ? sqlite3_value_int64(pK)
          : d > 9e18 ? (sqlite3_int64)INT64_MAX : (sqlite3_int64)d;
    }
  }
  rc = gptext_options_parse(pVtab->db, zFunc, (idxNum & 4) ? argv[iArg] : 0,
                            GPTOPT_MODEL | GPTOPT_TRUNCATE | GPTOPT_SPECIAL | GPTOPT_THREADS,
                            &o, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_model_acquire(pVtab->pConn, pVtab->db, zFunc, o.zModel, 1, &c->m, &zErr);
  if (rc == SQLITE_OK)
    rc = gptext_encode(pVtab->db, c->m, zFunc, (const char *)sqlite3_value_text(argv[0]),
                       gptext_value_bytes(argv[0]), o.bAllowSpecial, &aIds, &nIds, &zErr);
  if (rc == SQLITE_OK) rc = gptext_fit_prompt(c->m, zFunc, &o, 0, &aIds, &nIds, &zErr);
  if (rc != SQLITE_OK) goto done;
  {
    int V = gptext_live_vocab(c->m); /* ids with a token: the only ones listed */
    if (k > V) k = V;
    logits = sqlite3_malloc64(sizeof(float) * (size_t)c->m->cfg.vocab_size);
    c->aId = sqlite3_malloc64(sizeof(int) * (size_t)k);
    c->aLogit = sqlite3_malloc64(sizeof(float) * (size_t)k);
    if (!logits || !c->aId || !c->aLogit) { rc = SQLITE_NOMEM; goto done; }
    int nPrevThreads = gpt_threads_set(o.nThreads);
    rc = gptext_prefill(pVtab->pConn, pVtab->db, c->m, zFunc, aIds, nIds, logits, &s, &zErr);
    gpt_threads_set(nPrevThreads);
    if (rc != SQLITE_OK) goto done;
    gptext_state_put(pVtab->pConn, c->m, s, aIds, nIds);
    s = 0;
    c->lse = gpt_logsumexp(logits, V);
    int n = 0;
    for (int i = 0; i < V; i++) {
      float f = logits[i];
      if (n == k && !(f > c->aLogit[n - 1])) continue;
      int j = n < k ? n++ : n - 1;
      while (j > 0 && f > c->aLogit[j - 1]) {
        c->aLogit[j] = c->aLogit[j - 1];
        c->aId[j] = c->aId[j - 1];
        j--;
      }
      c->aLogit[j] = f;
      c->aId[j] = i;
    }
    c->k = n;
  }
done:
  sqlite3_free(logits);
  sqlite3_free(aIds);
  gptext_options_clear(&o);
  if (rc != SQLITE_OK) {
    if (!zErr) zErr = sqlite3_mprintf("%s: %s", zFunc, sqlite3_errstr(rc));
    nextReset(c);
    return gptext_vtab_error(&pVtab->base, zErr, rc);
  }
  return SQLITE_OK;
}

/* xNext: the next most likely token. */
static int nextNext(sqlite3_vtab_cursor *cur) {
  ((NextCursor *)cur)->iRow++;
  return SQLITE_OK;
}

/* xEof: true past the k-th token. */
static int nextEof(sqlite3_vtab_cursor *cur) {
  NextCursor *c = (NextCursor *)cur;
  return c->iRow >= c->k;
}

/* xColumn: column i of the current rank's row (its probability from the
** logit and the log-sum-exp of all of them); the hidden columns read back
** the arguments. */
static int nextColumn(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  NextCursor *c = (NextCursor *)cur;
  int n = 0;
  const char *z;
  switch (i) {
    case 0: sqlite3_result_int(ctx, c->iRow + 1); break;
    case 1: sqlite3_result_int(ctx, c->aId[c->iRow]); break;
    case 2:
    case NEXT_COL_BYTES:
      z = tok_token_bytes(c->m->pTok, c->aId[c->iRow], &n);
      if (i == 2) gptext_result_text(ctx, z, z ? n : 0, SQLITE_TRANSIENT);
      else gptext_result_bytes(ctx, z, z ? n : 0, SQLITE_TRANSIENT);
      break;
    case 3: sqlite3_result_double(ctx, c->aLogit[c->iRow]); break;
    case 4: sqlite3_result_double(ctx, exp((double)c->aLogit[c->iRow] - c->lse)); break;
    default: /* the hidden arguments read back */
      if (i - NEXT_COL_PROMPT < 3 && c->apArg[i - NEXT_COL_PROMPT])
        sqlite3_result_value(ctx, c->apArg[i - NEXT_COL_PROMPT]);
      break;
  }
  return SQLITE_OK;
}

/* xRowid: unique under every plan (gptext_tvf_rowid). */
static int nextRowid(sqlite3_vtab_cursor *cur, sqlite_int64 *pRowid) {
  NextCursor *c = (NextCursor *)cur;
  *pRowid = gptext_tvf_rowid(c->fp, c->k, c->iRow); /* see gpt_ext.h */
  return SQLITE_OK;
}

static sqlite3_module nextModule = {
  0, 0, nextConnect, nextBestIndex, gptext_vtab_disconnect, 0, nextOpen, nextClose,
  nextFilter, nextNext, nextEof, nextColumn, nextRowid,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Registers gpt_generate and gpt_generate_bytes (DIRECTONLY: costly, so
** never from a schema's views or triggers; not DETERMINISTIC: sampling) and
** gpt_next_tokens. */
int gptext_register_generate(sqlite3 *db, GptConn *pConn) {
  int rc = SQLITE_OK;
  for (int nArg = 1; rc == SQLITE_OK && nArg <= 2; nArg++) {
    rc = sqlite3_create_function(db, "gpt_generate", nArg, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                 pConn, gptGenerateFunc, 0, 0);
    if (rc == SQLITE_OK)
      rc = sqlite3_create_function(db, "gpt_generate_bytes", nArg,
                                   SQLITE_UTF8 | SQLITE_DIRECTONLY, pConn,
                                   gptGenerateBytesFunc, 0, 0);
  }
  if (rc == SQLITE_OK) rc = sqlite3_create_module(db, "gpt_next_tokens", &nextModule, pConn);
  return rc;
}
