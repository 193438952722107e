/*
** A small, bounded interpreter for the subset of Jinja2 that chat templates
** use (Hugging Face's apply_chat_template: trim_blocks, lstrip_blocks, the
** loopcontrols extension, raise_exception, strftime_now and a tojson that is
** json.dumps(x, ensure_ascii=False)).
**
**   TplProgram *p;  tpl_compile(zSrc, nSrc, &p, zErr, sizeof(zErr));
**   TplEnv *e = tpl_env_new();
**   tpl_env_set(e, "messages", aMessagesList);  ...
**   tpl_render(p, e, 0, &zOut, &nOut, zErr, sizeof(zErr));
**
** Compiling refuses, with the construct named and its line, every tag,
** filter, test, method and function outside the subset, so a template that
** compiles can only fail at render time on its data (an undefined value in
** an operation, raise_exception, a limit). Rendering is bounded: steps (one
** per expression node, loop iteration and per 64 bytes a string operation
** touches), memory, output bytes and nesting depth each have a limit, and
** hitting one is an error naming it. Plain C11; knows nothing of SQLite.
*/
#ifndef GPT_TEMPLATE_H
#define GPT_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

/* Value types of the template's data model (Python's, as Jinja sees it). */
enum {
  TPL_UNDEFINED = 0, /* a missing variable, key or attribute */
  TPL_NONE, TPL_BOOL, TPL_INT, TPL_FLOAT, TPL_STRING,
  TPL_LIST,          /* also tuples (flag in the list) */
  TPL_DICT,          /* insertion-ordered; keys are any value */
  TPL_NAMESPACE,     /* namespace(): a dict that {% set ns.x %} may change */
  TPL_LOOP,          /* the loop variable of a for */
  TPL_FUNCTION,      /* a global function or a bound method */
  TPL_MACRO,         /* a {% macro %} of the template */
};

typedef struct TplList TplList;
typedef struct TplDict TplDict;

/* A value: small and passed by copy; strings, lists and dicts point into the
** memory of the TplEnv that made them. */
typedef struct TplValue {
  int type;
  union {
    int64_t i;                            /* TPL_BOOL (0/1), TPL_INT, TPL_FUNCTION id */
    double f;                             /* TPL_FLOAT */
    struct { const char *z; size_t n; } s; /* TPL_STRING: UTF-8, n bytes */
    TplList *pList;                       /* TPL_LIST */
    TplDict *pDict;                       /* TPL_DICT, TPL_NAMESPACE */
    void *p;                              /* TPL_LOOP, bound methods */
  } u;
} TplValue;

/* A list (read-only to callers; grow it with tpl_list_append). */
struct TplList {
  TplValue *a;
  size_t n, nAlloc;
  int bTuple; /* a tuple: printed as (a, b) */
};

/* A dict or namespace: keys and values in insertion order (read-only to
** callers; set keys with tpl_dict_set). */
struct TplDict {
  TplValue *aKey, *aVal;
  size_t n, nAlloc;
};

/* Limits of one render; 0 in a field means its default. */
typedef struct TplLimits {
  size_t nMaxOutput;   /* bytes of output (default 16 MiB) */
  size_t nMaxMemory;   /* bytes the render may allocate (default 256 MiB) */
  int64_t nMaxSteps;   /* evaluation steps (default 50,000,000) */
} TplLimits;

#define TPL_MAX_SOURCE (1 << 20) /* bytes of template source */
#define TPL_MAX_DEPTH 64         /* nesting of blocks and expressions */

typedef struct TplProgram TplProgram;
typedef struct TplEnv TplEnv;

/* Compiles nSrc bytes of template source. Returns 0 with *ppProg (free with
** tpl_free), or -1 with a message in zErr ("line N: ..."). */
int tpl_compile(const char *zSrc, size_t nSrc, TplProgram **ppProg, char *zErr, size_t nErr);
void tpl_free(TplProgram *p);

/* Compiles and frees: 0 when the template is inside the subset, else -1 with
** the reason in zErr. For import code that stores a chat template. */
int tpl_check(const char *zSrc, char *zErr, size_t nErr);

/* The variables of a render and the memory of every value built for it. */
TplEnv *tpl_env_new(void);
void tpl_env_free(TplEnv *e);

/* Value constructors. The string is copied; NULL from tpl_string and
** tpl_list/tpl_dict means out of memory (the value is then TPL_UNDEFINED). */
TplValue tpl_none(void);
TplValue tpl_bool(int b);
TplValue tpl_int(int64_t i);
TplValue tpl_float(double f);
TplValue tpl_string(TplEnv *e, const char *z, size_t n);
TplValue tpl_list(TplEnv *e);
TplValue tpl_dict(TplEnv *e);
/* Appends v to a list value; sets key (a string) to v in a dict value.
** Return 0, or -1 when out of memory or the target is not a list/dict. */
int tpl_list_append(TplEnv *e, TplValue list, TplValue v);
int tpl_dict_set(TplEnv *e, TplValue dict, const char *zKey, size_t nKey, TplValue v);

/* Sets a top-level variable (copying the name). Returns 0 or -1 (memory). */
int tpl_env_set(TplEnv *e, const char *zName, TplValue v);

/* Renders the program with the env's variables. Returns 0 with the output
** in *pzOut (malloc'd, NUL-terminated, free with free()) and its length in
** *pnOut, or -1 with the error in zErr: raise_exception's message is
** "raise_exception: <msg>"; a limit is named. pLimits may be NULL. */
int tpl_render(const TplProgram *p, TplEnv *e, const TplLimits *pLimits, char **pzOut,
               size_t *pnOut, char *zErr, size_t nErr);

#endif
