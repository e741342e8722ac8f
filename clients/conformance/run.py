#!/usr/bin/env python3
"""The conformance driver: runs scenario.json against a real cluster with one language's runner.

    python3 clients/conformance/run.py --regent target/release/regent -- RUNNER COMMAND...

It makes a three-node cluster (`regent admin cluster init`, then three `regent run`), serves a
proxy socket in front of each node's socket, and goes through the scenario's steps in order:
the cluster steps (wait_writable, kill, start, sigstop, sigcont, checkpoint_all, journal_count,
proxy_withhold, proxy_withheld) it carries out itself; every other step it sends to the runner
as one JSON line on its standard input and reads one JSON line back. Each result is checked
against the step's `expect`; the first step that fails ends the run (exit 1) with the nodes'
logs kept in --dir. Python standard library only.
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))

# How long a step that found its host not writable is tried again.
RETRY_S = 30

CLUSTER_STEPS = {"wait_writable", "kill", "start", "sigstop", "sigcont", "checkpoint_all",
                 "journal_count", "proxy_withhold", "proxy_withheld"}


def monotonic_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# ----- HTTP on the nodes' sockets -----

def http(sock_path, method, path, body=b"", timeout=5.0):
    """(status, parsed JSON or raw bytes); raises OSError when the node does not answer."""
    import http.client

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(sock_path)

    conn = Conn("regent", timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
    except http.client.HTTPException as e:
        raise OSError(str(e)) from e
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data


# ----- The cluster -----

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    def __init__(self, regent, root, nodes, settings):
        self.regent = regent
        self.dir = os.path.join(root, "cluster")
        self.n = nodes
        args = [regent, "admin", "cluster", "init", "--dir", self.dir, "--cluster", "conformance"]
        for i in range(1, nodes + 1):
            args += ["--node", f"{i}=127.0.0.1:{free_port()}"]
        out = subprocess.run(args, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"cluster init failed: {out.stderr}")
        for i in range(1, nodes + 1):
            with open(self.config(i), "a") as f:
                f.write("\n" + settings)
        self.procs = {}
        self.runs = {i: 0 for i in range(1, nodes + 1)}

    def config(self, i):
        return os.path.join(self.dir, f"node{i}", "regent.yaml")

    def socket(self, i):
        return os.path.join(self.dir, f"node{i}", "regent.sock")

    def start(self, i):
        assert i not in self.procs, f"node {i} runs already"
        self.runs[i] += 1
        log = open(os.path.join(self.dir, f"node{i}", f"run{self.runs[i]}.log"), "w")
        self.procs[i] = subprocess.Popen(
            [self.regent, "run", "--config", self.config(i)], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, cwd=os.path.dirname(self.config(i)),
            env=dict(os.environ, REGENT_LOG="info"))
        log.close()

    def kill(self, i):
        p = self.procs.pop(i)
        p.send_signal(signal.SIGCONT)
        p.kill()
        p.wait()

    def signal(self, i, sig):
        self.procs[i].send_signal(sig)

    def status(self, i, timeout=2.0):
        try:
            code, body = http(self.socket(i), "GET", "/v1/status", timeout=timeout)
        except OSError:
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def wait_writable(self, timeout_ms, exclude=None):
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            up = [i for i in self.procs if i != exclude]
            writable = [i for i in up if (self.status(i) or {}).get("writable")]
            if len(writable) == 1:
                others = sorted(i for i in range(1, self.n + 1) if i != writable[0])
                return {"node": writable[0], "follower": others[0], "follower2": others[-1]}
            time.sleep(0.05)
        return {"error": "no_writable_leader"}

    def stop_all(self):
        for i in list(self.procs):
            self.kill(i)

    def logs(self, lines=30):
        out = []
        for i in range(1, self.n + 1):
            for r in range(1, self.runs[i] + 1):
                path = os.path.join(self.dir, f"node{i}", f"run{r}.log")
                try:
                    with open(path) as f:
                        text = f.read().splitlines()[-lines:]
                except OSError:
                    continue
                out.append(f"--- node {i} run {r} ---\n" + "\n".join(text))
        return "\n".join(out)


# ----- A proxy in front of a node's socket, which can withhold an answer -----

class Proxy:
    """Pipes every connection to the node's socket. An armed rule (method and path prefix)
    makes the next matching request go through while its answer is held back: the client sees
    a silent connection until it gives up (a timeout), although the write was carried out."""

    def __init__(self, path, upstream):
        self.path = path
        self.upstream = upstream
        self.lock = threading.Lock()
        self.rule = None  # (method, path prefix, remaining count)
        self.withheld = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        threading.Thread(target=self.accept, daemon=True).start()

    def arm(self, method, prefix, count):
        with self.lock:
            self.rule = (method, prefix, count)

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client):
        try:
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream)
        except OSError:
            client.close()
            return
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                client.close()
                up.close()
                return
            head += data
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        method, target = line[0], line[1] if len(line) > 1 else ""
        with self.lock:
            hit = (self.rule is not None and self.rule[2] > 0 and method == self.rule[0]
                   and target.startswith(self.rule[1]))
            if hit:
                self.rule = (self.rule[0], self.rule[1], self.rule[2] - 1)
        if hit:
            self.withhold(client, up, head)
            return
        up.sendall(head)
        threading.Thread(target=pipe, args=(up, client), daemon=True).start()
        pipe(client, up)

    def withhold(self, client, up, head):
        # Read the whole request body, send it upstream closing, keep the answer.
        end = head.index(b"\r\n\r\n") + 4
        headers = head[:end].decode("latin-1").lower()
        m = re.search(r"content-length:\s*(\d+)", headers)
        length = int(m.group(1)) if m else 0
        body = head[end:]
        while len(body) < length:
            data = client.recv(65536)
            if not data:
                break
            body += data
        request = head[:end - 2] + b"Connection: close\r\n\r\n" + body
        up.sendall(request)
        answer = b""
        while True:
            data = up.recv(65536)
            if not data:
                break
            answer += data
        up.close()
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1") else 0
        parsed = {}
        payload = answer.split(b"\r\n\r\n", 1)[-1]
        if b"transfer-encoding: chunked" in answer.split(b"\r\n\r\n", 1)[0].lower():
            payload = dechunk(payload)
        try:
            parsed = json.loads(payload)
        except ValueError:
            pass
        with self.lock:
            self.withheld.append({"status": status, **(parsed if isinstance(parsed, dict) else {})})
        # Silence until the client gives up.
        try:
            while client.recv(65536):
                pass
        except OSError:
            pass
        client.close()

    def close(self):
        self.listener.close()


def dechunk(data):
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    src.close()


# ----- The runner -----

class Runner:
    def __init__(self, command, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)

    def call(self, step):
        self.proc.stdin.write(json.dumps(step) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return {"error": "runner_exited", "code": self.proc.poll()}
        try:
            return json.loads(line)
        except ValueError:
            return {"error": "runner_garbled", "line": line}

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


# ----- Variables and expectations -----

VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)([+-]\d+)?\}")


def substitute(value, env):
    """'{name}' (alone: the variable's own value and type) and '{name+N}' inside strings;
    inner names first, so '{socket{leader}}' works."""
    if isinstance(value, dict):
        return {k: substitute(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, env) for v in value]
    if not isinstance(value, str):
        return value
    while True:
        m = VAR.search(value)
        if m is None:
            return value
        name, delta = m.group(1), m.group(2)
        if name not in env:
            raise KeyError(f"no variable {name!r} in {value!r}")
        v = env[name]
        if delta:
            v = v + int(delta)
        if m.group(0) == value:
            return v
        value = value[:m.start()] + str(v) + value[m.end():]


def field(result, path):
    v = result
    for part in path.split("."):
        if isinstance(v, list):
            v = v[int(part)] if v else None
        elif isinstance(v, dict):
            v = v.get(part)
        else:
            return None
    return v


def check(result, expect):
    """The list of mismatches between `result` and `expect`."""
    problems = []
    for key, want in expect.items():
        got = field(result, key)
        if isinstance(want, dict) and len(want) == 1 and next(iter(want)) in OPS:
            op, ref = next(iter(want.items()))
            if isinstance(ref, str) and ref.startswith("@"):
                ref = field(result, ref[1:])
            if not OPS[op](got, ref):
                problems.append(f"{key}: {got!r} is not {op} {ref!r}")
        else:
            if isinstance(want, str) and want.startswith("@"):
                want = field(result, want[1:])
            if got != want:
                problems.append(f"{key}: {got!r}, expected {want!r}")
    return problems


def _num(v):
    return 0 if v is None else v


OPS = {
    "<": lambda a, b: a is not None and a < _num(b),
    "<=": lambda a, b: a is not None and a <= _num(b),
    ">": lambda a, b: a is not None and a > _num(b),
    ">=": lambda a, b: a is not None and a >= _num(b),
    "!=": lambda a, b: a != b,
    "in": lambda a, b: a in b,
    "present": lambda a, b: (a is not None) == b,
}


# ----- The cluster steps -----

class Driver:
    def __init__(self, cluster, proxies, runner):
        self.cluster = cluster
        self.proxies = proxies
        self.runner = runner
        # Per host: how many of its events earlier wait_event steps consumed.
        self.seen = {}

    def step(self, step):
        do = step["do"]
        if do == "wait_event":
            return self.wait_event(step)
        if do == "no_event":
            return self.no_event(step)
        if do not in CLUSTER_STEPS:
            return self.runner.call(step)
        c = self.cluster
        if do == "wait_writable":
            return c.wait_writable(step.get("timeout_ms", 30000), step.get("except"))
        if do == "kill":
            c.kill(step["node"])
            return {"ok": True, "at_ns": monotonic_ns()}
        if do == "start":
            c.start(step["node"])
            return {"ok": True}
        if do == "sigstop":
            c.signal(step["node"], signal.SIGSTOP)
            return {"ok": True, "at_ns": monotonic_ns()}
        if do == "sigcont":
            c.signal(step["node"], signal.SIGCONT)
            return {"ok": True}
        if do == "checkpoint_all":
            return self.checkpoint_all(step)
        if do == "journal_count":
            return self.journal_count(step)
        if do == "proxy_withhold":
            self.proxies[step["node"]].arm(step["method"], step["path"], step.get("count", 1))
            return {"ok": True}
        if do == "proxy_withheld":
            got = self.proxies[step["node"]].withheld
            return {"count": len(got), **(got[-1] if got else {})}
        raise AssertionError(do)

    def wait_event(self, step):
        """Polls the runner's events of a host for the next one of `kind`."""
        host, kind = step["host"], step["kind"]
        deadline = time.monotonic() + step.get("timeout_ms", 30000) / 1000
        while True:
            answer = self.runner.call({"do": "events", "host": host})
            events = answer.get("events")
            if events is None:
                return answer
            start = self.seen.get(host, 0)
            for n, e in enumerate(events[start:], start):
                if e.get("kind") == kind:
                    self.seen[host] = n + 1
                    return e
            if time.monotonic() > deadline:
                return {"error": "no_event", "events": events[start:]}
            time.sleep(0.05)

    def no_event(self, step):
        """Counts a host's new events of `kind` over `for_ms` (consuming none): a safety check,
        so a busy machine cannot make it pass wrongly, only take longer to say so."""
        host, kind = step["host"], step["kind"]
        end = time.monotonic() + step["for_ms"] / 1000
        count = 0
        while True:
            answer = self.runner.call({"do": "events", "host": host})
            events = answer.get("events")
            if events is None:
                return answer
            count = sum(1 for e in events[self.seen.get(host, 0):] if e.get("kind") == kind)
            if count or time.monotonic() > end:
                return {"count": count}
            time.sleep(0.05)

    def checkpoint_all(self, step):
        """Every node's host reports a checkpoint at `index`; waits until every node's journal
        starts after it (the journal drops what every member's host checkpointed)."""
        index = step["index"]
        c = self.cluster
        deadline = time.monotonic() + step.get("timeout_ms", 30000) / 1000
        reported = set()
        while time.monotonic() < deadline:
            firsts = []
            for i in sorted(c.procs):
                try:
                    if i not in reported:
                        code, _ = http(c.socket(i), "POST", "/v1/journal/checkpoint",
                                       json.dumps({"index": index}).encode())
                        if code == 200:
                            reported.add(i)
                    _, state = http(c.socket(i), "GET", "/v1/journal/state")
                    firsts.append(state["first_index"])
                except (OSError, KeyError, TypeError):
                    firsts.append(None)
            if len(reported) == c.n and all(f == index + 1 for f in firsts):
                return {"first_index": index + 1}
            time.sleep(0.1)
        return {"error": "not_compacted", "first_indexes": firsts, "reported": sorted(reported)}

    def journal_count(self, step):
        """How often `op` is in the journal, read from the leader (or any node) as it is."""
        want = step["op"].encode()
        for i in sorted(self.cluster.procs):
            try:
                _, state = http(self.cluster.socket(i), "GET", "/v1/journal/state")
                code, body = http(self.cluster.socket(i), "GET",
                                  f"/v1/journal?from={state['first_index']}&follow=false",
                                  timeout=15)
            except (OSError, KeyError, TypeError):
                continue
            if code != 200 or not isinstance(body, bytes):
                continue
            count, pos = 0, 0
            while pos + 20 <= len(body):
                length = int.from_bytes(body[pos + 16:pos + 20], "big")
                if body[pos + 20:pos + 20 + length] == want:
                    count += 1
                pos += 20 + length
            return {"count": count, "node": i}
        return {"error": "no_node_answered"}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--regent", default=os.environ.get("REGENT_BIN", "regent"))
    p.add_argument("--scenario", default=os.path.join(HERE, "scenario.json"))
    p.add_argument("--dir", help="keep the cluster here (default: a temporary directory)")
    p.add_argument("--name", default="runner", help="the runner's name in the report")
    p.add_argument("--verbose", action="store_true", help="print every step's result")
    p.add_argument("runner", nargs="+", help="the runner's command line")
    args = p.parse_args()
    with open(args.scenario) as f:
        scenario = json.load(f)
    root = args.dir or tempfile.mkdtemp(prefix="regent-conformance-")
    os.makedirs(root, exist_ok=True)
    regent = os.path.abspath(shutil.which(args.regent) or args.regent)
    spec = scenario["cluster"]
    cluster = Cluster(regent, root, spec["nodes"], spec.get("settings", ""))
    env = {}
    proxies = {}
    for i in range(1, spec["nodes"] + 1):
        env[f"socket{i}"] = cluster.socket(i)
        env[f"proxy{i}"] = os.path.join(root, f"proxy{i}.sock")
        proxies[i] = Proxy(env[f"proxy{i}"], cluster.socket(i))
    for i in range(1, spec["nodes"] + 1):
        cluster.start(i)
    runner = Runner(args.runner, os.path.join(root, "runner.log"))
    driver = Driver(cluster, proxies, runner)
    passed = failed = 0
    started = time.monotonic()
    try:
        for n, raw in enumerate(scenario["steps"], 1):
            if "do" not in raw:
                print(f"== {raw.get('title', '')}", flush=True)
                continue
            step = substitute({k: v for k, v in raw.items() if k not in ("expect", "save")}, env)
            expect = substitute(raw.get("expect", {}), env)
            t = time.monotonic()
            result = driver.step(step)
            problems = check(result, expect)
            # A step that found the host not writable for a moment (a refresh of the lease's
            # deadline delayed on a busy machine) is tried again: `not_writable` sent nothing.
            # So is a step that expects a writable host. Both within the election bound.
            until = time.monotonic() + RETRY_S
            while problems and time.monotonic() < until and (
                    (result.get("error") == "not_writable" and expect.get("error") != "not_writable")
                    or (step["do"] == "is_writable" and expect.get("writable") is True)):
                time.sleep(0.05)
                result = driver.step(step)
                problems = check(result, expect)
            if not expect and "error" in result:
                problems.append(f"error {result['error']!r}")
            took = f"{time.monotonic() - t:5.2f}s"
            label = f"{n:3} {step['do']:<24} {json.dumps({k: v for k, v in step.items() if k != 'do'})[:90]}"
            if problems:
                failed += 1
                print(f"FAIL {label} ({took})\n     {'; '.join(problems)}\n     result: "
                      f"{json.dumps(result)[:2000]}", flush=True)
                break
            passed += 1
            print(f"ok   {label} ({took})", flush=True)
            if args.verbose:
                print(f"     {json.dumps(result)[:600]}", flush=True)
            for var, path in raw.get("save", {}).items():
                env[var] = field(result, path)
    finally:
        runner.close()
        cluster.stop_all()
        for proxy in proxies.values():
            proxy.close()
    total = sum(1 for s in scenario["steps"] if "do" in s)
    print(json.dumps({"runner": args.name, "passed": passed, "failed": failed, "steps": total,
                      "seconds": round(time.monotonic() - started, 1)}), flush=True)
    if failed or passed != total:
        print(f"logs kept in {root} (runner.log, cluster/node*/run*.log)\n{cluster.logs()}",
              file=sys.stderr)
        return 1
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
