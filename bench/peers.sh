#!/usr/bin/env bash
# The peer comparison: regent, etcd and ZooKeeper (three nodes each, on loopback) under the same
# closed-loop write workload, printed side by side (`regent bench peers`; see docs/bench.md).
# Installs Debian's etcd-server and zookeeper when missing (needs root or sudo), builds regent,
# runs the comparison; every process and directory it starts is gone when it ends.
#
#   bench/peers.sh                         # 1, 16, 64, 256 clients, 5 s each per system
#   bench/peers.sh --clients 64 --seconds 10
#   bench/peers.sh --json
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
[ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${missing[*]} ..." >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# The Debian packages may start their own services on the default ports; the benchmark uses
# ports of its own, so they are left alone.

cargo build --release --quiet
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/regent" bench peers "$@"
