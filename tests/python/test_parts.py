"""Tensors larger than a BLOB may be (SQLITE_LIMIT_LENGTH) are stored as
row-aligned parts NAME#0, NAME#1, ... and load as one tensor: with the limit
lowered to 5 MB, a generated Llama-family model imports in parts and gives
exactly the logits of the same model imported whole; hostile part rows are
refused by name; gpt_quantize, gpt_export and gpt_import of a GGUF file
read and write parts too. Debian's python3 and its sqlite3 module (setlimit: 3.11+).

    python3 tests/python/test_parts.py BUILD_DIR
"""
import glob
import os
import sqlite3
import subprocess
import sys
import tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, fail, finish, skip  # noqa: E402

build = sys.argv[1] if len(sys.argv) > 1 else "build"
ext = os.path.join(build, "gpt")



def connect(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.enable_load_extension(True)
    db.load_extension(ext)
    return db


with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.join(tmp, "m")
    subprocess.run([os.path.join(build, "mkmodel"), folder, "--arch", "qwen2", "--layers", "2",
                    "--heads", "4", "--kv-heads", "2", "--embd", "64", "--ffn", "96",
                    "--ctx", "128", "--untied", "--seed", "5"],
                   check=True, stdout=subprocess.DEVNULL)
    whole = connect(":memory:")
    whole.execute("SELECT gpt_import('m', ?)", (folder,))
    parted = connect(os.path.join(tmp, "parts.db"))
    parted.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 5000000)
    parted.execute("SELECT gpt_import('m', ?)", (folder,))
    parted.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000000000)
    names = [r[0] for r in parted.execute(
        "SELECT name FROM gpt_tensors WHERE name GLOB 'model.embed_tokens.weight#*' "
        "ORDER BY rowid")]
    # 50259 rows of 256 bytes, 19529 rows a part (5e6 bytes less room for the
    # row's names, counted twice, and other columns)
    check("parts-1", len(names) == 3 and names[0].endswith("#0"), f"{len(names)} parts")
    check("parts-1b", parted.execute(
        "SELECT count(*) FROM gpt_tensors WHERE name GLOB 'lm_head.weight#*'").fetchone()[0] == 3)
    q = "SELECT token_id, logit FROM gpt_next_tokens('The cat sat on', 20)"
    a, b = whole.execute(q).fetchall(), parted.execute(q).fetchall()
    check("parts-2", a == b, f"{a[:3]} {b[:3]}")
    g = "SELECT gpt_generate('Once upon', '{\"temperature\": 0, \"max_tokens\": 12}')"
    check("parts-3", whole.execute(g).fetchone() == parted.execute(g).fetchone())

    def refused(name, sql, want):
        parted.execute("SAVEPOINT t")
        try:
            parted.execute(sql)
            parted.execute("SELECT * FROM gpt_next_tokens('x', 1)").fetchall()
            check(name, False, "no error")
        except sqlite3.Error as e:
            check(name, want in str(e), str(e))
        parted.execute("ROLLBACK TO t")
        parted.execute("RELEASE t")

    refused("parts-4", "DELETE FROM gpt_tensors WHERE name = 'model.embed_tokens.weight#1'",
            "tensor model.embed_tokens.weight has 2 of its 3 parts")
    refused("parts-5", "UPDATE gpt_tensors SET name = 'model.embed_tokens.weight#01' "
            "WHERE name = 'model.embed_tokens.weight#1'", "unexpected tensor")
    refused("parts-6", "INSERT INTO gpt_tensors SELECT model, 'model.embed_tokens.weight', "
            "dtype, '[50259,64]', zeroblob(50259*256) FROM gpt_tensors "
            "WHERE name = 'model.embed_tokens.weight#0'",
            "tensor model.embed_tokens.weight is stored both whole and in parts "
            "(model.embed_tokens.weight#0)")
    refused("parts-7", "UPDATE gpt_tensors SET shape = '[19528,64]', "
            "data = substr(data, 1, 19528*256) WHERE name = 'model.embed_tokens.weight#1'",
            "is not a part of")
    refused("parts-8", "UPDATE gpt_tensors SET dtype = 'f16', data = substr(data, 1, 19529*128) "
            "WHERE name = 'model.embed_tokens.weight#1'", "unlike part 0")

    # gpt_quantize, gpt_export and gpt_import of a GGUF file read and write
    # parts as well: the same logits as from the model stored whole.
    def logits(db, model):
        return db.execute("SELECT token_id, logit FROM gpt_next_tokens('The cat sat on', 20, "
                          "json_object('model', ?))", (model,)).fetchall()

    parted.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 5000000)
    for dtype in ("f16", "q8_0"):
        whole.execute("SELECT gpt_quantize('m', ?, ?)", ("m-" + dtype, dtype))
        parted.execute("SELECT gpt_quantize('m', ?, ?)", ("m-" + dtype, dtype))
        n = parted.execute("SELECT count(*) FROM gpt_tensors WHERE model = ? AND name GLOB "
                           "'model.embed_tokens.weight*'", ("m-" + dtype,)).fetchone()[0]
        # f16: 50259 rows of 128 bytes, 6.4 MB in 2 parts; q8_0 (3.4 MB) whole
        check(f"parts-9.{dtype}", n == (2 if dtype == "f16" else 1), f"{n} rows")
        a, b = logits(whole, "m-" + dtype), logits(parted, "m-" + dtype)
        check(f"parts-10.{dtype}", a == b and len(a) == 20, f"{a[:2]} {b[:2]}")
    # blocks are never split: a q8_0 tensor over the limit is refused by name
    parted.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 2000000)
    try:
        parted.execute("SELECT gpt_quantize('m', 'm-q8-small', 'q8_0')")
        check("parts-11", False, "no error")
    except sqlite3.Error as e:
        check("parts-11", "gpt_quantize: model 'm-q8-small': tensor model.embed_tokens.weight "
              "is 3417612 bytes of q8_0, more than a BLOB may be (SQLITE_LIMIT_LENGTH 2000000)"
              in str(e) and isinstance(e, sqlite3.DataError), f"{type(e).__name__} {e}")
    parted.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 5000000)
    ga, gb = os.path.join(tmp, "whole.gguf"), os.path.join(tmp, "parted.gguf")
    whole.execute("SELECT gpt_export('m', ?)", (ga,))
    parted.execute("SELECT gpt_export('m', ?)", (gb,))
    with open(ga, "rb") as fa, open(gb, "rb") as fb:
        check("parts-12", fa.read() == fb.read(), "the exported files differ")
    whole.execute("SELECT gpt_import('g', ?)", (ga,))
    parted.execute("SELECT gpt_import('g', ?)", (ga,))
    n = parted.execute("SELECT count(*) FROM gpt_tensors WHERE model = 'g' AND name GLOB "
                       "'model.embed_tokens.weight#*'").fetchone()[0]
    check("parts-13", n == 3, f"{n} parts")
    a, b = logits(whole, "g"), logits(parted, "g")
    check("parts-14", a == b and a == logits(whole, "m"), f"{a[:2]} {b[:2]}")

    # hostile parts, as gpt_quantize and gpt_export read them
    parted.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000000000)
    def refused_call(name, change, call, want):
        parted.execute("SAVEPOINT t")
        try:
            parted.execute(change)
            parted.execute(call).fetchall()
            check(name, False, "no error")
        except sqlite3.Error as e:
            check(name, want in str(e), str(e))
        parted.execute("ROLLBACK TO t")
        parted.execute("RELEASE t")

    emb = "model.embed_tokens.weight"
    for fn, call in (("gpt_quantize", "SELECT gpt_quantize('m', 'x', 'f16')"),
                     ("gpt_export", "SELECT gpt_export('m', '%s')" % os.path.join(tmp, "x.gguf"))):
        refused_call(f"parts-15.{fn}", f"DELETE FROM gpt_tensors WHERE name = '{emb}#1'", call,
                     f"{fn}: model 'm': tensor {emb} has 2 of its 3 parts in gpt_tensors")
        refused_call(f"parts-16.{fn}", f"DELETE FROM gpt_tensors WHERE name = '{emb}#2'", call,
                     f"{fn}: model 'm': tensor {emb} has 2 of its 3 parts in gpt_tensors")
        refused_call(f"parts-17.{fn}", "UPDATE gpt_tensors SET dtype = 'f16', data = "
                     f"substr(data, 1, 19529*128) WHERE name = '{emb}#1'", call,
                     f"{fn}: model 'm': tensor {emb}#1 has dtype 'f16', unlike part 0")
        refused_call(f"parts-18.{fn}", "INSERT INTO gpt_tensors SELECT model, "
                     f"'{emb}', dtype, '[50259,64]', zeroblob(50259*256) FROM gpt_tensors "
                     f"WHERE name = '{emb}#0'", call,
                     f"{fn}: model 'm': tensor {emb} is stored both whole and in parts "
                     f"({emb}#0)")

    # a name with a NUL inside reads as another part to C; every reader
    # refuses it by name (it stood in for a deleted part and overflowed)
    for fn, call in (("gpt_quantize", "SELECT gpt_quantize('m', 'x', 'f16')"),
                     ("gpt_export", "SELECT gpt_export('m', '%s')" % os.path.join(tmp, "x.gguf")),
                     ("gpt_next_tokens",
                      "SELECT * FROM gpt_next_tokens('x', 1, '{\"model\": \"m\"}')")):
        refused_call(f"parts-19.{fn}", "INSERT INTO gpt_tensors SELECT model, name || char(0) "
                     f"|| 'x', dtype, shape, data FROM gpt_tensors WHERE name = '{emb}#1'", call,
                     f"{fn}: model 'm': unexpected tensor '{emb}#1' in gpt_tensors")
        refused_call(f"parts-20.{fn}", "INSERT INTO gpt_tensors VALUES('m', 'junk', 'f32', "
                     "'[1]', zeroblob(4))", call,
                     f"{fn}: model 'm': unexpected tensor 'junk' in gpt_tensors")

    # gpt_export reads in many statements, all in one snapshot: rows written
    # meanwhile by another connection do not reach the file (they had mixed
    # an f16 header with f32 data)
    parted.execute("PRAGMA journal_mode=WAL")
    other = connect(os.path.join(tmp, "parts.db"))
    race = os.path.join(tmp, "race.gguf")
    writes = []

    def write_meanwhile():  # once the file (beside race) is open, while the tensors are read
        if glob.glob(os.path.join(tmp, ".gpt_export.*.tmp")) and not writes:
            other.execute("UPDATE gpt_tensors SET data = zeroblob(256) WHERE model = 'm' "
                          "AND name = 'model.norm.weight'")
            writes.append(1)
        return 0

    parted.set_progress_handler(write_meanwhile, 20000)
    try:
        parted.execute("SELECT gpt_export('m', ?)", (race,))
        with open(race, "rb") as fr, open(gb, "rb") as fb:
            check("parts-21", writes and fr.read() == fb.read(), f"{len(writes)} writes")
    except sqlite3.Error as e:
        check("parts-21", False, str(e))
    parted.set_progress_handler(None, 0)
    other.close()

    # a row SQLite keeps on its page is read whole, and checked against the
    # limit: the error names it (the tokenizer's config row, here)
    low = connect(os.path.join(tmp, "parts.db"))
    low.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)
    try:
        low.execute("SELECT * FROM gpt_next_tokens('x', 1, '{\"model\": \"m\"}')").fetchall()
        check("parts-22", False, "no error")
    except sqlite3.Error as e:
        check("parts-22", isinstance(e, sqlite3.DataError) and str(e) == (
              "gpt_next_tokens: model 'm': one of its rows is larger than SQLite's length limit "
              "(SQLITE_LIMIT_LENGTH 1000)"), f"{type(e).__name__} {e}")
    low.close()

    # a UTF-16 database stores names in up to twice their UTF-8 bytes: parts
    # leave room for that (a 400-letter name, a limit 681 bytes over the
    # f32 embedding failed on SQLite's bare "string or blob too big")
    u16 = connect(os.path.join(tmp, "u16.db"))
    u16.execute("PRAGMA encoding = 'UTF-16le'")
    long_name = "n" * 400
    u16.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 50259 * 256 + 400 + 25 + 256)
    u16.execute("SELECT gpt_import(?, ?)", (long_name, folder))
    n = u16.execute("SELECT count(*) FROM gpt_tensors WHERE model = ? AND name GLOB "
                    "'model.embed_tokens.weight#*'", (long_name,)).fetchone()[0]
    check("parts-23", n == 2, f"{n} parts")
    u16.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000000000)
    check("parts-24", logits(u16, long_name) == logits(whole, "m"))
    u16.close()

finish("")
