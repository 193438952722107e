#!/bin/sh
# make demo-model: trains the demo model, models/shakespeare.db, from Tiny
# Shakespeare (tests/data/tinyshakespeare.txt) with gpt_train_tokenizer and
# gpt_train, stores it as f16 (gpt_quantize) and prints its validation loss
# in bits per byte of the held-out text (the last 10% of the file, scored
# with gpt_logprob). Training runs in build/demo-train.db; DEMO_STEPS,
# DEMO_THREADS override the step count and the threads.
set -eu
cd "$(dirname "$0")/.."
db=build/demo-train.db
out=models/shakespeare.db
steps=${DEMO_STEPS:-2500}
threads=${DEMO_THREADS:-0}
rm -f "$db" "$out"
mkdir -p models
start=$(date +%s)
sqlite3 "$db" <<SQL
.load build/gpt
CREATE TABLE play(text TEXT);
INSERT INTO play SELECT CAST(readfile('tests/data/tinyshakespeare.txt') AS TEXT);
-- the tokenizer learns from the first 90% only
SELECT gpt_train_tokenizer('shakespeare-bpe',
  'SELECT substr(text, 1, length(text) * 9 / 10) FROM play', 1024);
-- gpt_train holds out the last 10% of the tokens (val_fraction)
SELECT gpt_train('shakespeare-f32', 'SELECT text FROM play', json_object(
  'tokenizer', 'shakespeare-bpe', 'n_layer', 4, 'n_head', 6, 'n_embd', 192, 'n_ctx', 128,
  'steps', $steps, 'batch_size', 8, 'learning_rate', 3e-3, 'warmup', 100,
  'checkpoint_every', 100, 'val_fraction', 0.1, 'seed', 1337, 'threads', $threads));
SELECT gpt_quantize('shakespeare-f32', 'shakespeare', 'f16');
SQL
end=$(date +%s)
sqlite3 "$out" <<SQL
.load build/gpt
.read sql/schema.sql
ATTACH '$db' AS t;
INSERT INTO main.gpt_models SELECT * FROM t.gpt_models WHERE name = 'shakespeare';
INSERT INTO main.gpt_tensors SELECT * FROM t.gpt_tensors WHERE model = 'shakespeare';
INSERT INTO main.gpt_vocab SELECT * FROM t.gpt_vocab WHERE model = 'shakespeare';
INSERT INTO main.gpt_merges SELECT * FROM t.gpt_merges WHERE model = 'shakespeare';
CREATE TABLE IF NOT EXISTS main.gpt_train_log AS SELECT * FROM t.gpt_train_log WHERE 0;
INSERT INTO main.gpt_train_log SELECT 'shakespeare', step, loss, val_loss, lr, tokens_per_s, elapsed_s
  FROM t.gpt_train_log WHERE model = 'shakespeare-f32';
DETACH t;
VACUUM;
SQL
echo "training took $((end - start)) s ($(nproc) cores)"
sqlite3 "$out" <<SQL
.load build/gpt
-- the held-out text: from the first line start after 90% of the file
WITH f(t) AS (SELECT CAST(readfile('tests/data/tinyshakespeare.txt') AS TEXT)),
     v(t) AS (SELECT substr(t, length(t) * 9 / 10 + instr(substr(t, length(t) * 9 / 10), char(10)))
              FROM f)
SELECT printf('validation: %.3f bits per byte over %d bytes (%s tokens)',
              -gpt_logprob(t, '{"model": "shakespeare"}') / ln(2) / length(CAST(t AS BLOB)),
              length(CAST(t AS BLOB)), json_array_length(gpt_tokenize(t, '{"model": "shakespeare"}')))
  FROM v;
SELECT gpt_generate('ROMEO:', '{"model": "shakespeare", "max_tokens": 120, "temperature": 0.8, "seed": 1}');
SQL
ls -l "$out"
