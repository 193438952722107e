"""The assertion counter the Python tests share.

    from testlib import check, skip, finish
    check("name", condition, "detail shown on failure")
    skip("name", "why")
    finish("test_x.py")      # prints "N passed, N failed[, N skipped]", exits 1 on a failure
"""
import sys

counts = {"passed": 0, "failed": 0, "skipped": 0}


def check(name, ok, detail=""):
    """Counts one assertion; prints the failures."""
    if ok:
        counts["passed"] += 1
    else:
        counts["failed"] += 1
        print(f"  {name}... FAILED {detail}")


def skip(name, reason):
    """Counts one skipped check and says why."""
    counts["skipped"] += 1
    print(f"  {name}... SKIPPED: {reason}")


def fail(name, detail):
    """Counts one failure outside check (an exception)."""
    check(name, False, detail)


def finish(prefix, with_skipped=False):
    """The last line of the run, and the exit status."""
    line = f"{counts['passed']} passed, {counts['failed']} failed"
    if with_skipped:
        line += f", {counts['skipped']} skipped"
    print(f"{prefix}: {line}" if prefix else line)
    sys.exit(1 if counts["failed"] else 0)
