/*
** gpt_batch: generation for many rows at once.
**
**   SELECT key, output FROM gpt_batch('SELECT id, body FROM docs',
**                                     '{"max_tokens": 32, "temperature": 0, "batch": 16}');
**
** The first argument is a query returning (key, prompt); gpt_batch runs it
** itself and yields one row per input row: key, output (valid UTF-8 text),
** finish_reason ("eos", "stop", "length", "context"; NULL for a NULL
** prompt, whose output is NULL), prompt_tokens, output_tokens (the rows
** gpt_generate_tokens would list: with a stop string, up to the token in
** which it begins), bytes (the output's exact bytes, a BLOB), cached_tokens
** (the prompt tokens copied from another row's cache, not computed), and
** the hidden query and options. Options are gpt_generate's (model,
** max_tokens, temperature, top_k, top_p, seed, stop, truncate, special,
** threads) and batch, the number of sequences in flight (1 to 256, default
** 16). Rows come
** out in the order they finish. The query may call gpt_batch itself, 8
** levels deep at most.
**
** How it works: up to `batch` sequences are in flight, each with its own KV
** cache. Every step is one pass of the decoder over all of them
** (gpt_forward_seqs): a sequence that just arrived contributes its prompt, the
** others one token each, so every weight is read once a step for all rows.
** When a sequence finishes, its row is yielded and the next input row takes
** its slot (continuous batching); memory is bounded by `batch`, not by the
** table. A new prompt that begins like one already in a slot copies those
** positions of that slot's cache instead of computing them (a shared
** instruction runs once). Where the beginning is in a prompt that has not
** run yet (the first rows of a call all arrive at once), the new row waits
** for that prompt's pass and copies then, when it shares BATCH_WAIT_MIN
** tokens more than any cache holds. A pass takes BATCH_PASS_TOKENS at most
** (but a token of every decoding row): longer prompts run in pieces. Each
** value a sequence sees is bit for bit what it would see alone, so greedy
** output equals gpt_generate's with the same options; with sampling, each
** row's generator is seeded from the seed option and the row's key, so a
** row's output does not depend on which rows shared its batch.
*/
#include "gpt_ext.h"
#include <stdlib.h>
#include <string.h>

#define BATCH_DEFAULT 16

/* Tokens of a shared beginning that make a new row wait a pass for another
** row's prompt to run, and copy them then: a pass costs about a read of
** every weight, which a few tokens computed again (by each such row) do not
** outweigh. */
#define BATCH_WAIT_MIN 4

/* Tokens a pass takes at most, but for a token of each row in flight (as
** llama.cpp's n_batch): a prompt longer than what is left runs in pieces over
** several passes, so a pass's scratch and the wait for an interrupt stay
** bounded (64 prompts of 600 tokens, a 4-layer 256-wide model: 1,118 MB at
** the peak in one pass, 761 MB in pieces; an interrupt seen after 1.2 s, now
** 0.06 s), and the rows already decoding go on meanwhile.
** A pass of several prompts still reads each weight once for them all. */
#define BATCH_PASS_TOKENS 2048

/* One sequence in flight. */
typedef struct BatchSlot {
  int bUsed;              /* holds an input row */
  int bDone;              /* finished, waiting to be yielded */
  sqlite3_int64 iRow;     /* the input row's ordinal, 0-based */
  sqlite3_value *pKey;    /* its key */
  int bNullPrompt;        /* its prompt was NULL: yielded with NULL output */
  GPTState *s;            /* its KV cache (kept between rows) */
  GPTSampler sampler;
  GptGeneration g;
  int *aTok;              /* (nTokAlloc,) prompt then generated: what s holds */
  int nTok, nTokAlloc;
  int nPrompt;
  int iFeed;              /* aTok[iFeed..nTok) are still to run */
  int nFed;               /* how many of them the pass in hand runs */
  int nCached;            /* prompt tokens copied from another slot's cache */
  int nWait;              /* > 0: sits out passes until slot iDonor has run its
                          ** prompt, then copies its first nWait positions */
  int iDonor;
  float *logits;          /* (V,) after the last token fed */
} BatchSlot;

typedef struct BatchCursor {
  sqlite3_vtab_cursor base;
  GptModel *m;
  GptOptions o;
  sqlite3_stmt *pQuery;   /* the (key, prompt) query, or NULL when exhausted */
  sqlite3_int64 nRead;    /* input rows read so far */
  BatchSlot *aSlot;
  int nSlot;
  GPTState *scratch;      /* the rows of each pass */
  GPTSeq *aSeq;           /* (nSlot,) */
  int iCur;               /* slot of the current output row, -1 at EOF */
  sqlite3_value *apArg[2];  /* copies of query and options */
  sqlite3_uint64 fp;
} BatchCursor;

#define BATCH_COL_BYTES 5
#define BATCH_COL_CACHED 6
#define BATCH_COL_QUERY 7

static int batchConnect(sqlite3 *db, void *pAux, int argc, const char *const *argv,
                        sqlite3_vtab **ppVtab, char **pzErr) {
  (void)argc; (void)argv; (void)pzErr;
  return gptext_vtab_connect(db, pAux, "CREATE TABLE x(key, output TEXT, finish_reason TEXT, "
                             "prompt_tokens INTEGER, output_tokens INTEGER, bytes BLOB, "
                             "cached_tokens INTEGER, query HIDDEN, options HIDDEN)",
                             SQLITE_VTAB_DIRECTONLY, ppVtab);
}

/* xOpen: a cursor with no finished row in hand (iCur -1) until xFilter
** runs the query. */
static int batchOpen(sqlite3_vtab *p, sqlite3_vtab_cursor **ppCur) {
  (void)p;
  int rc = gptext_tvf_open(sizeof(BatchCursor), ppCur);
  if (rc == SQLITE_OK) ((BatchCursor *)*ppCur)->iCur = -1;
  return rc;
}

/* Empties a slot for the next input row; its cache stays allocated and keeps
** its positions, which the next prompt may share. */
static void slotClear(BatchSlot *sl) {
  sqlite3_value_free(sl->pKey);
  sl->pKey = 0;
  gptext_generation_clear(&sl->g);
  gpt_sampler_free(&sl->sampler);
  memset(&sl->sampler, 0, sizeof(sl->sampler));
  sl->bUsed = sl->bDone = sl->bNullPrompt = 0;
  sl->nCached = sl->nWait = 0;
}

/* Frees everything of the call: slots, query, model. */
static void batchReset(BatchCursor *c) {
  for (int i = 0; i < c->nSlot; i++) {
    BatchSlot *sl = &c->aSlot[i];
    slotClear(sl);
    gpt_state_free(sl->s);
    sqlite3_free(sl->aTok);
    sqlite3_free(sl->logits);
  }
  sqlite3_free(c->aSlot);
  sqlite3_free(c->aSeq);
  gpt_state_free(c->scratch);
  sqlite3_finalize(c->pQuery);
  gptext_model_release(c->m);
  gptext_options_clear(&c->o);
  for (int i = 0; i < 2; i++) sqlite3_value_free(c->apArg[i]);
  c->m = 0;
  c->pQuery = 0;
  c->aSlot = 0;
  c->aSeq = 0;
  c->scratch = 0;
  c->nSlot = 0;
  c->nRead = 0;
  c->iCur = -1;
  c->apArg[0] = c->apArg[1] = 0;
  memset(&c->o, 0, sizeof(c->o));
}

/* xClose: frees what the call holds, then the cursor. */
static int batchClose(sqlite3_vtab_cursor *cur) {
  batchReset((BatchCursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

/* idxNum bit 0: query; bit 1: options. */
static int batchBestIndex(sqlite3_vtab *p, sqlite3_index_info *pInfo) {
  return gptext_tvf_best_index(p, pInfo, BATCH_COL_QUERY, 2, 1, "gpt_batch");
}

/* The row's generator seed: the seed option mixed with the key's
** fingerprint (splitmix64), so it depends on the row alone (the key's value
** as SQL compares it: 1.0 seeds as 1). */
static uint64_t rowSeed(int64_t seed, sqlite3_value *pKey) {
  uint64_t z = (uint64_t)seed ^ gptext_key_fingerprint(pKey);
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Longest prefix of aTok[0..n) that some slot's cache holds, and the slot
** (-1 when none shares a token). The slot being filled is included: its
** cache still holds its previous row's positions. */
static int sharedPrefix(BatchCursor *c, const int *aTok, int n, int *piSlot) {
  int best = 0;
  *piSlot = -1;
  for (int i = 0; i < c->nSlot; i++) {
    BatchSlot *sl = &c->aSlot[i];
    if (!sl->s) continue;
    int held = gpt_state_len(sl->s), k = 0;
    while (k < held && k < n && sl->aTok[k] == aTok[k]) k++;
    if (k > best) {
      best = k;
      *piSlot = i;
    }
  }
  return best;
}

/* Whether sl takes part in the next pass: in flight (a row not yet
** finished) and not waiting on another slot's prompt. */
static int slotRuns(const BatchSlot *sl) {
  return sl->bUsed && !sl->bDone && sl->nWait == 0;
}

/* Longest prefix of aTok[0..n) in the prompt of a slot other than sl whose
** passes are still to run that prompt (it is in flight and its cache holds
** less of it than the match), and the slot (-1 when none). That slot may
** itself wait for a third's shorter beginning: the chain ends at a slot
** filled earlier that runs, so a shared instruction after a shorter
** shared header is computed once too (rows had waited for the header
** alone, then each computed the instruction). */
static int pendingPrefix(BatchCursor *c, const BatchSlot *sl, const int *aTok, int n,
                         int *piSlot) {
  int best = 0;
  *piSlot = -1;
  for (int i = 0; i < c->nSlot; i++) {
    BatchSlot *d = &c->aSlot[i];
    if (d == sl || !d->bUsed || d->bDone || !d->s) continue;
    int k = 0;
    while (k < d->nPrompt && k < n && d->aTok[k] == aTok[k]) k++;
    if (k > best && k > gpt_state_len(d->s)) {
      best = k;
      *piSlot = i;
    }
  }
  return best;
}

/* Puts the next input row into empty slot sl: reads the query, encodes the
** prompt, fits it into the window and sets the cache up, sharing a prompt
** beginning with another slot. Sets *pbEnd when the query has no more rows. */
static int slotFill(BatchCursor *c, BatchSlot *sl, int *pbEnd, char **pzErr) {
  static const char zFunc[] = "gpt_batch";
  GptModel *m = c->m;
  const GptOptions *o = &c->o;
  sqlite3 *db = sqlite3_db_handle(c->pQuery);
  int *aIds = 0, nIds = 0, rc;
  *pbEnd = 0;
  rc = gptext_query_step(c->pQuery); /* counted: the query may call gpt_batch again */
  if (rc == SQLITE_DONE) {
    sqlite3_finalize(c->pQuery);
    c->pQuery = 0;
    *pbEnd = 1;
    return SQLITE_OK;
  }
  if (rc != SQLITE_ROW) {
    const char *zInner = sqlite3_errmsg(db);
    if (strncmp(zInner, "gpt_batch: ", 11) == 0 && strstr(zInner, ": the query failed at row "))
      gptext_set_error(pzErr, "%s", zInner); /* a nested call's says where, once a level */
    else
      gptext_set_error(pzErr, "%s: model '%s': the query failed at row %lld: %s", zFunc,
                       m->zName, (long long)c->nRead + 1, zInner);
    return rc == SQLITE_INTERRUPT ? SQLITE_INTERRUPT : SQLITE_ERROR;
  }
  sl->bUsed = 1;
  sl->iRow = c->nRead++;
  sl->pKey = sqlite3_value_dup(sqlite3_column_value(c->pQuery, 0));
  if (!sl->pKey) return SQLITE_NOMEM;
  memset(&sl->g, 0, sizeof(sl->g));
  if (sqlite3_column_type(c->pQuery, 1) == SQLITE_NULL) {
    sl->bNullPrompt = 1;
    sl->bDone = 1;
    return SQLITE_OK;
  }
  rc = gptext_encode(db, m, zFunc, (const char *)sqlite3_column_text(c->pQuery, 1),
                     gptext_column_bytes(c->pQuery, 1), o->bAllowSpecial, &aIds, &nIds, pzErr);
  if (rc == SQLITE_OK) rc = gptext_fit_prompt(m, zFunc, o, o->nMaxTokens, &aIds, &nIds, pzErr);
  if (rc != SQLITE_OK) {
    /* which row's prompt: the message names the function and the model */
    if (rc != SQLITE_NOMEM && *pzErr) {
      char *z = sqlite3_mprintf("%s (the prompt of row %lld)", *pzErr, (long long)sl->iRow + 1);
      if (z) {
        sqlite3_free(*pzErr);
        *pzErr = z;
      }
    }
    goto done;
  }
  {
    int nCtx = m->cfg.n_ctx, nCap = o->nMaxTokens < nCtx ? o->nMaxTokens : nCtx;
    int nNeed = nIds + nCap + 1;
    if (nNeed > sl->nTokAlloc) {
      int *a = sqlite3_realloc64(sl->aTok, sizeof(int) * (size_t)nNeed);
      if (!a) { rc = SQLITE_NOMEM; goto done; }
      sl->aTok = a;
      sl->nTokAlloc = nNeed;
    }
    /* no log-probabilities: gpt_batch has no column for them */
    sl->g.aTok = sqlite3_malloc64(sizeof(int) * ((size_t)nCap + 1));
    sl->g.zText = sqlite3_malloc64(1);
    if (!sl->g.aTok || !sl->g.zText) { rc = SQLITE_NOMEM; goto done; }
    sl->g.zText[0] = 0;
    sl->g.zFinish = "length";
    if (gpt_sampler_init(&sl->sampler, gptext_live_vocab(m), (float)o->temperature, o->topK,
                         (float)o->topP, rowSeed(o->seed, sl->pKey))) {
      rc = SQLITE_NOMEM;
      goto done;
    }
    if (!sl->s) {
      sl->s = gpt_state_new(m->pNet, nCtx);
      if (!sl->s) { rc = SQLITE_NOMEM; goto done; }
    }
    /* the shared beginning comes from the slot that holds the most of it; at
    ** least the last prompt token runs, to give the logits */
    int iFrom, nShared = sharedPrefix(c, aIds, nIds, &iFrom);
    if (nShared >= nIds) nShared = nIds - 1;
    if (nShared > 0 && gpt_state_copy_prefix(sl->s, c->aSlot[iFrom].s, nShared) != GPT_OK)
      nShared = 0;
    if (nShared == 0) gpt_state_truncate(sl->s, 0);
    /* more of it in a prompt that runs in the next pass: wait for that */
    int iDonor, nPending = pendingPrefix(c, sl, aIds, nIds, &iDonor);
    if (nPending >= nIds) nPending = nIds - 1;
    if (nPending >= nShared + BATCH_WAIT_MIN) {
      sl->nWait = nPending;
      sl->iDonor = iDonor;
    }
    memcpy(sl->aTok, aIds, sizeof(int) * (size_t)nIds);
    sl->nTok = sl->nPrompt = nIds;
    sl->iFeed = sl->nCached = nShared;
  }
done:
  sqlite3_free(aIds);
  return rc;
}

/* The forward pass's interrupt check. */
static int stopOnInterrupt(void *ctx) { return gptext_interrupted((sqlite3 *)ctx); }

/* Runs passes until some slot's row is ready to be yielded (c->iCur), or
** every row is done (c->iCur = -1). */
static int batchPasses(BatchCursor *c, char **pzErr) {
  static const char zFunc[] = "gpt_batch";
  GptModel *m = c->m;
  sqlite3 *db = ((GptVtab *)c->base.pVtab)->db;
  char zMsg[200];
  int rc;
  for (;;) {
    /* fill the empty slots while the query has rows */
    for (int i = 0; i < c->nSlot && c->pQuery; i++) {
      if (c->aSlot[i].bUsed) continue;
      int bEnd = 0;
      if ((rc = slotFill(c, &c->aSlot[i], &bEnd, pzErr)) != SQLITE_OK) return rc;
    }
    /* a finished row goes out first, the earliest input row of those ready */
    c->iCur = -1;
    for (int i = 0; i < c->nSlot; i++) {
      BatchSlot *sl = &c->aSlot[i];
      if (sl->bUsed && sl->bDone && (c->iCur < 0 || sl->iRow < c->aSlot[c->iCur].iRow))
        c->iCur = i;
    }
    if (c->iCur >= 0) return SQLITE_OK;
    /* one pass over every sequence in flight: the next token of each row
    ** with one left to run, then of the prompts in slot order as much as
    ** BATCH_PASS_TOKENS leaves room for (a token each at least) */
    int nSeq = 0, nRoom = BATCH_PASS_TOKENS;
    for (int i = 0; i < c->nSlot; i++) {
      BatchSlot *sl = &c->aSlot[i];
      sl->nFed = 0;
      if (!slotRuns(sl) || sl->nTok - sl->iFeed != 1) continue;
      sl->nFed = 1;
      nRoom--;
    }
    for (int i = 0; i < c->nSlot; i++) {
      BatchSlot *sl = &c->aSlot[i];
      if (!slotRuns(sl) || sl->nFed > 0) continue;
      sl->nFed = sl->nTok - sl->iFeed < nRoom ? sl->nTok - sl->iFeed : nRoom > 1 ? nRoom : 1;
      nRoom -= sl->nFed;
    }
    for (int i = 0; i < c->nSlot; i++) {
      BatchSlot *sl = &c->aSlot[i];
      if (sl->nFed == 0) continue;
      c->aSeq[nSeq].s = sl->s;
      c->aSeq[nSeq].tokens = sl->aTok + sl->iFeed;
      c->aSeq[nSeq].n = sl->nFed;
      /* a prompt's piece before its last gives no logits */
      c->aSeq[nSeq].logits = sl->iFeed + sl->nFed == sl->nTok ? sl->logits : NULL;
      nSeq++;
    }
    /* every row yielded: a row waits only while its donor is in the pass */
    if (nSeq == 0) return SQLITE_OK;
    if (gptext_interrupted(db)) {
      gptext_set_error(pzErr, "%s: model '%s': interrupted", zFunc, c->m->zName);
      return SQLITE_INTERRUPT;
    }
    GPTForwardIO io;
    memset(&io, 0, sizeof(io));
    io.should_stop = stopOnInterrupt;
    io.ctx = db;
    rc = gpt_forward_seqs(m->pNet, c->scratch, c->aSeq, nSeq, &io, zMsg, sizeof(zMsg));
    if (rc != GPT_OK) {
      if (rc == GPT_ABORTED) {
        gptext_set_error(pzErr, "%s: model '%s': interrupted", zFunc, c->m->zName);
        return SQLITE_INTERRUPT;
      }
      gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, zMsg);
      return rc == GPT_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;
    }
    /* the rows that waited copy what the passes computed for them, once
    ** their donor's cache holds it; the donor's cache still holds its own
    ** prompt here, since a slot is refilled only after this loop */
    for (int i = 0; i < c->nSlot; i++) {
      BatchSlot *sl = &c->aSlot[i];
      if (!sl->bUsed || sl->bDone || sl->nWait <= 0) continue;
      const GPTState *from = c->aSlot[sl->iDonor].s;
      if (gpt_state_len(from) < sl->nWait) continue;
      if (gpt_state_copy_prefix(sl->s, from, sl->nWait) == GPT_OK)
        sl->iFeed = sl->nCached = sl->nWait;
      sl->nWait = 0;
    }
    /* each sequence whose last token ran samples its next one, or ends */
    for (int i = 0; i < c->nSlot; i++) {
      BatchSlot *sl = &c->aSlot[i];
      if (sl->nFed == 0) continue;
      if (sl->iFeed + sl->nFed < sl->nTok) { /* a piece of its prompt */
        sl->iFeed += sl->nFed;
        continue;
      }
      sl->iFeed = sl->nTok;
      int tok, bDone = gptext_generation_step(m, &c->o, &sl->sampler, sl->logits, sl->nTok,
                                              &sl->g, &tok);
      if (bDone < 0) return SQLITE_NOMEM;
      if (tok >= 0) sl->aTok[sl->nTok++] = tok;
      if (bDone) {
        sl->bDone = 1;
        /* the cache holds everything but the last token, which never ran */
        if (tok >= 0) sl->nTok--;
      }
    }
  }
}

/* batchPasses on the "threads" option's team size, which holds for this
** call only: set for the cursor's life, it leaked into whatever else ran on
** the thread between its rows. */
static int batchAdvance(BatchCursor *c, char **pzErr) {
  int nPrev = gpt_threads_set(c->o.nThreads);
  int rc = batchPasses(c, pzErr);
  gpt_threads_set(nPrev);
  /* a row that finished in an earlier pass is yielded without one; SQLite
  ** checks for an interrupt right after it, with a message that names
  ** neither function nor model: checked here first */
  if (rc == SQLITE_OK && c->iCur >= 0 && gptext_interrupted(((GptVtab *)c->base.pVtab)->db)) {
    gptext_set_error(pzErr, "gpt_batch: model '%s': interrupted", c->m->zName);
    rc = SQLITE_INTERRUPT;
  }
  return rc;
}

/* Prepares the query, checks it, sets up the slots and runs to the first
** finished row. */
static int batchFilter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc,
                       sqlite3_value **argv) {
  static const char zFunc[] = "gpt_batch";
  (void)idxStr;
  BatchCursor *c = (BatchCursor *)cur;
  GptVtab *pVtab = (GptVtab *)cur->pVtab;
  char *zErr = 0, *zWho = 0;
  int rc = SQLITE_OK;
  batchReset(c);
  if (gptext_tvf_missing(&pVtab->base, idxNum, 1, zFunc)) return SQLITE_ERROR;
  if (gptext_tvf_keep_args(idxNum, 2, argc, argv, c->apArg)) return SQLITE_NOMEM;
  c->fp = gptext_tvf_fingerprint(c->apArg, 2);
  if (argc < 1 || sqlite3_value_type(argv[0]) == SQLITE_NULL) return SQLITE_OK;
  if ((rc = gptext_query_too_deep(zFunc, 0, &zErr)) != SQLITE_OK) goto done;
  rc = gptext_options_parse(pVtab->db, zFunc, (idxNum & 2) ? argv[1] : 0,
                            GPTOPT_MODEL | GPTOPT_GENERATE | GPTOPT_TRUNCATE | GPTOPT_SPECIAL |
                            GPTOPT_THREADS | GPTOPT_BATCH, &c->o, &zErr);
  if (rc != SQLITE_OK) goto done;
  {
    /* the query is checked before the model loads: its errors name the
    ** model where the options do */
    zWho = c->o.zModel ? sqlite3_mprintf("%s: model '%s'", zFunc, c->o.zModel)
                       : sqlite3_mprintf("%s", zFunc);
    if (!zWho) { rc = SQLITE_NOMEM; goto done; }
    const char *zTail = 0;
    rc = gptext_prepare_query(pVtab->db, argv[0], &c->pQuery, &zTail);
    if (rc != SQLITE_OK) {
      zErr = sqlite3_mprintf("%s: the query does not compile: %s", zWho,
                             sqlite3_errmsg(pVtab->db));
      goto done;
    }
    int bMore = gptext_sql_has_more(zTail);
    if (!c->pQuery || !sqlite3_stmt_readonly(c->pQuery) || bMore) {
      zErr = sqlite3_mprintf("%s: the first argument must be one read-only query returning "
                             "(key, prompt), e.g. 'SELECT id, body FROM docs'", zWho);
      rc = SQLITE_ERROR;
      goto done;
    }
    char zParamMsg[200];
    if (gptext_query_param(c->pQuery, zFunc, zParamMsg, sizeof(zParamMsg))) {
      zErr = sqlite3_mprintf("%s: %s", zWho, zParamMsg);
      rc = SQLITE_ERROR;
      goto done;
    }
    if (sqlite3_column_count(c->pQuery) != 2) {
      zErr = sqlite3_mprintf("%s: the query returns %d column%s; it must return two, (key, "
                             "prompt), e.g. 'SELECT id, body FROM docs'", zWho,
                             sqlite3_column_count(c->pQuery),
                             sqlite3_column_count(c->pQuery) == 1 ? "" : "s");
      rc = SQLITE_ERROR;
      goto done;
    }
  }
  rc = gptext_model_acquire(pVtab->pConn, pVtab->db, zFunc, c->o.zModel, 1, &c->m, &zErr);
  if (rc != SQLITE_OK) goto done;
  {
    /* nSlot counts slots only once they are zeroed: batchReset frees them */
    int nSlot = c->o.nBatch > 0 ? c->o.nBatch : BATCH_DEFAULT;
    c->aSlot = sqlite3_malloc64(sizeof(BatchSlot) * (size_t)nSlot);
    if (!c->aSlot) { rc = SQLITE_NOMEM; goto done; }
    memset(c->aSlot, 0, sizeof(BatchSlot) * (size_t)nSlot);
    c->nSlot = nSlot;
  }
  c->aSeq = sqlite3_malloc64(sizeof(GPTSeq) * (size_t)c->nSlot);
  c->scratch = gpt_state_new(c->m->pNet, 1);
  if (!c->aSeq || !c->scratch) { rc = SQLITE_NOMEM; goto done; }
  for (int i = 0; i < c->nSlot; i++) {
    c->aSlot[i].logits = sqlite3_malloc64(sizeof(float) * (size_t)c->m->cfg.vocab_size);
    if (!c->aSlot[i].logits) { rc = SQLITE_NOMEM; goto done; }
  }
  rc = batchAdvance(c, &zErr);
done:
  sqlite3_free(zWho);
  if (rc != SQLITE_OK) {
    if (!zErr) zErr = sqlite3_mprintf("%s: %s", zFunc, sqlite3_errstr(rc));
    batchReset(c);
    return gptext_vtab_error(&pVtab->base, zErr, rc);
  }
  return SQLITE_OK;
}

/* Frees the yielded row's slot and runs to the next finished row. */
static int batchNext(sqlite3_vtab_cursor *cur) {
  BatchCursor *c = (BatchCursor *)cur;
  char *zErr = 0;
  if (c->iCur < 0) return SQLITE_OK;
  slotClear(&c->aSlot[c->iCur]);
  int rc = batchAdvance(c, &zErr);
  if (rc != SQLITE_OK) {
    if (!zErr) zErr = sqlite3_mprintf("gpt_batch: %s", sqlite3_errstr(rc));
    c->iCur = -1;
    return gptext_vtab_error(cur->pVtab, zErr, rc);
  }
  return SQLITE_OK;
}

/* xEof: true when no finished row is in hand. */
static int batchEof(sqlite3_vtab_cursor *cur) {
  return ((BatchCursor *)cur)->iCur < 0;
}

/* The output's tokens as gpt_generate_tokens lists them: with a stop string,
** up to the token in which it begins (the tokens after it, which only
** completed it, are not counted); otherwise every generated token. */
static int outputTokens(const GptModel *m, const GptGeneration *g) {
  if (!g->zFinish || strcmp(g->zFinish, "stop") != 0) return g->nTok;
  int off = 0;
  for (int i = 0; i < g->nTok; i++) {
    int n = 0;
    tok_token_bytes(m->pTok, g->aTok[i], &n);
    if (off + n > g->nText) return i + 1;
    off += n;
  }
  return g->nTok;
}

/* xColumn: column i of the finished row in hand; the hidden columns read
** back the arguments. */
static int batchColumn(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  BatchCursor *c = (BatchCursor *)cur;
  BatchSlot *sl = &c->aSlot[c->iCur];
  switch (i) {
    case 0: sqlite3_result_value(ctx, sl->pKey); break;
    case 1:
      if (!sl->bNullPrompt && gptext_result_fits(ctx, "gpt_batch", c->m->zName, sl->g.nText))
        gptext_result_text(ctx, sl->g.zText, sl->g.nText, SQLITE_TRANSIENT);
      break;
    case 2:
      if (!sl->bNullPrompt) sqlite3_result_text(ctx, sl->g.zFinish, -1, SQLITE_STATIC);
      break;
    case 3: sqlite3_result_int(ctx, sl->bNullPrompt ? 0 : sl->nPrompt); break;
    case 4: sqlite3_result_int(ctx, outputTokens(c->m, &sl->g)); break;
    case BATCH_COL_BYTES:
      if (!sl->bNullPrompt && gptext_result_fits(ctx, "gpt_batch", c->m->zName, sl->g.nText))
        gptext_result_bytes(ctx, sl->g.zText, sl->g.nText, SQLITE_TRANSIENT);
      break;
    case BATCH_COL_CACHED: sqlite3_result_int(ctx, sl->nCached); break;
    default: /* the hidden arguments read back */
      if (i - BATCH_COL_QUERY < 2 && c->apArg[i - BATCH_COL_QUERY])
        sqlite3_result_value(ctx, c->apArg[i - BATCH_COL_QUERY]);
      break;
  }
  return SQLITE_OK;
}

/* The input row's ordinal, with the arguments' fingerprint (see gpt_ext.h).
** The row count is not known ahead, so 2^32 rows are set aside a call: two
** calls' ranges meet with chance 2^-31 (with 2^40, 2^-23: a few thousand
** distinct queries held a pair that a MULTI-INDEX OR told apart wrongly). */
static int batchRowid(sqlite3_vtab_cursor *cur, sqlite_int64 *pRowid) {
  BatchCursor *c = (BatchCursor *)cur;
  *pRowid = gptext_tvf_rowid(c->fp, (sqlite3_int64)1 << 32, c->aSlot[c->iCur].iRow);
  return SQLITE_OK;
}

static sqlite3_module batchModule = {
  0, 0, batchConnect, batchBestIndex, gptext_vtab_disconnect, 0, batchOpen, batchClose,
  batchFilter, batchNext, batchEof, batchColumn, batchRowid,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Registers gpt_batch (DIRECTONLY: it runs a query and the model). */
int gptext_register_batch(sqlite3 *db, GptConn *pConn) {
  return sqlite3_create_module(db, "gpt_batch", &batchModule, pConn);
}
