-- sqlite-gpt by example: the queries a user writes against a table of
-- documents. Runnable as-is in a database with one imported model:
--
--   sqlite3 my.db
--   .load build/gpt
--   SELECT gpt_import('gpt2', 'models/gpt2');
--   .read sql/examples.sql
--
-- With several models, add "model": "name" to each options object. Every
-- function here runs the model, so none may be used in a view or trigger
-- (they are DIRECTONLY); use them in statements like these.

-- A small docs table, filled only when it is empty.
CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, grp TEXT, body TEXT);
INSERT INTO docs(grp, body)
  SELECT column1, column2 FROM (VALUES
    ('pets', 'The cat slept on the warm windowsill all afternoon.'),
    ('pets', 'Dogs need a walk every morning and every evening.'),
    ('pets', 'My parrot repeats every word it hears.'),
    ('databases', 'SQLite stores a whole database in a single file.'),
    ('databases', 'An index makes lookups fast but slows down writes.'),
    ('databases', 'Transactions keep the data consistent after a crash.'))
  WHERE NOT EXISTS (SELECT 1 FROM docs);

-- 1. Generate a continuation of every row (greedy, 16 tokens).
SELECT id, body, gpt_generate(body, '{"max_tokens": 16, "temperature": 0}') AS continuation
  FROM docs ORDER BY id;

-- 2. The same generation token by token: each token's log-probability, and
--    why it stopped on the last row.
SELECT step, token, round(exp(logprob), 3) AS prob, finish_reason
  FROM gpt_generate_tokens((SELECT body FROM docs ORDER BY id LIMIT 1),
                           '{"max_tokens": 8, "temperature": 0}');

-- 3. One summary per group, rows taken in id order (the ordered subquery
--    sets the order the aggregate sees them in).
SELECT grp, count(*) AS n_rows, gpt_summarize(body) AS summary
  FROM (SELECT grp, body FROM docs ORDER BY grp, id)
  GROUP BY grp;

-- 4. One head's attention for one row: layer 0, head 0 of document 1. Only
--    that head is computed and kept.
SELECT a.query_pos, a.query_token, a.key_pos, a.key_token, round(a.weight, 3) AS weight
  FROM docs AS d, gpt_attention(d.body) AS a
  WHERE d.id = (SELECT min(id) FROM docs) AND a.layer = 0 AND a.head = 0
  ORDER BY a.query_pos, a.key_pos;

-- 5. For each token, the earlier token it attends to most (same head).
SELECT query_pos, query_token, key_token, round(max(weight), 3) AS weight
  FROM gpt_attention((SELECT body FROM docs ORDER BY id LIMIT 1))
  WHERE layer = 0 AND head = 0
  GROUP BY query_pos ORDER BY query_pos;

-- 6. The five most likely next tokens after each of the first two rows.
SELECT d.id, t.rank, t.token, round(t.prob, 4) AS prob
  FROM docs AS d, gpt_next_tokens(d.body, 5) AS t
  WHERE d.id IN (SELECT id FROM docs ORDER BY id LIMIT 2)
  ORDER BY d.id, t.rank;

-- 7. Rows ranked by perplexity: the least surprising text first.
SELECT id, round(gpt_perplexity(body), 2) AS perplexity,
       round(gpt_logprob(body), 2) AS logprob, body
  FROM docs ORDER BY perplexity;

-- 8. The rows nearest to a question, by cosine similarity of embeddings.
--    gpt_embed() returns n_embd little-endian float32 (sqlite-vec's format;
--    with sqlite-vec loaded this whole query is
--      ORDER BY vec_distance_cosine(gpt_embed(body), gpt_embed('...'))).
--    Plain SQLite has no float32 decoder, so the CTE decodes them by hand:
--    hex() of the BLOB, four bytes per element, then sign, exponent and
--    mantissa of IEEE 754. Exponents beyond 2^-62 count as 0. sqrt() needs
--    SQLite's math functions (built in by default since 3.35).
WITH RECURSIVE
  vec(id, h) AS MATERIALIZED (
    SELECT id, hex(gpt_embed(body)) FROM docs
    UNION ALL
    SELECT NULL, hex(gpt_embed('Where do I keep my data?'))),
  ix(i) AS (
    SELECT 0 UNION ALL
    SELECT i + 1 FROM ix WHERE i + 1 < (SELECT max(length(h)) / 8 FROM vec)),
  bits(id, i, u) AS (
    SELECT id, i,
        ((instr('0123456789ABCDEF', substr(h, 8 * i + 1, 1)) - 1) << 4)
      | ((instr('0123456789ABCDEF', substr(h, 8 * i + 2, 1)) - 1))
      | ((instr('0123456789ABCDEF', substr(h, 8 * i + 3, 1)) - 1) << 12)
      | ((instr('0123456789ABCDEF', substr(h, 8 * i + 4, 1)) - 1) << 8)
      | ((instr('0123456789ABCDEF', substr(h, 8 * i + 5, 1)) - 1) << 20)
      | ((instr('0123456789ABCDEF', substr(h, 8 * i + 6, 1)) - 1) << 16)
      | ((instr('0123456789ABCDEF', substr(h, 8 * i + 7, 1)) - 1) << 28)
      | ((instr('0123456789ABCDEF', substr(h, 8 * i + 8, 1)) - 1) << 24)
    FROM vec, ix),
  x(id, i, v) AS (
    SELECT id, i,
      CASE WHEN ((u >> 23) & 255) < 65 THEN 0.0
           ELSE (1 - 2 * (u >> 31)) * (1.0 + (u & 8388607) / 8388608.0)
              * CASE WHEN ((u >> 23) & 255) >= 127 THEN 1 << (((u >> 23) & 255) - 127)
                     ELSE 1.0 / (1 << (127 - ((u >> 23) & 255))) END
      END
    FROM bits)
SELECT d.id, round(sum(d.v * q.v) / sqrt(sum(d.v * d.v) * sum(q.v * q.v)), 4) AS cosine,
       (SELECT body FROM docs WHERE id = d.id) AS body
  FROM x AS d JOIN x AS q ON q.id IS NULL AND q.i = d.i
  WHERE d.id IS NOT NULL
  GROUP BY d.id
  ORDER BY cosine DESC
  LIMIT 3;
