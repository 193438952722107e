-- sqlite-gpt storage layout. The extension runs this on first use; every
-- statement is idempotent. A model is its rows: copy the database file and the
-- model goes with it. See ARCHITECTURE.md for how to read and write them by hand.

-- One row per model. config is JSON with n_layer, n_head, n_embd, n_ctx,
-- vocab_size and layer_norm_epsilon. stamp changes whenever any row of the
-- model changes (the triggers below), so caches of loaded weights know when to
-- reload.
CREATE TABLE IF NOT EXISTS gpt_models(
  name    TEXT PRIMARY KEY,
  config  TEXT NOT NULL,
  source  TEXT,
  created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
  stamp   INTEGER NOT NULL DEFAULT (random())
);

-- One row per tensor: the canonical Hugging Face GPT-2 name without the
-- "transformer." prefix, dtype 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' |
-- 'q4_k' | 'q6_k', shape as a JSON array (always the Hugging Face shape),
-- data the little-endian bytes.
-- f32, f16 and bf16 rows are row-major in the Hugging Face shape: linear
-- weights keep Conv1D's layout (in, out).
-- q8_0 rows (written by gpt_quantize, only for 2-D weights whose input
-- dimension is a multiple of 32) hold the matrix as the forward pass reads
-- it, (out, in): for the Conv1D weights that is the transpose of the stored
-- shape [in, out]; wte, wpe and lm_head [rows, n_embd] keep their order. Each
-- output row is in/32 blocks of 34 bytes, one after another with no padding:
--   bytes 0-1   scale d, IEEE half, little-endian (finite)
--   bytes 2-33  q[0..31], int8 in [-127, 127]
-- standing for the values d * q[j] of inputs 32*b + j of that row. A row is
-- exactly out * (in/32) * 34 bytes; gpt_quantize picks d = max|x| / 127
-- rounded to f16 and q = round(x / d), as GGUF's Q8_0.
-- q4_0, q4_k and q6_k rows are ggml's block_q4_0 (32 values in 18 bytes),
-- block_q4_K and block_q6_K (256 values in 144 and 210 bytes), held the same
-- way as q8_0 rows, (out, in) with whole blocks along the input dimension
-- (a multiple of 32 for q4_0, of 256 for the others); engine/kernels_q4.h
-- has the byte layouts. Their f16 scales must be finite.
CREATE TABLE IF NOT EXISTS gpt_tensors(
  model TEXT NOT NULL,
  name  TEXT NOT NULL,
  dtype TEXT NOT NULL,
  shape TEXT NOT NULL,
  data  BLOB NOT NULL,
  UNIQUE(model, name)
);

-- The tokenizer: token strings in GPT-2's byte-to-unicode form, exactly as in
-- vocab.json, and the ranked BPE merges of merges.txt (rank 0 first).
CREATE TABLE IF NOT EXISTS gpt_vocab(
  model    TEXT NOT NULL,
  token_id INTEGER NOT NULL,
  token    TEXT NOT NULL,
  PRIMARY KEY(model, token_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS gpt_merges(
  model TEXT NOT NULL,
  rank  INTEGER NOT NULL,
  left  TEXT NOT NULL,
  right TEXT NOT NULL,
  PRIMARY KEY(model, rank)
) WITHOUT ROWID;

-- The rest of a tokenizer.json model's tokenizer, one JSON object per model
-- (GPT-2 models have no row): gpt_vocab then holds model.vocab and the added
-- tokens, gpt_merges model.merges. Keys (ARCHITECTURE.md has the details):
--   type 'bpe'; size: the token ids 0..size-1 (vocab_size may be larger);
--   normalizer 'NFC' or null; pre_tokenizer: [{"regex": P} | {"string": S}]
--   Split stages in Hugging Face's regex syntax; ignore_merges;
--   added_tokens: [{"id", "content", "special"}]; bos_id, bos, eos_id, eos
--   (ids and texts, or null); add_bos (prompts start with bos_id);
--   stop_ids: ids that end a generation; chat_template (Jinja) or null.
CREATE TABLE IF NOT EXISTS gpt_tokenizer(
  model  TEXT PRIMARY KEY,
  config TEXT NOT NULL
);

-- Any change to a model's rows gives it a new stamp. (gpt_import writes the
-- gpt_models row last, so its own inserts cost nothing here.) A hand edit of
-- the gpt_models row itself (its config) restamps it too; an UPDATE that sets
-- the stamp itself is left alone. Each trigger is made in main by name: an
-- unqualified one over a table that a TEMP table of the same name shadows
-- went to TEMP, on the TEMP table, and main's rows changed unstamped.
CREATE TRIGGER IF NOT EXISTS main.gpt_models_upd AFTER UPDATE OF name, config ON gpt_models
  WHEN NEW.stamp IS OLD.stamp
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = NEW.name; END;
CREATE TRIGGER IF NOT EXISTS main.gpt_tensors_ins AFTER INSERT ON gpt_tensors
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = NEW.model; END;
CREATE TRIGGER IF NOT EXISTS main.gpt_tensors_upd AFTER UPDATE ON gpt_tensors
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name IN (OLD.model, NEW.model); END;
CREATE TRIGGER IF NOT EXISTS main.gpt_tensors_del AFTER DELETE ON gpt_tensors
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = OLD.model; END;
CREATE TRIGGER IF NOT EXISTS main.gpt_vocab_ins AFTER INSERT ON gpt_vocab
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = NEW.model; END;
CREATE TRIGGER IF NOT EXISTS main.gpt_vocab_upd AFTER UPDATE ON gpt_vocab
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name IN (OLD.model, NEW.model); END;
CREATE TRIGGER IF NOT EXISTS main.gpt_vocab_del AFTER DELETE ON gpt_vocab
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = OLD.model; END;
CREATE TRIGGER IF NOT EXISTS main.gpt_merges_ins AFTER INSERT ON gpt_merges
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = NEW.model; END;
CREATE TRIGGER IF NOT EXISTS main.gpt_merges_upd AFTER UPDATE ON gpt_merges
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name IN (OLD.model, NEW.model); END;
CREATE TRIGGER IF NOT EXISTS main.gpt_merges_del AFTER DELETE ON gpt_merges
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = OLD.model; END;
CREATE TRIGGER IF NOT EXISTS main.gpt_tokenizer_ins AFTER INSERT ON gpt_tokenizer
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = NEW.model; END;
CREATE TRIGGER IF NOT EXISTS main.gpt_tokenizer_upd AFTER UPDATE ON gpt_tokenizer
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name IN (OLD.model, NEW.model); END;
CREATE TRIGGER IF NOT EXISTS main.gpt_tokenizer_del AFTER DELETE ON gpt_tokenizer
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = OLD.model; END;
