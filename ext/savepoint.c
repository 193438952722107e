/*
** The savepoint every writer (gpt_import, gpt_drop, gpt_quantize, and any
** later one) runs in, so that it waits for other writers as SQLite's own
** statements do and fails all or nothing.
**
**   GptSavepoint sp;
**   rc = gptext_savepoint_begin(db, pConn, &sp, "gpt_import", &zMsg);
**   ... reads and writes ...
**   if (ok) rc = gptext_savepoint_release(&sp, &zMsg);
**   gptext_savepoint_end(&sp);     (rolls back unless released)
**
** How it works. SQLite invokes the busy handler (sqlite3_busy_timeout) only
** while a connection holds no lock yet: a transaction that has read and then
** wants to write gets SQLITE_BUSY at once, because waiting could deadlock
** with the other writer. So the savepoint's first statement is a write that
** changes nothing (DELETE FROM main.gpt_models WHERE 0): it takes the read and the
** write lock together, as BEGIN IMMEDIATE does, and the busy timeout applies.
** Outside a transaction that is the whole story. Inside an explicit BEGIN
** that has already read, SQLite itself cannot wait, and neither can we: the
** writer fails with SQLITE_BUSY, as an INSERT there would.
**
** After sqlite3_interrupt() SQLite prepares no statement and runs none to
** completion until the outermost statement ends, so RELEASE and ROLLBACK TO
** are prepared up front. An interrupted ROLLBACK TO does nothing, but an
** interrupted write statement rolls the whole transaction back, as for any
** interrupted INSERT, UPDATE or DELETE; the no-op DELETE is that statement.
*/
#include <string.h>
#include "gpt_ext.h"

/* Indexes of GptSavepoint.apStmt. */
enum { SP_BEGIN, SP_RELEASE, SP_ROLLBACK, SP_WRITE, SP_ABORT, SP_COUNT };

/*
** The result code a writer reports for a failed SQLite call that returned
** rc: the connection's extended code when it is of the same kind (so
** SQLITE_BUSY_SNAPSHOT or SQLITE_IOERR_WRITE reach the caller), else rc.
*/
int gptext_sql_code(sqlite3 *db, int rc) {
  int ext = sqlite3_extended_errcode(db);
  if ((ext & 0xff) == (rc & 0xff)) return ext;
  return rc;
}

/*
** What a failed SQLite call that returned rc left on db: its code
** (gptext_sql_code; SQLITE_INTERRUPT when the call was interrupted) and a
** copy of its message in *pzMsg (sqlite3_malloc'd; NULL when out of memory).
** Both are read before the interrupt check, which on SQLite before 3.41
** runs a statement of its own and so replaces them ("not an error").
*/
int gptext_sql_failure(sqlite3 *db, int rc, char **pzMsg) {
  int code = gptext_sql_code(db, rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_ERROR : rc);
  *pzMsg = sqlite3_mprintf("%s", sqlite3_errmsg(db));
  if ((rc & 0xff) == SQLITE_INTERRUPT || gptext_interrupted(db)) code = SQLITE_INTERRUPT;
  return code;
}

/*
** Opens a savepoint named for zFunc and this call, takes the write lock and makes sure the gpt_ tables
** exist. On failure returns SQLite's result code (SQLITE_BUSY when another
** connection kept the write lock past the busy timeout) with *pzMsg the
** reason (sqlite3_malloc'd, no function name in front), and leaves nothing
** open.
*/
int gptext_savepoint_begin(sqlite3 *db, const GptConn *pConn, GptSavepoint *pSave,
                           const char *zFunc, char **pzMsg) {
  static const char zWrite[] = "DELETE FROM main.gpt_models WHERE 0";
  char *azSql[SP_COUNT];
  char *zErr = 0;
  int i, rc = SQLITE_OK;
  unsigned long long uNonce;

  memset(pSave, 0, sizeof(*pSave));
  pSave->db = db;
  pSave->bOwnTxn = sqlite3_get_autocommit(db);
  /* A name of this call's own: a caller's savepoint of the writer's name
  ** (SAVEPOINT gpt_import), or a writer called again from inside another
  ** call's, is never released or rolled back by this one. */
  sqlite3_randomness(sizeof(uNonce), &uNonce);
  azSql[SP_BEGIN] = sqlite3_mprintf("SAVEPOINT %s_%016llx", zFunc, uNonce);
  azSql[SP_RELEASE] = sqlite3_mprintf("RELEASE %s_%016llx", zFunc, uNonce);
  azSql[SP_ROLLBACK] = sqlite3_mprintf("ROLLBACK TO %s_%016llx", zFunc, uNonce);
  azSql[SP_WRITE] = sqlite3_mprintf("%s", zWrite);
  azSql[SP_ABORT] = sqlite3_mprintf("ROLLBACK");
  for (i = 0; i < SP_COUNT && rc == SQLITE_OK; i++) {
    if (azSql[i] == 0) {
      rc = SQLITE_NOMEM;
      break;
    }
    rc = sqlite3_prepare_v2(db, azSql[i], -1, &pSave->apStmt[i], 0);
    if (rc == SQLITE_ERROR && i == SP_WRITE && !gptext_interrupted(db)) {
      /* A database without the gpt_ tables: they are created first (the
      ** CREATE TABLE statements take the write lock as the first thing they
      ** do, so they wait out the busy timeout too). */
      rc = gptext_ensure_schema(db, &zErr);
      if (rc != SQLITE_OK) {
        rc = gptext_sql_code(db, rc);
        *pzMsg = zErr;
        zErr = 0;
        break;
      }
      rc = sqlite3_prepare_v2(db, azSql[i], -1, &pSave->apStmt[i], 0);
    }
    if (rc != SQLITE_OK) {
      rc = gptext_sql_code(db, rc);
      *pzMsg = sqlite3_mprintf("%s", sqlite3_errmsg(db));
    }
  }
  for (i = 0; i < SP_COUNT; i++) sqlite3_free(azSql[i]);
  if (rc != SQLITE_OK) goto done;

  rc = sqlite3_step(pSave->apStmt[SP_BEGIN]);
  sqlite3_reset(pSave->apStmt[SP_BEGIN]);
  if (rc == SQLITE_BUSY) {
    /* SQLite opens no savepoint while a write statement runs, e.g.
    ** INSERT INTO t SELECT gpt_import(...); waiting would not help. */
    *pzMsg = sqlite3_mprintf("cannot open a savepoint inside a statement that writes "
                             "(%s); call %s() from a SELECT of its own",
                             sqlite3_errmsg(db), zFunc);
    rc = SQLITE_ERROR;
    goto done;
  }
  if (rc != SQLITE_DONE) {
    rc = gptext_sql_code(db, rc);
    *pzMsg = sqlite3_mprintf("%s", sqlite3_errmsg(db));
    /* stopped (an interrupt) after SQLite opened the savepoint that began
    ** the transaction: open, to be undone, or the caller's connection
    ** stayed inside a transaction and its next writes were lost at close.
    ** (Inside the caller's transaction it stays, empty, until the
    ** caller's transaction ends: no statement runs to completion now.) */
    if (pSave->bOwnTxn && !sqlite3_get_autocommit(db)) pSave->bOpen = 1;
    goto done;
  }
  pSave->bOpen = 1;

  /* The write lock, before anything is read (see the top of this file). */
  rc = sqlite3_step(pSave->apStmt[SP_WRITE]);
  sqlite3_reset(pSave->apStmt[SP_WRITE]);
  if (rc != SQLITE_DONE) {
    rc = gptext_sql_code(db, rc);
    *pzMsg = sqlite3_mprintf("%s", sqlite3_errmsg(db));
    goto done;
  }
  /* Tables or triggers of sql/schema.sql that are missing, under the lock. */
  rc = gptext_ensure_schema(db, &zErr);
  if (rc != SQLITE_OK) {
    rc = gptext_sql_code(db, rc);
    *pzMsg = zErr;
    zErr = 0;
    goto done;
  }
  /* A schema not read again at load that calls a writer, under the lock
  ** too: read before it, it kept the lock from waiting out another
  ** connection's. */
  rc = gptext_schema_unread_check(db, pConn, pzMsg);
done:
  sqlite3_free(zErr);
  if (rc != SQLITE_OK) {
    if (*pzMsg == 0 && rc == SQLITE_NOMEM) *pzMsg = sqlite3_mprintf("out of memory");
    gptext_savepoint_end(pSave);
  }
  return rc;
}

/*
** Releases the savepoint: its work becomes part of the enclosing transaction,
** or is committed when there is none. On failure returns SQLite's code with
** *pzMsg, and the savepoint stays open for gptext_savepoint_end to undo.
*/
int gptext_savepoint_release(GptSavepoint *pSave, char **pzMsg) {
  int rc = sqlite3_step(pSave->apStmt[SP_RELEASE]);
  sqlite3_reset(pSave->apStmt[SP_RELEASE]);
  /* interrupted after the commit (an interrupt stops RELEASE, a read, with
  ** no rollback; a commit that failed would have said SQLITE_BUSY, _FULL,
  ** ...): the work stands, so the call succeeded */
  if ((rc & 0xff) == SQLITE_INTERRUPT && pSave->bOwnTxn && sqlite3_get_autocommit(pSave->db))
    rc = SQLITE_DONE;
  if (rc != SQLITE_DONE) {
    rc = gptext_sql_code(pSave->db, rc);
    *pzMsg = sqlite3_mprintf("%s", sqlite3_errmsg(pSave->db));
    return rc;
  }
  pSave->bOpen = 0;
  return SQLITE_OK;
}

/*
** Undoes everything since the savepoint and closes it, when it is still open
** (after an interrupt, by rolling back the whole transaction: see the top of
** this file), then finalizes the statements. Safe to call more than once.
** When the savepoint began the transaction, the whole transaction is rolled
** back instead, so a failed commit (SQLITE_BUSY on the exclusive lock) never
** leaves the connection inside a transaction it did not begin.
*/
void gptext_savepoint_end(GptSavepoint *pSave) {
  int i, rc;
  if (pSave->bOpen) {
    if (pSave->bOwnTxn) {
      rc = sqlite3_step(pSave->apStmt[SP_ABORT]);
      sqlite3_reset(pSave->apStmt[SP_ABORT]);
    } else {
      rc = sqlite3_step(pSave->apStmt[SP_ROLLBACK]);
      sqlite3_reset(pSave->apStmt[SP_ROLLBACK]);
      if (rc == SQLITE_DONE) {
        sqlite3_step(pSave->apStmt[SP_RELEASE]);
        sqlite3_reset(pSave->apStmt[SP_RELEASE]);
      }
    }
    if (rc != SQLITE_DONE) {
      sqlite3_step(pSave->apStmt[SP_WRITE]);
      sqlite3_reset(pSave->apStmt[SP_WRITE]);
    }
    pSave->bOpen = 0;
  }
  for (i = 0; i < SP_COUNT; i++) {
    sqlite3_finalize(pSave->apStmt[i]);
    pSave->apStmt[i] = 0;
  }
}
