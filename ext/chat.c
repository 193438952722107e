/*
** Chat in SQL: a model's chat template, rendered and run.
**
**   SELECT gpt_chat_prompt('[{"role":"system","content":"Be brief."},
**                            {"role":"user","content":"Hi"}]');
**   SELECT gpt_chat('What is SQLite?', '{"max_tokens": 64, "temperature": 0}');
**
** gpt_chat_prompt(messages [, options]) returns the prompt the model's chat
** template renders, byte for byte what Hugging Face's
** apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
** gives. messages is a JSON array of {"role", "content"} objects (other keys
** are passed through to the template); any other text is one user message.
** Options: model; template (a Jinja chat template to use instead of the
** model's; without "model" it renders with no model at all, so bos_token and
** eos_token are undefined unless given in variables); variables (a JSON
** object of extra template variables, e.g. {"enable_thinking": false} or
** {"bos_token": "<s>"}, set after the standard ones); add_generation_prompt
** (default true).
**
** gpt_chat(messages [, options]) renders the same prompt with the generation
** prompt, encodes it with special tokens matched as whole strings (the
** rendered text carries them; no BOS is added), generates with
** gpt_generate's options and returns the assistant's text, ended by any of
** the model's stop tokens (<|im_end|>, <|eot_id|>, eos...), a stop string or
** max_tokens. Options: those of gpt_generate, plus template and variables.
**
** How it works: the messages and variables JSON are read with SQLite's
** json_tree into the template's values (engine/template.c), with bos_token
** and eos_token from the model's tokenizer files, tools and documents None,
** and add_generation_prompt; the template is compiled per call (templates
** are a few KB; compiling is microseconds next to a forward pass). Both
** functions are DIRECTONLY: gpt_chat runs the model, and the prompt depends
** on stored rows and on strftime_now's clock.
*/
#include "gpt_ext.h"
#include "template.h"
#include <stdlib.h>
#include <string.h>

/* Limits of one render from SQL. */
static const TplLimits chatLimits = {16u << 20, 64u << 20, 20000000};

/* Reports an error through the context and frees the message. */
static void chat_error(sqlite3_context *ctx, int rc, char *zErr) {
  if (zErr) gptext_result_error(ctx, zErr);
  if (rc != SQLITE_ERROR || !zErr) sqlite3_result_error_code(ctx, rc);
  sqlite3_free(zErr);
}

#define CHAT_MAX_KEYS 4096 /* keys of one JSON object of the messages or variables */

/* Converts JSON text into a template value with json_tree: rows come in
** document order, each naming its parent, so a stack of open containers
** places every value. */
static int chat_json_value(sqlite3 *db, TplEnv *e, const char *zFunc, const char *zJson,
                           TplValue *pOut, char **pzErr) {
  sqlite3_stmt *p = 0;
  struct Open { sqlite3_int64 id; TplValue v; } *aOpen = 0;
  int nOpen = 0, nAlloc = 0, rc;
  *pOut = tpl_none();
  rc = sqlite3_prepare_v2(db, "SELECT id, parent, type, key, atom FROM json_tree(?1)", -1, &p, 0);
  if (rc != SQLITE_OK) goto done;
  sqlite3_bind_text(p, 1, zJson, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
    const char *zType = (const char *)sqlite3_column_text(p, 2);
    TplValue v;
    if (!zType) { rc = SQLITE_NOMEM; goto done; }
    if (strcmp(zType, "object") == 0) v = tpl_dict(e);
    else if (strcmp(zType, "array") == 0) v = tpl_list(e);
    else if (strcmp(zType, "null") == 0) v = tpl_none();
    else if (strcmp(zType, "true") == 0) v = tpl_bool(1);
    else if (strcmp(zType, "false") == 0) v = tpl_bool(0);
    else if (strcmp(zType, "integer") == 0) {
      /* past 64 bits SQLite gives a real: an error, as integer overflow is */
      if (sqlite3_column_type(p, 4) != SQLITE_INTEGER) {
        /* (SQLite versions print the real differently: not echoed) */
        gptext_set_error(pzErr, "%s: a JSON integer of the messages or variables does not "
                         "fit 64 bits", zFunc);
        rc = SQLITE_ERROR;
        goto done;
      }
      v = tpl_int(sqlite3_column_int64(p, 4));
    }
    else if (strcmp(zType, "real") == 0) v = tpl_float(sqlite3_column_double(p, 4));
    else {
      const char *z = (const char *)sqlite3_column_text(p, 4);
      v = tpl_string(e, z ? z : "", z ? (size_t)sqlite3_column_bytes(p, 4) : 0);
    }
    if (v.type == TPL_UNDEFINED) { rc = SQLITE_NOMEM; goto done; }
    if (sqlite3_column_type(p, 1) == SQLITE_NULL) {
      *pOut = v;
    } else {
      sqlite3_int64 parent = sqlite3_column_int64(p, 1);
      while (nOpen > 0 && aOpen[nOpen - 1].id != parent) nOpen--;
      if (nOpen == 0) {
        gptext_set_error(pzErr, "%s: malformed JSON tree", zFunc);
        rc = SQLITE_ERROR;
        goto done;
      }
      TplValue c = aOpen[nOpen - 1].v;
      int bad;
      if (c.type == TPL_LIST) {
        bad = tpl_list_append(e, c, v);
      } else {
        /* a key is set by a search of the keys before it: a bound on them
        ** bounds the object's n * n (200,000 keys took 79 s) */
        if (c.u.pDict->n >= CHAT_MAX_KEYS) {
          gptext_set_error(pzErr, "%s: an object of the messages or variables has more than "
                           "%d keys", zFunc, CHAT_MAX_KEYS);
          rc = SQLITE_ERROR;
          goto done;
        }
        const char *zKey = (const char *)sqlite3_column_text(p, 3);
        size_t nKey = zKey ? (size_t)sqlite3_column_bytes(p, 3) : 0;
        /* SQLite's JSON functions read a repeated key's first value, Python's
        ** json (and so Hugging Face's messages) its last: refused, as in the
        ** options */
        for (size_t k = 0; k < c.u.pDict->n; k++) {
          TplValue old = c.u.pDict->aKey[k];
          if (old.type == TPL_STRING && old.u.s.n == nKey &&
              (nKey == 0 || memcmp(old.u.s.z, zKey, nKey) == 0)) {
            gptext_set_error(pzErr, "%s: an object of the messages or variables gives the key "
                             "\"%.*s\" twice; give each key once", zFunc,
                             nKey > 64 ? 64 : (int)nKey, zKey ? zKey : "");
            rc = SQLITE_ERROR;
            goto done;
          }
        }
        bad = tpl_dict_set(e, c, zKey ? zKey : "", nKey, v);
      }
      if (bad) { rc = SQLITE_NOMEM; goto done; }
    }
    if (v.type == TPL_LIST || v.type == TPL_DICT) {
      if (nOpen == nAlloc) {
        int nNew = nAlloc ? nAlloc * 2 : 16;
        struct Open *a = sqlite3_realloc64(aOpen, sizeof(*a) * (size_t)nNew);
        if (!a) { rc = SQLITE_NOMEM; goto done; }
        aOpen = a;
        nAlloc = nNew;
      }
      aOpen[nOpen].id = sqlite3_column_int64(p, 0);
      aOpen[nOpen].v = v;
      nOpen++;
    }
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
done:
  if (rc != SQLITE_OK && !*pzErr)
    gptext_set_error(pzErr, "%s: %s", zFunc, rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(db));
  sqlite3_finalize(p);
  sqlite3_free(aOpen);
  return rc;
}

/* The messages value: a JSON array of objects with a string "role", or one
** user message of any other text. */
static int chat_messages(sqlite3 *db, TplEnv *e, const char *zFunc, sqlite3_value *pArg,
                         TplValue *pOut, char **pzErr) {
  char *zType = 0;
  sqlite3_value *pText = 0; /* JSONB's text: its bytes are no JSON text */
  int rc = gptext_json_text(db, pArg, &pText);
  if (pText) pArg = pText;
  if (rc == SQLITE_OK) rc = gptext_json_type(db, pArg, &zType);
  const char *z = (const char *)sqlite3_value_text(pArg);
  int n = sqlite3_value_bytes(pArg);
  if (rc != SQLITE_OK) goto done;
  if (!z) { rc = SQLITE_NOMEM; goto done; }
  if (zType && strcmp(zType, "array") == 0) {
    /* SQLite 3.40's JSON functions end a string at "\u0000" (content "a\u0000b"
    ** rendered "a"), and every version reads JSON text only up to a NUL byte
    ** (what follows was dropped): refused on all */
    if (gptext_json_has_nul(z, n)) {
      gptext_set_error(pzErr, "%s: the messages hold a NUL character (\"\\u0000\" or a NUL "
                       "byte), which no message may hold", zFunc);
      rc = SQLITE_ERROR;
      goto done;
    }
    rc = chat_json_value(db, e, zFunc, z, pOut, pzErr);
    if (rc != SQLITE_OK) goto done;
    for (size_t i = 0; pOut->type == TPL_LIST && i < pOut->u.pList->n; i++) {
      TplValue m = pOut->u.pList->a[i];
      /* the role is what every template reads first */
      TplValue role = tpl_none();
      if (m.type == TPL_DICT) {
        for (size_t k = 0; k < m.u.pDict->n; k++) {
          TplValue key = m.u.pDict->aKey[k];
          if (key.type == TPL_STRING && key.u.s.n == 4 && memcmp(key.u.s.z, "role", 4) == 0)
            role = m.u.pDict->aVal[k];
        }
      }
      if (role.type != TPL_STRING) {
        gptext_set_error(pzErr, "%s: message %d must be an object with a string \"role\", like "
                         "{\"role\": \"user\", \"content\": \"Hi\"}", zFunc, (int)i);
        rc = SQLITE_ERROR;
        goto done;
      }
    }
  } else if (zType && strcmp(zType, "object") == 0) {
    gptext_set_error(pzErr, "%s: messages must be a JSON array of {\"role\", \"content\"} "
                     "objects or a plain string, not an object", zFunc);
    rc = SQLITE_ERROR;
  } else {
    TplValue msg = tpl_dict(e), list = tpl_list(e);
    TplValue role = tpl_string(e, "user", 4), content = tpl_string(e, z, (size_t)n);
    if (msg.type == TPL_UNDEFINED || list.type == TPL_UNDEFINED || role.type == TPL_UNDEFINED ||
        content.type == TPL_UNDEFINED || tpl_dict_set(e, msg, "role", 4, role) ||
        tpl_dict_set(e, msg, "content", 7, content) || tpl_list_append(e, list, msg)) {
      rc = SQLITE_NOMEM;
      goto done;
    }
    *pOut = list;
  }
done:
  sqlite3_free(zType);
  if (rc != SQLITE_OK && !*pzErr) /* JSONB's text past the length limit, say */
    gptext_set_error(pzErr, "%s: the messages: %s", zFunc,
                     rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(db));
  sqlite3_value_free(pText);
  return rc;
}

/* Sets each key of the JSON object zVars as a template variable of e, the
** last of a key given twice winning (the messages and the generation
** prompt are not variables' to set). */
static int chat_set_vars(sqlite3 *db, TplEnv *e, const char *zFunc, const char *zVars,
                         char **pzErr) {
  TplValue v;
  int rc = chat_json_value(db, e, zFunc, zVars, &v, pzErr);
  for (size_t i = 0; rc == SQLITE_OK && v.type == TPL_DICT && i < v.u.pDict->n; i++) {
    TplValue k = v.u.pDict->aKey[i];
    char *zName = sqlite3_mprintf("%.*s", (int)k.u.s.n, k.u.s.z);
    if (!zName) return SQLITE_NOMEM;
    /* the arguments apply_chat_template takes itself: Hugging Face
    ** refuses them twice (a duplicate keyword argument) */
    if (strcmp(zName, "messages") == 0 || strcmp(zName, "add_generation_prompt") == 0) {
      gptext_set_error(pzErr, "%s: option \"variables\" may not set \"%s\" (the messages "
                       "argument and the generation prompt set it)", zFunc, zName);
      rc = SQLITE_ERROR;
    } else if (tpl_env_set(e, zName, v.u.pDict->aVal[i])) {
      rc = SQLITE_NOMEM;
    }
    sqlite3_free(zName);
  }
  return rc;
}

/* Renders the prompt: the template (the option's, else the model's) over
** the messages, the model's special tokens, the variables zDefaultVars (a
** JSON object, or NULL) and over them the variables option. m may be NULL
** (a template option without a model). *pzOut is sqlite3_malloc'd. */
static int chat_render(sqlite3 *db, GptModel *m, const char *zFunc, const GptOptions *o,
                       const char *zDefaultVars, sqlite3_value *pMessages, int bGenPrompt,
                       char **pzOut, int *pnOut, char **pzErr) {
  const char *zTpl = o->zTemplate ? o->zTemplate : (m ? m->zChatTemplate : 0);
  TplProgram *pProg = 0;
  TplEnv *e = 0;
  TplValue v;
  char zMsg[300], *zOut = 0, *zWho = 0;
  size_t nOut = 0;
  int rc = SQLITE_OK;
  *pzOut = 0;
  *pnOut = 0;
  if (!zTpl) {
    gptext_set_error(pzErr, "%s: model '%s': the model has no chat template; pass one as "
                     "{\"template\": \"...\"}", zFunc, m ? m->zName : "?");
    return SQLITE_ERROR;
  }
  if (tpl_compile(zTpl, strlen(zTpl), &pProg, zMsg, sizeof(zMsg))) {
    if (m) gptext_set_error(pzErr, "%s: model '%s': %s chat template: %s", zFunc, m->zName,
                            o->zTemplate ? "the" : "its", zMsg);
    else gptext_set_error(pzErr, "%s: chat template: %s", zFunc, zMsg);
    return SQLITE_ERROR;
  }
  /* every message below names the model, when there is one */
  if (m && !(zWho = sqlite3_mprintf("%s: model '%s'", zFunc, m->zName))) {
    rc = SQLITE_NOMEM;
    goto done;
  }
  if (zWho) zFunc = zWho;
  e = tpl_env_new();
  if (!e) { rc = SQLITE_NOMEM; goto done; }
  rc = chat_messages(db, e, zFunc, pMessages, &v, pzErr);
  if (rc != SQLITE_OK) goto done;
  if (tpl_env_set(e, "messages", v) || tpl_env_set(e, "tools", tpl_none()) ||
      tpl_env_set(e, "documents", tpl_none()) ||
      tpl_env_set(e, "add_generation_prompt", tpl_bool(bGenPrompt))) { rc = SQLITE_NOMEM; goto done; }
  if (m && m->zBosText) {
    v = tpl_string(e, m->zBosText, strlen(m->zBosText));
    if (v.type == TPL_UNDEFINED || tpl_env_set(e, "bos_token", v)) { rc = SQLITE_NOMEM; goto done; }
  }
  if (m && m->zEosText) {
    v = tpl_string(e, m->zEosText, strlen(m->zEosText));
    if (v.type == TPL_UNDEFINED || tpl_env_set(e, "eos_token", v)) { rc = SQLITE_NOMEM; goto done; }
  }
  if (zDefaultVars && (rc = chat_set_vars(db, e, zFunc, zDefaultVars, pzErr)) != SQLITE_OK)
    goto done;
  if (o->zVariables && (rc = chat_set_vars(db, e, zFunc, o->zVariables, pzErr)) != SQLITE_OK)
    goto done;
  if (tpl_render(pProg, e, &chatLimits, &zOut, &nOut, zMsg, sizeof(zMsg))) {
    gptext_set_error(pzErr, "%s: chat template: %s", zFunc, zMsg);
    rc = SQLITE_ERROR;
    goto done;
  }
  if (nOut > 0x7ffffffe) {
    gptext_set_error(pzErr, "%s: the rendered prompt is %lld bytes, over the limit of %d",
                     zFunc, (long long)nOut, 0x7ffffffe);
    rc = SQLITE_TOOBIG;
    goto done;
  }
  if (!gptext_utf8_valid(zOut, nOut)) {
    gptext_set_error(pzErr, "%s: the rendered prompt is not valid UTF-8 (check the messages%s)",
                     zFunc, o->zVariables ? " and the variables" : "");
    rc = SQLITE_ERROR;
    goto done;
  }
  *pzOut = sqlite3_malloc64(nOut + 1);
  if (!*pzOut) { rc = SQLITE_NOMEM; goto done; }
  memcpy(*pzOut, zOut, nOut + 1);
  *pnOut = (int)nOut;
done:
  if (rc == SQLITE_NOMEM && !*pzErr) gptext_set_error(pzErr, "%s: out of memory", zFunc);
  sqlite3_free(zWho);
  free(zOut);
  tpl_env_free(e);
  tpl_free(pProg);
  return rc;
}

/* gpt_chat_prompt(messages [, options]): the rendered prompt. */
static void gptChatPromptFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char zFunc[] = "gpt_chat_prompt";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  GptOptions o;
  GptModel *m = 0;
  char *zErr = 0, *zOut = 0;
  int nOut = 0, rc;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  rc = gptext_options_parse(db, zFunc, argc > 1 ? argv[1] : 0,
                            GPTOPT_MODEL | GPTOPT_TEMPLATE | GPTOPT_CHATVARS | GPTOPT_GENPROMPT,
                            &o, &zErr);
  if (rc == SQLITE_OK && (o.zModel || !o.zTemplate))
    rc = gptext_model_acquire(sqlite3_user_data(ctx), db, zFunc, o.zModel, 0, &m, &zErr);
  if (rc == SQLITE_OK)
    rc = chat_render(db, m, zFunc, &o, 0, argv[0], !o.bNoGenPrompt, &zOut, &nOut, &zErr);
  if (rc != SQLITE_OK) {
    chat_error(ctx, rc, zErr);
  } else {
    gptext_result_text(ctx, zOut, nOut, sqlite3_free); /* valid UTF-8 (gpt_ext.h) */
    zOut = 0;
    sqlite3_free(zErr);
  }
  sqlite3_free(zOut);
  gptext_model_release(m);
  gptext_options_clear(&o);
}

/* gpt_chat(messages [, options]): the assistant's reply. */
static void gptChatFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  static const char zFunc[] = "gpt_chat";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  GptConn *pConn = sqlite3_user_data(ctx);
  GptOptions o;
  GptModel *m = 0;
  GptGeneration g;
  char *zErr = 0, *zPrompt = 0;
  int *aIds = 0, nIds = 0, nPrompt = 0, rc;
  memset(&g, 0, sizeof(g));
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  rc = gptext_options_parse(db, zFunc, argc > 1 ? argv[1] : 0,
                            GPTOPT_MODEL | GPTOPT_GENERATE | GPTOPT_TRUNCATE | GPTOPT_THREADS |
                            GPTOPT_TEMPLATE | GPTOPT_CHATVARS, &o, &zErr);
  if (rc == SQLITE_OK) rc = gptext_model_acquire(pConn, db, zFunc, o.zModel, 1, &m, &zErr);
  if (rc == SQLITE_OK) rc = chat_render(db, m, zFunc, &o, 0, argv[0], 1, &zPrompt, &nPrompt, &zErr);
  /* the rendered text carries its special tokens (and its BOS, if any) */
  if (rc == SQLITE_OK) rc = gptext_encode(db, m, zFunc, zPrompt, nPrompt, GPTEXT_ENCODE_CHAT, &aIds, &nIds, &zErr);
  if (rc == SQLITE_OK) rc = gptext_fit_prompt(m, zFunc, &o, o.nMaxTokens, &aIds, &nIds, &zErr);
  if (rc == SQLITE_OK) rc = gptext_generate(pConn, db, m, zFunc, &o, aIds, nIds, &g, &zErr);
  if (rc != SQLITE_OK) {
    chat_error(ctx, rc, zErr);
  } else {
    if (gptext_result_fits(ctx, zFunc, m->zName, g.nText)) {
      gptext_result_text(ctx, g.zText, g.nText, sqlite3_free); /* valid UTF-8 (gpt_ext.h) */
      g.zText = 0;
    }
    sqlite3_free(zErr);
  }
  sqlite3_free(zPrompt);
  sqlite3_free(aIds);
  gptext_generation_clear(&g);
  gptext_model_release(m);
  gptext_options_clear(&o);
}

/* The placeholder gpt_summarize's templates carry. */
#define CHAT_SUM_PLACEHOLDER "{text}"

int gptext_chat_summary_template(GptModel *m, const char *zFunc, const char *zVariables,
                                 char **pzTpl, char **pzErr) {
  sqlite3 *db = 0;
  sqlite3_value *pMsg = 0;
  sqlite3_stmt *p = 0;
  GptOptions o;
  char *zOut = 0;
  int nOut = 0, rc;
  memset(&o, 0, sizeof(o));
  o.zVariables = (char *)zVariables; /* read only */
  *pzTpl = 0;
  if (!m->zChatTemplate) return SQLITE_OK;
  /* a private in-memory database for json_tree over the one message */
  rc = sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, 0);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db, "SELECT json_array(json_object('role', 'user', 'content', "
                            "'Summarize the following text.' || char(10) || char(10) || '"
                            CHAT_SUM_PLACEHOLDER "'))", -1, &p, 0);
  if (rc == SQLITE_OK && sqlite3_step(p) == SQLITE_ROW) pMsg = sqlite3_value_dup(sqlite3_column_value(p, 0));
  if (rc == SQLITE_OK && !pMsg) rc = SQLITE_NOMEM;
  /* {"enable_thinking": false} under the caller's variables: a thinking
  ** model (Qwen3) would spend max_tokens on its reasoning, not the summary */
  if (rc == SQLITE_OK)
    rc = chat_render(db, m, zFunc, &o, "{\"enable_thinking\": false}", pMsg, 1, &zOut, &nOut,
                     pzErr);
  if (rc == SQLITE_OK) {
    const char *zAt = strstr(zOut, CHAT_SUM_PLACEHOLDER);
    if (!zAt || strstr(zAt + 1, CHAT_SUM_PLACEHOLDER)) {
      gptext_set_error(pzErr, "%s: model '%s': its chat template does not render the user's "
                       "message exactly once", zFunc, m->zName);
      rc = SQLITE_ERROR;
    } else {
      *pzTpl = zOut;
      zOut = 0;
    }
  } else if (!*pzErr) {
    gptext_set_error(pzErr, "%s: model '%s': cannot render its chat template", zFunc, m->zName);
  }
  sqlite3_free(zOut);
  sqlite3_value_free(pMsg);
  sqlite3_finalize(p);
  sqlite3_close(db);
  return rc;
}

/* Registers gpt_chat and gpt_chat_prompt: both DIRECTONLY (gpt_chat runs
** the model; the prompt depends on stored rows and the clock), neither
** DETERMINISTIC. */
int gptext_register_chat(sqlite3 *db, GptConn *pConn) {
  int rc = SQLITE_OK;
  for (int nArg = 1; rc == SQLITE_OK && nArg <= 2; nArg++) {
    rc = sqlite3_create_function(db, "gpt_chat", nArg, SQLITE_UTF8 | SQLITE_DIRECTONLY, pConn,
                                 gptChatFunc, 0, 0);
    if (rc == SQLITE_OK)
      rc = sqlite3_create_function(db, "gpt_chat_prompt", nArg, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                   pConn, gptChatPromptFunc, 0, 0);
  }
  return rc;
}
