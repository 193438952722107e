#!/bin/sh
# make demo: generate a small GPT-2-shaped model with seeded random weights,
# import it into demo.db next to a docs table, and run sql/examples.sql in
# the sqlite3 shell. (Random weights write gibberish; import the real GPT-2
# as README.md shows to read English.)
set -eu
cd "$(dirname "$0")/.."
db=build/demo.db
model=build/models/demo
rm -f "$db"
build/mkmodel "$model" --layers 2 --heads 4 --embd 64 --ctx 128 --seed 7 >/dev/null
sqlite3 "$db" <<SQL
.load build/gpt
.mode box
SELECT gpt_import('demo', '$model') AS import;
.read sql/examples.sql
SQL
