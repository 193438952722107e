// Every result read from Go: database/sql with github.com/mattn/go-sqlite3
// (Debian's package golang-github-mattn-go-sqlite3-dev, on the system's
// libsqlite3).
//
//	tests/clients/run.sh                      (builds it into build/clients/ and runs it)
//	build/clients/clients [build/gpt.so]      (from the repository root)
//
// Loads the extension through a ConnectHook, imports a random model made by
// build/mkmodel (as tests/python/test_clients.py does) and reads a
// representative set of results on CJK, emoji, English and random-byte
// inputs: gpt_detokenize against gpt_detokenize_bytes on ids that spell invalid
// UTF-8, gpt_generate against gpt_generate_bytes over many seeds at
// temperature 1, the tables gpt_tokens, gpt_next_tokens, gpt_generate_tokens,
// gpt_attention and gpt_batch, gpt_embed, gpt_logprob, gpt_perplexity,
// gpt_chat_prompt, gpt_chat, gpt_summarize, and errors. Go reads a TEXT
// value's bytes as they are, so each must be valid UTF-8 and equal the
// maximal-subpart decoding (one U+FFFD per maximal subpart, as Python's
// errors='replace'; Go's own utf8.DecodeRune gives one per byte) of the
// exact-bytes BLOB. The bytes columns concatenate to the input's or the
// generation's bytes.
//
// Ends with "N passed, N failed" and exits 1 on any failure.
package main

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	sqlite3 "github.com/mattn/go-sqlite3"
)

var passed, failed int

func check(name string, ok bool, detail string) {
	if ok {
		passed++
	} else {
		failed++
		fmt.Printf("  %s... FAILED %s\n", name, detail)
	}
}

// decode is the text a TEXT result must hold for the exact bytes b: each
// maximal subpart of an ill-formed sequence (Unicode 15, 3.9, table 3-7)
// becomes one U+FFFD.
func decode(b []byte) string {
	var out strings.Builder
	for i := 0; i < len(b); {
		c := b[i]
		if c < 0x80 {
			out.WriteByte(c)
			i++
			continue
		}
		var n int
		lo, hi := byte(0x80), byte(0xbf)
		switch {
		case c >= 0xc2 && c <= 0xdf:
			n = 1
		case c == 0xe0:
			n, lo = 2, 0xa0
		case c >= 0xe1 && c <= 0xec, c == 0xee, c == 0xef:
			n = 2
		case c == 0xed:
			n, hi = 2, 0x9f
		case c == 0xf0:
			n, lo = 3, 0x90
		case c >= 0xf1 && c <= 0xf3:
			n = 3
		case c == 0xf4:
			n, hi = 3, 0x8f
		default:
			out.WriteRune(utf8.RuneError)
			i++
			continue
		}
		j := i + 1
		for k := 0; k < n; k++ {
			if j >= len(b) || b[j] < lo || b[j] > hi {
				break
			}
			j++
			lo, hi = 0x80, 0xbf
		}
		if j-i == n+1 {
			out.Write(b[i:j])
		} else {
			out.WriteRune(utf8.RuneError)
		}
		i = j
	}
	return out.String()
}

var db *sql.DB

// query runs a statement and reads all its rows: values are int64, float64,
// string (TEXT), []byte (BLOB) or nil.
func query(q string, args ...any) ([][]any, error) {
	rows, err := db.Query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}

// must is query for statements that have to succeed: an error is a failure
// of the run
func must(q string, args ...any) [][]any {
	rows, err := query(q, args...)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", q, err))
	}
	return rows
}

func row(q string, args ...any) []any {
	rows := must(q, args...)
	if len(rows) != 1 {
		panic(fmt.Sprintf("%s: %d rows", q, len(rows)))
	}
	return rows[0]
}

// text is a TEXT value's bytes, valid UTF-8 and equal to decode(exact)
func text(v any, exact []byte) bool {
	s, ok := v.(string)
	return ok && utf8.ValidString(s) && s == decode(exact)
}

func blob(v any) ([]byte, bool) {
	b, ok := v.([]byte)
	return b, ok
}

func show(v any) string {
	if b, ok := v.([]byte); ok {
		return fmt.Sprintf("<%x>", b)
	}
	return fmt.Sprintf("%q", v)
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func mkmodel(name string, args ...string) string {
	d := filepath.Join("build", "models", name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		panic(err)
	}
	cmd := exec.Command(filepath.Join("build", "mkmodel"), append([]string{d}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		panic(fmt.Sprintf("build/mkmodel: %v", err))
	}
	abs, _ := filepath.Abs(d)
	return abs
}

func run() {
	t0 := time.Now()
	secs := func() string { return fmt.Sprintf("%.1f", time.Since(t0).Seconds()) }
	ext := filepath.Join("build", "gpt.so")
	if len(os.Args) > 1 {
		ext = os.Args[1]
	}
	ext, _ = filepath.Abs(ext)
	sql.Register("sqlite3_gpt", &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error { return c.LoadExtension(ext, "sqlite3_gpt_init") },
	})
	var err error
	db, err = sql.Open("sqlite3_gpt", ":memory:")
	if err != nil {
		panic(err)
	}
	// one connection: each connection to :memory: is its own database
	db.SetMaxOpenConns(1)
	version, _, _ := sqlite3.Version()
	fmt.Printf("clients.go: %s, go-sqlite3, SQLite %s\n", runtime.Version(), version)
	check("version-inside", row("SELECT sqlite_version()")[0] == version, "")

	// the decoder itself: Python's bytes.decode('utf-8', 'replace') on the
	// maximal-subpart cases
	for _, c := range []struct{ in, want string }{
		{"\xe2\x80", "\ufffd"}, {"\xe2\x80a", "\ufffda"}, {"\xed\xa0\x80", "\ufffd\ufffd\ufffd"},
		{"\xf0\x9f\x99", "\ufffd"}, {"\xf0\x80\x80\x80", "\ufffd\ufffd\ufffd\ufffd"},
		{"\xc0\xaf", "\ufffd\ufffd"}, {"\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"},
		{"\xf1\x80\x80\xe2\x82\xac", "\ufffd\u20ac"}, {"\xf1\x80\x80\x80", "\U00040000"},
		{"\xe0\xa0\x80", "\u0800"}, {"日本語 🙂", "日本語 🙂"}, {"\xff", "\ufffd"},
	} {
		got := decode([]byte(c.in))
		check(fmt.Sprintf("decoder %x", c.in), got == c.want, fmt.Sprintf("%q", got))
	}

	demo := mkmodel("goclients", "--layers", "2", "--heads", "4", "--embd", "64", "--ctx", "128", "--seed", "7")
	summary := row("SELECT gpt_import('demo', ?)", demo)[0]
	s, _ := summary.(string)
	check("import", strings.Contains(s, "demo"), show(summary))

	// ------------------------------------------------ bytes <-> token ids
	// one token per byte in GPT-2's byte-level vocabulary: any byte string can
	// be spelled as ids
	byteID := map[byte]int64{}
	for _, r := range must("WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 511) " +
		"SELECT i, gpt_detokenize_bytes('[' || i || ']') FROM c") {
		if b, ok := blob(r[1]); ok && len(b) == 1 {
			if _, seen := byteID[b[0]]; !seen {
				byteID[b[0]] = r[0].(int64)
			}
		}
	}
	check("byte-tokens", len(byteID) == 256, fmt.Sprintf("%d single-byte tokens", len(byteID)))
	idsOf := func(b []byte) string {
		ids := make([]int64, len(b))
		for i, x := range b {
			ids[i] = byteID[x]
		}
		return jsonOf(ids)
	}

	r := row("SELECT gpt_detokenize('[447]'), gpt_detokenize_bytes('[447]')")
	check("detokenize-447", r[0] == "\ufffd" && bytes.Equal(r[1].([]byte), []byte{0xe2, 0x80}),
		show(r[0])+" "+show(r[1]))

	var crafted [][]byte
	for _, s := range []string{"", "a", "\xe2\x80", "\xe2\x80\xa6", "\xe2\x80a", "\xc0\xaf", "\xed\xa0\x80",
		"\xed\x9f\xbf", "\xf0\x9f\x99", "\xf0\x9f\x99\x82", "\xf4\x90\x80\x80", "\xf4\x8f\xbf\xbf",
		"\xe0\x80\x80", "\xe0\xa0\x80", "\xf0\x80\x80\x80", "\xf5\x80", "\xff\xfe", "\x80\x80\x80", "\xc2",
		"a\xe6\x97\xa5\xe6\x9c", "\xf1\x80\x80", "\xf1\x80\x80\xe2\x82\xac", "\x00\xe2\x00", "日本語 🙂"} {
		crafted = append(crafted, []byte(s))
	}
	var pieces [][]byte
	for b := 0; b < 256; b++ {
		pieces = append(pieces, []byte{byte(b)})
	}
	for _, s := range []string{"é", "日", "🙂", "€", "\xe2\x80", "\xf0\x9f", "\xed\xa0", "\xf4\x90", "\xe0\x9f"} {
		pieces = append(pieces, []byte(s))
	}
	rnd := rand.New(rand.NewSource(11))
	var randoms [][]byte
	for i := 0; i < 1000; i++ {
		var b []byte
		for n := 1 + rnd.Intn(12); n > 0; n-- {
			b = append(b, pieces[rnd.Intn(len(pieces))]...)
		}
		randoms = append(randoms, b)
	}
	nInvalid := 0
	for _, bs := range append(append([][]byte{}, crafted...), randoms...) {
		ids := idsOf(bs)
		r := row("SELECT gpt_detokenize(?1), gpt_detokenize_bytes(?1)", ids)
		exact, ok := blob(r[1])
		check("detokenize "+show(bs), ok && bytes.Equal(exact, bs) && text(r[0], bs), show(r[0])+" "+show(r[1]))
		if !utf8.Valid(bs) {
			nInvalid++
		}
	}
	fmt.Printf("  detokenize: %d byte strings, %d not UTF-8 (%s s)\n", len(crafted)+len(randoms), nInvalid, secs())
	check("detokenize-exercises-repair", nInvalid > 500, fmt.Sprint(nInvalid))

	// ------------------------------------------------ tokenizer table
	// text inputs, and random bytes passed as TEXT (CAST of a BLOB parameter)
	var texts [][]byte
	for _, s := range []string{"日本語 🙂", "こんにちは世界", "🙂🙃🎉 emoji 👩‍👩‍👧", "Hello, world",
		"naïve café — “quotes”", "한국어 텍스트", "\x00nul", ""} {
		texts = append(texts, []byte(s))
	}
	for i := 0; i < 20; i++ {
		texts = append(texts, randoms[i*37])
	}
	for _, t := range texts {
		rows := must("SELECT pos, token_id, token, bytes FROM gpt_tokens(CAST(? AS TEXT))", t)
		var all []byte
		okText, okPos := true, true
		for i, r := range rows {
			b, _ := blob(r[3])
			all = append(all, b...)
			okText = okText && text(r[2], b)
			_, isInt := r[1].(int64)
			okPos = okPos && r[0] == int64(i) && isInt
		}
		check("tokens "+show(t)+" bytes", bytes.Equal(all, t), show(all))
		check("tokens "+show(t)+" text", okText, "")
		check("tokens "+show(t)+" positions", okPos, "")
	}

	// ------------------------------------------------ generations
	var prompts [][]byte
	for _, s := range []string{"日本語 🙂", "日本", "The cat sat", "こんにちは", "🙂", "", "Once upon a time",
		"中文测试：", "ok \u00e9t\u00e9", "A\xe2\x80\xffB\xf0\x9f\x99"} {
		prompts = append(prompts, []byte(s))
	}
	nGen, nGenInvalid, nStop := 0, 0, 0
	for seed := 1; seed <= 20; seed++ {
		for _, p := range prompts {
			opt := jsonOf(map[string]any{"temperature": 1, "seed": seed, "max_tokens": 32, "threads": 1})
			r := row("SELECT gpt_generate(CAST(?1 AS TEXT), ?2), gpt_generate_bytes(CAST(?1 AS TEXT), ?2)", p, opt)
			nGen++
			exact, ok := blob(r[1])
			check(fmt.Sprintf("generate %s %d", show(p), seed), ok && text(r[0], exact), show(r[0])+" "+show(r[1]))
			if !ok {
				continue
			}
			if !utf8.Valid(exact) {
				nGenInvalid++
			}
			rows := must("SELECT step, token_id, token, logprob, finish_reason, bytes "+
				"FROM gpt_generate_tokens(CAST(? AS TEXT), ?)", p, opt)
			var all []byte
			okText, okFinish := true, true
			for i, x := range rows {
				b, _ := blob(x[5])
				all = append(all, b...)
				lp, isReal := x[3].(float64)
				okText = okText && text(x[2], b) && isReal && lp <= 0
				if i < len(rows)-1 {
					okFinish = okFinish && x[4] == nil
				} else {
					f, _ := x[4].(string)
					okFinish = okFinish && (f == "eos" || f == "stop" || f == "length" || f == "context")
				}
			}
			check(fmt.Sprintf("generate_tokens %s %d bytes", show(p), seed), bytes.Equal(all, exact), show(all))
			check(fmt.Sprintf("generate_tokens %s %d text", show(p), seed), okText, "")
			check(fmt.Sprintf("generate_tokens %s %d finish", show(p), seed), okFinish, "")
			// a stop string cuts the exact bytes where it first occurs
			seen := map[byte]bool{}
			var ascii []byte
			for _, c := range exact[min(1, len(exact)):] {
				if c >= 0x21 && c < 0x7f && !seen[c] {
					seen[c] = true
					ascii = append(ascii, c)
				}
			}
			sort.Slice(ascii, func(i, j int) bool { return ascii[i] < ascii[j] })
			if len(ascii) > 0 {
				stop := string(ascii[seed%len(ascii)])
				sopt := jsonOf(map[string]any{"temperature": 1, "seed": seed, "max_tokens": 32, "threads": 1, "stop": stop})
				cut := row("SELECT gpt_generate_bytes(CAST(? AS TEXT), ?)", p, sopt)[0]
				want := exact[:bytes.Index(exact, []byte(stop))]
				cb, ok := blob(cut)
				check(fmt.Sprintf("stop %s %d %s", show(p), seed, stop), ok && bytes.Equal(cb, want),
					show(cut)+" "+show(want))
				nStop++
			}
		}
	}
	fmt.Printf("  generate: %d generations, %d not UTF-8 as bytes, %d with a stop string (%s s)\n",
		nGen, nGenInvalid, nStop, secs())
	check("generations-exercise-repair", nGenInvalid > 0, "no generation produced invalid UTF-8: the check proves nothing")

	// ------------------------------------------------ tables of the model
	for _, p := range []string{"日本語 🙂", "The cat sat", "🙂"} {
		rows := must("SELECT rank, token_id, token, logit, prob, bytes FROM gpt_next_tokens(?, 1000)", p)
		ok, total := len(rows) == 1000, 0.0
		for i, r := range rows {
			b, _ := blob(r[5])
			prob, isReal := r[4].(float64)
			ok = ok && text(r[2], b) && isReal && (i == 0 || prob <= rows[i-1][4].(float64))
			total += prob
		}
		check("next_tokens "+p, ok && total > 0 && total <= 1+1e-6, fmt.Sprintf("%d rows, total %g", len(rows), total))
		toks := must("SELECT bytes FROM gpt_tokens(?)", p)
		att := must("SELECT query_pos, key_pos, query_token, key_token, weight FROM gpt_attention(?)", p)
		n := len(toks)
		ok = len(att) == 2*4*n*(n+1)/2
		for _, r := range att {
			q, k := r[0].(int64), r[1].(int64)
			w, _ := r[4].(float64)
			ok = ok && text(r[2], toks[q][0].([]byte)) && text(r[3], toks[k][0].([]byte)) && w >= 0 && w <= 1
		}
		check("attention "+p, ok, fmt.Sprintf("%d rows for %d tokens", len(att), n))
	}
	svg := row("SELECT gpt_attention_svg(CAST(? AS TEXT))", randoms[5])[0]
	sv, _ := svg.(string)
	check("attention_svg random bytes", utf8.ValidString(sv) && strings.HasSuffix(sv, "</svg>\n"), "")

	// ------------------------------------------------ many rows at once
	// gpt_batch's rows equal gpt_generate's greedy text and bytes; keys keep
	// their type
	must("CREATE TEMP TABLE docs(id, body)")
	bodies := []any{"日本語 🙂", "The cat sat", "🙂", strings.Repeat("x", 40), nil, "Hello", "こんにちは"}
	for i, b := range bodies {
		var key any = fmt.Sprintf("k%d", i)
		if i%2 == 1 {
			key = int64(i)
		}
		must("INSERT INTO docs VALUES (?, ?)", key, b)
	}
	gopt := jsonOf(map[string]any{"max_tokens": 8, "temperature": 0})
	batch := must("SELECT key, output, finish_reason, prompt_tokens, output_tokens, bytes "+
		"FROM gpt_batch('SELECT id, body FROM docs', ?)", gopt)
	check("batch rows", len(batch) == len(bodies), fmt.Sprintf("%d rows", len(batch)))
	keysOk := true
	for _, r := range batch {
		body := row("SELECT body FROM docs WHERE id = ?", r[0])[0]
		w := row("SELECT gpt_generate(?1, ?2), gpt_generate_bytes(?1, ?2)", body, gopt)
		var ok bool
		if r[1] == nil {
			ok = w[0] == nil && r[5] == nil && w[1] == nil
		} else {
			b, _ := blob(r[5])
			wb, _ := blob(w[1])
			ok = r[1] == w[0] && bytes.Equal(b, wb) && text(r[1], b)
		}
		check(fmt.Sprintf("batch %v", r[0]), ok, show(r[1])+" "+show(r[5])+" vs "+show(w[0])+" "+show(w[1]))
		switch k := r[0].(type) {
		case string:
			keysOk = keysOk && strings.HasPrefix(k, "k")
		case int64:
			keysOk = keysOk && k%2 == 1
		default:
			keysOk = false
		}
	}
	check("batch keys", keysOk, "")

	// ------------------------------------------------ scores and aggregates
	for _, p := range []string{"日本語 🙂", "The cat sat on the mat", "🙂🙃"} {
		r := row("SELECT gpt_logprob(?1), gpt_perplexity(?1), gpt_embed(?1)", p)
		lp, ok := r[0].(float64)
		check("logprob "+p, ok && !math.IsNaN(lp) && !math.IsInf(lp, 0) && lp <= 0, show(r[0]))
		ppl, ok := r[1].(float64)
		check("perplexity "+p, ok && !math.IsNaN(ppl) && !math.IsInf(ppl, 0) && ppl >= 1, show(r[1]))
		e, ok := blob(r[2])
		ok = ok && len(e) == 64*4
		nonzero := false
		for i := 0; ok && i < 64; i++ {
			f := float64(math.Float32frombits(binary.LittleEndian.Uint32(e[4*i:])))
			ok = !math.IsNaN(f) && !math.IsInf(f, 0)
			nonzero = nonzero || f != 0
		}
		check("embed "+p, ok && nonzero, show(r[2]))
	}
	must("CREATE TEMP TABLE notes(grp, body)")
	for i := 0; i < 12; i++ {
		var body []byte
		if i%4 != 0 {
			body = []byte(strings.Repeat(bodies[i%4].(string), 1+i%3))
		} else {
			body = randoms[i]
		}
		must("INSERT INTO notes VALUES (?, CAST(? AS TEXT))", i%3, body)
	}
	for seed := 1; seed <= 4; seed++ {
		opt := jsonOf(map[string]any{"seed": seed, "max_tokens": 12, "threads": 1})
		rows := must("SELECT grp, gpt_summarize(body, ?) FROM notes GROUP BY grp", opt)
		ok := len(rows) == 3
		for _, r := range rows {
			s, isText := r[1].(string)
			ok = ok && isText && utf8.ValidString(s)
		}
		check(fmt.Sprintf("summarize %d", seed), ok, jsonOf(rows))
	}

	// ------------------------------------------------ chat (the generated
	// GPT-2 model has no template: one is given)
	tpl := "{% for m in messages %}{{ m.content }}\n{% endfor %}"
	for seed := 1; seed <= 5; seed++ {
		for _, p := range []string{"日本語 🙂", "🙂", "Hello"} {
			msgs := jsonOf([]map[string]string{{"role": "user", "content": p}})
			opt := jsonOf(map[string]any{"template": tpl, "seed": seed, "max_tokens": 24, "threads": 1})
			r := row("SELECT gpt_chat_prompt(?, ?), gpt_chat(?, ?)", msgs, jsonOf(map[string]string{"template": tpl}), msgs, opt)
			reply, ok := r[1].(string)
			check(fmt.Sprintf("chat %s %d", p, seed), r[0] == p+"\n" && ok && utf8.ValidString(reply),
				show(r[0])+" "+show(r[1]))
		}
	}

	// ------------------------------------------------ errors reach the client
	// as errors naming the function, and the connection works on
	for _, c := range []struct{ sql, want string }{
		{`SELECT gpt_generate('Hi', '{"model": "nope"}')`, "gpt_generate: no model named 'nope'"},
		{`SELECT gpt_generate_bytes('Hi', '{"model": "nope"}')`, "gpt_generate_bytes: no model named 'nope'"},
		{`SELECT gpt_detokenize('[9999999]')`, "gpt_detokenize: "},
		{`SELECT gpt_chat_prompt('[{"role": "user", "content": "hi"}]')`, "gpt_chat_prompt: "},
		{`SELECT * FROM gpt_generate_tokens('Hi', '{"temperature": "hot"}')`, "gpt_generate_tokens: "},
		{`SELECT * FROM gpt_batch('SELECT nope FROM nowhere')`, "gpt_batch: "},
	} {
		_, err := query(c.sql)
		check("error "+c.want, err != nil && strings.Contains(err.Error(), c.want), fmt.Sprint(err))
	}
	check("after errors", row("SELECT gpt_token_count('ok')")[0] == int64(1), "")
	db.Close()
	fmt.Printf("  done (%s s)\n", secs())
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func main() {
	func() {
		// a panic is a failure, not a crash of the run
		defer func() {
			if e := recover(); e != nil {
				check("clients.go", false, fmt.Sprint(e))
			}
		}()
		run()
	}()
	fmt.Printf("clients.go: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
