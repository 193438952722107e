/*
** The Jinja2-subset interpreter of chat templates (see template.h).
**
** How it works: the source's newlines are normalized (\r\n and \r become
** \n, one trailing \n is dropped) as Jinja's lexer does; the lexer then
** splits it into text and tags, applying trim_blocks, lstrip_blocks and the
** -/+ markers exactly as Jinja's regular expressions do, and tokenizes the
** inside of each tag. A recursive-descent parser with Jinja's precedence
** (or < and < not < comparisons < + - < ~ < * / // % < ** < unary < filters,
** tests and postfix) builds a tree in the program's arena, checking every
** tag, filter, test, method and global function against the subset. The
** renderer walks that tree with Python's value semantics (truthiness,
** equality across int/float/bool, floor division, str() and repr() of
** floats, lists and dicts). Every value it builds lives in the env's arena,
** which is freed as a whole, so values need no reference counts; the arena
** has a byte budget. Variables live in frames: each for-loop iteration gets
** a fresh frame whose parent is the enclosing one, so a {% set %} in a loop
** body does not outlive the iteration, as in Jinja; a macro call gets a frame
** whose parent is the template's top level, and renders into a string.
*/
#include "template.h"
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ------------------------------------------------------------- arena */

typedef struct Chunk {
  struct Chunk *pNext;
  size_t nSize, nUsed;
  /* data follows, 16-byte aligned */
} Chunk;

typedef struct Arena {
  Chunk *pHead;
  size_t nTotal; /* bytes handed out */
  size_t nLimit; /* 0 = none */
  int bOverLimit;
} Arena;

#define CHUNK_HDR ((sizeof(Chunk) + 15) & ~(size_t)15)

/* n bytes, 16-byte aligned, or NULL when out of memory or over the limit
** (bOverLimit says which). */
static void *arena_alloc(Arena *a, size_t n) {
  if (n > ((size_t)1 << 40)) { a->bOverLimit = 1; return 0; }
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  if (a->nLimit && (n > a->nLimit || a->nTotal > a->nLimit - n)) {
    a->bOverLimit = 1;
    return 0;
  }
  Chunk *c = a->pHead;
  if (!c || c->nSize - c->nUsed < n) {
    size_t nNew = n > 65536 ? n : 65536;
    c = malloc(CHUNK_HDR + nNew);
    if (!c) return 0;
    c->nSize = nNew;
    c->nUsed = 0;
    c->pNext = a->pHead;
    a->pHead = c;
  }
  void *p = (char *)c + CHUNK_HDR + c->nUsed;
  c->nUsed += n;
  a->nTotal += n;
  return p;
}

static void arena_free(Arena *a) {
  Chunk *c = a->pHead;
  while (c) {
    Chunk *pNext = c->pNext;
    free(c);
    c = pNext;
  }
  memset(a, 0, sizeof(*a));
}

static char *arena_strdup(Arena *a, const char *z, size_t n) {
  char *p = arena_alloc(a, n + 1);
  if (!p) return 0;
  if (n) memcpy(p, z, n);
  p[n] = 0;
  return p;
}

/* ------------------------------------------------------------- values */

struct TplEnv {
  Arena arena;
  const char **azName; /* caller's variables */
  TplValue *aVal;
  size_t nVar, nVarAlloc;
};

TplValue tpl_none(void) { TplValue v; memset(&v, 0, sizeof(v)); v.type = TPL_NONE; return v; }
TplValue tpl_bool(int b) { TplValue v; memset(&v, 0, sizeof(v)); v.type = TPL_BOOL; v.u.i = b != 0; return v; }
TplValue tpl_int(int64_t i) { TplValue v; memset(&v, 0, sizeof(v)); v.type = TPL_INT; v.u.i = i; return v; }
TplValue tpl_float(double f) { TplValue v; memset(&v, 0, sizeof(v)); v.type = TPL_FLOAT; v.u.f = f; return v; }
static TplValue val_undef(void) { TplValue v; memset(&v, 0, sizeof(v)); return v; }

/* A string value over bytes already in the arena (not copied). */
static TplValue val_str_ref(const char *z, size_t n) {
  TplValue v;
  memset(&v, 0, sizeof(v));
  v.type = TPL_STRING;
  v.u.s.z = z ? z : "";
  v.u.s.n = n;
  return v;
}

TplValue tpl_string(TplEnv *e, const char *z, size_t n) {
  char *p = arena_strdup(&e->arena, z ? z : "", z ? n : 0);
  return p ? val_str_ref(p, z ? n : 0) : val_undef();
}

static TplValue list_new(Arena *a, size_t nAlloc) {
  TplValue v = val_undef();
  TplList *l = arena_alloc(a, sizeof(TplList));
  if (!l) return v;
  memset(l, 0, sizeof(*l));
  if (nAlloc) {
    l->a = arena_alloc(a, nAlloc * sizeof(TplValue));
    if (!l->a) return v;
    l->nAlloc = nAlloc;
  }
  v.type = TPL_LIST;
  v.u.pList = l;
  return v;
}

static TplValue dict_new(Arena *a, int type) {
  TplValue v = val_undef();
  TplDict *d = arena_alloc(a, sizeof(TplDict));
  if (!d) return v;
  memset(d, 0, sizeof(*d));
  v.type = type;
  v.u.pDict = d;
  return v;
}

TplValue tpl_list(TplEnv *e) { return list_new(&e->arena, 0); }
TplValue tpl_dict(TplEnv *e) { return dict_new(&e->arena, TPL_DICT); }

/* Appends to a list, doubling its array in the arena when full. */
static int list_push(Arena *a, TplList *l, TplValue v) {
  if (l->n == l->nAlloc) {
    size_t nNew = l->nAlloc ? l->nAlloc * 2 : 4;
    TplValue *aNew = arena_alloc(a, nNew * sizeof(TplValue));
    if (!aNew) return -1;
    if (l->n) memcpy(aNew, l->a, l->n * sizeof(TplValue));
    l->a = aNew;
    l->nAlloc = nNew;
  }
  l->a[l->n++] = v;
  return 0;
}

int tpl_list_append(TplEnv *e, TplValue list, TplValue v) {
  if (list.type != TPL_LIST) return -1;
  return list_push(&e->arena, list.u.pList, v);
}

static int val_eq(TplValue a, TplValue b);

/* Sets key to v (replacing an equal key's value). */
static int dict_put(Arena *a, TplDict *d, TplValue k, TplValue v) {
  for (size_t i = 0; i < d->n; i++) {
    if (val_eq(d->aKey[i], k)) { d->aVal[i] = v; return 0; }
  }
  if (d->n == d->nAlloc) {
    size_t nNew = d->nAlloc ? d->nAlloc * 2 : 4;
    TplValue *aK = arena_alloc(a, nNew * sizeof(TplValue));
    TplValue *aV = arena_alloc(a, nNew * sizeof(TplValue));
    if (!aK || !aV) return -1;
    if (d->n) {
      memcpy(aK, d->aKey, d->n * sizeof(TplValue));
      memcpy(aV, d->aVal, d->n * sizeof(TplValue));
    }
    d->aKey = aK;
    d->aVal = aV;
    d->nAlloc = nNew;
  }
  d->aKey[d->n] = k;
  d->aVal[d->n] = v;
  d->n++;
  return 0;
}

int tpl_dict_set(TplEnv *e, TplValue dict, const char *zKey, size_t nKey, TplValue v) {
  if (dict.type != TPL_DICT && dict.type != TPL_NAMESPACE) return -1;
  TplValue k = tpl_string(e, zKey, nKey);
  if (k.type != TPL_STRING) return -1;
  return dict_put(&e->arena, dict.u.pDict, k, v);
}

/* The value of a string key, or NULL. */
static TplValue *dict_get_str(TplDict *d, const char *z, size_t n) {
  for (size_t i = 0; i < d->n; i++) {
    TplValue k = d->aKey[i];
    if (k.type == TPL_STRING && k.u.s.n == n && memcmp(k.u.s.z, z, n) == 0) return &d->aVal[i];
  }
  return 0;
}

TplEnv *tpl_env_new(void) {
  TplEnv *e = malloc(sizeof(TplEnv));
  if (e) memset(e, 0, sizeof(*e));
  return e;
}

void tpl_env_free(TplEnv *e) {
  if (!e) return;
  arena_free(&e->arena);
  free(e->azName);
  free(e->aVal);
  free(e);
}

int tpl_env_set(TplEnv *e, const char *zName, TplValue v) {
  for (size_t i = 0; i < e->nVar; i++) {
    if (strcmp(e->azName[i], zName) == 0) { e->aVal[i] = v; return 0; }
  }
  if (e->nVar == e->nVarAlloc) {
    size_t nNew = e->nVarAlloc ? e->nVarAlloc * 2 : 8;
    const char **az = realloc(e->azName, nNew * sizeof(char *));
    if (!az) return -1;
    e->azName = az;
    TplValue *a = realloc(e->aVal, nNew * sizeof(TplValue));
    if (!a) return -1;
    e->aVal = a;
    e->nVarAlloc = nNew;
  }
  char *z = arena_strdup(&e->arena, zName, strlen(zName));
  if (!z) return -1;
  e->azName[e->nVar] = z;
  e->aVal[e->nVar] = v;
  e->nVar++;
  return 0;
}

/* ------------------------------------------------------------- UTF-8 */

/* Decodes the code point at z[0..n) (n >= 1); an invalid sequence is one
** byte, returned as 0xDC00 + byte (Python's surrogateescape), so that every
** byte string walks as a sequence of units. *pLen gets the bytes used. */
static unsigned utf8_next(const unsigned char *z, size_t n, size_t *pLen) {
  unsigned c = z[0];
  size_t need = 0;
  unsigned cp = 0, min = 0;
  if (c < 0x80) { *pLen = 1; return c; }
  if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; min = 0x80; }
  else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; min = 0x800; }
  else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; min = 0x10000; }
  if (need == 0 || n < need + 1) { *pLen = 1; return 0xDC00 + c; }
  for (size_t i = 1; i <= need; i++) {
    if ((z[i] & 0xC0) != 0x80) { *pLen = 1; return 0xDC00 + c; }
    cp = (cp << 6) | (z[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { *pLen = 1; return 0xDC00 + c; }
  *pLen = need + 1;
  return cp;
}

/* Writes cp as UTF-8 into z (4 bytes room); returns the length. */
static int utf8_put(char *z, unsigned cp) {
  if (cp < 0x80) { z[0] = (char)cp; return 1; }
  if (cp < 0x800) { z[0] = (char)(0xC0 | (cp >> 6)); z[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    z[0] = (char)(0xE0 | (cp >> 12)); z[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    z[2] = (char)(0x80 | (cp & 0x3F)); return 3;
  }
  z[0] = (char)(0xF0 | (cp >> 18)); z[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  z[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); z[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Python's str.isspace() for one code point. */
static int cp_isspace(unsigned c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

/* A line boundary of Python's str.splitlines(): \n \r \v \f \x1c-\x1e
** \x85 U+2028 U+2029 (\r\n is one, which the caller joins). */
static int cp_linebreak(unsigned c) {
  return (c >= 0x0A && c <= 0x0D) || (c >= 0x1C && c <= 0x1E) || c == 0x85 || c == 0x2028 || c == 0x2029;
}

/* Bytes of leading whitespace in z[0..n). */
static size_t ws_prefix(const char *z, size_t n) {
  size_t i = 0, len;
  while (i < n && cp_isspace(utf8_next((const unsigned char *)z + i, n - i, &len))) i += len;
  return i;
}

/* Length of z[0..n) without its trailing whitespace. */
static size_t ws_rstrip_len(const char *z, size_t n) {
  size_t end = 0, i = 0, len;
  while (i < n) {
    unsigned c = utf8_next((const unsigned char *)z + i, n - i, &len);
    i += len;
    if (!cp_isspace(c)) end = i;
  }
  return end;
}

/* Bytes of the first k code points (units) of z[0..n), or n when it has
** fewer. */
static size_t utf8_offset(const char *z, size_t n, int64_t k) {
  size_t i = 0, len;
  for (; k > 0 && i < n; k--) { utf8_next((const unsigned char *)z + i, n - i, &len); i += len; }
  return i;
}

/* Number of code points (units) in z[0..n). */
static size_t utf8_count(const char *z, size_t n) {
  size_t i = 0, k = 0, len;
  while (i < n) { utf8_next((const unsigned char *)z + i, n - i, &len); i += len; k++; }
  return k;
}

/* The first occurrence of zs[0..ns) (ns >= 1) in z[0..n), or NULL. glibc's
** memmem is linear in n + ns (two-way for long needles): a naive scan is
** O(n * ns), which the steps charged per byte searched would not bound. */
static const char *str_find(const char *z, size_t n, const char *zs, size_t ns) {
  return memmem(z, n, zs, ns);
}

/* ------------------------------------------------------------- buffer */

/* A growing byte buffer (malloc'd). With pA set, the bytes it holds count
** toward that arena's limit, so that temporary results (replace, join,
** macro bodies and set blocks being rendered, nested many deep) cannot
** hold more memory than the render's budget; the arena's bOverLimit then
** says why an append failed. */
typedef struct Buf {
  char *z;
  size_t n, nAlloc, nMax; /* nMax 0 = unlimited */
  Arena *pA;              /* charged for nAlloc; NULL = not counted */
  int bOver, bNoMem;
} Buf;

static int buf_append(Buf *b, const char *z, size_t n) {
  if (b->bOver || b->bNoMem) return -1;
  if (b->nMax && (n > b->nMax || b->n > b->nMax - n)) { b->bOver = 1; return -1; }
  if (b->n + n + 1 > b->nAlloc) {
    size_t nNew = b->nAlloc ? b->nAlloc : 256;
    while (nNew < b->n + n + 1) {
      if (nNew > ((size_t)1 << 40)) { b->bNoMem = 1; return -1; }
      nNew *= 2;
    }
    Arena *a = b->pA;
    size_t nMore = nNew - b->nAlloc;
    if (a && a->nLimit && (nMore > a->nLimit || a->nTotal > a->nLimit - nMore)) {
      a->bOverLimit = 1;
      b->bNoMem = 1;
      return -1;
    }
    char *zNew = realloc(b->z, nNew);
    if (!zNew) { b->bNoMem = 1; return -1; }
    if (a) a->nTotal += nMore;
    b->z = zNew;
    b->nAlloc = nNew;
  }
  if (n) memcpy(b->z + b->n, z, n);
  b->n += n;
  b->z[b->n] = 0;
  return 0;
}

static int buf_puts(Buf *b, const char *z) { return buf_append(b, z, strlen(z)); }

/* Frees the buffer's bytes and gives them back to the arena's budget. */
static void buf_free(Buf *b) {
  free(b->z);
  if (b->pA) b->pA->nTotal -= b->nAlloc;
  b->z = 0;
  b->n = b->nAlloc = 0;
}

/* ------------------------------------------------------------- lexer */

enum {
  TK_EOF, TK_DATA, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END,
  TK_NAME, TK_STRING, TK_INT, TK_FLOAT, TK_OP
};

/* Operators, longest first where one is a prefix of another. */
enum {
  OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_TILDE,
  OP_LBRACKET, OP_RBRACKET, OP_LPAREN, OP_RPAREN, OP_LBRACE, OP_RBRACE,
  OP_EQ, OP_NE, OP_GT, OP_GTEQ, OP_LT, OP_LTEQ, OP_ASSIGN, OP_DOT, OP_COLON,
  OP_PIPE, OP_COMMA, OP_SEMICOLON,
  OP_IN, OP_NOTIN /* comparison kinds, not lexed */
};

static const struct { const char *z; int op; } aOps[] = {
  {"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE}, {">=", OP_GTEQ},
  {"<=", OP_LTEQ}, {"+", OP_ADD}, {"-", OP_SUB}, {"*", OP_MUL}, {"/", OP_DIV},
  {"%", OP_MOD}, {"~", OP_TILDE}, {"[", OP_LBRACKET}, {"]", OP_RBRACKET},
  {"(", OP_LPAREN}, {")", OP_RPAREN}, {"{", OP_LBRACE}, {"}", OP_RBRACE},
  {">", OP_GT}, {"<", OP_LT}, {"=", OP_ASSIGN}, {".", OP_DOT}, {":", OP_COLON},
  {"|", OP_PIPE}, {",", OP_COMMA}, {";", OP_SEMICOLON},
};

typedef struct Token {
  int type, op, line;
  const char *z; /* TK_NAME: name; TK_DATA/TK_STRING: decoded text (arena) */
  size_t n;
  int64_t i;
  double f;
} Token;

typedef struct Lexer {
  Arena *pA;
  const char *z; /* normalized source */
  size_t n, pos;
  int line;
  Token *aTok;
  size_t nTok, nTokAlloc;
  char *zErr;
  size_t nErr;
} Lexer;

static int lex_error(Lexer *x, const char *zFmt, ...) {
  va_list ap;
  int k = snprintf(x->zErr, x->nErr, "line %d: ", x->line);
  va_start(ap, zFmt);
  if (k >= 0 && (size_t)k < x->nErr) vsnprintf(x->zErr + k, x->nErr - (size_t)k, zFmt, ap);
  va_end(ap);
  return -1;
}

static Token *lex_push(Lexer *x, int type) {
  if (x->nTok == x->nTokAlloc) {
    size_t nNew = x->nTokAlloc ? x->nTokAlloc * 2 : 256;
    Token *a = arena_alloc(x->pA, nNew * sizeof(Token));
    if (!a) return 0;
    if (x->nTok) memcpy(a, x->aTok, x->nTok * sizeof(Token));
    x->aTok = a;
    x->nTokAlloc = nNew;
  }
  Token *t = &x->aTok[x->nTok++];
  memset(t, 0, sizeof(*t));
  t->type = type;
  t->line = x->line;
  return t;
}

static void lex_advance(Lexer *x, size_t to) {
  for (size_t i = x->pos; i < to && i < x->n; i++)
    if (x->z[i] == '\n') x->line++;
  x->pos = to;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A string literal at x->pos (quote char first): Python's unicode-escape
** decoding of its body, as Jinja does. */
static int lex_string(Lexer *x) {
  char q = x->z[x->pos];
  size_t i = x->pos + 1;
  while (i < x->n && x->z[i] != q) {
    if (x->z[i] == '\\' && i + 1 < x->n) i++;
    i++;
  }
  if (i >= x->n) return lex_error(x, "unterminated string literal");
  const char *zBody = x->z + x->pos + 1;
  size_t nBody = i - x->pos - 1;
  char *zOut = arena_alloc(x->pA, nBody + 1);
  size_t k = 0;
  if (!zOut) return lex_error(x, "out of memory");
  for (size_t j = 0; j < nBody; j++) {
    char c = zBody[j];
    if (c != '\\' || j + 1 >= nBody) { zOut[k++] = c; continue; }
    char d = zBody[++j];
    unsigned cp;
    int nHex = 0;
    switch (d) {
      case '\n': continue;
      case '\\': zOut[k++] = '\\'; continue;
      case '\'': zOut[k++] = '\''; continue;
      case '"': zOut[k++] = '"'; continue;
      case 'a': zOut[k++] = 7; continue;
      case 'b': zOut[k++] = 8; continue;
      case 'f': zOut[k++] = 12; continue;
      case 'n': zOut[k++] = '\n'; continue;
      case 'r': zOut[k++] = '\r'; continue;
      case 't': zOut[k++] = '\t'; continue;
      case 'v': zOut[k++] = 11; continue;
      case 'x': nHex = 2; break;
      case 'u': nHex = 4; break;
      case 'U': nHex = 8; break;
      case 'N': return lex_error(x, "unsupported escape \\N{...} in a string literal");
      default:
        if (d >= '0' && d <= '7') {
          cp = (unsigned)(d - '0');
          for (int m = 0; m < 2 && j + 1 < nBody && zBody[j + 1] >= '0' && zBody[j + 1] <= '7'; m++)
            cp = cp * 8 + (unsigned)(zBody[++j] - '0');
          k += (size_t)utf8_put(zOut + k, cp);
          continue;
        }
        zOut[k++] = '\\';
        zOut[k++] = d;
        continue;
    }
    cp = 0;
    for (int m = 0; m < nHex; m++) {
      int h = j + 1 < nBody ? hexval((unsigned char)zBody[j + 1]) : -1;
      if (h < 0) return lex_error(x, "truncated \\%c escape in a string literal", d);
      cp = cp * 16 + (unsigned)h;
      j++;
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return lex_error(x, "escape of an invalid code point in a string literal");
    /* an escape is at most 10 source bytes and 4 UTF-8 bytes: it fits */
    k += (size_t)utf8_put(zOut + k, cp);
  }
  zOut[k] = 0;
  Token *t = lex_push(x, TK_STRING);
  if (!t) return lex_error(x, "out of memory");
  t->z = zOut;
  t->n = k;
  lex_advance(x, i + 1);
  return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_name_char(char c) { return is_name_start(c) || is_digit(c); }

/* Digits with single underscores between them, from i; returns the end. */
static size_t scan_digits(const char *z, size_t n, size_t i) {
  if (i >= n || !is_digit(z[i])) return i;
  i++;
  while (i < n) {
    if (is_digit(z[i])) i++;
    else if (z[i] == '_' && i + 1 < n && is_digit(z[i + 1])) i += 2;
    else break;
  }
  return i;
}

/* An integer in base 16, 8 or 2 at x->pos ("0x1f", "0o17", "0b101", any
** case, single underscores between digits, as Jinja's lexer reads them):
** 1 when there was one, 0 when not, -1 on error. */
static int lex_prefixed_int(Lexer *x) {
  const char *z = x->z;
  size_t i = x->pos;
  if (i + 2 >= x->n || z[i] != '0') return 0;
  int p = z[i + 1] | 0x20, base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0, nd = 0;
  if (!base) return 0;
  uint64_t v = 0;
  size_t j = i + 2;
  while (j < x->n) {
    /* a single '_' before a digit is skipped */
    if (z[j] == '_' && j + 1 < x->n && (unsigned)hexval((unsigned char)z[j + 1]) < (unsigned)base) j++;
    int d = hexval((unsigned char)z[j]);
    if (d < 0 || d >= base) break;
    if (v > ((uint64_t)INT64_MAX - (uint64_t)d) / (uint64_t)base)
      return lex_error(x, "integer literal out of range");
    v = v * (uint64_t)base + (uint64_t)d;
    j++;
    nd++;
  }
  if (nd == 0) return 0;
  Token *t = lex_push(x, TK_INT);
  if (!t) return lex_error(x, "out of memory");
  t->i = (int64_t)v;
  lex_advance(x, j);
  return 1;
}

/* A number at x->pos: an integer or a float (with '.', an exponent or both). */
static int lex_number(Lexer *x) {
  const char *z = x->z;
  int rcPrefixed = lex_prefixed_int(x);
  if (rcPrefixed) return rcPrefixed < 0 ? -1 : 0;
  size_t i = scan_digits(z, x->n, x->pos), end = i;
  int bFloat = 0;
  if (i + 1 < x->n && z[i] == '.' && is_digit(z[i + 1])) { end = scan_digits(z, x->n, i + 1); bFloat = 1; }
  if (end < x->n && (z[end] == 'e' || z[end] == 'E')) {
    size_t j = end + 1;
    if (j < x->n && (z[j] == '+' || z[j] == '-')) j++;
    size_t k = scan_digits(z, x->n, j);
    if (k > j) { end = k; bFloat = 1; }
  }
  char buf[128];
  size_t nb = 0;
  for (size_t j = x->pos; j < end; j++) {
    if (z[j] == '_') continue;
    if (nb + 1 >= sizeof(buf)) return lex_error(x, "number literal too long");
    buf[nb++] = z[j];
  }
  buf[nb] = 0;
  Token *t = lex_push(x, bFloat ? TK_FLOAT : TK_INT);
  if (!t) return lex_error(x, "out of memory");
  if (bFloat) {
    t->f = strtod(buf, 0);
  } else {
    unsigned long long v = 0;
    for (size_t j = 0; j < nb; j++) {
      unsigned d = (unsigned)(buf[j] - '0');
      if (v > ((unsigned long long)INT64_MAX - d) / 10) return lex_error(x, "integer literal out of range");
      v = v * 10 + (unsigned)(buf[j] - '0');
    }
    t->i = (int64_t)v;
  }
  lex_advance(x, end);
  return 0;
}

/* Tokens inside a {{ }} or {% %} from x->pos up to and including its end,
** which is only looked for outside brackets (Jinja's balancing). Sets
** *pbStripAfter for a '-' end and *pbTrim for a plain block end. */
static int lex_tag(Lexer *x, int bBlock, int *pbLineStart) {
  int depth = 0;
  for (;;) {
    size_t len;
    while (x->pos < x->n &&
           cp_isspace(utf8_next((const unsigned char *)x->z + x->pos, x->n - x->pos, &len)))
      lex_advance(x, x->pos + len);
    if (x->pos >= x->n) return lex_error(x, "unterminated %s tag", bBlock ? "{% %}" : "{{ }}");
    const char *z = x->z + x->pos;
    size_t nLeft = x->n - x->pos;
    if (depth == 0) {
      const char *zEnd = bBlock ? "%}" : "}}";
      if (nLeft >= 3 && z[0] == '-' && memcmp(z + 1, zEnd, 2) == 0) {
        size_t j = x->pos + 3;
        j += ws_prefix(x->z + j, x->n - j);
        *pbLineStart = j > x->pos + 3 && x->z[j - 1] == '\n';
        if (!lex_push(x, bBlock ? TK_BLOCK_END : TK_VAR_END)) return lex_error(x, "out of memory");
        lex_advance(x, j);
        return 0;
      }
      if (bBlock && nLeft >= 3 && z[0] == '+' && memcmp(z + 1, zEnd, 2) == 0) {
        *pbLineStart = 0;
        if (!lex_push(x, TK_BLOCK_END)) return lex_error(x, "out of memory");
        lex_advance(x, x->pos + 3);
        return 0;
      }
      if (nLeft >= 2 && memcmp(z, zEnd, 2) == 0) {
        size_t j = x->pos + 2;
        if (bBlock && j < x->n && x->z[j] == '\n') j++; /* trim_blocks */
        *pbLineStart = j > x->pos + 2;
        if (!lex_push(x, bBlock ? TK_BLOCK_END : TK_VAR_END)) return lex_error(x, "out of memory");
        lex_advance(x, j);
        return 0;
      }
    }
    if (z[0] == '\'' || z[0] == '"') {
      if (lex_string(x)) return -1;
      continue;
    }
    if (is_digit(z[0])) {
      if (lex_number(x)) return -1;
      continue;
    }
    if (is_name_start(z[0])) {
      size_t j = 1;
      while (j < nLeft && is_name_char(z[j])) j++;
      Token *t = lex_push(x, TK_NAME);
      if (!t) return lex_error(x, "out of memory");
      t->z = z;
      t->n = j;
      lex_advance(x, x->pos + j);
      continue;
    }
    int op = 0;
    size_t nOp = 0;
    for (size_t k = 0; k < sizeof(aOps) / sizeof(aOps[0]); k++) {
      size_t m = strlen(aOps[k].z);
      if (m <= nLeft && memcmp(z, aOps[k].z, m) == 0) { op = aOps[k].op; nOp = m; break; }
    }
    if (!op) return lex_error(x, "unexpected character '%c' in a tag", z[0]);
    if (op == OP_LPAREN || op == OP_LBRACKET || op == OP_LBRACE) {
      if (++depth > TPL_MAX_DEPTH) return lex_error(x, "brackets nested deeper than %d", TPL_MAX_DEPTH);
    } else if (op == OP_RPAREN || op == OP_RBRACKET || op == OP_RBRACE) {
      if (depth == 0) return lex_error(x, "unexpected '%c'", z[0]);
      depth--;
    }
    Token *t = lex_push(x, TK_OP);
    if (!t) return lex_error(x, "out of memory");
    t->op = op;
    lex_advance(x, x->pos + nOp);
  }
}

/* The whole source: text between tags with Jinja's whitespace rules. */
static int lex_all(Lexer *x) {
  int bLineStart = 1; /* the previous token ended with "\n" (or none yet) */
  while (x->pos <= x->n) {
    /* the next opener */
    size_t i = x->pos;
    int kind = 0;
    for (; i + 1 < x->n; i++) {
      if (x->z[i] == '{' && (x->z[i + 1] == '{' || x->z[i + 1] == '%' || x->z[i + 1] == '#')) {
        kind = x->z[i + 1];
        break;
      }
    }
    if (!kind) i = x->n;
    const char *zText = x->z + x->pos;
    size_t nText = i - x->pos;
    char sign = kind && i + 2 < x->n ? x->z[i + 2] : 0;
    if (sign != '-' && sign != '+') sign = 0;
    if (kind && sign == '-') {
      nText = ws_rstrip_len(zText, nText);
    } else if (kind && sign != '+' && kind != '{') {
      /* lstrip_blocks: only whitespace between the line start and the tag */
      size_t l = nText;
      while (l > 0 && zText[l - 1] != '\n') l--;
      if ((l > 0 || bLineStart) && l < nText && ws_prefix(zText + l, nText - l) == nText - l)
        nText = l;
    }
    if (nText > 0) {
      Token *t = lex_push(x, TK_DATA);
      if (!t) return lex_error(x, "out of memory");
      t->z = zText;
      t->n = nText;
    }
    if (!kind) break;
    lex_advance(x, i + 2 + (sign ? 1 : 0));
    if (kind == '#') {
      size_t j = x->pos;
      while (j + 1 < x->n && !(x->z[j] == '#' && x->z[j + 1] == '}')) j++;
      if (j + 1 >= x->n) return lex_error(x, "unterminated comment");
      size_t after = j + 2;
      if (j > x->pos && x->z[j - 1] == '-') {
        after += ws_prefix(x->z + after, x->n - after);
        bLineStart = after > j + 2 && x->z[after - 1] == '\n';
      } else if (j > x->pos && x->z[j - 1] == '+') {
        bLineStart = 0; /* Jinja's \+#} keeps the newline after it */
      } else {
        if (after < x->n && x->z[after] == '\n') after++;
        bLineStart = after > j + 2;
      }
      lex_advance(x, after);
      continue;
    }
    if (!lex_push(x, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN)) return lex_error(x, "out of memory");
    if (lex_tag(x, kind == '%', &bLineStart)) return -1;
  }
  if (!lex_push(x, TK_EOF)) return lex_error(x, "out of memory");
  return 0;
}

/* ------------------------------------------------------------- AST */

enum {
  /* statements */
  N_TEXT = 1, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_BREAK, N_CONTINUE, N_BLOCK, N_MACRO,
  N_SCOPE, /* a N_BLOCK in a scope of its own ({% generation %}) */
  /* expressions */
  N_CONST, N_NAME, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER, N_TEST, N_NEG, N_POS,
  N_NOT, N_AND, N_OR, N_BINOP, N_CONCAT, N_COMPARE, N_COND, N_LIST, N_TUPLE, N_DICT
};

typedef struct Node Node;
struct Node {
  int kind, op, line;
  Node *a, *b, *c;       /* operands; N_IF: a cond, b body, c else; N_FOR: a iter, b filter */
  Node **aArg;           /* arguments, items, statements of a N_BLOCK */
  int nArg;
  const char **azKw;     /* keyword argument names, values are aKw */
  Node **aKw;
  int nKw;
  int *aOp;              /* N_COMPARE: operator of each aArg */
  const char *zName;     /* name, attribute, filter, test, set target */
  size_t nName;
  const char *zAttr;     /* {% set ns.attr %} */
  const char **azTarget; /* for-loop / set names */
  int nTarget;
  int id;                /* filter, test, method or function id */
  TplValue v;            /* N_CONST; N_TEXT (a string) */
  Node *pElse;           /* N_FOR's else block */
};

struct TplProgram {
  Arena arena;
  Node *pRoot;
};

/* Filters, tests, methods and global functions of the subset. */
enum {
  F_ABS = 1, F_CAPITALIZE, F_COUNT, F_DEFAULT, F_FIRST, F_FLOAT, F_INT, F_ITEMS, F_JOIN,
  F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE,
  F_SAFE, F_SELECT, F_SELECTATTR, F_STRING, F_TITLE, F_TOJSON, F_TRIM, F_UPPER, F_UNIQUE,
  F_SORT, F_ROUND, F_INDENT
};
static const struct { const char *z; int id; } aFilters[] = {
  {"abs", F_ABS}, {"capitalize", F_CAPITALIZE}, {"count", F_COUNT}, {"default", F_DEFAULT},
  {"d", F_DEFAULT}, {"first", F_FIRST}, {"float", F_FLOAT}, {"int", F_INT},
  {"items", F_ITEMS}, {"join", F_JOIN}, {"last", F_LAST}, {"length", F_LENGTH},
  {"list", F_LIST}, {"lower", F_LOWER}, {"map", F_MAP}, {"reject", F_REJECT},
  {"rejectattr", F_REJECTATTR}, {"replace", F_REPLACE}, {"reverse", F_REVERSE},
  {"safe", F_SAFE}, {"select", F_SELECT}, {"selectattr", F_SELECTATTR},
  {"string", F_STRING}, {"title", F_TITLE}, {"tojson", F_TOJSON}, {"trim", F_TRIM},
  {"upper", F_UPPER}, {"unique", F_UNIQUE}, {"sort", F_SORT}, {"round", F_ROUND},
  {"indent", F_INDENT},
};

enum {
  T_DEFINED = 1, T_UNDEFINED, T_NONE, T_STRING, T_MAPPING, T_ITERABLE, T_SEQUENCE,
  T_NUMBER, T_INTEGER, T_FLOAT, T_BOOLEAN, T_TRUE, T_FALSE, T_ODD, T_EVEN,
  T_DIVISIBLEBY, T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE, T_IN, T_LOWER, T_UPPER, T_CALLABLE,
  T_SAMEAS
};
static const struct { const char *z; int id; } aTests[] = {
  {"defined", T_DEFINED}, {"undefined", T_UNDEFINED}, {"none", T_NONE},
  {"string", T_STRING}, {"mapping", T_MAPPING}, {"iterable", T_ITERABLE},
  {"sequence", T_SEQUENCE}, {"number", T_NUMBER}, {"integer", T_INTEGER},
  {"float", T_FLOAT}, {"boolean", T_BOOLEAN}, {"true", T_TRUE}, {"false", T_FALSE},
  {"odd", T_ODD}, {"even", T_EVEN}, {"divisibleby", T_DIVISIBLEBY},
  {"eq", T_EQ}, {"equalto", T_EQ}, {"==", T_EQ}, {"ne", T_NE}, {"!=", T_NE},
  {"lt", T_LT}, {"lessthan", T_LT}, {"<", T_LT}, {"le", T_LE}, {"<=", T_LE},
  {"gt", T_GT}, {"greaterthan", T_GT}, {">", T_GT}, {"ge", T_GE}, {">=", T_GE},
  {"in", T_IN}, {"lower", T_LOWER}, {"upper", T_UPPER}, {"callable", T_CALLABLE},
  {"sameas", T_SAMEAS},
};

enum {
  M_STARTSWITH = 1, M_ENDSWITH, M_SPLIT, M_RSPLIT, M_STRIP, M_LSTRIP, M_RSTRIP,
  M_REPLACE, M_UPPER, M_LOWER, M_TITLE, M_CAPITALIZE, M_FIND, M_COUNT, M_JOIN,
  M_ITEMS, M_KEYS, M_VALUES, M_GET
};
static const struct { const char *z; int id; int bDict; } aMethods[] = {
  {"startswith", M_STARTSWITH, 0}, {"endswith", M_ENDSWITH, 0}, {"split", M_SPLIT, 0},
  {"rsplit", M_RSPLIT, 0}, {"strip", M_STRIP, 0}, {"lstrip", M_LSTRIP, 0},
  {"rstrip", M_RSTRIP, 0}, {"replace", M_REPLACE, 0}, {"upper", M_UPPER, 0},
  {"lower", M_LOWER, 0}, {"title", M_TITLE, 0}, {"capitalize", M_CAPITALIZE, 0},
  {"find", M_FIND, 0}, {"count", M_COUNT, 0}, {"join", M_JOIN, 0},
  {"items", M_ITEMS, 1}, {"keys", M_KEYS, 1}, {"values", M_VALUES, 1}, {"get", M_GET, 1},
};

enum { G_NAMESPACE = 1, G_RANGE, G_DICT, G_RAISE, G_STRFTIME };
static const struct { const char *z; int id; } aGlobals[] = {
  {"namespace", G_NAMESPACE}, {"range", G_RANGE}, {"dict", G_DICT},
  {"raise_exception", G_RAISE}, {"strftime_now", G_STRFTIME},
};

static int name_is(const char *z, size_t n, const char *zLit) {
  return strlen(zLit) == n && memcmp(z, zLit, n) == 0;
}

/* ------------------------------------------------------------- parser */

/* A name bound (for and set targets, macro parameters and names, loop) or
** read, at a position in parse order: what the check of macros defined
** inside for loops and macros compares. */
typedef struct NameUse {
  const char *z;
  size_t n;
  int line, pos;
} NameUse;

/* A macro defined inside a for loop or another macro: its body's positions. */
typedef struct InnerMacro {
  const char *zName;
  int posStart, posEnd;
} InnerMacro;

typedef struct Parser {
  Arena *pA;
  Token *aTok;
  size_t iTok, nTok;
  int depth;      /* nesting of expressions */
  int blockDepth; /* nesting of block tags */
  int nLoop;      /* for bodies being parsed (break/continue need one) */
  const char **azMacro; /* names of the macros defined */
  int nMacro, nMacroAlloc;
  Token **apCall;  /* calls of names that are no global function: macros */
  int nCall, nCallAlloc;
  int nScope;      /* for loops and macros around the current token */
  int nMacroBody;  /* macro bodies (and parameter lists) around it */
  int nPos;        /* positions of NameUse, in parse order */
  NameUse *aBind, *aRef; /* within the outermost for loop or macro */
  int nBind, nBindAlloc, nRef, nRefAlloc;
  InnerMacro *aInner;
  int nInner, nInnerAlloc;
  char *zErr;
  size_t nErr;
} Parser;

/* The parser's recursion: three levels a bracket (expression, unary,
** primary) and one a unary operator or 'not'. The lexer bounds brackets at
** TPL_MAX_DEPTH, so that bound is the one templates meet; this one bounds
** the C stack on chains like 'not not not ...'. */
#define TPL_MAX_PARSE_DEPTH (4 * TPL_MAX_DEPTH)

static Token *peek(Parser *p) { return &p->aTok[p->iTok]; }
static Token *peek2(Parser *p) { return &p->aTok[p->iTok + 1 < p->nTok ? p->iTok + 1 : p->iTok]; }
static Token *next_tok(Parser *p) {
  Token *t = &p->aTok[p->iTok];
  if (p->iTok + 1 < p->nTok) p->iTok++;
  return t;
}

static int parse_error(Parser *p, const char *zFmt, ...) {
  va_list ap;
  int k = snprintf(p->zErr, p->nErr, "line %d: ", peek(p)->line);
  va_start(ap, zFmt);
  if (k >= 0 && (size_t)k < p->nErr) vsnprintf(p->zErr + k, p->nErr - (size_t)k, zFmt, ap);
  va_end(ap);
  return -1;
}

/* One level deeper into the parser's recursion; 1, with the error, past
** TPL_MAX_PARSE_DEPTH. Each caller takes the level back (p->depth--). */
static int parse_deeper(Parser *p) {
  if (++p->depth <= TPL_MAX_PARSE_DEPTH) return 0;
  parse_error(p, "expression nested deeper than %d", TPL_MAX_PARSE_DEPTH);
  return 1;
}

static int tok_is_op(Token *t, int op) { return t->type == TK_OP && t->op == op; }
static int tok_is_name(Token *t, const char *z) { return t->type == TK_NAME && name_is(t->z, t->n, z); }

static Node *node_new(Parser *p, int kind) {
  Node *n = arena_alloc(p->pA, sizeof(Node));
  if (!n) { parse_error(p, "out of memory"); return 0; }
  memset(n, 0, sizeof(*n));
  n->kind = kind;
  n->line = peek(p)->line;
  return n;
}

/* Appends a node to a growable array of nodes in the arena. */
static int nodes_push(Parser *p, Node ***paN, int *pn, int *pnAlloc, Node *x) {
  if (*pn == *pnAlloc) {
    int nNew = *pnAlloc ? *pnAlloc * 2 : 4;
    Node **a = arena_alloc(p->pA, (size_t)nNew * sizeof(Node *));
    if (!a) return parse_error(p, "out of memory");
    if (*pn) memcpy(a, *paN, (size_t)*pn * sizeof(Node *));
    *paN = a;
    *pnAlloc = nNew;
  }
  (*paN)[(*pn)++] = x;
  return 0;
}

/* Records a name bound (bBind) or read inside a for loop or macro. */
static int use_push(Parser *p, int bBind, const char *z, size_t n, int line) {
  if (p->nScope == 0) return 0;
  NameUse **pa = bBind ? &p->aBind : &p->aRef;
  int *pn = bBind ? &p->nBind : &p->nRef, *pnAlloc = bBind ? &p->nBindAlloc : &p->nRefAlloc;
  if (*pn == *pnAlloc) {
    int nNew = *pnAlloc ? *pnAlloc * 2 : 16;
    NameUse *a = arena_alloc(p->pA, (size_t)nNew * sizeof(NameUse));
    if (!a) return parse_error(p, "out of memory");
    if (*pn) memcpy(a, *pa, (size_t)*pn * sizeof(NameUse));
    *pa = a;
    *pnAlloc = nNew;
  }
  NameUse *u = &(*pa)[(*pn)++];
  u->z = z;
  u->n = n;
  u->line = line;
  u->pos = p->nPos++;
  return 0;
}

/* qsort order of bound names: by name, then position. */
static int use_cmp(const void *pa, const void *pb) {
  const NameUse *a = pa, *b = pb;
  int c = memcmp(a->z, b->z, a->n < b->n ? a->n : b->n);
  if (c == 0) c = (a->n > b->n) - (a->n < b->n);
  return c ? c : (a->pos > b->pos) - (a->pos < b->pos);
}

/* The first index of the sorted bindings not below the name of u at
** position pos (binary search). */
static int bind_bound(const Parser *p, const NameUse *u, int pos) {
  NameUse key = *u;
  int lo = 0, hi = p->nBind;
  key.pos = pos;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (use_cmp(&p->aBind[mid], &key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Starts a for loop or macro; the outermost one starts empty records. */
static void scope_begin(Parser *p) {
  if (p->nScope++ == 0) p->nBind = p->nRef = p->nInner = 0;
}

/* Ends a for loop or macro. At the end of the outermost one, refuses each
** macro defined inside it whose body reads a name bound around it but
** outside it: a macro's frame sees only its arguments and the top level,
** where Jinja's would see the enclosing loop's or macro's variables. */
static int scope_end(Parser *p) {
  if (--p->nScope > 0 || p->nInner == 0) return 0;
  qsort(p->aBind, (size_t)p->nBind, sizeof(NameUse), use_cmp);
  for (int m = 0; m < p->nInner; m++) {
    const InnerMacro *M = &p->aInner[m];
    int lo = 0, hi = p->nRef;
    while (lo < hi) { /* the first read inside M (reads are in order) */
      int mid = lo + (hi - lo) / 2;
      if (p->aRef[mid].pos < M->posStart) lo = mid + 1;
      else hi = mid;
    }
    for (int k = lo; k < p->nRef && p->aRef[k].pos < M->posEnd; k++) {
      /* the name's bindings, sorted by position, run from a to e: one in
      ** M (a parameter, a set) makes it M's own; else the first before M
      ** or the last after it is bound around M */
      NameUse key = p->aRef[k];
      int a = bind_bound(p, &key, -1), e = bind_bound(p, &key, INT_MAX), in = bind_bound(p, &key, M->posStart);
      int bOutside = e > a && !(in < e && p->aBind[in].pos < M->posEnd) &&
                     (p->aBind[a].pos < M->posStart || p->aBind[e - 1].pos >= M->posEnd);
      if (bOutside) {
        snprintf(p->zErr, p->nErr,
                 "line %d: unsupported use of '%.*s' in macro '%s': a macro defined in a for loop or macro "
                 "sees only its arguments and the top level", key.line, (int)key.n, key.z, M->zName);
        return -1;
      }
    }
  }
  return 0;
}

static int expect_op(Parser *p, int op, const char *zWhat) {
  if (!tok_is_op(peek(p), op)) return parse_error(p, "expected '%s'", zWhat);
  next_tok(p);
  return 0;
}

static Node *parse_expr(Parser *p);
static Node *parse_primary(Parser *p);
static Node *parse_postfix(Parser *p, Node *n);
static Node *parse_unary(Parser *p, int bFilter);

/* Call arguments after '(' : positional then keyword (name=value). */
static int parse_call_args(Parser *p, Node *n) {
  int nAlloc = 0, nKwAlloc = 0;
  if (expect_op(p, OP_LPAREN, "(")) return -1;
  while (!tok_is_op(peek(p), OP_RPAREN)) {
    if (n->nArg + n->nKw > 0 && expect_op(p, OP_COMMA, ",")) return -1;
    if (tok_is_op(peek(p), OP_RPAREN)) break;
    if (peek(p)->type == TK_NAME && tok_is_op(peek2(p), OP_ASSIGN)) {
      Token *t = next_tok(p);
      next_tok(p);
      Node *v = parse_expr(p);
      if (!v) return -1;
      if (n->nKw == nKwAlloc) {
        int nNew = nKwAlloc ? nKwAlloc * 2 : 4;
        const char **az = arena_alloc(p->pA, (size_t)nNew * sizeof(char *));
        Node **a = arena_alloc(p->pA, (size_t)nNew * sizeof(Node *));
        if (!az || !a) return parse_error(p, "out of memory");
        if (n->nKw) {
          memcpy(az, n->azKw, (size_t)n->nKw * sizeof(char *));
          memcpy(a, n->aKw, (size_t)n->nKw * sizeof(Node *));
        }
        n->azKw = az;
        n->aKw = a;
        nKwAlloc = nNew;
      }
      n->azKw[n->nKw] = arena_strdup(p->pA, t->z, t->n);
      if (!n->azKw[n->nKw]) return parse_error(p, "out of memory");
      n->aKw[n->nKw++] = v;
    } else {
      if (n->nKw) return parse_error(p, "positional argument after a keyword argument");
      Node *v = parse_expr(p);
      if (!v) return -1;
      if (nodes_push(p, &n->aArg, &n->nArg, &nAlloc, v)) return -1;
    }
  }
  next_tok(p);
  return 0;
}

static int lookup_id(const char *z, size_t n, int which) {
  if (which == 0) {
    for (size_t i = 0; i < sizeof(aFilters) / sizeof(aFilters[0]); i++)
      if (name_is(z, n, aFilters[i].z)) return aFilters[i].id;
  } else if (which == 1) {
    for (size_t i = 0; i < sizeof(aTests) / sizeof(aTests[0]); i++)
      if (name_is(z, n, aTests[i].z)) return aTests[i].id;
  } else if (which == 2) {
    for (size_t i = 0; i < sizeof(aMethods) / sizeof(aMethods[0]); i++)
      if (name_is(z, n, aMethods[i].z)) return aMethods[i].id;
  } else {
    for (size_t i = 0; i < sizeof(aGlobals) / sizeof(aGlobals[0]); i++)
      if (name_is(z, n, aGlobals[i].z)) return aGlobals[i].id;
  }
  return 0;
}

/* name [. name]* after '|' : a filter with optional arguments. */
static Node *parse_filter(Parser *p, Node *subject) {
  Token *t = next_tok(p);
  if (t->type != TK_NAME) { parse_error(p, "expected a filter name after '|'"); return 0; }
  Node *n = node_new(p, N_FILTER);
  if (!n) return 0;
  n->line = t->line;
  n->a = subject;
  n->zName = t->z;
  n->nName = t->n;
  n->id = lookup_id(t->z, t->n, 0);
  if (!n->id) { parse_error(p, "unsupported filter '%.*s'", (int)t->n, t->z); return 0; }
  if (tok_is_op(peek(p), OP_LPAREN) && parse_call_args(p, n)) return 0;
  return n;
}

/* 'is' [not] test [args | one primary argument]. */
static Node *parse_test(Parser *p, Node *subject) {
  Node *n = node_new(p, N_TEST);
  if (!n) return 0;
  n->a = subject;
  if (tok_is_name(peek(p), "not")) { next_tok(p); n->op = 1; }
  Token *t = next_tok(p);
  if (t->type != TK_NAME) { parse_error(p, "expected a test name after 'is'"); return 0; }
  n->zName = t->z;
  n->nName = t->n;
  n->id = lookup_id(t->z, t->n, 1);
  if (!n->id) { parse_error(p, "unsupported test '%.*s'", (int)t->n, t->z); return 0; }
  Token *c = peek(p);
  if (tok_is_op(c, OP_LPAREN)) {
    if (parse_call_args(p, n)) return 0;
  } else if ((c->type == TK_NAME || c->type == TK_STRING || c->type == TK_INT ||
              c->type == TK_FLOAT || tok_is_op(c, OP_LBRACKET) || tok_is_op(c, OP_LBRACE)) &&
             !tok_is_name(c, "else") && !tok_is_name(c, "or") && !tok_is_name(c, "and") &&
             !tok_is_name(c, "is") && !tok_is_name(c, "if") && !tok_is_name(c, "in") &&
             !tok_is_name(c, "not") && !tok_is_name(c, "recursive")) {
    Node *arg = parse_primary(p);
    if (!arg) return 0;
    arg = parse_postfix(p, arg);
    if (!arg) return 0;
    n->aArg = arena_alloc(p->pA, sizeof(Node *));
    if (!n->aArg) { parse_error(p, "out of memory"); return 0; }
    n->aArg[0] = arg;
    n->nArg = 1;
  }
  return n;
}

/* Attribute access, subscripts, slices and calls after a primary. */
static Node *parse_postfix(Parser *p, Node *n) {
  for (;;) {
    Token *t = peek(p);
    if (tok_is_op(t, OP_DOT)) {
      next_tok(p);
      Token *a = next_tok(p);
      Node *x;
      if (a->type == TK_NAME) {
        x = node_new(p, N_ATTR);
        if (!x) return 0;
        x->zName = a->z;
        x->nName = a->n;
      } else if (a->type == TK_INT) {
        x = node_new(p, N_ITEM);
        if (!x) return 0;
        x->b = node_new(p, N_CONST);
        if (!x->b) return 0;
        x->b->v = tpl_int(a->i);
      } else {
        parse_error(p, "expected a name after '.'");
        return 0;
      }
      x->a = n;
      n = x;
    } else if (tok_is_op(t, OP_LBRACKET)) {
      next_tok(p);
      Node *x = node_new(p, N_ITEM);
      if (!x) return 0;
      x->a = n;
      Node *aPart[3] = {0, 0, 0};
      int iPart = 0, bSlice = 0;
      for (;;) {
        Token *c = peek(p);
        if (tok_is_op(c, OP_COLON)) {
          bSlice = 1;
          if (++iPart > 2) { parse_error(p, "too many ':' in a slice"); return 0; }
          next_tok(p);
          continue;
        }
        if (tok_is_op(c, OP_RBRACKET)) { next_tok(p); break; }
        if (aPart[iPart]) { parse_error(p, "expected ']'"); return 0; }
        aPart[iPart] = parse_expr(p);
        if (!aPart[iPart]) return 0;
      }
      if (bSlice) {
        x->kind = N_SLICE;
        x->aArg = arena_alloc(p->pA, 3 * sizeof(Node *));
        if (!x->aArg) { parse_error(p, "out of memory"); return 0; }
        memcpy(x->aArg, aPart, sizeof(aPart));
        x->nArg = 3;
      } else {
        if (!aPart[0]) { parse_error(p, "empty subscript"); return 0; }
        x->b = aPart[0];
      }
      n = x;
    } else if (tok_is_op(t, OP_LPAREN)) {
      Node *x = node_new(p, N_CALL);
      if (!x) return 0;
      x->a = n;
      if (n->kind == N_ATTR) {
        x->id = lookup_id(n->zName, n->nName, 2);
        if (!x->id) { parse_error(p, "unsupported method '%.*s'", (int)n->nName, n->zName); return 0; }
      } else if (n->kind == N_NAME) {
        x->id = lookup_id(n->zName, n->nName, 3);
        if (!x->id) {
          /* a macro, unless no {% macro %} of that name turns up (checked
          ** after parsing, since a macro may be defined after its caller) */
          if (p->nCall == p->nCallAlloc) {
            int nNew = p->nCallAlloc ? p->nCallAlloc * 2 : 8;
            Token **a = arena_alloc(p->pA, (size_t)nNew * sizeof(Token *));
            if (!a) { parse_error(p, "out of memory"); return 0; }
            if (p->nCall) memcpy(a, p->apCall, (size_t)p->nCall * sizeof(Token *));
            p->apCall = a;
            p->nCallAlloc = nNew;
          }
          p->apCall[p->nCall++] = &p->aTok[p->iTok - 1];
        }
      } else {
        parse_error(p, "unsupported call of an expression");
        return 0;
      }
      if (parse_call_args(p, x)) return 0;
      n = x;
    } else {
      return n;
    }
  }
}

/* Literals, names, parenthesized expressions and tuples, lists, dicts. */
static Node *parse_primary(Parser *p) {
  Token *t = peek(p);
  Node *n;
  if (parse_deeper(p)) return 0;
  if (t->type == TK_NAME) {
    next_tok(p);
    n = node_new(p, N_CONST);
    if (!n) return 0;
    if (name_is(t->z, t->n, "true") || name_is(t->z, t->n, "True")) n->v = tpl_bool(1);
    else if (name_is(t->z, t->n, "false") || name_is(t->z, t->n, "False")) n->v = tpl_bool(0);
    else if (name_is(t->z, t->n, "none") || name_is(t->z, t->n, "None")) n->v = tpl_none();
    else {
      n->kind = N_NAME;
      n->zName = t->z;
      n->nName = t->n;
      /* Jinja gives a macro that reads these extra arguments or a caller */
      if (p->nMacroBody && (name_is(t->z, t->n, "varargs") || name_is(t->z, t->n, "kwargs") ||
                            name_is(t->z, t->n, "caller"))) {
        parse_error(p, "unsupported '%.*s' in a macro", (int)t->n, t->z);
        return 0;
      }
      if (use_push(p, 0, t->z, t->n, t->line)) return 0;
    }
  } else if (t->type == TK_STRING) {
    /* adjacent literals concatenate */
    size_t nTotal = 0, i0 = p->iTok;
    while (peek(p)->type == TK_STRING) { nTotal += peek(p)->n; next_tok(p); if (p->iTok + 1 >= p->nTok) break; }
    char *z = arena_alloc(p->pA, nTotal + 1);
    if (!z) { parse_error(p, "out of memory"); return 0; }
    size_t k = 0;
    for (size_t i = i0; i < p->iTok && p->aTok[i].type == TK_STRING; i++) {
      memcpy(z + k, p->aTok[i].z, p->aTok[i].n);
      k += p->aTok[i].n;
    }
    z[k] = 0;
    n = node_new(p, N_CONST);
    if (!n) return 0;
    n->v = val_str_ref(z, k);
  } else if (t->type == TK_INT || t->type == TK_FLOAT) {
    next_tok(p);
    n = node_new(p, N_CONST);
    if (!n) return 0;
    n->v = t->type == TK_INT ? tpl_int(t->i) : tpl_float(t->f);
  } else if (tok_is_op(t, OP_LPAREN)) {
    next_tok(p);
    n = node_new(p, N_TUPLE);
    if (!n) return 0;
    int nAlloc = 0, bComma = 0;
    while (!tok_is_op(peek(p), OP_RPAREN)) {
      if (n->nArg > 0) {
        if (expect_op(p, OP_COMMA, ",")) return 0;
        bComma = 1;
        if (tok_is_op(peek(p), OP_RPAREN)) break;
      }
      Node *x = parse_expr(p);
      if (!x || nodes_push(p, &n->aArg, &n->nArg, &nAlloc, x)) return 0;
    }
    next_tok(p);
    if (n->nArg == 1 && !bComma) n = n->aArg[0];
  } else if (tok_is_op(t, OP_LBRACKET)) {
    next_tok(p);
    n = node_new(p, N_LIST);
    if (!n) return 0;
    int nAlloc = 0;
    while (!tok_is_op(peek(p), OP_RBRACKET)) {
      if (n->nArg > 0) {
        if (expect_op(p, OP_COMMA, ",")) return 0;
        if (tok_is_op(peek(p), OP_RBRACKET)) break;
      }
      Node *x = parse_expr(p);
      if (!x || nodes_push(p, &n->aArg, &n->nArg, &nAlloc, x)) return 0;
    }
    next_tok(p);
  } else if (tok_is_op(t, OP_LBRACE)) {
    next_tok(p);
    n = node_new(p, N_DICT);
    if (!n) return 0;
    int nAlloc = 0;
    while (!tok_is_op(peek(p), OP_RBRACE)) {
      if (n->nArg > 0) {
        if (expect_op(p, OP_COMMA, ",")) return 0;
        if (tok_is_op(peek(p), OP_RBRACE)) break;
      }
      Node *k = parse_expr(p);
      if (!k || expect_op(p, OP_COLON, ":")) return 0;
      Node *v = parse_expr(p);
      if (!v || nodes_push(p, &n->aArg, &n->nArg, &nAlloc, k) ||
          nodes_push(p, &n->aArg, &n->nArg, &nAlloc, v)) return 0;
    }
    next_tok(p);
  } else {
    parse_error(p, t->type == TK_VAR_END || t->type == TK_BLOCK_END ? "expected an expression"
                                                                     : "unexpected token");
    return 0;
  }
  p->depth--;
  return n;
}

/* Unary minus/plus, then postfix, then (with bFilter) filters and tests. */
static Node *parse_unary(Parser *p, int bFilter) {
  Token *t = peek(p);
  Node *n;
  if (parse_deeper(p)) return 0;
  if (tok_is_op(t, OP_SUB) || tok_is_op(t, OP_ADD)) {
    next_tok(p);
    n = node_new(p, tok_is_op(t, OP_SUB) ? N_NEG : N_POS);
    if (!n) return 0;
    n->a = parse_unary(p, 0);
    if (!n->a) return 0;
  } else {
    n = parse_primary(p);
    if (!n) return 0;
  }
  n = parse_postfix(p, n);
  if (!n) return 0;
  while (bFilter) {
    if (tok_is_op(peek(p), OP_PIPE)) {
      next_tok(p);
      n = parse_filter(p, n);
    } else if (tok_is_name(peek(p), "is")) {
      next_tok(p);
      n = parse_test(p, n);
    } else if (tok_is_op(peek(p), OP_LPAREN)) {
      parse_error(p, "unsupported call of an expression");
      return 0;
    } else {
      break;
    }
    if (!n) return 0;
  }
  p->depth--;
  return n;
}

static Node *binop(Parser *p, int kind, int op, Node *a, Node *b) {
  if (!a || !b) return 0;
  Node *n = node_new(p, kind);
  if (!n) return 0;
  n->op = op;
  n->a = a;
  n->b = b;
  return n;
}

static Node *parse_pow(Parser *p) {
  Node *n = parse_unary(p, 1);
  while (n && tok_is_op(peek(p), OP_POW)) {
    next_tok(p);
    n = binop(p, N_BINOP, OP_POW, n, parse_unary(p, 1));
  }
  return n;
}

static Node *parse_math2(Parser *p) {
  Node *n = parse_pow(p);
  for (;;) {
    Token *t = peek(p);
    if (!n || t->type != TK_OP ||
        (t->op != OP_MUL && t->op != OP_DIV && t->op != OP_FLOORDIV && t->op != OP_MOD)) return n;
    next_tok(p);
    n = binop(p, N_BINOP, t->op, n, parse_pow(p));
  }
}

static Node *parse_concat(Parser *p) {
  Node *n = parse_math2(p);
  while (n && tok_is_op(peek(p), OP_TILDE)) {
    next_tok(p);
    n = binop(p, N_CONCAT, 0, n, parse_math2(p));
  }
  return n;
}

static Node *parse_math1(Parser *p) {
  Node *n = parse_concat(p);
  for (;;) {
    Token *t = peek(p);
    if (!n || t->type != TK_OP || (t->op != OP_ADD && t->op != OP_SUB)) return n;
    next_tok(p);
    n = binop(p, N_BINOP, t->op, n, parse_concat(p));
  }
}

/* Chained comparisons: a < b == c, in, not in. */
static Node *parse_compare(Parser *p) {
  Node *first = parse_math1(p);
  if (!first) return 0;
  Node *n = 0;
  int nAlloc = 0, nOpAlloc = 0;
  for (;;) {
    Token *t = peek(p);
    int op = 0;
    if (t->type == TK_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT ||
                             t->op == OP_LTEQ || t->op == OP_GT || t->op == OP_GTEQ)) {
      op = t->op;
      next_tok(p);
    } else if (tok_is_name(t, "in")) {
      op = OP_IN;
      next_tok(p);
    } else if (tok_is_name(t, "not") && tok_is_name(peek2(p), "in")) {
      op = OP_NOTIN;
      next_tok(p);
      next_tok(p);
    } else {
      break;
    }
    if (!n) {
      n = node_new(p, N_COMPARE);
      if (!n) return 0;
      n->a = first;
    }
    Node *x = parse_math1(p);
    if (!x) return 0;
    int nArgAlloc = nAlloc;
    if (nodes_push(p, &n->aArg, &n->nArg, &nAlloc, x)) return 0;
    if (n->nArg > nOpAlloc || nAlloc != nArgAlloc) {
      int *a = arena_alloc(p->pA, (size_t)nAlloc * sizeof(int));
      if (!a) { parse_error(p, "out of memory"); return 0; }
      if (n->nArg > 1) memcpy(a, n->aOp, (size_t)(n->nArg - 1) * sizeof(int));
      n->aOp = a;
      nOpAlloc = nAlloc;
    }
    n->aOp[n->nArg - 1] = op;
  }
  return n ? n : first;
}

static Node *parse_not(Parser *p) {
  if (tok_is_name(peek(p), "not")) {
    next_tok(p);
    if (parse_deeper(p)) return 0;
    Node *n = node_new(p, N_NOT);
    if (!n) return 0;
    n->a = parse_not(p);
    p->depth--;
    return n->a ? n : 0;
  }
  return parse_compare(p);
}

static Node *parse_and(Parser *p) {
  Node *n = parse_not(p);
  while (n && tok_is_name(peek(p), "and")) {
    next_tok(p);
    n = binop(p, N_AND, 0, n, parse_not(p));
  }
  return n;
}

static Node *parse_or(Parser *p) {
  Node *n = parse_and(p);
  while (n && tok_is_name(peek(p), "or")) {
    next_tok(p);
    n = binop(p, N_OR, 0, n, parse_and(p));
  }
  return n;
}

/* An expression, with 'x if c else y'. */
static Node *parse_expr(Parser *p) {
  if (parse_deeper(p)) return 0;
  Node *n = parse_or(p);
  while (n && tok_is_name(peek(p), "if")) {
    next_tok(p);
    Node *c = node_new(p, N_COND);
    if (!c) return 0;
    c->a = n;
    c->b = parse_or(p);
    if (!c->b) return 0;
    if (tok_is_name(peek(p), "else")) {
      next_tok(p);
      c->c = parse_expr(p);
      if (!c->c) return 0;
    }
    n = c;
  }
  p->depth--;
  return n;
}

/* An expression, or a bare tuple 'a, b' (for {% set %} values). */
static Node *parse_tuple_expr(Parser *p) {
  Node *n = parse_expr(p);
  if (!n || !tok_is_op(peek(p), OP_COMMA)) return n;
  Node *t = node_new(p, N_TUPLE);
  if (!t) return 0;
  int nAlloc = 0;
  if (nodes_push(p, &t->aArg, &t->nArg, &nAlloc, n)) return 0;
  while (tok_is_op(peek(p), OP_COMMA)) {
    next_tok(p);
    if (peek(p)->type == TK_BLOCK_END) break;
    Node *x = parse_expr(p);
    if (!x || nodes_push(p, &t->aArg, &t->nArg, &nAlloc, x)) return 0;
  }
  return t;
}

static int expect_block_end(Parser *p) {
  if (peek(p)->type != TK_BLOCK_END) return parse_error(p, "expected '%%}'");
  next_tok(p);
  return 0;
}

/* Names of a for/set target: 'a' or 'a, b'. */
static int parse_targets(Parser *p, Node *n) {
  int nAlloc = 0;
  for (;;) {
    Token *t = next_tok(p);
    if (t->type != TK_NAME) return parse_error(p, "expected a variable name");
    if (n->nTarget == nAlloc) {
      int nNew = nAlloc ? nAlloc * 2 : 2;
      const char **a = arena_alloc(p->pA, (size_t)nNew * sizeof(char *));
      if (!a) return parse_error(p, "out of memory");
      if (n->nTarget) memcpy(a, n->azTarget, (size_t)n->nTarget * sizeof(char *));
      n->azTarget = a;
      nAlloc = nNew;
    }
    n->azTarget[n->nTarget] = arena_strdup(p->pA, t->z, t->n);
    if (!n->azTarget[n->nTarget]) return parse_error(p, "out of memory");
    if (use_push(p, 1, t->z, t->n, t->line)) return -1;
    n->nTarget++;
    if (!tok_is_op(peek(p), OP_COMMA)) return 0;
    next_tok(p);
  }
}

static Node *parse_body(Parser *p, const char *const *azEnd, Token **ppEnd);

/* The statement after '{%' (the tag name is the current token). */
static Node *parse_statement(Parser *p) {
  Token *t = next_tok(p);
  if (t->type != TK_NAME) { parse_error(p, "expected a tag name after '{%%'"); return 0; }
  if (++p->blockDepth > TPL_MAX_DEPTH) { parse_error(p, "blocks nested deeper than %d", TPL_MAX_DEPTH); return 0; }
  Node *n = 0;
  if (name_is(t->z, t->n, "if")) {
    static const char *const azEnd[] = {"elif", "else", "endif", 0};
    n = node_new(p, N_IF);
    Node *cur = n;
    if (!n || !(n->a = parse_tuple_expr(p)) || expect_block_end(p)) return 0;
    for (;;) {
      Token *pEnd = 0;
      cur->b = parse_body(p, azEnd, &pEnd);
      if (!cur->b) return 0;
      if (tok_is_name(pEnd, "elif")) {
        Node *x = node_new(p, N_IF);
        if (!x || !(x->a = parse_tuple_expr(p)) || expect_block_end(p)) return 0;
        cur->c = x;
        cur = x;
      } else if (tok_is_name(pEnd, "else")) {
        static const char *const azEndElse[] = {"endif", 0};
        if (expect_block_end(p)) return 0;
        cur->c = parse_body(p, azEndElse, &pEnd);
        if (!cur->c || expect_block_end(p)) return 0;
        break;
      } else {
        if (expect_block_end(p)) return 0;
        break;
      }
    }
  } else if (name_is(t->z, t->n, "for")) {
    static const char *const azEnd[] = {"else", "endfor", 0};
    n = node_new(p, N_FOR);
    scope_begin(p);
    if (!n || use_push(p, 1, "loop", 4, n->line) || parse_targets(p, n)) return 0;
    if (!tok_is_name(peek(p), "in")) { parse_error(p, "expected 'in' in a for tag"); return 0; }
    next_tok(p);
    /* the iterable is parsed without 'if' (that is the loop filter) */
    n->a = parse_or(p);
    if (!n->a) return 0;
    if (tok_is_name(peek(p), "if")) {
      next_tok(p);
      n->b = parse_expr(p);
      if (!n->b) return 0;
    }
    if (tok_is_name(peek(p), "recursive")) { parse_error(p, "unsupported recursive for loop"); return 0; }
    if (expect_block_end(p)) return 0;
    Token *pEnd = 0;
    p->nLoop++;
    n->c = parse_body(p, azEnd, &pEnd);
    p->nLoop--;
    if (!n->c) return 0;
    if (tok_is_name(pEnd, "else")) {
      static const char *const azEndFor[] = {"endfor", 0};
      if (expect_block_end(p)) return 0;
      n->pElse = parse_body(p, azEndFor, &pEnd);
      if (!n->pElse) return 0;
    }
    if (expect_block_end(p) || scope_end(p)) return 0;
  } else if (name_is(t->z, t->n, "set")) {
    n = node_new(p, N_SET);
    if (!n) return 0;
    Token *a = peek(p);
    if (a->type == TK_NAME && tok_is_op(peek2(p), OP_DOT)) {
      next_tok(p);
      next_tok(p);
      Token *b = next_tok(p);
      if (b->type != TK_NAME) { parse_error(p, "expected an attribute name in a set tag"); return 0; }
      n->zName = arena_strdup(p->pA, a->z, a->n);
      n->zAttr = arena_strdup(p->pA, b->z, b->n);
      if (!n->zName || !n->zAttr) { parse_error(p, "out of memory"); return 0; }
      if (use_push(p, 0, a->z, a->n, a->line)) return 0;
    } else if (parse_targets(p, n)) {
      return 0;
    }
    if (peek(p)->type == TK_BLOCK_END) {
      static const char *const azEnd[] = {"endset", 0};
      if (n->zAttr || n->nTarget != 1) { parse_error(p, "a block set takes one name"); return 0; }
      next_tok(p);
      n->kind = N_SETBLOCK;
      Token *pEnd = 0;
      n->a = parse_body(p, azEnd, &pEnd);
      if (!n->a || expect_block_end(p)) return 0;
    } else {
      if (expect_op(p, OP_ASSIGN, "=")) return 0;
      n->a = parse_tuple_expr(p);
      if (!n->a || expect_block_end(p)) return 0;
    }
  } else if (name_is(t->z, t->n, "break") || name_is(t->z, t->n, "continue")) {
    if (p->nLoop == 0) { parse_error(p, "'%.*s' outside a loop", (int)t->n, t->z); return 0; }
    n = node_new(p, name_is(t->z, t->n, "break") ? N_BREAK : N_CONTINUE);
    if (!n || expect_block_end(p)) return 0;
  } else if (name_is(t->z, t->n, "macro")) {
    static const char *const azEnd[] = {"endmacro", 0};
    Token *pName = next_tok(p), *pEnd = 0;
    int nAlloc = 0, bDefault = 0, nSavedLoop = p->nLoop;
    if (pName->type != TK_NAME) { parse_error(p, "expected a macro name"); return 0; }
    n = node_new(p, N_MACRO);
    if (!n) return 0;
    n->zName = arena_strdup(p->pA, pName->z, pName->n);
    if (!n->zName || use_push(p, 1, pName->z, pName->n, pName->line)) return 0;
    int bInner = p->nScope > 0, posStart;
    scope_begin(p);
    posStart = p->nPos;
    p->nMacroBody++;
    if (expect_op(p, OP_LPAREN, "(")) return 0;
    while (!tok_is_op(peek(p), OP_RPAREN)) {
      if (n->nTarget > 0 && expect_op(p, OP_COMMA, ",")) return 0;
      Token *a = next_tok(p);
      if (a->type != TK_NAME) { parse_error(p, "expected a parameter name"); return 0; }
      if (n->nTarget == nAlloc) {
        int nNew = nAlloc ? nAlloc * 2 : 4;
        const char **az = arena_alloc(p->pA, (size_t)nNew * sizeof(char *));
        Node **ad = arena_alloc(p->pA, (size_t)nNew * sizeof(Node *));
        if (!az || !ad) { parse_error(p, "out of memory"); return 0; }
        if (n->nTarget) {
          memcpy(az, n->azTarget, (size_t)n->nTarget * sizeof(char *));
          memcpy(ad, n->aArg, (size_t)n->nTarget * sizeof(Node *));
        }
        n->azTarget = az;
        n->aArg = ad;
        nAlloc = nNew;
      }
      n->azTarget[n->nTarget] = arena_strdup(p->pA, a->z, a->n);
      if (!n->azTarget[n->nTarget]) { parse_error(p, "out of memory"); return 0; }
      if (use_push(p, 1, a->z, a->n, a->line)) return 0;
      n->aArg[n->nTarget] = 0;
      if (tok_is_op(peek(p), OP_ASSIGN)) {
        next_tok(p);
        n->aArg[n->nTarget] = parse_expr(p);
        if (!n->aArg[n->nTarget]) return 0;
        bDefault = 1;
      } else if (bDefault) {
        parse_error(p, "non-default parameter '%.*s' follows a default one", (int)a->n, a->z);
        return 0;
      }
      n->nTarget++;
      n->nArg = n->nTarget;
    }
    next_tok(p);
    if (expect_block_end(p)) return 0;
    p->nLoop = 0; /* a loop around the definition is not around the body */
    n->a = parse_body(p, azEnd, &pEnd);
    p->nLoop = nSavedLoop;
    p->nMacroBody--;
    if (!n->a || expect_block_end(p)) return 0;
    if (bInner) {
      if (p->nInner == p->nInnerAlloc) {
        int nNew = p->nInnerAlloc ? p->nInnerAlloc * 2 : 8;
        InnerMacro *a = arena_alloc(p->pA, (size_t)nNew * sizeof(InnerMacro));
        if (!a) { parse_error(p, "out of memory"); return 0; }
        if (p->nInner) memcpy(a, p->aInner, (size_t)p->nInner * sizeof(InnerMacro));
        p->aInner = a;
        p->nInnerAlloc = nNew;
      }
      InnerMacro *im = &p->aInner[p->nInner++];
      im->zName = n->zName;
      im->posStart = posStart;
      im->posEnd = p->nPos;
    }
    if (scope_end(p)) return 0;
    if (p->nMacro == p->nMacroAlloc) {
      int nNew = p->nMacroAlloc ? p->nMacroAlloc * 2 : 8;
      const char **a = arena_alloc(p->pA, (size_t)nNew * sizeof(char *));
      if (!a) { parse_error(p, "out of memory"); return 0; }
      if (p->nMacro) memcpy(a, p->azMacro, (size_t)p->nMacro * sizeof(char *));
      p->azMacro = a;
      p->nMacroAlloc = nNew;
    }
    p->azMacro[p->nMacro++] = n->zName;
  } else if (name_is(t->z, t->n, "generation")) {
    /* transformers' AssistantTracker tag: renders its body */
    static const char *const azEnd[] = {"endgeneration", 0};
    Token *pEnd = 0;
    if (expect_block_end(p)) return 0;
    n = parse_body(p, azEnd, &pEnd);
    if (!n || expect_block_end(p)) return 0;
    n->kind = N_SCOPE; /* transformers renders it as a call block */
  } else {
    parse_error(p, "unsupported tag '%.*s'", (int)t->n, t->z);
    return 0;
  }
  p->blockDepth--;
  return n;
}

/* Statements up to a block tag named in azEnd (NULL-terminated; NULL array
** = up to the end). *ppEnd gets that tag's name token (then current is the
** token after it). */
static Node *parse_body(Parser *p, const char *const *azEnd, Token **ppEnd) {
  Node *blk = node_new(p, N_BLOCK);
  int nAlloc = 0;
  if (!blk) return 0;
  for (;;) {
    Token *t = peek(p);
    Node *n = 0;
    if (t->type == TK_EOF) {
      if (azEnd) {
        int k = 0;
        while (azEnd[k + 1]) k++;
        parse_error(p, "missing {%% %s %%}", azEnd[k]);
        return 0;
      }
      return blk;
    }
    if (t->type == TK_DATA) {
      next_tok(p);
      n = node_new(p, N_TEXT);
      if (!n) return 0;
      n->v = val_str_ref(t->z, t->n);
    } else if (t->type == TK_VAR_BEGIN) {
      next_tok(p);
      n = node_new(p, N_OUTPUT);
      if (!n || !(n->a = parse_tuple_expr(p))) return 0;
      if (peek(p)->type != TK_VAR_END) { parse_error(p, "expected '}}'"); return 0; }
      next_tok(p);
    } else if (t->type == TK_BLOCK_BEGIN) {
      Token *name = peek2(p);
      if (name->type == TK_NAME) {
        for (int i = 0; azEnd && azEnd[i]; i++) {
          if (name_is(name->z, name->n, azEnd[i])) {
            next_tok(p);
            *ppEnd = next_tok(p);
            return blk;
          }
        }
        if (tok_is_name(name, "endif") || tok_is_name(name, "endfor") || tok_is_name(name, "elif") ||
            tok_is_name(name, "else") || tok_is_name(name, "endset") || tok_is_name(name, "endgeneration") ||
            tok_is_name(name, "endmacro")) {
          next_tok(p);
          parse_error(p, "unexpected {%% %.*s %%}", (int)name->n, name->z);
          return 0;
        }
      }
      next_tok(p);
      n = parse_statement(p);
      if (!n) return 0;
    } else {
      parse_error(p, "unexpected token");
      return 0;
    }
    if (nodes_push(p, &blk->aArg, &blk->nArg, &nAlloc, n)) return 0;
  }
}

/* Byte order of the name z[0..n) against the NUL-terminated zName. */
static int name_order(const char *z, size_t n, const char *zName) {
  size_t m = strlen(zName);
  int c = memcmp(z, zName, n < m ? n : m);
  return c ? c : (n > m) - (n < m);
}

/* qsort order of two macro names (byte order). */
static int macro_name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void tpl_free(TplProgram *p) {
  if (!p) return;
  arena_free(&p->arena);
  free(p);
}

int tpl_compile(const char *zSrc, size_t nSrc, TplProgram **ppProg, char *zErr, size_t nErr) {
  char zDummy[8];
  if (!zErr || nErr == 0) { zErr = zDummy; nErr = sizeof(zDummy); }
  zErr[0] = 0;
  *ppProg = 0;
  if (!zSrc) nSrc = 0;
  if (nSrc > TPL_MAX_SOURCE) {
    snprintf(zErr, nErr, "template of %zu bytes is over the limit of %d bytes", nSrc, TPL_MAX_SOURCE);
    return -1;
  }
  if (nSrc && memchr(zSrc, 0, nSrc)) {
    snprintf(zErr, nErr, "template contains a NUL byte");
    return -1;
  }
  TplProgram *prog = malloc(sizeof(TplProgram));
  if (!prog) { snprintf(zErr, nErr, "out of memory"); return -1; }
  memset(prog, 0, sizeof(*prog));
  /* newlines normalized to \n, one trailing \n dropped (keep_trailing_newline=False) */
  char *z = arena_alloc(&prog->arena, nSrc + 1);
  size_t n = 0;
  if (!z) goto nomem;
  for (size_t i = 0; i < nSrc; i++) {
    if (zSrc[i] == '\r') {
      z[n++] = '\n';
      if (i + 1 < nSrc && zSrc[i + 1] == '\n') i++;
    } else {
      z[n++] = zSrc[i];
    }
  }
  if (n > 0 && z[n - 1] == '\n') n--;
  z[n] = 0;
  Lexer x;
  memset(&x, 0, sizeof(x));
  x.pA = &prog->arena;
  x.z = z;
  x.n = n;
  x.line = 1;
  x.zErr = zErr;
  x.nErr = nErr;
  if (lex_all(&x)) goto fail;
  Parser p;
  memset(&p, 0, sizeof(p));
  p.pA = &prog->arena;
  p.aTok = x.aTok;
  p.nTok = x.nTok;
  p.zErr = zErr;
  p.nErr = nErr;
  prog->pRoot = parse_body(&p, 0, 0);
  if (!prog->pRoot) goto fail;
  /* each call against the sorted macro names: comparing every call with
  ** every name was quadratic (a 1 MiB template took seconds) */
  if (p.nMacro > 1) qsort(p.azMacro, (size_t)p.nMacro, sizeof(char *), macro_name_cmp);
  for (int i = 0; i < p.nCall; i++) {
    Token *t = p.apCall[i];
    int lo = 0, hi = p.nMacro;
    while (lo < hi) {
      int mid = lo + (hi - lo) / 2;
      if (name_order(t->z, t->n, p.azMacro[mid]) > 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo == p.nMacro || !name_is(t->z, t->n, p.azMacro[lo])) {
      snprintf(zErr, nErr, "line %d: unsupported function '%.*s'", t->line, (int)t->n, t->z);
      goto fail;
    }
  }
  *ppProg = prog;
  return 0;
nomem:
  snprintf(zErr, nErr, "out of memory");
fail:
  tpl_free(prog);
  return -1;
}

int tpl_check(const char *zSrc, char *zErr, size_t nErr) {
  TplProgram *p = 0;
  int rc = tpl_compile(zSrc, zSrc ? strlen(zSrc) : 0, &p, zErr, nErr);
  tpl_free(p);
  return rc;
}

/* ------------------------------------------------------------- renderer */

typedef struct Frame {
  struct Frame *pParent;
  const char **azName;
  TplValue *aVal;
  size_t n, nAlloc;
} Frame;

typedef struct LoopInfo {
  TplList *pItems; /* the (filtered) items */
  size_t i;        /* current index */
} LoopInfo;

enum { CTL_NONE = 0, CTL_BREAK, CTL_CONTINUE };

typedef struct Render {
  TplEnv *e;
  Arena *pA;
  Buf *pOut;
  int64_t nSteps, nMaxSteps;
  size_t nMaxMemory;
  char *zErr;
  size_t nErr;
  int bErr;
  int ctl;
  int line;
  Frame *pFrame;
  int depth;       /* loops and values being printed */
  int nEvalDepth;  /* expression evaluation */
  int nMacroDepth; /* macro calls */
  Frame *pRootFrame; /* the template's top level, which macro bodies see */
} Render;

#define TPL_MAX_EVAL_DEPTH 1000 /* nested expression evaluation */
#define TPL_MAX_VALUE_DEPTH 1000 /* nested lists/dicts compared */

/* Records the first error (later ones are consequences). */
static int rerr(Render *r, const char *zFmt, ...) {
  if (r->bErr) return -1;
  va_list ap;
  int k = snprintf(r->zErr, r->nErr, "line %d: ", r->line);
  va_start(ap, zFmt);
  if (k >= 0 && (size_t)k < r->nErr) vsnprintf(r->zErr + k, r->nErr - (size_t)k, zFmt, ap);
  va_end(ap);
  r->bErr = 1;
  return -1;
}

static int nomem(Render *r) {
  if (r->pA->bOverLimit)
    return rerr(r, "memory limit of %zu bytes exceeded", r->nMaxMemory);
  return rerr(r, "out of memory");
}

/* An empty buffer for a temporary result, counted against the render's
** memory limit; nMax (0 = none) caps its bytes. */
static void buf_init(Render *r, Buf *b, size_t nMax) {
  memset(b, 0, sizeof(*b));
  b->nMax = nMax;
  b->pA = r->pA;
}

/* The error of a failed append to b: its byte cap (the output limit), the
** memory limit, or out of memory. */
static int buf_error(Render *r, const Buf *b) {
  if (b->bOver) return rerr(r, "output limit of %zu bytes exceeded", b->nMax);
  return nomem(r);
}

/* The buffer's bytes as a string value in the arena; frees the buffer. */
static int buf_take(Render *r, Buf *b, TplValue *pOut) {
  char *z = arena_strdup(r->pA, b->z ? b->z : "", b->n);
  size_t n = b->n;
  buf_free(b);
  if (!z) return nomem(r);
  *pOut = val_str_ref(z, n);
  return 0;
}

/* Charges n steps; an error once over the limit. */
static int step(Render *r, int64_t n) {
  r->nSteps += n;
  if (r->nSteps > r->nMaxSteps) return rerr(r, "step limit of %lld exceeded", (long long)r->nMaxSteps);
  return 0;
}

static const char *type_name(TplValue v) {
  switch (v.type) {
    case TPL_UNDEFINED: return "undefined";
    case TPL_NONE: return "NoneType";
    case TPL_BOOL: return "bool";
    case TPL_INT: return "int";
    case TPL_FLOAT: return "float";
    case TPL_STRING: return "str";
    case TPL_LIST: return v.u.pList->bTuple ? "tuple" : "list";
    case TPL_DICT: return "dict";
    case TPL_NAMESPACE: return "Namespace";
    case TPL_LOOP: return "LoopContext";
    case TPL_MACRO: return "Macro";
    default: return "function";
  }
}

static int is_num(TplValue v) { return v.type == TPL_INT || v.type == TPL_BOOL || v.type == TPL_FLOAT; }
static double num_f(TplValue v) { return v.type == TPL_FLOAT ? v.u.f : (double)v.u.i; }

static int truthy(TplValue v) {
  switch (v.type) {
    case TPL_UNDEFINED: case TPL_NONE: return 0;
    case TPL_BOOL: case TPL_INT: return v.u.i != 0;
    case TPL_FLOAT: return v.u.f != 0;
    case TPL_STRING: return v.u.s.n > 0;
    case TPL_LIST: return v.u.pList->n > 0;
    case TPL_DICT: return v.u.pDict->n > 0;
    default: return 1;
  }
}

/* Orders integer i against float f exactly, as CPython's float_richcompare
** (converting i to a double would make 2**53 + 1 equal 2.0**53): -1, 0 or
** 1, or 2 when f is NaN. */
static int cmp_int_float(int64_t i, double f) {
  if (isnan(f)) return 2;
  if (f >= 9223372036854775808.0) return -1;
  if (f < -9223372036854775808.0) return 1;
  double fl = floor(f); /* in [-2**63, 2**63): an exact int64 */
  int64_t k = (int64_t)fl;
  if (i != k) return i < k ? -1 : 1;
  return fl < f ? -1 : 0;
}

/* Orders two numbers as Python does: -1, 0, 1, or 2 when one is NaN. */
static int num_cmp(TplValue a, TplValue b) {
  if (a.type != TPL_FLOAT && b.type != TPL_FLOAT) return a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
  if (a.type != TPL_FLOAT) return cmp_int_float(a.u.i, b.u.f);
  if (b.type != TPL_FLOAT) { int c = cmp_int_float(b.u.i, a.u.f); return c == 2 ? 2 : -c; }
  return a.u.f < b.u.f ? -1 : a.u.f > b.u.f ? 1 : a.u.f == b.u.f ? 0 : 2;
}

static int val_eq_depth(TplValue a, TplValue b, int depth, int64_t *pBudget);

/* Python equality (Undefined equals only Undefined). Values nested deeper
** than TPL_MAX_VALUE_DEPTH compare unequal rather than exhaust the stack. */
static int val_eq(TplValue a, TplValue b) {
  int64_t budget = INT64_MAX;
  return val_eq_depth(a, b, 0, &budget);
}

/* val_eq where a template compares (==, !=, the eq and ne tests): each pair
** of values compared is a step, since two dicts of n keys compare in n * n
** (two of 40,000 keys took 9 s, outside the step limit). 0 with *pb set, or
** an error once over the limit. */
static int val_eq_charged(Render *r, TplValue a, TplValue b, int *pb) {
  int64_t left = r->nMaxSteps - r->nSteps, budget = left;
  *pb = val_eq_depth(a, b, 0, &budget);
  return step(r, budget < 0 ? left + 1 : left - budget);
}

/* One comparison of the budget spent; past it (*pBudget < 0) every
** comparison answers unequal at once, and the caller reports the limit. */
static int val_eq_depth(TplValue a, TplValue b, int depth, int64_t *pBudget) {
  if (depth > TPL_MAX_VALUE_DEPTH || --*pBudget < 0) return 0;
  if (is_num(a) && is_num(b)) return num_cmp(a, b) == 0;
  if (a.type != b.type) return 0;
  switch (a.type) {
    case TPL_UNDEFINED: case TPL_NONE: return 1;
    case TPL_STRING: return a.u.s.n == b.u.s.n && memcmp(a.u.s.z, b.u.s.z, a.u.s.n) == 0;
    case TPL_LIST: /* a list never equals a tuple */
      if (a.u.pList->n != b.u.pList->n || a.u.pList->bTuple != b.u.pList->bTuple) return 0;
      for (size_t i = 0; i < a.u.pList->n; i++)
        if (!val_eq_depth(a.u.pList->a[i], b.u.pList->a[i], depth + 1, pBudget)) return 0;
      return 1;
    case TPL_DICT: {
      TplDict *x = a.u.pDict, *y = b.u.pDict;
      if (x->n != y->n) return 0;
      for (size_t i = 0; i < x->n; i++) {
        size_t j = 0;
        while (j < y->n && !val_eq_depth(x->aKey[i], y->aKey[j], depth + 1, pBudget)) j++;
        if (j == y->n || !val_eq_depth(x->aVal[i], y->aVal[j], depth + 1, pBudget)) return 0;
      }
      return 1;
    }
    default: return a.u.p == b.u.p;
  }
}

/* ----- str() and repr() of values */

/* Python's repr() of a float: the shortest digits that round-trip, in
** fixed notation for exponents -4..15, else scientific with two or more
** exponent digits. bJson gives json.dumps' NaN / Infinity. */
static void fmt_float(double f, char *z, size_t n, int bJson) {
  if (isnan(f)) { snprintf(z, n, "%s", bJson ? "NaN" : "nan"); return; }
  if (isinf(f)) { snprintf(z, n, "%s", f > 0 ? (bJson ? "Infinity" : "inf") : (bJson ? "-Infinity" : "-inf")); return; }
  char e[40];
  int prec;
  for (prec = 1; prec <= 17; prec++) {
    snprintf(e, sizeof(e), "%.*e", prec - 1, f);
    if (strtod(e, 0) == f) break;
  }
  /* e is like "-1.2345e+05": split into sign, digits and exponent */
  char digits[24];
  int nd = 0, neg = 0, exp10;
  const char *s = e;
  if (*s == '-') { neg = 1; s++; }
  for (; *s && *s != 'e'; s++) if (*s >= '0' && *s <= '9' && nd < 20) digits[nd++] = *s;
  exp10 = atoi(s + 1);
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = 0;
  char out[64];
  size_t k = 0;
  if (neg) out[k++] = '-';
  if (exp10 < -4 || exp10 >= 16) {
    out[k++] = digits[0];
    if (nd > 1) { out[k++] = '.'; for (int i = 1; i < nd; i++) out[k++] = digits[i]; }
    k += (size_t)snprintf(out + k, sizeof(out) - k, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  } else if (exp10 < 0) {
    out[k++] = '0'; out[k++] = '.';
    for (int i = 0; i < -exp10 - 1; i++) out[k++] = '0';
    for (int i = 0; i < nd; i++) out[k++] = digits[i];
  } else {
    for (int i = 0; i <= exp10; i++) out[k++] = i < nd ? digits[i] : '0';
    out[k++] = '.';
    if (nd > exp10 + 1) { for (int i = exp10 + 1; i < nd; i++) out[k++] = digits[i]; }
    else out[k++] = '0';
  }
  out[k] = 0;
  snprintf(z, n, "%s", out);
}

static int to_str_buf(Render *r, Buf *b, TplValue v, int bRepr);

/* Python's str.isprintable() for one code point: false for the categories
** Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs other than the space. utf8proc's
** Unicode may be newer than Python's, so a code point assigned since counts
** as printable here where Python would escape it. */
static int cp_printable(unsigned c) {
  if (c == ' ') return 1;
  switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS: return 0;
    default: return 1;
  }
}

/* Python's repr() of a string: single quotes unless it holds ' and no ";
** every code point str.isprintable() rejects escaped (an invalid byte, a
** lone surrogate to Python, as \udcXX). */
static int repr_string(Buf *b, const char *z, size_t n) {
  int bSingle = 0, bDouble = 0;
  for (size_t i = 0; i < n; i++) { if (z[i] == '\'') bSingle = 1; else if (z[i] == '"') bDouble = 1; }
  char q = bSingle && !bDouble ? '"' : '\'';
  int rc = buf_append(b, &q, 1);
  size_t i = 0;
  while (i < n && rc == 0) {
    size_t len;
    unsigned c = utf8_next((const unsigned char *)z + i, n - i, &len);
    char esc[16];
    if (c == (unsigned char)q || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; rc = buf_append(b, esc, 2); }
    else if (c == '\n') rc = buf_puts(b, "\\n");
    else if (c == '\r') rc = buf_puts(b, "\\r");
    else if (c == '\t') rc = buf_puts(b, "\\t");
    else if (!cp_printable(c)) {
      snprintf(esc, sizeof(esc), c < 0x100 ? "\\x%02x" : c < 0x10000 ? "\\u%04x" : "\\U%08x", c);
      rc = buf_puts(b, esc);
    } else rc = buf_append(b, z + i, len);
    i += len;
  }
  if (rc == 0) rc = buf_append(b, &q, 1);
  return rc;
}

/* Appends str(v) (or repr(v)) to b. */
static int to_str_buf(Render *r, Buf *b, TplValue v, int bRepr) {
  char tmp[64];
  if (++r->depth > TPL_MAX_DEPTH * 4) { r->depth--; return rerr(r, "value nested deeper than %d", TPL_MAX_DEPTH * 4); }
  int rc = 0;
  switch (v.type) {
    case TPL_UNDEFINED: /* '' printed, its repr inside a list or dict */
      if (bRepr) rc = buf_puts(b, "Undefined");
      break;
    case TPL_NONE: rc = buf_puts(b, "None"); break;
    case TPL_BOOL: rc = buf_puts(b, v.u.i ? "True" : "False"); break;
    case TPL_INT: snprintf(tmp, sizeof(tmp), "%lld", (long long)v.u.i); rc = buf_puts(b, tmp); break;
    case TPL_FLOAT: fmt_float(v.u.f, tmp, sizeof(tmp), 0); rc = buf_puts(b, tmp); break;
    case TPL_STRING:
      rc = bRepr ? repr_string(b, v.u.s.z, v.u.s.n) : buf_append(b, v.u.s.z, v.u.s.n);
      break;
    case TPL_LIST: {
      TplList *l = v.u.pList;
      rc = buf_puts(b, l->bTuple ? "(" : "[");
      for (size_t i = 0; i < l->n && rc == 0; i++) {
        if (i) rc = buf_puts(b, ", ");
        if (rc == 0) rc = to_str_buf(r, b, l->a[i], 1);
      }
      if (rc == 0 && l->bTuple && l->n == 1) rc = buf_puts(b, ",");
      if (rc == 0) rc = buf_puts(b, l->bTuple ? ")" : "]");
      break;
    }
    case TPL_DICT: case TPL_NAMESPACE: {
      TplDict *d = v.u.pDict;
      rc = buf_puts(b, v.type == TPL_NAMESPACE ? "<Namespace {" : "{");
      for (size_t i = 0; i < d->n && rc == 0; i++) {
        if (i) rc = buf_puts(b, ", ");
        if (rc == 0) rc = to_str_buf(r, b, d->aKey[i], 1);
        if (rc == 0) rc = buf_puts(b, ": ");
        if (rc == 0) rc = to_str_buf(r, b, d->aVal[i], 1);
      }
      if (rc == 0) rc = buf_puts(b, v.type == TPL_NAMESPACE ? "}>" : "}");
      break;
    }
    case TPL_LOOP: rc = buf_puts(b, "<LoopContext>"); break;
    default: rc = buf_puts(b, "<function>"); break;
  }
  r->depth--;
  if (rc) return buf_error(r, b);
  return 0;
}

/* str(v) as a value (strings are returned as they are). */
static int to_str(Render *r, TplValue v, TplValue *pOut) {
  if (v.type == TPL_STRING) { *pOut = v; return 0; }
  if (v.type == TPL_UNDEFINED) { *pOut = val_str_ref("", 0); return 0; }
  Buf b;
  buf_init(r, &b, r->pOut->nMax);
  if (to_str_buf(r, &b, v, 0)) { buf_free(&b); return -1; }
  if (step(r, (int64_t)(b.n / 64))) { buf_free(&b); return -1; }
  return buf_take(r, &b, pOut);
}

/* ----- JSON (transformers' tojson: json.dumps(x, ensure_ascii=False, ...)) */

typedef struct JsonOpt {
  int indent;      /* -1: none */
  const char *zItemSep, *zKeySep;
  size_t nItemSep, nKeySep;
  int bSortKeys;
} JsonOpt;

static int json_string(Buf *b, const char *z, size_t n) {
  int rc = buf_puts(b, "\"");
  size_t i0 = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    unsigned char c = (unsigned char)z[i];
    const char *zEsc = 0;
    char esc[8];
    if (c == '"') zEsc = "\\\"";
    else if (c == '\\') zEsc = "\\\\";
    else if (c == '\n') zEsc = "\\n";
    else if (c == '\r') zEsc = "\\r";
    else if (c == '\t') zEsc = "\\t";
    else if (c == '\b') zEsc = "\\b";
    else if (c == '\f') zEsc = "\\f";
    else if (c < 0x20) { snprintf(esc, sizeof(esc), "\\u%04x", c); zEsc = esc; }
    if (zEsc) {
      rc = buf_append(b, z + i0, i - i0);
      if (rc == 0) rc = buf_puts(b, zEsc);
      i0 = i + 1;
    }
  }
  if (rc == 0) rc = buf_append(b, z + i0, n - i0);
  if (rc == 0) rc = buf_puts(b, "\"");
  return rc;
}

static int json_newline(Buf *b, const JsonOpt *o, int level) {
  if (o->indent < 0) return 0;
  int rc = buf_puts(b, "\n");
  for (int i = 0; i < level * o->indent && rc == 0; i++) rc = buf_puts(b, " ");
  return rc;
}

/* Byte order of two string keys, for sort_keys (code point order = UTF-8 order). */
static int key_cmp(TplValue a, TplValue b) {
  size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
  int c = memcmp(a.u.s.z, b.u.s.z, n);
  /* -1, 0 or 1: compare_order's callers read 2 as "unordered" (NaN), and
  ** memcmp's difference of 2 ('c' against 'a') had made 'c' > 'a' false */
  if (c) return c < 0 ? -1 : 1;
  return a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
}

static int json_dump(Render *r, Buf *b, TplValue v, const JsonOpt *o, int level) {
  char tmp[64];
  int rc = 0;
  if (level > TPL_MAX_DEPTH * 4) return rerr(r, "tojson: value nested deeper than %d", TPL_MAX_DEPTH * 4);
  if (step(r, 1)) return -1;
  switch (v.type) {
    case TPL_NONE: rc = buf_puts(b, "null"); break;
    case TPL_BOOL: rc = buf_puts(b, v.u.i ? "true" : "false"); break;
    case TPL_INT: snprintf(tmp, sizeof(tmp), "%lld", (long long)v.u.i); rc = buf_puts(b, tmp); break;
    case TPL_FLOAT: fmt_float(v.u.f, tmp, sizeof(tmp), 1); rc = buf_puts(b, tmp); break;
    case TPL_STRING:
      if (step(r, (int64_t)(v.u.s.n / 64))) return -1;
      rc = json_string(b, v.u.s.z, v.u.s.n);
      break;
    case TPL_LIST: {
      TplList *l = v.u.pList;
      if (l->n == 0) { rc = buf_puts(b, "[]"); break; }
      rc = buf_puts(b, "[");
      for (size_t i = 0; i < l->n && rc == 0; i++) {
        if (i) rc = buf_append(b, o->zItemSep, o->nItemSep);
        if (rc == 0) rc = json_newline(b, o, level + 1);
        if (rc == 0 && json_dump(r, b, l->a[i], o, level + 1)) return -1;
      }
      if (rc == 0) rc = json_newline(b, o, level);
      if (rc == 0) rc = buf_puts(b, "]");
      break;
    }
    case TPL_DICT: {
      TplDict *d = v.u.pDict;
      if (d->n == 0) { rc = buf_puts(b, "{}"); break; }
      size_t *aIdx = arena_alloc(r->pA, d->n * sizeof(size_t));
      if (!aIdx) return nomem(r);
      for (size_t i = 0; i < d->n; i++) aIdx[i] = i;
      if (o->bSortKeys) {
        for (size_t i = 0; i < d->n; i++)
          if (d->aKey[i].type != TPL_STRING) return rerr(r, "tojson: sort_keys needs string keys");
        if (step(r, (int64_t)(d->n * d->n / 16))) return -1;
        for (size_t i = 1; i < d->n; i++) /* insertion sort: stable, small dicts */
          for (size_t j = i; j > 0 && key_cmp(d->aKey[aIdx[j - 1]], d->aKey[aIdx[j]]) > 0; j--) {
            size_t t = aIdx[j]; aIdx[j] = aIdx[j - 1]; aIdx[j - 1] = t;
          }
      }
      rc = buf_puts(b, "{");
      for (size_t k = 0; k < d->n && rc == 0; k++) {
        TplValue key = d->aKey[aIdx[k]];
        if (k) rc = buf_append(b, o->zItemSep, o->nItemSep);
        if (rc == 0) rc = json_newline(b, o, level + 1);
        if (rc) break;
        if (key.type == TPL_STRING) rc = json_string(b, key.u.s.z, key.u.s.n);
        else if (key.type == TPL_NONE) rc = buf_puts(b, "\"null\"");
        else if (key.type == TPL_BOOL) rc = buf_puts(b, key.u.i ? "\"true\"" : "\"false\"");
        else if (key.type == TPL_INT) { snprintf(tmp, sizeof(tmp), "\"%lld\"", (long long)key.u.i); rc = buf_puts(b, tmp); }
        else if (key.type == TPL_FLOAT) { char f[40]; fmt_float(key.u.f, f, sizeof(f), 1); snprintf(tmp, sizeof(tmp), "\"%s\"", f); rc = buf_puts(b, tmp); }
        else return rerr(r, "tojson: keys must be str, int, float, bool or None, not %s", type_name(key));
        if (rc == 0) rc = buf_append(b, o->zKeySep, o->nKeySep);
        if (rc == 0 && json_dump(r, b, d->aVal[aIdx[k]], o, level + 1)) return -1;
      }
      if (rc == 0) rc = json_newline(b, o, level);
      if (rc == 0) rc = buf_puts(b, "}");
      break;
    }
    default:
      return rerr(r, "tojson: object of type %s is not JSON serializable", type_name(v));
  }
  if (rc) return buf_error(r, b);
  return 0;
}

/* ----- variables */

static int frame_set(Render *r, Frame *f, const char *zName, TplValue v) {
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->azName[i], zName) == 0) { f->aVal[i] = v; return 0; }
  if (f->n == f->nAlloc) {
    size_t nNew = f->nAlloc ? f->nAlloc * 2 : 8;
    const char **az = arena_alloc(r->pA, nNew * sizeof(char *));
    TplValue *a = arena_alloc(r->pA, nNew * sizeof(TplValue));
    if (!az || !a) return nomem(r);
    if (f->n) { memcpy(az, f->azName, f->n * sizeof(char *)); memcpy(a, f->aVal, f->n * sizeof(TplValue)); }
    f->azName = az;
    f->aVal = a;
    f->nAlloc = nNew;
  }
  f->azName[f->n] = zName;
  f->aVal[f->n] = v;
  f->n++;
  return step(r, (int64_t)(f->n / 16));
}

/* The variable's value: frames innermost first, then the caller's
** variables, then the global functions; Undefined when none has it. */
static int lookup(Render *r, const char *z, size_t n, TplValue *pOut) {
  for (Frame *f = r->pFrame; f; f = f->pParent) {
    for (size_t i = 0; i < f->n; i++) {
      if (name_is(z, n, f->azName[i])) { *pOut = f->aVal[i]; return step(r, (int64_t)(i / 16)); }
    }
  }
  TplEnv *e = r->e;
  for (size_t i = 0; i < e->nVar; i++)
    if (name_is(z, n, e->azName[i])) { *pOut = e->aVal[i]; return 0; }
  int id = lookup_id(z, n, 3);
  *pOut = val_undef();
  if (id) { pOut->type = TPL_FUNCTION; pOut->u.i = id; }
  return 0;
}

/* ----- evaluation */

static int eval(Render *r, const Node *n, TplValue *pOut);
static int call_filter(Render *r, int id, const char *zName, TplValue v, TplValue *aArg, int nArg,
                       const char **azKw, TplValue *aKw, int nKw, TplValue *pOut);
static int call_test(Render *r, int id, const char *zName, int nName, TplValue v, TplValue *aArg,
                     int nArg, int *pb);

/* Evaluates a node's positional and keyword arguments into arena arrays. */
static int eval_args(Render *r, const Node *n, TplValue **paArg, TplValue **paKw) {
  *paArg = *paKw = 0;
  if (n->nArg) {
    *paArg = arena_alloc(r->pA, (size_t)n->nArg * sizeof(TplValue));
    if (!*paArg) return nomem(r);
    for (int i = 0; i < n->nArg; i++) if (eval(r, n->aArg[i], &(*paArg)[i])) return -1;
  }
  if (n->nKw) {
    *paKw = arena_alloc(r->pA, (size_t)n->nKw * sizeof(TplValue));
    if (!*paKw) return nomem(r);
    for (int i = 0; i < n->nKw; i++) if (eval(r, n->aKw[i], &(*paKw)[i])) return -1;
  }
  return 0;
}

/* Byte offsets of the code points of a string: (units + 1,) in the arena. */
static int str_units(Render *r, TplValue s, size_t **paOff, size_t *pnUnit) {
  size_t nUnit = utf8_count(s.u.s.z, s.u.s.n), i = 0, len;
  size_t *a = arena_alloc(r->pA, (nUnit + 1) * sizeof(size_t));
  if (!a) return nomem(r);
  for (size_t k = 0; k < nUnit; k++) {
    a[k] = i;
    utf8_next((const unsigned char *)s.u.s.z + i, s.u.s.n - i, &len);
    i += len;
  }
  a[nUnit] = s.u.s.n;
  *paOff = a;
  *pnUnit = nUnit;
  return step(r, (int64_t)(s.u.s.n / 64));
}

/* obj[key]: lists and strings by (negative) index, dicts by key; a miss is
** Undefined, as Jinja's getitem; only Undefined itself cannot be indexed. */
static int get_item(Render *r, TplValue obj, TplValue key, TplValue *pOut) {
  *pOut = val_undef();
  if (obj.type == TPL_UNDEFINED) return rerr(r, "cannot index an undefined value");
  if ((obj.type == TPL_LIST || obj.type == TPL_STRING) && (key.type == TPL_INT || key.type == TPL_BOOL)) {
    if (obj.type == TPL_LIST) {
      int64_t n = (int64_t)obj.u.pList->n, i = key.u.i < 0 ? key.u.i + n : key.u.i;
      if (i >= 0 && i < n) *pOut = obj.u.pList->a[i];
      return 0;
    }
    size_t *aOff, nUnit;
    if (str_units(r, obj, &aOff, &nUnit)) return -1;
    int64_t n = (int64_t)nUnit, i = key.u.i < 0 ? key.u.i + n : key.u.i;
    if (i >= 0 && i < n) *pOut = val_str_ref(obj.u.s.z + aOff[i], aOff[i + 1] - aOff[i]);
    return 0;
  }
  if (obj.type == TPL_DICT || obj.type == TPL_NAMESPACE) {
    TplDict *d = obj.u.pDict;
    if (step(r, (int64_t)(d->n / 16))) return -1;
    for (size_t i = 0; i < d->n; i++)
      if (val_eq(d->aKey[i], key)) { *pOut = d->aVal[i]; return 0; }
  }
  return 0;
}

/* obj.name: loop attributes, dict methods and keys, string methods. */
static int get_attr(Render *r, TplValue obj, const char *z, size_t n, TplValue *pOut) {
  *pOut = val_undef();
  if (obj.type == TPL_UNDEFINED) return rerr(r, "undefined value has no attribute '%.*s'", (int)n, z);
  if (obj.type == TPL_LOOP) {
    LoopInfo *L = obj.u.p;
    int64_t len = (int64_t)L->pItems->n, i = (int64_t)L->i;
    if (name_is(z, n, "index0")) *pOut = tpl_int(i);
    else if (name_is(z, n, "index")) *pOut = tpl_int(i + 1);
    else if (name_is(z, n, "revindex")) *pOut = tpl_int(len - i);
    else if (name_is(z, n, "revindex0")) *pOut = tpl_int(len - i - 1);
    else if (name_is(z, n, "first")) *pOut = tpl_bool(i == 0);
    else if (name_is(z, n, "last")) *pOut = tpl_bool(i == len - 1);
    else if (name_is(z, n, "length")) *pOut = tpl_int(len);
    else if (name_is(z, n, "depth")) *pOut = tpl_int(1);
    else if (name_is(z, n, "depth0")) *pOut = tpl_int(0);
    else if (name_is(z, n, "previtem")) { if (i > 0) *pOut = L->pItems->a[i - 1]; }
    else if (name_is(z, n, "nextitem")) { if (i + 1 < len) *pOut = L->pItems->a[i + 1]; }
    return 0;
  }
  int id = lookup_id(z, n, 2);
  if (id && (obj.type == TPL_STRING || obj.type == TPL_DICT)) {
    int bDict = 0;
    for (size_t i = 0; i < sizeof(aMethods) / sizeof(aMethods[0]); i++)
      if (aMethods[i].id == id) bDict = aMethods[i].bDict;
    if (bDict == (obj.type == TPL_DICT)) {
      pOut->type = TPL_FUNCTION;
      pOut->u.i = -id;
      return 0;
    }
  }
  /* dict's methods that change it: Python's attribute, which the sandbox
  ** Hugging Face renders in makes undefined, not the key of that name */
  if (obj.type == TPL_DICT && (name_is(z, n, "clear") || name_is(z, n, "pop") ||
                               name_is(z, n, "popitem") || name_is(z, n, "setdefault") ||
                               name_is(z, n, "update")))
    return 0;
  if (obj.type == TPL_DICT || obj.type == TPL_NAMESPACE) {
    TplValue *p = dict_get_str(obj.u.pDict, z, n);
    if (step(r, (int64_t)(obj.u.pDict->n / 16))) return -1;
    if (p) *pOut = *p;
  }
  return 0;
}

/* Python slicing obj[a:b:c] of a list or string. */
static int get_slice(Render *r, TplValue obj, TplValue *aPart, int *abSet, TplValue *pOut) {
  int64_t idx[3] = {0, 0, 1};
  for (int k = 0; k < 3; k++) {
    if (!abSet[k] || aPart[k].type == TPL_NONE) { abSet[k] = 0; continue; }
    if (aPart[k].type != TPL_INT && aPart[k].type != TPL_BOOL)
      return rerr(r, "slice indices must be integers or None, not %s", type_name(aPart[k]));
    idx[k] = aPart[k].u.i;
  }
  if (abSet[2] && idx[2] == 0) return rerr(r, "slice step cannot be zero");
  int64_t stepv = abSet[2] ? idx[2] : 1, len;
  size_t *aOff = 0, nUnit = 0;
  if (obj.type == TPL_LIST) len = (int64_t)obj.u.pList->n;
  else if (obj.type == TPL_STRING) { if (str_units(r, obj, &aOff, &nUnit)) return -1; len = (int64_t)nUnit; }
  else if (obj.type == TPL_UNDEFINED) return rerr(r, "cannot slice an undefined value");
  else { *pOut = val_undef(); return 0; }
  /* CPython's PySlice_AdjustIndices */
  int64_t start, stop;
  if (!abSet[0]) start = stepv < 0 ? len - 1 : 0;
  else {
    start = idx[0];
    if (start < 0) { start += len; if (start < 0) start = stepv < 0 ? -1 : 0; }
    else if (start >= len) start = stepv < 0 ? len - 1 : len;
  }
  if (!abSet[1]) stop = stepv < 0 ? -1 : len;
  else {
    stop = idx[1];
    if (stop < 0) { stop += len; if (stop < 0) stop = stepv < 0 ? -1 : 0; }
    else if (stop >= len) stop = stepv < 0 ? len - 1 : len;
  }
  int64_t count = 0;
  if (stepv > 0 && start < stop) count = (stop - start - 1) / stepv + 1;
  else if (stepv < 0 && stop < start) count = (start - stop - 1) / (-stepv) + 1;
  if (step(r, count / 8)) return -1;
  if (obj.type == TPL_LIST) {
    TplValue out = list_new(r->pA, (size_t)count);
    if (out.type != TPL_LIST) return nomem(r);
    for (int64_t k = 0, i = start; k < count; k++, i += stepv) out.u.pList->a[k] = obj.u.pList->a[i];
    out.u.pList->n = (size_t)count;
    out.u.pList->bTuple = obj.u.pList->bTuple; /* a tuple's slice is a tuple */
    *pOut = out;
    return 0;
  }
  size_t nBytes = 0;
  for (int64_t k = 0, i = start; k < count; k++, i += stepv) nBytes += aOff[i + 1] - aOff[i];
  char *z = arena_alloc(r->pA, nBytes + 1);
  if (!z) return nomem(r);
  size_t j = 0;
  for (int64_t k = 0, i = start; k < count; k++, i += stepv) {
    memcpy(z + j, obj.u.s.z + aOff[i], aOff[i + 1] - aOff[i]);
    j += aOff[i + 1] - aOff[i];
  }
  z[j] = 0;
  *pOut = val_str_ref(z, j);
  return 0;
}

/* A new string of the concatenation of two. */
static int str_concat(Render *r, TplValue a, TplValue b, TplValue *pOut) {
  if (step(r, (int64_t)((a.u.s.n + b.u.s.n) / 64))) return -1;
  char *z = arena_alloc(r->pA, a.u.s.n + b.u.s.n + 1);
  if (!z) return nomem(r);
  memcpy(z, a.u.s.z, a.u.s.n);
  memcpy(z + a.u.s.n, b.u.s.z, b.u.s.n);
  z[a.u.s.n + b.u.s.n] = 0;
  *pOut = val_str_ref(z, a.u.s.n + b.u.s.n);
  return 0;
}

/* Python's floor division and modulo of integers. */
static int64_t floordiv64(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

/* Arithmetic with Python's rules; an int result that overflows int64 is an
** error (Python would grow the integer). */
static int arith(Render *r, int op, TplValue a, TplValue b, TplValue *pOut) {
  if (a.type == TPL_UNDEFINED || b.type == TPL_UNDEFINED)
    return rerr(r, "undefined value in an arithmetic operation");
  if (op == OP_ADD && a.type == TPL_STRING && b.type == TPL_STRING) return str_concat(r, a, b, pOut);
  if (op == OP_ADD && a.type == TPL_LIST && b.type == TPL_LIST &&
      a.u.pList->bTuple == b.u.pList->bTuple) { /* Python adds no list to a tuple */
    size_t n = a.u.pList->n + b.u.pList->n;
    if (step(r, (int64_t)(n / 8))) return -1;
    TplValue out = list_new(r->pA, n);
    if (out.type != TPL_LIST) return nomem(r);
    if (a.u.pList->n) memcpy(out.u.pList->a, a.u.pList->a, a.u.pList->n * sizeof(TplValue));
    if (b.u.pList->n) memcpy(out.u.pList->a + a.u.pList->n, b.u.pList->a, b.u.pList->n * sizeof(TplValue));
    out.u.pList->n = n;
    out.u.pList->bTuple = a.u.pList->bTuple;
    *pOut = out;
    return 0;
  }
  if (op == OP_MUL && ((a.type == TPL_STRING && (b.type == TPL_INT || b.type == TPL_BOOL)) ||
                       (b.type == TPL_STRING && (a.type == TPL_INT || a.type == TPL_BOOL)))) {
    TplValue s = a.type == TPL_STRING ? a : b;
    int64_t k = a.type == TPL_STRING ? b.u.i : a.u.i;
    if (k < 0 || s.u.s.n == 0) k = 0; /* '' * 2**62 is '' at once, no loop */
    if (s.u.s.n && (uint64_t)k > (uint64_t)(r->pOut->nMax ? r->pOut->nMax : ((size_t)1 << 30)) / s.u.s.n)
      return rerr(r, "string repetition over the output limit");
    size_t n = s.u.s.n * (size_t)k;
    if (step(r, (int64_t)(n / 64))) return -1;
    char *z = arena_alloc(r->pA, n + 1);
    if (!z) return nomem(r);
    for (int64_t i = 0; i < k; i++) memcpy(z + (size_t)i * s.u.s.n, s.u.s.z, s.u.s.n);
    z[n] = 0;
    *pOut = val_str_ref(z, n);
    return 0;
  }
  if (op == OP_MUL && ((a.type == TPL_LIST && (b.type == TPL_INT || b.type == TPL_BOOL)) ||
                       (b.type == TPL_LIST && (a.type == TPL_INT || a.type == TPL_BOOL)))) {
    const TplList *l = a.type == TPL_LIST ? a.u.pList : b.u.pList;
    int64_t k = a.type == TPL_LIST ? b.u.i : a.u.i;
    size_t n;
    if (k < 0) k = 0;
    if (__builtin_mul_overflow(l->n, (uint64_t)k, &n)) return nomem(r);
    if (step(r, (int64_t)(n / 8))) return -1;
    TplValue out = list_new(r->pA, n);
    if (out.type != TPL_LIST) return nomem(r);
    for (int64_t i = 0; i < k && l->n; i++)
      memcpy(out.u.pList->a + (size_t)i * l->n, l->a, l->n * sizeof(TplValue));
    out.u.pList->n = n;
    out.u.pList->bTuple = l->bTuple;
    *pOut = out;
    return 0;
  }
  if (op == OP_MOD && a.type == TPL_STRING)
    return rerr(r, "unsupported string formatting with '%%'"); /* Python's, not in the subset */
  if (!is_num(a) || !is_num(b)) {
    static const char *azOp[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    return rerr(r, "unsupported operand types for %s: '%s' and '%s'",
                op >= OP_ADD && op <= OP_POW ? azOp[op] : "?", type_name(a), type_name(b));
  }
  if (a.type != TPL_FLOAT && b.type != TPL_FLOAT) {
    int64_t x = a.u.i, y = b.u.i, z = 0;
    switch (op) {
      case OP_ADD: if (__builtin_add_overflow(x, y, &z)) goto overflow; break;
      case OP_SUB: if (__builtin_sub_overflow(x, y, &z)) goto overflow; break;
      case OP_MUL: if (__builtin_mul_overflow(x, y, &z)) goto overflow; break;
      case OP_DIV:
        if (y == 0) return rerr(r, "division by zero");
        *pOut = tpl_float((double)x / (double)y);
        return 0;
      case OP_FLOORDIV: case OP_MOD:
        if (y == 0) return rerr(r, "integer division or modulo by zero");
        if (y == -1) { /* x // -1 overflows for INT64_MIN alone; x % -1 is 0 (Python's) */
          if (op == OP_MOD) { z = 0; break; }
          if (x == INT64_MIN) goto overflow;
        }
        z = op == OP_FLOORDIV ? floordiv64(x, y) : x - floordiv64(x, y) * y;
        break;
      case OP_POW:
        if (y < 0) {
          if (x == 0) return rerr(r, "0.0 cannot be raised to a negative power");
          *pOut = tpl_float(pow((double)x, (double)y));
          return 0;
        }
        z = 1;
        for (int64_t i = 0; i < y; i++) {
          if (__builtin_mul_overflow(z, x, &z)) goto overflow;
          if (z == 0 || z == 1) break;
          if (z == -1) { z = (y - i - 1) % 2 ? -z : z; break; }
        }
        break;
    }
    *pOut = tpl_int(z);
    return 0;
  overflow:
    return rerr(r, "integer overflow");
  }
  double x = num_f(a), y = num_f(b), z = 0;
  switch (op) {
    case OP_ADD: z = x + y; break;
    case OP_SUB: z = x - y; break;
    case OP_MUL: z = x * y; break;
    case OP_DIV: if (y == 0) return rerr(r, "float division by zero"); z = x / y; break;
    case OP_FLOORDIV: case OP_MOD: {
      if (y == 0) return rerr(r, "float %s by zero", op == OP_MOD ? "modulo" : "floor division");
      /* CPython's float_divmod: floor(x / y) can be one off (1 // 0.1 is 9.0) */
      double mod = fmod(x, y), div = (x - mod) / y;
      if (mod != 0) {
        if ((y < 0) != (mod < 0)) { mod += y; div -= 1.0; }
      } else {
        mod = copysign(0.0, y);
      }
      if (div != 0) {
        double fl = floor(div);
        z = div - fl > 0.5 ? fl + 1.0 : fl;
      } else {
        z = copysign(0.0, x / y);
      }
      if (op == OP_MOD) z = mod;
      break;
    }
    case OP_POW:
      /* Python raises where C's pow gives inf or NaN from finite operands */
      if (x == 0 && y < 0) return rerr(r, "0.0 cannot be raised to a negative power");
      if (x < 0 && isfinite(y) && y != floor(y))
        return rerr(r, "negative number cannot be raised to a fractional power");
      z = pow(x, y);
      if (isinf(z) && isfinite(x) && isfinite(y)) return rerr(r, "float power: numerical result out of range");
      break;
  }
  *pOut = tpl_float(z);
  return 0;
}

/* Ordering with Python's rules: numbers, strings, lists. */
static int compare_order(Render *r, TplValue a, TplValue b, int *pCmp) {
  if (r->depth > TPL_MAX_VALUE_DEPTH) return rerr(r, "values nested deeper than %d compared", TPL_MAX_VALUE_DEPTH);
  if (is_num(a) && is_num(b)) { *pCmp = num_cmp(a, b); return 0; }
  if (a.type == TPL_STRING && b.type == TPL_STRING) { *pCmp = key_cmp(a, b); return 0; }
  if (a.type == TPL_LIST && b.type == TPL_LIST && a.u.pList->bTuple == b.u.pList->bTuple) {
    TplList *x = a.u.pList, *y = b.u.pList;
    for (size_t i = 0; i < x->n && i < y->n; i++) {
      if (val_eq(x->a[i], y->a[i])) continue;
      r->depth++;
      int rc = compare_order(r, x->a[i], y->a[i], pCmp);
      r->depth--;
      return rc;
    }
    *pCmp = x->n < y->n ? -1 : x->n > y->n;
    return 0;
  }
  return rerr(r, "'<' not supported between instances of '%s' and '%s'", type_name(a), type_name(b));
}

/* Sorts n values by their keys, both in place: stable like Python's sorted
** (equal keys keep their order, reverse or not), in n log n comparisons
** (a bottom-up merge sort; an insertion sort took 100,000 items to the
** step limit). */
static int sort_stable(Render *r, TplValue *aKey, TplValue *aVal, size_t n, int bRev) {
  if (n < 2) return 0;
  TplValue *tk = arena_alloc(r->pA, n * sizeof(TplValue)), *tv = arena_alloc(r->pA, n * sizeof(TplValue));
  if (!tk || !tv) return nomem(r);
  for (size_t w = 1; w < n; w *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = n - lo > w ? lo + w : n, hi = n - mid > w ? mid + w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        int cmp;
        if (compare_order(r, aKey[i], aKey[j], &cmp)) return -1;
        /* the right one first only when it sorts strictly before (2: unordered) */
        size_t at = (bRev ? cmp < 0 : (cmp > 0 && cmp != 2)) ? j++ : i++;
        tk[k] = aKey[at];
        tv[k++] = aVal[at];
      }
      for (; i < mid; i++, k++) tk[k] = aKey[i], tv[k] = aVal[i];
      for (; j < hi; j++, k++) tk[k] = aKey[j], tv[k] = aVal[j];
    }
    memcpy(aKey, tk, n * sizeof(TplValue));
    memcpy(aVal, tv, n * sizeof(TplValue));
  }
  return 0;
}

/* 'needle in haystack'. */
static int contains(Render *r, TplValue needle, TplValue hay, int *pb) {
  *pb = 0;
  if (hay.type == TPL_STRING) {
    if (needle.type != TPL_STRING)
      return rerr(r, "'in <string>' requires string as left operand, not %s", type_name(needle));
    if (step(r, (int64_t)((hay.u.s.n + needle.u.s.n) / 64))) return -1;
    *pb = needle.u.s.n == 0 || str_find(hay.u.s.z, hay.u.s.n, needle.u.s.z, needle.u.s.n) != 0;
    return 0;
  }
  if (hay.type == TPL_LIST) {
    if (step(r, (int64_t)(hay.u.pList->n / 8))) return -1;
    for (size_t i = 0; i < hay.u.pList->n; i++) if (val_eq(hay.u.pList->a[i], needle)) { *pb = 1; break; }
    return 0;
  }
  if (hay.type == TPL_DICT || hay.type == TPL_NAMESPACE) {
    if (step(r, (int64_t)(hay.u.pDict->n / 8))) return -1;
    for (size_t i = 0; i < hay.u.pDict->n; i++) if (val_eq(hay.u.pDict->aKey[i], needle)) { *pb = 1; break; }
    return 0;
  }
  if (hay.type == TPL_UNDEFINED) return 0;
  return rerr(r, "argument of type '%s' is not iterable", type_name(hay));
}

/* The items a for loop (or list()) sees: list items, dict keys, string
** characters; Undefined is empty. */
static int iter_items(Render *r, TplValue v, TplList **ppList) {
  if (v.type == TPL_LIST) { *ppList = v.u.pList; return 0; }
  TplValue out = list_new(r->pA, 0);
  if (out.type != TPL_LIST) return nomem(r);
  if (v.type == TPL_DICT) {
    for (size_t i = 0; i < v.u.pDict->n; i++)
      if (list_push(r->pA, out.u.pList, v.u.pDict->aKey[i])) return nomem(r);
  } else if (v.type == TPL_STRING) {
    size_t *aOff, nUnit;
    if (str_units(r, v, &aOff, &nUnit)) return -1;
    for (size_t i = 0; i < nUnit; i++)
      if (list_push(r->pA, out.u.pList, val_str_ref(v.u.s.z + aOff[i], aOff[i + 1] - aOff[i]))) return nomem(r);
  } else if (v.type != TPL_UNDEFINED) {
    return rerr(r, "'%s' object is not iterable", type_name(v));
  }
  *ppList = out.u.pList;
  return 0;
}

static int call_method(Render *r, int id, TplValue self, TplValue *aArg, int nArg,
                       const char **azKw, TplValue *aKw, int nKw, TplValue *pOut);
static int call_global(Render *r, int id, TplValue *aArg, int nArg, const char **azKw,
                       TplValue *aKw, int nKw, TplValue *pOut);
static int call_macro(Render *r, const Node *m, TplValue *aArg, int nArg, const char **azKw,
                      TplValue *aKw, int nKw, TplValue *pOut);

static int eval_node(Render *r, const Node *n, TplValue *pOut);

/* Evaluates an expression. Chains like a.b.c... or 1+1+1... are parsed
** iteratively into trees as deep as they are long, so the evaluation's
** recursion is bounded here. */
static int eval(Render *r, const Node *n, TplValue *pOut) {
  if (r->nEvalDepth >= TPL_MAX_EVAL_DEPTH) {
    *pOut = val_undef();
    return rerr(r, "expression nested deeper than %d", TPL_MAX_EVAL_DEPTH);
  }
  r->nEvalDepth++;
  int rc = eval_node(r, n, pOut);
  r->nEvalDepth--;
  return rc;
}

static int eval_node(Render *r, const Node *n, TplValue *pOut) {
  TplValue a, b;
  *pOut = val_undef();
  if (step(r, 1)) return -1;
  r->line = n->line;
  switch (n->kind) {
    case N_CONST: *pOut = n->v; return 0;
    case N_NAME:
      return lookup(r, n->zName, n->nName, pOut);
    case N_ATTR:
      if (eval(r, n->a, &a)) return -1;
      r->line = n->line;
      return get_attr(r, a, n->zName, n->nName, pOut);
    case N_ITEM:
      if (eval(r, n->a, &a) || eval(r, n->b, &b)) return -1;
      r->line = n->line;
      return get_item(r, a, b, pOut);
    case N_SLICE: {
      TplValue aPart[3];
      int abSet[3];
      if (eval(r, n->a, &a)) return -1;
      for (int k = 0; k < 3; k++) {
        abSet[k] = n->aArg[k] != 0;
        aPart[k] = val_undef();
        if (n->aArg[k] && eval(r, n->aArg[k], &aPart[k])) return -1;
      }
      r->line = n->line;
      return get_slice(r, a, aPart, abSet, pOut);
    }
    case N_CALL: {
      TplValue *aArg, *aKw;
      if (n->a->kind == N_ATTR) {
        TplValue self;
        if (eval(r, n->a->a, &self) || eval_args(r, n, &aArg, &aKw)) return -1;
        r->line = n->line;
        if (self.type == TPL_UNDEFINED)
          return rerr(r, "undefined value has no attribute '%.*s'", (int)n->a->nName, n->a->zName);
        return call_method(r, n->id, self, aArg, n->nArg, n->azKw, aKw, n->nKw, pOut);
      }
      if (eval(r, n->a, &a) || eval_args(r, n, &aArg, &aKw)) return -1;
      r->line = n->line;
      if (a.type == TPL_MACRO) return call_macro(r, a.u.p, aArg, n->nArg, n->azKw, aKw, n->nKw, pOut);
      if (a.type != TPL_FUNCTION || a.u.i <= 0)
        return rerr(r, "'%.*s' is not callable", (int)n->a->nName, n->a->zName);
      return call_global(r, (int)a.u.i, aArg, n->nArg, n->azKw, aKw, n->nKw, pOut);
    }
    case N_FILTER: {
      TplValue *aArg, *aKw;
      if (eval(r, n->a, &a) || eval_args(r, n, &aArg, &aKw)) return -1;
      r->line = n->line;
      return call_filter(r, n->id, n->zName, a, aArg, n->nArg, n->azKw, aKw, n->nKw, pOut);
    }
    case N_TEST: {
      TplValue *aArg, *aKw;
      int bRes = 0;
      if (eval(r, n->a, &a) || eval_args(r, n, &aArg, &aKw)) return -1;
      r->line = n->line;
      if (n->nKw) return rerr(r, "test '%.*s' takes no keyword arguments", (int)n->nName, n->zName);
      if (call_test(r, n->id, n->zName, (int)n->nName, a, aArg, n->nArg, &bRes)) return -1;
      *pOut = tpl_bool(n->op ? !bRes : bRes);
      return 0;
    }
    case N_NEG: case N_POS:
      if (eval(r, n->a, &a)) return -1;
      if (!is_num(a)) return rerr(r, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', type_name(a));
      if (n->kind == N_POS) *pOut = a.type == TPL_BOOL ? tpl_int(a.u.i) : a;
      else if (a.type == TPL_FLOAT) *pOut = tpl_float(-a.u.f);
      else if (a.u.i == INT64_MIN) return rerr(r, "integer overflow");
      else *pOut = tpl_int(-a.u.i);
      return 0;
    case N_NOT:
      if (eval(r, n->a, &a)) return -1;
      *pOut = tpl_bool(!truthy(a));
      return 0;
    case N_AND: /* Python returns the deciding operand */
      if (eval(r, n->a, &a)) return -1;
      if (!truthy(a)) { *pOut = a; return 0; }
      return eval(r, n->b, pOut);
    case N_OR:
      if (eval(r, n->a, &a)) return -1;
      if (truthy(a)) { *pOut = a; return 0; }
      return eval(r, n->b, pOut);
    case N_BINOP:
      if (eval(r, n->a, &a) || eval(r, n->b, &b)) return -1;
      r->line = n->line;
      return arith(r, n->op, a, b, pOut);
    case N_CONCAT: {
      TplValue sa, sb;
      if (eval(r, n->a, &a) || eval(r, n->b, &b)) return -1;
      if (to_str(r, a, &sa) || to_str(r, b, &sb)) return -1;
      return str_concat(r, sa, sb, pOut);
    }
    case N_COMPARE: {
      if (eval(r, n->a, &a)) return -1;
      for (int i = 0; i < n->nArg; i++) {
        int bRes = 0, cmp = 0;
        if (eval(r, n->aArg[i], &b)) return -1;
        r->line = n->line;
        switch (n->aOp[i]) {
          case OP_EQ: if (val_eq_charged(r, a, b, &bRes)) return -1; break;
          case OP_NE: if (val_eq_charged(r, a, b, &bRes)) return -1; bRes = !bRes; break;
          case OP_IN: if (contains(r, a, b, &bRes)) return -1; break;
          case OP_NOTIN: if (contains(r, a, b, &bRes)) return -1; bRes = !bRes; break;
          default:
            if (compare_order(r, a, b, &cmp)) return -1;
            if (cmp == 2) bRes = 0; /* NaN */
            else if (n->aOp[i] == OP_LT) bRes = cmp < 0;
            else if (n->aOp[i] == OP_LTEQ) bRes = cmp <= 0;
            else if (n->aOp[i] == OP_GT) bRes = cmp > 0;
            else bRes = cmp >= 0;
        }
        if (!bRes) { *pOut = tpl_bool(0); return 0; }
        a = b;
      }
      *pOut = tpl_bool(1);
      return 0;
    }
    case N_COND:
      if (eval(r, n->b, &b)) return -1;
      if (truthy(b)) return eval(r, n->a, pOut);
      if (n->c) return eval(r, n->c, pOut);
      return 0;
    case N_LIST: case N_TUPLE: {
      TplValue out = list_new(r->pA, (size_t)n->nArg);
      if (out.type != TPL_LIST) return nomem(r);
      for (int i = 0; i < n->nArg; i++) if (eval(r, n->aArg[i], &out.u.pList->a[i])) return -1;
      out.u.pList->n = (size_t)n->nArg;
      out.u.pList->bTuple = n->kind == N_TUPLE;
      *pOut = out;
      return 0;
    }
    case N_DICT: {
      TplValue out = dict_new(r->pA, TPL_DICT);
      if (out.type != TPL_DICT) return nomem(r);
      for (int i = 0; i + 1 < n->nArg; i += 2) {
        if (eval(r, n->aArg[i], &a) || eval(r, n->aArg[i + 1], &b)) return -1;
        if (a.type == TPL_LIST || a.type == TPL_DICT || a.type == TPL_NAMESPACE || a.type == TPL_UNDEFINED)
          return rerr(r, "unhashable dict key of type '%s'", type_name(a));
        if (dict_put(r->pA, out.u.pDict, a, b)) return nomem(r);
      }
      *pOut = out;
      return 0;
    }
  }
  return rerr(r, "internal error: unknown expression");
}

/* ----- string helpers for filters and methods */

/* True when code point c occurs in the string value chars. */
static int strip_in(const TplValue *pChars, unsigned c) {
  const unsigned char *z = (const unsigned char *)pChars->u.s.z;
  size_t n = pChars->u.s.n, i = 0, len;
  while (i < n) {
    if (utf8_next(z + i, n - i, &len) == c) return 1;
    i += len;
  }
  return 0;
}

/* Python's strip/lstrip/rstrip: code points in chars, or whitespace when
** pChars is NULL. */
static TplValue str_strip(TplValue s, const TplValue *pChars, int bLeft, int bRight) {
  const unsigned char *z = (const unsigned char *)s.u.s.z;
  size_t n = s.u.s.n, i0 = 0, i1 = n, len;
  if (bLeft) {
    while (i0 < n) {
      unsigned c = utf8_next(z + i0, n - i0, &len);
      if (!(pChars ? strip_in(pChars, c) : cp_isspace(c))) break;
      i0 += len;
    }
  }
  if (bRight) {
    size_t i = i0, end = i0;
    while (i < n) {
      unsigned c = utf8_next(z + i, n - i, &len);
      i += len;
      if (!(pChars ? strip_in(pChars, c) : cp_isspace(c))) end = i;
    }
    i1 = end;
  }
  return val_str_ref(s.u.s.z + i0, i1 - i0);
}

/* The case mappings to more than one code point (Unicode's
** SpecialCasing.txt, unconditional), as Python's str.upper() and
** str.title() give them: code point, upper, title (zeros pad). Every other
** mapping is utf8proc's simple one, which equals Python's (3.11, Unicode 14)
** for every code point; the one longer lower-case mapping, U+0130, is in
** cp_map. tests/ref/make_case_table.py prints this table and the next. */
static const struct { unsigned c, up[3], title[3]; } aSpecialCase[] = {
  {0x00DF, {0x0053, 0x0053}, {0x0053, 0x0073}},
  {0x0149, {0x02BC, 0x004E}, {0x02BC, 0x004E}},
  {0x01F0, {0x004A, 0x030C}, {0x004A, 0x030C}},
  {0x0390, {0x0399, 0x0308, 0x0301}, {0x0399, 0x0308, 0x0301}},
  {0x03B0, {0x03A5, 0x0308, 0x0301}, {0x03A5, 0x0308, 0x0301}},
  {0x0587, {0x0535, 0x0552}, {0x0535, 0x0582}},
  {0x1E96, {0x0048, 0x0331}, {0x0048, 0x0331}},
  {0x1E97, {0x0054, 0x0308}, {0x0054, 0x0308}},
  {0x1E98, {0x0057, 0x030A}, {0x0057, 0x030A}},
  {0x1E99, {0x0059, 0x030A}, {0x0059, 0x030A}},
  {0x1E9A, {0x0041, 0x02BE}, {0x0041, 0x02BE}},
  {0x1F50, {0x03A5, 0x0313}, {0x03A5, 0x0313}},
  {0x1F52, {0x03A5, 0x0313, 0x0300}, {0x03A5, 0x0313, 0x0300}},
  {0x1F54, {0x03A5, 0x0313, 0x0301}, {0x03A5, 0x0313, 0x0301}},
  {0x1F56, {0x03A5, 0x0313, 0x0342}, {0x03A5, 0x0313, 0x0342}},
  {0x1F80, {0x1F08, 0x0399}, {0x1F88}},
  {0x1F81, {0x1F09, 0x0399}, {0x1F89}},
  {0x1F82, {0x1F0A, 0x0399}, {0x1F8A}},
  {0x1F83, {0x1F0B, 0x0399}, {0x1F8B}},
  {0x1F84, {0x1F0C, 0x0399}, {0x1F8C}},
  {0x1F85, {0x1F0D, 0x0399}, {0x1F8D}},
  {0x1F86, {0x1F0E, 0x0399}, {0x1F8E}},
  {0x1F87, {0x1F0F, 0x0399}, {0x1F8F}},
  {0x1F88, {0x1F08, 0x0399}, {0x1F88}},
  {0x1F89, {0x1F09, 0x0399}, {0x1F89}},
  {0x1F8A, {0x1F0A, 0x0399}, {0x1F8A}},
  {0x1F8B, {0x1F0B, 0x0399}, {0x1F8B}},
  {0x1F8C, {0x1F0C, 0x0399}, {0x1F8C}},
  {0x1F8D, {0x1F0D, 0x0399}, {0x1F8D}},
  {0x1F8E, {0x1F0E, 0x0399}, {0x1F8E}},
  {0x1F8F, {0x1F0F, 0x0399}, {0x1F8F}},
  {0x1F90, {0x1F28, 0x0399}, {0x1F98}},
  {0x1F91, {0x1F29, 0x0399}, {0x1F99}},
  {0x1F92, {0x1F2A, 0x0399}, {0x1F9A}},
  {0x1F93, {0x1F2B, 0x0399}, {0x1F9B}},
  {0x1F94, {0x1F2C, 0x0399}, {0x1F9C}},
  {0x1F95, {0x1F2D, 0x0399}, {0x1F9D}},
  {0x1F96, {0x1F2E, 0x0399}, {0x1F9E}},
  {0x1F97, {0x1F2F, 0x0399}, {0x1F9F}},
  {0x1F98, {0x1F28, 0x0399}, {0x1F98}},
  {0x1F99, {0x1F29, 0x0399}, {0x1F99}},
  {0x1F9A, {0x1F2A, 0x0399}, {0x1F9A}},
  {0x1F9B, {0x1F2B, 0x0399}, {0x1F9B}},
  {0x1F9C, {0x1F2C, 0x0399}, {0x1F9C}},
  {0x1F9D, {0x1F2D, 0x0399}, {0x1F9D}},
  {0x1F9E, {0x1F2E, 0x0399}, {0x1F9E}},
  {0x1F9F, {0x1F2F, 0x0399}, {0x1F9F}},
  {0x1FA0, {0x1F68, 0x0399}, {0x1FA8}},
  {0x1FA1, {0x1F69, 0x0399}, {0x1FA9}},
  {0x1FA2, {0x1F6A, 0x0399}, {0x1FAA}},
  {0x1FA3, {0x1F6B, 0x0399}, {0x1FAB}},
  {0x1FA4, {0x1F6C, 0x0399}, {0x1FAC}},
  {0x1FA5, {0x1F6D, 0x0399}, {0x1FAD}},
  {0x1FA6, {0x1F6E, 0x0399}, {0x1FAE}},
  {0x1FA7, {0x1F6F, 0x0399}, {0x1FAF}},
  {0x1FA8, {0x1F68, 0x0399}, {0x1FA8}},
  {0x1FA9, {0x1F69, 0x0399}, {0x1FA9}},
  {0x1FAA, {0x1F6A, 0x0399}, {0x1FAA}},
  {0x1FAB, {0x1F6B, 0x0399}, {0x1FAB}},
  {0x1FAC, {0x1F6C, 0x0399}, {0x1FAC}},
  {0x1FAD, {0x1F6D, 0x0399}, {0x1FAD}},
  {0x1FAE, {0x1F6E, 0x0399}, {0x1FAE}},
  {0x1FAF, {0x1F6F, 0x0399}, {0x1FAF}},
  {0x1FB2, {0x1FBA, 0x0399}, {0x1FBA, 0x0345}},
  {0x1FB3, {0x0391, 0x0399}, {0x1FBC}},
  {0x1FB4, {0x0386, 0x0399}, {0x0386, 0x0345}},
  {0x1FB6, {0x0391, 0x0342}, {0x0391, 0x0342}},
  {0x1FB7, {0x0391, 0x0342, 0x0399}, {0x0391, 0x0342, 0x0345}},
  {0x1FBC, {0x0391, 0x0399}, {0x1FBC}},
  {0x1FC2, {0x1FCA, 0x0399}, {0x1FCA, 0x0345}},
  {0x1FC3, {0x0397, 0x0399}, {0x1FCC}},
  {0x1FC4, {0x0389, 0x0399}, {0x0389, 0x0345}},
  {0x1FC6, {0x0397, 0x0342}, {0x0397, 0x0342}},
  {0x1FC7, {0x0397, 0x0342, 0x0399}, {0x0397, 0x0342, 0x0345}},
  {0x1FCC, {0x0397, 0x0399}, {0x1FCC}},
  {0x1FD2, {0x0399, 0x0308, 0x0300}, {0x0399, 0x0308, 0x0300}},
  {0x1FD3, {0x0399, 0x0308, 0x0301}, {0x0399, 0x0308, 0x0301}},
  {0x1FD6, {0x0399, 0x0342}, {0x0399, 0x0342}},
  {0x1FD7, {0x0399, 0x0308, 0x0342}, {0x0399, 0x0308, 0x0342}},
  {0x1FE2, {0x03A5, 0x0308, 0x0300}, {0x03A5, 0x0308, 0x0300}},
  {0x1FE3, {0x03A5, 0x0308, 0x0301}, {0x03A5, 0x0308, 0x0301}},
  {0x1FE4, {0x03A1, 0x0313}, {0x03A1, 0x0313}},
  {0x1FE6, {0x03A5, 0x0342}, {0x03A5, 0x0342}},
  {0x1FE7, {0x03A5, 0x0308, 0x0342}, {0x03A5, 0x0308, 0x0342}},
  {0x1FF2, {0x1FFA, 0x0399}, {0x1FFA, 0x0345}},
  {0x1FF3, {0x03A9, 0x0399}, {0x1FFC}},
  {0x1FF4, {0x038F, 0x0399}, {0x038F, 0x0345}},
  {0x1FF6, {0x03A9, 0x0342}, {0x03A9, 0x0342}},
  {0x1FF7, {0x03A9, 0x0342, 0x0399}, {0x03A9, 0x0342, 0x0345}},
  {0x1FFC, {0x03A9, 0x0399}, {0x1FFC}},
  {0xFB00, {0x0046, 0x0046}, {0x0046, 0x0066}},
  {0xFB01, {0x0046, 0x0049}, {0x0046, 0x0069}},
  {0xFB02, {0x0046, 0x004C}, {0x0046, 0x006C}},
  {0xFB03, {0x0046, 0x0046, 0x0049}, {0x0046, 0x0066, 0x0069}},
  {0xFB04, {0x0046, 0x0046, 0x004C}, {0x0046, 0x0066, 0x006C}},
  {0xFB05, {0x0053, 0x0054}, {0x0053, 0x0074}},
  {0xFB06, {0x0053, 0x0054}, {0x0053, 0x0074}},
  {0xFB13, {0x0544, 0x0546}, {0x0544, 0x0576}},
  {0xFB14, {0x0544, 0x0535}, {0x0544, 0x0565}},
  {0xFB15, {0x0544, 0x053B}, {0x0544, 0x056B}},
  {0xFB16, {0x054E, 0x0546}, {0x054E, 0x0576}},
  {0xFB17, {0x0544, 0x053D}, {0x0544, 0x056D}},
};

/* Code points with Unicode's Other_Lowercase or Other_Uppercase property:
** cased (Python's islower/isupper) though not of category Lu, Ll or Lt. */
static const unsigned aOtherCased[][2] = {
  {0xAA, 0xAA}, {0xBA, 0xBA}, {0x2B0, 0x2B8}, {0x2C0, 0x2C1}, {0x2E0, 0x2E4}, {0x345, 0x345},
  {0x37A, 0x37A}, {0x1D2C, 0x1D6A}, {0x1D78, 0x1D78}, {0x1D9B, 0x1DBF}, {0x2071, 0x2071},
  {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2160, 0x217F}, {0x24B6, 0x24E9}, {0x2C7C, 0x2C7D},
  {0xA69C, 0xA69D}, {0xA770, 0xA770}, {0xA7F8, 0xA7F9}, {0xAB5C, 0xAB5F}, {0x10780, 0x10780},
  {0x10783, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x1F130, 0x1F149},
  {0x1F150, 0x1F169}, {0x1F170, 0x1F189},
};

/* Unicode's Cased property, which Python's title() and final sigma read. */
static int cp_cased(unsigned c) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return 1;
  for (size_t i = 0; i < sizeof(aOtherCased) / sizeof(aOtherCased[0]) && c >= aOtherCased[i][0]; i++)
    if (c <= aOtherCased[i][1]) return 1; /* the ranges are in order */
  return 0;
}

/* What str.islower() and str.isupper() read of code point c: 1 for
** Python's Lowercase property (Ll and Other_Lowercase), 2 for Uppercase (Lu
** and Other_Uppercase), 3 for a titlecase letter (Lt), 0 when uncased. */
static int cp_case_kind(unsigned c) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  if (k == UTF8PROC_CATEGORY_LL) return 1;
  if (k == UTF8PROC_CATEGORY_LU) return 2;
  if (k == UTF8PROC_CATEGORY_LT) return 3;
  if (!cp_cased(c)) return 0;
  /* Other_Uppercase: capital Roman numerals, circled and squared capitals */
  if ((c >= 0x2160 && c <= 0x216F) || (c >= 0x24B6 && c <= 0x24CF) || (c >= 0x1F130 && c <= 0x1F189)) return 2;
  return 1;
}

/* Unicode's Case_Ignorable: marks, format characters, modifier letters and
** symbols, and the word-internal punctuation of Word_Break MidLetter,
** MidNumLet and Single_Quote. What Python's final-sigma rule looks past;
** it gives Python's answer for every code point of Unicode 14. */
static int cp_case_ignorable(unsigned c) {
  switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK: return 1;
    default: break;
  }
  static const unsigned aMid[] = {0x27, 0x2E, 0x3A, 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019,
                                  0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
  for (size_t i = 0; i < sizeof(aMid) / sizeof(aMid[0]); i++)
    if (c == aMid[i]) return 1;
  return 0;
}

/* Code point c in lower (how 0), upper (1) or title case (2), as Python's
** str methods map it: into m, returning how many code points (1 to 3). */
static int cp_map(unsigned c, int how, unsigned m[3]) {
  const size_t nSpecial = sizeof(aSpecialCase) / sizeof(aSpecialCase[0]);
  if (how == 0 && c == 0x130) { m[0] = 0x69; m[1] = 0x307; return 2; }
  if (how > 0) {
    size_t lo = 0, hi = nSpecial;
    while (lo < hi) { /* the table is sorted by code point */
      size_t mid = (lo + hi) / 2;
      if (aSpecialCase[mid].c < c) lo = mid + 1;
      else hi = mid;
    }
    if (lo < nSpecial && aSpecialCase[lo].c == c) {
      const unsigned *p = how == 1 ? aSpecialCase[lo].up : aSpecialCase[lo].title;
      int n = 0;
      while (n < 3 && p[n]) { m[n] = p[n]; n++; }
      return n;
    }
  }
  utf8proc_int32_t x = (utf8proc_int32_t)c;
  m[0] = (unsigned)(how == 0 ? utf8proc_tolower(x) : how == 1 ? utf8proc_toupper(x) : utf8proc_totitle(x));
  return 1;
}

/* Whether a capital sigma lower-cased at z[i] (len bytes) ends a word:
** Python's Final_Sigma, a cased letter before it (bCasedBefore, past
** case-ignorable ones) and none after it. */
static int final_sigma(const char *z, size_t n, size_t i, size_t len, int bCasedBefore) {
  if (!bCasedBefore) return 0;
  for (i += len; i < n; i += len) {
    unsigned c = utf8_next((const unsigned char *)z + i, n - i, &len);
    if (!cp_case_ignorable(c)) return !cp_cased(c);
  }
  return 1;
}

/* Whether Jinja's title filter starts a word after code point c: its
** words are split at runs of "-", whitespace, "(", "{", "[" and "<". */
static int jinja_word_break(unsigned c) {
  return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || cp_isspace(c);
}

/* Case mapping of a string as Python's str methods do it: mode 0 lower, 1
** upper, 2 capitalize (the first code point in title case), 3 str.title()
** (title case after an uncased code point), 4 Jinja's title filter (each
** word split as jinja_word_break says, its first code point upper-cased and
** the rest lower-cased, as item[0].upper() + item[1:].lower()). A capital
** sigma lower-cases to the final form where Python's rule puts it (for
** mode 4 within the lower-cased part of a word: Python sees only
** item[1:]). */
static int str_case(Render *r, TplValue s, int mode, TplValue *pOut) {
  Buf b;
  buf_init(r, &b, 0);
  if (step(r, (int64_t)(s.u.s.n / 64))) return -1;
  size_t i = 0, len;
  int bPrevCased = 0, bFirst = 1, bWordStart = 1, bCasedBefore = 0;
  while (i < s.u.s.n) {
    unsigned c = utf8_next((const unsigned char *)s.u.s.z + i, s.u.s.n - i, &len);
    int bUp = mode == 1 || (mode == 2 && bFirst) || (mode == 3 && !bPrevCased) ||
              (mode == 4 && bWordStart);
    char out[16];
    int n = 0;
    if (c >= 0xDC80 && c <= 0xDCFF) { out[0] = (char)(c & 0xFF); n = 1; } /* an invalid byte */
    else {
      unsigned m[3];
      int k = cp_map(c, bUp ? (mode == 1 || mode == 4 ? 1 : 2) : 0, m);
      if (c == 0x3A3 && !bUp && final_sigma(s.u.s.z, s.u.s.n, i, len, bCasedBefore)) m[0] = 0x3C2;
      for (int j = 0; j < k; j++) n += utf8_put(out + n, m[j]);
    }
    if (buf_append(&b, out, (size_t)n)) { buf_free(&b); return nomem(r); }
    int bCased = cp_cased(c);
    bPrevCased = bCased;
    if (!cp_case_ignorable(c)) bCasedBefore = bCased;
    if (mode == 4 && bWordStart) bCasedBefore = 0; /* item[1:] starts after it */
    bWordStart = jinja_word_break(c);
    bFirst = 0;
    i += len;
  }
  return buf_take(r, &b, pOut);
}

/* Python's str.replace(old, new, count). */
static int str_replace(Render *r, TplValue s, TplValue o, TplValue nw, int64_t count, TplValue *pOut) {
  Buf b;
  buf_init(r, &b, 0);
  size_t i = 0;
  int64_t k = 0;
  if (step(r, (int64_t)(s.u.s.n / 16))) return -1;
  if (o.u.s.n == 0) {
    /* between every code point, and at both ends */
    size_t len;
    while (count < 0 || k < count) {
      if (buf_append(&b, nw.u.s.z, nw.u.s.n)) goto nomem;
      k++;
      if (i >= s.u.s.n) break;
      utf8_next((const unsigned char *)s.u.s.z + i, s.u.s.n - i, &len);
      if (buf_append(&b, s.u.s.z + i, len)) goto nomem;
      i += len;
      if (step(r, (int64_t)(nw.u.s.n / 64))) { buf_free(&b); return -1; }
    }
    if (buf_append(&b, s.u.s.z + i, s.u.s.n - i)) goto nomem;
  } else {
    while (i < s.u.s.n) {
      const char *zAt = count < 0 || k < count ? str_find(s.u.s.z + i, s.u.s.n - i, o.u.s.z, o.u.s.n) : 0;
      size_t j = zAt ? (size_t)(zAt - s.u.s.z) : s.u.s.n;
      if (buf_append(&b, s.u.s.z + i, j - i)) goto nomem;
      if (!zAt) break;
      if (buf_append(&b, nw.u.s.z, nw.u.s.n)) goto nomem;
      if (step(r, (int64_t)(nw.u.s.n / 64))) { buf_free(&b); return -1; }
      i = j + o.u.s.n;
      k++;
    }
  }
  return buf_take(r, &b, pOut);
nomem:
  buf_free(&b);
  return nomem(r);
}

/* Python's str.split / str.rsplit (sep NULL: runs of whitespace). */
static int str_split(Render *r, TplValue s, const TplValue *pSep, int64_t maxsplit, int bRight,
                     TplValue *pOut) {
  TplValue out = list_new(r->pA, 0);
  if (out.type != TPL_LIST) return nomem(r);
  TplList *l = out.u.pList;
  const char *z = s.u.s.z;
  size_t n = s.u.s.n, len;
  if (step(r, (int64_t)(n / 16))) return -1;
  if (pSep && pSep->u.s.n == 0) return rerr(r, "split: empty separator");
  if (!bRight) {
    size_t i = 0;
    int64_t k = 0;
    if (!pSep) {
      for (;;) {
        while (i < n && cp_isspace(utf8_next((const unsigned char *)z + i, n - i, &len))) i += len;
        if (i >= n) break;
        if (maxsplit >= 0 && k >= maxsplit) {
          if (list_push(r->pA, l, val_str_ref(z + i, n - i))) return nomem(r);
          break;
        }
        size_t j = i;
        while (j < n && !cp_isspace(utf8_next((const unsigned char *)z + j, n - j, &len))) j += len;
        if (list_push(r->pA, l, val_str_ref(z + i, j - i))) return nomem(r);
        k++;
        i = j;
      }
    } else {
      const char *zs = pSep->u.s.z;
      size_t ns = pSep->u.s.n, start = 0;
      const char *zAt;
      while ((maxsplit < 0 || k < maxsplit) && (zAt = str_find(z + start, n - start, zs, ns)) != 0) {
        i = (size_t)(zAt - z);
        if (list_push(r->pA, l, val_str_ref(z + start, i - start))) return nomem(r);
        k++;
        start = i + ns;
      }
      if (list_push(r->pA, l, val_str_ref(z + start, n - start))) return nomem(r);
    }
  } else {
    /* collect from the right, then reverse */
    int64_t k = 0;
    if (!pSep) {
      size_t end = ws_rstrip_len(z, n);
      for (;;) {
        if (end == 0) break;
        if (maxsplit >= 0 && k >= maxsplit) {
          if (list_push(r->pA, l, val_str_ref(z, end))) return nomem(r);
          break;
        }
        /* start of the last word before end */
        size_t i = 0, wordStart = 0, len2;
        while (i < end) {
          unsigned c = utf8_next((const unsigned char *)z + i, end - i, &len2);
          i += len2;
          if (cp_isspace(c)) wordStart = i;
        }
        if (list_push(r->pA, l, val_str_ref(z + wordStart, end - wordStart))) return nomem(r);
        k++;
        end = ws_rstrip_len(z, wordStart);
      }
    } else {
      /* the leftmost matches in the reversed string are the rightmost ones
      ** here: memmem searches forward only */
      size_t ns = pSep->u.s.n, end = n, j = 0;
      char *zRev = arena_alloc(r->pA, n + 1), *zsRev = arena_alloc(r->pA, ns + 1);
      if (!zRev || !zsRev) return nomem(r);
      for (size_t a = 0; a < n; a++) zRev[a] = z[n - 1 - a];
      for (size_t a = 0; a < ns; a++) zsRev[a] = pSep->u.s.z[ns - 1 - a];
      const char *zAt;
      while ((maxsplit < 0 || k < maxsplit) && (zAt = str_find(zRev + j, n - j, zsRev, ns)) != 0) {
        size_t q = (size_t)(zAt - zRev), i = n - q - ns; /* the match is z[i..i+ns) */
        if (list_push(r->pA, l, val_str_ref(z + i + ns, end - i - ns))) return nomem(r);
        k++;
        end = i;
        j = q + ns;
      }
      if (list_push(r->pA, l, val_str_ref(z, end))) return nomem(r);
    }
    for (size_t a = 0, b = l->n ? l->n - 1 : 0; a < b; a++, b--) {
      TplValue t = l->a[a]; l->a[a] = l->a[b]; l->a[b] = t;
    }
  }
  *pOut = out;
  return 0;
}

/* The keyword argument zName, or NULL. */
static TplValue *kwarg(const char **azKw, TplValue *aKw, int nKw, const char *zName) {
  for (int i = 0; i < nKw; i++) if (strcmp(azKw[i], zName) == 0) return &aKw[i];
  return 0;
}

/* Argument i (positional) or the keyword zName, or NULL when absent. */
static TplValue *arg_or_kw(TplValue *aArg, int nArg, int i, const char **azKw, TplValue *aKw,
                           int nKw, const char *zName) {
  if (i < nArg) return &aArg[i];
  return kwarg(azKw, aKw, nKw, zName);
}

static int need_str(Render *r, const char *zWhat, TplValue v) {
  if (v.type != TPL_STRING) return rerr(r, "%s: expected a string, not %s", zWhat, type_name(v));
  return 0;
}

static int need_int(Render *r, const char *zWhat, TplValue v) {
  if (v.type != TPL_INT && v.type != TPL_BOOL) return rerr(r, "%s: expected an integer, not %s", zWhat, type_name(v));
  return 0;
}

/* Rejects keyword arguments other than those named in azOk (NULL-ended). */
static int check_kw(Render *r, const char *zWhat, const char **azKw, int nKw, const char *const *azOk) {
  for (int i = 0; i < nKw; i++) {
    int ok = 0;
    for (int j = 0; azOk && azOk[j]; j++) if (strcmp(azKw[i], azOk[j]) == 0) ok = 1;
    if (!ok) return rerr(r, "%s: unexpected keyword argument '%s'", zWhat, azKw[i]);
  }
  return 0;
}

static int check_nargs(Render *r, const char *zWhat, int nArg, int nMin, int nMax) {
  if (nArg >= nMin && nArg <= nMax) return 0;
  if (nMin == nMax)
    return rerr(r, "%s: takes %d argument%s (this interpreter's subset), got %d", zWhat, nMin,
                nMin == 1 ? "" : "s", nArg);
  return rerr(r, "%s: takes %d to %d arguments (this interpreter's subset), got %d", zWhat, nMin,
              nMax, nArg);
}

/* Methods of strings and dicts. */
static int call_method(Render *r, int id, TplValue self, TplValue *aArg, int nArg,
                       const char **azKw, TplValue *aKw, int nKw, TplValue *pOut) {
  const char *zName = "method";
  int bDict = 0;
  for (size_t i = 0; i < sizeof(aMethods) / sizeof(aMethods[0]); i++)
    if (aMethods[i].id == id) { zName = aMethods[i].z; bDict = aMethods[i].bDict; }
  if (bDict ? self.type != TPL_DICT : self.type != TPL_STRING)
    return rerr(r, "'%s' object has no method '%s'", type_name(self), zName);
  if (id != M_SPLIT && id != M_RSPLIT && check_kw(r, zName, azKw, nKw, 0)) return -1;
  switch (id) {
    case M_STARTSWITH: case M_ENDSWITH: {
      if (check_nargs(r, zName, nArg, 1, 1)) return -1;
      TplValue p = aArg[0];
      TplList one = {&aArg[0], 1, 1, 0};
      TplList *l = p.type == TPL_LIST ? p.u.pList : &one;
      int b = 0;
      for (size_t i = 0; i < l->n && !b; i++) {
        TplValue x = l->a[i];
        if (need_str(r, zName, x)) return -1;
        if (x.u.s.n <= self.u.s.n)
          b = memcmp(self.u.s.z + (id == M_STARTSWITH ? 0 : self.u.s.n - x.u.s.n), x.u.s.z, x.u.s.n) == 0;
      }
      *pOut = tpl_bool(b);
      return 0;
    }
    case M_SPLIT: case M_RSPLIT: {
      static const char *const azOk[] = {"sep", "maxsplit", 0};
      if (check_kw(r, zName, azKw, nKw, azOk) || check_nargs(r, zName, nArg, 0, 2)) return -1;
      TplValue *pSep = arg_or_kw(aArg, nArg, 0, azKw, aKw, nKw, "sep");
      TplValue *pMax = arg_or_kw(aArg, nArg, 1, azKw, aKw, nKw, "maxsplit");
      if (pSep && pSep->type == TPL_NONE) pSep = 0;
      if (pSep && need_str(r, zName, *pSep)) return -1;
      if (pMax && need_int(r, zName, *pMax)) return -1;
      return str_split(r, self, pSep, pMax ? pMax->u.i : -1, id == M_RSPLIT, pOut);
    }
    case M_STRIP: case M_LSTRIP: case M_RSTRIP: {
      if (check_nargs(r, zName, nArg, 0, 1)) return -1;
      const TplValue *pChars = nArg && aArg[0].type != TPL_NONE ? &aArg[0] : 0;
      if (pChars && need_str(r, zName, *pChars)) return -1;
      if (step(r, (int64_t)(self.u.s.n / 64))) return -1;
      *pOut = str_strip(self, pChars, id != M_RSTRIP, id != M_LSTRIP);
      return 0;
    }
    case M_REPLACE:
      if (check_nargs(r, zName, nArg, 2, 3) || need_str(r, zName, aArg[0]) || need_str(r, zName, aArg[1]) ||
          (nArg > 2 && need_int(r, zName, aArg[2]))) return -1;
      return str_replace(r, self, aArg[0], aArg[1], nArg > 2 ? aArg[2].u.i : -1, pOut);
    case M_UPPER: case M_LOWER: case M_TITLE: case M_CAPITALIZE:
      if (check_nargs(r, zName, nArg, 0, 0)) return -1;
      return str_case(r, self, id == M_LOWER ? 0 : id == M_UPPER ? 1 : id == M_CAPITALIZE ? 2 : 3, pOut);
    case M_FIND: case M_COUNT: {
      if (check_nargs(r, zName, nArg, 1, 3) || need_str(r, zName, aArg[0])) return -1;
      for (int k = 1; k < nArg; k++)
        if (aArg[k].type != TPL_NONE && need_int(r, zName, aArg[k])) return -1;
      TplValue x = aArg[0];
      if (step(r, (int64_t)(self.u.s.n / 64))) return -1;
      /* s[start:end] in code points, as Python's ADJUST_INDICES clamps them */
      int64_t len = (int64_t)utf8_count(self.u.s.z, self.u.s.n);
      int64_t start = nArg > 1 && aArg[1].type != TPL_NONE ? aArg[1].u.i : 0;
      int64_t end = nArg > 2 && aArg[2].type != TPL_NONE ? aArg[2].u.i : len;
      if (end > len) end = len;
      else if (end < 0) end = end + len < 0 ? 0 : end + len;
      if (start < 0) start = start + len < 0 ? 0 : start + len;
      int64_t nSub = (int64_t)utf8_count(x.u.s.z, x.u.s.n);
      if (end - start < nSub) { *pOut = tpl_int(id == M_FIND ? -1 : 0); return 0; }
      if (nSub == 0) { *pOut = tpl_int(id == M_FIND ? start : end - start + 1); return 0; }
      size_t b0 = utf8_offset(self.u.s.z, self.u.s.n, start);
      size_t b1 = b0 + utf8_offset(self.u.s.z + b0, self.u.s.n - b0, end - start);
      if (id == M_FIND) {
        const char *zAt = str_find(self.u.s.z + b0, b1 - b0, x.u.s.z, x.u.s.n);
        *pOut = tpl_int(zAt ? (int64_t)utf8_count(self.u.s.z, (size_t)(zAt - self.u.s.z)) : -1);
      } else {
        int64_t k = 0;
        const char *zAt;
        for (size_t i = b0; (zAt = str_find(self.u.s.z + i, b1 - i, x.u.s.z, x.u.s.n)) != 0; k++)
          i = (size_t)(zAt - self.u.s.z) + x.u.s.n;
        *pOut = tpl_int(k);
      }
      return 0;
    }
    case M_JOIN: {
      if (check_nargs(r, zName, nArg, 1, 1)) return -1;
      TplList *l;
      if (iter_items(r, aArg[0], &l)) return -1;
      Buf b;
      buf_init(r, &b, 0);
      for (size_t i = 0; i < l->n; i++) {
        if (l->a[i].type != TPL_STRING) { buf_free(&b); return rerr(r, "join: sequence item %zu: expected str, not %s", i, type_name(l->a[i])); }
        if ((i && buf_append(&b, self.u.s.z, self.u.s.n)) || buf_append(&b, l->a[i].u.s.z, l->a[i].u.s.n)) {
          buf_free(&b);
          return nomem(r);
        }
        if (step(r, (int64_t)(1 + (l->a[i].u.s.n + self.u.s.n) / 64))) { buf_free(&b); return -1; }
      }
      return buf_take(r, &b, pOut);
    }
    case M_ITEMS: case M_KEYS: case M_VALUES: {
      if (check_nargs(r, zName, nArg, 0, 0)) return -1;
      TplDict *d = self.u.pDict;
      TplValue out = list_new(r->pA, d->n);
      if (out.type != TPL_LIST) return nomem(r);
      if (step(r, (int64_t)(d->n / 8))) return -1;
      for (size_t i = 0; i < d->n; i++) {
        if (id == M_KEYS) out.u.pList->a[i] = d->aKey[i];
        else if (id == M_VALUES) out.u.pList->a[i] = d->aVal[i];
        else {
          TplValue t = list_new(r->pA, 2);
          if (t.type != TPL_LIST) return nomem(r);
          t.u.pList->a[0] = d->aKey[i];
          t.u.pList->a[1] = d->aVal[i];
          t.u.pList->n = 2;
          t.u.pList->bTuple = 1;
          out.u.pList->a[i] = t;
        }
      }
      out.u.pList->n = d->n;
      *pOut = out;
      return 0;
    }
    case M_GET: {
      if (check_nargs(r, zName, nArg, 1, 2)) return -1;
      TplDict *d = self.u.pDict;
      if (step(r, (int64_t)(d->n / 16))) return -1;
      *pOut = nArg > 1 ? aArg[1] : tpl_none();
      for (size_t i = 0; i < d->n; i++)
        if (val_eq(d->aKey[i], aArg[0])) { *pOut = d->aVal[i]; break; }
      return 0;
    }
  }
  return rerr(r, "unsupported method '%s'", zName);
}

/* Global functions: namespace(), range(), dict(), raise_exception(),
** strftime_now(). */
static int call_global(Render *r, int id, TplValue *aArg, int nArg, const char **azKw,
                       TplValue *aKw, int nKw, TplValue *pOut) {
  switch (id) {
    case G_NAMESPACE: case G_DICT: {
      TplValue out = dict_new(r->pA, id == G_NAMESPACE ? TPL_NAMESPACE : TPL_DICT);
      const char *zName = id == G_NAMESPACE ? "namespace" : "dict";
      if (out.type == TPL_UNDEFINED) return nomem(r);
      if (check_nargs(r, zName, nArg, 0, 1)) return -1;
      if (nArg) {
        if (aArg[0].type != TPL_DICT && aArg[0].type != TPL_NAMESPACE)
          return rerr(r, "%s: the positional argument must be a dict", zName);
        TplDict *d = aArg[0].u.pDict;
        for (size_t i = 0; i < d->n; i++)
          if (dict_put(r->pA, out.u.pDict, d->aKey[i], d->aVal[i])) return nomem(r);
      }
      for (int i = 0; i < nKw; i++) {
        TplValue k = val_str_ref(azKw[i], strlen(azKw[i]));
        if (dict_put(r->pA, out.u.pDict, k, aKw[i])) return nomem(r);
      }
      *pOut = out;
      return 0;
    }
    case G_RANGE: {
      int64_t a = 0, b = 0, s = 1;
      if (check_kw(r, "range", azKw, nKw, 0) || check_nargs(r, "range", nArg, 1, 3)) return -1;
      for (int i = 0; i < nArg; i++) if (need_int(r, "range", aArg[i])) return -1;
      if (nArg == 1) b = aArg[0].u.i;
      else { a = aArg[0].u.i; b = aArg[1].u.i; if (nArg == 3) s = aArg[2].u.i; }
      if (s == 0) return rerr(r, "range: step must not be zero");
      /* in unsigned arithmetic: the span of two int64s can exceed INT64_MAX
      ** (the count of range(-2**63, 2**63 - 1) read as -1 and passed) */
      uint64_t count = 0;
      if (s > 0 && a < b) count = ((uint64_t)b - (uint64_t)a - 1) / (uint64_t)s + 1;
      else if (s < 0 && b < a) count = ((uint64_t)a - (uint64_t)b - 1) / ((uint64_t)-(s + 1) + 1) + 1;
      /* Jinja's sandbox refuses ranges over MAX_RANGE (100000) items */
      if (count > 100000)
        return rerr(r, "range: %llu items is over the limit of 100000", (unsigned long long)count);
      if (step(r, (int64_t)count / 8)) return -1;
      TplValue out = list_new(r->pA, (size_t)count);
      if (out.type != TPL_LIST) return nomem(r);
      for (uint64_t i = 0; i < count; i++)
        out.u.pList->a[i] = tpl_int((int64_t)((uint64_t)a + i * (uint64_t)s));
      out.u.pList->n = (size_t)count;
      *pOut = out;
      return 0;
    }
    case G_RAISE: {
      TplValue m = nArg ? aArg[0] : val_str_ref("", 0);
      if (to_str(r, m, &m)) return -1;
      return rerr(r, "raise_exception: %.*s", (int)(m.u.s.n > 500 ? 500 : m.u.s.n), m.u.s.z);
    }
    case G_STRFTIME: {
      if (check_kw(r, "strftime_now", azKw, nKw, 0) || check_nargs(r, "strftime_now", nArg, 1, 1) ||
          need_str(r, "strftime_now", aArg[0])) return -1;
      if (aArg[0].u.s.n > 200) return rerr(r, "strftime_now: format over 200 bytes");
      struct timespec ts;
      struct tm tmv;
      if (clock_gettime(CLOCK_REALTIME, &ts) || !localtime_r(&ts.tv_sec, &tmv))
        return rerr(r, "strftime_now: no local time");
      /* Python's datetime.now().strftime: %f is the microseconds, and %z and
      ** %Z are empty for its naive datetime; the rest is the C library's */
      char zFmt[1024];
      size_t nFmt = 0;
      const char *z = aArg[0].u.s.z;
      size_t n = aArg[0].u.s.n;
      for (size_t i = 0; i < n; i++) {
        if (z[i] != '%' || i + 1 >= n) { zFmt[nFmt++] = z[i]; continue; }
        char d = z[++i];
        if (d == 'f') nFmt += (size_t)snprintf(zFmt + nFmt, sizeof(zFmt) - nFmt, "%06ld", (long)(ts.tv_nsec / 1000));
        else if (d != 'z' && d != 'Z') { zFmt[nFmt++] = '%'; zFmt[nFmt++] = d; }
      }
      zFmt[nFmt] = 0;
      /* strftime gives 0 when the result does not fit, or is empty: grow
      ** the buffer until a 200-byte format cannot fill it */
      for (size_t nCap = 1024; nCap <= 65536; nCap *= 4) {
        char *zOut = arena_alloc(r->pA, nCap);
        if (!zOut) return nomem(r);
        size_t nOut = nFmt ? strftime(zOut, nCap, zFmt, &tmv) : 0;
        if (nOut || nCap == 65536) { zOut[nOut] = 0; *pOut = val_str_ref(zOut, nOut); return 0; }
      }
      return 0;
    }
  }
  return rerr(r, "unsupported function");
}

/* Tests: 'x is name(args)', the test named by zName (nName bytes, as the
** template spells it). */
static int call_test(Render *r, int id, const char *zName, int nName, TplValue v, TplValue *aArg,
                     int nArg, int *pb) {
  int nNeed = (id == T_DIVISIBLEBY || id == T_EQ || id == T_NE || id == T_LT || id == T_LE ||
               id == T_GT || id == T_GE || id == T_IN || id == T_SAMEAS) ? 1 : 0;
  if (nArg != nNeed)
    return rerr(r, "test '%.*s' takes %d argument%s", nName, zName, nNeed, nNeed == 1 ? "" : "s");
  int cmp = 0;
  switch (id) {
    case T_DEFINED: *pb = v.type != TPL_UNDEFINED; return 0;
    case T_UNDEFINED: *pb = v.type == TPL_UNDEFINED; return 0;
    case T_NONE: *pb = v.type == TPL_NONE; return 0;
    case T_STRING: *pb = v.type == TPL_STRING; return 0;
    case T_MAPPING: *pb = v.type == TPL_DICT; return 0;
    case T_ITERABLE: *pb = v.type == TPL_STRING || v.type == TPL_LIST || v.type == TPL_DICT || v.type == TPL_UNDEFINED; return 0;
    case T_SEQUENCE: *pb = v.type == TPL_STRING || v.type == TPL_LIST || v.type == TPL_DICT; return 0;
    case T_NUMBER: *pb = is_num(v); return 0;
    case T_INTEGER: *pb = v.type == TPL_INT; return 0;
    case T_FLOAT: *pb = v.type == TPL_FLOAT; return 0;
    case T_BOOLEAN: *pb = v.type == TPL_BOOL; return 0;
    case T_TRUE: *pb = v.type == TPL_BOOL && v.u.i; return 0;
    case T_FALSE: *pb = v.type == TPL_BOOL && !v.u.i; return 0;
    /* Jinja: value % 2 == 1, value % 2 == 0, value % num == 0: Python's %
    ** on any numbers (floats had been refused) */
    case T_ODD: case T_EVEN: case T_DIVISIBLEBY: {
      TplValue d = id == T_DIVISIBLEBY ? aArg[0] : tpl_int(2), m;
      if (!is_num(v) || !is_num(d))
        return rerr(r, "test '%.*s': expected a number, not %s", nName, zName,
                    type_name(is_num(v) ? d : v));
      if (num_f(d) == 0) return rerr(r, "divisibleby: division by zero");
      if (arith(r, OP_MOD, v, d, &m)) return -1;
      *pb = num_f(m) == (id == T_ODD ? 1.0 : 0.0);
      return 0;
    }
    case T_EQ: return val_eq_charged(r, v, aArg[0], pb);
    case T_NE:
      if (val_eq_charged(r, v, aArg[0], pb)) return -1;
      *pb = !*pb;
      return 0;
    case T_LT: case T_LE: case T_GT: case T_GE:
      if (compare_order(r, v, aArg[0], &cmp)) return -1;
      *pb = cmp == 2 ? 0 : id == T_LT ? cmp < 0 : id == T_LE ? cmp <= 0 : id == T_GT ? cmp > 0 : cmp >= 0;
      return 0;
    case T_IN: return contains(r, v, aArg[0], pb);
    case T_LOWER: case T_UPPER: {
      /* Jinja: str(value).islower(): no upper- or titlecase code point and
      ** at least one lowercase one (the mirror for isupper), over Unicode */
      int bCased = 0, bBad = 0, kOther = id == T_LOWER ? 2 : 1;
      TplValue s;
      size_t len;
      if (to_str(r, v, &s) || step(r, (int64_t)(s.u.s.n / 64))) return -1;
      for (size_t i = 0; i < s.u.s.n && !bBad; i += len) {
        int k = cp_case_kind(utf8_next((const unsigned char *)s.u.s.z + i, s.u.s.n - i, &len));
        if (k == 3 || k == kOther) bBad = 1;
        else if (k) bCased = 1;
      }
      *pb = bCased && !bBad;
      return 0;
    }
    case T_CALLABLE: *pb = v.type == TPL_FUNCTION || v.type == TPL_MACRO; return 0;
    case T_SAMEAS: {
      /* Python's 'is': values are copied here, so identity is what CPython
      ** gives for equal values: the cached ints -5 to 256, the empty and
      ** one-character Latin-1 strings, the same string bytes, the same
      ** list or dict; other equal numbers are distinct objects */
      TplValue w = aArg[0];
      size_t len = 0;
      *pb = v.type == w.type && (v.type == TPL_NONE || v.type == TPL_UNDEFINED ||
            (v.type == TPL_BOOL && v.u.i == w.u.i) ||
            (v.type == TPL_INT && v.u.i == w.u.i && v.u.i >= -5 && v.u.i <= 256) ||
            (v.type == TPL_STRING && v.u.s.n == w.u.s.n && memcmp(v.u.s.z, w.u.s.z, v.u.s.n) == 0 &&
             (v.u.s.z == w.u.s.z || v.u.s.n == 0 ||
              (utf8_next((const unsigned char *)v.u.s.z, v.u.s.n, &len) < 0x100 && len == v.u.s.n))) ||
            ((v.type == TPL_LIST || v.type == TPL_DICT || v.type == TPL_NAMESPACE) && v.u.p == w.u.p));
      return 0;
    }
  }
  return rerr(r, "unsupported test '%.*s'", nName, zName);
}

/* Length of a value for |length (Undefined is 0). */
static int val_len(Render *r, TplValue v, int64_t *pn) {
  switch (v.type) {
    case TPL_UNDEFINED: *pn = 0; return 0;
    case TPL_STRING: *pn = (int64_t)utf8_count(v.u.s.z, v.u.s.n); return step(r, (int64_t)(v.u.s.n / 64));
    case TPL_LIST: *pn = (int64_t)v.u.pList->n; return 0;
    case TPL_DICT: case TPL_NAMESPACE: *pn = (int64_t)v.u.pDict->n; return 0;
  }
  return rerr(r, "object of type '%s' has no len()", type_name(v));
}

/* The test (select/reject) or attribute (selectattr/map) named by a filter's
** arguments, applied to one item. */
static int apply_item_test(Render *r, TplValue item, TplValue *aArg, int nArg, int *pb) {
  if (nArg == 0) { *pb = truthy(item); return 0; }
  if (aArg[0].type != TPL_STRING) return rerr(r, "select: the test name must be a string");
  int id = lookup_id(aArg[0].u.s.z, aArg[0].u.s.n, 1);
  if (!id) return rerr(r, "unsupported test '%.*s'", (int)aArg[0].u.s.n, aArg[0].u.s.z);
  return call_test(r, id, aArg[0].u.s.z, (int)aArg[0].u.s.n, item, aArg + 1, nArg - 1, pb);
}

/* Attribute lookup for map/selectattr/join(attribute=): dotted names and
** integer parts as in Jinja's make_attrgetter. */
static int attr_path(Render *r, TplValue v, TplValue attr, TplValue *pOut) {
  if (attr.type == TPL_INT) return get_item(r, v, attr, pOut);
  if (attr.type != TPL_STRING) return rerr(r, "attribute name must be a string");
  const char *z = attr.u.s.z;
  size_t n = attr.u.s.n, i = 0;
  *pOut = v;
  while (i <= n) {
    size_t j = i;
    while (j < n && z[j] != '.') j++;
    TplValue key = val_str_ref(z + i, j - i), next;
    int bDigits = j > i;
    for (size_t k = i; k < j; k++) if (!is_digit(z[k])) bDigits = 0;
    if (bDigits) { key = tpl_int(strtoll(z + i, 0, 10)); if (get_item(r, *pOut, key, &next)) return -1; }
    else if (pOut->type == TPL_UNDEFINED) { next = val_undef(); }
    else if (get_item(r, *pOut, key, &next)) return -1;
    *pOut = next;
    i = j + 1;
  }
  return 0;
}

/* Python's int(s) (base 10) of a stripped string: a sign and ASCII digits
** with single underscores between them. 0 with *pOut; 1 when s is no such
** integer (ValueError); -1 when it is one past 64 bits. */
static int parse_py_int(TplValue s, int64_t *pOut) {
  const char *z = s.u.s.z;
  size_t n = s.u.s.n, i = 0;
  int bNeg = 0;
  if (i < n && (z[i] == '+' || z[i] == '-')) bNeg = z[i++] == '-';
  if (i == n || scan_digits(z, n, i) != n) return 1;
  uint64_t x = 0, lim = bNeg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; i < n; i++) {
    if (z[i] == '_') continue;
    unsigned d = (unsigned)(z[i] - '0');
    if (x > (lim - d) / 10) return -1;
    x = x * 10 + d;
  }
  *pOut = bNeg ? (int64_t)(0 - x) : (int64_t)x;
  return 0;
}

/* Python's float(s) of a stripped string: a sign, then "inf", "infinity" or
** "nan" in any case, or decimal digits (single underscores between them)
** with an optional fraction and exponent; no hexadecimal, which strtod
** would take. 0 with *pOut; 1 when s is no float; -1 out of memory. */
static int parse_py_float(Render *r, TplValue s, double *pOut) {
  const char *z = s.u.s.z;
  size_t n = s.u.s.n, i = 0;
  int bNeg = 0;
  if (i < n && (z[i] == '+' || z[i] == '-')) bNeg = z[i++] == '-';
  if (n - i == 3 || n - i == 8) {
    char w[9];
    for (size_t k = 0; k < n - i; k++) w[k] = (char)(z[i + k] | 0x20);
    w[n - i] = 0;
    if (strcmp(w, "inf") == 0 || strcmp(w, "infinity") == 0) { *pOut = bNeg ? -INFINITY : INFINITY; return 0; }
    if (strcmp(w, "nan") == 0) { *pOut = NAN; return 0; }
  }
  size_t j = scan_digits(z, n, i), nDigits = j - i;
  if (j < n && z[j] == '.') {
    size_t k = scan_digits(z, n, j + 1);
    nDigits += k - j - 1;
    j = k;
  }
  if (nDigits == 0) return 1;
  if (j < n && (z[j] == 'e' || z[j] == 'E')) {
    size_t k = j + 1;
    if (k < n && (z[k] == '+' || z[k] == '-')) k++;
    size_t e = scan_digits(z, n, k);
    if (e == k) return 1;
    j = e;
  }
  if (j != n) return 1;
  char *zNum = arena_alloc(r->pA, n + 1);
  size_t m = 0;
  if (!zNum) return nomem(r);
  for (size_t k = 0; k < n; k++) if (z[k] != '_') zNum[m++] = z[k];
  zNum[m] = 0;
  *pOut = strtod(zNum, 0); /* out of range: inf or 0, as Python */
  return 0;
}

/* Filters: 'value | name(args)'. */
static int call_filter(Render *r, int id, const char *zName, TplValue v, TplValue *aArg, int nArg,
                       const char **azKw, TplValue *aKw, int nKw, TplValue *pOut) {
  char zWhat[48];
  /* zName points into the source: cut it at the end of the identifier */
  {
    size_t k = 0;
    while (is_name_char(zName[k])) k++;
    snprintf(zWhat, sizeof(zWhat), "filter '%.*s'", (int)k, zName);
  }
  switch (id) {
    case F_TRIM: {
      static const char *const azOk[] = {"chars", 0};
      if (check_kw(r, zWhat, azKw, nKw, azOk) || check_nargs(r, zWhat, nArg, 0, 1)) return -1;
      TplValue *pChars = arg_or_kw(aArg, nArg, 0, azKw, aKw, nKw, "chars");
      if (pChars && pChars->type == TPL_NONE) pChars = 0;
      if (pChars && need_str(r, zWhat, *pChars)) return -1;
      TplValue s;
      if (to_str(r, v, &s) || step(r, (int64_t)(s.u.s.n / 64))) return -1;
      *pOut = str_strip(s, pChars, 1, 1);
      return 0;
    }
    case F_LENGTH: case F_COUNT: {
      int64_t n = 0;
      if (check_nargs(r, zWhat, nArg, 0, 0) || val_len(r, v, &n)) return -1;
      *pOut = tpl_int(n);
      return 0;
    }
    case F_TOJSON: {
      static const char *const azOk[] = {"indent", "separators", "sort_keys", "ensure_ascii", 0};
      if (check_kw(r, zWhat, azKw, nKw, azOk) || check_nargs(r, zWhat, nArg, 0, 1)) return -1;
      JsonOpt o = {-1, ", ", ": ", 2, 2, 0};
      TplValue *pIndent = arg_or_kw(aArg, nArg, 0, azKw, aKw, nKw, "indent");
      TplValue *pSep = kwarg(azKw, aKw, nKw, "separators");
      TplValue *pSort = kwarg(azKw, aKw, nKw, "sort_keys");
      TplValue *pAscii = kwarg(azKw, aKw, nKw, "ensure_ascii");
      if (pAscii && truthy(*pAscii)) return rerr(r, "%s: ensure_ascii=True is not supported", zWhat);
      if (pIndent && pIndent->type != TPL_NONE) {
        if (need_int(r, zWhat, *pIndent)) return -1;
        if (pIndent->u.i > 64) return rerr(r, "%s: indent over 64", zWhat);
        o.indent = pIndent->u.i < 0 ? 0 : (int)pIndent->u.i;
        o.zItemSep = ",";
        o.nItemSep = 1;
      }
      if (pSep && pSep->type != TPL_NONE) {
        if (pSep->type != TPL_LIST || pSep->u.pList->n != 2 || pSep->u.pList->a[0].type != TPL_STRING ||
            pSep->u.pList->a[1].type != TPL_STRING)
          return rerr(r, "%s: separators must be a pair of strings", zWhat);
        o.zItemSep = pSep->u.pList->a[0].u.s.z; o.nItemSep = pSep->u.pList->a[0].u.s.n;
        o.zKeySep = pSep->u.pList->a[1].u.s.z; o.nKeySep = pSep->u.pList->a[1].u.s.n;
      }
      o.bSortKeys = pSort && truthy(*pSort);
      Buf b;
      buf_init(r, &b, r->pOut->nMax);
      if (json_dump(r, &b, v, &o, 0)) { buf_free(&b); return -1; }
      return buf_take(r, &b, pOut);
    }
    case F_DEFAULT: {
      static const char *const azOk[] = {"default_value", "boolean", 0};
      if (check_kw(r, zWhat, azKw, nKw, azOk) || check_nargs(r, zWhat, nArg, 0, 2)) return -1;
      TplValue *pDef = arg_or_kw(aArg, nArg, 0, azKw, aKw, nKw, "default_value");
      TplValue *pBool = arg_or_kw(aArg, nArg, 1, azKw, aKw, nKw, "boolean");
      int bUse = v.type == TPL_UNDEFINED || (pBool && truthy(*pBool) && !truthy(v));
      *pOut = bUse ? (pDef ? *pDef : val_str_ref("", 0)) : v;
      return 0;
    }
    case F_ITEMS: {
      if (check_nargs(r, zWhat, nArg, 0, 0)) return -1;
      if (v.type == TPL_UNDEFINED) { *pOut = list_new(r->pA, 0); return pOut->type == TPL_LIST ? 0 : nomem(r); }
      if (v.type != TPL_DICT) return rerr(r, "%s: can only get item pairs from a mapping", zWhat);
      return call_method(r, M_ITEMS, v, 0, 0, 0, 0, 0, pOut);
    }
    case F_FIRST: case F_LAST: {
      TplList *l;
      if (check_nargs(r, zWhat, nArg, 0, 0)) return -1;
      /* Jinja: first of Undefined is Undefined; last cannot reverse it */
      if (v.type == TPL_UNDEFINED && id == F_LAST) return rerr(r, "%s: undefined value", zWhat);
      if (iter_items(r, v, &l)) return -1;
      *pOut = l->n ? l->a[id == F_FIRST ? 0 : l->n - 1] : val_undef();
      return 0;
    }
    case F_UPPER: case F_LOWER: case F_CAPITALIZE: case F_TITLE: {
      TplValue s;
      if (check_nargs(r, zWhat, nArg, 0, 0) || to_str(r, v, &s)) return -1;
      return str_case(r, s, id == F_LOWER ? 0 : id == F_UPPER ? 1 : id == F_CAPITALIZE ? 2 : 4, pOut);
    }
    case F_REPLACE: {
      TplValue s;
      if (check_nargs(r, zWhat, nArg, 2, 3) || to_str(r, v, &s)) return -1;
      TplValue o, nw;
      if (to_str(r, aArg[0], &o) || to_str(r, aArg[1], &nw)) return -1;
      if (nArg > 2 && aArg[2].type != TPL_NONE && need_int(r, zWhat, aArg[2])) return -1;
      return str_replace(r, s, o, nw, nArg > 2 && aArg[2].type != TPL_NONE ? aArg[2].u.i : -1, pOut);
    }
    case F_JOIN: {
      static const char *const azOk[] = {"d", "attribute", 0};
      if (check_kw(r, zWhat, azKw, nKw, azOk) || check_nargs(r, zWhat, nArg, 0, 2)) return -1;
      TplValue *pSep = arg_or_kw(aArg, nArg, 0, azKw, aKw, nKw, "d");
      TplValue *pAttr = arg_or_kw(aArg, nArg, 1, azKw, aKw, nKw, "attribute");
      TplValue sep = val_str_ref("", 0);
      TplList *l;
      if (pSep && to_str(r, *pSep, &sep)) return -1;
      if (iter_items(r, v, &l)) return -1;
      /* one buffer: concatenating item by item held every prefix (quadratic) */
      Buf b;
      buf_init(r, &b, 0);
      for (size_t i = 0; i < l->n; i++) {
        TplValue it = l->a[i], s;
        if ((pAttr && pAttr->type != TPL_NONE && attr_path(r, it, *pAttr, &it)) || to_str(r, it, &s) ||
            step(r, (int64_t)(1 + (s.u.s.n + sep.u.s.n) / 64))) { buf_free(&b); return -1; }
        if ((i && buf_append(&b, sep.u.s.z, sep.u.s.n)) || buf_append(&b, s.u.s.z, s.u.s.n)) {
          buf_free(&b);
          return nomem(r);
        }
      }
      return buf_take(r, &b, pOut);
    }
    case F_LIST: {
      TplList *l;
      if (check_nargs(r, zWhat, nArg, 0, 0)) return -1;
      if (iter_items(r, v, &l)) return -1;
      TplValue out = list_new(r->pA, l->n);
      if (out.type != TPL_LIST) return nomem(r);
      if (l->n) memcpy(out.u.pList->a, l->a, l->n * sizeof(TplValue));
      out.u.pList->n = l->n;
      *pOut = out;
      return 0;
    }
    case F_STRING: case F_SAFE:
      if (check_nargs(r, zWhat, nArg, 0, 0)) return -1;
      if (id == F_SAFE) { *pOut = v; return 0; }
      return to_str(r, v, pOut);
    case F_INT: case F_FLOAT: {
      /* Jinja: int(value), else int(float(value)); float(value); the
      ** default where Python raises ValueError or TypeError */
      if (check_nargs(r, zWhat, nArg, 0, 1)) return -1;
      TplValue def = nArg ? aArg[0] : (id == F_INT ? tpl_int(0) : tpl_float(0));
      if (v.type == TPL_INT || v.type == TPL_BOOL) { *pOut = id == F_INT ? tpl_int(v.u.i) : tpl_float((double)v.u.i); return 0; }
      if (v.type == TPL_STRING) {
        TplValue t = str_strip(v, 0, 1, 1);
        double f = 0;
        int rc;
        if (step(r, (int64_t)(v.u.s.n / 64))) return -1;
        if (id == F_INT) {
          int64_t x;
          if ((rc = parse_py_int(t, &x)) == 0) { *pOut = tpl_int(x); return 0; }
          if (rc < 0)
            return rerr(r, "%s: %.*s%s does not fit a 64-bit integer", zWhat, (int)(t.u.s.n > 40 ? 40 : t.u.s.n),
                        t.u.s.z, t.u.s.n > 40 ? "..." : "");
        }
        if ((rc = parse_py_float(r, t, &f)) < 0) return -1;
        if (rc) { *pOut = def; return 0; }
        v = tpl_float(f);
      }
      if (v.type == TPL_FLOAT) {
        if (id == F_FLOAT) { *pOut = v; return 0; }
        if (isnan(v.u.f)) { *pOut = def; return 0; } /* Python's ValueError: the default */
        if (isinf(v.u.f)) return rerr(r, "%s: cannot convert float infinity to integer", zWhat);
        if (!(v.u.f >= -9223372036854775808.0 && v.u.f < 9223372036854775808.0)) /* Python's big int */
          return rerr(r, "%s: %g does not fit a 64-bit integer", zWhat, v.u.f);
        *pOut = tpl_int((int64_t)v.u.f);
        return 0;
      }
      *pOut = def;
      return 0;
    }
    case F_ABS:
      if (check_nargs(r, zWhat, nArg, 0, 0)) return -1;
      if (v.type == TPL_FLOAT) *pOut = tpl_float(fabs(v.u.f));
      else if (v.type == TPL_INT || v.type == TPL_BOOL) {
        if (v.u.i == INT64_MIN) return rerr(r, "integer overflow");
        *pOut = tpl_int(v.u.i < 0 ? -v.u.i : v.u.i);
      } else return rerr(r, "%s: bad operand type '%s'", zWhat, type_name(v));
      return 0;
    case F_ROUND: {
      static const char *const azOk[] = {"precision", "method", 0};
      if (check_kw(r, zWhat, azKw, nKw, azOk) || check_nargs(r, zWhat, nArg, 0, 2)) return -1;
      TplValue *pPrec = arg_or_kw(aArg, nArg, 0, azKw, aKw, nKw, "precision");
      TplValue *pMethod = arg_or_kw(aArg, nArg, 1, azKw, aKw, nKw, "method");
      if (!is_num(v)) return rerr(r, "%s: expected a number, not %s", zWhat, type_name(v));
      if (pPrec && need_int(r, zWhat, *pPrec)) return -1;
      int64_t prec = pPrec ? pPrec->u.i : 0;
      if (prec < 0 || prec > 15) return rerr(r, "%s: precision must be 0 to 15", zWhat);
      double m = pow(10, (double)prec), x = num_f(v) * m;
      if (pMethod && pMethod->type == TPL_STRING && name_is(pMethod->u.s.z, pMethod->u.s.n, "floor")) x = floor(x);
      else if (pMethod && pMethod->type == TPL_STRING && name_is(pMethod->u.s.z, pMethod->u.s.n, "ceil")) x = ceil(x);
      else if (!pMethod || (pMethod->type == TPL_STRING && name_is(pMethod->u.s.z, pMethod->u.s.n, "common"))) {
        /* Python's round(x, prec): an int stays itself; a float is rounded
        ** correctly from its binary value, halves to even (2.675 is
        ** 2.67499.. and gives 2.67), which printf's exact conversion does */
        if (v.type == TPL_INT || v.type == TPL_BOOL) { /* round(True, 0) is the int 1 */
          *pOut = tpl_int(v.u.i);
          return 0;
        }
        char zNum[400];
        snprintf(zNum, sizeof(zNum), "%.*f", (int)prec, num_f(v));
        *pOut = tpl_float(strtod(zNum, 0));
        return 0;
      } else return rerr(r, "%s: method must be 'common', 'ceil' or 'floor'", zWhat);
      *pOut = tpl_float(x / m);
      return 0;
    }
    case F_REVERSE: {
      if (check_nargs(r, zWhat, nArg, 0, 0)) return -1;
      if (v.type == TPL_STRING) {
        TplValue one = tpl_int(-1);
        TplValue parts[3] = {val_undef(), val_undef(), one};
        int abSet[3] = {0, 0, 1};
        return get_slice(r, v, parts, abSet, pOut);
      }
      TplList *l;
      if (iter_items(r, v, &l)) return -1;
      TplValue out = list_new(r->pA, l->n);
      if (out.type != TPL_LIST) return nomem(r);
      for (size_t i = 0; i < l->n; i++) out.u.pList->a[i] = l->a[l->n - 1 - i];
      out.u.pList->n = l->n;
      *pOut = out;
      return 0;
    }
    case F_SELECT: case F_REJECT: case F_SELECTATTR: case F_REJECTATTR: case F_MAP: case F_UNIQUE: {
      TplList *l;
      /* Jinja's map and select family yield nothing for a false value */
      if (id != F_UNIQUE && !truthy(v)) v = val_undef();
      if (iter_items(r, v, &l)) return -1;
      TplValue out = list_new(r->pA, l->n);
      if (out.type != TPL_LIST) return nomem(r);
      if (step(r, (int64_t)l->n)) return -1;
      /* unique: the key of each kept item, lower-cased once */
      TplValue *aSeen = id == F_UNIQUE ? arena_alloc(r->pA, (l->n + 1) * sizeof(TplValue)) : 0;
      if (id == F_UNIQUE && !aSeen) return nomem(r);
      for (size_t i = 0; i < l->n; i++) {
        TplValue it = l->a[i];
        if (id == F_MAP) {
          static const char *const azOk[] = {"attribute", "default", 0};
          TplValue *pAttr = kwarg(azKw, aKw, nKw, "attribute");
          if (check_kw(r, zWhat, azKw, nKw, azOk)) return -1;
          if (pAttr) {
            TplValue *pDef = kwarg(azKw, aKw, nKw, "default");
            if (nArg) return rerr(r, "%s: attribute= takes no positional arguments", zWhat);
            if (attr_path(r, it, *pAttr, &it)) return -1;
            if (it.type == TPL_UNDEFINED && pDef) it = *pDef;
          } else {
            if (nArg < 1 || aArg[0].type != TPL_STRING) return rerr(r, "%s: needs a filter name or attribute=", zWhat);
            int fid = lookup_id(aArg[0].u.s.z, aArg[0].u.s.n, 0);
            if (!fid || fid == F_MAP) return rerr(r, "%s: unsupported filter '%.*s'", zWhat, (int)aArg[0].u.s.n, aArg[0].u.s.z);
            if (call_filter(r, fid, aArg[0].u.s.z, it, aArg + 1, nArg - 1, 0, 0, 0, &it)) return -1;
          }
          out.u.pList->a[out.u.pList->n++] = it;
          continue;
        }
        if (id == F_UNIQUE) {
          /* Jinja compares strings case-insensitively unless case_sensitive=true */
          static const char *const azOk[] = {"case_sensitive", 0};
          TplValue *pCase = arg_or_kw(aArg, nArg, 0, azKw, aKw, nKw, "case_sensitive");
          int bSeen = 0, bCase = pCase && truthy(*pCase);
          TplValue key = it;
          if (check_nargs(r, zWhat, nArg, 0, 1) || check_kw(r, zWhat, azKw, nKw, azOk)) return -1;
          if (step(r, (int64_t)(out.u.pList->n / 8))) return -1;
          if (!bCase && it.type == TPL_STRING && str_case(r, it, 0, &key)) return -1;
          for (size_t j = 0; j < out.u.pList->n && !bSeen; j++) bSeen = val_eq(aSeen[j], key);
          if (!bSeen) {
            aSeen[out.u.pList->n] = key;
            out.u.pList->a[out.u.pList->n++] = it;
          }
          continue;
        }
        int b = 0;
        if (check_kw(r, zWhat, azKw, nKw, 0)) return -1;
        if (id == F_SELECTATTR || id == F_REJECTATTR) {
          TplValue x;
          if (nArg < 1) return rerr(r, "%s: needs an attribute name", zWhat);
          if (attr_path(r, it, aArg[0], &x) || apply_item_test(r, x, aArg + 1, nArg - 1, &b)) return -1;
        } else if (apply_item_test(r, it, aArg, nArg, &b)) {
          return -1;
        }
        if (b == (id == F_SELECT || id == F_SELECTATTR)) out.u.pList->a[out.u.pList->n++] = it;
      }
      *pOut = out;
      return 0;
    }
    case F_SORT: {
      static const char *const azOk[] = {"reverse", "case_sensitive", "attribute", 0};
      if (check_kw(r, zWhat, azKw, nKw, azOk) || check_nargs(r, zWhat, nArg, 0, 3)) return -1;
      TplValue *pRev = arg_or_kw(aArg, nArg, 0, azKw, aKw, nKw, "reverse");
      TplValue *pAttr = arg_or_kw(aArg, nArg, 2, azKw, aKw, nKw, "attribute");
      TplList *l;
      if (iter_items(r, v, &l)) return -1;
      TplValue out = list_new(r->pA, l->n), *aKey = arena_alloc(r->pA, (l->n + 1) * sizeof(TplValue));
      if (out.type != TPL_LIST || !aKey) return nomem(r);
      if (step(r, (int64_t)(l->n * (size_t)(64 - __builtin_clzll((unsigned long long)l->n | 1)) / 8)))
        return -1;
      TplValue *pCase = arg_or_kw(aArg, nArg, 1, azKw, aKw, nKw, "case_sensitive");
      int bCase = pCase && truthy(*pCase);
      /* attribute='a,b' sorts by the list of both (Jinja 3.1's
      ** make_multi_attrgetter: the parts as split, each folded alone) */
      size_t nPart = 1;
      if (pAttr && pAttr->type == TPL_STRING)
        for (size_t k = 0; k < pAttr->u.s.n; k++) nPart += pAttr->u.s.z[k] == ',';
      for (size_t i = 0; i < l->n; i++) {
        out.u.pList->a[i] = l->a[i];
        aKey[i] = l->a[i];
        if (nPart > 1) {
          TplValue key = list_new(r->pA, nPart);
          if (key.type != TPL_LIST) return nomem(r);
          const char *z = pAttr->u.s.z, *zEnd = z + pAttr->u.s.n;
          for (size_t k = 0; k < nPart; k++) {
            const char *zComma = memchr(z, ',', (size_t)(zEnd - z));
            if (!zComma) zComma = zEnd;
            TplValue *pKey = &key.u.pList->a[k];
            if (attr_path(r, l->a[i], val_str_ref(z, (size_t)(zComma - z)), pKey)) return -1;
            if (!bCase && pKey->type == TPL_STRING && str_case(r, *pKey, 0, pKey)) return -1;
            z = zComma + 1;
          }
          key.u.pList->n = nPart;
          aKey[i] = key;
          continue;
        }
        if (pAttr && pAttr->type != TPL_NONE && attr_path(r, l->a[i], *pAttr, &aKey[i])) return -1;
        /* Jinja sorts strings case-insensitively unless case_sensitive=true */
        if (!bCase && aKey[i].type == TPL_STRING && str_case(r, aKey[i], 0, &aKey[i])) return -1;
      }
      out.u.pList->n = l->n;
      if (sort_stable(r, aKey, out.u.pList->a, l->n, pRev && truthy(*pRev))) return -1;
      *pOut = out;
      return 0;
    }
    case F_INDENT: {
      static const char *const azOk[] = {"width", "first", "blank", 0};
      if (check_kw(r, zWhat, azKw, nKw, azOk) || check_nargs(r, zWhat, nArg, 0, 3)) return -1;
      TplValue *pWidth = arg_or_kw(aArg, nArg, 0, azKw, aKw, nKw, "width");
      TplValue *pFirst = arg_or_kw(aArg, nArg, 1, azKw, aKw, nKw, "first");
      TplValue *pBlank = arg_or_kw(aArg, nArg, 2, azKw, aKw, nKw, "blank");
      TplValue s, pad = val_str_ref("    ", 4);
      if (to_str(r, v, &s)) return -1;
      if (pWidth) {
        if (pWidth->type == TPL_STRING) pad = *pWidth;
        else {
          if (need_int(r, zWhat, *pWidth)) return -1;
          if (pWidth->u.i < 0 || pWidth->u.i > 256) return rerr(r, "%s: width must be 0 to 256", zWhat);
          char *z = arena_alloc(r->pA, (size_t)pWidth->u.i + 1);
          if (!z) return nomem(r);
          memset(z, ' ', (size_t)pWidth->u.i);
          pad = val_str_ref(z, (size_t)pWidth->u.i);
        }
      }
      int bFirst = pFirst && truthy(*pFirst), bBlank = pBlank && truthy(*pBlank);
      /* Jinja: (s + "\n").splitlines() rejoined with "\n" (so "\r\n", "\r"
      ** and the other line boundaries become "\n"); blank lines get no
      ** padding unless blank=True, the first line only with first=True */
      char *z = arena_alloc(r->pA, s.u.s.n + 2);
      if (!z) return nomem(r);
      memcpy(z, s.u.s.z, s.u.s.n);
      z[s.u.s.n] = '\n';
      size_t n = s.u.s.n + 1, i = 0, len = 0;
      Buf b;
      buf_init(r, &b, 0);
      for (int bLine0 = 1; i < n; bLine0 = 0) {
        size_t j = i;
        unsigned c = 0;
        while (j < n && !cp_linebreak(c = utf8_next((const unsigned char *)z + j, n - j, &len))) j += len;
        int bPad = bLine0 ? bFirst : (bBlank || j > i);
        if ((!bLine0 && buf_append(&b, "\n", 1)) || (bPad && buf_append(&b, pad.u.s.z, pad.u.s.n)) ||
            buf_append(&b, z + i, j - i)) {
          buf_free(&b);
          return nomem(r);
        }
        if (step(r, (int64_t)(1 + (j - i + pad.u.s.n) / 64))) { buf_free(&b); return -1; }
        i = j + len;
        if (c == '\r' && i < n && z[i] == '\n') i++;
      }
      return buf_take(r, &b, pOut);
    }
  }
  return rerr(r, "unsupported %s", zWhat);
}

/* ----- statements */

static int exec_block(Render *r, const Node *n);

static int emit(Render *r, const char *z, size_t n) {
  if (buf_append(r->pOut, z, n)) return buf_error(r, r->pOut);
  return step(r, (int64_t)(n / 64));
}

/* Binds a for/set target: one name, or unpacks a list/tuple into several. */
static int bind_targets(Render *r, Frame *f, const Node *n, TplValue v) {
  if (n->nTarget == 1) return frame_set(r, f, n->azTarget[0], v);
  TplList *l;
  if (v.type == TPL_UNDEFINED || iter_items(r, v, &l)) return rerr(r, "cannot unpack a value of type %s", type_name(v));
  if ((int)l->n != n->nTarget)
    return rerr(r, "cannot unpack %zu values into %d names", l->n, n->nTarget);
  for (int i = 0; i < n->nTarget; i++) if (frame_set(r, f, n->azTarget[i], l->a[i])) return -1;
  return 0;
}

/* A block in a scope of its own, as Jinja renders a for loop's else, a
** block set's body and a call block: what it sets stays inside (they had
** set the enclosing scope's names). */
static int exec_scoped(Render *r, const Node *n) {
  Frame f;
  memset(&f, 0, sizeof(f));
  f.pParent = r->pFrame;
  r->pFrame = &f;
  int rc = exec_block(r, n);
  r->pFrame = f.pParent;
  return rc;
}

static int exec_for(Render *r, const Node *n) {
  TplValue it;
  TplList *l;
  if (eval(r, n->a, &it)) return -1;
  r->line = n->line;
  if (iter_items(r, it, &l)) return -1;
  Frame f;
  memset(&f, 0, sizeof(f));
  f.pParent = r->pFrame;
  /* the loop filter runs first, so loop.length counts what passes */
  if (n->b) {
    TplValue kept = list_new(r->pA, 0);
    if (kept.type != TPL_LIST) return nomem(r);
    for (size_t i = 0; i < l->n; i++) {
      TplValue c;
      f.n = 0;
      if (step(r, 1) || bind_targets(r, &f, n, l->a[i])) return -1;
      r->pFrame = &f;
      int rc = eval(r, n->b, &c);
      r->pFrame = f.pParent;
      if (rc) return -1;
      if (truthy(c) && list_push(r->pA, kept.u.pList, l->a[i])) return nomem(r);
    }
    l = kept.u.pList;
  }
  LoopInfo *L = arena_alloc(r->pA, sizeof(LoopInfo));
  if (!L) return nomem(r);
  L->pItems = l;
  TplValue loopv = val_undef();
  loopv.type = TPL_LOOP;
  loopv.u.p = L;
  /* Jinja runs the else block unless some iteration reached the end of
  ** the body: one that every pass leaves by break or continue counts as
  ** none (its compiled loop clears the flag as the body's last statement) */
  int bBodyEnded = 0;
  for (size_t i = 0; i < l->n; i++) {
    L->i = i;
    f.n = 0; /* a fresh frame each iteration */
    if (step(r, 1) || frame_set(r, &f, "loop", loopv) || bind_targets(r, &f, n, l->a[i])) return -1;
    r->pFrame = &f;
    int rc = exec_block(r, n->c);
    r->pFrame = f.pParent;
    if (rc) return -1;
    if (r->ctl == CTL_NONE) bBodyEnded = 1;
    if (r->ctl == CTL_BREAK) { r->ctl = CTL_NONE; break; }
    r->ctl = CTL_NONE;
  }
  if (!bBodyEnded && n->pElse) return exec_scoped(r, n->pElse);
  return 0;
}

static int exec_stmt(Render *r, const Node *n) {
  TplValue v;
  r->line = n->line;
  if (step(r, 1)) return -1;
  switch (n->kind) {
    case N_TEXT: return emit(r, n->v.u.s.z, n->v.u.s.n);
    case N_OUTPUT:
      if (eval(r, n->a, &v)) return -1;
      if (v.type == TPL_STRING) return emit(r, v.u.s.z, v.u.s.n);
      return to_str_buf(r, r->pOut, v, 0);
    case N_IF: {
      const Node *c = n;
      while (c && c->kind == N_IF) {
        if (eval(r, c->a, &v)) return -1;
        if (truthy(v)) return exec_block(r, c->b);
        c = c->c;
      }
      return c ? exec_block(r, c) : 0;
    }
    case N_FOR: {
      if (++r->depth > TPL_MAX_DEPTH) return rerr(r, "loops nested deeper than %d", TPL_MAX_DEPTH);
      int rc = exec_for(r, n);
      r->depth--;
      return rc;
    }
    case N_SET:
      if (eval(r, n->a, &v)) return -1;
      r->line = n->line;
      if (n->zAttr) {
        TplValue ns;
        if (lookup(r, n->zName, strlen(n->zName), &ns)) return -1;
        if (ns.type != TPL_NAMESPACE)
          return rerr(r, "cannot assign attribute '%s' on a non-namespace object", n->zAttr);
        TplValue k = val_str_ref(n->zAttr, strlen(n->zAttr));
        return dict_put(r->pA, ns.u.pDict, k, v) ? nomem(r) : 0;
      }
      return bind_targets(r, r->pFrame, n, v);
    case N_SETBLOCK: {
      Buf *pSaved = r->pOut, b;
      buf_init(r, &b, pSaved->nMax);
      r->pOut = &b;
      int rc = exec_scoped(r, n->a);
      r->pOut = pSaved;
      if (rc || buf_take(r, &b, &v)) { buf_free(&b); return -1; }
      return frame_set(r, r->pFrame, n->azTarget[0], v);
    }
    case N_MACRO: {
      TplValue m = val_undef();
      m.type = TPL_MACRO;
      m.u.p = (void *)n;
      return frame_set(r, r->pFrame, n->zName, m);
    }
    case N_BREAK: r->ctl = CTL_BREAK; return 0;
    case N_CONTINUE: r->ctl = CTL_CONTINUE; return 0;
    case N_BLOCK: return exec_block(r, n);
    case N_SCOPE: return exec_scoped(r, n);
  }
  return rerr(r, "internal error: unknown statement");
}

/* Calls a macro: its parameters bound in a frame over the template's top
** level (positional, then keyword; a missing one without a default is
** Undefined, as in Jinja), its body rendered into a string. */
static int call_macro(Render *r, const Node *m, TplValue *aArg, int nArg, const char **azKw,
                      TplValue *aKw, int nKw, TplValue *pOut) {
  if (nArg > m->nTarget)
    return rerr(r, "macro '%s' takes %d arguments, got %d", m->zName, m->nTarget, nArg);
  if (r->nMacroDepth >= TPL_MAX_DEPTH)
    return rerr(r, "macro calls nested deeper than %d", TPL_MAX_DEPTH);
  for (int k = 0; k < nKw; k++) {
    int bKnown = 0;
    for (int i = 0; i < m->nTarget && !bKnown; i++) bKnown = strcmp(azKw[k], m->azTarget[i]) == 0;
    if (!bKnown) return rerr(r, "macro '%s' has no parameter '%s'", m->zName, azKw[k]);
  }
  Frame f, *pSavedFrame = r->pFrame;
  Buf *pSavedOut = r->pOut, b;
  memset(&f, 0, sizeof(f));
  buf_init(r, &b, pSavedOut->nMax);
  f.pParent = r->pRootFrame;
  int rc = 0;
  r->pFrame = &f;
  for (int i = 0; i < m->nTarget && rc == 0; i++) {
    TplValue v = val_undef();
    TplValue *pKw = kwarg(azKw, aKw, nKw, m->azTarget[i]);
    if (i < nArg) v = aArg[i];
    else if (pKw) v = *pKw;
    else if (m->aArg[i]) rc = eval(r, m->aArg[i], &v); /* defaults see earlier parameters */
    if (rc == 0) rc = frame_set(r, &f, m->azTarget[i], v);
  }
  r->nMacroDepth++;
  r->pOut = &b;
  if (rc == 0) rc = exec_block(r, m->a);
  r->pOut = pSavedOut;
  r->nMacroDepth--;
  r->pFrame = pSavedFrame;
  r->ctl = CTL_NONE;
  if (rc) { buf_free(&b); return -1; }
  return buf_take(r, &b, pOut);
}

static int exec_block(Render *r, const Node *n) {
  for (int i = 0; i < n->nArg; i++) {
    if (exec_stmt(r, n->aArg[i])) return -1;
    if (r->ctl != CTL_NONE) return 0;
  }
  return 0;
}

int tpl_render(const TplProgram *p, TplEnv *e, const TplLimits *pLimits, char **pzOut,
               size_t *pnOut, char *zErr, size_t nErr) {
  char zDummy[8];
  if (!zErr || nErr == 0) { zErr = zDummy; nErr = sizeof(zDummy); }
  zErr[0] = 0;
  *pzOut = 0;
  *pnOut = 0;
  TplLimits lim = {16u << 20, 256u << 20, 50000000};
  if (pLimits) {
    if (pLimits->nMaxOutput) lim.nMaxOutput = pLimits->nMaxOutput;
    if (pLimits->nMaxMemory) lim.nMaxMemory = pLimits->nMaxMemory;
    if (pLimits->nMaxSteps) lim.nMaxSteps = pLimits->nMaxSteps;
  }
  Buf out;
  memset(&out, 0, sizeof(out));
  out.nMax = lim.nMaxOutput;
  Frame root;
  memset(&root, 0, sizeof(root));
  Render r;
  memset(&r, 0, sizeof(r));
  r.e = e;
  r.pA = &e->arena;
  r.pOut = &out;
  r.nMaxSteps = lim.nMaxSteps;
  r.nMaxMemory = lim.nMaxMemory;
  r.zErr = zErr;
  r.nErr = nErr;
  r.pFrame = &root;
  r.pRootFrame = &root;
  /* the render's own allocations are what the memory limit counts */
  size_t nSavedLimit = e->arena.nLimit;
  e->arena.nLimit = e->arena.nTotal + lim.nMaxMemory;
  e->arena.bOverLimit = 0;
  int rc = exec_block(&r, p->pRoot);
  e->arena.nLimit = nSavedLimit;
  if (rc == 0 && buf_append(&out, "", 0) != 0) rc = rerr(&r, "out of memory");
  if (rc) {
    free(out.z);
    if (!zErr[0]) snprintf(zErr, nErr, "render failed");
    return -1;
  }
  *pzOut = out.z;
  *pnOut = out.n;
  return 0;
}
