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
-- "transformer." prefix, dtype 'f32' | 'f16' | 'bf16', shape as a JSON array,
-- data the little-endian row-major bytes. Linear weights keep Hugging Face's
-- Conv1D layout (in, out).
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

-- Any change to a model's rows gives it a new stamp. (gpt_import writes the
-- gpt_models row last, so its own inserts cost nothing here.)
CREATE TRIGGER IF NOT EXISTS gpt_tensors_ins AFTER INSERT ON gpt_tensors
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = NEW.model; END;
CREATE TRIGGER IF NOT EXISTS gpt_tensors_upd AFTER UPDATE ON gpt_tensors
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name IN (OLD.model, NEW.model); END;
CREATE TRIGGER IF NOT EXISTS gpt_tensors_del AFTER DELETE ON gpt_tensors
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = OLD.model; END;
CREATE TRIGGER IF NOT EXISTS gpt_vocab_ins AFTER INSERT ON gpt_vocab
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = NEW.model; END;
CREATE TRIGGER IF NOT EXISTS gpt_vocab_upd AFTER UPDATE ON gpt_vocab
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name IN (OLD.model, NEW.model); END;
CREATE TRIGGER IF NOT EXISTS gpt_vocab_del AFTER DELETE ON gpt_vocab
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = OLD.model; END;
CREATE TRIGGER IF NOT EXISTS gpt_merges_ins AFTER INSERT ON gpt_merges
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = NEW.model; END;
CREATE TRIGGER IF NOT EXISTS gpt_merges_upd AFTER UPDATE ON gpt_merges
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name IN (OLD.model, NEW.model); END;
CREATE TRIGGER IF NOT EXISTS gpt_merges_del AFTER DELETE ON gpt_merges
  BEGIN UPDATE gpt_models SET stamp = random() WHERE name = OLD.model; END;
