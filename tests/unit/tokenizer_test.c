/*
** Unit test of engine/tokenizer.c against GPT-2's real vocabulary.
**
** Loads tests/data/vocab.json (parsed with SQLite's json_each) and
** tests/data/merges.txt, then checks:
**   1. every case of tests/data/tokenizer-cases.inp/.out (llama.cpp's
**      GPT-2 vocab test, generated with Hugging Face's tokenizer);
**   2. tiktoken's gpt2 test series (tests/data/REFERENCE.md, section E);
**   3. "<|endoftext|>" is plain text unless TOK_ALLOW_SPECIAL is given;
**   4. decode(encode(s)) == s for random strings of every plane, white
**      space, contractions and invalid UTF-8, with every id in range;
**   5. the error paths of loading and of decoding;
**   6. the tokenizer.json features on a toy vocabulary (Split stages, the
**      pattern rewriting, added tokens, NFC, ignore_merges) and their errors;
**   7. the token count of llm.c's tinyshakespeare tokenization (section D),
**      that two threads encoding at once agree, and the encoding speed.
** Prints "N passed, N failed" and exits nonzero on any failure.
**
** Build (from the repository root):
**   cc -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE -Iengine -o build/tokenizer_test \
**      tests/unit/tokenizer_test.c engine/tokenizer.c -lpcre2-8 -lutf8proc -lsqlite3
** Run from the repository root, or pass the data directory as argv[1].
*/
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tokenizer.h"
#include "bpe.h"
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

static int nPassed = 0, nFailed = 0;

/* Counts one check; prints what failed with where it failed. */
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      nPassed++;                                           \
    } else {                                               \
      nFailed++;                                           \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);          \
      printf(__VA_ARGS__);                                 \
      printf("\n");                                        \
    }                                                      \
  } while (0)

/* Reads a whole file into a malloc'd, NUL-terminated buffer; NULL on error. */
static char *read_file(const char *zPath, size_t *pn) {
  FILE *f = fopen(zPath, "rb");
  if (!f) return NULL;
  size_t nAlloc = 1 << 16, n = 0;
  char *z = malloc(nAlloc);
  while (z) {
    n += fread(z + n, 1, nAlloc - n - 1, f);
    if (n < nAlloc - 1) break;
    char *zNew = realloc(z, nAlloc * 2);
    if (!zNew) {
      free(z);
      z = NULL;
      break;
    }
    z = zNew;
    nAlloc *= 2;
  }
  int bError = ferror(f);
  fclose(f);
  if (!z || bError) {
    free(z);
    return NULL;
  }
  z[n] = 0;
  *pn = n;
  return z;
}

/* Builds the path zDir/zName in the caller's buffer and returns it. */
static const char *data_path(char *zBuf, size_t nBuf, const char *zDir, const char *zName) {
  snprintf(zBuf, nBuf, "%s/%s", zDir, zName);
  return zBuf;
}

/* Loads vocab.json through SQLite's json_each and merges.txt line by line,
** then finishes the tokenizer. NULL (with a message printed) on failure. */
static GPTTokenizer *load_gpt2(const char *zDir) {
  char zPath[1024], zErr[256];
  size_t nJson = 0, nMerges = 0;
  char *zJson = read_file(data_path(zPath, sizeof(zPath), zDir, "vocab.json"), &nJson);
  char *zMerges = read_file(data_path(zPath, sizeof(zPath), zDir, "merges.txt"), &nMerges);
  GPTTokenizer *t = NULL;
  sqlite3 *db = NULL;
  sqlite3_stmt *pStmt = NULL;
  if (!zJson || !zMerges) {
    printf("cannot read vocab.json or merges.txt in %s\n", zDir);
    goto fail;
  }
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) goto fail;
  /* the vocabulary size is the number of keys */
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM json_each(?1)", -1, &pStmt, NULL) != SQLITE_OK)
    goto fail;
  sqlite3_bind_text(pStmt, 1, zJson, (int)nJson, SQLITE_STATIC);
  if (sqlite3_step(pStmt) != SQLITE_ROW) goto fail;
  int nVocab = sqlite3_column_int(pStmt, 0);
  sqlite3_finalize(pStmt);
  pStmt = NULL;
  t = tok_new(nVocab);
  if (!t) goto fail;
  if (sqlite3_prepare_v2(db, "SELECT key, value FROM json_each(?1)", -1, &pStmt, NULL) != SQLITE_OK)
    goto fail;
  sqlite3_bind_text(pStmt, 1, zJson, (int)nJson, SQLITE_STATIC);
  while (sqlite3_step(pStmt) == SQLITE_ROW) {
    const char *zKey = (const char *)sqlite3_column_text(pStmt, 0);
    int nKey = sqlite3_column_bytes(pStmt, 0);
    int id = sqlite3_column_int(pStmt, 1);
    if (tok_set_token(t, id, zKey, nKey, zErr, sizeof(zErr)) != 0) {
      printf("vocab.json: %s\n", zErr);
      goto fail;
    }
  }
  /* merges.txt: a "#version" line, then "left right" per line */
  int rank = 0;
  char *zLine = zMerges;
  while (*zLine) {
    char *zEnd = strchr(zLine, '\n');
    if (!zEnd) zEnd = zLine + strlen(zLine);
    size_t nLine = (size_t)(zEnd - zLine);
    if (nLine > 0 && zLine[nLine - 1] == '\r') nLine--;
    if (nLine > 0 && strncmp(zLine, "#version", 8) != 0) {
      char *zSpace = memchr(zLine, ' ', nLine);
      if (!zSpace) {
        printf("merges.txt: line without a space\n");
        goto fail;
      }
      int nLeft = (int)(zSpace - zLine);
      int nRight = (int)(nLine - (size_t)nLeft - 1);
      if (tok_add_merge(t, rank, zLine, nLeft, zSpace + 1, nRight, zErr, sizeof(zErr)) != 0) {
        printf("merges.txt: %s\n", zErr);
        goto fail;
      }
      rank++;
    }
    zLine = *zEnd ? zEnd + 1 : zEnd;
  }
  if (tok_finish(t, zErr, sizeof(zErr)) != 0) {
    printf("tok_finish: %s\n", zErr);
    goto fail;
  }
  sqlite3_finalize(pStmt);
  sqlite3_close(db);
  free(zJson);
  free(zMerges);
  return t;
fail:
  sqlite3_finalize(pStmt);
  sqlite3_close(db);
  free(zJson);
  free(zMerges);
  tok_free(t);
  return NULL;
}

/* Prints ids as " 1 2 3" (the .out format) into zBuf. */
static void format_ids(char *zBuf, size_t nBuf, const int *aId, size_t nId) {
  size_t k = 0;
  zBuf[0] = 0;
  for (size_t i = 0; i < nId && k + 16 < nBuf; i++)
    k += (size_t)snprintf(zBuf + k, nBuf - k, " %d", aId[i]);
}

/* Encodes z (n bytes) with flags and compares with the expected ids. Also
** checks that the ids decode back to z. Returns 1 when both hold. */
static int expect_ids(const GPTTokenizer *t, const char *zWhat, const char *z, size_t n,
                      int flags, const int *aWant, size_t nWant) {
  int *aId = NULL;
  size_t nId = 0;
  if (tok_encode(t, z, n, flags, &aId, &nId) != 0) {
    CHECK(0, "%s: tok_encode failed", zWhat);
    return 0;
  }
  int bSame = nId == nWant && (nId == 0 || memcmp(aId, aWant, nId * sizeof(int)) == 0);
  char zGot[4096], zWant[4096];
  format_ids(zGot, sizeof(zGot), aId, nId);
  format_ids(zWant, sizeof(zWant), aWant, nWant);
  CHECK(bSame, "%s: got [%s ] want [%s ]", zWhat, zGot, zWant);
  char *zBack = NULL;
  size_t nBack = 0;
  int bad = 0;
  int rc = tok_decode(t, aId, nId, &zBack, &nBack, &bad);
  int bRound = rc == 0 && nBack == n && memcmp(zBack, z, n) == 0;
  CHECK(bRound, "%s: decode(encode(x)) != x", zWhat);
  free(zBack);
  free(aId);
  return bSame && bRound;
}

/* llama.cpp's test-tokenizer-0 cases. The .inp file is every case followed
** by "\n__ggml_vocab_test__\n" (so the first case has no separator before
** it, and a case's text excludes the newline before the separator); the
** .out file has one line per case, each id preceded by a space. */
#define N_CASES 46
static void test_cases(const GPTTokenizer *t, const char *zDir) {
  static const char zSep[] = "\n__ggml_vocab_test__\n";
  const size_t nSep = sizeof(zSep) - 1;
  char zPath[1024];
  size_t nInp = 0, nOut = 0;
  char *zInp = read_file(data_path(zPath, sizeof(zPath), zDir, "tokenizer-cases.inp"), &nInp);
  char *zOut = read_file(data_path(zPath, sizeof(zPath), zDir, "tokenizer-cases.out"), &nOut);
  CHECK(zInp && zOut, "cannot read tokenizer-cases.inp/.out");
  if (!zInp || !zOut) goto done;
  int nCase = 0, nCasePassed = 0;
  char *zCase = zInp, *zLine = zOut;
  while (zCase < zInp + nInp) {
    /* the case runs to the next separator; memmem is safe on NUL bytes */
    char *zSepAt = memmem(zCase, nInp - (size_t)(zCase - zInp), zSep, nSep);
    size_t nCaseLen = zSepAt ? (size_t)(zSepAt - zCase) : nInp - (size_t)(zCase - zInp);
    /* its expected ids are the next line of the .out file */
    char *zLineEnd = strchr(zLine, '\n');
    if (!zLineEnd) zLineEnd = zLine + strlen(zLine);
    if (zLine >= zOut + nOut) {
      CHECK(0, "case %d has no line in tokenizer-cases.out", nCase + 1);
      break;
    }
    int aWant[512];
    size_t nWant = 0;
    char *p = zLine;
    while (p < zLineEnd && nWant < 512) {
      char *pEnd;
      long v = strtol(p, &pEnd, 10);
      if (pEnd == p) break;
      aWant[nWant++] = (int)v;
      p = pEnd;
    }
    char zWhat[64];
    snprintf(zWhat, sizeof(zWhat), "case %d", nCase + 1);
    nCasePassed += expect_ids(t, zWhat, zCase, nCaseLen, 0, aWant, nWant);
    nCase++;
    zLine = *zLineEnd ? zLineEnd + 1 : zLineEnd;
    if (!zSepAt) break;
    zCase = zSepAt + nSep;
  }
  CHECK(nCase == N_CASES, "parsed %d cases, want %d", nCase, N_CASES);
  CHECK(zLine == zOut + nOut, "tokenizer-cases.out has more lines than cases");
  printf("tokenizer cases: %d/%d passed\n", nCasePassed, nCase);
done:
  free(zInp);
  free(zOut);
}

/* tiktoken's tests/test_encoding.py expectations for the gpt2 encoding. */
static void test_tiktoken(const GPTTokenizer *t) {
  static const int aHello[] = {31373, 995};
  expect_ids(t, "hello world", "hello world", 11, 0, aHello, 2);
  static const int aHelloEot[] = {31373, 220, 50256};
  expect_ids(t, "hello <|endoftext|> (special)", "hello <|endoftext|>", 19,
             TOK_ALLOW_SPECIAL, aHelloEot, 3);
  static const struct {
    int nZero;
    int aId[3];
  } aDigit[] = {
    {1, {15}}, {2, {405}}, {3, {830}}, {4, {2388}}, {5, {20483}}, {6, {10535}},
    {7, {24598}}, {8, {8269}}, {9, {10535, 830}}, {10, {8269, 405}},
    {11, {8269, 830}}, {12, {8269, 2388}}, {13, {8269, 20483}},
    {14, {8269, 10535}}, {15, {8269, 24598}}, {16, {25645}},
    {17, {8269, 10535, 830}},
  };
  for (size_t i = 0; i < sizeof(aDigit) / sizeof(aDigit[0]); i++) {
    char zZeros[32], zWhat[48];
    memset(zZeros, '0', (size_t)aDigit[i].nZero);
    size_t nWant = 0;
    while (nWant < 3 && aDigit[i].aId[nWant]) nWant++;
    snprintf(zWhat, sizeof(zWhat), "%d zeros", aDigit[i].nZero);
    expect_ids(t, zWhat, zZeros, (size_t)aDigit[i].nZero, 0, aDigit[i].aId, nWant);
  }
  expect_ids(t, "empty string", "", 0, 0, NULL, 0);
  expect_ids(t, "empty string (special)", "", 0, TOK_ALLOW_SPECIAL, NULL, 0);
}

/* "<|endoftext|>" without TOK_ALLOW_SPECIAL is ordinary text. The regex
** cuts it into "<|" (punctuation run), "endoftext" (letters) and "|>";
** GPT-2 has no merges for "<|" or "|>", and "endoftext" merges into
** end + of + text; tiktoken's encode_ordinary gives the same. */
static void test_special(const GPTTokenizer *t) {
  CHECK(tok_eot_id(t) == 50256, "tok_eot_id is %d, want 50256", tok_eot_id(t));
  static const int aPlain[] = {27, 91, 437, 1659, 5239, 91, 29};
  expect_ids(t, "<|endoftext|> (ordinary)", "<|endoftext|>", 13, 0, aPlain, 7);
  static const int aSpecial[] = {50256};
  expect_ids(t, "<|endoftext|> (special)", "<|endoftext|>", 13, TOK_ALLOW_SPECIAL, aSpecial, 1);
  /* specials back to back, at both ends, and a near miss in between */
  static const char zMix[] = "<|endoftext|><|endoftext|>a<|endoftext|<|endoftext|>";
  int *aId = NULL;
  size_t nId = 0;
  int rc = tok_encode(t, zMix, sizeof(zMix) - 1, TOK_ALLOW_SPECIAL, &aId, &nId);
  int nEot = 0;
  for (size_t i = 0; rc == 0 && i < nId; i++) nEot += aId[i] == 50256;
  CHECK(rc == 0 && nId >= 4 && aId[0] == 50256 && aId[1] == 50256 && aId[nId - 1] == 50256 &&
            nEot == 3, "three specials in a mixed string");
  free(aId);
  rc = tok_encode(t, zMix, sizeof(zMix) - 1, 0, &aId, &nId);
  nEot = 0;
  for (size_t i = 0; rc == 0 && i < nId; i++) nEot += aId[i] == 50256;
  CHECK(rc == 0 && nEot == 0, "no special without TOK_ALLOW_SPECIAL");
  free(aId);
}

/* splitmix64: a small seeded PRNG, so failures reproduce. */
static uint64_t rng_next(uint64_t *pState) {
  uint64_t z = (*pState += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/* A uniform-enough draw from 0..n-1 (the modulo bias does not matter). */
static uint32_t rng_below(uint64_t *pState, uint32_t n) {
  return (uint32_t)(rng_next(pState) % n);
}

/* Appends code point cp as UTF-8 (surrogates too, deliberately invalid). */
static size_t put_utf8(unsigned char *z, uint32_t cp) {
  if (cp < 0x80) {
    z[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    z[0] = (unsigned char)(0xC0 | cp >> 6);
    z[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    z[0] = (unsigned char)(0xE0 | cp >> 12);
    z[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    z[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  z[0] = (unsigned char)(0xF0 | cp >> 18);
  z[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  z[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  z[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Appends one random piece to z (room for 64 bytes): a character of some
** plane, an ASCII run, white space, a contraction, or invalid UTF-8. */
static size_t random_piece(uint64_t *r, unsigned char *z) {
  static const char *azContraction[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
                                        "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "'"};
  static const uint32_t aSpace[] = {' ', ' ', ' ', '\t', '\n', '\n', '\r', '\v', '\f',
                                    0xA0, 0x3000, 0x85, 0x2028, 0x2003, 0x180E, 0x1680};
  static const char zPunct[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
  static const char *azInvalid[] = {
    "\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xE0\x9F\xBF", "\xF0\x80\x80\x80",
    "\xF0\x8F\xBF\xBF", "\xED\xA0\x80", "\xED\xBF\xBF", "\xED\xB2\x80", "\xF4\x90\x80\x80",
    "\xF5\x80\x80\x80", "\xFE", "\xFF", "\xE2\x82", "\xF0\x9F\x98", "\xC3", "\xF0\x9F"};
  size_t n = 0;
  switch (rng_below(r, 14)) {
    case 0: case 1: { /* ASCII letters, digits or punctuation */
      uint32_t nRun = 1 + rng_below(r, 8), kind = rng_below(r, 3);
      for (uint32_t i = 0; i < nRun; i++) {
        if (kind == 0) z[n++] = (unsigned char)((rng_below(r, 2) ? 'a' : 'A') + rng_below(r, 26));
        else if (kind == 1) z[n++] = (unsigned char)('0' + rng_below(r, 10));
        else z[n++] = (unsigned char)zPunct[rng_below(r, sizeof(zPunct) - 1)];
      }
      break;
    }
    case 2: case 3: { /* a run of white space */
      uint32_t nRun = 1 + rng_below(r, 6);
      for (uint32_t i = 0; i < nRun; i++)
        n += put_utf8(z + n, aSpace[rng_below(r, sizeof(aSpace) / sizeof(aSpace[0]))]);
      break;
    }
    case 4: { /* a contraction */
      const char *zC = azContraction[rng_below(r, sizeof(azContraction) / sizeof(azContraction[0]))];
      n = strlen(zC);
      memcpy(z, zC, n);
      break;
    }
    case 5: { /* invalid UTF-8: a lone high byte, or a known bad sequence */
      if (rng_below(r, 2)) {
        z[n++] = (unsigned char)(0x80 + rng_below(r, 128));
      } else {
        const char *zBad = azInvalid[rng_below(r, sizeof(azInvalid) / sizeof(azInvalid[0]))];
        n = strlen(zBad);
        memcpy(z, zBad, n);
      }
      break;
    }
    case 6: { /* a truncated multi-byte character */
      unsigned char zFull[4];
      size_t nFull = put_utf8(zFull, 0x80 + rng_below(r, 0x10FF80));
      if (nFull > 1) {
        n = 1 + rng_below(r, (uint32_t)nFull - 1);
        memcpy(z, zFull, n);
      }
      break;
    }
    case 7: /* a surrogate encoded as UTF-8 */
      n = put_utf8(z, 0xD800 + rng_below(r, 0x800));
      break;
    case 8: { /* combining marks after a letter */
      z[n++] = (unsigned char)('a' + rng_below(r, 26));
      uint32_t nMark = 1 + rng_below(r, 3);
      for (uint32_t i = 0; i < nMark; i++) n += put_utf8(z + n, 0x300 + rng_below(r, 0x70));
      break;
    }
    case 9: { /* CJK or Hangul */
      uint32_t nRun = 1 + rng_below(r, 4);
      for (uint32_t i = 0; i < nRun; i++)
        n += put_utf8(z + n, rng_below(r, 2) ? 0x4E00 + rng_below(r, 0x5200)
                                             : 0xAC00 + rng_below(r, 0x2BA4));
      break;
    }
    case 10: /* emoji */
      n = put_utf8(z, 0x1F300 + rng_below(r, 0x700));
      if (rng_below(r, 3) == 0) n += put_utf8(z + n, 0x200D); /* zero width joiner */
      if (rng_below(r, 3) == 0) n += put_utf8(z + n, 0xFE0F); /* variation selector */
      break;
    case 11: { /* any BMP character but a surrogate */
      uint32_t cp = rng_below(r, 0x10000 - 0x800);
      n = put_utf8(z, cp < 0xD800 ? cp : cp + 0x800);
      break;
    }
    case 12: /* any supplementary plane */
      n = put_utf8(z, 0x10000 + rng_below(r, 0x100000));
      break;
    default: /* NUL, Latin-1, or the special token's text */
      if (rng_below(r, 4) == 0) {
        memcpy(z, "<|endoftext|>", 13);
        n = 13;
      } else if (rng_below(r, 2)) {
        z[n++] = 0;
      } else {
        n = put_utf8(z, 0x80 + rng_below(r, 0x180));
      }
      break;
  }
  return n;
}

/* decode(encode(s)) == s byte for byte, and every id in range, for many
** random strings; half of them allow the special token. */
#define N_ROUND_TRIP 30000
static void test_round_trip(const GPTTokenizer *t) {
  uint64_t r = 20240601;
  unsigned char z[64 * 40];
  int nBad = 0;
  for (int iCase = 0; iCase < N_ROUND_TRIP; iCase++) {
    size_t n = 0;
    uint32_t nPiece = rng_below(&r, 40);
    for (uint32_t i = 0; i < nPiece; i++) n += random_piece(&r, z + n);
    int flags = rng_below(&r, 2) ? TOK_ALLOW_SPECIAL : 0;
    int *aId = NULL;
    size_t nId = 0;
    char *zBack = NULL;
    size_t nBack = 0;
    int bad = 0;
    int bOk = tok_encode(t, (const char *)z, n, flags, &aId, &nId) == 0;
    for (size_t i = 0; bOk && i < nId; i++)
      bOk = aId[i] >= 0 && aId[i] < tok_vocab_size(t);
    bOk = bOk && tok_decode(t, aId, nId, &zBack, &nBack, &bad) == 0 && nBack == n &&
          memcmp(zBack, z, n) == 0;
    if (!bOk && nBad++ < 5) {
      printf("round trip failed for case %d (%zu bytes):", iCase, n);
      for (size_t i = 0; i < n; i++) printf(" %02X", z[i]);
      printf("\n");
    }
    free(aId);
    free(zBack);
  }
  CHECK(nBad == 0, "%d of %d random strings did not round-trip", nBad, N_ROUND_TRIP);
  printf("round trip: %d random strings, %d failed\n", N_ROUND_TRIP, nBad);
}

/* A toy tokenizer of nVocab slots whose first 256 hold the byte tokens in
** byte-level form; the caller sets the rest. NULL when out of memory. */
static GPTTokenizer *toy_tokenizer(int nVocab, char *zErr, size_t nErr) {
  GPTTokenizer *t = tok_new(nVocab);
  if (!t) return NULL;
  /* bytes_to_unicode(), spelt out independently of the tokenizer */
  int nExtra = 0;
  for (int b = 0; b < 256; b++) {
    int bPrintable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    unsigned char zChar[4];
    size_t n = put_utf8(zChar, bPrintable ? (uint32_t)b : 256u + (uint32_t)nExtra++);
    if (tok_set_token(t, b, (const char *)zChar, (int)n, zErr, nErr) != 0) break;
  }
  return t;
}

/* Encodes z with t and compares with the ids of want (-1 ends it). */
static void expect_toy(const GPTTokenizer *t, const char *zWhat, const char *z, int flags,
                       const int *want) {
  size_t n = 0;
  while (want[n] >= 0) n++;
  expect_ids(t, zWhat, z, strlen(z), flags, want, n);
}

/* The tokenizer.json features on a toy vocabulary: Split stages (and none),
** the pattern rewriting, added tokens (leftmost-longest, special only on
** request), NFC, ignore_merges, and their errors. */
static void test_hf_toy(void) {
  char zErr[256];
  static const char *azTok[] = {"ab", "abab", "<|x|>", "<|x|>y", "ba"};
  for (int eCase = 0; eCase < 5; eCase++) {
    GPTTokenizer *t = toy_tokenizer(261, zErr, sizeof(zErr));
    CHECK(t != NULL, "toy tokenizer");
    if (!t) return;
    for (int k = 0; k < 5; k++)
      CHECK(tok_set_token(t, 256 + k, azTok[k], (int)strlen(azTok[k]), zErr, sizeof(zErr)) == 0,
            "set %s: %s", azTok[k], zErr);
    CHECK(tok_add_merge(t, 0, "a", 1, "b", 1, zErr, sizeof(zErr)) == 0, "merge: %s", zErr);
    CHECK(tok_add_merge(t, 1, "ab", 2, "ab", 2, zErr, sizeof(zErr)) == 0, "merge: %s", zErr);
    unsigned opts = TOK_OPT_HF | (eCase == 2 ? TOK_OPT_NFC : 0) |
                    (eCase == 3 ? TOK_OPT_IGNORE_MERGES : 0);
    CHECK(tok_set_options(t, opts, zErr, sizeof(zErr)) == 0, "options: %s", zErr);
    if (eCase == 1) {
      CHECK(tok_add_split(t, "b", 1, 1, zErr, sizeof(zErr)) == 0, "split b: %s", zErr);
      CHECK(tok_add_split(t, "\\h+", 3, 0, zErr, sizeof(zErr)) == 0, "split \\h: %s", zErr);
    }
    if (eCase == 4) {
      /* errors of the pattern rewriting and of added tokens */
      CHECK(tok_add_split(t, "a\\", 2, 0, zErr, sizeof(zErr)) == -1 &&
                strcmp(zErr, "pattern ends with a backslash") == 0, "backslash: %s", zErr);
      CHECK(tok_add_split(t, "\\u12", 4, 0, zErr, sizeof(zErr)) == -1 &&
                strcmp(zErr, "\\u at offset 0 is not followed by four hex digits") == 0,
            "\\u: %s", zErr);
      CHECK(tok_add_split(t, "[\\H]", 4, 0, zErr, sizeof(zErr)) == -1 &&
                strcmp(zErr, "\\H inside a character class is not supported") == 0,
            "\\H: %s", zErr);
      CHECK(tok_add_split(t, "(", 1, 0, zErr, sizeof(zErr)) == -1 &&
                strcmp(zErr, "pre-tokenizer pattern 1: missing closing parenthesis") == 0,
            "compile: %s", zErr);
      CHECK(tok_add_added(t, 258, "<|y|>", 5, 1, zErr, sizeof(zErr)) == -1 &&
                strcmp(zErr, "added token 258 \"<|y|>\" is not the vocabulary's token 258") == 0,
            "added content: %s", zErr);
      CHECK(tok_add_split(t, "[\\s\\S]\\u0041", 12, 0, zErr, sizeof(zErr)) == 0,
            "\\s \\S \\u in a class: %s", zErr);
    }
    CHECK(tok_add_added(t, 258, "<|x|>", 5, 1, zErr, sizeof(zErr)) == 0, "added: %s", zErr);
    CHECK(tok_add_added(t, 259, "<|x|>y", 6, 0, zErr, sizeof(zErr)) == 0, "added: %s", zErr);
    CHECK(tok_add_added(t, 259, "<|x|>y", 6, 0, zErr, sizeof(zErr)) == -1 &&
              strcmp(zErr, "added token 259 is given twice") == 0, "twice: %s", zErr);
    CHECK(tok_finish(t, zErr, sizeof(zErr)) == 0, "finish: %s", zErr);
    static const int aWhole[] = {257, 32, 256, -1};      /* no stage: one word */
    static const int aSplit[] = {97, 98, 97, 98, 32, 97, 98, -1};
    static const int aSplitHex[] = {97, 98, 97, 98, 32, 97, 98, 122, -1}; /* "abab abz" */
    if (eCase == 1) {
      expect_toy(t, "split b", "abab ab", 0, aSplit);
      expect_toy(t, "split \\h", "abab abz", 0, aSplitHex);
    } else if (eCase != 4) {
      expect_toy(t, "no stage", "abab ab", 0, aWhole);
    }
    /* leftmost, then longest; special only with TOK_ALLOW_SPECIAL; plain always */
    static const int aSpecial[] = {97, 258, 120, 259, 258, -1};
    static const int aPlain[] = {97, 60, 124, 120, 124, 62, 120, 259, 60, 124, 120, 124, 62, -1};
    if (eCase == 0) {
      expect_toy(t, "added special", "a<|x|>x<|x|>y<|x|>", TOK_ALLOW_SPECIAL, aSpecial);
      expect_toy(t, "added plain", "a<|x|>x<|x|>y<|x|>", 0, aPlain);
      CHECK(tok_is_special(t, 258) && !tok_is_special(t, 259) && !tok_is_special(t, 97),
            "tok_is_special");
      CHECK(tok_token_id(t, "abab", 4) == 257 && tok_token_id(t, "zz", 2) == -1, "tok_token_id");
    }
    /* NFC: e + U+0301 is U+00E9 */
    static const int aNfc[] = {0xC3, 0xA9, -1}, aRaw[] = {0x65, 0xCC, 0x81, -1};
    if (eCase == 2) {
      /* (not expect_toy: normalized text does not decode to its input) */
      int *aId = NULL;
      size_t nId = 0;
      CHECK(tok_encode(t, "e\xCC\x81", 3, 0, &aId, &nId) == 0 && nId == 2 &&
                aId[0] == aNfc[0] && aId[1] == aNfc[1], "NFC");
      free(aId);
    }
    if (eCase == 0) expect_toy(t, "no NFC", "e\xCC\x81", 0, aRaw);
    /* ignore_merges: "ba" has no merge but is a token */
    static const int aBa[] = {260, -1}, aBaBpe[] = {98, 97, -1};
    if (eCase == 3) expect_toy(t, "ignore_merges", "ba", 0, aBa);
    if (eCase == 0) expect_toy(t, "merges", "ba", 0, aBaBpe);
    tok_free(t);
  }
  char zOut[16];
  CHECK(tok_byte_level(" a\n\xff", 4, zOut, sizeof(zOut)) == 7 &&
            strcmp(zOut, "\xC4\xA0" "a" "\xC4\x8A" "\xC3\xBF") == 0,
        "tok_byte_level");
}

/* Error messages of loading, and decode's out-of-range result. */
static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- BPE training (engine/bpe.c) against a plain reference ---- */

/* A word of the reference: its symbols and its count. */
typedef struct RefWord { int *a; int n; int64_t count; } RefWord;

/* The reference trainer: GPT-2's pattern splits the text (as bpe.c
** splits valid UTF-8), equal words are counted, then every merge recounts
** every pair of every word and takes the largest count, then the smaller
** (left, right): the rule bpe_train keeps incrementally. Merged bytes that
** already name a token reuse it. Fills aL/aR with up to nMax merges. */
static int ref_bpe(const char *z, size_t n, int nTokens, int *aL, int *aR, int nMax) {
  static const char zPat[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
  int ec;
  PCRE2_SIZE eo;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)zPat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                 &ec, &eo, NULL);
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  RefWord *aW = NULL;
  int nW = 0, nWAlloc = 0;
  size_t from = 0;
  while (from < n) { /* words of the matches, and of any gaps (the text is ASCII) */
    int rc = pcre2_match(re, (PCRE2_SPTR)z, n, from, 0, md, NULL);
    size_t s0 = rc < 0 ? n : pcre2_get_ovector_pointer(md)[0];
    size_t s1 = rc < 0 ? n : pcre2_get_ovector_pointer(md)[1];
    for (int part = 0; part < 2; part++) {
      size_t a = part ? s0 : from, b = part ? s1 : s0;
      if (b <= a) continue;
      int k = 0;
      for (; k < nW; k++) {
        if ((size_t)aW[k].n != b - a) continue;
        int j = 0;
        while (j < aW[k].n && aW[k].a[j] == (unsigned char)z[a + j]) j++;
        if (j == aW[k].n) break;
      }
      if (k == nW) {
        if (nW == nWAlloc) {
          nWAlloc = nWAlloc ? 2 * nWAlloc : 1024;
          aW = realloc(aW, (size_t)nWAlloc * sizeof(RefWord));
        }
        aW[nW].n = (int)(b - a);
        aW[nW].a = malloc((b - a) * sizeof(int));
        for (size_t j = a; j < b; j++) aW[nW].a[j - a] = (unsigned char)z[j];
        aW[nW].count = 0;
        nW++;
      }
      aW[k].count++;
    }
    from = s1 > from ? s1 : from + 1;
  }
  /* tokens: bytes, then merges' bytes */
  int nTok = 256, nMerge = 0;
  char **azTok = malloc(sizeof(char *) * (size_t)(nTokens + 1));
  int *anTok = malloc(sizeof(int) * (size_t)(nTokens + 1));
  for (int i = 0; i < 256; i++) {
    azTok[i] = malloc(1);
    azTok[i][0] = (char)i;
    anTok[i] = 1;
  }
  while (nTok < nTokens && nMerge < nMax) {
    int64_t best = 0;
    int bl = -1, br = -1;
    /* every pair of every word; counted by a sort of the pairs */
    size_t nP = 0;
    for (int w = 0; w < nW; w++) nP += aW[w].n > 1 ? (size_t)aW[w].n - 1 : 0;
    struct { uint64_t key; int64_t c; } *aP = malloc((nP + 1) * sizeof(*aP));
    size_t k = 0;
    for (int w = 0; w < nW; w++)
      for (int j = 0; j + 1 < aW[w].n; j++) {
        aP[k].key = (uint64_t)aW[w].a[j] << 32 | (uint32_t)aW[w].a[j + 1];
        aP[k++].c = aW[w].count;
      }
    for (size_t i = 1; i < nP; i++) { /* insertion sort by key: small inputs */
      uint64_t key = aP[i].key;
      int64_t c = aP[i].c;
      size_t j = i;
      while (j > 0 && aP[j - 1].key > key) { aP[j] = aP[j - 1]; j--; }
      aP[j].key = key;
      aP[j].c = c;
    }
    for (size_t i = 0; i < nP;) {
      size_t j = i;
      int64_t c = 0;
      while (j < nP && aP[j].key == aP[i].key) c += aP[j++].c;
      if (c > best) { best = c; bl = (int)(aP[i].key >> 32); br = (int)(uint32_t)aP[i].key; }
      i = j;
    }
    free(aP);
    if (best < 2) break;
    int nNew = anTok[bl] + anTok[br], id = -1;
    char *zNew = malloc((size_t)nNew);
    memcpy(zNew, azTok[bl], (size_t)anTok[bl]);
    memcpy(zNew + anTok[bl], azTok[br], (size_t)anTok[br]);
    for (int t = 256; t < nTok && id < 0; t++)
      if (anTok[t] == nNew && memcmp(azTok[t], zNew, (size_t)nNew) == 0) id = t;
    if (id < 0) {
      id = nTok++;
      azTok[id] = zNew;
      anTok[id] = nNew;
    } else {
      free(zNew);
    }
    aL[nMerge] = bl;
    aR[nMerge++] = br;
    for (int w = 0; w < nW; w++) {
      int o = 0;
      for (int j = 0; j < aW[w].n; j++) {
        if (j + 1 < aW[w].n && aW[w].a[j] == bl && aW[w].a[j + 1] == br) {
          aW[w].a[o++] = id;
          j++;
        } else {
          aW[w].a[o++] = aW[w].a[j];
        }
      }
      aW[w].n = o;
    }
  }
  for (int w = 0; w < nW; w++) free(aW[w].a);
  for (int t = 0; t < nTok; t++) free(azTok[t]);
  free(aW); free(azTok); free(anTok);
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  return nMerge;
}

/* bpe_train's merges equal the reference's: on Tiny Shakespeare's start,
** and on runs of one letter (pairs that overlap: "aaaa"). */
static void test_bpe_reference(const char *zDir) {
  char zPath[512];
  snprintf(zPath, sizeof(zPath), "%s/tinyshakespeare.txt", zDir);
  FILE *f = fopen(zPath, "rb");
  CHECK(f != NULL, "open %s", zPath);
  if (!f) return;
  enum { N_TEXT = 40000, N_TOK = 700 };
  char *zText = malloc(N_TEXT + 1);
  size_t nText = fread(zText, 1, N_TEXT, f);
  fclose(f);
  char zRuns[6000];
  uint32_t seed = 7;
  size_t nRuns = 0;
  while (nRuns + 16 < sizeof(zRuns)) {
    char c = "ab"[(seed = seed * 1103515245u + 12345u) >> 16 & 1];
    int len = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 12;
    for (int i = 0; i < len; i++) zRuns[nRuns++] = c;
    zRuns[nRuns++] = ' ';
  }
  const char *azIn[2] = {zText, zRuns};
  size_t anIn[2] = {nText, nRuns};
  for (int c = 0; c < 2; c++) {
    int aL[N_TOK], aR[N_TOK];
    int nRef = ref_bpe(azIn[c], anIn[c], N_TOK, aL, aR, N_TOK);
    GPTBpe *b = bpe_new(0);
    CHECK(b && bpe_add_text(b, azIn[c], anIn[c]) == 0 && bpe_train(b, N_TOK, 0, 0) == 0,
          "bpe_train");
    if (!b) continue;
    int nBad = bpe_n_merges(b) != nRef, iBad = -1;
    for (int i = 0; !nBad && i < nRef; i++) {
      int l, r;
      bpe_merge(b, i, &l, &r);
      if (l != aL[i] || r != aR[i]) { nBad = 1; iBad = i; }
    }
    CHECK(!nBad, "bpe_train on %s: %d merges against the reference's %d, first difference at %d",
          c ? "runs" : "Tiny Shakespeare", bpe_n_merges(b), nRef, iBad);
    printf("bpe_train: %d merges on %s, as the reference\n", nRef, c ? "letter runs" : "Tiny Shakespeare");
    bpe_free(b);
  }
  free(zText);
  /* a full word table: words first seen after it are counted as skipped */
  GPTBpe *b = bpe_new(3);
  const char *zFew = "a b c d a e b f";
  CHECK(b && bpe_add_text(b, zFew, strlen(zFew)) == 0 && bpe_n_words(b) == 3 &&
            bpe_n_skipped(b) == 4,
        "bpe_new(3): %lld words, %lld skipped, expected 3 (\"a\", \" b\", \" c\") and 4",
        b ? (long long)bpe_n_words(b) : -1LL, b ? (long long)bpe_n_skipped(b) : -1LL);
  bpe_free(b);
}

/* Added tokens matched as a brute force matches them: at the leftmost
** position, the longest token allowed there (a special one only with
** TOK_ALLOW_SPECIAL), the text between encoded on its own. Random tokens
** over a 3-letter alphabet make long chains of prefixes, special and plain
** mixed. Then 33,000 tokens sharing their first bytes against 10 KB of
** text that starts one at every other byte: a scan of each token with the
** text's first byte took 1.8 s. */
static void test_added_random(void) {
  char zErr[256];
  enum { N_ADDED = 300, N_TEXT = 400, N_MANY = 33000 };
  static char azTok[N_ADDED][12];
  static int aSpecialTok[N_ADDED];
  uint32_t seed = 12345;
  GPTTokenizer *t = toy_tokenizer(256 + N_ADDED, zErr, sizeof(zErr));
  CHECK(t != NULL, "toy tokenizer");
  if (!t) return;
  int nSetBad = 0;
  for (int k = 0; k < N_ADDED; k++) {
    int bNew;
    do { /* distinct tokens of 2 to 9 letters from "ab<" */
      int n = 2 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 8;
      for (int i = 0; i < n; i++) azTok[k][i] = "ab<"[((seed = seed * 1103515245u + 12345u) >> 16) % 3];
      azTok[k][n] = 0;
      bNew = 1;
      for (int j = 0; j < k && bNew; j++) bNew = strcmp(azTok[j], azTok[k]) != 0;
    } while (!bNew);
    aSpecialTok[k] = ((seed = seed * 1103515245u + 12345u) >> 16) % 2;
    nSetBad += tok_set_token(t, 256 + k, azTok[k], (int)strlen(azTok[k]), zErr, sizeof(zErr)) != 0;
  }
  CHECK(tok_set_options(t, TOK_OPT_HF, zErr, sizeof(zErr)) == 0, "options: %s", zErr);
  for (int k = 0; k < N_ADDED; k++)
    nSetBad += tok_add_added(t, 256 + k, azTok[k], (int)strlen(azTok[k]), aSpecialTok[k], zErr,
                             sizeof(zErr)) != 0;
  CHECK(nSetBad == 0, "random added tokens: %d not set: %s", nSetBad, zErr);
  CHECK(tok_finish(t, zErr, sizeof(zErr)) == 0, "finish: %s", zErr);
  int nBad = 0;
  for (int r = 0; r < 200; r++) {
    char zText[N_TEXT + 1];
    int n = (int)((seed = seed * 1103515245u + 12345u) >> 16) % N_TEXT;
    for (int i = 0; i < n; i++) zText[i] = "ab<c"[((seed = seed * 1103515245u + 12345u) >> 16) % 4];
    zText[n] = 0;
    int flags = r % 2 ? TOK_ALLOW_SPECIAL : 0;
    /* the brute force: ids of the text between matches, then the match */
    int aWant[2 * N_TEXT], nWant = 0;
    for (int i = 0, iSeg = 0; i <= n; i++) {
      int best = -1, nBest = 0;
      for (int k = 0; i < n && k < N_ADDED; k++) {
        int len = (int)strlen(azTok[k]);
        if ((aSpecialTok[k] && !flags) || len > n - i || len <= nBest) continue;
        if (memcmp(zText + i, azTok[k], (size_t)len) == 0) best = k, nBest = len;
      }
      if (best < 0 && i < n) continue;
      int *aId = NULL;
      size_t nId = 0;
      if (i > iSeg && tok_encode(t, zText + iSeg, (size_t)(i - iSeg), 0, &aId, &nId) == 0)
        for (size_t j = 0; j < nId; j++) aWant[nWant++] = aId[j];
      free(aId);
      if (best >= 0) aWant[nWant++] = 256 + best;
      iSeg = i + nBest;
      i = iSeg - 1;
      if (best < 0) break;
    }
    int *aGot = NULL;
    size_t nGot = 0;
    if (tok_encode(t, zText, (size_t)n, flags, &aGot, &nGot) != 0 || nGot != (size_t)nWant ||
        (nWant && memcmp(aGot, aWant, sizeof(int) * (size_t)nWant) != 0)) {
      if (nBad++ == 0) printf("  added tokens differ from the brute force on \"%s\"\n", zText);
    }
    free(aGot);
  }
  CHECK(nBad == 0, "%d of 200 random texts split differently at added tokens", nBad);
  tok_free(t);

  /* many tokens with one first byte */
  t = toy_tokenizer(256 + N_MANY, zErr, sizeof(zErr));
  CHECK(t != NULL, "toy tokenizer");
  if (!t) return;
  char zTok[32];
  nSetBad = 0;
  for (int k = 0; k < N_MANY; k++) {
    int n = snprintf(zTok, sizeof(zTok), "<%d>", k);
    nSetBad += tok_set_token(t, 256 + k, zTok, n, zErr, sizeof(zErr)) != 0 ||
               tok_add_added(t, 256 + k, zTok, n, 1, zErr, sizeof(zErr)) != 0;
  }
  CHECK(nSetBad == 0, "33,000 added tokens: %d not set: %s", nSetBad, zErr);
  CHECK(tok_set_options(t, TOK_OPT_HF, zErr, sizeof(zErr)) == 0, "options: %s", zErr);
  double t0 = now_seconds();
  CHECK(tok_finish(t, zErr, sizeof(zErr)) == 0, "finish: %s", zErr);
  char *zHtml = malloc(10240 + 1);
  for (int i = 0; i < 10240; i++) zHtml[i] = i % 2 ? 'x' : '<';
  int *aId = NULL;
  size_t nId = 0;
  int rc = tok_encode(t, zHtml, 10240, TOK_ALLOW_SPECIAL, &aId, &nId);
  memcpy(zHtml, "<7>x<32999>", 11); /* two of them */
  int *aId2 = NULL;
  size_t nId2 = 0;
  int rc2 = tok_encode(t, zHtml, 11, TOK_ALLOW_SPECIAL, &aId2, &nId2);
  double ms = (now_seconds() - t0) * 1000;
  CHECK(rc == 0 && rc2 == 0 && nId2 == 3 && aId2[0] == 256 + 7 && aId2[2] == 256 + 32999,
        "33,000 added tokens: the matches");
  CHECK(ms < 500, "33,000 added tokens: finish and 10 KB took %.0f ms", ms);
  printf("added tokens: 200 random texts against the brute force; 33,000 tokens, 10 KB: %.1f ms\n", ms);
  free(aId); free(aId2); free(zHtml);
  tok_free(t);
}

static void test_errors(const GPTTokenizer *tGpt2) {
  char zErr[256];
  GPTTokenizer *t = toy_tokenizer(260, zErr, sizeof(zErr));
  CHECK(t != NULL, "toy tokenizer");
  if (!t) return;
  CHECK(tok_set_token(t, 256, "ab", 2, zErr, sizeof(zErr)) == 0, "set ab: %s", zErr);
  CHECK(tok_set_token(t, 257, "abc", 3, zErr, sizeof(zErr)) == 0, "set abc: %s", zErr);

  CHECK(tok_set_token(t, 260, "q", 1, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "vocab token 260 is outside 0..259") == 0, "out of range: %s", zErr);
  CHECK(tok_set_token(t, 256, "xy", 2, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "vocab token 256 is set twice") == 0, "set twice: %s", zErr);
  CHECK(tok_set_token(t, 258, "a b", 3, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "vocab token 258 has a character outside GPT-2's byte map") == 0,
        "raw space: %s", zErr);
  CHECK(tok_set_token(t, 258, "\xE4\xB8\x80", 3, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "vocab token 258 has a character outside GPT-2's byte map") == 0,
        "CJK char: %s", zErr);
  CHECK(tok_set_token(t, 258, "ab", 2, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "vocab token 258 repeats token 256 \"ab\"") == 0, "duplicate: %s", zErr);

  CHECK(tok_add_merge(t, 11, "a", 1, "b", 1, zErr, sizeof(zErr)) == 0, "merge a b: %s", zErr);
  CHECK(tok_add_merge(t, 12, "xyz", 3, "c", 1, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "merge 12 names unknown token \"xyz\"") == 0, "unknown left: %s", zErr);
  CHECK(tok_add_merge(t, 12, "ab", 2, "xyz", 3, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "merge 12 names unknown token \"xyz\"") == 0, "unknown right: %s", zErr);
  CHECK(tok_add_merge(t, 12, "a", 1, "c", 1, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "merge 12 makes \"ac\", which is not in the vocabulary") == 0,
        "result not in vocab: %s", zErr);
  CHECK(tok_add_merge(t, 12, "a", 1, "b", 1, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "merge 12 repeats merge 11") == 0, "repeated merge: %s", zErr);
  CHECK(tok_add_merge(t, 5, "ab", 2, "c", 1, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "merge 5 comes after merge 11; ranks must increase") == 0,
        "rank order: %s", zErr);
  CHECK(tok_add_merge(t, 12, "ab", 2, "c", 1, zErr, sizeof(zErr)) == 0, "merge ab c: %s", zErr);

  int *aId = NULL;
  size_t nId = 0;
  CHECK(tok_encode(t, "abc", 3, 0, &aId, &nId) == -1, "encode before tok_finish must fail");
  free(aId);
  CHECK(tok_finish(t, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "vocab token 258 is not set") == 0, "unset slot: %s", zErr);
  CHECK(tok_set_token(t, 258, "\xC4\xA0" "ab", 4, zErr, sizeof(zErr)) == 0, "set 258: %s", zErr);
  CHECK(tok_set_token(t, 259, "<|endoftext|>", 13, zErr, sizeof(zErr)) == 0, "set 259: %s", zErr);
  CHECK(tok_eot_id(t) == 259, "toy eot id %d", tok_eot_id(t));
  CHECK(tok_finish(t, zErr, sizeof(zErr)) == 0, "toy finish: %s", zErr);
  CHECK(tok_finish(t, zErr, sizeof(zErr)) == -1, "second tok_finish must fail");
  CHECK(tok_set_token(t, 0, "!", 1, zErr, sizeof(zErr)) == -1, "set after finish must fail");
  /* " ab" is a token (258) that no merge builds: BPE gives " " + "ab" */
  static const int aAbc[] = {257}, aSpaceAb[] = {' ', 256};
  expect_ids(t, "toy abc", "abc", 3, 0, aAbc, 1);
  expect_ids(t, "toy ' ab' (a token BPE never makes)", " ab", 3, 0, aSpaceAb, 2);
  int n = 0;
  const char *z = tok_token_bytes(t, 258, &n);
  CHECK(z && n == 3 && memcmp(z, " ab", 3) == 0, "raw bytes of token 258");
  CHECK(tok_token_bytes(t, 260, &n) == NULL && tok_token_bytes(t, -1, &n) == NULL,
        "tok_token_bytes out of range");
  tok_free(t);

  /* a missing byte token is caught by tok_finish */
  t = tok_new(2);
  CHECK(t && tok_set_token(t, 0, "a", 1, zErr, sizeof(zErr)) == 0 &&
            tok_set_token(t, 1, "b", 1, zErr, sizeof(zErr)) == 0 &&
            tok_finish(t, zErr, sizeof(zErr)) == -1 &&
            strcmp(zErr, "the vocabulary has no token for byte 0x00") == 0,
        "missing byte: %s", zErr);
  tok_free(t);
  CHECK(tok_new(0) == NULL && tok_new(-5) == NULL, "tok_new rejects sizes below 1");

  /* decode: an id out of range gives -2 and names the first bad id */
  static const int aIds[] = {31373, 50257, -1};
  char *zOut = NULL;
  size_t nOut = 0;
  int bad = 0;
  CHECK(tok_decode(tGpt2, aIds, 3, &zOut, &nOut, &bad) == -2 && bad == 50257 && !zOut,
        "decode out of range: bad=%d", bad);
  static const int aNeg[] = {-7};
  CHECK(tok_decode(tGpt2, aNeg, 1, &zOut, &nOut, &bad) == -2 && bad == -7, "decode negative");
  CHECK(tok_decode(tGpt2, aIds, 0, &zOut, &nOut, &bad) == 0 && zOut && nOut == 0 &&
            zOut[0] == 0, "decode of no ids");
  free(zOut);
}

/* Monotonic wall-clock time in seconds, for the speed measurement. */

/* One encoding of a text on a thread, for the concurrency check. */
typedef struct EncodeJob {
  const GPTTokenizer *t;
  const char *z;
  size_t n;
  int *aId;
  size_t nId;
  int rc;
} EncodeJob;

/* Thread body: runs the encoding described by its EncodeJob. */
static void *encode_job(void *pArg) {
  EncodeJob *p = pArg;
  p->rc = tok_encode(p->t, p->z, p->n, 0, &p->aId, &p->nId);
  return NULL;
}

/* llm.c's tinyshakespeare token count, two threads at once, and speed. */
static void test_shakespeare(const GPTTokenizer *t, const char *zDir) {
  char zPath[1024];
  size_t n = 0;
  char *z = read_file(data_path(zPath, sizeof(zPath), zDir, "tinyshakespeare.txt"), &n);
  CHECK(z != NULL, "cannot read tinyshakespeare.txt");
  if (!z) return;

  /* llm.c dev/data/tinyshakespeare.py: "<|endoftext|>" before the text and
  ** after every "\n\n" (non-overlapping, left to right, as str.replace
  ** finds them), encoded with the special token allowed */
  size_t nDoc = 0;
  for (const char *p = z; (p = strstr(p, "\n\n")) != NULL; p += 2) nDoc++;
  char *zDoc = malloc(n + (nDoc + 1) * 13 + 1);
  CHECK(zDoc != NULL, "out of memory");
  if (zDoc) {
    size_t k = 13;
    memcpy(zDoc, "<|endoftext|>", 13);
    for (size_t i = 0; i < n;) {
      if (i + 1 < n && z[i] == '\n' && z[i + 1] == '\n') {
        memcpy(zDoc + k, "\n\n<|endoftext|>", 15);
        k += 15;
        i += 2;
      } else {
        zDoc[k++] = z[i++];
      }
    }
    int *aId = NULL;
    size_t nId = 0;
    int rc = tok_encode(t, zDoc, k, TOK_ALLOW_SPECIAL, &aId, &nId);
    CHECK(rc == 0 && nId == 338028, "llm.c tinyshakespeare: %zu tokens, want 338028", nId);
    free(aId);
    free(zDoc);
  }

  /* two threads encode the same text at once and must agree with one */
  EncodeJob aJob[2] = {{t, z, n, NULL, 0, -1}, {t, z, n, NULL, 0, -1}};
  pthread_t aThread[2];
  int nStarted = 0;
  for (int i = 0; i < 2; i++)
    if (pthread_create(&aThread[i], NULL, encode_job, &aJob[i]) == 0) nStarted++;
  for (int i = 0; i < nStarted; i++) pthread_join(aThread[i], NULL);
  CHECK(nStarted == 2 && aJob[0].rc == 0 && aJob[1].rc == 0 && aJob[0].nId == aJob[1].nId &&
            memcmp(aJob[0].aId, aJob[1].aId, aJob[0].nId * sizeof(int)) == 0,
        "two threads encoding at once disagree");
  char *zBack = NULL;
  size_t nBack = 0;
  int bad = 0;
  CHECK(aJob[0].rc == 0 && tok_decode(t, aJob[0].aId, aJob[0].nId, &zBack, &nBack, &bad) == 0 &&
            nBack == n && memcmp(zBack, z, n) == 0, "tinyshakespeare round trip");
  free(zBack);

  /* speed: best of a few runs, one thread */
  double best = 1e9;
  size_t nId = 0;
  for (int iRun = 0; iRun < 5; iRun++) {
    int *aId = NULL;
    double t0 = now_seconds();
    int rc = tok_encode(t, z, n, 0, &aId, &nId);
    double dt = now_seconds() - t0;
    free(aId);
    if (rc != 0) break;
    if (dt < best) best = dt;
  }
  printf("encoding speed: %.1f MB/s (tinyshakespeare.txt, %zu bytes -> %zu tokens, %.1f ms)\n",
         (double)n / best / 1e6, n, nId, best * 1e3);
  free(aJob[0].aId);
  free(aJob[1].aId);
  free(z);
}

/* Loads GPT-2's tokenizer once and runs every group of checks on it. */
int main(int argc, char **argv) {
  const char *zDir = argc > 1 ? argv[1] : "tests/data";
  double t0 = now_seconds();
  GPTTokenizer *t = load_gpt2(zDir);
  CHECK(t != NULL, "loading GPT-2's vocabulary and merges");
  if (t) {
    printf("loaded %d tokens in %.0f ms\n", tok_vocab_size(t), (now_seconds() - t0) * 1e3);
    test_cases(t, zDir);
    test_tiktoken(t);
    test_special(t);
    test_round_trip(t);
    test_errors(t);
    test_hf_toy();
    test_added_random();
    test_bpe_reference(zDir);
    test_shakespeare(t, zDir);
    tok_free(t);
  }
  printf("%d passed, %d failed\n", nPassed, nFailed);
  return nFailed ? 1 : 0;
}
