#!/usr/bin/python3
"""gpt_attention_svg read from Python's sqlite3 module and checked as a
document: well-formed XML (xml.etree), one panel per head with T (T + 1) / 2
cells, the query and key labels equal to the tokens' bytes made visible
(escaped, whitespace and control characters as marks, cut at 16 characters),
every cell's fill the documented colour of its weight, every cell's title
weight equal to gpt_attention's float32 weight, the masked region and the
legend present, and SQLite's length limit reported. GPT-2 and a Qwen2 (GQA)
model, English, XML-hostile, CJK/emoji and invalid UTF-8 texts.

Then headless Chromium (Debian's chromium, /usr/bin/chromium) renders one
heatmap to PNG: the PNG must decode, have the document's size, not be blank,
and show a cell's colour where the cell is and the hatch where the masked
cells are. Without /usr/bin/chromium that part is skipped and the skip is
reported.

    /usr/bin/python3 tests/python/test_svg.py       (run by make test)

Ends with "N passed, N failed, N skipped" and exits 1 on any failure.
"""
import os
import re
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import check, fail, finish, skip  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
EXT = os.path.join(BUILD, "gpt")
CHROMIUM = "/usr/bin/chromium"
NS = "{http://www.w3.org/2000/svg}"
# ColorBrewer Blues, 9 classes: the scale README documents
BLUES = ["f7fbff", "deebf7", "c6dbef", "9ecae1", "6baed6", "4292c6", "2171b5", "08519c",
         "08306b"]
MARKS = {" ": "\u00b7", "\n": "\u21b5", "\t": "\u21e5", "\x7f": "\u2421"}




def colour(w):
    """The documented fill of weight w: linear in sRGB between the stops."""
    w = min(max(w, 0.0), 1.0)
    i = min(int(w * 8), 7)
    f = w * 8 - i
    a, b = bytes.fromhex(BLUES[i]), bytes.fromhex(BLUES[i + 1])
    return "#" + "".join(f"{int(a[c] + (b[c] - a[c]) * f + 0.5):02x}" for c in range(3))


def label(token_bytes):
    """A token's label: its text, marks for whitespace and control
    characters, U+FFFD for bytes that are not UTF-8, 16 characters then '…'."""
    out = []
    for ch in token_bytes.decode("utf-8", errors="replace"):
        if len(out) == 16:
            out.append("\u2026")
            break
        if ch in MARKS:
            ch = MARKS[ch]
        elif ord(ch) < 0x20:
            ch = chr(0x2400 + ord(ch))
        elif ch in "\ufffe\uffff" or 0x80 <= ord(ch) <= 0x9f:
            ch = "\ufffd"
        out.append(ch)
    return "".join(out)


def f32(x):
    """x rounded to float32, as the engine holds weights."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def model_dir(name, *args):
    d = os.path.join(BUILD, "models", name)
    os.makedirs(d, exist_ok=True)
    subprocess.run([os.path.join(BUILD, "mkmodel"), d, *args], check=True,
                   stdout=subprocess.DEVNULL)
    return d


def translate(elem):
    """The (x, y) of an element's transform="translate(x,y)..."."""
    m = re.match(r"translate\((-?\d+),(-?\d+)\)", elem.get("transform", ""))
    return int(m.group(1)), int(m.group(2))


def check_document(name, db, text, opt, model, n_head):
    """Parses one document and checks it against gpt_tokens and
    gpt_attention. Returns the parsed root."""
    doc = db.execute("SELECT gpt_attention_svg(?, ?)", (text, opt)).fetchone()[0]
    check(f"{name} text", isinstance(doc, str), repr(doc)[:80])
    try:
        root = ET.fromstring(doc.encode("utf-8"))
    except ET.ParseError as ex:
        check(f"{name} well-formed XML", False, str(ex))
        return None
    check(f"{name} svg root", root.tag == NS + "svg" and "\x00" not in doc)
    toks = [r[0] for r in db.execute("SELECT bytes FROM gpt_tokens(?, ?) ORDER BY pos",
                                     (text, f'{{"model": "{model}"}}'))]
    T = len(toks)
    check(f"{name} tokens", root.get("data-tokens") == str(T), f"{root.get('data-tokens')} {T}")
    layer = int(root.get("data-layer"))
    want_heads = list(range(n_head)) if '"all"' in opt else [int(re.search(r'"head": (\d+)',
                                                                              opt).group(1))]
    panels = root.findall(f"{NS}g[@class='head']")
    check(f"{name} panels", [int(p.get("data-head")) for p in panels] == want_heads)
    attn = {}
    for lh, h, q, k, w in db.execute(
            "SELECT layer, head, query_pos, key_pos, weight FROM gpt_attention(?, ?) "
            "WHERE layer = ?", (text, f'{{"model": "{model}"}}', layer)):
        attn[(h, q, k)] = w
    want_labels = [label(b) for b in toks]
    n_bad_weight = n_bad_fill = n_cells = 0
    for p in panels:
        head = int(p.get("data-head"))
        texts = list(p.iter(NS + "text"))
        qs = [t.text or "" for t in texts if t.get("class") == "q"]
        ks = [t.text or "" for t in texts if t.get("class") == "k"]
        check(f"{name} head {head} query labels", qs == want_labels, f"{qs} {want_labels}")
        check(f"{name} head {head} key labels", ks == want_labels)
        masked = p.findall(f"{NS}path[@class='masked']")
        check(f"{name} head {head} masked", len(masked) == (1 if T > 1 else 0) and
              all(m.get("fill") == "url(#gpt-attn-masked)" for m in masked))
        cells = p.find(f"{NS}g[@class='cells']").findall(NS + "rect")
        n_cells += len(cells)
        check(f"{name} head {head} cells", len(cells) == T * (T + 1) // 2,
              f"{len(cells)} cells for {T} tokens")
        for c in cells:
            m = re.fullmatch(r"query (\d+): (.*)\nkey (\d+): (.*)\nweight: (\S+)",
                             c.find(NS + "title").text, re.S)
            q, k, w = int(m.group(1)), int(m.group(3)), float(m.group(5))
            ok = (int(c.get("x")) == k and int(c.get("y")) == q and k <= q and
                  m.group(2) == want_labels[q] and m.group(4) == want_labels[k])
            if not ok or f32(w) != attn.get((head, q, k)):
                n_bad_weight += 1
            if c.get("fill") != colour(w):
                n_bad_fill += 1
    check(f"{name} weights are gpt_attention's", n_bad_weight == 0 and
          len(attn) == n_head * T * (T + 1) // 2, f"{n_bad_weight} of {n_cells}")
    check(f"{name} fills follow the weights", n_bad_fill == 0, f"{n_bad_fill} of {n_cells}")
    legend = root.find(f"{NS}g[@class='legend']")
    check(f"{name} legend", legend is not None and
          [t.text for t in legend.iter(NS + "text")] ==
          ["weight", "0", "0.25", "0.5", "0.75", "1", "masked (future)"])
    stops = root.findall(f".//{NS}linearGradient[@id='gpt-attn-scale']/{NS}stop")
    check(f"{name} scale", [(float(s.get("offset")), s.get("stop-color")) for s in stops] ==
          [(i / 8, "#" + c) for i, c in enumerate(BLUES)])
    return root, doc


def read_png(path):
    """Decodes an 8-bit, non-interlaced RGB or RGBA PNG: (width, height,
    rows of (r, g, b) tuples)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    bpp = 4 if ctype == 6 else 3
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows


def render(root, doc):
    """Headless Chromium renders the document to PNG; checks the picture."""
    if not os.path.exists(CHROMIUM):
        skip("chromium render", f"{CHROMIUM} not found (Debian package chromium)")
        return
    W, H = int(root.get("width")), int(root.get("height"))
    with tempfile.TemporaryDirectory() as tmp:
        svg, png = os.path.join(tmp, "attention.svg"), os.path.join(tmp, "attention.png")
        with open(svg, "w", encoding="utf-8") as f:
            f.write(doc)
        t0 = time.time()
        # --no-sandbox: CI and test containers run as root
        r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                            "--hide-scrollbars", "--force-device-scale-factor=1",
                            f"--user-data-dir={os.path.join(tmp, 'profile')}",
                            f"--window-size={W},{H}", f"--screenshot={png}", "file://" + svg],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
        check("chromium exit status", r.returncode == 0, r.stdout.decode(errors="replace")[-500:])
        if not os.path.exists(png):
            check("chromium wrote a PNG", False)
            return
        w, h, rows = read_png(png)
    print(f"  chromium: {w}x{h} PNG in {time.time() - t0:.1f} s")
    check("png size", (w, h) == (W, H), f"{w}x{h} for {W}x{H}")
    pixels = [px for row in rows for px in row]
    non_white = sum(1 for px in pixels if px != (255, 255, 255))
    check("png not blank", non_white > len(pixels) // 20 and len(set(pixels)) > 20,
          f"{non_white} of {len(pixels)} pixels not white, {len(set(pixels))} colours")
    # The strongest cell of the first panel shows its colour at its centre,
    # and the hatch (grey, r = g = b) fills the masked corner.
    panel = root.find(f"{NS}g[@class='head']")
    px, py = translate(panel)
    cells = panel.find(f"{NS}g[@class='cells']")
    x0, y0 = translate(cells)
    s = int(re.search(r"scale\((\d+)\)", cells.get("transform")).group(1))
    best = max(cells.findall(NS + "rect"),
               key=lambda c: float(c.find(NS + "title").text.rsplit(" ", 1)[1]))
    cx = px + x0 + int(best.get("x")) * s + s // 2
    cy = py + y0 + int(best.get("y")) * s + s // 2
    want = tuple(bytes.fromhex(best.get("fill")[1:]))
    got = rows[cy][cx]
    check("png cell colour", max(abs(a - b) for a, b in zip(got, want)) <= 3,
          f"{got} at ({cx}, {cy}), fill {want}")
    T = int(root.get("data-tokens"))
    corner = [rows[py + y0 + j][px + x0 + (T - 1) * s + i] for j in range(s) for i in range(s)]
    check("png masked hatch", all(r == g == b and r < 255 for r, g, b in corner[:1]) and
          len(set(corner)) >= 2 and all(r == g == b for r, g, b in corner),
          f"{sorted(set(corner))[:4]}")


def main():
    print(f"test_svg.py: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    t_start = time.time()
    db = sqlite3.connect(":memory:")
    db.enable_load_extension(True)
    db.load_extension(EXT)
    db.enable_load_extension(False)
    db.execute("SELECT gpt_import('g', ?)", (model_dir("pysvg", "--layers", "2", "--heads", "4",
                                                       "--embd", "64", "--ctx", "128",
                                                       "--seed", "7"),))
    db.execute("SELECT gpt_import('q', ?)", (model_dir(
        "pysvg-qwen2", "--arch", "qwen2", "--layers", "2", "--heads", "4", "--kv-heads", "2",
        "--embd", "64", "--ffn", "96", "--ctx", "128", "--seed", "5"),))
    hostile = "Tom & Jerry <b>\"hi\"</b> it's\n\tx\x01y\x7f\u0085 ]]> " + "-" * 64
    texts = {"english": "The cat sat on the mat.", "hostile": hostile,
             "cjk": "日本語のテキスト 🙂 café"}
    for tname, text in texts.items():
        for model, n_head in (("g", 4), ("q", 4)):
            for opt in (f'{{"model": "{model}", "layer": 1, "head": "all"}}',
                        f'{{"model": "{model}", "layer": 0, "head": 3}}'):
                got = check_document(f"{tname} {model} {opt}", db, text, opt, model, n_head)
    # the escaping, as bytes in the document
    root, doc = check_document("hostile raw", db, hostile, '{"model": "g", "head": 0}', "g", 4)
    check("escaped", "&amp;" in doc and "&lt;" in doc and "&gt;" in doc and "&quot;" in doc
          and "\x01" not in doc and "\x7f" not in doc and "\u0085" not in doc
          and "\u2401" in doc and "\u21b5" in doc
          and "\u21e5" in doc and "\u00b7" + "-" * 15 + "\u2026" in doc
          and "]]>" not in doc)
    # bytes that are not UTF-8 (the text bound as a BLOB cast to TEXT)
    doc = db.execute("SELECT gpt_attention_svg(CAST(? AS TEXT), '{\"model\": \"g\"}')",
                     (b"ab\xff\xfe \xe6\x97 \xf0\x9f\x99\x82",)).fetchone()[0]
    check("invalid UTF-8 text", isinstance(doc, str) and "\ufffd" in doc)
    ET.fromstring(doc.encode("utf-8"))
    # SQLite's length limit: a clear error, not a cut document
    if hasattr(db, "setlimit"):
        old = db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 20000)
        try:
            db.execute("SELECT gpt_attention_svg('The cat sat on the mat.', "
                       "'{\"model\": \"g\", \"head\": \"all\"}')").fetchone()
            outcome = "no error"
        except sqlite3.Error as ex:
            outcome = str(ex)
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, old)
        check("length limit", outcome == "gpt_attention_svg: model 'g': the document is longer "
              "than SQLite's length limit (SQLITE_LIMIT_LENGTH, 20000 bytes); draw one head or "
              "a shorter text", outcome)
    print(f"  documents checked ({time.time() - t_start:.1f} s)")
    root, doc = check_document("render", db, "ROMEO:\nBut soft, what light",
                               '{"model": "g", "layer": 1, "head": 2}', "g", 4)
    render(root, doc)
    db.close()


if __name__ == "__main__":
    main()
    finish("test_svg.py", with_skipped=True)
