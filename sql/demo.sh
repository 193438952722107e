#!/bin/sh
# make demo: copies the trained demo model (models/shakespeare.db, made by
# `make demo-model`: a 4-layer GPT-2 trained on Tiny Shakespeare with
# gpt_train) into build/demo.db, shows a sample, runs sql/examples.sql in
# the sqlite3 shell and draws build/attention.svg. Without that file it falls back to a small model with
# seeded random weights (gibberish).
set -eu
cd "$(dirname "$0")/.."
db=build/demo.db
rm -f "$db"
if [ -f models/shakespeare.db ]; then
  cp models/shakespeare.db "$db"
  sqlite3 "$db" <<SQL
.load build/gpt
.mode box
SELECT gpt_generate('ROMEO:', '{"max_tokens": 96, "temperature": 0.8, "seed": 3}') AS sample;
.read sql/examples.sql
SQL
  sqlite3 "$db" ".load build/gpt" "SELECT gpt_attention_svg('ROMEO: But soft, what light through yonder window breaks?', '{\"layer\": 3, \"head\": \"all\"}')" > build/attention.svg && echo "wrote build/attention.svg (layer 3, all heads)"
  exit 0
fi
model=build/models/demo
build/mkmodel "$model" --layers 2 --heads 4 --embd 64 --ctx 128 --seed 7 >/dev/null
sqlite3 "$db" <<SQL
.load build/gpt
.mode box
SELECT gpt_import('demo', '$model') AS import;
.read sql/examples.sql
SQL
