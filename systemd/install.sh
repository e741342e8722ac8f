#!/bin/sh
# Installs regent on a Debian machine (run as root from regent's source tree):
#   - the binary as /usr/bin/regent (0755),
#   - the system user and group `regent` (no login, home /var/lib/regent),
#   - /etc/regent (root:regent 0750) and /var/lib/regent (regent:regent 0700),
#   - the units regent.service and regent@.service in /etc/systemd/system (0644),
#   - with --node-dir DIR, one node's files from `regent admin cluster init --system-paths`:
#     regent.yaml (root:regent 0640), node.pem and ca-bundle.pem (root:regent 0644),
#     node.key (regent:regent 0600).
# It never overwrites a configuration, certificate or key that is already installed (say
# --force to replace them), and it can be run again. /run/regent (the socket) is made by
# systemd at each start (RuntimeDirectory=).
#
# Usage: systemd/install.sh [--root DIR] [--binary PATH] [--node-dir DIR] [--force]
#   --root DIR     install under DIR instead of / (a package build or a test); the user is
#                  added to DIR/etc/passwd (useradd --prefix), systemctl is not called.
#   --binary PATH  the regent binary (default: target/release/regent, else `regent` on PATH).
#   --node-dir DIR the node's directory made by `regent admin cluster init --system-paths`.
set -eu

root=/
binary=
node_dir=
force=no
here=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "install.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --node-dir) node_dir=${2:?--node-dir needs a directory}; shift 2 ;;
    --force) force=yes; shift ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (it adds a system user and sets owners)"
[ -d "$root" ] || die "--root $root is not a directory"
root=$(cd "$root" && pwd)
# Paths below are written as "$root$path"; with root "/" that would start with "//".
[ "$root" = / ] && root=

if [ -z "$binary" ]; then
    if [ -x "$here/../target/release/regent" ]; then
        binary="$here/../target/release/regent"
    elif command -v regent >/dev/null; then
        binary=$(command -v regent)
    else
        die "no regent binary: build it (cargo build --release) or say --binary PATH"
    fi
fi
[ -x "$binary" ] || die "$binary is not an executable"
if [ -n "$node_dir" ]; then
    for f in regent.yaml node.pem node.key ca-bundle.pem; do
        [ -f "$node_dir/$f" ] || die "$node_dir/$f is missing (make it with regent admin cluster init --system-paths)"
    done
    grep -q '^data_dir: /var/lib/regent$' "$node_dir/regent.yaml" \
        || die "$node_dir/regent.yaml is not for the installed layout (make it with --system-paths)"
fi

echo "== the binary"
if [ -e "$root/usr/bin/regent" ] && [ "$binary" -ef "$root/usr/bin/regent" ]; then
    echo "   $root/usr/bin/regent is already this binary (installed by a package?)"
else
    install -D -m 0755 -o root -g root "$binary" "$root/usr/bin/regent"
    echo "   $root/usr/bin/regent"
fi

echo "== the user"
if [ -z "$root" ]; then
    if getent passwd regent >/dev/null; then
        echo "   regent exists"
    else
        adduser --system --group --no-create-home --home /var/lib/regent \
            --shell /usr/sbin/nologin --gecos "regent Raft sidecar" regent
    fi
    uid=$(id -u regent)
    gid=$(getent group regent | cut -d: -f3)
else
    [ -f "$root/etc/passwd" ] || die "$root/etc/passwd is missing: --root needs an /etc with passwd, group, shadow, gshadow"
    if grep -q '^regent:' "$root/etc/passwd"; then
        echo "   regent exists in $root/etc/passwd"
    else
        useradd --prefix "$root" --system --user-group --home-dir /var/lib/regent \
            --no-create-home --shell /usr/sbin/nologin --comment "regent Raft sidecar" regent
    fi
    uid=$(grep '^regent:' "$root/etc/passwd" | cut -d: -f3)
    gid=$(grep '^regent:' "$root/etc/group" | cut -d: -f3)
fi
[ -n "$uid" ] && [ -n "$gid" ] || die "the regent user or group was not created"
echo "   regent: uid $uid gid $gid"

echo "== the directories"
install -d -m 0750 -o root -g "$gid" "$root/etc/regent"
install -d -m 0700 -o "$uid" -g "$gid" "$root/var/lib/regent"
echo "   $root/etc/regent (root:regent 0750), $root/var/lib/regent (regent:regent 0700)"

echo "== the units"
if [ -f "$here/regent.service" ]; then
    install -D -m 0644 -o root -g root "$here/regent.service" "$root/etc/systemd/system/regent.service"
    install -D -m 0644 -o root -g root "$here/regent@.service" "$root/etc/systemd/system/regent@.service"
    echo "   $root/etc/systemd/system/regent.service, regent@.service"
else
    # The Debian package ships the units in /lib/systemd/system and this script beside them.
    echo "   not beside this script: kept as installed (by the package)"
fi

# put SRC DEST MODE OWNER GROUP: installs unless DEST exists (then only with --force).
put() {
    if [ -e "$2" ] && [ "$force" != yes ]; then
        echo "   $2 exists: kept (--force replaces it)"
        return
    fi
    install -m "$3" -o "$4" -g "$5" "$1" "$2"
    echo "   $2 ($3)"
}

if [ -n "$node_dir" ]; then
    echo "== the node's configuration and certificates"
    put "$node_dir/regent.yaml" "$root/etc/regent/regent.yaml" 0640 0 "$gid"
    put "$node_dir/node.pem" "$root/etc/regent/node.pem" 0644 0 "$gid"
    put "$node_dir/ca-bundle.pem" "$root/etc/regent/ca-bundle.pem" 0644 0 "$gid"
    # regent refuses a key readable by anyone but its owner.
    put "$node_dir/node.key" "$root/etc/regent/node.key" 0600 "$uid" "$gid"
fi

if [ -z "$root" ]; then
    if [ -f /etc/regent/regent.yaml ]; then
        echo "== check-config"
        # As the service's user, so file permissions are checked as the daemon will meet them.
        if command -v runuser >/dev/null; then
            runuser -u regent -- /usr/bin/regent check-config /etc/regent/regent.yaml
        else
            /usr/bin/regent check-config /etc/regent/regent.yaml
        fi
    fi
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    echo "done. Start it with: systemctl enable --now regent   (then: regent status)"
else
    echo "done (under $root)."
fi
