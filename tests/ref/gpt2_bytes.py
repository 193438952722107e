"""GPT-2's reversible byte -> printable character map (the byte-level alphabet
of vocab.json and merges.txt), shared by the float64 reference, the GGUF
converter and the Python tests. Standard library only, so tests that run
without python3-regex or NumPy can import it."""


def bytes_to_unicode():
    """{byte: character}: printable Latin-1 bytes map to themselves, the other
    bytes to U+0100 onwards in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))
