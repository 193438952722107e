/*
** Writes the generated seed inputs of the fuzz targets into
** DIR/<target>/seed-*: valid small models and option objects that reach
** deep into the code, for libFuzzer to mutate. Deterministic, so the
** committed seeds can be regenerated with `make fuzz-seeds`. Regression
** inputs (regress-*) are added by hand when a finding is fixed.
**
**   build/valgrind/mkseeds tests/fuzz
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz_common.h"

static const char *gzRoot;

static void put(const char *zTarget, const char *zName, const void *p, size_t n) {
  char zDir[1024], zFile[300];
  snprintf(zDir, sizeof(zDir), "%s/%s", gzRoot, zTarget);
  mkdir(zDir, 0755);
  snprintf(zFile, sizeof(zFile), "seed-%s", zName);
  if (fz_write(zDir, zFile, p, n)) {
    fprintf(stderr, "mkseeds: cannot write %s/%s\n", zDir, zFile);
    exit(1);
  }
}

/* A one-byte prefix then n bytes. */
static void put_prefixed(const char *zTarget, const char *zName, int c, const void *p, size_t n) {
  unsigned char *a = malloc(n + 1);
  if (!a) exit(1);
  a[0] = (unsigned char)c;
  memcpy(a + 1, p, n);
  put(zTarget, zName, a, n + 1);
  free(a);
}

int main(int argc, char **argv) {
  FzModel m;
  if (argc != 2) {
    fprintf(stderr, "usage: mkseeds DIR\n");
    return 1;
  }
  gzRoot = argv[1];

  /* safetensors: the small model's file in each dtype and naming */
  fz_model_make(&m, 1, 2, 8, 16, 0, 0, 0);
  put("safetensors", "f32", m.aSt, m.nSt);
  fz_model_free(&m);
  fz_model_make(&m, 1, 2, 8, 16, 1, FZ_LMHEAD, 0);
  put("safetensors", "f16-lmhead", m.aSt, m.nSt);
  fz_model_free(&m);
  fz_model_make(&m, 1, 2, 8, 16, 2, FZ_PREFIX, 0);
  put("safetensors", "bf16-prefix", m.aSt, m.nSt);
  fz_model_free(&m);
  {
    static const char zHdr[] = "{\"__metadata__\": {\"format\": \"pt\"}, \"h.0.attn.bias\": "
                               "{\"dtype\": \"U8\", \"shape\": [1, 1, 2, 2], \"data_offsets\": [0, 4]}}";
    unsigned char a[8 + sizeof(zHdr) - 1 + 4];
    size_t n = sizeof(zHdr) - 1;
    for (int i = 0; i < 8; i++) a[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(a + 8, zHdr, n);
    memset(a + 8 + n, 1, 4);
    put("safetensors", "legacy-only", a, sizeof(a));
  }

  /* import_text: each file of the small model, and all three */
  fz_model_make(&m, 1, 2, 8, 16, 0, 0, 0);
  put_prefixed("import_text", "config", 0, m.zConfig, m.nConfig);
  put_prefixed("import_text", "vocab", 1, m.zVocab, m.nVocab);
  put_prefixed("import_text", "merges", 2, m.zMerges, m.nMerges);
  {
    size_t n = 1 + m.nConfig + 1 + m.nVocab + 1 + m.nMerges;
    unsigned char *a = malloc(n), *z = a;
    if (!a) return 1;
    *z++ = 3;
    memcpy(z, m.zConfig, m.nConfig); z += m.nConfig; *z++ = 0;
    memcpy(z, m.zVocab, m.nVocab); z += m.nVocab; *z++ = 0;
    memcpy(z, m.zMerges, m.nMerges);
    put("import_text", "all", a, n);
    free(a);
  }
  {
    static const char zCfg[] = "{\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 8, \"n_ctx\": 16, "
        "\"n_positions\": 16, \"vocab_size\": 260, \"n_inner\": null, \"activation_function\": "
        "\"gelu_new\", \"scale_attn_weights\": true, \"scale_attn_by_inverse_layer_idx\": false, "
        "\"layer_norm_epsilon\": 0.001}";
    put_prefixed("import_text", "config-full", 0, zCfg, sizeof(zCfg) - 1);
    static const char zMerges[] = "a b\r\n\r\n\xc4\xa0 a\r\nab ab";
    put_prefixed("import_text", "merges-crlf", 2, zMerges, sizeof(zMerges) - 1);
  }
  fz_model_free(&m);

  /* tokenizer: flags byte, then text */
  {
    static const char *az[] = {
      "\x00Hello world! It's 2024, isn't it?  Yes.\n\n",
      "\x01<|endoftext|>The end<|endoftext|>",
      "\x00<|endoftext|> is plain text here",
      "\x00\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 caf\xc3\xa9 na\xc3\xafve \xd0\x9f\xd1\x80\xd0\xb8",
      "\x00\xff\xfe\xc3\x28 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf",
      "\x00   leading\t\ttabs\r\n  and trailing   ",
      "\x00I'm you're we've they'll he'd 's 't 'RE",
      "\x00" "1234567890 3.14159 -42 1e10 0x1F",
      "\x02\x00\x00\x00\x00\x50\xc4\x00\x00\x51\xc4\x00\x00\xff\xff\xff\xff",
      "\x03 ab\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b",
    };
    static const size_t an[] = {0, 0, 0, 0, 0, 0, 0, 0, 17, 16};
    for (size_t i = 0; i < sizeof(az) / sizeof(az[0]); i++) {
      char zName[32];
      snprintf(zName, sizeof(zName), "text%zu", i);
      put("tokenizer", zName, az[i], an[i] ? an[i] : strlen(az[i] + 1) + 1);
    }
  }

  /* model_rows: edit programs (see fuzz_model_rows.c) */
  {
    static const struct { const char *zName; const char *z; size_t n; } a[] = {
      {"none", "", 0},
      {"truncate", "\x03\x02\xf0\x7f", 4},                     /* tensor 2 loses 16 bytes */
      {"extend", "\x03\x02\x04\x80", 4},                       /* tensor 2 gains 4 bytes */
      {"dtype-f16", "\x04\x05\x00\x01", 4},                    /* tensor 5 says f16 */
      {"shape", "\x05\x03\x05[8,8]", 8},                       /* tensor 3 shape */
      {"nan", "\x06\x04\x08\x00\x00\x00\xc0\x7f", 8},          /* a NaN in tensor 4 */
      {"delete", "\x07\x06\x01", 3},                           /* tensor 6 deleted */
      {"rename", "\x08\x01\x00\x02", 4},                       /* tensor 1 takes 2's name */
      {"vocab", "\x09\x00\x19\x00\x01x", 6},                   /* token 5 becomes "x" */
      {"merges", "\x0a\x00\x02\x01q", 5},                      /* merge 0 left "q" */
      {"config", "\x01\x01\x04", 3},                           /* n_head 3 */
      {"config-ctx", "\x01\x03\x10", 3},                       /* n_ctx 65536 */
      {"prompt", "\x0b\x05" "ab ab" "\x1c{\"max_tokens\": 9, \"seed\": 3}", 36},
      {"huge", "\x0c\x01\x02", 3},                             /* tensor 2 all 3.4e38 */
    };
    for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++) put("model_rows", a[i].zName, a[i].z, a[i].n);
  }

  /* options: call, prompt, options text */
  {
    static const char *azOpt[] = {
      "{\"max_tokens\": 3, \"temperature\": 0}",
      "{\"model\": \"m\", \"special\": true}",
      "{\"stop\": [\"a\", \"b b\"], \"max_tokens\": 8}",
      "{\"top_k\": 2, \"top_p\": 0.5, \"seed\": 7, \"temperature\": 0.7, \"truncate\": true}",
      "{\"replace\": true}",
      "{\"pool\": \"last\", \"truncate\": true}",
      "{\"template\": \"{text} tl;dr\", \"max_tokens\": 2}",
      "{\"generate\": 3, \"temperature\": 0}",
      "{\"threads\": 2}",
      "{\"layer\": 0, \"head\": \"all\", \"generate\": 2}",
    };
    int n = 0;
    for (int iCall = 0; iCall < 15; iCall++) {
      for (size_t k = 0; k < sizeof(azOpt) / sizeof(azOpt[0]); k++) {
        if ((iCall + (int)k) % 3 != 0 && k != 0) continue;
        char zName[32];
        unsigned char b[2] = {(unsigned char)iCall, (unsigned char)((iCall + k) % 6)};
        size_t nOpt = strlen(azOpt[k]);
        unsigned char *p = malloc(nOpt + 2);
        if (!p) return 1;
        memcpy(p, b, 2);
        memcpy(p + 2, azOpt[k], nOpt);
        snprintf(zName, sizeof(zName), "call%d-%zu", iCall, k);
        put("options", zName, p, nOpt + 2);
        free(p);
        n++;
      }
    }
  }

  /* tokenizer_json: the small model's tokenizer.json and variants (Llama 3's
  ** ignore_merges, GPT-2's ByteLevel pattern, Digits, literal Split, no
  ** normalizer, merges as strings), its tokenizer_config.json, all three
  ** files, and the gpt_tokenizer row an import stores */
  {
    static const char *azEdit[][2] = {
      {"base", "json(?1)"},
      {"ignore-merges", "json_set(?1, '$.model.ignore_merges', json('true'), '$.normalizer', NULL)"},
      {"bytelevel-regex", "json_set(?1, '$.pre_tokenizer', json('{\"type\": \"ByteLevel\", "
                          "\"add_prefix_space\": false, \"use_regex\": true}'))"},
      {"digits-string", "json_set(?1, '$.pre_tokenizer.pretokenizers', json('[{\"type\": "
                        "\"Digits\", \"individual_digits\": true}, {\"type\": \"Split\", "
                        "\"pattern\": {\"String\": \" \"}, \"behavior\": \"Isolated\"}, "
                        "{\"type\": \"ByteLevel\", \"use_regex\": false}]'))"},
      {"merge-strings", "json_set(?1, '$.model.merges', json('[\"a b\", \"\u0120 a\", "
                        "\"ab ab\"]'), '$.post_processor', NULL)"},
    };
    size_t nJson = 0;
    char *zJson;
    sqlite3 *db;
    fz_model_make(&m, 1, 2, 8, 16, 0, 0, 0);
    zJson = fz_tokenizer_json(&m, &nJson);
    if (!zJson || sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
    for (size_t k = 0; k < sizeof(azEdit) / sizeof(azEdit[0]); k++) {
      char zSql[600];
      sqlite3_stmt *pStmt = 0;
      snprintf(zSql, sizeof(zSql), "SELECT %s", azEdit[k][1]);
      if (sqlite3_prepare_v2(db, zSql, -1, &pStmt, 0) != SQLITE_OK) return 1;
      sqlite3_bind_text(pStmt, 1, zJson, (int)nJson, SQLITE_STATIC);
      if (sqlite3_step(pStmt) != SQLITE_ROW) return 1;
      put_prefixed("tokenizer_json", azEdit[k][0], 0, sqlite3_column_text(pStmt, 0),
                   (size_t)sqlite3_column_bytes(pStmt, 0));
      sqlite3_finalize(pStmt);
    }
    sqlite3_close(db);
    put_prefixed("tokenizer_json", "config", 1, FZ_TOKENIZER_CONFIG,
                 sizeof(FZ_TOKENIZER_CONFIG) - 1);
    {
      static const char zGen[] = "{\"eos_token_id\": [259, 1]}";
      size_t n = 1 + nJson + 1 + sizeof(FZ_TOKENIZER_CONFIG) - 1 + 1 + sizeof(zGen) - 1;
      unsigned char *a = malloc(n), *z = a;
      if (!a) return 1;
      *z++ = 2;
      memcpy(z, zJson, nJson); z += nJson; *z++ = 0;
      memcpy(z, FZ_TOKENIZER_CONFIG, sizeof(FZ_TOKENIZER_CONFIG) - 1);
      z += sizeof(FZ_TOKENIZER_CONFIG) - 1; *z++ = 0;
      memcpy(z, zGen, sizeof(zGen) - 1);
      put("tokenizer_json", "all", a, n);
      free(a);
    }
    {
      /* the row: import the small model with its tokenizer.json */
      const char *zDir = fz_tmpdir();
      sqlite3 *pDb = fz_open(0);
      sqlite3_stmt *pStmt = 0;
      if (fz_write(zDir, "config.json", m.zConfig, m.nConfig) ||
          fz_write(zDir, "model.safetensors", m.aSt, m.nSt) ||
          fz_write(zDir, "tokenizer.json", zJson, nJson) ||
          fz_write(zDir, "tokenizer_config.json", FZ_TOKENIZER_CONFIG,
                   sizeof(FZ_TOKENIZER_CONFIG) - 1) ||
          fz_exec(pDb, "SELECT gpt_import('m', ?1)", zDir, -1, 0, 0, 0) != SQLITE_OK ||
          sqlite3_prepare_v2(pDb, "SELECT config FROM gpt_tokenizer", -1, &pStmt, 0) != SQLITE_OK ||
          sqlite3_step(pStmt) != SQLITE_ROW) {
        fprintf(stderr, "mkseeds: cannot import the tokenizer.json model\n");
        return 1;
      }
      put_prefixed("tokenizer_json", "row", 3, sqlite3_column_text(pStmt, 0),
                   (size_t)sqlite3_column_bytes(pStmt, 0));
      sqlite3_finalize(pStmt);
      sqlite3_close(pDb);
    }
    free(zJson);
    fz_model_free(&m);
  }
  /* q4_blocks: two rows of each format (finite scales), then the activation
  ** bytes; and weight-like floats for the quantizers */
  {
    static const int aBytes[3] = {18, 144, 210};
    unsigned char a[1 + 512 * sizeof(float)]; /* the largest: the floats */
    unsigned v = 12345;
    for (int f = 0; f < 3; f++) {
      int width = 2, nVal = f == 0 ? 32 : 256, nRow = width * aBytes[f];
      size_t n = 1 + 2 * (size_t)nRow + (size_t)(width * nVal);
      char zName[32];
      a[0] = (unsigned char)(f | (width - 1) << 2);
      for (size_t i = 1; i < n; i++) { v = v * 1103515245u + 12345u; a[i] = (unsigned char)(v >> 16); }
      for (int b = 0; b < 2 * width; b++) {
        unsigned char *blk = a + 1 + b * aBytes[f];
        int off = f == 2 ? 208 : 0;
        blk[off] = 0x00; blk[off + 1] = 0x20;             /* d = 2^-7 */
        if (f == 1) { blk[2] = 0x00; blk[3] = 0x18; }    /* dmin = 2^-9 */
      }
      snprintf(zName, sizeof(zName), "%s", f == 0 ? "q4_0" : f == 1 ? "q4_k" : "q6_k");
      put("q4_blocks", zName, a, n);
    }
    float x[512];
    for (int i = 0; i < 512; i++) {
      v = v * 1103515245u + 12345u;
      x[i] = ((float)(v >> 16) / 65536.0f - 0.5f) * (i % 61 == 0 ? 0.8f : 0.1f);
    }
    a[0] = 3;
    memcpy(a + 1, x, sizeof(x));
    put("q4_blocks", "quantize", a, 1 + sizeof(x));
  }

  return 0;
}
