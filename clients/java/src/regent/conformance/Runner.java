package regent.conformance;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import regent.Journal;
import regent.Json;
import regent.Kv;
import regent.Leadership;
import regent.RegentException;
import regent.Session;

/**
 * The Java library's conformance runner: one JSON step per line on stdin, one JSON result per
 * line on stdout (clients/conformance/README.md). Run by clients/conformance/run.py:
 *
 * <pre>
 * clients/java/build.sh
 * python3 clients/conformance/run.py --regent target/release/regent -- \
 *     java -cp clients/java/build/regent-client.jar regent.conformance.Runner
 * </pre>
 */
public final class Runner {
    /** A Leadership, a Journal and a Kv on one socket; a journal host also tails and applies. */
    static final class Host implements Leadership.Listener {
        Leadership lead;
        Journal journal;
        Kv kv;
        Journal.Tail tail;
        final List<Map<String, Object>> events = new ArrayList<>();
        long applied;
        boolean inOrder = true;
        /** Set by hold_apply: the applier waits, the host falls behind, until release_apply. */
        volatile boolean held;

        Host(Map<String, Object> step) {
            Path socket = Path.of((String) step.get("socket"));
            Session.WriteOptions opts = new Session.WriteOptions();
            Long t = Json.longOf(step, "timeout_ms");
            if (t != null) opts.timeoutMs = t;
            opts.forward = Boolean.TRUE.equals(step.get("forward"));
            Leadership.Options lo = new Leadership.Options();
            lo.journalHost = Boolean.TRUE.equals(step.get("journal_host"));
            // The callbacks (synchronized) may come before start returns: they wait for this.
            synchronized (this) {
                lead = Leadership.start(socket, lo, this);
            }
            journal = new Journal(socket, lead, opts);
            kv = new Kv(socket, lead, opts);
            if (lo.journalHost) {
                tail = new Journal(socket, null, opts).tail(1);
                Thread th = new Thread(() -> {
                    try {
                        while (true) {
                            Journal.Entry e = tail.next();
                            while (held) Thread.sleep(10);
                            synchronized (this) {
                                if (e.index != applied + 1) inOrder = false;
                                applied = e.index;
                            }
                            lead.applied(e.index);
                        }
                    } catch (RegentException | InterruptedException e) {
                        // Closed, or compacted: the host stops applying.
                    }
                }, "applier");
                th.setDaemon(true);
                th.start();
            }
        }

        @Override
        public synchronized void onActive(long term, Long catchUpIndex) {
            Map<String, Object> e = new LinkedHashMap<>();
            e.put("kind", "active");
            e.put("term", term);
            e.put("catch_up_index", catchUpIndex);
            e.put("applied", applied);
            e.put("at_ns", Leadership.monotonicNs());
            e.put("deadline_ns", lead.deadlineNs());
            events.add(e);
        }

        @Override
        public synchronized void onInactive(String reason) {
            Map<String, Object> e = new LinkedHashMap<>();
            e.put("kind", "inactive");
            e.put("reason", reason);
            e.put("at_ns", Leadership.monotonicNs());
            e.put("deadline_ns", lead.deadlineNs());
            events.add(e);
        }
    }

    static Map<String, Object> map(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i + 1 < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
        return m;
    }

    static byte[] bytes(Object o) {
        return (o == null ? "" : (String) o).getBytes(StandardCharsets.UTF_8);
    }

    static long num(Map<String, Object> s, String k, long d) {
        Long v = Json.longOf(s, k);
        return v == null ? d : v;
    }

    static Kv.Consistency consistency(Map<String, Object> s) {
        Object c = s.get("consistency");
        return c == null ? Kv.Consistency.LINEARIZABLE : Kv.Consistency.valueOf(((String) c).toUpperCase());
    }

    @SuppressWarnings("unchecked")
    static Object run(Map<String, Object> s, Map<String, Host> hosts) throws Exception {
        String d = (String) s.get("do");
        if ("open".equals(d)) {
            hosts.put((String) s.get("host"), new Host(s));
            return map("ok", true);
        }
        if ("tail".equals(d)) return tail(s);
        Host h = hosts.get((String) s.get("host"));
        if (h == null) return map("error", "no_such_host");
        long term = num(s, "expected_term", 0);
        switch (d) {
            case "events":
                synchronized (h) {
                    return map("events", new ArrayList<>(h.events));
                }
            case "is_writable": {
                long t = h.lead.term();
                return map("writable", h.lead.isWritable(), "term", t == 0 ? null : t, "deadline_ns",
                        h.lead.deadlineNs(), "now_ns", Leadership.monotonicNs());
            }
            case "writable_after_deadline": {
                long end = System.nanoTime() + num(s, "timeout_ms", 30000) * 1_000_000;
                while (System.nanoTime() < end) {
                    long deadline = h.lead.deadlineNs(), now = Leadership.monotonicNs();
                    if (now >= deadline) {
                        boolean writable = h.lead.isWritable();
                        // A renewal read just before the stop may land meanwhile: look again.
                        if (h.lead.deadlineNs() == deadline) {
                            return map("writable", writable, "now_ns", now, "deadline_ns", deadline);
                        }
                        continue;
                    }
                    Thread.sleep(Math.max(1, Math.min(50, (deadline - now) / 1_000_000)));
                }
                return map("error", "deadline_not_reached");
            }
            case "append": {
                List<byte[]> ops = new ArrayList<>();
                for (Object o : (List<Object>) s.get("ops")) ops.add(bytes(o));
                Journal.Appended a = h.journal.append(ops, term);
                return map("index", a.index, "term", a.term, "first_index", a.firstIndex, "last_index", a.lastIndex);
            }
            case "kv_put":
                return h.kv.put(bytes(s.get("key")), bytes(s.get("value")), term);
            case "kv_delete":
                return h.kv.delete(bytes(s.get("key")), term);
            case "kv_get": {
                Kv.KeyValue kv = h.kv.get(bytes(s.get("key")), consistency(s));
                if (kv == null) return map("value", null);
                return map("value", new String(kv.value, StandardCharsets.UTF_8), "mod_revision", kv.modRevision,
                        "create_revision", kv.createRevision, "version", kv.version);
            }
            case "kv_range": {
                Kv.Range r = h.kv.range(bytes(s.get("prefix")), (int) num(s, "limit", 1000), consistency(s));
                List<Object> keys = new ArrayList<>();
                for (Kv.KeyValue kv : r.kvs) keys.add(new String(kv.key, StandardCharsets.UTF_8));
                return map("keys", keys, "more", r.more);
            }
            case "kv_txn": {
                Map<String, Object> t = (Map<String, Object>) s.get("txn");
                return h.kv.txn(t.get("compare"), t.get("success"), t.get("failure"), term);
            }
            case "hold_apply":
                h.held = true;
                return map("ok", true);
            case "release_apply":
                h.held = false;
                return map("ok", true);
            case "kv_watch": {
                int count = (int) num(s, "count", 1);
                List<Kv.Change> changes = new ArrayList<>();
                RegentException[] failed = new RegentException[1];
                Thread w = new Thread(() -> {
                    try {
                        h.kv.watch(bytes(s.get("prefix")), num(s, "from_revision", 0), c -> {
                            synchronized (changes) {
                                changes.add(c);
                                return changes.size() < count;
                            }
                        });
                    } catch (RegentException e) {
                        failed[0] = e;
                    }
                });
                w.setDaemon(true);
                w.start();
                w.join(num(s, "timeout_ms", 30000));
                if (failed[0] != null) throw failed[0];
                synchronized (changes) {
                    if (changes.size() < count) return map("error", "watch_timed_out", "changes", changes.size());
                    List<Object> keys = new ArrayList<>(), types = new ArrayList<>(), values = new ArrayList<>();
                    for (Kv.Change c : changes) {
                        keys.add(new String(c.key, StandardCharsets.UTF_8));
                        types.add(c.type);
                        values.add(c.value == null ? null : new String(c.value, StandardCharsets.UTF_8));
                    }
                    return map("keys", keys, "types", types, "values", values, "first_revision",
                            changes.get(0).revision, "last_revision", changes.get(count - 1).revision);
                }
            }
            case "wait_applied": {
                long end = System.nanoTime() + num(s, "timeout_ms", 30000) * 1_000_000;
                while (true) {
                    synchronized (h) {
                        if (h.applied >= num(s, "index", 0)) return map("applied", h.applied, "in_order", h.inOrder);
                    }
                    if (System.nanoTime() > end) return map("error", "not_applied", "applied", h.applied);
                    Thread.sleep(50);
                }
            }
            case "close":
                h.lead.close();
                if (h.tail != null) h.tail.close();
                hosts.remove((String) s.get("host"));
                return map("ok", true);
            default:
                return map("error", "unknown_step", "do", d);
        }
    }

    /** Reads the journal from "from" until index "until" (reconnecting inside the library). */
    static Object tail(Map<String, Object> s) throws Exception {
        Journal.Tail t = new Journal(Path.of((String) s.get("socket")), null, new Session.WriteOptions())
                .tail(num(s, "from", 1));
        Thread timer = new Thread(() -> {
            try {
                Thread.sleep(num(s, "timeout_ms", 30000));
                t.close();
            } catch (InterruptedException e) {
                // The tail finished first.
            }
        });
        timer.setDaemon(true);
        timer.start();
        List<Journal.Entry> entries = new ArrayList<>();
        try {
            while (true) {
                Journal.Entry e = t.next();
                entries.add(e);
                if (e.index >= num(s, "until", 0)) break;
            }
        } finally {
            timer.interrupt();
            t.close();
        }
        boolean inOrder = true;
        for (int i = 1; i < entries.size(); i++) inOrder &= entries.get(i).index == entries.get(i - 1).index + 1;
        Journal.Entry first = entries.get(0), last = entries.get(entries.size() - 1);
        return map("first", first.index, "last", last.index, "count", entries.size(), "in_order", inOrder,
                "last_op", new String(last.op, StandardCharsets.UTF_8));
    }

    static Map<String, Object> error(RegentException e) {
        Map<String, Object> out = new HashMap<>(e.body());
        out.put("error", e.code());
        out.put("message", e.getMessage());
        if (e.status() != 0) out.put("status", e.status());
        return out;
    }

    public static void main(String[] args) throws Exception {
        Map<String, Host> hosts = new HashMap<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        String line;
        while ((line = in.readLine()) != null) {
            Object result;
            try {
                result = run(Json.object(line), hosts);
            } catch (RegentException e) {
                result = error(e);
            } catch (Exception e) {
                result = map("error", "exception", "message", e.toString());
            }
            out.println(Json.write(result));
        }
        for (Host h : hosts.values()) h.lead.close();
    }
}
