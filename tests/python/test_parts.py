"""Tensors larger than a BLOB may be (SQLITE_LIMIT_LENGTH) are stored as
row-aligned parts NAME#0, NAME#1, ... and load as one tensor: with the limit
lowered to 5 MB, a generated Llama-family model imports in parts and gives
exactly the logits of the same model imported whole; hostile part rows are
refused by name. Debian's python3 and its sqlite3 module (setlimit: 3.11+).

    python3 tests/python/test_parts.py BUILD_DIR
"""
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
    # 50259 rows of 256 bytes, 19531 rows a part
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
            "WHERE name = 'model.embed_tokens.weight#0'", "appears twice")
    refused("parts-7", "UPDATE gpt_tensors SET shape = '[19530,64]', "
            "data = substr(data, 1, 19530*256) WHERE name = 'model.embed_tokens.weight#1'",
            "is not a part of")
    refused("parts-8", "UPDATE gpt_tensors SET dtype = 'f16', data = substr(data, 1, 19531*128) "
            "WHERE name = 'model.embed_tokens.weight#1'", "unlike part 0")

finish("")
