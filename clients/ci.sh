#!/usr/bin/env bash
# The client libraries in CI: each library's own tests, then the conformance scenario
# (clients/conformance/scenario.json) against a real cluster with each library's runner.
# Needs python3, go (1.19+, Debian's golang-go), javac/jar/java (17+, Debian's
# openjdk-17-jdk-headless), cargo, and the regent binary ($REGENT_BIN, default
# target/release/regent, built if missing). pip fetches setuptools from PyPI to install the
# Python library.
set -euo pipefail
cd "$(dirname "$0")/.."
export REGENT_BIN="${REGENT_BIN:-$PWD/target/release/regent}"
[ -x "$REGENT_BIN" ] || cargo build --release
run() { python3 clients/conformance/run.py --regent "$REGENT_BIN" --name "$@"; }

echo "== clients: python"
python3 -m unittest discover -s clients/python/tests
venv="$(mktemp -d)"
trap 'rm -rf "$venv"' EXIT
python3 -m pip install -q --target "$venv" ./clients/python    # pip install ./clients/python works
PYTHONPATH="$venv" python3 -c "import regent_client, sys; assert regent_client.__file__.startswith(sys.argv[1])" "$venv"
run python -- python3 clients/python/tests/conformance.py

echo "== clients: rust"
cargo build --release -p regent-client --example conformance
run rust -- target/release/examples/conformance

echo "== clients: go"
test -z "$(gofmt -l clients/go)" || { gofmt -l clients/go; echo "gofmt: the files above" >&2; exit 1; }
(cd clients/go && go vet ./... && env -u REGENT_BIN go test ./... && go build -o regent-conformance ./cmd/regent-conformance)
run go -- clients/go/regent-conformance

echo "== clients: java"
env -u REGENT_BIN clients/java/build.sh test
run java -- java -cp clients/java/build/regent-client.jar regent.conformance.Runner
echo "== clients: the four libraries pass the conformance scenario"
