"""gpt_export killed midway (SIGKILL, as the system kills a process out of
memory) never leaves a partial GGUF under the name asked for: the file is
written beside it and put in place once complete. Without "replace" the
partial file had been written at the name itself.

Debian's python3 and its sqlite3 module.

    python3 tests/python/test_export_kill.py BUILD_DIR
"""
import glob
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, finish  # noqa: E402

build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
ext = os.path.join(build, "gpt")

CHILD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.enable_load_extension(True)
db.load_extension(sys.argv[2])
db.execute("SELECT gpt_export('m', ?)", (sys.argv[3],))
"""


def main():
    tmp = tempfile.mkdtemp(prefix="gpt-export-kill-")
    try:
        folder = os.path.join(tmp, "m")
        subprocess.run([os.path.join(build, "mkmodel"), folder, "--layers", "8", "--heads", "4",
                        "--embd", "512", "--ctx", "256"], check=True, stdout=subprocess.DEVNULL)
        path = os.path.join(tmp, "a.db")
        db = sqlite3.connect(path, isolation_level=None)
        db.enable_load_extension(True)
        db.load_extension(ext)
        db.execute("SELECT gpt_import('m', ?)", (folder,))
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        target = os.path.join(out, "m.gguf")
        killed = 0
        for attempt in range(5):
            child = subprocess.Popen([sys.executable, "-c", CHILD, path, ext, target])
            # kill it once it is writing: its file beside the target has bytes
            t0 = time.monotonic()
            while time.monotonic() - t0 < 20 and child.poll() is None:
                tmps = glob.glob(os.path.join(out, ".gpt_export.*.tmp"))
                if tmps and os.path.getsize(tmps[0]) > 0:
                    break
                time.sleep(0.001)
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                child.wait()
                killed += 1
                check(f"kill-{attempt}-no-partial-target", not os.path.exists(target),
                      f"{target} exists after a kill")
            else:
                check(f"kill-{attempt}-finished", child.returncode == 0, str(child.returncode))
                os.unlink(target)
            for f in glob.glob(os.path.join(out, ".gpt_export.*.tmp")):
                os.unlink(f)
        check("kills-landed", killed >= 1, "every export finished before its kill")
        # and an export that runs to the end puts the whole file there
        r = db.execute("SELECT gpt_export('m', ?)", (target,)).fetchone()[0]
        db.execute("SELECT gpt_import('back', ?)", (target,))
        check("export-after", r.startswith("exported 'm'") and os.path.exists(target) and
              not glob.glob(os.path.join(out, ".gpt_export.*.tmp")), r)
        same, total = db.execute(
            "SELECT sum(a.data = b.data), count(*) FROM gpt_tensors a JOIN gpt_tensors b "
            "ON a.name = b.name WHERE a.model = 'm' AND b.model = 'back'").fetchone()
        check("round-trip", total and same == total, f"{same} of {total} tensors equal")
        print(f"{killed} of 5 exports killed midway")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish("test_export_kill.py")


main()
