# sqlite-gpt: GPT-2 inside SQLite.
#   make          build build/gpt.so
#   make demo     import a small generated model and run the examples
#   make test     run the Tcl test suite
#   make bench    the benchmark (not part of the tests)

CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -fPIC -Wall -Wextra -D_GNU_SOURCE -Iengine -Ibuild
LDLIBS  = -lopenblas -lpcre2-8 -lm -lpthread
TCLSH   ?= tclsh

# Debian packages the build, the tests and the demo need.
DEB_PACKAGES = gcc make libc6-dev libsqlite3-dev sqlite3 libopenblas-dev libpcre2-dev tcl libsqlite3-tcl

ENGINE_SRC = $(wildcard engine/*.c)
EXT_SRC    = $(wildcard ext/*.c)
HEADERS    = $(wildcard engine/*.h ext/*.h) build/schema.h

all: build/gpt.so build/mkmodel build/tokenizer_test build/engine_test

build:
	mkdir -p build

# The schema is compiled in from sql/schema.sql, its single source.
build/schema.h: sql/schema.sql | build
	{ echo 'static const char gptSchemaSql[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/  "/' -e 's/$$/\\n"/' $<; \
	  echo ';'; } > $@

build/gpt.so: $(ENGINE_SRC) $(EXT_SRC) $(HEADERS) | build
	$(CC) $(CFLAGS) -shared -o $@ $(ENGINE_SRC) $(EXT_SRC) $(LDLIBS)

build/mkmodel: tests/tools/mkmodel.c engine/gpt.h | build
	$(CC) $(CFLAGS) -o $@ $< engine/dtype.c -lm

# C unit test of the tokenizer's internals (reads vocab.json through SQLite's JSON).
build/tokenizer_test: tests/unit/tokenizer_test.c engine/tokenizer.c engine/tokenizer.h | build
	$(CC) $(CFLAGS) -o $@ tests/unit/tokenizer_test.c engine/tokenizer.c -lpcre2-8 -lsqlite3

# C unit test of the decoder: prefill, decode and split prefill agree.
build/engine_test: tests/unit/engine_test.c $(ENGINE_SRC) $(HEADERS) | build
	$(CC) $(CFLAGS) -o $@ tests/unit/engine_test.c $(filter-out engine/tokenizer.c,$(ENGINE_SRC)) $(LDLIBS)

# Installs whatever Debian packages are missing (through sudo when not root).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update && $$SUDO apt-get install -y $$missing; \
	fi

test: deps
	$(MAKE) all
	build/tokenizer_test
	build/engine_test
	$(TCLSH) tests/all.tcl

demo: deps
	$(MAKE) all
	sh sql/demo.sh

clean:
	rm -rf build

.PHONY: all deps test demo clean bench
