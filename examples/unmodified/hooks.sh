#!/bin/sh
# regent's hooks for examples/unmodified/master.py, a master that knows nothing of regent.
#
#   hooks.sh start NODE_DIR   pre_promote: start the master, exit 0 once it accepts requests
#   hooks.sh stop NODE_DIR    on_demote: kill the master (SIGKILL), note when it was dead
#   hooks.sh fence NODE_DIR   a fence method: stop the master of node $REGENT_FENCE_NODE_ID
#
# NODE_DIR/master.env says where things are: PORT, STATE_DIR (the master's own storage; here
# one directory all nodes share, as a shared disk would be), MASTER_LOG (its life events, on
# CLOCK_MONOTONIC), NAME. Fencing on one machine kills the other node's master by its pid
# file; on real machines it would power the old machine off (IPMI) or cut its storage path.
set -eu
action=$1
dir=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
now_ns() { python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC))'; }

stop_master() {
    d=$1
    . "$d/master.env"
    if [ -f "$d/master.pid" ]; then
        pid=$(cat "$d/master.pid")
        kill -9 "$pid" 2>/dev/null || true
        # Dead once gone or a zombie (its parent, init here, may reap it late).
        while kill -0 "$pid" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
            sleep 0.01
        done
        echo "killed $(now_ns) $NAME" >> "$MASTER_LOG"
        rm -f "$d/master.pid"
    fi
}

case $action in
start)
    . "$dir/master.env"
    if [ -f "$dir/master.pid" ] && kill -0 "$(cat "$dir/master.pid")" 2>/dev/null; then
        exit 0
    fi
    # Its output goes to a file: the hook's own output pipe must close when the hook ends.
    python3 "$here/master.py" --port "$PORT" --state-dir "$STATE_DIR" --log "$MASTER_LOG" \
        --name "$NAME" >> "$dir/master.out" 2>&1 < /dev/null &
    echo $! > "$dir/master.pid"
    # Ready once it accepts a connection (the hook's timeout bounds the wait).
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2).close()" 2>/dev/null; do
        if ! kill -0 "$(cat "$dir/master.pid")" 2>/dev/null; then
            echo "the master exited at start:"; tail -5 "$dir/master.out"; exit 1
        fi
        sleep 0.02
    done
    echo "master $NAME serving on port $PORT (term $REGENT_TERM)"
    ;;
stop)
    stop_master "$dir"
    ;;
fence)
    target="$(dirname "$dir")/node$REGENT_FENCE_NODE_ID"
    stop_master "$target"
    echo "fenced node $REGENT_FENCE_NODE_ID ($REGENT_FENCE_ADDRESS)"
    ;;
*)
    echo "usage: hooks.sh start|stop|fence NODE_DIR" >&2
    exit 2
    ;;
esac
