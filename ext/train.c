/*
** gpt_train(): trains a new GPT-2 model, or fine-tunes an existing one of
** any architecture (GPT-2, Llama, Qwen2, Qwen3), on the text rows of a
** query, inside the database.
**
**   SELECT gpt_train('bard', 'SELECT line FROM plays',
**                    '{"tokenizer": "bard-tok", "n_layer": 4, "n_embd": 256,
**                      "steps": 2000, "checkpoint_every": 200}');
**
** returns a one-line summary. Options (defaults):
**   n_layer 4, n_head 4, n_embd 128, n_ctx 128   shape of a new model; for
**                  an existing one n_ctx is the training window, at most
**                  the model's n_ctx (default: that, capped at 1024)
**   tokenizer      the model whose tokenizer a new model takes (required)
**   steps 1000     optimizer steps of the whole run
**   batch_size 8   sequences of n_ctx tokens a step
**   learning_rate 1e-3, warmup 100 (capped at steps / 10 when larger),
**                  cosine decay to learning_rate / 10
**   weight_decay 0.1 (2-D weights only), grad_clip 1.0 (0: off)
**   seed 1337      initialization and the batches
**   checkpoint_every 100   steps between checkpoints (the last step always)
**   val_fraction 0.1       the last part of the tokens, held out
**   max_tokens 16777216    tokens kept of the query (see below)
**   stop_after     end this call after that step, at a checkpoint; the next
**                  call resumes (time-boxed runs)
**   threads        threads of the passes (0: every core)
**
** How it works: the query is run first, its rows tokenized one at a time
** into a token buffer, <|endoftext|> between rows when the tokenizer has
** it. The buffer holds at most max_tokens: past that, chunks of 4096 tokens
** are kept by reservoir sampling (seeded), so a query of a million rows
** streams in bounded memory. The last val_fraction of the buffer is the
** validation set. Each step sums the gradients of batch_size windows drawn
** from the rest (the offsets a function of seed and step only), clips them,
** and applies AdamW (engine/train.c).
**
** Fine-tuning loads the model through the model cache (every check of the
** loader, tensors stored in parts included) and trains a copy widened to
** f32: a model stored as f16, bf16 or q8_0 is written back as f32.
**
** Checkpoints: every checkpoint_every steps the weights go to gpt_tensors
** as f32 rows, the AdamW moments and the step to gpt_train_state, in one
** savepoint that takes the write lock first (ext/savepoint.c; outside a
** transaction it is a transaction of its own). A tensor (or moment) larger
** than a BLOB may be (SQLITE_LIMIT_LENGTH) is written as row-aligned parts
** NAME#0, NAME#1, ..., as gpt_import writes it, replacing the tensor's rows
** in either layout. A new
** model, its tokenizer rows included, appears with its first checkpoint.
** Progress rows go to gpt_train_log as they come, each committed by itself
** in autocommit mode. A call on a model whose run is unfinished (its step
** below its steps) resumes it from the last checkpoint with the run's own
** options (an option given otherwise is refused, naming both values;
** stop_after and threads are the call's), and gives the same weights as an uninterrupted run (a query that
** gives other tokens than the run's, by count and hash, is refused); an
** interrupt stops the call, leaving the last checkpoint.
*/
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "gpt_ext.h"
#include "bpe.h"
#include "gpt_internal.h"
#include "train.h"

static const char zFunc[] = "gpt_train";

/* What both functions say of the caller's transaction after an interrupted
** write, which SQLite ends whole. */
#define TRAIN_TXN_ROLLED_BACK \
  "inside the caller's transaction, which SQLite rolled back (an interrupted write ends the " \
  "whole transaction)"

#define TOKEN_CHUNK 4096
#define VAL_SEQUENCES 16   /* sequences of the validation loss */

static const char zTrainSchema[] =
  "CREATE TABLE IF NOT EXISTS gpt_train_state("
  "  model TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,"
  "  PRIMARY KEY(model, name));"
  "CREATE TABLE IF NOT EXISTS gpt_train_log("
  "  model TEXT NOT NULL, step INTEGER NOT NULL, loss REAL, val_loss REAL, lr REAL,"
  "  tokens_per_s REAL, elapsed_s REAL);";

/* The options of a run (see the header comment). */
typedef struct TrainOpts {
  int nLayer, nHead, nEmbd, nCtx;
  int bShape;                /* n_layer, n_head or n_embd was given */
  int bCtx;                  /* n_ctx was given */
  char *zTok;                /* "tokenizer" */
  int64_t steps, batch, seed, ckptEvery, warmup, stopAfter, maxTokens;
  double lr, wd, clip, valFrac;
  int threads;
  uint32_t given;            /* bit i: aTrainKey[i] was given */
} TrainOpts;

/* The numeric options: where each goes in TrainOpts ('i' int, 'L' int64_t,
** 'd' double), its range, and whether it defines a run (held in its state
** row: a resumed call may repeat it, not change it). */
typedef struct TrainKey {
  const char *zKey;
  size_t off;
  char type, bRun;
  double lo, hi;
} TrainKey;
#define TRAIN_KEY(zKey, field, type, bRun, lo, hi) \
  {zKey, offsetof(TrainOpts, field), type, bRun, lo, hi}
static const TrainKey aTrainKey[] = {
  TRAIN_KEY("n_layer", nLayer, 'i', 0, 1, 64),
  TRAIN_KEY("n_head", nHead, 'i', 0, 1, 64),
  TRAIN_KEY("n_embd", nEmbd, 'i', 0, 1, 4096),
  TRAIN_KEY("n_ctx", nCtx, 'i', 1, 2, 4096),
  TRAIN_KEY("steps", steps, 'L', 1, 1, 1e9),
  TRAIN_KEY("batch_size", batch, 'L', 1, 1, 4096),
  TRAIN_KEY("seed", seed, 'L', 1, -9.2e18, 9.2e18),
  TRAIN_KEY("checkpoint_every", ckptEvery, 'L', 1, 1, 1e9),
  TRAIN_KEY("warmup", warmup, 'L', 1, 0, 1e9),
  TRAIN_KEY("stop_after", stopAfter, 'L', 0, 1, 1e9),
  TRAIN_KEY("max_tokens", maxTokens, 'L', 1, 1024, 1e9),
  TRAIN_KEY("threads", threads, 'i', 0, 0, 256),
  TRAIN_KEY("learning_rate", lr, 'd', 1, 0, 10),
  TRAIN_KEY("weight_decay", wd, 'd', 1, 0, 10),
  TRAIN_KEY("grad_clip", clip, 'd', 1, 0, 1e6),
  TRAIN_KEY("val_fraction", valFrac, 'd', 1, 0, 0.9),
};
#define TRAIN_N_KEY (sizeof(aTrainKey) / sizeof(aTrainKey[0]))

/* Option k of o as SQL would print it, into z (n bytes). */
static void trainKeyText(char *z, int n, const TrainOpts *o, const TrainKey *k) {
  const char *at = (const char *)o + k->off;
  if (k->type == 'i') sqlite3_snprintf(n, z, "%d", *(const int *)at);
  else if (k->type == 'L') sqlite3_snprintf(n, z, "%lld", (long long)*(const int64_t *)at);
  else sqlite3_snprintf(n, z, "%!.15g", *(const double *)at);
}

/* True when option k holds the same value in a and b (a double exactly: the
** state row keeps 17 digits, "%!.17g"). */
static int trainKeySame(const TrainOpts *a, const TrainOpts *b, const TrainKey *k) {
  const char *x = (const char *)a + k->off, *y = (const char *)b + k->off;
  if (k->type == 'i') return *(const int *)x == *(const int *)y;
  if (k->type == 'L') return *(const int64_t *)x == *(const int64_t *)y;
  return *(const double *)x == *(const double *)y;
}

/* One call's state. */
typedef struct Train {
  sqlite3 *db;
  GptConn *pConn;
  const char *zModel;
  char *zErr;
  int rcErr;                 /* SQLite's code of the error, when not SQLITE_ERROR */
  TrainOpts o;
  GptModel *pTokM;           /* the model whose tokenizer encodes the rows */
  int *aTok;                 /* token buffer */
  int64_t nTok, nTrain;
  GPTModel *pNet;
  int hasHead;
  sqlite3_int64 stamp;       /* gpt_models.stamp as loaded or last checkpointed */
  GPTTrainer *pTr;
  int T;
  int64_t step;              /* steps done */
  int bNew;                  /* the model has no rows yet */
  int bCallerTxn;            /* called inside the caller's transaction */
  GptSavepoint sp;           /* the checkpoint's */
  double elapsed0;           /* seconds of earlier calls of this run */
  char *zPendingLog;         /* log INSERTs of a new run before its first checkpoint */
  int bClearLog;             /* a new run: its first checkpoint clears the earlier run's log */
  uint64_t tokHash;          /* a new model's: its tokenizer's rows when the run began */
  double tStopCheck;         /* when trainShouldStop last asked SQLite */
  char zCorpus[17];          /* the token buffer's hash, 16 hex digits */
  char zRunCorpus[17];       /* a resumed run's, "" when its state has none */
  int64_t nRunTok;           /* a resumed run's token count */
  int64_t ckptStep;          /* the step of the checkpoint that stands, -1 when none */
} Train;

/* Records the first error: "gpt_train: model 'NAME': ...". */
static int trainError(Train *t, const char *zFmt, ...) {
  va_list ap;
  if (t->zErr) return SQLITE_ERROR;
  va_start(ap, zFmt);
  char *zMsg = sqlite3_vmprintf(zFmt, ap);
  va_end(ap);
  t->zErr = sqlite3_mprintf("%s: model '%s': %s", zFunc, t->zModel, zMsg ? zMsg : "out of memory");
  /* out of memory is SQLITE_NOMEM, as README promises (it was SQLITE_ERROR) */
  if (!t->rcErr && (!zMsg || strncmp(zFmt, "out of memory", 13) == 0)) t->rcErr = SQLITE_NOMEM;
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/* An interrupt, before or between or inside steps, with SQLITE_INTERRUPT
** as the call's code; the message says what stands. */
static int trainInterrupted(Train *t) {
  if (t->zErr) return SQLITE_ERROR;
  t->rcErr = SQLITE_INTERRUPT;
  if (t->ckptStep >= 0)
    return trainError(t, "interrupted at step %lld; the checkpoint of step %lld stands",
                      (long long)t->step, (long long)t->ckptStep);
  return trainError(t, "interrupted at step %lld, before the run's first checkpoint; %s",
                    (long long)t->step, t->bNew ? "nothing was written" : "the model is as it was");
}

/* A callee's failure, its message in t->zErr: an interrupt gets this
** file's message (naming the model), other codes are kept. */
static int trainCalleeFailed(Train *t, int rc) {
  if (rc == SQLITE_INTERRUPT) {
    sqlite3_free(t->zErr);
    t->zErr = 0;
    return trainInterrupted(t);
  }
  /* the callee's code first: a message of our own is NOMEM's only when
  ** the callee had none */
  if (!t->rcErr && rc != SQLITE_ERROR) t->rcErr = rc;
  if (!t->zErr) trainError(t, "out of memory");
  return SQLITE_ERROR;
}

/* The connection's last error, as the call's. Its message and code are
** read first: on SQLite before 3.41 the interrupt check runs a statement,
** which replaced them with "not an error". */
static int trainSqlErrorAt(Train *t, int64_t iRow) {
  char *zMsg = 0;
  int rc = gptext_sql_failure(t->db, sqlite3_errcode(t->db), &zMsg);
  if (rc == SQLITE_INTERRUPT) trainInterrupted(t);
  else if (iRow > 0) trainError(t, "the query failed at row %lld: %s", (long long)iRow,
                                zMsg ? zMsg : "out of memory");
  else trainError(t, "%s", zMsg ? zMsg : "out of memory");
  if (!t->rcErr && rc != SQLITE_OK) t->rcErr = rc;
  sqlite3_free(zMsg);
  return SQLITE_ERROR;
}

/* trainSqlErrorAt with no query row to name. */
static int trainSqlError(Train *t) { return trainSqlErrorAt(t, 0); }

/* Monotonic seconds, for the tokens-per-second figure of the log. */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The trainer's interrupt check, asked between the layers of a window's
** passes (a window of 2048 tokens of a 26M-parameter model takes 25 s on 2
** cores): SQLite is asked at most every 20 ms, since on SQLite before 3.41
** the check runs a statement. */
static int trainShouldStop(void *ctx) {
  Train *t = (Train *)ctx;
  double tNow = now_s();
  if (tNow - t->tStopCheck < 0.02) return 0;
  t->tStopCheck = tNow;
  return gptext_interrupted(t->db);
}

/* ------------------------------------------------------------- options */

/* Parses the options object into t->o (defaults first). Integers must be
** integers in range; an unknown key is an error. */
static int trainParseOptionsJson(Train *t, sqlite3_value *pArg) {
  TrainOpts *o = &t->o;
  o->nLayer = 4; o->nHead = 4; o->nEmbd = 128; o->nCtx = 128;
  o->steps = 1000; o->batch = 8; o->seed = 1337; o->ckptEvery = 100; o->warmup = -1;
  o->stopAfter = -1; o->maxTokens = 16777216;
  o->lr = 1e-3; o->wd = 0.1; o->clip = 1.0; o->valFrac = 0.1; o->threads = 0;
  if (!pArg || sqlite3_value_type(pArg) == SQLITE_NULL) return SQLITE_OK;
  if (sqlite3_value_type(pArg) == SQLITE_TEXT &&
      gptext_json_has_nul((const char *)sqlite3_value_text(pArg), gptext_value_bytes(pArg)))
    return trainError(t, "%s", GPTEXT_OPTIONS_NUL);
  sqlite3_stmt *p = 0;
  int rc = sqlite3_prepare_v2(t->db, "SELECT key, type, value, json_valid(?1) AND "
                              "json_type(?1) = 'object' FROM json_each(?1)", -1, &p, 0);
  if (rc != SQLITE_OK) return trainSqlError(t);
  sqlite3_bind_value(p, 1, pArg);
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    const char *zKey = (const char *)sqlite3_column_text(p, 0);
    const char *zType = (const char *)sqlite3_column_text(p, 1);
    if (!sqlite3_column_int(p, 3)) break;
    if (!zKey || !zType) continue;
    if (strcmp(zKey, "tokenizer") == 0) {
      if (o->zTok) {
        sqlite3_finalize(p);
        return trainError(t, "option tokenizer appears twice; give each option once");
      }
      if (strcmp(zType, "text") != 0) {
        sqlite3_finalize(p);
        return trainError(t, "option tokenizer must be a model name");
      }
      sqlite3_free(o->zTok);
      o->zTok = sqlite3_mprintf("%s", sqlite3_column_text(p, 2));
      continue;
    }
    size_t i;
    for (i = 0; i < TRAIN_N_KEY; i++)
      if (strcmp(zKey, aTrainKey[i].zKey) == 0) break;
    if (i == TRAIN_N_KEY) {
      /* as the other functions say it: the key, then every valid one */
      sqlite3_str *pValid = sqlite3_str_new(t->db);
      sqlite3_str_appendall(pValid, "\"tokenizer\"");
      for (i = 0; i < TRAIN_N_KEY; i++)
        sqlite3_str_appendf(pValid, ", \"%s\"", aTrainKey[i].zKey);
      char *zValid = sqlite3_str_finish(pValid);
      trainError(t, "unknown option \"%s\"; valid options: %s", zKey, zValid ? zValid : "");
      sqlite3_free(zValid);
      sqlite3_finalize(p);
      return SQLITE_ERROR;
    }
    const TrainKey *k = &aTrainKey[i];
    char *at = (char *)o + k->off;
    if (o->given & (1u << i)) { /* SQLite's JSON reads the first, Python's the last */
      trainError(t, "option %s appears twice; give each option once", zKey);
      sqlite3_finalize(p);
      return SQLITE_ERROR;
    }
    int bInt = k->type != 'd', bLr = k->off == offsetof(TrainOpts, lr);
    double v = sqlite3_column_double(p, 2);
    /* a whole number written as a real (8.0) is that integer, as in the
    ** other functions' options */
    int bReal = strcmp(zType, "real") == 0;
    int bNum = strcmp(zType, "integer") == 0 || (bReal && (!bInt || v == floor(v)));
    /* learning_rate must be > 0: the range's lower bound is exclusive for it */
    int bLrBad = bLr && !(v > 0);
    if (!bNum || bLrBad || !(v >= k->lo && v <= k->hi)) {
      if (bLr && !bNum)
        trainError(t, "option learning_rate must be a number > 0 and <= 10, not %s",
                   strcmp(zType, "text") == 0 ? "a string" : zType);
      else if (bLr)
        trainError(t, "option learning_rate is %s, expected a number > 0 and <= 10",
                   sqlite3_column_text(p, 2) ? (const char *)sqlite3_column_text(p, 2) : zType);
      else
        trainError(t, "option %s must be %s from %g to %g", zKey,
                   bInt ? "an integer" : "a number", k->lo, k->hi);
      sqlite3_finalize(p);
      return SQLITE_ERROR;
    }
    if (k->type == 'L') *(int64_t *)at = bReal ? (int64_t)v : sqlite3_column_int64(p, 2);
    else if (k->type == 'i') *(int *)at = bReal ? (int)v : sqlite3_column_int(p, 2);
    else *(double *)at = v;
    o->given |= 1u << i;
    if (i < 3) o->bShape = 1;
    if (i == 3) o->bCtx = 1;
  }
  int bObject = rc != SQLITE_ROW || sqlite3_column_int(p, 3);
  if (rc == SQLITE_DONE) {
    /* an empty object or a non-object: json_each gives no rows for a scalar */
    sqlite3_reset(p);
    sqlite3_bind_value(p, 1, pArg);
    if (sqlite3_step(p) == SQLITE_ROW) bObject = sqlite3_column_int(p, 3);
  }
  sqlite3_finalize(p);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return trainSqlError(t);
  if (!bObject) {
    char *zType = 0;
    if (gptext_json_type(t->db, pArg, &zType) != SQLITE_OK) return trainSqlError(t);
    rc = trainError(t, "options must be a JSON object%s", gptext_json_got(zType, pArg));
    sqlite3_free(zType);
    return rc;
  }
  if (o->warmup < 0) o->warmup = o->steps / 10 < 100 ? o->steps / 10 : 100;
  return SQLITE_OK;
}

/* trainParseOptionsJson of the options, a JSONB BLOB read as its JSON text. */
static int trainParseOptions(Train *t, sqlite3_value *pArg) {
  sqlite3_value *pText = 0;
  if (pArg && gptext_json_text(t->db, pArg, &pText) != SQLITE_OK) return trainSqlError(t);
  /* any other BLOB is no options, as for every other function */
  if (!pText && pArg && sqlite3_value_type(pArg) == SQLITE_BLOB)
    return trainError(t, "options must be a JSON object%s", gptext_json_got(0, pArg));
  int rc = trainParseOptionsJson(t, pText ? pText : pArg);
  sqlite3_value_free(pText);
  return rc;
}

/* v in zFmt as an SQL literal into z (n bytes), NULL when not finite. */
static void trainSqlNumber(char *z, int n, double v, const char *zFmt) {
  if (isfinite(v)) sqlite3_snprintf(n, z, zFmt, v);
  else sqlite3_snprintf(n, z, "NULL");
}

/* The options that define a run, as JSON, stored with its checkpoints, with
** the corpus it trains on: its token count and hash (a resumed call checks
** that its query gives the same tokens). */
static char *trainOptionsJson(const TrainOpts *o, int64_t step, double elapsed, int64_t nTok,
                              const char *zCorpus) {
  if (!isfinite(elapsed) || elapsed < 0) elapsed = 0;
  return sqlite3_mprintf(
      "{\"step\":%lld,\"steps\":%lld,\"batch_size\":%lld,\"learning_rate\":%!.17g,"
      "\"seed\":%lld,\"warmup\":%lld,\"weight_decay\":%!.17g,\"grad_clip\":%!.17g,"
      "\"val_fraction\":%!.17g,\"checkpoint_every\":%lld,\"max_tokens\":%lld,"
      "\"n_ctx\":%d,\"elapsed_s\":%!.17g,\"corpus_tokens\":%lld,\"corpus_hash\":\"%s\"}",
      (long long)step, (long long)o->steps, (long long)o->batch, o->lr, (long long)o->seed,
      (long long)o->warmup, o->wd, o->clip, o->valFrac, (long long)o->ckptEvery,
      (long long)o->maxTokens, o->nCtx, elapsed, (long long)nTok, zCorpus);
}

/* The token buffer's hash (FNV-1a over the ids) as 16 hex digits into
** t->zCorpus: what a resumed call compares with its run's. */
static void trainHashCorpus(Train *t) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i < t->nTok; i++) h = (h ^ (uint32_t)t->aTok[i]) * 1099511628211ull;
  sqlite3_snprintf((int)sizeof(t->zCorpus), t->zCorpus, "%016llx", (unsigned long long)h);
}

/* Reads an unfinished run's state row: 1 with the run's options in t->o and
** its step, 0 when there is none (or it finished), or an error. */
static int trainReadState(Train *t) {
  sqlite3_stmt *p = 0;
  int rc = sqlite3_prepare_v2(t->db,
      "SELECT json_extract(data, '$.step'), json_extract(data, '$.steps'),"
      " json_extract(data, '$.batch_size'), json_extract(data, '$.learning_rate'),"
      " json_extract(data, '$.seed'), json_extract(data, '$.warmup'),"
      " json_extract(data, '$.weight_decay'), json_extract(data, '$.grad_clip'),"
      " json_extract(data, '$.val_fraction'), json_extract(data, '$.checkpoint_every'),"
      " json_extract(data, '$.max_tokens'), json_extract(data, '$.n_ctx'),"
      " json_extract(data, '$.elapsed_s'), json_extract(data, '$.corpus_tokens'),"
      " json_extract(data, '$.corpus_hash'),"
      /* each key of the JSON type its writer gives it (a state that is not
      ** had been ignored, and the run started afresh) */
      " CASE WHEN json_valid(data) THEN"
      "  (SELECT count(*) = 12 + (json_extract(data, '$.elapsed_s') IS NOT NULL)"
      "   FROM json_each(data) WHERE"
      "   (key IN ('step', 'steps', 'batch_size', 'seed', 'warmup', 'checkpoint_every',"
      "            'max_tokens', 'n_ctx') AND type = 'integer') OR"
      "   (key IN ('learning_rate', 'weight_decay', 'grad_clip', 'val_fraction', 'elapsed_s')"
      "    AND type IN ('integer', 'real'))) ELSE 0 END"
      " FROM (SELECT CASE WHEN json_valid(data) THEN data ELSE '{}' END AS data"
      "       FROM main.gpt_train_state WHERE model = ?1 AND name = 'state')",
      -1, &p, 0);
  if (rc != SQLITE_OK) return trainSqlError(t) - 100;
  sqlite3_bind_text(p, 1, t->zModel, -1, SQLITE_STATIC);
  int found = 0;
  rc = sqlite3_step(p);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    /* an interrupt here had read as "no run": the run started afresh */
    trainSqlError(t);
    sqlite3_finalize(p);
    return -100;
  }
  if (rc == SQLITE_ROW) {
    int64_t step = sqlite3_column_int64(p, 0), steps = sqlite3_column_int64(p, 1);
    if (!sqlite3_column_int(p, 15) || step < 0 || steps < 1 || steps > 1000000000 ||
        step > steps) {
      sqlite3_finalize(p);
      return trainError(t, "gpt_train_state row 'state' is not the state gpt_train writes "
                        "(a key missing, of another type, or out of range); delete the "
                        "model's gpt_train_state rows to fine-tune afresh") - 100;
    }
    if (step < steps) { /* unfinished: resumed */
      TrainOpts *o = &t->o, asked = t->o;
      t->step = step;
      o->steps = steps;
      o->batch = sqlite3_column_int64(p, 2);
      o->lr = sqlite3_column_double(p, 3);
      o->seed = sqlite3_column_int64(p, 4);
      o->warmup = sqlite3_column_int64(p, 5);
      o->wd = sqlite3_column_double(p, 6);
      o->clip = sqlite3_column_double(p, 7);
      o->valFrac = sqlite3_column_double(p, 8);
      o->ckptEvery = sqlite3_column_int64(p, 9);
      o->maxTokens = sqlite3_column_int64(p, 10);
      int64_t nCtx = sqlite3_column_int64(p, 11);
      o->nCtx = nCtx >= 2 && nCtx <= 4096 ? (int)nCtx : 0;
      t->elapsed0 = sqlite3_column_double(p, 12);
      /* an option the call gave that the run holds otherwise had been
      ** ignored in silence: refused, so that a changed call is never taken
      ** for the run it resumes */
      for (size_t i = 0; i < TRAIN_N_KEY; i++) {
        char zAsked[40], zRun[40];
        if (!aTrainKey[i].bRun || !(asked.given & (1u << i))) continue;
        if (trainKeySame(&asked, o, &aTrainKey[i])) continue;
        trainKeyText(zAsked, sizeof(zAsked), &asked, &aTrainKey[i]);
        trainKeyText(zRun, sizeof(zRun), o, &aTrainKey[i]);
        sqlite3_finalize(p);
        return trainError(t, "its unfinished run (step %lld of %lld) resumes with its own "
                          "options: option %s is %s, the run's %s (give the run's value or "
                          "none; delete the model's gpt_train_state rows to train afresh)",
                          (long long)step, (long long)steps, aTrainKey[i].zKey, zAsked,
                          zRun) - 100;
      }
      if (!isfinite(t->elapsed0) || t->elapsed0 < 0) t->elapsed0 = 0;
      /* the corpus of the run (absent from states written before it was kept) */
      const char *zHash = (const char *)sqlite3_column_text(p, 14);
      if (zHash && strlen(zHash) == 16) {
        t->nRunTok = sqlite3_column_int64(p, 13);
        memcpy(t->zRunCorpus, zHash, 17);
      }
      found = 1;
      /* the ranges of the options that wrote it */
      if (o->batch < 1 || o->batch > 4096 || !(o->lr > 0 && o->lr <= 10) || o->ckptEvery < 1 ||
          o->maxTokens < 1024 || o->maxTokens > 1000000000 || o->nCtx < 2 ||
          !(o->valFrac >= 0 && o->valFrac <= 0.9) || !(o->wd >= 0 && o->wd <= 10) ||
          !(o->clip >= 0 && o->clip <= 1e6) || o->warmup < 0 || o->warmup > 1000000000) {
        sqlite3_finalize(p);
        return trainError(t, "gpt_train_state row 'state' is out of range") - 100;
      }
    }
  }
  sqlite3_finalize(p);
  return found;
}

/* ---------------------------------------------------------------- data */

/* Appends the tokens of one row to the buffer, by reservoir sampling of
** TOKEN_CHUNK-token chunks once it is full. *pPending collects the chunk
** being filled at the end of the buffer's capacity. */
typedef struct TokStream {
  int64_t cap;               /* tokens the buffer holds at most (whole chunks) */
  int64_t nChunkSeen;        /* chunks offered after the buffer filled */
  int *aPend;                /* (TOKEN_CHUNK,) chunk being filled once full */
  int nPend;
  uint64_t rng;
} TokStream;

/* Appends one token to the buffer, or once it is full to the chunk being
** filled, which on completion replaces a kept chunk by reservoir sampling. */
static void tokPush(Train *t, TokStream *s, int id) {
  if (t->nTok < s->cap) {
    t->aTok[t->nTok++] = id;
    return;
  }
  s->aPend[s->nPend++] = id;
  if (s->nPend < TOKEN_CHUNK) return;
  /* reservoir: the k-th chunk past capacity replaces a random kept chunk
  ** with probability nKept / (nKept + k) */
  int64_t nKept = s->cap / TOKEN_CHUNK;
  s->nChunkSeen++;
  uint64_t j = gpt_train_rand(&s->rng) % (uint64_t)(nKept + s->nChunkSeen);
  if ((int64_t)j < nKept)
    memcpy(t->aTok + j * TOKEN_CHUNK, s->aPend, TOKEN_CHUNK * sizeof(int));
  s->nPend = 0;
}

/* Runs the query (pQuery, as text) and tokenizes its rows into t->aTok. */
static int trainReadQuery(Train *t, sqlite3_value *pQuery) {
  sqlite3_stmt *p = 0;
  TokStream s = {0, 0, 0, 0, (uint64_t)t->o.seed ^ 0x7f4a7c159e3779b9ull};
  const char *zTail = 0;
  int rc = gptext_prepare_query(t->db, pQuery, &p, &zTail);
  if (rc != SQLITE_OK) {
    if (rc == SQLITE_INTERRUPT) trainInterrupted(t);
    else trainError(t, "query: %s", sqlite3_errmsg(t->db));
    goto done;
  }
  if (!p || !sqlite3_stmt_readonly(p) || sqlite3_column_count(p) != 1 ||
      gptext_sql_has_more(zTail)) {
    rc = trainError(t, "the query must be one SELECT of one text column");
    goto done;
  }
  char zParamMsg[200];
  if (gptext_query_param(p, zFunc, zParamMsg, sizeof(zParamMsg))) {
    rc = trainError(t, "%s", zParamMsg);
    goto done;
  }
  s.cap = (t->o.maxTokens + TOKEN_CHUNK - 1) / TOKEN_CHUNK * TOKEN_CHUNK;
  t->aTok = sqlite3_malloc64((size_t)(s.cap < 1048576 ? s.cap : 1048576) * sizeof(int));
  int64_t nAlloc = s.cap < 1048576 ? s.cap : 1048576;
  s.aPend = sqlite3_malloc64(TOKEN_CHUNK * sizeof(int));
  if (!t->aTok || !s.aPend) {
    rc = trainError(t, "out of memory for the token buffer");
    goto done;
  }
  int64_t iRow = 0;
  while ((rc = gptext_query_step(p)) == SQLITE_ROW) {
    iRow++;
    int eType = sqlite3_column_type(p, 0);
    if (eType == SQLITE_NULL) continue;
    if (eType != SQLITE_TEXT) {
      rc = trainError(t, "query row %lld is not text", (long long)iRow);
      goto done;
    }
    const char *z = (const char *)sqlite3_column_text(p, 0);
    int n = sqlite3_column_bytes(p, 0), *aIds = 0, nIds = 0;
    char *zEncErr = 0;
    rc = gptext_encode(t->db, t->pTokM, zFunc, z, n, GPTEXT_ENCODE_NO_BOS, &aIds, &nIds, &zEncErr);
    if (rc != SQLITE_OK) {
      /* the encoder names the tokenizer's model: the error names the model
      ** trained, the row, and then the tokenizer's model */
      size_t nPre = strlen(zFunc) + 2;
      if (rc != SQLITE_INTERRUPT && zEncErr) {
        const char *zRest = strncmp(zEncErr, zFunc, nPre - 2) == 0 ? zEncErr + nPre : zEncErr;
        /* a fine-tune's tokenizer is the model's own: named once, not twice */
        char *zSelf = sqlite3_mprintf("model '%s': ", t->zModel);
        if (zSelf && strncmp(zRest, zSelf, strlen(zSelf)) == 0) zRest += strlen(zSelf);
        trainError(t, "query row %lld: %s", (long long)iRow, zRest);
        sqlite3_free(zSelf);
      }
      sqlite3_free(zEncErr);
      trainCalleeFailed(t, rc);
      goto done;
    }
    if (t->nTok + nIds + 2 > nAlloc && nAlloc < s.cap) {
      int64_t want = t->nTok + nIds + 2, n2 = nAlloc;
      while (n2 < want && n2 < s.cap) n2 *= 2;
      if (n2 > s.cap) n2 = s.cap;
      int *a = sqlite3_realloc64(t->aTok, (size_t)n2 * sizeof(int));
      if (!a) {
        sqlite3_free(aIds);
        rc = trainError(t, "out of memory for the token buffer");
        goto done;
      }
      t->aTok = a;
      nAlloc = n2;
    }
    /* rows apart: <|endoftext|> after each, or the BOS before each */
    GptModel *pTok = t->pTokM;
    if (pTok->eot < 0 && pTok->bAddBos && pTok->bos >= 0) tokPush(t, &s, pTok->bos);
    for (int i = 0; i < nIds; i++) tokPush(t, &s, aIds[i]);
    if (pTok->eot >= 0) tokPush(t, &s, pTok->eot);
    sqlite3_free(aIds);
    if (gptext_interrupted(t->db)) break;
  }
  if (rc != SQLITE_DONE) {
    rc = trainSqlErrorAt(t, iRow + 1);
    goto done;
  }
  /* the buffer holds whole chunks: max_tokens of them are kept */
  if (t->nTok > t->o.maxTokens) t->nTok = t->o.maxTokens;
  rc = SQLITE_OK;
done:
  sqlite3_finalize(p);
  sqlite3_free(s.aPend);
  return t->zErr ? SQLITE_ERROR : rc;
}

/* Bytes of physical memory, or 0 when the system does not say. */
static double trainPhysicalMemory(void) {
  long nPages = sysconf(_SC_PHYS_PAGES), nPage = sysconf(_SC_PAGESIZE);
  return nPages > 0 && nPage > 0 ? (double)nPages * (double)nPage : 0;
}

/* ------------------------------------------------------------- weights */

/* The weights to fine-tune: the model as the cache loaded it (pSelf, every
** row checked, parts joined, f16 and q8_0 kept as they are) widened into
** t->pNet, a copy held in f32 that training may change. */
static int trainWidenWeights(Train *t, GptModel *pSelf) {
  char zMsg[256];
  GPTModel *pSrc = pSelf->pNet;
  t->hasHead = gpt_model_has_lm_head(pSrc);
  t->pNet = gpt_model_new(gpt_model_config(pSrc), t->hasHead, zMsg, sizeof(zMsg));
  if (!t->pNet) return trainError(t, "%s", zMsg);
  if (gpt_model_widen(t->pNet, pSrc, zMsg, sizeof(zMsg))) return trainError(t, "%s", zMsg);
  return SQLITE_OK;
}

/* Reads n floats into a from gpt_train_state row zName, or from its parts
** zName#0, zName#1, ... in order (see trainWriteRows). */
static int trainReadFloats(Train *t, const char *zName, float *a, int64_t n) {
  sqlite3_stmt *p = 0;
  char *zRow = 0;
  int64_t nGot = 0;
  int rc = sqlite3_prepare_v2(t->db, "SELECT data FROM main.gpt_train_state WHERE model = ?1 AND "
                              "name = ?2", -1, &p, 0);
  if (rc != SQLITE_OK) return trainSqlError(t);
  for (int iPart = -1; rc == SQLITE_OK && nGot < n; iPart++) {
    sqlite3_free(zRow);
    zRow = iPart < 0 ? sqlite3_mprintf("%s", zName) : sqlite3_mprintf("%s#%d", zName, iPart);
    if (!zRow) { rc = trainError(t, "out of memory"); break; }
    sqlite3_reset(p);
    sqlite3_bind_text(p, 1, t->zModel, -1, SQLITE_STATIC);
    sqlite3_bind_text(p, 2, zRow, -1, SQLITE_STATIC);
    int e = sqlite3_step(p);
    if (e == SQLITE_DONE && iPart < 0) continue; /* no whole row: parts */
    if (e == SQLITE_DONE) {
      rc = trainError(t, "gpt_train_state lacks %s of the %lld bytes of %s", zRow,
                      (long long)n * 4, zName);
    } else if (e != SQLITE_ROW) {
      rc = trainSqlError(t);
    } else {
      int64_t nb = sqlite3_column_type(p, 0) == SQLITE_BLOB ? sqlite3_column_bytes(p, 0) : -1;
      int bOk = iPart < 0 ? nb == n * 4 : nb >= 4 && nb % 4 == 0 && nb <= (n - nGot) * 4;
      if (!bOk) {
        rc = trainError(t, "gpt_train_state row %s is not %lld bytes of f32", zRow,
                        (long long)(n - nGot) * 4);
      } else {
        memcpy(a + nGot, sqlite3_column_blob(p, 0), (size_t)nb);
        nGot += nb / 4;
      }
    }
  }
  sqlite3_free(zRow);
  sqlite3_finalize(p);
  return rc;
}

/* The first of n floats that is NaN or infinite, or with bNonNegative
** below 0 (an AdamW second moment, whose square root would be NaN), or -1. */
static int64_t trainBadFloat(const float *a, int64_t n, int bNonNegative) {
  int64_t iBad = gptext_non_finite(GPT_F32, (const unsigned char *)a, (size_t)n * sizeof(float));
  for (int64_t j = 0; iBad < 0 && bNonNegative && j < n; j++)
    if (a[j] < 0) iBad = j;
  return iBad;
}

/* Loads the AdamW moments of a resumed run. Stored rows are checked as
** weights are on load: a bad moment (trainBadFloat) would turn the
** weights NaN at the first step. */
static int trainLoadMoments(Train *t) {
  const GPTConfig *c = gpt_model_config(t->pNet);
  for (int i = 0; i < gpt_n_tensors(c, t->hasHead); i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, t->hasHead, i, &info);
    for (int k = 1; k <= 2; k++) {
      char *zName = sqlite3_mprintf("adam.%s.%s", k == 1 ? "m" : "v", info.name);
      float *a = gpt_trainer_buffer(t->pTr, k, i);
      int rc = zName ? trainReadFloats(t, zName, a, info.n_elem) : trainError(t, "out of memory");
      int64_t iBad = rc == SQLITE_OK ? trainBadFloat(a, info.n_elem, k == 2) : -1;
      if (iBad >= 0)
        rc = trainError(t, "gpt_train_state's %s holds %g at element %lld, where a %s is "
                        "expected; delete the model's gpt_train_state rows to fine-tune from "
                        "its weights", zName, (double)a[iBad], (long long)iBad,
                        k == 1 ? "finite first moment" : "finite second moment >= 0");
      sqlite3_free(zName);
      if (rc != SQLITE_OK) return rc;
    }
  }
  return SQLITE_OK;
}

/* ---------------------------------------------------------- checkpoints */

/* Runs one SQL statement with up to two bound texts and a blob. */
static int trainExec(Train *t, const char *zSql, const char *z1, const char *z2,
                     const void *pBlob, int64_t nBlob) {
  sqlite3_stmt *p = 0;
  int rc = sqlite3_prepare_v2(t->db, zSql, -1, &p, 0);
  if (rc != SQLITE_OK) return trainSqlError(t);
  if (z1) sqlite3_bind_text(p, 1, z1, -1, SQLITE_STATIC);
  if (z2) sqlite3_bind_text(p, 2, z2, -1, SQLITE_STATIC);
  if (pBlob) sqlite3_bind_blob64(p, 3, pBlob, (sqlite3_uint64)nBlob, SQLITE_STATIC);
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {}
  sqlite3_finalize(p);
  return rc == SQLITE_DONE ? SQLITE_OK : trainSqlError(t);
}

/* Opens the checkpoint's savepoint (ext/savepoint.c): the write lock taken
** up front, waiting out the busy timeout; outside a transaction it is the
** checkpoint's own transaction, committed by its release. */
static int trainTxnBegin(Train *t) {
  char *zMsg = 0;
  int rc = gptext_savepoint_begin(t->db, t->pConn, &t->sp, zFunc, &zMsg);
  if ((rc & 0xff) == SQLITE_INTERRUPT) { /* said as every interrupt is: where it stopped */
    sqlite3_free(zMsg);
    trainInterrupted(t);
    return rc;
  }
  if (rc != SQLITE_OK) {
    trainError(t, "%s", zMsg ? zMsg : "cannot open a savepoint");
    if (!t->rcErr) t->rcErr = rc;
    sqlite3_free(zMsg);
    return rc;
  }
  return SQLITE_OK;
}

/* Releases (ok) or rolls back the checkpoint's savepoint. */
static int trainTxnEnd(Train *t, int ok) {
  int rc = SQLITE_ERROR;
  if (ok) {
    char *zMsg = 0;
    rc = gptext_savepoint_release(&t->sp, &zMsg);
    /* SQLite's code goes on (SQLITE_BUSY on the commit; it was SQLITE_ERROR) */
    if (rc != SQLITE_OK && ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(t->db))) {
      trainInterrupted(t);
    } else if (rc != SQLITE_OK) {
      if (!t->rcErr) t->rcErr = rc;
      trainError(t, "%s", zMsg ? zMsg : "cannot release the savepoint");
    }
    sqlite3_free(zMsg);
  }
  gptext_savepoint_end(&t->sp);
  return rc;
}

/* Writes a new model's gpt_models row: GPT-2's keys in the form a folder
** import writes them (SQLite's json_object), so that a model exported as
** GGUF and imported again gives back its config bit for bit. */
static int trainModelRow(Train *t, const GPTConfig *c) {
  sqlite3_stmt *p = 0;
  int rc = sqlite3_prepare_v2(t->db, "INSERT INTO main.gpt_models(name, config, source) "
                              "VALUES(?1, json_object('n_layer', ?2, 'n_head', ?3, 'n_embd', ?4, "
                              "'n_ctx', ?5, 'vocab_size', ?6, 'layer_norm_epsilon', ?7), "
                              "'gpt_train')", -1, &p, 0);
  if (rc != SQLITE_OK) return trainSqlError(t);
  sqlite3_bind_text(p, 1, t->zModel, -1, SQLITE_STATIC);
  sqlite3_bind_int(p, 2, c->n_layer);
  sqlite3_bind_int(p, 3, c->n_head);
  sqlite3_bind_int(p, 4, c->n_embd);
  sqlite3_bind_int(p, 5, c->n_ctx);
  sqlite3_bind_int(p, 6, c->vocab_size);
  sqlite3_bind_double(p, 7, c->ln_eps);
  rc = sqlite3_step(p);
  sqlite3_finalize(p);
  return rc == SQLITE_DONE ? SQLITE_OK : trainSqlError(t);
}

/* Writes a (nRow, nCol) f32 array as the rows of one tensor (bTensor:
** gpt_tensors, shape [nRow, nCol], or [nRow] when nCol is 0) or one
** gpt_train_state entry, replacing its old rows in either layout: one row
** zName when it fits a BLOB (SQLITE_LIMIT_LENGTH, less room for the row's
** other columns), else row-aligned parts zName#0, zName#1, ... of R rows
** each but the last, as gpt_import writes them and the loader reads them. */
static int trainWriteRows(Train *t, int bTensor, const char *zName, const float *a,
                          int64_t nRow, int64_t nCol) {
  int64_t nRowBytes = 4 * (nCol > 0 ? nCol : 1), nBytes = nRow * nRowBytes;
  int64_t R = gptext_tensor_part_rows(t->db, t->zModel, zName, nRow, nRowBytes, nBytes);
  sqlite3_stmt *p = 0;
  char *zRow = 0;
  if (R < 1)
    return trainError(t, "a row of tensor %s (%lld bytes) is larger than a BLOB may be "
                      "(SQLITE_LIMIT_LENGTH %d)", zName, (long long)nRowBytes,
                      sqlite3_limit(t->db, SQLITE_LIMIT_LENGTH, -1));
  int rc = trainExec(t, bTensor ? "DELETE FROM main.gpt_tensors WHERE model = ?1 AND (name = ?2 OR "
                                  "(name >= ?2 || '#' AND name < ?2 || '$'))"
                                : "DELETE FROM main.gpt_train_state WHERE model = ?1 AND (name = ?2 "
                                  "OR (name >= ?2 || '#' AND name < ?2 || '$'))",
                     t->zModel, zName, 0, 0);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_prepare_v2(t->db, bTensor ? "INSERT INTO main.gpt_tensors(model, name, dtype, shape, "
                                           "data) VALUES(?1, ?2, 'f32', ?3, ?4)"
                                         : "INSERT INTO main.gpt_train_state(model, name, data) "
                                           "VALUES(?1, ?2, ?4)", -1, &p, 0);
  if (rc != SQLITE_OK) return trainSqlError(t);
  for (int64_t r0 = 0, iPart = 0; rc == SQLITE_OK && r0 < nRow; r0 += R, iPart++) {
    int64_t n = nRow - r0 < R ? nRow - r0 : R;
    char zShape[64];
    if (nCol > 0) sqlite3_snprintf(sizeof(zShape), zShape, "[%lld,%lld]", n, nCol);
    else sqlite3_snprintf(sizeof(zShape), zShape, "[%lld]", n);
    sqlite3_free(zRow);
    zRow = R == nRow ? sqlite3_mprintf("%s", zName)
                     : sqlite3_mprintf("%s#%lld", zName, (long long)iPart);
    if (!zRow) { rc = trainError(t, "out of memory"); break; }
    sqlite3_bind_text(p, 1, t->zModel, -1, SQLITE_STATIC);
    sqlite3_bind_text(p, 2, zRow, -1, SQLITE_STATIC);
    if (bTensor) sqlite3_bind_text(p, 3, zShape, -1, SQLITE_STATIC);
    rc = sqlite3_bind_blob64(p, 4, a + r0 * (nRowBytes / 4), (sqlite3_uint64)(n * nRowBytes),
                             SQLITE_STATIC);
    if (rc == SQLITE_OK && sqlite3_step(p) != SQLITE_DONE) rc = SQLITE_ERROR;
    if (rc != SQLITE_OK) rc = trainSqlError(t);
    sqlite3_reset(p);
  }
  sqlite3_free(zRow);
  sqlite3_finalize(p);
  return rc;
}

/* Writes a checkpoint at t->step: weights as f32 rows in the Hugging Face
** layout, moments and state, the log row; and for a new model its
** gpt_models row and a copy of its tokenizer's rows. */
/* The model's gpt_models.stamp into *pStamp: 1, or 0 when it has no row, or
** an error (negative). */
static int trainReadStampOf(Train *t, const char *zName, sqlite3_int64 *pStamp) {
  sqlite3_stmt *p = 0;
  if (sqlite3_prepare_v2(t->db, "SELECT stamp FROM main.gpt_models WHERE name = ?1", -1, &p, 0)) {
    trainSqlError(t);
    return -1;
  }
  sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
  int rc = sqlite3_step(p), found = rc == SQLITE_ROW;
  if (found) *pStamp = sqlite3_column_int64(p, 0);
  sqlite3_finalize(p);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    trainSqlError(t);
    return -1;
  }
  return found;
}

/* A hash of model zName's tokenizer rows (gpt_vocab, gpt_merges,
** gpt_tokenizer: what a new model copies) into *pH: 64-bit FNV-1a over each
** column's type and bytes, in key order. An SQLite error code on failure. */
static int trainTokenizerHash(Train *t, const char *zName, uint64_t *pH) {
  static const char *const azSql[] = {
    "SELECT token_id, token FROM main.gpt_vocab WHERE model = ?1 ORDER BY token_id",
    "SELECT rank, left, right FROM main.gpt_merges WHERE model = ?1 ORDER BY rank",
    "SELECT config FROM main.gpt_tokenizer WHERE model = ?1"};
  uint64_t h = 1469598103934665603ull;
  for (int q = 0; q < 3; q++) {
    sqlite3_stmt *p = 0;
    int rc = sqlite3_prepare_v2(t->db, azSql[q], -1, &p, 0);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(p); c++) {
        h = (h ^ (uint64_t)sqlite3_column_type(p, c)) * 1099511628211ull; /* before a conversion */
        const unsigned char *z = sqlite3_column_blob(p, c);
        int n = sqlite3_column_bytes(p, c);
        for (int i = 0; i < n; i++) h = (h ^ z[i]) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* column end */
      }
    }
    sqlite3_finalize(p);
    if (rc != SQLITE_DONE) return rc;
  }
  *pH = h;
  return SQLITE_OK;
}

/* trainReadStampOf the model trained. */
static int trainReadStamp(Train *t, sqlite3_int64 *pStamp) {
  return trainReadStampOf(t, t->zModel, pStamp);
}

/* Inside the checkpoint's savepoint: the model is still the one this run
** loaded or last wrote (a new one still absent). Another connection may
** have dropped, replaced or made it meanwhile, and the checkpoint would
** have written this run's tensors under another model's config. */
static int trainCheckOwner(Train *t) {
  sqlite3_int64 stamp = 0;
  int found = trainReadStamp(t, &stamp);
  if (found < 0) return SQLITE_ERROR;
  if (t->bNew && found)
    return trainError(t, "was made while this run trained (by another connection, or a call "
                      "in this run's query); step %lld is not written", (long long)t->step);
  if (!t->bNew && (!found || stamp != t->stamp))
    return trainError(t, "was dropped or changed while this run trained (by another "
                      "connection, or a call in this run's query); step %lld is not written",
                      (long long)t->step);
  /* a new model copies its tokenizer's rows: they must be the ones its
  ** tokens came from (a tokenizer dropped and made again had given it
  ** another vocabulary in silence) */
  if (t->bNew && t->pTokM) {
    found = trainReadStampOf(t, t->o.zTok, &stamp);
    if (found < 0) return SQLITE_ERROR;
    /* a restamp by a change to its weights alone leaves the rows copied as
    ** they were: those are compared */
    uint64_t h = t->tokHash;
    if (found && stamp != t->pTokM->stamp && trainTokenizerHash(t, t->o.zTok, &h) != SQLITE_OK)
      return trainSqlError(t);
    if (!found || h != t->tokHash)
      return trainError(t, "its tokenizer's model '%s' was dropped or its tokenizer changed "
                        "while this run trained; step %lld is not written", t->o.zTok,
                        (long long)t->step);
  }
  return SQLITE_OK;
}

/* Writes a checkpoint: checks the weights and moments are finite, then stores
** the weights, the moments, the state row and the log row (zLogSql). */
static int trainCheckpoint(Train *t, const char *zLogSql) {
  const GPTConfig *c = gpt_model_config(t->pNet);
  float *tmp = 0;
  /* the weights after the last update, which no loss has seen yet, and the
  ** moments: a model that holds a NaN or an infinity would be refused by
  ** every load, and moments that do by the resume */
  for (int i = 0; i < gpt_n_tensors(c, t->hasHead); i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, t->hasHead, i, &info);
    for (int k = 0; k <= 2; k++) {
      const float *a = k == 0 ? gpt_model_tensor_data(t->pNet, i) : gpt_trainer_buffer(t->pTr, k, i);
      int64_t iBad = trainBadFloat(a, info.n_elem, k == 2);
      if (iBad >= 0)
        return trainError(t, "%s %s holds %g at element %lld after step %lld: training diverged "
                          "(a lower learning_rate may help); nothing of this step is written",
                          k == 0 ? "tensor" : k == 1 ? "the first AdamW moment of"
                                                     : "the second AdamW moment of",
                          info.name, (double)a[iBad], (long long)iBad, (long long)t->step);
    }
  }
  int rc = trainTxnBegin(t);
  if (rc != SQLITE_OK) return rc;
  rc = trainCheckOwner(t);
  if (rc == SQLITE_OK && t->bNew) {
    rc = trainModelRow(t, c);
    if (rc == SQLITE_OK)
      rc = trainExec(t, "INSERT INTO main.gpt_vocab(model, token_id, token) SELECT ?1, token_id, "
                     "token FROM main.gpt_vocab WHERE model = ?2", t->zModel, t->o.zTok, 0, 0);
    if (rc == SQLITE_OK)
      rc = trainExec(t, "INSERT INTO main.gpt_merges(model, rank, left, right) SELECT ?1, rank, "
                     "left, right FROM main.gpt_merges WHERE model = ?2", t->zModel, t->o.zTok, 0, 0);
    if (rc == SQLITE_OK)
      rc = trainExec(t, "INSERT INTO main.gpt_tokenizer(model, config) SELECT ?1, config FROM "
                     "main.gpt_tokenizer WHERE model = ?2", t->zModel, t->o.zTok, 0, 0);
  }
  int64_t maxElem = 0;
  for (int i = 0; i < gpt_n_tensors(c, t->hasHead); i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, t->hasHead, i, &info);
    if (info.transposed && info.n_elem > maxElem) maxElem = info.n_elem;
  }
  tmp = sqlite3_malloc64((size_t)(maxElem > 0 ? maxElem : 1) * sizeof(float));
  if (!tmp && rc == SQLITE_OK) rc = trainError(t, "out of memory");
  for (int i = 0; rc == SQLITE_OK && i < gpt_n_tensors(c, t->hasHead); i++) {
    GPTTensorInfo info;
    gpt_tensor_info(c, t->hasHead, i, &info);
    const float *w = gpt_model_tensor_data(t->pNet, i);
    if (info.transposed) {
      /* memory (out, in) -> stored (in, out) */
      int64_t nIn = info.shape[0], nOut = info.shape[1];
      for (int64_t r = 0; r < nIn; r++)
        for (int64_t k = 0; k < nOut; k++) tmp[r * nOut + k] = w[k * nIn + r];
      w = tmp;
    }
    rc = trainWriteRows(t, 1, info.name, w, info.shape[0], info.ndim == 2 ? info.shape[1] : 0);
    for (int k = 1; rc == SQLITE_OK && k <= 2; k++) {
      char *zName = sqlite3_mprintf("adam.%s.%s", k == 1 ? "m" : "v", info.name);
      rc = zName ? trainWriteRows(t, 0, zName, gpt_trainer_buffer(t->pTr, k, i), info.n_elem, 0)
                 : trainError(t, "out of memory");
      sqlite3_free(zName);
    }
  }
  if (rc == SQLITE_OK) {
    char *zState = trainOptionsJson(&t->o, t->step, t->elapsed0, t->nTok, t->zCorpus);
    rc = zState ? trainExec(t, "INSERT OR REPLACE INTO main.gpt_train_state(model, name, data) "
                            "VALUES(?1, 'state', ?2)", t->zModel, zState, 0, 0)
                : trainError(t, "out of memory");
    sqlite3_free(zState);
  }
  if (rc == SQLITE_OK && t->bClearLog)
    rc = trainExec(t, "DELETE FROM main.gpt_train_log WHERE model = ?1", t->zModel, 0, 0, 0);
  if (rc == SQLITE_OK && t->zPendingLog &&
      sqlite3_exec(t->db, t->zPendingLog, 0, 0, 0) != SQLITE_OK)
    rc = trainSqlError(t);
  if (rc == SQLITE_OK && zLogSql) rc = trainExec(t, zLogSql, 0, 0, 0, 0);
  sqlite3_free(tmp);
  /* a new stamp set here, not left to the schema's triggers: a connection
  ** may run with triggers off (SQLITE_DBCONFIG_ENABLE_TRIGGER), and every
  ** cache of the process then kept the weights from before */
  if (rc == SQLITE_OK)
    rc = trainExec(t, "UPDATE main.gpt_models SET stamp = random() WHERE name = ?1", t->zModel,
                   0, 0, 0);
  /* the stamp, which the next checkpoint expects */
  sqlite3_int64 stamp = 0;
  if (rc == SQLITE_OK) {
    int found = trainReadStamp(t, &stamp);
    if (found < 0) rc = SQLITE_ERROR;
    else if (!found) rc = trainError(t, "its gpt_models row is missing after the checkpoint");
  }
  if (rc == SQLITE_OK) rc = trainTxnEnd(t, 1);
  else trainTxnEnd(t, 0);
  if (rc == SQLITE_OK) {
    t->bNew = 0;
    t->bClearLog = 0;
    t->ckptStep = t->step;
    t->stamp = stamp;
    sqlite3_free(t->zPendingLog);
    t->zPendingLog = 0;
  }
  return rc;
}

/* ---------------------------------------------------------------- steps */

/* Mean validation loss over up to VAL_SEQUENCES evenly spaced windows of
** the held-out tokens; NaN when there are too few of them. */
static double trainValLoss(Train *t) {
  int64_t nVal = t->nTok - t->nTrain;
  if (nVal < t->T + 1) return NAN;
  int n = 0;
  double sum = 0;
  char zMsg[200];
  for (int k = 0; k < VAL_SEQUENCES; k++) {
    int64_t at = t->nTrain + (nVal - t->T - 1) * k / VAL_SEQUENCES;
    double loss;
    int rc = gpt_trainer_eval(t->pTr, t->aTok + at, t->T, &loss, zMsg, sizeof(zMsg));
    if (rc == GPT_ABORTED) {
      trainInterrupted(t);
      return NAN;
    }
    if (rc != GPT_OK) {
      trainError(t, "%s", zMsg);
      return NAN;
    }
    sum += loss;
    n++;
  }
  return sum / n;
}

/* One optimizer step: batch_size windows whose offsets depend only on the
** seed and the step. Returns the mean loss. */
static int trainStep(Train *t, double *pLoss) {
  char zMsg[200];
  uint64_t rng = (uint64_t)t->o.seed * 0x9e3779b97f4a7c15ull ^ (uint64_t)t->step;
  gpt_trainer_zero_grad(t->pTr);
  double loss = 0, tCheck = now_s();
  for (int64_t b = 0; b < t->o.batch; b++) {
    /* a step of 4,096 windows of 4,096 tokens is hours: an interrupt is
    ** asked about between windows too, every 20 ms or so */
    if (now_s() - tCheck > 0.02) {
      tCheck = now_s();
      if (gptext_interrupted(t->db)) return trainInterrupted(t);
    }
    int64_t at = (int64_t)(gpt_train_rand(&rng) % (uint64_t)(t->nTrain - t->T));
    double l;
    int rc = gpt_trainer_sequence(t->pTr, t->aTok + at, t->T, 1.0 / t->o.batch, &l, zMsg,
                                  sizeof(zMsg));
    if (rc == GPT_ABORTED) return trainInterrupted(t);
    if (rc != GPT_OK) return trainError(t, "%s", zMsg);
    loss += l / t->o.batch;
  }
  gpt_trainer_clip(t->pTr, t->o.clip);
  gpt_trainer_adamw(t->pTr, gpt_train_lr(t->step, t->o.steps, t->o.warmup, t->o.lr), t->o.wd,
                    t->step + 1);
  *pLoss = loss;
  return SQLITE_OK;
}

/* The model that option tokenizer names, its tokenizer loaded, in *pp; its
** errors as the option's ("gpt_train: model 'm': option tokenizer: no model
** named ..."). */
static int trainAcquireTokenizer(Train *t, GptModel **pp) {
  int rc = gptext_model_acquire(t->pConn, t->db, zFunc, t->o.zTok, 0, pp, &t->zErr);
  if (rc == SQLITE_OK) return SQLITE_OK;
  if (rc != SQLITE_INTERRUPT && t->zErr) {
    char *zAcq = t->zErr;
    size_t nPre = strlen(zFunc);
    t->zErr = 0;
    trainError(t, "option tokenizer: %s",
               strncmp(zAcq, zFunc, nPre) == 0 && zAcq[nPre] == ':' ? zAcq + nPre + 2 : zAcq);
    sqlite3_free(zAcq);
  }
  trainCalleeFailed(t, rc);
  return rc;
}

/* gpt_train(model, query [, options]) */
static void gptTrainFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  Train t;
  memset(&t, 0, sizeof(t));
  t.ckptStep = -1;
  t.db = sqlite3_context_db_handle(ctx);
  const sqlite3_int64 iRowidBefore = sqlite3_last_insert_rowid(t.db);
  t.bCallerTxn = !sqlite3_get_autocommit(t.db);
  t.pConn = sqlite3_user_data(ctx);
  /* the types first: reading a BLOB as text makes it report SQLITE_TEXT */
  int eNameType = sqlite3_value_type(argv[0]), eQueryType = sqlite3_value_type(argv[1]);
  t.zModel = (const char *)sqlite3_value_text(argv[0]);
  const char *zQuery = (const char *)sqlite3_value_text(argv[1]);
  GptModel *pSelf = 0;
  char *zSummary = 0;
  int rc = SQLITE_OK, bExists = 0, nThreadsOld = -1;
  char *zSchemaErr = 0;
  if (eNameType != SQLITE_TEXT || !t.zModel || !t.zModel[0]) {
    gptext_result_error(ctx, "gpt_train: the model name must be non-empty text");
    return;
  }
  if (!gptext_name_ok(argv[0])) {
    gptext_result_error(ctx, "gpt_train: the model name must be " GPTEXT_NAME_RULE);
    return;
  }
  if (eQueryType != SQLITE_TEXT || !zQuery) {
    gptext_result_error(ctx, "gpt_train: the query must be the text of a SELECT");
    return;
  }
  if (gptext_query_writes(ctx, zFunc, t.zModel, &t.zErr) != SQLITE_OK) goto done;
  /* before minutes of steps that a read-only database would throw away */
  if ((t.rcErr = gptext_check_writable(t.db, zFunc, t.zModel, &t.zErr)) != SQLITE_OK) goto done;
  if ((rc = gptext_ensure_schema(t.db, &zSchemaErr)) != SQLITE_OK) {
    /* SQLite's code (SQLITE_BUSY, an interrupt), and a message naming the
    ** function and the model */
    if ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(t.db)) {
      trainInterrupted(&t);
    } else {
      t.rcErr = gptext_sql_code(t.db, rc);
      trainError(&t, "%s", zSchemaErr ? zSchemaErr : "out of memory");
    }
    sqlite3_free(zSchemaErr);
    goto done;
  }
  if (sqlite3_exec(t.db, zTrainSchema, 0, 0, 0) != SQLITE_OK) { trainSqlError(&t); goto done; }
  if (trainParseOptions(&t, argc > 2 ? argv[2] : 0) != SQLITE_OK) goto done;
  if (t.o.threads > 0) nThreadsOld = gpt_threads_set(t.o.threads);
  {
    sqlite3_stmt *p = 0;
    if (sqlite3_prepare_v2(t.db, "SELECT 1 FROM main.gpt_models WHERE name = ?1", -1, &p, 0)) {
      trainSqlError(&t);
      goto done;
    }
    sqlite3_bind_text(p, 1, t.zModel, -1, SQLITE_STATIC);
    int rcStep = sqlite3_step(p);
    bExists = rcStep == SQLITE_ROW;
    if (rcStep != SQLITE_ROW && rcStep != SQLITE_DONE) { /* not "a new model" */
      trainSqlError(&t);
      sqlite3_finalize(p);
      goto done;
    }
    sqlite3_finalize(p);
  }
  int64_t stopAfter = t.o.stopAfter;
  int bResume = bExists ? trainReadState(&t) : 0;
  if (bResume < 0) goto done;
  if (bResume) t.ckptStep = t.step;
  if (stopAfter > 0) t.o.stopAfter = stopAfter;
  if (stopAfter > 0 && stopAfter <= t.step) {
    /* no step to run: a summary would report a NaN loss and no val_loss */
    trainError(&t, "option stop_after %lld is not past step %lld, where its unfinished run "
               "stands (of %lld steps)", (long long)stopAfter, (long long)t.step,
               (long long)t.o.steps);
    goto done;
  }
  GPTConfig cfg;
  memset(&cfg, 0, sizeof(cfg));
  if (bExists) {
    /* fine-tune or resume: the model's own shape and tokenizer */
    if (t.o.bShape && !bResume) {
      trainError(&t, "exists; n_layer, n_head and n_embd apply to new models only");
      goto done;
    }
    if (t.o.zTok && !bResume) {
      trainError(&t, "exists; option tokenizer applies to new models only (a model trains "
                 "with its own tokenizer)");
      goto done;
    }
    if (t.o.zTok && bResume) {
      /* the run's call again: its own tokenizer encodes the rows (the tokens
      ** are checked by count and hash), but a tokenizer that names no model
      ** is refused, as on the run's first call (it had passed in silence) */
      GptModel *pTok = 0;
      if ((rc = trainAcquireTokenizer(&t, &pTok)) != SQLITE_OK) goto done;
      gptext_model_release(pTok);
    }
    /* the weights as the loader reads them: every check, parts, any dtype */
    if ((rc = gptext_model_acquire(t.pConn, t.db, zFunc, t.zModel, 1, &pSelf, &t.zErr))) {
      trainCalleeFailed(&t, rc);
      goto done;
    }
    cfg = *gpt_model_config(pSelf->pNet);
    /* a resumed run's shape is its model's: one asked otherwise is refused */
    int aShape[3] = {cfg.n_layer, cfg.n_head, cfg.n_embd};
    int aAsked[3] = {t.o.nLayer, t.o.nHead, t.o.nEmbd}; /* aTrainKey's first three */
    for (int i = 0; bResume && i < 3; i++) {
      if (!(t.o.given & (1u << i)) || aAsked[i] == aShape[i]) continue;
      trainError(&t, "its unfinished run (step %lld of %lld) resumes with its own options: "
                 "option %s is %d, the model's %d (give the model's value or none)",
                 (long long)t.step, (long long)t.o.steps, aTrainKey[i].zKey, aAsked[i],
                 aShape[i]);
      goto done;
    }
    t.stamp = pSelf->stamp;
    t.pTokM = pSelf;
    if (!bResume && t.o.bCtx && t.o.nCtx > cfg.n_ctx) {
      trainError(&t, "option n_ctx %d exceeds the model's n_ctx %d", t.o.nCtx, cfg.n_ctx);
      goto done;
    }
    if (!bResume && !t.o.bCtx) t.o.nCtx = cfg.n_ctx < 1024 ? cfg.n_ctx : 1024;
  } else {
    /* a new model's shape, defaults included; an existing model's is its own
    ** (a resume's given n_head alone was checked against the default n_embd) */
    if (t.o.nEmbd % t.o.nHead != 0) {
      trainError(&t, "option n_embd %d is not a multiple of n_head %d", t.o.nEmbd, t.o.nHead);
      goto done;
    }
    if (!t.o.zTok) {
      trainError(&t, "is new and needs a tokenizer: {\"tokenizer\": \"MODEL\"} names a model "
                 "whose tokenizer it takes (gpt_train_tokenizer makes one)");
      goto done;
    }
    if (strcmp(t.o.zTok, t.zModel) == 0) {
      trainError(&t, "option tokenizer names the model being made; name a model whose "
                 "tokenizer it takes");
      goto done;
    }
    if ((rc = trainAcquireTokenizer(&t, &t.pTokM)) != SQLITE_OK) goto done;
    if (trainTokenizerHash(&t, t.o.zTok, &t.tokHash) != SQLITE_OK) {
      trainSqlError(&t);
      goto done;
    }
    cfg.n_layer = t.o.nLayer;
    cfg.n_head = t.o.nHead;
    cfg.n_embd = t.o.nEmbd;
    cfg.n_ctx = t.o.nCtx;
    cfg.vocab_size = gptext_live_vocab(t.pTokM);
    cfg.ln_eps = 1e-5;
    cfg.arch = GPT_ARCH_GPT2;
    t.bNew = 1;
  }
  {
    /* what the run would hold, against the machine's memory: a run past it
    ** allocated lazily and was killed by the system partway */
    int nPos = t.o.nCtx < cfg.n_ctx ? t.o.nCtx : cfg.n_ctx;
    double need = gpt_trainer_plan_bytes(&cfg, !t.bNew && gpt_model_has_lm_head(pSelf->pNet),
                                         nPos);
    double have = trainPhysicalMemory();
    if (have > 0 && need > have) {
      trainError(&t, "training needs about %.1f GB (f32 weights, gradients, AdamW moments and "
                 "the activations of %d positions), more than this machine's %.1f GB of "
                 "memory; a smaller n_ctx%s would need less", need / 1e9, nPos, have / 1e9,
                 t.bNew ? ", n_layer or n_embd" : "");
      goto done;
    }
  }
  {
    /* the weights first: a model training cannot take (4-bit) is refused
    ** before the query's rows are read */
    char zMsg[256];
    if (t.bNew) {
      t.pNet = gpt_model_new(&cfg, 0, zMsg, sizeof(zMsg));
      if (!t.pNet) { trainError(&t, "%s", zMsg); goto done; }
      gpt_train_init(t.pNet, (uint64_t)t.o.seed);
    } else if (trainWidenWeights(&t, pSelf) != SQLITE_OK) {
      goto done;
    }
  }
  if (trainReadQuery(&t, argv[1]) != SQLITE_OK) goto done;
  trainHashCorpus(&t);
  if (bResume && t.zRunCorpus[0] &&
      (t.nTok != t.nRunTok || strcmp(t.zCorpus, t.zRunCorpus) != 0)) {
    /* the run's batches are drawn from its own tokens: other text would
    ** end it with weights no uninterrupted run gives */
    trainError(&t, "the query gave other text (%lld tokens) than its unfinished run trains on "
               "(%lld tokens); give the run's query again, or delete the model's "
               "gpt_train_state rows to fine-tune on this text", (long long)t.nTok,
               (long long)t.nRunTok);
    goto done;
  }
  t.nTrain = t.nTok - (int64_t)((double)t.nTok * t.o.valFrac);
  t.T = t.o.nCtx < cfg.n_ctx ? t.o.nCtx : cfg.n_ctx;
  if (t.nTrain < t.T + 2) {
    trainError(&t, "the query gave %lld tokens (%lld for training); a window of n_ctx %d needs "
               "at least %d", (long long)t.nTok, (long long)t.nTrain, t.T, t.T + 2);
    goto done;
  }
  {
    char zMsg[256];
    t.pTr = gpt_trainer_new(t.pNet, t.T, zMsg, sizeof(zMsg));
    if (!t.pTr) { trainError(&t, "%s", zMsg); goto done; }
    gpt_trainer_set_live_vocab(t.pTr, gptext_live_vocab(t.pTokM));
    gpt_trainer_set_stop(t.pTr, trainShouldStop, &t);
    if (bResume && trainLoadMoments(&t) != SQLITE_OK) goto done;
  }
  /* the log holds the model's latest run: a new run's first checkpoint
  ** clears the earlier one's rows (two runs' rows had mixed, and a resume
  ** deleted the older run's past its step) */
  t.bClearLog = !bResume;
  if (bResume) {
    /* an interrupted call logged steps past its last checkpoint, which this
    ** one runs and logs again */
    char *zDel = sqlite3_mprintf("DELETE FROM main.gpt_train_log WHERE model = ?1 AND step > %lld",
                                 (long long)t.step);
    int rcDel = zDel ? trainExec(&t, zDel, t.zModel, 0, 0, 0) : trainError(&t, "out of memory");
    sqlite3_free(zDel);
    if (rcDel != SQLITE_OK) goto done;
  }
  {
    int64_t step0 = t.step, end = t.o.steps;
    if (t.o.stopAfter > 0 && t.o.stopAfter < end) end = t.o.stopAfter;
    double t0 = now_s(), tLast = t0, loss = NAN, val = NAN;
    int64_t tokLast = 0;
    int64_t logEvery = t.o.ckptEvery < 10 ? 1 : 10;
    while (t.step < end) {
      if (gptext_interrupted(t.db)) {
        trainInterrupted(&t);
        goto done;
      }
      double lr = gpt_train_lr(t.step, t.o.steps, t.o.warmup, t.o.lr);
      if (trainStep(&t, &loss) != SQLITE_OK) goto done;
      t.step++;
      tokLast += t.o.batch * t.T;
      int bCkpt = t.step % t.o.ckptEvery == 0 || t.step == end;
      if (!bCkpt && t.step % logEvery != 0) continue;
      double tNow = now_s(), tps = tokLast / (tNow - tLast > 1e-9 ? tNow - tLast : 1e-9);
      tLast = tNow;
      tokLast = 0;
      double elapsed = t.elapsed0 + (tNow - t0);
      if (bCkpt) val = trainValLoss(&t);
      if (t.zErr) goto done;
      if (!isfinite(loss)) {
        rc = trainError(&t, "the loss is %g at step %lld: training diverged (a lower "
                        "learning_rate may help)", loss, (long long)t.step);
        goto done;
      }
      /* numbers as SQL literals: "inf" or "nan" would read as column names */
      char zVal[40], zTps[40], zElapsed[40];
      trainSqlNumber(zVal, sizeof(zVal), bCkpt ? val : NAN, "%.9g");
      trainSqlNumber(zTps, sizeof(zTps), tps, "%.6g");
      trainSqlNumber(zElapsed, sizeof(zElapsed), elapsed, "%.6g");
      char *zLog = sqlite3_mprintf("INSERT INTO main.gpt_train_log VALUES(%Q, %lld, %.9g, %s, %.9g, "
                                   "%s, %s)", t.zModel, (long long)t.step, loss, zVal,
                                   lr, zTps, zElapsed);
      if (bCkpt) {
        double e0 = t.elapsed0;
        t.elapsed0 = elapsed;
        rc = trainCheckpoint(&t, zLog);
        t.elapsed0 = e0;
      } else if (!t.bNew && !t.bClearLog) {
        rc = trainExec(&t, zLog, 0, 0, 0, 0);
      } else {
        /* a new model is invisible until its first checkpoint, and a new
        ** run's weights are not written until then: so are its rows */
        char *z = sqlite3_mprintf("%z%s;", t.zPendingLog, zLog);
        if (!z) rc = trainError(&t, "out of memory");
        t.zPendingLog = z;
      }
      sqlite3_free(zLog);
      if (rc != SQLITE_OK) goto done;
    }
    double secs = now_s() - t0;
    /* no held-out window (val_fraction 0, or fewer tokens than n_ctx + 1): no val_loss */
    char zVal[40];
    if (!isnan(val)) sqlite3_snprintf((int)sizeof(zVal), zVal, "%.4f", val);
    else sqlite3_snprintf((int)sizeof(zVal), zVal, "none (no whole window held out)");
    zSummary = sqlite3_mprintf("gpt_train: model '%s': steps %lld to %lld of %lld, %lld "
                               "parameters, %lld tokens (%lld held out), loss %.4f, val_loss "
                               "%s, %.0f tokens/s, %.1f s", t.zModel, (long long)step0,
                               (long long)t.step, (long long)t.o.steps,
                               (long long)gpt_n_params(&cfg, t.hasHead), (long long)t.nTok,
                               (long long)(t.nTok - t.nTrain), loss, zVal,
                               secs > 0 ? (double)(t.step - step0) * t.o.batch * t.T / secs : 0,
                               secs);
  }
done:
  if (nThreadsOld >= 0) gpt_threads_set(nThreadsOld);
  /* as after a trigger, the caller's last_insert_rowid() is what it was */
  sqlite3_set_last_insert_rowid(t.db, iRowidBefore);
  /* an interrupted write ends the caller's whole transaction (the
  ** checkpoint's undo does so after the message was made): what stood in
  ** it stands no longer */
  if (t.zErr && t.rcErr == SQLITE_INTERRUPT && t.bCallerTxn && sqlite3_get_autocommit(t.db)) {
    sqlite3_free(t.zErr);
    t.zErr = 0;
    trainError(&t, "interrupted at step %lld " TRAIN_TXN_ROLLED_BACK ": no checkpoint of this "
               "run stands, nor the transaction's earlier changes", (long long)t.step);
  }
  if (t.zErr) {
    gptext_result_error(ctx, t.zErr);
    if (t.rcErr && (t.rcErr & 0xff) != SQLITE_ERROR) sqlite3_result_error_code(ctx, t.rcErr);
  } else if (zSummary) {
    gptext_result_text(ctx, zSummary, (int)strlen(zSummary), SQLITE_TRANSIENT);
  } else {
    sqlite3_result_error_nomem(ctx); /* even the error's message could not be made */
  }
  sqlite3_free(zSummary);
  sqlite3_free(t.zErr);
  sqlite3_free(t.o.zTok);
  sqlite3_free(t.aTok);
  sqlite3_free(t.zPendingLog);
  gpt_trainer_free(t.pTr);
  gpt_model_free(t.pNet);
  if (pSelf) gptext_model_release(pSelf);
  else if (t.pTokM) gptext_model_release(t.pTokM);
}

/* ------------------------------------------------------ the tokenizer */

/* bpe_train's interrupt check, asked before each merge: one in 16 looks (a
** merge takes microseconds to a millisecond; on SQLite 3.40 a look runs a
** statement). */
typedef struct TrainTokPoll { sqlite3 *db; unsigned n; } TrainTokPoll;
/* bpe_train's stop test (above). */
static int trainTokShouldStop(void *ctx) {
  TrainTokPoll *p = (TrainTokPoll *)ctx;
  return (p->n++ & 15) == 0 && gptext_interrupted(p->db);
}

/* gpt_train_tokenizer(name, query, vocab_size): learns a byte-level BPE
** (engine/bpe.c) from the query's text rows and writes it as model NAME's
** gpt_vocab (the 256 bytes, then each merge's token, then <|endoftext|>) and
** gpt_merges, with a gpt_models row whose config gives vocab_size (a
** tokenizer without weights: {"tokenizer": NAME} hands it to gpt_train).
** All rows are written in one savepoint. */
static void gptTrainTokenizerFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char zTokFunc[] = "gpt_train_tokenizer";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  const sqlite3_int64 iRowidBefore = sqlite3_last_insert_rowid(db);
  /* the types first: reading a BLOB as text makes it report SQLITE_TEXT */
  int eNameType = sqlite3_value_type(argv[0]), eQueryType = sqlite3_value_type(argv[1]);
  const char *zName = (const char *)sqlite3_value_text(argv[0]);
  const char *zQuery = (const char *)sqlite3_value_text(argv[1]);
  sqlite3_int64 nVocab = sqlite3_value_int64(argv[2]);
  sqlite3_stmt *p = 0;
  GPTBpe *b = 0;
  GptSavepoint sp;
  char *zErr = 0, *zSummary = 0;
  int rc, bTxn = 0, rcErr = 0, bCallerTxn = !sqlite3_get_autocommit(db);
  (void)argc;
  if (eNameType != SQLITE_TEXT || !zName || !zName[0]) {
    gptext_result_error(ctx, "gpt_train_tokenizer: the model name must be non-empty text");
    return;
  }
  if (!gptext_name_ok(argv[0])) {
    gptext_result_error(ctx, "gpt_train_tokenizer: the model name must be " GPTEXT_NAME_RULE);
    return;
  }
  if (sqlite3_value_type(argv[2]) != SQLITE_INTEGER || nVocab < 258 || nVocab > 65536) {
    zErr = sqlite3_mprintf("%s: model '%s': vocab_size must be an integer from 258 to 65536 "
                           "(256 bytes, <|endoftext|> and at least one merge)", zTokFunc, zName);
    goto done;
  }
  if (gptext_query_writes(ctx, zTokFunc, zName, &zErr) != SQLITE_OK) goto done;
  if ((rcErr = gptext_check_writable(db, zTokFunc, zName, &zErr)) != SQLITE_OK) goto done;
  {
    char *zWhy = 0;
    if ((rc = gptext_ensure_schema(db, &zWhy)) != SQLITE_OK) {
      /* SQLite's code (SQLITE_BUSY, an interrupt), and a message naming the
      ** function and the model */
      rcErr = (rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(db) ? SQLITE_INTERRUPT
                                                                         : gptext_sql_code(db, rc);
      zErr = sqlite3_mprintf("%s: model '%s': %s", zTokFunc, zName,
                             rcErr == SQLITE_INTERRUPT ? "interrupted"
                             : zWhy                    ? zWhy
                                                       : "out of memory");
      sqlite3_free(zWhy);
      goto done;
    }
  }
  rc = sqlite3_prepare_v2(db, "SELECT 1 FROM main.gpt_models WHERE name = ?1", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
  rc = sqlite3_step(p);
  sqlite3_finalize(p);
  p = 0;
  if (rc == SQLITE_ROW) {
    zErr = sqlite3_mprintf("%s: model '%s' exists; gpt_drop it first", zTokFunc, zName);
    goto done;
  }
  b = bpe_new(0);
  if (!b) goto nomem;
  const char *zTail = 0;
  int bQueryText = eQueryType == SQLITE_TEXT && zQuery;
  if (!bQueryText || gptext_prepare_query(db, argv[1], &p, &zTail) != SQLITE_OK) {
    zErr = sqlite3_mprintf("%s: model '%s': query: %s", zTokFunc, zName,
                           bQueryText ? sqlite3_errmsg(db) : "must be the text of a SELECT");
    goto done;
  }
  if (!p || !sqlite3_stmt_readonly(p) || sqlite3_column_count(p) != 1 ||
      gptext_sql_has_more(zTail)) {
    zErr = sqlite3_mprintf("%s: model '%s': the query must be one SELECT of one text column",
                           zTokFunc, zName);
    goto done;
  }
  char zParamMsg[200];
  if (gptext_query_param(p, zTokFunc, zParamMsg, sizeof(zParamMsg))) {
    zErr = sqlite3_mprintf("%s: model '%s': %s", zTokFunc, zName, zParamMsg);
    goto done;
  }
  sqlite3_int64 iRow = 0, nBytes = 0;
  while ((rc = gptext_query_step(p)) == SQLITE_ROW) {
    iRow++;
    if (sqlite3_column_type(p, 0) == SQLITE_NULL) continue;
    if (sqlite3_column_type(p, 0) != SQLITE_TEXT) {
      zErr = sqlite3_mprintf("%s: model '%s': query row %lld is not text", zTokFunc, zName,
                             iRow);
      goto done;
    }
    const char *z = (const char *)sqlite3_column_text(p, 0);
    nBytes += sqlite3_column_bytes(p, 0);
    int rcAdd = bpe_add_text(b, z, (size_t)sqlite3_column_bytes(p, 0));
    if (rcAdd == BPE_EWORD) {
      zErr = sqlite3_mprintf("%s: model '%s': query row %lld has a word (a pre-token) of more "
                             "than %d bytes, the encoder's limit: the trained tokenizer could "
                             "not encode it", zTokFunc, zName, iRow, TOK_MAX_WORD);
      goto done;
    }
    if (rcAdd) goto nomem;
  }
  if (rc != SQLITE_DONE) goto sql_error;
  if (nBytes == 0) {
    /* no pair to merge: a tokenizer of the 256 bytes alone, under vocab_size's minimum */
    zErr = sqlite3_mprintf("%s: model '%s': the query gave no text (%lld rows, all NULL or "
                           "empty)", zTokFunc, zName, iRow);
    goto done;
  }
  sqlite3_finalize(p);
  p = 0;
  {
    TrainTokPoll poll = {db, 0};
    int rcBpe = bpe_train(b, (int)nVocab - 1, trainTokShouldStop, &poll);
    if (rcBpe < 0) goto nomem;
    if (rcBpe > 0) {
      rcErr = SQLITE_INTERRUPT;
      zErr = sqlite3_mprintf("%s: model '%s': interrupted", zTokFunc, zName);
      goto done;
    }
  }
  /* a pair is merged once seen twice: text without one teaches nothing */
  if (bpe_n_merges(b) == 0) {
    zErr = sqlite3_mprintf("%s: model '%s': the text has no pair of symbols that occurs twice, "
                           "so no merge can be learned (vocab_size counts at least one)",
                           zTokFunc, zName);
    goto done;
  }
  int nTok = bpe_n_tokens(b);
  /* the rows, in one savepoint */
  {
    char *zMsg = 0;
    if ((rcErr = gptext_savepoint_begin(db, sqlite3_user_data(ctx), &sp, zTokFunc, &zMsg)) !=
        SQLITE_OK) {
      zErr = sqlite3_mprintf("%s: model '%s': %s", zTokFunc, zName, zMsg ? zMsg : "busy");
      sqlite3_free(zMsg);
      goto done;
    }
  }
  bTxn = 1;
  char *zCfg = sqlite3_mprintf("{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":1,\"n_embd\":1,"
                               "\"n_ctx\":1,\"vocab_size\":%d,\"layer_norm_epsilon\":1e-05,"
                               "\"tokenizer_only\":true}", nTok + 1);
  rc = sqlite3_prepare_v2(db, "INSERT INTO main.gpt_models(name, config, source) "
                          "VALUES(?1, ?2, 'gpt_train_tokenizer')", -1, &p, 0);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
    sqlite3_bind_text(p, 2, zCfg, -1, SQLITE_STATIC);
    rc = sqlite3_step(p);
  }
  sqlite3_free(zCfg);
  sqlite3_finalize(p);
  p = 0;
  if (rc != SQLITE_DONE) goto sql_error;
  rc = sqlite3_prepare_v2(db, "INSERT INTO main.gpt_vocab(model, token_id, token) VALUES(?1, ?2, ?3)",
                          -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  for (int id = 0; id <= nTok; id++) {
    int n = 13;
    char *zTok;
    if (id < nTok) {
      /* a byte's byte-level form is at most 2 bytes of UTF-8 */
      const unsigned char *zRaw = bpe_token(b, id, &n);
      zTok = sqlite3_malloc64((size_t)n * 2 + 16);
      if (!zTok) goto nomem;
      n = tok_byte_level((const char *)zRaw, n, zTok, n * 2 + 16);
    } else {
      zTok = sqlite3_mprintf("<|endoftext|>");
      if (!zTok) goto nomem;
    }
    sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
    sqlite3_bind_int(p, 2, id);
    sqlite3_bind_text(p, 3, zTok, n, sqlite3_free);
    if (sqlite3_step(p) != SQLITE_DONE) goto sql_error;
    sqlite3_reset(p);
  }
  sqlite3_finalize(p);
  p = 0;
  rc = sqlite3_prepare_v2(db, "INSERT INTO main.gpt_merges(model, rank, left, right) "
                          "VALUES(?1, ?2, ?3, ?4)", -1, &p, 0);
  if (rc != SQLITE_OK) goto sql_error;
  for (int r = 0; r < bpe_n_merges(b); r++) {
    int l, rr, nl, nr;
    bpe_merge(b, r, &l, &rr);
    const unsigned char *a1 = bpe_token(b, l, &nl), *a2 = bpe_token(b, rr, &nr);
    char *zL = sqlite3_malloc64((size_t)nl * 2 + 16), *zR = sqlite3_malloc64((size_t)nr * 2 + 16);
    if (!zL || !zR) {
      sqlite3_free(zL);
      sqlite3_free(zR);
      goto nomem;
    }
    nl = tok_byte_level((const char *)a1, nl, zL, nl * 2 + 16);
    nr = tok_byte_level((const char *)a2, nr, zR, nr * 2 + 16);
    sqlite3_bind_text(p, 1, zName, -1, SQLITE_STATIC);
    sqlite3_bind_int(p, 2, r);
    sqlite3_bind_text(p, 3, zL, nl, sqlite3_free);
    sqlite3_bind_text(p, 4, zR, nr, sqlite3_free);
    if (sqlite3_step(p) != SQLITE_DONE) goto sql_error;
    sqlite3_reset(p);
  }
  sqlite3_finalize(p);
  p = 0;
  {
    char *zMsg = 0;
    int rcRelease = gptext_savepoint_release(&sp, &zMsg);
    if (rcRelease != SQLITE_OK) {
      /* SQLite's code goes on (SQLITE_BUSY on the commit; it was SQLITE_ERROR) */
      rcErr = (rcRelease & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(db)
                  ? SQLITE_INTERRUPT
                  : rcRelease;
      zErr = sqlite3_mprintf("%s: model '%s': %s", zTokFunc, zName,
                             rcErr == SQLITE_INTERRUPT ? "interrupted" : zMsg ? zMsg : "busy");
      sqlite3_free(zMsg);
      goto done;
    }
  }
  zSummary = sqlite3_mprintf("gpt_train_tokenizer: model '%s': %d tokens (256 bytes, %d merges, "
                             "<|endoftext|>) from %lld bytes, %lld distinct words", zName,
                             nTok + 1, bpe_n_merges(b), (long long)bpe_n_bytes(b),
                             (long long)bpe_n_words(b));
  if (zSummary && bpe_n_skipped(b) > 0) {
    /* the word table is full: say so, as the merges then depend on row order */
    zSummary = sqlite3_mprintf("%z; %lld occurrences of words first seen after the first %lld "
                               "distinct ones were not counted", zSummary,
                               (long long)bpe_n_skipped(b), (long long)bpe_n_words(b));
  }
  goto done;
nomem:
  if (!zErr) zErr = sqlite3_mprintf("%s: model '%s': out of memory", zTokFunc, zName);
  goto done;
sql_error:
  if (!zErr) {
    char *zMsg = 0;
    rcErr = gptext_sql_failure(db, sqlite3_errcode(db), &zMsg);
    zErr = sqlite3_mprintf("%s: model '%s': %s", zTokFunc, zName,
                           rcErr == SQLITE_INTERRUPT ? "interrupted" : zMsg ? zMsg : "out of memory");
    sqlite3_free(zMsg);
  }
done:
  sqlite3_finalize(p);
  if (bTxn) gptext_savepoint_end(&sp);
  /* as after a trigger, the caller's last_insert_rowid() is what it was */
  sqlite3_set_last_insert_rowid(db, iRowidBefore);
  bpe_free(b);
  /* an interrupted write ends the caller's whole transaction: say so, as
  ** gpt_train does */
  if (zErr && rcErr == SQLITE_INTERRUPT && bCallerTxn && sqlite3_get_autocommit(db)) {
    sqlite3_free(zErr);
    zErr = sqlite3_mprintf("%s: model '%s': interrupted " TRAIN_TXN_ROLLED_BACK ": neither the "
                           "tokenizer nor the transaction's earlier changes stand", zTokFunc,
                           zName);
  }
  if (zErr) {
    gptext_result_error(ctx, zErr);
    if (rcErr && (rcErr & 0xff) != SQLITE_ERROR) sqlite3_result_error_code(ctx, rcErr);
  } else if (zSummary) {
    gptext_result_text(ctx, zSummary, (int)strlen(zSummary), SQLITE_TRANSIENT);
  } else {
    sqlite3_result_error_nomem(ctx);
  }
  sqlite3_free(zErr);
  sqlite3_free(zSummary);
}

/* Registers gpt_train: DIRECTONLY (it writes tables and runs long), never
** DETERMINISTIC. */
int gptext_register_train(sqlite3 *db, GptConn *pConn) {
  int rc = sqlite3_create_function(db, "gpt_train", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, pConn,
                                   gptTrainFunc, 0, 0);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function(db, "gpt_train", 3, SQLITE_UTF8 | SQLITE_DIRECTONLY, pConn,
                                 gptTrainFunc, 0, 0);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function(db, "gpt_train_tokenizer", 3, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                 pConn, gptTrainTokenizerFunc, 0, 0);
  return rc;
}
