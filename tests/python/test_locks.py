#!/usr/bin/python3
"""Two connections of one process on one database file, one of them holding
the write lock, each calling the extension: neither may wait on the other
through the extension.

    /usr/bin/python3 tests/python/test_locks.py [EXTENSION]     (run by make test)

The extension used to read a model's config and tokenizer while holding the
process's model-cache mutex. A connection whose read waited there for
another connection's write lock (SQLite's busy handler) then held the mutex
for its whole busy timeout, and when the lock holder called the extension it
waited for that mutex: a deadlock until the timeout, and every call of the
process on any database stalled meanwhile. Here connection A starts to load
the model; a progress handler lets connection W take an exclusive lock right
then and call the extension inside its transaction. Both must finish well
within A's 30 s busy timeout, and a third connection on another file must
not wait at all.

Ends with "N passed, N failed" and exits 1 on any failure.
"""
import os
import sqlite3
import subprocess
import sys
import threading
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, counts, finish  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
EXT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(BUILD, "gpt")


def connect(path, timeout):
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    db.enable_load_extension(True)
    db.load_extension(EXT)
    db.enable_load_extension(False)
    return db


def fresh_db(name, journal_mode):
    """A new database file in build/testdb holding the model 'm' (pylocks),
    in that journal mode, and a connection to it."""
    path = os.path.join(BUILD, "testdb", name)
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = connect(path, 5)
    db.execute(f"PRAGMA journal_mode = {journal_mode}")
    db.execute("SELECT gpt_import('m', ?)", (os.path.join(BUILD, "models", "pylocks"),))
    return path, db


def hold_before_weights(db):
    """An authorizer that holds db's next model load just before its weights'
    snapshot (which reads gpt_models after the tokenizer's tables): held is
    set when it waits there, and it goes on when go is set."""
    held, go, seen = threading.Event(), threading.Event(), []

    def auth(action, table, *_):
        if action == sqlite3.SQLITE_READ and table and table.startswith("gpt_"):
            if table != "gpt_models":
                seen.append(table)
            elif seen and not held.is_set():
                held.set()
                go.wait(10)
        return sqlite3.SQLITE_OK

    db.set_authorizer(auth)
    return held, go


def main():
    model = os.path.join(BUILD, "models", "pylocks")
    os.makedirs(model, exist_ok=True)
    subprocess.run([os.path.join(BUILD, "mkmodel"), model, "--layers", "1", "--heads", "2",
                    "--embd", "16", "--ctx", "32", "--seed", "3"], check=True,
                   stdout=subprocess.DEVNULL)
    os.makedirs(os.path.join(BUILD, "testdb"), exist_ok=True)
    paths = []
    for i in (1, 2):
        path, setup = fresh_db(f"python-locks-{i}.db", "DELETE")
        setup.close()
        paths.append(path)

    a = connect(paths[0], 30)
    w = connect(paths[0], 30)
    go = threading.Event()
    fired = []

    def progress():
        # A is inside its first statements on the model's rows: W locks now
        if not fired:
            fired.append(1)
            go.set()
            time.sleep(0.5)
        return 0

    a.set_progress_handler(progress, 2000)
    out = {}

    def run_a():
        t0 = time.time()
        try:
            out["a"] = a.execute("SELECT gpt_token_count('hello world')").fetchone()[0]
        except sqlite3.Error as e:
            out["a"] = f"error: {e}"
        out["a_secs"] = time.time() - t0

    def run_w():
        go.wait(30)
        w.execute("BEGIN EXCLUSIVE")
        try:
            out["w"] = w.execute("SELECT gpt_token_count('hi')").fetchone()[0]
        except sqlite3.Error as e:
            out["w"] = f"error: {e}"
        w.execute("COMMIT")

    threads = [threading.Thread(target=run_a, daemon=True),
               threading.Thread(target=run_w, daemon=True)]
    for t in threads:
        t.start()
    # meanwhile a connection on another file is not held up
    other = connect(paths[1], 5)
    go.wait(30)
    t0 = time.time()
    n = other.execute("SELECT gpt_token_count('hello')").fetchone()[0]
    check("other file", n == 1 and time.time() - t0 < 5, f"{n} after {time.time() - t0:.1f} s")
    for t in threads:
        t.join(20)
    check("no deadlock", not any(t.is_alive() for t in threads), repr(out))
    check("writer's call", out.get("w") == 1, repr(out))
    check("reader's call", out.get("a") == 2 and out.get("a_secs", 99) < 20, repr(out))
    if any(t.is_alive() for t in threads):
        # blocked threads would hold up the interpreter's exit
        print(f"test_locks.py: {counts['passed']} passed, {counts['failed']} failed")
        sys.stdout.flush()
        os._exit(1)
    for db in (a, w, other):
        db.close()


def weights_wait():
    """A connection waiting for another's load of the same model's weights:
    its own interrupt stops it, and one that holds the write lock waits its
    own busy timeout at most. A loads; an authorizer holds it just before
    its weights' snapshot while W takes an exclusive lock, so that A then
    waits for W in its busy handler (3 s), and W calls the extension on the
    same model. The wait for A had no end: W could not be interrupted, and
    waited out A's busy timeout twice."""
    path, setup = fresh_db("python-locks-w.db", "DELETE")
    setup.close()
    a, w = connect(path, 3), connect(path, 30)
    held, go = hold_before_weights(a)
    out = {}
    sql = "SELECT gpt_generate('hello', '{\"max_tokens\": 2, \"temperature\": 0}')"

    def call(name, db):
        t0 = time.time()
        try:
            out[name] = db.execute(sql).fetchone()[0]
        except sqlite3.Error as e:
            out[name] = f"error: {e}"
        out[name + "_secs"] = time.time() - t0

    ta = threading.Thread(target=call, args=("a", a), daemon=True)
    ta.start()
    held.wait(10)
    w.execute("BEGIN EXCLUSIVE")
    go.set()
    time.sleep(0.2)
    tw = threading.Thread(target=call, args=("w1", w), daemon=True)
    tw.start()
    time.sleep(0.3)
    w.interrupt()
    tw.join(5)
    check("a waiting connection's interrupt", out.get("w1") == "error: gpt_generate: model 'm': interrupted"
          and out.get("w1_secs", 99) < 1.5, repr(out))
    w.execute("PRAGMA busy_timeout = 500")
    call("w2", w)
    check("a waiting writer's busy timeout", str(out.get("w2")).startswith(
        "error: gpt_generate: model 'm' is being loaded by another connection")
        and out.get("w2_secs", 99) < 2, repr(out))
    w.execute("COMMIT")
    ta.join(10)
    call("after", w)
    check("then the model loads", isinstance(out.get("after"), str)
          and not out["after"].startswith("error"), repr(out))
    for db in (a, w):
        db.close()


def writer_waits_in_wal():
    """In WAL mode a loader never waits for a writer, so a connection holding
    a write transaction waits for another's load as long as the load takes,
    whatever its busy timeout (100 ms here, the load held for 0.6 s)."""
    path, setup = fresh_db("python-locks-walw.db", "WAL")
    setup.close()
    a, w = connect(path, 5), connect(path, 0.1)
    held, go = hold_before_weights(a)
    out = {}
    sql = "SELECT gpt_generate('hello', '{\"max_tokens\": 2, \"temperature\": 0}')"
    ta = threading.Thread(target=lambda: out.setdefault("a", a.execute(sql).fetchone()[0]),
                          daemon=True)
    ta.start()
    held.wait(10)
    w.execute("BEGIN IMMEDIATE")
    threading.Timer(0.6, go.set).start()
    try:
        out["w"] = w.execute(sql).fetchone()[0]
    except sqlite3.Error as e:
        out["w"] = f"error: {e}"
    w.execute("COMMIT")
    ta.join(10)
    check("a writer waits for a load in WAL mode", out.get("w") == out.get("a")
          and not str(out.get("w")).startswith("error"), repr(out))
    a.close()
    w.close()


def restamp_wal():
    """Readers in WAL mode while another connection commits a new stamp every
    5 ms: each call loads the model whole (a retry in one read transaction);
    each try had read its rows in snapshots of their own, and a commit
    between them failed every try ("kept changing while it was being
    loaded")."""
    path, w = fresh_db("python-locks-wal.db", "WAL")
    stop = []

    def writer():
        while not stop:
            w.execute("UPDATE gpt_models SET stamp = random() WHERE name = 'm'")
            time.sleep(0.005)

    tw = threading.Thread(target=writer, daemon=True)
    tw.start()
    ok, errors, t0 = 0, [], time.time()
    while time.time() - t0 < 1.5:
        r = connect(path, 5)
        try:
            r.execute("SELECT gpt_generate('hi', '{\"max_tokens\": 2}')").fetchone()
            ok += 1
        except sqlite3.Error as e:
            errors.append(str(e))
        r.close()
    stop.append(1)
    tw.join(5)
    w.close()
    check("readers under frequent commits (WAL)", ok >= 3 and not errors,
          f"{ok} loaded, {len(errors)} failed: {errors[:2]}")


if __name__ == "__main__":
    main()
    weights_wait()
    writer_waits_in_wal()
    restamp_wal()
    finish("test_locks.py")
