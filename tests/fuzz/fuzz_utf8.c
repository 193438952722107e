/*
** Fuzz target: the UTF-8 repair of every TEXT result (ext/gpt.c
** gptext_utf8_repair, gptext_utf8_valid), against an independent reference.
**
** Input: any bytes. The reference knows nothing of lead bytes and ranges: at
** start-up it encodes every Unicode scalar value (U+0000..U+10FFFF, less the
** surrogates) and records which 1-, 2- and 3-byte strings begin some
** encoding. Then, at each position, a complete encoding is kept as it is, and
** otherwise the longest prefix of some encoding (at least one byte) becomes
** one U+FFFD: Unicode's maximal subparts, the rule of Python's
** bytes.decode('utf-8', 'replace'). Oracles: the repair equals the
** reference byte for byte, its length is what the measuring call said, it is
** valid (gptext_utf8_valid and the reference agree), valid input comes back
** unchanged and a second repair changes nothing.
**
** Seeds: tests/fuzz/utf8/.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"

/* ext/gpt.c (declared in ext/gpt_ext.h, which needs the extension's API). */
size_t gptext_utf8_repair(const char *z, size_t n, char *zOut);
int gptext_utf8_valid(const char *z, size_t n);

static unsigned char *gPrefix3; /* (1 << 24) bits: 3-byte prefixes of encodings */
static unsigned char gPrefix2[1 << 13]; /* (1 << 16) bits: 2-byte prefixes */
static unsigned char gPrefix1[32];      /* 256 bits: first bytes */

/* UTF-8 of code point c into z; returns its length. */
static int encode(unsigned c, unsigned char *z) {
  if (c < 0x80) { z[0] = (unsigned char)c; return 1; }
  if (c < 0x800) { z[0] = 0xC0 | (c >> 6); z[1] = 0x80 | (c & 63); return 2; }
  if (c < 0x10000) {
    z[0] = 0xE0 | (c >> 12); z[1] = 0x80 | ((c >> 6) & 63); z[2] = 0x80 | (c & 63);
    return 3;
  }
  z[0] = 0xF0 | (c >> 18); z[1] = 0x80 | ((c >> 12) & 63); z[2] = 0x80 | ((c >> 6) & 63);
  z[3] = 0x80 | (c & 63);
  return 4;
}

#define BIT_SET(a, i) ((a)[(i) >> 3] |= (unsigned char)(1u << ((i) & 7)))
#define BIT_GET(a, i) (((a)[(i) >> 3] >> ((i) & 7)) & 1)

/* True when z[0..n) (1 <= n <= 4) begins the encoding of some scalar value;
** for n = 4 it is then that whole encoding. */
static int is_prefix(const unsigned char *z, int n) {
  if (n == 1) return BIT_GET(gPrefix1, z[0]);
  if (n == 2) return BIT_GET(gPrefix2, (z[0] << 8) | z[1]);
  if (n == 3) return BIT_GET(gPrefix3, ((unsigned)z[0] << 16) | (z[1] << 8) | z[2]);
  /* 4 bytes: decode and re-encode */
  unsigned c = ((unsigned)(z[0] & 7) << 18) | ((z[1] & 63u) << 12) | ((z[2] & 63u) << 6) |
               (z[3] & 63u);
  unsigned char e[4];
  return z[0] >= 0xF0 && c <= 0x10FFFF && encode(c, e) == 4 && memcmp(e, z, 4) == 0;
}

/* Length of the complete encoding at z[0..n) (its length is the first byte's
** among all encodings), or 0. */
static int complete_len(const unsigned char *z, size_t n) {
  for (int k = 1; k <= 4 && (size_t)k <= n; k++) {
    if (!is_prefix(z, k)) return 0;
    unsigned char e[4];
    /* a prefix that is itself a whole encoding: decode by search is costly,
    ** so compare with the encoding of the value it spells */
    unsigned c;
    if (k == 1) c = z[0];
    else if (k == 2) c = ((z[0] & 31u) << 6) | (z[1] & 63u);
    else if (k == 3) c = ((z[0] & 15u) << 12) | ((z[1] & 63u) << 6) | (z[2] & 63u);
    else c = ((z[0] & 7u) << 18) | ((z[1] & 63u) << 12) | ((z[2] & 63u) << 6) | (z[3] & 63u);
    if ((c < 0xD800 || c > 0xDFFF) && c <= 0x10FFFF && encode(c, e) == k && memcmp(e, z, (size_t)k) == 0)
      return k;
  }
  return 0;
}

/* The reference repair; returns the output length. */
static size_t reference(const unsigned char *z, size_t n, unsigned char *out) {
  size_t i = 0, o = 0;
  while (i < n) {
    int k = complete_len(z + i, n - i);
    if (k > 0) {
      memcpy(out + o, z + i, (size_t)k);
      o += (size_t)k;
      i += (size_t)k;
      continue;
    }
    int m = 1;
    while (m < 3 && i + m < n && is_prefix(z + i, m + 1)) m++;
    memcpy(out + o, "\xEF\xBF\xBD", 3);
    o += 3;
    i += (size_t)m;
  }
  return o;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  gPrefix3 = calloc(1, 1 << 21);
  if (!gPrefix3) return 1;
  for (unsigned c = 0; c <= 0x10FFFF; c++) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    unsigned char e[4];
    int n = encode(c, e);
    BIT_SET(gPrefix1, e[0]);
    if (n >= 2) BIT_SET(gPrefix2, (e[0] << 8) | e[1]);
    if (n >= 3) BIT_SET(gPrefix3, ((unsigned)e[0] << 16) | (e[1] << 8) | e[2]);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0;
  size_t nOut = gptext_utf8_repair((const char *)data, size, 0);
  unsigned char *pRef = malloc(3 * size + 1), *pOut = malloc(3 * size + 1);
  unsigned char *pTwice = malloc(3 * size + 1);
  if (!pRef || !pOut || !pTwice) abort();
  size_t nRef = reference(data, size, pRef);
  size_t nGot = gptext_utf8_repair((const char *)data, size, (char *)pOut);
  if (nGot != nOut || nGot != nRef || memcmp(pOut, pRef, nRef) != 0) {
    fprintf(stderr, "fuzz_utf8: repair differs from the reference (%zu vs %zu bytes)\n",
            nGot, nRef);
    abort();
  }
  int bValid = gptext_utf8_valid((const char *)data, size);
  if (bValid != (nRef == size && memcmp(pRef, data, size) == 0)) {
    fprintf(stderr, "fuzz_utf8: gptext_utf8_valid says %d\n", bValid);
    abort();
  }
  if (!gptext_utf8_valid((const char *)pOut, nGot)) abort();
  if (gptext_utf8_repair((const char *)pOut, nGot, (char *)pTwice) != nGot ||
      memcmp(pTwice, pOut, nGot) != 0)
    abort();
  free(pRef);
  free(pOut);
  free(pTwice);
  return 0;
}
