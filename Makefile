# sqlite-gpt: GPT-2 inside SQLite.
#   make          build build/gpt.so
#   make demo     run the examples on the trained demo model (models/shakespeare.db)
#   make demo-model  retrain it with gpt_train (about 11 minutes on 2 cores)
#   make test     run the Tcl test suite, the C tests and the Python, Node and Go client tests
#                 (and build the bench, so that a change of an interface cannot leave it broken)
#   make test-sqlite-latest   the same on SQLite 3.53.2 (see below)
#   make bench    the benchmark (not part of the tests)

CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -fPIC -Wall -Wextra -D_GNU_SOURCE -Iengine -Ibuild
# OpenBLAS is not linked: engine/blas.c loads it on first use, and only where
# its allocations cannot fail (its headers are needed to build).
LDLIBS  = -lpcre2-8 -lutf8proc -lm -lpthread -ldl
TCLSH   ?= tclsh

# Debian packages the build, the tests and the demo need.
DEB_PACKAGES = gcc make libc6-dev libsqlite3-dev sqlite3 libopenblas-dev libpcre2-dev libutf8proc-dev tcl libsqlite3-tcl \
               python3 python3-numpy
# and those the tests alone need: Go and its SQLite driver, for the Go client
# test (tests/clients/run.sh; its Node client builds its driver from npm)
TEST_DEB_PACKAGES = golang-go golang-github-mattn-go-sqlite3-dev
# Debian's python3 with its standard sqlite3 module (a python3 earlier on PATH
# may be another build).
PYTHON  ?= /usr/bin/python3

ENGINE_SRC = $(wildcard engine/*.c)
EXT_SRC    = $(wildcard ext/*.c)
HEADERS    = $(wildcard engine/*.h ext/*.h) build/schema.h
# Each source is compiled once into build/obj/ and every binary links the
# objects it needs (a fresh build compiled the engine five times before).
OBJ        = $(patsubst %.c,build/obj/%.o,$(1))
ENGINE_OBJ = $(call OBJ,$(ENGINE_SRC))
EXT_OBJ    = $(call OBJ,$(EXT_SRC))
# the engine without the tokenizer, for the C tests of the decoder
DECODER_OBJ = $(filter-out build/obj/engine/tokenizer.o build/obj/engine/bpe.o,$(ENGINE_OBJ))
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

all: build/gpt.so build/mkmodel build/tokenizer_test build/engine_test build/kernels_test \
     build/train_test build/q4_test

build:
	mkdir -p build

# The schema is compiled in from sql/schema.sql, its single source.
build/schema.h: sql/schema.sql | build
	{ echo 'static const char gptSchemaSql[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/  "/' -e 's/$$/\\n"/' $<; \
	  echo ';'; } > $@

build/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

build/gpt.so: $(ENGINE_OBJ) $(EXT_OBJ) | build
	$(CC) $(CFLAGS) -shared -o $@ $(ENGINE_OBJ) $(EXT_OBJ) $(LDLIBS)

build/mkmodel: tests/tools/mkmodel.c build/obj/engine/dtype.o | build
	$(CC) $(CFLAGS) -o $@ $^ -lm

# C unit test of the tokenizer's internals (reads vocab.json through SQLite's JSON).
build/tokenizer_test: tests/unit/tokenizer_test.c build/obj/engine/tokenizer.o build/obj/engine/bpe.o | build
	$(CC) $(CFLAGS) -o $@ $^ -lpcre2-8 -lutf8proc -lsqlite3

# Encoding speed of a stored tokenizer in CPU time (tests/tools/tokbench.c);
# not part of the tests.
build/tokbench: tests/tools/tokbench.c engine/tokenizer.c engine/tokenizer.h | build
	$(CC) $(CFLAGS) -o $@ tests/tools/tokbench.c engine/tokenizer.c -lpcre2-8 -lutf8proc -lsqlite3

# C unit test of the decoder: prefill, decode and split prefill agree.
build/engine_test: tests/unit/engine_test.c tests/unit/check.h $(DECODER_OBJ) $(HEADERS) | build
	$(CC) $(CFLAGS) -o $@ tests/unit/engine_test.c $(DECODER_OBJ) $(LDLIBS)

# C unit test of training: every parameter's gradient against float64 finite
# differences, and a loss that falls on a fixed corpus.
build/train_test: tests/unit/train_test.c tests/unit/check.h $(DECODER_OBJ) $(HEADERS) | build
	$(CC) $(CFLAGS) -o $@ tests/unit/train_test.c $(DECODER_OBJ) $(LDLIBS)

# C unit test of the kernel sets (portable, AVX2, AVX-512 where the CPU has
# them) and the thread pool.
KERNEL_OBJ = $(call OBJ,engine/kernels.c engine/threads.c engine/dtype.c)
build/kernels_test: tests/unit/kernels_test.c $(KERNEL_OBJ) | build
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# C unit test of the 4- and 6-bit kernels (engine/kernels_q4.c) against
# float64 goldens (tests/ref/make_q4_goldens.py) and the portable set.
build/q4_test: tests/unit/q4_test.c build/obj/engine/kernels_q4.o $(KERNEL_OBJ) | build
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The benchmark: bench/bench.c with the engine and the extension linked in.
# It writes bench/results/DATE-MACHINE.md and keeps its model and database in
# bench/tmp/ (git-ignored). BENCH_RUNS=N, BENCH_QUICK=1 (see bench/bench.c).
build/bench: bench/bench.c $(ENGINE_OBJ) $(EXT_OBJ) $(HEADERS) | build
	$(CC) $(CFLAGS) -Iext -o $@ bench/bench.c $(ENGINE_OBJ) $(EXT_OBJ) -lsqlite3 -lopenblas $(LDLIBS)

bench: build/gpt.so build/mkmodel build/bench build/train_bench
	build/bench
	build/train_bench

# Training tokens/s and MFU (bench/train_bench.c), part of make bench.
build/train_bench: bench/train_bench.c $(DECODER_OBJ) $(HEADERS) | build
	$(CC) $(CFLAGS) -o $@ bench/train_bench.c $(DECODER_OBJ) $(LDLIBS)

# Installs whatever Debian packages of the list $(1) are missing (through
# sudo when not root).
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update && $$SUDO apt-get install -y $$missing; \
	fi
endef

deps:
	$(call install_missing,$(DEB_PACKAGES))

deps-test:
	$(call install_missing,$(DEB_PACKAGES) $(TEST_DEB_PACKAGES))

test: deps-test
	$(MAKE) -j$(JOBS) all build/bench build/train_bench
	build/tokenizer_test
	build/engine_test
	build/kernels_test
	build/q4_test
	build/train_test
	$(TCLSH) tests/all.tcl
	$(PYTHON) tests/python/test_clients.py
	$(PYTHON) tests/python/test_locks.py
	$(PYTHON) tests/python/test_summarize.py
	sh tests/clients/run.sh
	$(PYTHON) tests/python/test_parts.py build
	$(PYTHON) tests/python/test_train.py build
	$(PYTHON) tests/python/test_svg.py
	$(PYTHON) tests/python/test_template_case.py
	$(PYTHON) tests/python/test_q4.py build
	$(PYTHON) tests/python/test_batch_review.py build
	$(PYTHON) tests/python/test_oneshot_interrupt.py build
	$(PYTHON) tests/python/test_export_kill.py build

# only what the demo runs: the extension, and mkmodel for its fallback model
demo: deps
	$(MAKE) -j$(JOBS) build/gpt.so build/mkmodel
	sh sql/demo.sh

# Retrains models/shakespeare.db, the demo model (sql/train_demo.sh).
demo-model: build/gpt.so
	sh sql/train_demo.sh

clean:
	rm -rf build

.PHONY: all deps deps-test test demo demo-model clean bench

# ------------------------------------------------------- current SQLite
#   make test-sqlite-latest   the Tcl suite and the Python test on SQLite 3.53.2
# The amalgamation is the one better-sqlite3@12.11.1 ships in
# deps/sqlite3/sqlite3.c, fetched with `npm pack` into build/ (never
# committed). It is built as build/sqlite-latest/libsqlite3.so.0 with the
# options Debian builds its own with (column metadata, FTS3/4/5, R*Tree,
# pre-update hook, unlock notify, ... which Tcl's and Python's bindings
# call), and put first with LD_LIBRARY_PATH, so Debian's tclsh and python3
# load it instead of the system's 3.40. The suite checks sqlite_version()
# against GPT_EXPECT_SQLITE before running anything. The extension is the
# same build/gpt.so: one binary for both versions.
SQLITE_LATEST_PKG     = better-sqlite3@12.11.1
SQLITE_LATEST_VERSION = 3.53.2
SQLITE_LATEST_DIR     = build/sqlite-latest
SQLITE_LATEST_OPTS    = -DSQLITE_THREADSAFE=1 -DSQLITE_USE_URI=1 -DSQLITE_ENABLE_COLUMN_METADATA \
                        -DSQLITE_ENABLE_FTS3 -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS4 \
                        -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_DBSTAT_VTAB \
                        -DSQLITE_ENABLE_MATH_FUNCTIONS -DSQLITE_ENABLE_PREUPDATE_HOOK \
                        -DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_UNLOCK_NOTIFY \
                        -DSQLITE_ENABLE_STMTVTAB -DSQLITE_ENABLE_UPDATE_DELETE_LIMIT \
                        -DSQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_SECURE_DELETE -DSQLITE_SOUNDEX \
                        -DSQLITE_MAX_VARIABLE_NUMBER=250000 -DSQLITE_LIKE_DOESNT_MATCH_BLOBS \
                        -DHAVE_ISNAN -DHAVE_USLEEP=1

$(SQLITE_LATEST_DIR)/sqlite3.c:
	@command -v npm >/dev/null || { echo "test-sqlite-latest needs npm (apt-get install npm)"; exit 1; }
	@mkdir -p $(SQLITE_LATEST_DIR)
	cd $(SQLITE_LATEST_DIR) && rm -rf package && npm pack --silent $(SQLITE_LATEST_PKG) >/dev/null \
	  && tar xzf better-sqlite3-*.tgz package/deps/sqlite3 \
	  && cp package/deps/sqlite3/sqlite3.h package/deps/sqlite3/sqlite3ext.h . \
	  && cp package/deps/sqlite3/sqlite3.c . && rm -rf package
	grep -q '#define SQLITE_VERSION *"$(SQLITE_LATEST_VERSION)"' $(SQLITE_LATEST_DIR)/sqlite3.h

$(SQLITE_LATEST_DIR)/libsqlite3.so.0: $(SQLITE_LATEST_DIR)/sqlite3.c
	$(CC) -O2 -fPIC -shared -Wl,-soname,libsqlite3.so.0 $(SQLITE_LATEST_OPTS) \
	  -o $@ $< -lm -lpthread -ldl

test-sqlite-latest: all $(SQLITE_LATEST_DIR)/libsqlite3.so.0
	LD_LIBRARY_PATH=$(CURDIR)/$(SQLITE_LATEST_DIR) GPT_EXPECT_SQLITE=$(SQLITE_LATEST_VERSION) \
	  $(TCLSH) tests/all.tcl
	LD_LIBRARY_PATH=$(CURDIR)/$(SQLITE_LATEST_DIR) GPT_EXPECT_SQLITE=$(SQLITE_LATEST_VERSION) \
	  $(PYTHON) tests/python/test_clients.py
	LD_LIBRARY_PATH=$(CURDIR)/$(SQLITE_LATEST_DIR) $(PYTHON) tests/python/test_parts.py build
	LD_LIBRARY_PATH=$(CURDIR)/$(SQLITE_LATEST_DIR) $(PYTHON) tests/python/test_train.py build
	LD_LIBRARY_PATH=$(CURDIR)/$(SQLITE_LATEST_DIR) $(PYTHON) tests/python/test_svg.py

.PHONY: test-sqlite-latest

# ------------------------------------------------------------ reliability
#   make fuzz            each libFuzzer target for FUZZ_SECONDS (default 60)
#   make test-asan       the C tests and the whole Tcl suite under ASan + UBSan
#   make test-valgrind   a representative run under valgrind memcheck
#   make test-tsan       the concurrency test under ThreadSanitizer
# Each builds into its own folder under build/ and leaves build/gpt.so alone.
# tests/fuzz/README.md says what each target and test covers.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = safetensors import_text tokenizer tokenizer_json model_rows options utf8 template bpe gguf q4_blocks schema_scan
SAN_CC       ?= gcc
SAN_COMMON    = -g -O1 -std=c11 -Wall -Wextra -D_GNU_SOURCE -Iengine -Ibuild -Itests/fuzz \
                -fno-omit-frame-pointer -DGPT_SOURCE_DIR='"$(CURDIR)"'
SAN_ASAN      = -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_LIBS      = -lsqlite3 $(LDLIBS)
# The in-process programs compile the extension with -DSQLITE_CORE: sqlite3ext.h
# then calls the linked libsqlite3 directly and sqlite3_gpt_init(db, &err, 0)
# registers the functions.
SAN_SRC       = $(ENGINE_SRC) $(EXT_SRC) tests/fuzz/fuzz_common.c
FUZZ_OBJ      = $(patsubst %.c,build/fuzz/obj/%.o,$(SAN_SRC))
ASAN_OBJ      = $(patsubst %.c,build/asan/obj/%.o,$(SAN_SRC))
TSAN_OBJ      = $(patsubst %.c,build/tsan/obj/%.o,$(SAN_SRC))
VG_OBJ        = $(patsubst %.c,build/valgrind/obj/%.o,$(SAN_SRC))
UNIT_TESTS    = memory interrupt threads
# The ASan runtime for tclsh, which is not instrumented itself.
LIBASAN       = $(shell $(SAN_CC) -print-file-name=libasan.so)
# Leaks are checked (LSan) in every run, the Tcl suite's included
# (tests/sanitizer/lsan.supp says why it is empty).
ASAN_ENV      = ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
                LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizer/lsan.supp:print_suppressions=0 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# No suppressions: OpenBLAS is not instrumented, but the engine holds it to one
# thread (engine/blas.c), so it reports nothing.
TSAN_ENV      = TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
VALGRIND      = valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
                --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
                --track-origins=yes

build/fuzz/obj/%.o: %.c $(HEADERS) tests/fuzz/fuzz_common.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(SAN_COMMON) $(FUZZ_OPT) -DSQLITE_CORE $(SAN_ASAN) -fsanitize=fuzzer-no-link -c -o $@ $<

# kernels.c's unrolled AVX-512 tiles, instrumented, took clang -O1 over 15
# minutes on a 2-core Zen 4, and 30 s at -O0: the fuzz build compiles that
# file unoptimized (the gcc ASan build of the tests keeps -O1).
build/fuzz/obj/engine/kernels.o: FUZZ_OPT = -O0

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(SAN_COMMON) -DSQLITE_CORE $(SAN_ASAN) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(SAN_LIBS)

fuzz-build: $(addprefix build/fuzz/fuzz_,$(FUZZ_TARGETS))

# New corpus entries go to build/fuzz/corpus/TARGET; tests/fuzz/TARGET (the
# committed seeds and regression inputs) is only read. A crash leaves its
# input in build/fuzz/artifacts/TARGET/ and fails the run.
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t build/fuzz/artifacts/$$t; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 build/fuzz/fuzz_$$t \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
	    -print_final_stats=1 -dict=tests/fuzz/$$t.dict \
	    -artifact_prefix=build/fuzz/artifacts/$$t/ build/fuzz/corpus/$$t tests/fuzz/$$t \
	    2> build/fuzz/$$t.log || { tail -n 60 build/fuzz/$$t.log; exit 1; }; \
	  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+ +DONE' build/fuzz/$$t.log; \
	done

# Replays the committed corpora once (every seed and regression input).
fuzz-replay: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  OPENBLAS_NUM_THREADS=1 build/fuzz/fuzz_$$t -runs=0 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
	    tests/fuzz/$$t 2> build/fuzz/$$t-replay.log || { tail -n 60 build/fuzz/$$t-replay.log; exit 1; }; \
	  echo "fuzz_$$t: replayed $$(ls tests/fuzz/$$t | wc -l) inputs"; \
	done

# Writes the generated seeds of tests/fuzz/*/ (deterministic; committed).
fuzz-seeds: build/valgrind/mkseeds
	build/valgrind/mkseeds tests/fuzz

build/asan/obj/%.o: %.c $(HEADERS) tests/fuzz/fuzz_common.h
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_COMMON) -DSQLITE_CORE $(SAN_ASAN) -c -o $@ $<

build/asan/%_test: tests/unit/%_test.c $(ASAN_OBJ)
	$(SAN_CC) $(SAN_COMMON) -DSQLITE_CORE $(SAN_ASAN) -o $@ $< $(ASAN_OBJ) $(SAN_LIBS)

# The loadable extension, instrumented, for the Tcl suite (GPT_EXT).
build/asan/gpt.so: $(ENGINE_SRC) $(EXT_SRC) $(HEADERS)
	@mkdir -p build/asan
	$(SAN_CC) $(SAN_COMMON) -fPIC $(SAN_ASAN) -shared -o $@ $(ENGINE_SRC) $(EXT_SRC) $(LDLIBS)

# `all` builds what the Tcl suite runs beside the extension (mkmodel, kernels_test).
test-asan: all build/asan/gpt.so $(addsuffix _test,$(addprefix build/asan/,$(UNIT_TESTS)))
	@set -e; for t in $(UNIT_TESTS); do \
	  echo "build/asan/$${t}_test"; $(ASAN_ENV) build/asan/$${t}_test; done
	GPT_EXT=$(CURDIR)/build/asan/gpt LD_PRELOAD=$(LIBASAN) $(ASAN_ENV) $(TCLSH) tests/all.tcl

build/tsan/obj/%.o: %.c $(HEADERS) tests/fuzz/fuzz_common.h
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_COMMON) -DSQLITE_CORE -fsanitize=thread -c -o $@ $<

build/tsan/%_test: tests/unit/%_test.c $(TSAN_OBJ)
	$(SAN_CC) $(SAN_COMMON) -DSQLITE_CORE -fsanitize=thread -o $@ $< $(TSAN_OBJ) $(SAN_LIBS)

test-tsan: build/tsan/threads_test
	$(TSAN_ENV) build/tsan/threads_test

build/valgrind/obj/%.o: %.c $(HEADERS) tests/fuzz/fuzz_common.h
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_COMMON) -DSQLITE_CORE -c -o $@ $<

build/valgrind/%: tests/unit/%.c $(VG_OBJ)
	$(SAN_CC) $(SAN_COMMON) -DSQLITE_CORE -o $@ $< $(VG_OBJ) $(SAN_LIBS)

build/valgrind/mkseeds: tests/fuzz/mkseeds.c $(VG_OBJ)
	$(SAN_CC) $(SAN_COMMON) -DSQLITE_CORE -o $@ $< $(VG_OBJ) $(SAN_LIBS)

test-valgrind: build/valgrind/memory_test
	OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell MEMORY_TEST_OOM_STRIDE=61 $(VALGRIND) build/valgrind/memory_test

# The objects of the pattern rules are kept between runs.
.SECONDARY: $(FUZZ_OBJ) $(ASAN_OBJ) $(TSAN_OBJ) $(VG_OBJ)

.PHONY: fuzz fuzz-build fuzz-replay fuzz-seeds test-asan test-tsan test-valgrind
