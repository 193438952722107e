#!/bin/sh
# The Node and Go client checks (tests/clients/clients.mjs, clients.go): every
# result of the extension read through Node's better-sqlite3 (its own current
# SQLite, built at test time from npm's registry) and Debian's node-sqlite3
# where installed, and through Go's database/sql with mattn/go-sqlite3 on the
# system's libsqlite3 (Debian's golang-go and golang-github-mattn-go-sqlite3-dev).
#
#   make && sh tests/clients/run.sh [EXTENSION]     (default build/gpt.so; build/gpt works too)
#
# Builds what it needs into build/clients/ (the Go program in GOPATH mode,
# offline: the driver comes from Debian's /usr/share/gocode), then runs each
# client. A client whose language or driver is not installed is skipped with a
# line saying why, and a skip is not a failure. Exits 1 when a client fails or
# does not build.
set -u
cd "$(dirname "$0")/../.."
ext=${1:-build/gpt.so}
[ -e "$ext" ] || [ -e "$ext.so" ] || { echo "tests/clients/run.sh: $ext is missing (run make first)"; exit 1; }
[ -e build/mkmodel ] || { echo "tests/clients/run.sh: build/mkmodel is missing (run make first)"; exit 1; }
status=0
BETTER_SQLITE3=12.11.1

# ---------------------------------------------------------------- Node
# better-sqlite3, built from source once into build/clients/node against the
# headers of the node that runs it (npm's registry holds its source; its
# prebuilt binaries come from elsewhere), and Debian's node-sqlite3 where it
# is installed (Debian's nodejs only: its libnode conflicts with NodeSource's
# nodejs).
NODE_PATH=${NODE_PATH:+$NODE_PATH:}$PWD/build/clients/node/node_modules:/usr/share/nodejs:/usr/lib/nodejs
for d in /usr/lib/*/nodejs; do [ -d "$d" ] && NODE_PATH=$NODE_PATH:$d; done
export NODE_PATH
if ! command -v node >/dev/null 2>&1; then
  echo "clients.mjs: skipped: node is not installed"
else
  nodedir=$(dirname "$(dirname "$(command -v node)")")
  if node -e 'require("better-sqlite3")' >/dev/null 2>&1; then
    :
  elif [ ! -e "$nodedir/include/node/node_version.h" ]; then
    echo "clients.mjs (better-sqlite3): skipped: no headers in $nodedir/include/node to build it against"
  elif mkdir -p build/clients/node && echo "building better-sqlite3@$BETTER_SQLITE3 (1-2 minutes)" &&
       npm install --prefix build/clients/node --no-audit --no-fund --loglevel=error \
         --fetch-timeout=20000 --fetch-retries=0 \
         --build-from-source --nodedir="$nodedir" "better-sqlite3@$BETTER_SQLITE3" \
         >build/clients/node/npm.log 2>&1; then
    :
  else
    echo "clients.mjs (better-sqlite3): skipped: npm install failed (registry unreachable?):" \
         "$(grep -m1 -i 'err' build/clients/node/npm.log)"
  fi
  ran=0
  for driver in better-sqlite3 sqlite3; do
    if node -e "require(\"$driver\")" >/dev/null 2>&1; then
      CLIENT_DRIVER=$driver node tests/clients/clients.mjs "$ext" || status=1
      ran=1
    elif [ $driver = sqlite3 ]; then
      echo "clients.mjs (node-sqlite3): skipped: not installed (Debian's node-sqlite3, with Debian's nodejs)"
    fi
  done
  [ $ran = 1 ] || echo "clients.mjs: skipped: no Node driver could be installed"
fi

# ---------------------------------------------------------------- Go
gosrc=/usr/share/gocode/src/github.com/mattn/go-sqlite3
if ! command -v go >/dev/null 2>&1; then
  echo "clients.go: skipped: go is not installed (apt-get install golang-go golang-github-mattn-go-sqlite3-dev)"
elif [ ! -d "$gosrc" ]; then
  echo "clients.go: skipped: $gosrc is missing (apt-get install golang-github-mattn-go-sqlite3-dev)"
else
  mkdir -p build/clients/gopath
  # libsqlite3: link the system's SQLite (Debian's driver always does)
  if env GO111MODULE=off GOFLAGS= GOPATH="$PWD/build/clients/gopath:/usr/share/gocode" \
       GOCACHE="${GOCACHE:-$PWD/build/clients/go-cache}" \
       go build -tags libsqlite3 -o build/clients/clients tests/clients/clients.go; then
    build/clients/clients "$ext" || status=1
  else
    echo "clients.go: FAILED to build"
    status=1
  fi
fi
exit $status
