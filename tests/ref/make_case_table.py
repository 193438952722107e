#!/usr/bin/python3
"""Prints the two tables of engine/template.c's case mapping from Python's
own Unicode database (Debian's python3, 3.11: Unicode 14), to be pasted
there when they are regenerated:

  aSpecialCase  every code point whose str.upper() or str.title() is longer
                than one code point (SpecialCasing.txt's unconditional
                mappings): code point, upper, title
  aOtherCased   the ranges of code points that Python counts as cased
                (islower, isupper or istitle) though their category is not
                Lu, Ll or Lt: Unicode's Other_Lowercase and Other_Uppercase

Every other mapping is utf8proc's simple one, and tests/python/
test_template_case.py checks the result over all of Unicode.

    /usr/bin/python3 tests/ref/make_case_table.py
"""
import unicodedata


def code_points():
    """Every code point Python's database assigns."""
    for c in range(0x110000):
        if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn":
            yield c


def main():
    print("/* aSpecialCase */")
    for c in code_points():
        ch = chr(c)
        up, title = ch.upper(), ch.title()
        assert len(ch.lower()) == 1 or c == 0x130  # U+0130's lower is cp_map's own case
        if len(up) > 1 or len(title) > 1:
            hexes = lambda s: "{" + ", ".join("0x%04X" % ord(x) for x in s) + "}"
            print("  {0x%04X, %s, %s}," % (c, hexes(up), hexes(title)))
    print("/* aOtherCased */")
    ranges = []
    for c in code_points():
        ch = chr(c)
        if (ch.islower() or ch.isupper() or ch.istitle()) and unicodedata.category(ch) not in ("Lu", "Ll", "Lt"):
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    print("  " + ", ".join("{0x%X, 0x%X}" % (a, b) for a, b in ranges) + ",")


if __name__ == "__main__":
    main()
