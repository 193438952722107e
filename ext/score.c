/*
** Scoring, embedding and summarizing text in SQL.
**
**   SELECT gpt_logprob(body), gpt_perplexity(body) FROM docs;
**   SELECT gpt_embed(body) FROM docs;                       -- float32 BLOB
**   SELECT grp, gpt_summarize(body, '{"max_tokens": 48}') FROM docs GROUP BY grp;
**
** gpt_logprob(text [, options]) is the total log-probability (natural log) of
** tokens 2..n of text, each given the tokens before it; gpt_perplexity is
** exp of the mean negative log-likelihood of the same n - 1 tokens. A text of
** zero or one token has logprob 0 (the log-probability of an empty set) and
** perplexity NULL (a mean over nothing is undefined). NULL text gives NULL.
** A text longer than the window (n_ctx tokens) is scored in sliding windows
** of n_ctx tokens with a stride of n_ctx / 2, as in Hugging Face's perplexity
** guide: each token is scored exactly once, with at least n_ctx / 2 tokens of
** context except in the first window, so a long text is never an error.
** Options: model, special.
**
** gpt_embed(text [, options]) is a BLOB of n_embd little-endian float32: the
** output of the final LayerNorm (ln_f) averaged over the text's tokens, or,
** with {"pool": "last"}, that of the last token. It is sqlite-vec's float32
** vector format: vec_distance_cosine(gpt_embed(a), gpt_embed(b)). A text with
** no tokens ('') gives NULL; a text longer than the window is an error unless
** {"truncate": true}, which keeps its last n_ctx tokens. Options: model,
** special, pool, truncate.
**
** gpt_summarize(text [, options]) is an aggregate: it summarizes the group's
** values in the order SQLite feeds them (use an ordered subquery to choose
** it). NULLs and '' are skipped; a group with nothing else gives NULL. The
** prompt is the template with its placeholder {text} replaced by the text;
** the default template is "{text}\nTL;DR:", GPT-2's summary cue, and the
** "template" option must contain {text} exactly once. A model with a chat
** template (and no "template" option) gets instead its chat prompt for one
** user message "Summarize the following text.\n\n{text}" with the
** generation prompt (ext/chat.c), encoded with its special tokens. The
** generation options apply (temperature, top_k, top_p, seed, stop, special, model); max_tokens
** defaults to min(64, n_ctx / 8), 64 for GPT-2. The options are those of
** the group's first non-NULL value (normally a constant). The result is the
** generated text with surrounding whitespace trimmed. A chat template is
** rendered with {"enable_thinking": false} under the "variables" option
** (Qwen3 then answers without reasoning first); a leading
** "<think>...</think>" block (or, after a prompt that ends in "<think>",
** all up to "</think>") is dropped from each summary, and reasoning that
** fills max_tokens without "</think>" is an error.
**
** How gpt_summarize works (rolling refine): values are joined with "\n"
** into a chunk as long as the prompt (the template with the chunk in place
** of {text}, tokenized whole, exactly as gpt_generate would) stays within
** n_ctx - max_tokens tokens, so that the prompt and the summary always fit
** the window. When the next value would not fit, the chunk is summarized and
** the summary (max_tokens tokens at most) starts the next chunk, followed by
** "\n" and the value: each summary refines the previous one with new rows,
** and the last chunk's summary is the result. A value that does not fit even
** beside the running summary alone goes in pieces: as many of its first
** tokens as fit, summarized with the chunk, then the rest the same way.
** The group's first value must leave room for a summary and some text:
** a template and max_tokens too large for the window are an error.
** Interrupts are checked every generated token and between layers.
*/
#include "gpt_ext.h"
#include "sampler.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Reports an error through the context and frees the message. */
static void score_error(sqlite3_context *ctx, int rc, char *zErr) {
  if (zErr) gptext_result_error(ctx, zErr);
  if (rc != SQLITE_ERROR || !zErr) sqlite3_result_error_code(ctx, rc);
  sqlite3_free(zErr);
}

/* The forward pass's interrupt check. */
static int score_should_stop(void *ctx) { return gptext_interrupted((sqlite3 *)ctx); }

/* gpt_forward on nThreads threads (the "threads" option; 0 for all cores),
** with the errors of this file: names the function and model. */
static int score_forward(sqlite3 *db, GptModel *m, const char *zFunc, int nThreads,
                         GPTState *s, const int *aIds, int n, GPTForwardIO *io, char **pzErr) {
  char zMsg[200];
  if (!io->should_stop) {
    io->should_stop = score_should_stop;
    io->ctx = db;
  }
  int nPrevThreads = gpt_threads_set(nThreads);
  int rc = gpt_forward(m->pNet, s, aIds, n, io, zMsg, sizeof(zMsg));
  gpt_threads_set(nPrevThreads);
  if (rc == GPT_OK) return SQLITE_OK;
  if (rc == GPT_ABORTED && gptext_interrupted(db)) {
    gptext_set_error(pzErr, "%s: model '%s': interrupted", zFunc, m->zName);
    return SQLITE_INTERRUPT;
  }
  gptext_set_error(pzErr, "%s: model '%s': %s", zFunc, m->zName, zMsg);
  return rc == GPT_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;
}

/* Options, model (with weights) and token ids of argv[0]: the common start of
** the scalar functions. *pnIds may be 0 (empty text). */
static int score_setup(sqlite3_context *ctx, const char *zFunc, int argc, sqlite3_value **argv,
                       unsigned allowed, GptOptions *o, GptModel **ppM, int **paIds,
                       int *pnIds, char **pzErr) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  int rc = gptext_options_parse(db, zFunc, argc > 1 ? argv[1] : 0, allowed, o, pzErr);
  if (rc == SQLITE_OK)
    rc = gptext_model_acquire(sqlite3_user_data(ctx), db, zFunc, o->zModel, 1, ppM, pzErr);
  if (rc == SQLITE_OK)
    rc = gptext_encode(db, *ppM, zFunc, (const char *)sqlite3_value_text(argv[0]),
                       gptext_value_bytes(argv[0]), o->bAllowSpecial, paIds, pnIds, pzErr);
  return rc;
}

/* ------------------------------------------------ gpt_logprob, perplexity */

/* What the logits callback needs: the window's place in the text and which
** of its tokens to score. */
typedef struct LogprobCtx {
  sqlite3 *db;
  const int *aIds;     /* the whole text */
  int iBegin;          /* text index of the window's first token */
  int iFrom, iEnd;     /* score text tokens iFrom..iEnd-1 */
  int V;
  double sum;          /* sum of their log-probabilities */
  int n;               /* how many were scored */
} LogprobCtx;

/* Window position p predicts text token iBegin + p + 1: adds its
** log-probability when that token is one this window scores. */
static int logprob_on_logits(void *ctx, int pos0, int rows, const float *logits) {
  LogprobCtx *p = (LogprobCtx *)ctx;
  for (int r = 0; r < rows; r++) {
    int t = p->iBegin + pos0 + r + 1;
    if (t < p->iFrom || t >= p->iEnd) continue;
    const float *z = logits + (size_t)r * p->V;
    p->sum += (double)z[p->aIds[t]] - gpt_logsumexp(z, p->V);
    p->n++;
  }
  return 0;
}

/* The forward pass's interrupt check when ctx is a LogprobCtx. */
static int logprob_should_stop(void *ctx) { return gptext_interrupted(((LogprobCtx *)ctx)->db); }

/* Sums log p(token t | tokens before) for t = 1..n-1 over sliding windows of
** n_ctx tokens, stride n_ctx / 2 (see the file comment), on nThreads threads.
** Per-position logits come in row blocks from the engine, never (T, V) at
** once. */
static int score_logprob(sqlite3 *db, GptModel *m, const char *zFunc, int nThreads,
                         const int *aIds, int n, double *pSum, int *pnScored, char **pzErr) {
  int W = m->cfg.n_ctx, S = W / 2 > 0 ? W / 2 : 1, rc = SQLITE_OK;
  LogprobCtx lc;
  GPTState *s = 0;
  memset(&lc, 0, sizeof(lc));
  *pSum = 0;
  *pnScored = 0;
  if (n < 2) return SQLITE_OK;
  if (W < 2) {
    gptext_set_error(pzErr, "%s: model '%s': a context window of %d token leaves no context "
                     "to score with", zFunc, m->zName, W);
    return SQLITE_ERROR;
  }
  s = gpt_state_new(m->pNet, n < W ? n : W);
  if (!s) {
    gptext_set_error(pzErr, "%s: model '%s': out of memory for a KV cache of %d positions",
                     zFunc, m->zName, n < W ? n : W);
    return SQLITE_NOMEM;
  }
  lc.db = db;
  lc.aIds = aIds;
  lc.V = m->cfg.vocab_size;
  for (int iBegin = 0, iPrevEnd = 1;; iBegin += S) {
    int iEnd = iBegin + W < n ? iBegin + W : n;
    GPTForwardIO io;
    memset(&io, 0, sizeof(io));
    lc.iBegin = iBegin;
    lc.iFrom = iPrevEnd;
    lc.iEnd = iEnd;
    io.on_logits = logprob_on_logits;
    io.should_stop = logprob_should_stop;
    io.ctx = &lc;
    gpt_state_truncate(s, 0);
    /* the window's last token predicts nothing inside it: leave it out */
    rc = score_forward(db, m, zFunc, nThreads, s, aIds + iBegin, iEnd - 1 - iBegin, &io, pzErr);
    if (rc != SQLITE_OK) break;
    iPrevEnd = iEnd;
    if (iEnd >= n) break;
  }
  gpt_state_free(s);
  *pSum = lc.sum;
  *pnScored = lc.n;
  return rc;
}

/* gpt_logprob(text [, options]) and gpt_perplexity(text [, options]); the
** user data's low bit is not used: the function name tells them apart. */
static void logprob_common(sqlite3_context *ctx, int argc, sqlite3_value **argv, int bPpl) {
  const char *zFunc = bPpl ? "gpt_perplexity" : "gpt_logprob";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  GptOptions o;
  GptModel *m = 0;
  int *aIds = 0, nIds = 0, nScored = 0, rc;
  double sum = 0;
  char *zErr = 0;
  memset(&o, 0, sizeof(o));
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  rc = score_setup(ctx, zFunc, argc, argv, GPTOPT_MODEL | GPTOPT_SPECIAL | GPTOPT_THREADS, &o,
                   &m, &aIds, &nIds, &zErr);
  if (rc == SQLITE_OK)
    rc = score_logprob(db, m, zFunc, o.nThreads, aIds, nIds, &sum, &nScored, &zErr);
  if (rc != SQLITE_OK) {
    score_error(ctx, rc, zErr);
    zErr = 0;
  } else if (!bPpl) {
    sqlite3_result_double(ctx, sum);
  } else if (nScored > 0) {
    sqlite3_result_double(ctx, exp(-sum / nScored));
  } /* else NULL: no token to average over */
  sqlite3_free(zErr);
  sqlite3_free(aIds);
  gptext_model_release(m);
  gptext_options_clear(&o);
}

/* gpt_logprob(text [, options]) (logprob_common). */
static void gptLogprobFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  logprob_common(ctx, argc, argv, 0);
}

/* gpt_perplexity(text [, options]) (logprob_common). */
static void gptPerplexityFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  logprob_common(ctx, argc, argv, 1);
}

/* -------------------------------------------------------------- gpt_embed */

/* gpt_embed(text [, options]): the pooled ln_f output as float32 LE bytes. */
static void gptEmbedFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char zFunc[] = "gpt_embed";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  GptOptions o;
  GptModel *m = 0;
  GPTState *s = 0;
  float *aHidden = 0;
  unsigned char *aOut = 0;
  int *aIds = 0, nIds = 0, rc;
  char *zErr = 0;
  memset(&o, 0, sizeof(o));
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  rc = score_setup(ctx, zFunc, argc, argv,
                   GPTOPT_MODEL | GPTOPT_SPECIAL | GPTOPT_POOL | GPTOPT_TRUNCATE | GPTOPT_THREADS,
                   &o, &m, &aIds, &nIds, &zErr);
  if (rc != SQLITE_OK || nIds == 0) goto done; /* no tokens: NULL */
  rc = gptext_fit_prompt(m, zFunc, &o, 0, &aIds, &nIds, &zErr);
  if (rc != SQLITE_OK) goto done;
  {
    int C = m->cfg.n_embd;
    GPTForwardIO io;
    aHidden = sqlite3_malloc64(sizeof(float) * (size_t)nIds * (size_t)C);
    aOut = sqlite3_malloc64((size_t)C * 4);
    s = gpt_state_new(m->pNet, nIds);
    if (!aHidden || !aOut || !s) { rc = SQLITE_NOMEM; goto done; }
    memset(&io, 0, sizeof(io));
    io.hidden = aHidden;
    rc = score_forward(db, m, zFunc, o.nThreads, s, aIds, nIds, &io, &zErr);
    if (rc != SQLITE_OK) goto done;
    for (int c = 0; c < C; c++) {
      float f;
      if (o.bPoolLast) {
        f = aHidden[(size_t)(nIds - 1) * C + c];
      } else {
        double sum = 0;
        for (int t = 0; t < nIds; t++) sum += aHidden[(size_t)t * C + c];
        f = (float)(sum / nIds);
      }
      uint32_t u;
      memcpy(&u, &f, 4);
      aOut[4 * c] = (unsigned char)u;
      aOut[4 * c + 1] = (unsigned char)(u >> 8);
      aOut[4 * c + 2] = (unsigned char)(u >> 16);
      aOut[4 * c + 3] = (unsigned char)(u >> 24);
    }
    if (gptext_result_fits(ctx, zFunc, m->zName, (sqlite3_int64)C * 4)) {
      sqlite3_result_blob64(ctx, aOut, (sqlite3_uint64)C * 4, sqlite3_free);
      aOut = 0;
    }
  }
done:
  if (rc != SQLITE_OK) {
    if (rc == SQLITE_NOMEM && !zErr)
      zErr = m ? sqlite3_mprintf("%s: model '%s': out of memory", zFunc, m->zName) : 0;
    score_error(ctx, rc, zErr);
    zErr = 0;
  }
  sqlite3_free(zErr);
  sqlite3_free(aOut);
  sqlite3_free(aHidden);
  gpt_state_free(s);
  sqlite3_free(aIds);
  gptext_model_release(m);
  gptext_options_clear(&o);
}

/* ---------------------------------------------------------- gpt_summarize */

#define SUM_PLACEHOLDER "{text}"
#define SUM_DEFAULT_TEMPLATE "{text}\nTL;DR:"

/* One group's state, in sqlite3_aggregate_context memory (zeroed at first).
** The chunk is kept as text and every prompt is tokenized whole, exactly as
** gpt_generate would tokenize the same string. */
typedef struct SumAgg {
  int bInit;           /* set up by the first value */
  int bFailed;         /* a step failed: xFinal only frees */
  sqlite3 *db;         /* the aggregate's connection (its interrupts) */
  GptModel *m;
  GptOptions o;
  char *zPre;          /* template text before {text} */
  char *zPost;         /* and after it */
  int nPre, nPost;
  int nLimit;          /* most tokens a prompt may have: n_ctx - max_tokens */
  int nTpl;            /* tokens of the template alone */
  char *zChunk;        /* the chunk: summary and rows joined by "\n" */
  int nChunk;          /* its bytes */
  int nRows;           /* rows in it (not counting a carried summary) */
  int bThinkOpen;      /* the prompt ends in "<think>": generation starts reasoning */
  char *zOpt;          /* the first row's options as bytes, NULL for none */
  int nOpt;
  int eOptType;        /* their SQL type */
} SumAgg;

/* Frees everything the state holds (not the state: SQLite owns it). */
static void sum_clear(SumAgg *p) {
  sqlite3_free(p->zPre);
  sqlite3_free(p->zPost);
  sqlite3_free(p->zChunk);
  sqlite3_free(p->zOpt);
  gptext_model_release(p->m);
  gptext_options_clear(&p->o);
  memset(p, 0, sizeof(*p));
}

/* The ASCII white space trimmed from the ends of a summary. */
static int sum_is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Whether z (n bytes) ends in "<think>", white space after it aside. */
static int sum_ends_thinking(const char *z, int n) {
  while (n > 0 && sum_is_space(z[n - 1])) n--;
  return n >= 7 && memcmp(z + n - 7, "<think>", 7) == 0;
}

/* Tokenizes the prompt for a chunk body made of up to three pieces (a NULL
** piece is absent): template before, the pieces, template after. */
static int sum_prompt(SumAgg *p, const char *zFunc, const char *z1, int n1, const char *z2,
                      int n2, const char *z3, int n3, int **paIds, int *pnIds, char **pzErr) {
  sqlite3_int64 n = (sqlite3_int64)p->nPre + n1 + n2 + n3 + p->nPost;
  char *z = sqlite3_malloc64((sqlite3_uint64)n + 1);
  int rc, i = 0;
  *paIds = 0;
  *pnIds = 0;
  if (!z) return SQLITE_NOMEM;
  memcpy(z + i, p->zPre, (size_t)p->nPre); i += p->nPre;
  if (z1) { memcpy(z + i, z1, (size_t)n1); i += n1; }
  if (z2) { memcpy(z + i, z2, (size_t)n2); i += n2; }
  if (z3) { memcpy(z + i, z3, (size_t)n3); i += n3; }
  memcpy(z + i, p->zPost, (size_t)p->nPost); i += p->nPost;
  z[i] = 0;
  rc = gptext_encode(p->db, p->m, zFunc, z, i, p->o.bAllowSpecial, paIds, pnIds, pzErr);
  sqlite3_free(z);
  return rc;
}

/* Tokens of the prompt for that body (see sum_prompt), or -1 on error. */
static int sum_count(SumAgg *p, const char *zFunc, const char *z1, int n1, const char *z2,
                     int n2, const char *z3, int n3, char **pzErr) {
  int *aIds = 0, nIds = 0;
  int rc = sum_prompt(p, zFunc, z1, n1, z2, n2, z3, n3, &aIds, &nIds, pzErr);
  sqlite3_free(aIds);
  return rc == SQLITE_OK ? nIds : -1;
}

/* First value of the group: options (of this row), model, template, and
** the check that a summary, a separator and some text fit beside them. */
static int sum_init(SumAgg *p, sqlite3_context *ctx, const char *zFunc, sqlite3_value *pOpt,
                    char **pzErr) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  p->db = db;
  int rc = gptext_options_parse(db, zFunc, pOpt,
                                GPTOPT_MODEL | GPTOPT_GENERATE | GPTOPT_TEMPLATE |
                                GPTOPT_SPECIAL | GPTOPT_THREADS | GPTOPT_CHATVARS, &p->o, pzErr);
  if (rc != SQLITE_OK) return rc;
  rc = gptext_model_acquire(sqlite3_user_data(ctx), db, zFunc, p->o.zModel, 1, &p->m, pzErr);
  if (rc != SQLITE_OK) return rc;
  const char *zTpl = p->o.zTemplate ? p->o.zTemplate : SUM_DEFAULT_TEMPLATE;
  const char *zAt = strstr(zTpl, SUM_PLACEHOLDER);
  if (!zAt || strstr(zAt + 1, SUM_PLACEHOLDER)) {
    gptext_set_error(pzErr, "%s: model '%s': option \"template\" must contain %s exactly "
                     "once, like \"%s\"", zFunc, p->m->zName, SUM_PLACEHOLDER, "{text}\\nTL;DR:");
    return SQLITE_ERROR;
  }
  p->nPre = (int)(zAt - zTpl);
  p->zPre = sqlite3_mprintf("%.*s", p->nPre, zTpl);
  p->zPost = sqlite3_mprintf("%s", zAt + strlen(SUM_PLACEHOLDER));
  if (!p->zPre || !p->zPost) return SQLITE_NOMEM;
  p->nPost = (int)strlen(p->zPost);
  if (!p->o.zTemplate) {
    /* a model with a chat template gets its summary request as a user turn */
    char *zChat = 0;
    rc = gptext_chat_summary_template(p->m, zFunc, p->o.zVariables, &zChat, pzErr);
    if (rc != SQLITE_OK) return rc;
    if (zChat) {
      zAt = strstr(zChat, SUM_PLACEHOLDER); /* exactly once: checked there */
      sqlite3_free(p->zPre);
      sqlite3_free(p->zPost);
      p->nPre = (int)(zAt - zChat);
      p->zPre = sqlite3_mprintf("%.*s", p->nPre, zChat);
      p->zPost = sqlite3_mprintf("%s", zAt + strlen(SUM_PLACEHOLDER));
      sqlite3_free(zChat);
      if (!p->zPre || !p->zPost) return SQLITE_NOMEM;
      p->nPost = (int)strlen(p->zPost);
      p->o.bAllowSpecial = GPTEXT_ENCODE_CHAT; /* special tokens, no extra BOS */
    }
  }
  if (p->o.zVariables && p->o.bAllowSpecial != GPTEXT_ENCODE_CHAT) {
    gptext_set_error(pzErr, "%s: model '%s': option \"variables\" applies to the model's chat "
                     "template, and %s", zFunc, p->m->zName,
                     p->o.zTemplate ? "option \"template\" replaces it" : "the model has none");
    return SQLITE_ERROR;
  }
  int nCtx = p->m->cfg.n_ctx;
  p->bThinkOpen = sum_ends_thinking(p->zPost, p->nPost);
  if (!(p->o.given & GPTOPT_MAXTOKENS))
    p->o.nMaxTokens = nCtx / 8 < 64 ? (nCtx / 8 > 0 ? nCtx / 8 : 1) : 64;
  int nTpl = sum_count(p, zFunc, 0, 0, 0, 0, 0, 0, pzErr);
  if (nTpl < 0) return SQLITE_ERROR;
  p->nTpl = nTpl;
  p->nLimit = nCtx - p->o.nMaxTokens;
  if ((sqlite3_int64)p->nLimit - nTpl < (sqlite3_int64)p->o.nMaxTokens + 2) {
    gptext_set_error(pzErr, "%s: model '%s': the template (%d tokens) and max_tokens (%d) "
                     "leave too little room for text in the context window of %d tokens",
                     zFunc, p->m->zName, nTpl, p->o.nMaxTokens, nCtx);
    return SQLITE_ERROR;
  }
  p->bInit = 1;
  return SQLITE_OK;
}

/* Summarizes the chunk: the template around it, then generation. The
** trimmed text goes to *pzOut (sqlite3_malloc'd) when pzOut is given;
** otherwise it becomes the chunk (at most max_tokens tokens of it). */
static int sum_chunk(SumAgg *p, sqlite3_context *ctx, const char *zFunc, char **pzOut,
                     char **pzErr) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  GptGeneration g;
  int *aIds = 0, nIds = 0, rc;
  memset(&g, 0, sizeof(g));
  rc = sum_prompt(p, zFunc, p->zChunk, p->nChunk, 0, 0, 0, 0, &aIds, &nIds, pzErr);
  if (rc == SQLITE_OK) rc = gptext_fit_prompt(p->m, zFunc, &p->o, p->o.nMaxTokens, &aIds, &nIds, pzErr);
  if (rc == SQLITE_OK)
    rc = gptext_generate(sqlite3_user_data(ctx), db, p->m, zFunc, &p->o, aIds, nIds, &g, pzErr);
  sqlite3_free(aIds);
  aIds = 0;
  if (rc != SQLITE_OK) goto done;
  int i0 = 0, i1 = g.nText;
  while (i0 < i1 && sum_is_space(g.zText[i0])) i0++;
  /* reasoning that a thinking model wrote anyway (its template took no
  ** enable_thinking, or its prompt opened the block) is no part of the
  ** summary, nor of the next chunk; reasoning that never ends is no summary */
  int bOpens = i1 - i0 >= 7 && memcmp(g.zText + i0, "<think>", 7) == 0;
  if (p->bThinkOpen || bOpens) {
    const char *zEnd = memmem(g.zText + i0, (size_t)(i1 - i0), "</think>", 8);
    if (!zEnd) {
      gptext_set_error(pzErr, "%s: model '%s': the model reasoned for all of max_tokens (%d) "
                       "and wrote no summary (\"<think>\" without \"</think>\"); raise "
                       "max_tokens", zFunc, p->m->zName, p->o.nMaxTokens);
      rc = SQLITE_ERROR;
      goto done;
    }
    i0 = (int)(zEnd - g.zText) + 8;
    while (i0 < i1 && sum_is_space(g.zText[i0])) i0++;
  }
  while (i1 > i0 && sum_is_space(g.zText[i1 - 1])) i1--;
  char *z = sqlite3_malloc64((size_t)(i1 - i0) + 1);
  if (!z) { rc = SQLITE_NOMEM; goto done; }
  memcpy(z, g.zText + i0, (size_t)(i1 - i0));
  z[i1 - i0] = 0;
  if (pzOut) {
    *pzOut = z;
    goto done;
  }
  sqlite3_free(p->zChunk);
  p->zChunk = z;
  p->nChunk = i1 - i0;
  p->nRows = 0;
  /* The summary has max_tokens tokens, but its text may re-encode into
  ** more, and tokens do not add up: the "\n" after it can join its last
  ** word. The whole prompt it begins (with the separator and the template)
  ** must leave room for a few tokens of text; else it is cut to its first k
  ** tokens, k shrinking by the overflow. A cut is decoded into a new buffer:
  ** decoding after NFC can give more bytes than the text had. */
  rc = gptext_encode(p->db, p->m, zFunc, z, p->nChunk, GPTEXT_ENCODE_NO_BOS, &aIds, &nIds, pzErr);
  for (int k = nIds; rc == SQLITE_OK;) {
    int nTok = sum_count(p, zFunc, p->zChunk, p->nChunk, "\n", 1, 0, 0, pzErr);
    if (nTok < 0) { rc = SQLITE_ERROR; break; }
    if (nTok <= p->nLimit - 2) break;
    k -= nTok - (p->nLimit - 2);
    if (k > p->o.nMaxTokens) k = p->o.nMaxTokens;
    char *zCut = 0;
    size_t nCut = 0;
    int bad = 0;
    if (k < 1) {
      p->nChunk = 0; /* no room for any of it */
      p->zChunk[0] = 0;
      break;
    }
    if (tok_decode(p->m->pTok, aIds, (size_t)k, &zCut, &nCut, &bad) || nCut > 0x7ffffffe) {
      free(zCut);
      rc = SQLITE_NOMEM;
      break;
    }
    char *zNew = sqlite3_malloc64(nCut + 1);
    if (!zNew) { free(zCut); rc = SQLITE_NOMEM; break; }
    memcpy(zNew, zCut, nCut);
    zNew[nCut] = 0;
    free(zCut);
    sqlite3_free(p->zChunk);
    p->zChunk = zNew;
    p->nChunk = (int)nCut;
  }
done:
  sqlite3_free(aIds);
  gptext_generation_clear(&g);
  return rc;
}

/* Appends "\n" (unless the chunk is empty) and n bytes of z to the chunk. */
static int sum_append(SumAgg *p, const char *z, int n) {
  int nSep = p->nChunk > 0 ? 1 : 0;
  char *zNew = sqlite3_realloc64(p->zChunk, (sqlite3_uint64)p->nChunk + nSep + n + 1);
  if (!zNew) return SQLITE_NOMEM;
  p->zChunk = zNew;
  if (nSep) p->zChunk[p->nChunk++] = '\n';
  memcpy(p->zChunk + p->nChunk, z, (size_t)n);
  p->nChunk += n;
  p->zChunk[p->nChunk] = 0;
  p->nRows++;
  return SQLITE_OK;
}

/* Keeps the first row's options (bInit) or checks that a later row's are
** the same: they are read once for the group, and a later row's had gone
** unread, invalid or not. */
static int sum_same_options(SumAgg *p, const char *zFunc, sqlite3_value *pOpt, int bInit,
                            char **pzErr) {
  int eType = pOpt ? sqlite3_value_type(pOpt) : SQLITE_NULL;
  const void *a = eType == SQLITE_NULL ? 0 : eType == SQLITE_BLOB ? sqlite3_value_blob(pOpt)
                                                                  : sqlite3_value_text(pOpt);
  int n = eType == SQLITE_NULL ? 0 : sqlite3_value_bytes(pOpt);
  if (eType != SQLITE_NULL && !a && n > 0) return SQLITE_NOMEM;
  if (bInit) {
    p->eOptType = eType;
    p->nOpt = n;
    if (n > 0 && !(p->zOpt = sqlite3_malloc(n))) return SQLITE_NOMEM;
    if (n > 0) memcpy(p->zOpt, a, (size_t)n);
    return SQLITE_OK;
  }
  if (eType == p->eOptType && n == p->nOpt && (n == 0 || memcmp(a, p->zOpt, (size_t)n) == 0))
    return SQLITE_OK;
  gptext_set_error(pzErr, "%s: model '%s': every row of a group must give the same options "
                   "(they are read once, from the group's first row)", zFunc, p->m->zName);
  return SQLITE_ERROR;
}

/* xStep: adds one value to the chunk, summarizing the chunk first when the
** prompt with the value would not fit. A value that does not fit even
** beside the running summary alone keeps its first tokens. */
static void gptSummarizeStep(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char zFunc[] = "gpt_summarize";
  SumAgg *p = sqlite3_aggregate_context(ctx, sizeof(SumAgg));
  int *aIds = 0, nIds = 0, rc = SQLITE_OK, n;
  char *zErr = 0, *zCut = 0;
  char *zRest = 0; /* the part of a long value after its pieces so far */
  const char *z;
  if (!p) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (p->bFailed || sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  sqlite3_value *pOpt = argc > 1 ? argv[1] : 0;
  int bFirst = !p->bInit;
  if (bFirst) rc = sum_init(p, ctx, zFunc, pOpt, &zErr);
  if (rc == SQLITE_OK) rc = sum_same_options(p, zFunc, pOpt, bFirst, &zErr);
  if (rc != SQLITE_OK) goto done;
  z = (const char *)sqlite3_value_text(argv[0]);
  n = sqlite3_value_bytes(argv[0]);
  if (!z || n == 0) goto done; /* '' adds nothing */
  if (p->nRows > 0) {
    int nTok = sum_count(p, zFunc, p->zChunk, p->nChunk, "\n", 1, z, n, &zErr);
    if (nTok < 0) { rc = SQLITE_ERROR; goto done; }
    if (nTok <= p->nLimit) {
      rc = sum_append(p, z, n);
      goto done;
    }
    rc = sum_chunk(p, ctx, zFunc, 0, &zErr);
    if (rc != SQLITE_OK) goto done;
  }
  for (int bRetry = 1;;) {
    const char *zSep = p->nChunk > 0 ? "\n" : 0;
    int nTok = sum_count(p, zFunc, p->zChunk, p->nChunk, zSep, zSep ? 1 : 0, z, n, &zErr);
    if (nTok < 0) { rc = SQLITE_ERROR; goto done; }
    if (nTok > p->nLimit) {
      /* too long for the room left: keep the first k tokens, k shrinking
      ** by the overflow until the whole prompt fits */
      /* a piece of the prompt, cut by decoding: no BOS */
      sqlite3_free(aIds);
      aIds = 0;
      rc = gptext_encode(p->db, p->m, zFunc, z, n, p->o.bAllowSpecial | GPTEXT_ENCODE_NO_BOS, &aIds,
                         &nIds, &zErr);
      if (rc != SQLITE_OK) goto done;
      int k = nIds - (nTok - p->nLimit);
      for (;;) {
        size_t nOut = 0;
        int bad = 0;
        if (k < 1) break;
        char *zPrev = zCut;
        zCut = 0;
        if (tok_decode(p->m->pTok, aIds, (size_t)k, &zCut, &nOut, &bad)) {
          free(zPrev);
          rc = SQLITE_NOMEM;
          goto done;
        }
        nTok = sum_count(p, zFunc, p->zChunk, p->nChunk, zSep, zSep ? 1 : 0, zCut, (int)nOut, &zErr);
        free(zPrev); /* z may point into it until here */
        if (nTok < 0) { rc = SQLITE_ERROR; goto done; }
        if (nTok <= p->nLimit) { z = zCut; n = (int)nOut; break; }
        k -= nTok - p->nLimit;
      }
      if (k < 1) {
        /* not even a token of it fits after the carried summary: the value
        ** goes on without that summary (a prompt over the window is never
        ** made) */
        if (bRetry && p->nChunk > 0) {
          p->nChunk = 0;
          p->zChunk[0] = 0;
          bRetry = 0;
          continue;
        }
        n = 0;
      } else if (k < nIds) {
        /* the piece that fits, summarized with the chunk; then the rest of
        ** the value, a piece at a time (its tail was dropped) */
        size_t nOut = 0;
        int bad = 0;
        char *zNext = 0;
        if (tok_decode(p->m->pTok, aIds + k, (size_t)(nIds - k), &zNext, &nOut, &bad) ||
            nOut > 0x7ffffffe) {
          free(zNext);
          rc = SQLITE_NOMEM;
          goto done;
        }
        rc = sum_append(p, z, n);
        if (rc == SQLITE_OK) rc = sum_chunk(p, ctx, zFunc, 0, &zErr);
        free(zRest);
        zRest = zNext;
        if (rc != SQLITE_OK) goto done;
        z = zRest;
        n = (int)nOut;
        bRetry = 1;
        continue;
      }
    }
    rc = sum_append(p, z, n);
    break;
  }
done:
  if (rc != SQLITE_OK) {
    p->bFailed = 1;
    if (rc == SQLITE_NOMEM && !zErr) zErr = sqlite3_mprintf("%s: out of memory", zFunc);
    score_error(ctx, rc, zErr);
    zErr = 0;
  }
  free(zCut);
  free(zRest);
  sqlite3_free(zErr);
  sqlite3_free(aIds);
}

/* xFinal: summarizes the last chunk; NULL for a group with no text. Also
** frees the state, which SQLite calls it for even after a failed step. */
static void gptSummarizeFinal(sqlite3_context *ctx) {
  static const char zFunc[] = "gpt_summarize";
  SumAgg *p = sqlite3_aggregate_context(ctx, 0);
  char *zOut = 0, *zErr = 0;
  if (!p) return; /* no row at all */
  if (!p->bFailed && p->bInit && p->nRows > 0) {
    int rc = sum_chunk(p, ctx, zFunc, &zOut, &zErr);
    if (rc != SQLITE_OK) {
      if (rc == SQLITE_NOMEM && !zErr) zErr = sqlite3_mprintf("%s: out of memory", zFunc);
      score_error(ctx, rc, zErr);
      zErr = 0;
    } else {
      gptext_result_text(ctx, zOut, (int)strlen(zOut), sqlite3_free); /* valid UTF-8 */
      zOut = 0;
    }
  }
  sqlite3_free(zOut);
  sqlite3_free(zErr);
  sum_clear(p);
}

/* ---------------------------------------------------------- registration */

/* Registers the scoring functions and the gpt_summarize aggregate. All run
** the model, so they are DIRECTONLY (never from a schema's views, triggers
** or indexes) and not DETERMINISTIC. */
int gptext_register_score(sqlite3 *db, GptConn *pConn) {
  static const struct {
    const char *zName;
    void (*xFunc)(sqlite3_context *, int, sqlite3_value **);
  } aFunc[] = {
    {"gpt_logprob", gptLogprobFunc},
    {"gpt_perplexity", gptPerplexityFunc},
    {"gpt_embed", gptEmbedFunc},
  };
  int rc = SQLITE_OK;
  for (size_t i = 0; rc == SQLITE_OK && i < sizeof(aFunc) / sizeof(aFunc[0]); i++) {
    for (int nArg = 1; rc == SQLITE_OK && nArg <= 2; nArg++)
      rc = sqlite3_create_function(db, aFunc[i].zName, nArg, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                   pConn, aFunc[i].xFunc, 0, 0);
  }
  for (int nArg = 1; rc == SQLITE_OK && nArg <= 2; nArg++)
    rc = sqlite3_create_function(db, "gpt_summarize", nArg, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                 pConn, 0, gptSummarizeStep, gptSummarizeFinal);
  return rc;
}
