#!/usr/bin/python3
"""Case mapping in chat templates against Python's own str methods, which
Jinja2 (and so Hugging Face's apply_chat_template) calls: s.upper(),
s.lower(), s.title() and s.capitalize() rendered by gpt_chat_prompt must
equal Python's for every code point Python's Unicode database assigns (in
chunks, with spaces, apostrophes, digits, combining marks and sigmas
between them), and for random strings built to meet the final-sigma rule,
the multi-letter mappings and the Other_Lowercase letters. The tests
"is lower" and "is upper" (Jinja2 calls str(x).islower() and isupper()) are
compared the same way, per code point and over whole strings, and so is
repr() of strings (printing a list escapes what str.isprintable() rejects,
U+3000 among them). The title
filter's own word rule is in tests/golden/chat/constructs.json (Jinja2's
outputs).

    /usr/bin/python3 tests/python/test_template_case.py       (run by make test)

Ends with "N passed, N failed" and exits 1 on any failure.
"""
import json
import os
import random
import sqlite3
import sys
import unicodedata
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, finish  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXT = os.path.join(ROOT, "build", "gpt")
METHODS = ["upper", "lower", "title", "capitalize"]
TEMPLATE = "\x01".join("{{ s.%s() }}" % m for m in METHODS)


def first_difference(a, b):
    """Where two strings part, with a few characters of each around it."""
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    return f"at {i}: Python {a[max(0, i - 4):i + 4]!r}, template {b[max(0, i - 4):i + 4]!r}"


def compare(db, name, s):
    """One check per method: the template's rendering of s against Python's."""
    got = db.execute("SELECT gpt_chat_prompt('[]', ?)",
                     (json.dumps({"template": TEMPLATE, "variables": {"s": s}}),)).fetchone()[0]
    parts = got.split("\x01")
    for m, part in zip(METHODS, parts):
        want = getattr(s, m)()
        check(f"{name} {m}", part == want, first_difference(want, part))
    check(f"{name} parts", len(parts) == len(METHODS), repr(got[:80]))


def render(db, tpl, variables):
    """gpt_chat_prompt of a template with variables, no messages."""
    return db.execute("SELECT gpt_chat_prompt('[]', ?)",
                      (json.dumps({"template": tpl, "variables": variables}),)).fetchone()[0]


CASE_TESTS = ("{% for c in s %}{{ (c is lower)|int }}{{ (c is upper)|int }}{% endfor %}"
              "|{{ s is lower }}{{ s is upper }}")


def compare_case_tests(db, name, s):
    """'is lower' and 'is upper' of each code point and of the whole string
    against Python's str.islower() and str.isupper()."""
    got = render(db, CASE_TESTS, {"s": s})
    want = "".join("%d%d" % (c.islower(), c.isupper()) for c in s) + "|%s%s" % (s.islower(), s.isupper())
    check(f"{name} is lower/upper", got == want, first_difference(want, got))


def compare_repr(db, name, s):
    """{{ [s] }} (the repr of s in a list) against Python's repr([s])."""
    got = render(db, "{{ [s] }}", {"s": s})
    want = repr([s])
    check(f"{name} repr", got == want, first_difference(want, got))


def main():
    db = sqlite3.connect(":memory:")
    db.enable_load_extension(True)
    db.load_extension(EXT)
    rng = random.Random(1)
    between = [" ", "'", "-", ".", "1", "\u0301", "\u03a3", "\u03c3", "\u0391", "\t"]
    cps = [c for c in range(0x20, 0x110000)
           if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn"]
    for k in range(0, len(cps), 4000):
        s = "".join(chr(c) + (rng.choice(between) if rng.random() < 0.3 else "")
                    for c in cps[k:k + 4000])
        compare(db, f"code points U+{cps[k]:04X}..", s)
        compare_case_tests(db, f"code points U+{cps[k]:04X}..", "".join(chr(c) for c in cps[k:k + 4000]))
        compare_repr(db, f"code points U+{cps[k]:04X}..", "".join(chr(c) for c in cps[k:k + 4000]))
    letters = ["\u03a3", "\u0391", "\u03c3", "\u03c2", "'", " ", "-", "\u0301", "1", "a", "\u02b0",
               ".", "\u00aa", "(", "\u0130", "\u00df", "\u01c6", "\ufb01", "\u1f80", "\u0149"]
    for n in range(300):
        s = "".join(rng.choice(letters) for _ in range(rng.randint(1, 12)))
        compare(db, f"mixed {s!r}", s)
        compare_case_tests(db, f"mixed {s!r}", s)
    # unassigned in Python's Unicode 14 and in utf8proc's: escaped as Cn
    for s in ["\u0378", "\uffff", "\U0010ffff", "\U000e0000", "\U0002fffe", "\x01\x7f\xa0\xad",
              "\u3000\u1680\u2003\u061c\ue000\U000e0001\u2060\U000f0000", "it's", "say \"it's\"",
              "\\ \t\r\n", "\ud7ff\ue000"]:
        compare_repr(db, f"string {s!r}", s)
    for s in ["\u00ff", "\u00c9", "\u00df", "\u00c0B", "\u01c5", "a\u01c5", "\u2160x", "\u2170", "\u24b6",
              "\u24d0A", "\u02b0", "1", "", "\U0001f130", "\U0001f150a", "ABC DEF", "abc def"]:
        compare_case_tests(db, f"word {s!r}", s)
    finish("test_template_case.py")


if __name__ == "__main__":
    main()
