"""An interrupt that ends one of the extension's own statements, at every
point of a call: the call gives its usual result or fails with
SQLITE_INTERRUPT, and what it leaves cached gives the usual result after.

A progress handler that returns non-zero once (as a client cancels a query)
interrupts whichever statement runs then. Statements whose ending was not
checked had cut lists short without an error: a model cached with part of
its stop ids (for every connection of the process), or a call run with part
of its stop strings. Each point K is a fresh load: the database is opened
through a new hard link, a new key of the process-wide model cache.

Debian's python3 and its sqlite3 module.

    python3 tests/python/test_oneshot_interrupt.py BUILD_DIR
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, finish  # noqa: E402

build = sys.argv[1] if len(sys.argv) > 1 else "build"
ext = os.path.join(build, "gpt")
SQLITE_INTERRUPT = 9


def connect(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(ext)
    return db


def rows(db, sql, args):
    return db.execute(sql, args).fetchall()


def interrupt_once_at(db, k):
    """Sets a progress handler on db that interrupts its k-th point once."""
    seen = [0]

    def once():
        seen[0] += 1
        return 1 if seen[0] == k else 0
    db.set_progress_handler(once, 1)


def interrupted_at(db, k, sql, args, want, bad):
    """Runs the call with a progress handler that interrupts its k-th point
    once: its usual result or SQLITE_INTERRUPT, else an entry in bad."""
    interrupt_once_at(db, k)
    try:
        got = rows(db, sql, args)
        if got != want:
            bad.append((k, "result", got))
    except sqlite3.Error as e:
        code = getattr(e, "sqlite_errorcode", None)
        if code != SQLITE_INTERRUPT or "interrupted" not in str(e):
            bad.append((k, "error", code, str(e)))
    db.set_progress_handler(None, 1)


def main():
    tmp = tempfile.mkdtemp(prefix="gpt-oneshot-")
    try:
        folder = os.path.join(tmp, "m")
        subprocess.run([os.path.join(build, "mkmodel"), folder, "--arch", "qwen3", "--vocab",
                        "300", "--ctx", "64", "--seed", "1"], check=True,
                       stdout=subprocess.DEVNULL)
        path = os.path.join(tmp, "base.db")
        db = connect(path)
        db.execute("SELECT gpt_import('q', ?)", (folder,))
        # the first greedy token after the prompt becomes a stop id: a model
        # loaded with all its stop ids ends at once
        first = db.execute("SELECT token_id FROM gpt_generate_tokens('Hello', "
                           "'{\"max_tokens\": 1, \"temperature\": 0}')").fetchone()[0]
        cfg = json.loads(db.execute("SELECT config FROM gpt_tokenizer WHERE model = 'q'")
                         .fetchone()[0])
        cfg["stop_ids"] = [first] + cfg["stop_ids"]
        db.execute("UPDATE gpt_tokenizer SET config = ? WHERE model = 'q'", (json.dumps(cfg),))
        db.close()

        cases = [
            ("stop ids", "SELECT step, token_id, finish_reason FROM gpt_generate_tokens(?, ?)",
             ("Hello", '{"max_tokens": 3, "temperature": 0}')),
            ("stop strings", "SELECT step, token_id, finish_reason FROM gpt_generate_tokens(?, ?)",
             ("Hi", '{"max_tokens": 6, "temperature": 0, "stop": ["zzz", "\u00e2", "q"]}')),
            ("detokenize", "SELECT gpt_detokenize(?, ?)", ("[72, 105]", '{"model": "q"}')),
            # its max_tokens check had read an interrupt as "not given": the
            # default of 8 tokens replaced the caller's 1
            ("summarize", "SELECT gpt_summarize(?, ?)",
             ("hello there", '{"max_tokens": 1, "temperature": 0, "template": "{text} TL;DR:"}')),
        ]
        for name, sql, args in cases:
            link = os.path.join(tmp, f"{name.replace(' ', '_')}-0.db")
            os.link(path, link)
            db = connect(link)
            want = rows(db, sql, args)
            calls = [0]

            def count():
                calls[0] += 1
                return 0
            # the handler's calls in a whole call with its model loaded
            os.link(path, link.replace("-0.db", "-n.db"))
            dbn = connect(link.replace("-0.db", "-n.db"))
            dbn.set_progress_handler(count, 1)
            rows(dbn, sql, args)
            dbn.close()
            db.close()
            n_calls = calls[0]
            bad = []
            # every point of the load and the first steps, then a sample
            points = list(range(1, min(n_calls, 1200) + 1)) + list(range(1201, n_calls + 2, 97))
            for k in points:
                link_k = link.replace("-0.db", f"-{k}.db")
                os.link(path, link_k)
                db = connect(link_k)
                interrupted_at(db, k, sql, args, want, bad)
                after = rows(db, sql, args)
                if after != want:
                    bad.append((k, "after", after))
                db.close()
                os.unlink(link_k)
            check(f"oneshot-{name}", not bad and n_calls > 10,
                  f"{len(points)} of {n_calls} points; first differences: {bad[:4]}")
            print(f"{name}: {len(points)} of {n_calls} interrupt points, {len(bad)} wrong")
            # the same call with its model cached: every point of its own
            # checks (gpt_summarize's max_tokens check lies past the points
            # a fresh load leaves above)
            db = connect(link.replace("-0.db", "-n.db"))
            rows(db, sql, args)
            bad = []
            for k in range(1, 401):
                interrupted_at(db, k, sql, args, want, bad)
            db.close()
            check(f"oneshot-{name}-cached", not bad, f"first differences: {bad[:4]}")
        writers_at_their_savepoints(tmp, path, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish("test_oneshot_interrupt.py")


def watch_writer(db, fn, at, k=0):
    """Counts db's progress points, interrupting the k-th once (none for 0),
    and records in at the point where writer fn's SAVEPOINT and RELEASE
    statements began."""
    calls = [0]

    def count():
        calls[0] += 1
        return 1 if calls[0] == k else 0

    def trace(stmt):
        for marker in ("SAVEPOINT", "RELEASE"):
            if stmt.startswith(f"-- {marker} {fn}"):
                at.setdefault(marker, calls[0])
    db.set_progress_handler(count, 1)
    db.set_trace_callback(trace)


def writers_at_their_savepoints(tmp, path, folder):
    """An interrupt at and just after a writer's SAVEPOINT and RELEASE: the
    call fails and leaves nothing, or succeeds and its model stands, and the
    connection is never left inside a transaction. Stopped just after SQLite
    opened the savepoint, a call had left the connection in a transaction
    (the caller's next writes were lost at close); stopped just after the
    commit, it had said "interrupted" of a model that stood."""
    cases = [
        ("gpt_import", "SELECT gpt_import('w', ?)", (folder,)),
        ("gpt_quantize", "SELECT gpt_quantize('q', 'w', 'q8_0')", ()),
        ("gpt_train_tokenizer", "SELECT gpt_train_tokenizer('w', ?, 258)",
         ("SELECT 'ab ab ab'",)),
    ]
    for fn, sql, args in cases:
        probe = os.path.join(tmp, f"{fn}-probe.db")
        shutil.copyfile(path, probe)
        db = connect(probe)
        at = {}
        watch_writer(db, fn, at)
        db.execute(sql, args).fetchall()
        db.close()
        bad, tried = [], 0
        for marker, k0 in sorted(at.items()):
            for k in range(k0, k0 + 5):
                work = os.path.join(tmp, f"{fn}-{k}.db")
                shutil.copyfile(path, work)
                db = connect(work)
                interrupt_once_at(db, k)
                try:
                    db.execute(sql, args).fetchall()
                    failed = None
                except sqlite3.Error as e:
                    failed = str(e)
                db.set_progress_handler(None, 1)
                in_txn = db.in_transaction
                db.close()
                db = sqlite3.connect(work)
                stands = db.execute("SELECT count(*) FROM gpt_models WHERE name = 'w'"
                                    ).fetchone()[0]
                db.close()
                os.unlink(work)
                tried += 1
                # a plain "interrupted" ends the outer statement after the
                # call returned: its work stands, as any function's would
                from_call = failed is not None and failed != "interrupted"
                if in_txn or (from_call and stands) or (failed is None and not stands):
                    bad.append((marker, k - k0, failed, in_txn, stands))
        check(f"oneshot-{fn}-savepoint", len(at) == 2 and not bad,
              f"markers {at}, {tried} points; wrong: {bad[:4]}")
        check(f"oneshot-{fn}-callers-savepoint", *callers_savepoint_kept(tmp, path, fn, sql, args))


def callers_savepoint_kept(tmp, path, fn, sql, args):
    """Inside the caller's transaction and its own savepoint of the writer's
    name, the writer interrupted at and just after its SAVEPOINT and RELEASE:
    the caller's ROLLBACK TO still undoes the caller's work and the writer's.
    With the writer's savepoint named as the writer, one left open by the
    interrupt took the caller's ROLLBACK TO, and the caller's row stayed.
    Returns (ok, detail) for check."""
    def run(k, at):
        work = os.path.join(tmp, f"{fn}-caller.db")
        shutil.copyfile(path, work)
        db = connect(work)
        db.execute("CREATE TABLE t(x)")
        db.execute("BEGIN")
        db.execute(f"SAVEPOINT {fn}")
        db.execute("INSERT INTO t VALUES (1)")
        watch_writer(db, fn, at, k)
        try:
            db.execute(sql, args).fetchall()
        except sqlite3.Error:
            pass
        db.set_progress_handler(None, 1)
        db.set_trace_callback(None)
        try:
            if db.in_transaction:  # else the interrupt rolled all of it back
                db.execute(f"ROLLBACK TO {fn}")
                db.execute("COMMIT")
            left = db.execute("SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM "
                              "gpt_models WHERE name = 'w')").fetchone()[0]
        except sqlite3.Error as e:  # the writer had released the caller's
            left = str(e)
        db.close()
        os.unlink(work)
        return left
    at = {}
    run(0, at)
    bad = [(marker, k - k0) for marker, k0 in sorted(at.items())
           for k in range(k0, k0 + 5) if run(k, {}) != 0]
    return len(at) == 2 and not bad, f"markers {at}; left work at {bad[:4]}"

main()
