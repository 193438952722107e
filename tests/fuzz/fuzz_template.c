/*
** Fuzz target: the chat-template interpreter (engine/template.c), compiler
** and renderer, with no SQLite in the way.
**
** Input: the template source; when it holds a NUL byte, the bytes after the
** first NUL are the content of the last message (any bytes, invalid UTF-8
** included). The render sees what gpt_chat_prompt gives it: messages (a
** system, a user and an assistant message with a <think> block, then the
** user message), bos_token, eos_token, tools and documents None,
** add_generation_prompt True, and a variables dict with nested lists. Limits
** are small (200,000 steps, 16 MiB of memory, 1 MiB of output) so that
** each input runs in milliseconds. Oracles, besides the sanitizers:
**   - tpl_check agrees with tpl_compile;
**   - an error message is never empty and a success's output never exceeds
**     the output limit and has no NUL before its end;
**   - a template that does not call strftime_now renders the same bytes twice.
**
** Seeds: tests/fuzz/template/ (the SmolLM2 and Qwen2.5 templates and the
** construct templates of tests/golden/chat/constructs.json).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "template.h"

static const TplLimits gLimits = {1u << 20, 16u << 20, 200000};

/* A message {"role": zRole, "content": z[0..n)}. */
static TplValue message(TplEnv *e, const char *zRole, const char *z, size_t n) {
  TplValue m = tpl_dict(e);
  tpl_dict_set(e, m, "role", 4, tpl_string(e, zRole, strlen(zRole)));
  tpl_dict_set(e, m, "content", 7, tpl_string(e, z, n));
  return m;
}

/* The variables of one render. */
static TplEnv *make_env(const char *zLast, size_t nLast) {
  TplEnv *e = tpl_env_new();
  if (!e) return 0;
  TplValue msgs = tpl_list(e);
  tpl_list_append(e, msgs, message(e, "system", " You are terse. ", 16));
  tpl_list_append(e, msgs, message(e, "user", "Is 7 prime?", 11));
  tpl_list_append(e, msgs, message(e, "assistant", "<think>\nonly 1 and 7\n</think>\n\nYes.", 35));
  tpl_list_append(e, msgs, message(e, "user", zLast, nLast));
  TplValue extra = tpl_dict(e), list = tpl_list(e);
  tpl_list_append(e, list, tpl_int(1));
  tpl_list_append(e, list, tpl_float(2.5));
  tpl_list_append(e, list, tpl_none());
  tpl_list_append(e, list, tpl_bool(1));
  tpl_dict_set(e, extra, "k", 1, list);
  tpl_dict_set(e, extra, "name", 4, tpl_string(e, "Zürich", 7));
  tpl_env_set(e, "messages", msgs);
  tpl_env_set(e, "extra", extra);
  tpl_env_set(e, "bos_token", tpl_string(e, "<|begin_of_text|>", 17));
  tpl_env_set(e, "eos_token", tpl_string(e, "<|im_end|>", 10));
  tpl_env_set(e, "tools", tpl_none());
  tpl_env_set(e, "documents", tpl_none());
  tpl_env_set(e, "add_generation_prompt", tpl_bool(1));
  return e;
}

/* Renders once; returns 0 with *pzOut (malloc'd) or -1. */
static int render(TplProgram *p, const char *zLast, size_t nLast, char **pzOut, size_t *pnOut) {
  char zErr[256];
  TplEnv *e = make_env(zLast, nLast);
  if (!e) return -1;
  int rc = tpl_render(p, e, &gLimits, pzOut, pnOut, zErr, sizeof(zErr));
  if (rc && zErr[0] == 0) {
    fprintf(stderr, "fuzz_template: empty render error\n");
    abort();
  }
  tpl_env_free(e);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *z = (const char *)data;
  const char *zNul = memchr(z, 0, size);
  size_t nTpl = zNul ? (size_t)(zNul - z) : size;
  const char *zLast = zNul ? zNul + 1 : "Hi";
  size_t nLast = zNul ? size - nTpl - 1 : 2;
  char zErr[256];
  TplProgram *p = 0;
  char *zTpl = malloc(nTpl + 1);
  if (!zTpl) return 0;
  memcpy(zTpl, z, nTpl);
  zTpl[nTpl] = 0;
  int rc = tpl_compile(zTpl, nTpl, &p, zErr, sizeof(zErr));
  int rcCheck = tpl_check(zTpl, zErr, sizeof(zErr));
  if ((rc == 0) != (rcCheck == 0)) {
    fprintf(stderr, "fuzz_template: tpl_check and tpl_compile disagree\n");
    abort();
  }
  if (rc) {
    if (zErr[0] == 0) { fprintf(stderr, "fuzz_template: empty compile error\n"); abort(); }
    free(zTpl);
    return 0;
  }
  char *zOut = 0, *zOut2 = 0;
  size_t nOut = 0, nOut2 = 0;
  if (render(p, zLast, nLast, &zOut, &nOut) == 0) {
    if (nOut > gLimits.nMaxOutput || zOut[nOut] != 0) {
      fprintf(stderr, "fuzz_template: output over the limit or not terminated\n");
      abort();
    }
    if (!strstr(zTpl, "strftime_now") && render(p, zLast, nLast, &zOut2, &nOut2) == 0 &&
        (nOut2 != nOut || memcmp(zOut, zOut2, nOut) != 0)) {
      fprintf(stderr, "fuzz_template: two renders differ\n");
      abort();
    }
  }
  free(zOut);
  free(zOut2);
  tpl_free(p);
  free(zTpl);
  return 0;
}
