/*
** The config of Llama-family models (llama, qwen2, qwen3) in Hugging Face's
** own keys, read from config.json at import and from gpt_models.config at
** load: one reader for both, so that what import accepts is exactly what
** load accepts. GPT-2's config keeps its own reader (ext/import.c and
** ext/gpt.c) and its stored keys, so databases made before these
** architectures load unchanged.
**
**   {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
**    "num_hidden_layers": 24, "num_attention_heads": 14,
**    "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
**    "max_position_embeddings": 32768, "tie_word_embeddings": true,
**    "vocab_size": 151936, "rope_scaling": null}
**
** How it works: each key is read with json_type() and json_extract() on the
** bound text, its JSON type checked before its value is used, and integers
** checked to fit an int before gpt_config_check() judges the whole config.
** Keys that would change the computation in ways the engine does not
** implement (another hidden_act, attention or MLP biases on llama, a
** sliding window, another rope_scaling type) are refused by name.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "gpt_ext.h"

/* What a llama3 rope_scaling must give, as transformers requires. */
#define LLAMA3_KEYS \
  "llama3 scaling needs factor, low_freq_factor, high_freq_factor and " \
  "original_max_position_embeddings"

/* Steps p to the type (json_type's name, or NULL when missing or null) and
** value of key zKey ("a" or "a.b") of the bound JSON. */
static int cfgKey(sqlite3_stmt *p, const char *zKey, const char **pzType) {
  char zPath[80];
  snprintf(zPath, sizeof(zPath), "$.%s", zKey);
  sqlite3_reset(p);
  sqlite3_bind_text(p, 2, zPath, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(p);
  if (rc != SQLITE_ROW) return rc == SQLITE_DONE ? SQLITE_ERROR : rc;
  *pzType = (const char *)sqlite3_column_text(p, 0);
  if (*pzType && strcmp(*pzType, "null") == 0) *pzType = 0;
  return SQLITE_OK;
}

/* Reads integer key zKey into *pv: required, or defaulting to dflt when
** missing (bRequired 0). Error text in zErr. */
static int cfgInt(sqlite3_stmt *p, const char *zKey, int bRequired, int dflt, int *pv,
                  char *zErr, size_t nErr) {
  const char *zType = 0;
  int rc = cfgKey(p, zKey, &zType);
  if (rc != SQLITE_OK) return rc;
  if (!zType) {
    if (bRequired) {
      snprintf(zErr, nErr, "\"%s\" is missing, expected an integer", zKey);
      return SQLITE_ERROR;
    }
    *pv = dflt;
    return SQLITE_OK;
  }
  sqlite3_int64 v = sqlite3_column_int64(p, 1);
  if (strcmp(zType, "integer") != 0) {
    snprintf(zErr, nErr, "\"%s\" is a JSON %s, expected an integer", zKey, zType);
    return SQLITE_ERROR;
  }
  if (v < 0 || v > 2147483647LL) {
    snprintf(zErr, nErr, "\"%s\" is %lld, expected a non-negative integer that fits 32 bits",
             zKey, (long long)v);
    return SQLITE_ERROR;
  }
  *pv = (int)v;
  return SQLITE_OK;
}

/* Reads number key zKey (integer or real, finite) into *pv, or dflt when
** missing. */
static int cfgReal(sqlite3_stmt *p, const char *zKey, double dflt, double *pv, char *zErr,
                   size_t nErr) {
  const char *zType = 0;
  int rc = cfgKey(p, zKey, &zType);
  if (rc != SQLITE_OK) return rc;
  if (!zType) {
    *pv = dflt;
    return SQLITE_OK;
  }
  if (strcmp(zType, "integer") && strcmp(zType, "real")) {
    snprintf(zErr, nErr, "\"%s\" is a JSON %s, expected a number", zKey, zType);
    return SQLITE_ERROR;
  }
  *pv = sqlite3_column_double(p, 1);
  if (!isfinite(*pv)) {
    snprintf(zErr, nErr, "\"%s\" is not finite, expected a number", zKey);
    return SQLITE_ERROR;
  }
  return SQLITE_OK;
}

/* Reads boolean key zKey into *pb, or dflt when missing. */
static int cfgBool(sqlite3_stmt *p, const char *zKey, int dflt, int *pb, char *zErr,
                   size_t nErr) {
  const char *zType = 0;
  int rc = cfgKey(p, zKey, &zType);
  if (rc != SQLITE_OK) return rc;
  if (!zType) {
    *pb = dflt;
    return SQLITE_OK;
  }
  if (strcmp(zType, "true") && strcmp(zType, "false")) {
    snprintf(zErr, nErr, "\"%s\" is a JSON %s, expected true or false", zKey, zType);
    return SQLITE_ERROR;
  }
  *pb = strcmp(zType, "true") == 0;
  return SQLITE_OK;
}

/* Reads string key zKey into zOut (at most nOut - 1 bytes), or "" when
** missing. */
static int cfgText(sqlite3_stmt *p, const char *zKey, char *zOut, size_t nOut, char *zErr,
                   size_t nErr) {
  const char *zType = 0;
  int rc = cfgKey(p, zKey, &zType);
  if (rc != SQLITE_OK) return rc;
  zOut[0] = 0;
  if (!zType) return SQLITE_OK;
  if (strcmp(zType, "text") != 0) {
    snprintf(zErr, nErr, "\"%s\" is a JSON %s, expected a string", zKey, zType);
    return SQLITE_ERROR;
  }
  const char *z = (const char *)sqlite3_column_text(p, 1);
  if (!z) return SQLITE_NOMEM;
  /* "qwen2\u0000x" read as "qwen2" (SQLite 3.45 and later keep the NUL;
  ** 3.40's JSON functions end the string there themselves) */
  if (strlen(z) != (size_t)sqlite3_column_bytes(p, 1)) {
    snprintf(zErr, nErr, "\"%s\" contains a NUL character", zKey);
    return SQLITE_ERROR;
  }
  if (strlen(z) >= nOut) {
    snprintf(zErr, nErr, "\"%s\" is longer than %d bytes", zKey, (int)nOut - 1);
    return SQLITE_ERROR;
  }
  memcpy(zOut, z, strlen(z) + 1);
  return SQLITE_OK;
}

/* 1 when zJson names a Llama-family model_type (what gptext_config_read
** reads), 0 when not, -1 out of memory; *pzType gets the model_type for
** messages ("" when none). */
int gptext_config_is_hf(sqlite3 *db, const char *zJson, int nJson, char *zType, size_t nType) {
  sqlite3_stmt *p = 0;
  int bHf = 0, rc;
  zType[0] = 0;
  rc = sqlite3_prepare_v2(db, "SELECT CASE WHEN json_valid(?1) THEN "
                          "json_extract(?1, '$.model_type') END, CASE WHEN json_valid(?1) "
                          "THEN json_type(?1, '$.model_type') END", -1, &p, 0);
  if (rc != SQLITE_OK) return (rc & 0xff) == SQLITE_NOMEM ? -1 : 0;
  sqlite3_bind_text(p, 1, zJson, nJson, SQLITE_STATIC);
  rc = sqlite3_step(p);
  if (rc == SQLITE_ROW && sqlite3_column_type(p, 0) == SQLITE_TEXT) {
    const char *z = (const char *)sqlite3_column_text(p, 0);
    if (!z) {
      bHf = -1;
    } else {
      snprintf(zType, nType, "%s", z);
      bHf = strcmp(z, "gpt2") != 0;
    }
  } else if (rc == SQLITE_ROW && sqlite3_column_type(p, 1) == SQLITE_TEXT &&
             strcmp((const char *)sqlite3_column_text(p, 1), "null") != 0) {
    bHf = 1; /* a model_type that is no string: the Llama reader names it */
  } else if ((rc & 0xff) == SQLITE_NOMEM) {
    bHf = -1;
  }
  sqlite3_finalize(p);
  return bHf;
}

/* Reads a Llama-family config (the JSON object zJson, nJson bytes) into c,
** and whether its head is tied to the embedding into *pbTied. On error
** returns SQLITE_ERROR (or an SQLite code) with a message in zErr that
** names the key and the valid values. */
int gptext_config_read(sqlite3 *db, const char *zJson, int nJson, GPTConfig *c, int *pbTied,
                       char *zErr, size_t nErr) {
  sqlite3_stmt *p = 0;
  char zType[32], zAct[32], zRope[32];
  int rc, bTrue = 0;
  memset(c, 0, sizeof(*c));
  zErr[0] = 0;
  rc = sqlite3_prepare_v2(db, "SELECT json_type(?1, ?2), json_extract(?1, ?2)", -1, &p, 0);
  if (rc != SQLITE_OK) {
    snprintf(zErr, nErr, "%s", sqlite3_errmsg(db));
    goto done;
  }
  sqlite3_bind_text(p, 1, zJson, nJson, SQLITE_STATIC);
  if ((rc = cfgText(p, "model_type", zType, sizeof(zType), zErr, nErr))) goto done;
  c->arch = gpt_arch_from_name(zType);
  if (c->arch <= GPT_ARCH_GPT2) {
    snprintf(zErr, nErr, "\"model_type\" is \"%s\", expected \"gpt2\", \"llama\", \"qwen2\" or "
             "\"qwen3\"", zType);
    rc = SQLITE_ERROR;
    goto done;
  }
  if ((rc = cfgInt(p, "hidden_size", 1, 0, &c->n_embd, zErr, nErr))) goto done;
  if ((rc = cfgInt(p, "intermediate_size", 1, 0, &c->d_ff, zErr, nErr))) goto done;
  if ((rc = cfgInt(p, "num_hidden_layers", 1, 0, &c->n_layer, zErr, nErr))) goto done;
  if ((rc = cfgInt(p, "num_attention_heads", 1, 0, &c->n_head, zErr, nErr))) goto done;
  if ((rc = cfgInt(p, "num_key_value_heads", 0, c->n_head, &c->n_kv_head, zErr, nErr)))
    goto done;
  if ((rc = cfgInt(p, "head_dim", 0, -1, &c->head_dim, zErr, nErr))) goto done;
  if ((rc = cfgInt(p, "max_position_embeddings", 1, 0, &c->n_ctx, zErr, nErr))) goto done;
  if ((rc = cfgInt(p, "vocab_size", 1, 0, &c->vocab_size, zErr, nErr))) goto done;
  if ((rc = cfgReal(p, "rms_norm_eps", 1e-6, &c->ln_eps, zErr, nErr))) goto done;
  if ((rc = cfgReal(p, "rope_theta", 10000.0, &c->rope_theta, zErr, nErr))) goto done;
  if ((rc = cfgBool(p, "tie_word_embeddings", 0, pbTied, zErr, nErr))) goto done;
  if (c->head_dim < 0) {
    /* absent: hidden_size / heads, as transformers does */
    if (c->n_head <= 0 || c->n_embd % c->n_head != 0) {
      snprintf(zErr, nErr, "\"hidden_size\" %d is not divisible by \"num_attention_heads\" "
               "%d and there is no \"head_dim\"", c->n_embd, c->n_head);
      rc = SQLITE_ERROR;
      goto done;
    }
    c->head_dim = c->n_embd / c->n_head;
  }
  /* 0 would mean "the GPT-2 value" to the engine: never from a file */
  if (c->d_ff == 0 || c->n_kv_head == 0 || c->head_dim == 0) {
    snprintf(zErr, nErr, "\"%s\" is 0, expected a positive integer",
             c->d_ff == 0 ? "intermediate_size"
             : c->n_kv_head == 0 ? "num_key_value_heads" : "head_dim");
    rc = SQLITE_ERROR;
    goto done;
  }
  /* what the engine does not implement is refused by name */
  if ((rc = cfgText(p, "hidden_act", zAct, sizeof(zAct), zErr, nErr))) goto done;
  if (zAct[0] && strcmp(zAct, "silu") != 0) {
    snprintf(zErr, nErr, "\"hidden_act\" is \"%s\", expected \"silu\"", zAct);
    rc = SQLITE_ERROR;
    goto done;
  }
  static const char *azFalse[] = {"attention_bias", "mlp_bias", "use_sliding_window"};
  for (int i = 0; i < 3; i++) {
    if ((rc = cfgBool(p, azFalse[i], 0, &bTrue, zErr, nErr))) goto done;
    if (bTrue) {
      snprintf(zErr, nErr, "\"%s\" is true, which this engine does not implement", azFalse[i]);
      rc = SQLITE_ERROR;
      goto done;
    }
  }
  /* Rotary positions: rope_theta and rope_scaling (null, or {"rope_type"
  ** (or "type"): "llama3", ...}), or transformers 5's rope_parameters, one
  ** object of both ({"rope_type": "default" or "llama3", "rope_theta",
  ** ...}). Where a file has both forms they must agree. */
  {
    /* the kinds are copied: cfgKey's text lasts until the next call */
    const char *zKind = 0, *zObj = 0;
    char zKey[64], zScaling[16] = "", zParams[16] = "";
    if ((rc = cfgKey(p, "rope_scaling", &zKind))) goto done;
    if (zKind) snprintf(zScaling, sizeof(zScaling), "%s", zKind);
    if ((rc = cfgKey(p, "rope_parameters", &zKind))) goto done;
    if (zKind) snprintf(zParams, sizeof(zParams), "%s", zKind);
    if (zScaling[0] && strcmp(zScaling, "object") != 0) {
      snprintf(zErr, nErr, "\"rope_scaling\" is a JSON %s, expected null or an object",
               zScaling);
      rc = SQLITE_ERROR;
      goto done;
    }
    if (zParams[0] && strcmp(zParams, "object") != 0) {
      snprintf(zErr, nErr, "\"rope_parameters\" is a JSON %s, expected an object", zParams);
      rc = SQLITE_ERROR;
      goto done;
    }
    if (zParams[0]) {
      double theta = NAN; /* stays NaN when absent */
      if ((rc = cfgReal(p, "rope_parameters.rope_theta", NAN, &theta, zErr, nErr))) goto done;
      if (!isnan(theta)) {
        const char *zTop = 0;
        if ((rc = cfgKey(p, "rope_theta", &zTop))) goto done;
        if (zTop && theta != c->rope_theta) {
          snprintf(zErr, nErr, "\"rope_theta\" %g and \"rope_parameters.rope_theta\" %g differ",
                   c->rope_theta, theta);
          rc = SQLITE_ERROR;
          goto done;
        }
        c->rope_theta = theta;
      }
    }
    /* the object that says how positions are scaled */
    char zParamsType[32] = "";
    if (zParams[0]) {
      if ((rc = cfgText(p, "rope_parameters.rope_type", zParamsType, sizeof(zParamsType), zErr,
                        nErr)))
        goto done;
      if (!zParamsType[0] &&
          (rc = cfgText(p, "rope_parameters.type", zParamsType, sizeof(zParamsType), zErr, nErr)))
        goto done;
    }
    zRope[0] = 0;
    if (zScaling[0]) {
      if ((rc = cfgText(p, "rope_scaling.rope_type", zRope, sizeof(zRope), zErr, nErr)))
        goto done;
      if (!zRope[0] && (rc = cfgText(p, "rope_scaling.type", zRope, sizeof(zRope), zErr, nErr)))
        goto done;
      zObj = "rope_scaling";
      if (strcmp(zRope, "llama3") != 0) {
        snprintf(zErr, nErr, "\"rope_scaling\" type \"%s\" is not supported, expected null or "
                 "\"llama3\"", zRope);
        rc = SQLITE_ERROR;
        goto done;
      }
    }
    if (zParams[0] && zParamsType[0] && strcmp(zParamsType, "default") != 0) {
      if (strcmp(zParamsType, "llama3") != 0) {
        snprintf(zErr, nErr, "\"rope_parameters\" type \"%s\" is not supported, expected "
                 "\"default\" or \"llama3\"", zParamsType);
        rc = SQLITE_ERROR;
        goto done;
      }
      if (zScaling[0] && strcmp(zRope, zParamsType) != 0) {
        snprintf(zErr, nErr, "\"rope_scaling\" type \"%s\" and \"rope_parameters\" type \"%s\" "
                 "differ", zRope, zParamsType);
        rc = SQLITE_ERROR;
        goto done;
      }
      if (!zScaling[0]) zObj = "rope_parameters";
    } else if (zParams[0] && zScaling[0]) {
      snprintf(zErr, nErr, "\"rope_scaling\" type \"%s\" and \"rope_parameters\" type \"%s\" "
               "differ", zRope, zParamsType[0] ? zParamsType : "default");
      rc = SQLITE_ERROR;
      goto done;
    }
    if (zObj) {
      /* each of the four is required, as transformers requires them: a
      ** default would scale positions as the checkpoint never did (Llama
      ** 3.2's factor is 32), and a misspelt key would fall to it */
      static const char *const azReal[] = {"factor", "low_freq_factor", "high_freq_factor"};
      double *apReal[] = {&c->rope_factor, &c->rope_low_freq_factor,
                          &c->rope_high_freq_factor};
      c->rope_scaling = GPT_ROPE_LLAMA3;
      for (int i = 0; i < 3; i++) {
        snprintf(zKey, sizeof(zKey), "%s.%s", zObj, azReal[i]);
        if ((rc = cfgReal(p, zKey, NAN, apReal[i], zErr, nErr))) goto done;
        if (isnan(*apReal[i])) {
          snprintf(zErr, nErr, "\"%s\" is missing or null, expected a number (" LLAMA3_KEYS
                   ")", zKey);
          rc = SQLITE_ERROR;
          goto done;
        }
      }
      snprintf(zKey, sizeof(zKey), "%s.original_max_position_embeddings", zObj);
      /* -1 only from the default: a given value is checked non-negative */
      if ((rc = cfgInt(p, zKey, 0, -1, &c->rope_original_ctx, zErr, nErr))) goto done;
      if (c->rope_original_ctx < 0) {
        snprintf(zErr, nErr, "\"%s\" is missing or null, expected an integer (" LLAMA3_KEYS ")",
                 zKey);
        rc = SQLITE_ERROR;
        goto done;
      }
    }
  }
  if (!(c->rope_theta >= 1 && c->rope_theta <= 1e12)) {
    snprintf(zErr, nErr, "\"rope_theta\" is %g, expected 1 to 1e12", c->rope_theta);
    rc = SQLITE_ERROR;
    goto done;
  }
  {
    /* messages name the keys of the file (and of the stored config) */
    static const char *const azName[GPT_KEY_COUNT] = {
      [GPT_KEY_N_LAYER] = "num_hidden_layers", [GPT_KEY_N_HEAD] = "num_attention_heads",
      [GPT_KEY_N_EMBD] = "hidden_size", [GPT_KEY_N_CTX] = "max_position_embeddings",
      [GPT_KEY_VOCAB_SIZE] = "vocab_size", [GPT_KEY_N_KV_HEAD] = "num_key_value_heads",
      [GPT_KEY_HEAD_DIM] = "head_dim", [GPT_KEY_D_FF] = "intermediate_size"};
    if (gpt_config_check_named(c, azName, zErr, nErr)) rc = SQLITE_ERROR;
  }
done:
  sqlite3_finalize(p);
  return rc;
}

/* The stored form of a Llama-family config: Hugging Face's keys, with every
** value the engine uses (defaults filled in). sqlite3_malloc'd, or NULL. */
char *gptext_config_json(const GPTConfig *c, int bTied) {
  char *zRope = c->rope_scaling == GPT_ROPE_LLAMA3
      ? sqlite3_mprintf("{\"rope_type\":\"llama3\",\"factor\":%!.17g,\"low_freq_factor\":%!.17g,"
                        "\"high_freq_factor\":%!.17g,\"original_max_position_embeddings\":%d}",
                        c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                        c->rope_original_ctx)
      : sqlite3_mprintf("null");
  if (!zRope) return 0;
  char *z = sqlite3_mprintf(
      "{\"model_type\":\"%s\",\"hidden_size\":%d,\"intermediate_size\":%d,"
      "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
      "\"head_dim\":%d,\"rms_norm_eps\":%!.17g,\"rope_theta\":%!.17g,"
      "\"max_position_embeddings\":%d,\"tie_word_embeddings\":%s,\"vocab_size\":%d,"
      "\"rope_scaling\":%s}",
      gpt_arch_name(c->arch), c->n_embd, c->d_ff, c->n_layer, c->n_head,
      gpt_config_kv_heads(c), gpt_config_head_dim(c), c->ln_eps,
      c->rope_theta > 0 ? c->rope_theta : 10000.0, c->n_ctx, bTied ? "true" : "false",
      c->vocab_size, zRope);
  sqlite3_free(zRope);
  return z;
}
