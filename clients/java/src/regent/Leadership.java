package regent;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Whether this host may write now, and with which fencing term.
 *
 * <p>Three daemon threads keep it: the watcher keeps {@code GET /v1/leadership/watch} open
 * (reconnecting); the refresher reads {@code GET /v1/status} every {@code refreshMs} while
 * writable (the watch does not carry lease renewals); the clock wakes at the lease's deadline and
 * ends the activation if nothing renewed it.
 *
 * <p>Invariant: {@link #isWritable()} is true only while an activation's term is current and the
 * local CLOCK_MONOTONIC ({@link #monotonicNs()}) is before the last deadline regent gave; it turns
 * false the instant the deadline passes, whatever the stream says (a stopped daemon says nothing).
 *
 * <p>A journal host becomes active only once it has applied the journal up to the
 * {@code catch_up_index} of the event that made its regent writable (reported with
 * {@link #applied(long)}) and regent acknowledged that ({@code POST /v1/journal/applied}): the
 * hand-over rule.
 */
public final class Leadership implements AutoCloseable {
    /**
     * The host's callbacks, called in order from the library's threads: return quickly. One that
     * throws is reported (the thread's uncaught-exception handler) and the Leadership goes on.
     */
    public interface Listener {
        /** The host may write in {@code term}; {@code catchUpIndex} null: nothing to catch up to. */
        void onActive(long term, Long catchUpIndex);

        /** The host must stop writing. */
        void onInactive(String reason);
    }

    /** Settings; the defaults suit a host beside its regent. */
    public static final class Options {
        public boolean journalHost;
        public long refreshMs = 100;
        public long reconnectMs = 200;
        public long requestTimeoutMs = 1000;
    }

    /**
     * CLOCK_MONOTONIC in ns, the clock of regent's {@code deadline_monotonic_ns}: OpenJDK's
     * {@code System.nanoTime()} on Linux is {@code clock_gettime(CLOCK_MONOTONIC)} in ns (hotspot
     * os_linux.cpp, {@code os::javaTimeNanos}), with no offset.
     */
    public static long monotonicNs() {
        return System.nanoTime();
    }

    private final Path socket;
    private final Options options;
    private final Listener listener;
    /** Held while a transition is decided and its callback runs: callbacks come in order. */
    private final ReentrantLock transition = new ReentrantLock();
    private final Object lock = new Object();

    // Guarded by lock.
    private boolean closed;
    /** What the stream last said: writable in streamTerm until deadlineNs. */
    private boolean writable;
    private long streamTerm;
    private long deadlineNs;
    /** A lease warning not yet followed by a renewal. */
    private boolean warned;
    private Long catchUpIndex;
    private long catchUpTarget;
    private long applied;
    /** The term this host is active in; 0: inactive (terms start at 1). */
    private long activeTerm;
    private Http.Exchange stream;

    private Leadership(Path socket, Options options, Listener listener) {
        this.socket = socket;
        this.options = options;
        this.listener = listener;
    }

    /**
     * Starts following the regent at {@code socket}. The listener may be called before this
     * returns (the threads start here).
     */
    public static Leadership start(Path socket, Options options, Listener listener) {
        Leadership l = new Leadership(socket, options, listener);
        l.thread("regent-watch", l::watch);
        l.thread("regent-refresh", l::refresh);
        l.thread("regent-clock", l::clock);
        return l;
    }

    private void thread(String name, Runnable run) {
        Thread t = new Thread(run, name);
        t.setDaemon(true);
        t.start();
    }

    /** Active, and the lease's deadline is ahead on the local monotonic clock. */
    public boolean isWritable() {
        synchronized (lock) {
            return activeTerm != 0 && !warned && monotonicNs() < deadlineNs;
        }
    }

    /** The fencing term of the current activation (send it as expected_term); 0 when inactive. */
    public long term() {
        synchronized (lock) {
            return activeTerm;
        }
    }

    /** The lease's deadline on CLOCK_MONOTONIC as regent last gave it (0: none). */
    public long deadlineNs() {
        synchronized (lock) {
            return deadlineNs;
        }
    }

    /** A journal host reports the journal index it has applied up to. */
    public void applied(long index) {
        synchronized (lock) {
            applied = Math.max(applied, index);
        }
        maybeActivate();
    }

    /** A write in {@code term} was refused with term_mismatch: this host is deposed. */
    public void fenced(long term) {
        boolean current;
        synchronized (lock) {
            current = activeTerm == term;
        }
        if (current) deactivate("term_mismatch: a write in term " + term + " was fenced");
    }

    /** Ends the threads and the activation. */
    @Override
    public void close() {
        Http.Exchange s;
        synchronized (lock) {
            closed = true;
            s = stream;
            lock.notifyAll();
        }
        if (s != null) s.close();
        deactivate("closed");
    }

    /** A listener that throws is the host's bug: reported, and the Leadership goes on. */
    private static void callbackFailed(RuntimeException e) {
        Thread t = Thread.currentThread();
        t.getUncaughtExceptionHandler().uncaughtException(t, e);
    }

    private void maybeActivate() {
        transition.lock();
        try {
            long term, target, done;
            Long catchUp;
            synchronized (lock) {
                if (closed || !writable || warned || activeTerm == streamTerm || monotonicNs() >= deadlineNs) return;
                term = streamTerm;
                target = catchUpTarget;
                done = applied;
                catchUp = catchUpIndex;
            }
            if (options.journalHost) {
                if (done < target) return;
                try {
                    Http.request(socket, "POST", "/v1/journal/applied",
                            ("{\"index\": " + done + "}").getBytes(StandardCharsets.UTF_8),
                            options.requestTimeoutMs).check();
                } catch (RegentException e) {
                    return; // the next event, refresh or applied() tries again
                }
            }
            synchronized (lock) {
                if (!writable || streamTerm != term || monotonicNs() >= deadlineNs) return;
                activeTerm = term;
                lock.notifyAll();
            }
            if (listener != null) {
                try {
                    listener.onActive(term, catchUp);
                } catch (RuntimeException e) {
                    callbackFailed(e);
                }
            }
        } finally {
            transition.unlock();
        }
    }

    private void deactivate(String reason) {
        transition.lock();
        try {
            synchronized (lock) {
                if (activeTerm == 0) return;
                activeTerm = 0;
                lock.notifyAll();
            }
            if (listener != null) {
                try {
                    listener.onInactive(reason);
                } catch (RuntimeException e) {
                    callbackFailed(e);
                }
            }
        } finally {
            transition.unlock();
        }
    }

    private static long num(Map<String, Object> m, String k) {
        Long v = Json.longOf(m, k);
        return v == null ? 0 : v;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> obj(Map<String, Object> m, String k) {
        Object v = m.get(k);
        return v instanceof Map ? (Map<String, Object>) v : Map.of();
    }

    private void setNotWritable() {
        synchronized (lock) {
            writable = false;
            lock.notifyAll();
        }
    }

    private void onEvent(Map<String, Object> e) {
        boolean isWritable = Boolean.TRUE.equals(e.get("writable"));
        long term = num(e, "term");
        long deadline = num(obj(e, "lease"), "deadline_monotonic_ns");
        if (!isWritable) {
            setNotWritable();
            deactivate("not writable (role " + e.get("role") + ", term " + term + ")");
            return;
        }
        boolean newTerm;
        long old;
        synchronized (lock) {
            newTerm = term != streamTerm || !writable;
            old = activeTerm;
        }
        if (newTerm && old != 0 && old != term) deactivate("term " + old + " ended (now " + term + ")");
        synchronized (lock) {
            if (newTerm) {
                streamTerm = term;
                writable = true;
                deadlineNs = deadline;
                warned = false;
                catchUpIndex = Json.longOf(e, "catch_up_index");
                // Acked already (a host restarted in the term): everything committed.
                catchUpTarget = catchUpIndex != null ? catchUpIndex : num(obj(e, "journal"), "last_index");
            } else if ("lease_warning".equals(e.get("event"))) {
                // Not renewed lately: stop until a later deadline shows up.
                if (deadline <= deadlineNs) warned = true;
            } else if (deadline > deadlineNs) {
                deadlineNs = deadline;
                warned = false;
            }
            lock.notifyAll();
        }
        maybeActivate();
    }

    private boolean isClosed() {
        synchronized (lock) {
            return closed;
        }
    }

    private void pause(long ms) {
        synchronized (lock) {
            if (closed) return;
            try {
                lock.wait(ms);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private void watch() {
        while (!isClosed()) {
            String reason = "the leadership watch ended";
            try {
                Http.Exchange x = Http.stream(socket, "/v1/leadership/watch");
                synchronized (lock) {
                    stream = x;
                    if (closed) {
                        x.close();
                        return;
                    }
                }
                InputStream in = x.body;
                String line;
                while ((line = Http.readLine(in)) != null) {
                    if (line.isBlank()) continue;
                    onEvent(Json.object(line));
                }
                x.close();
            } catch (RegentException e) {
                reason = "the leadership watch failed: " + e.getMessage();
            } catch (IOException | IllegalArgumentException e) {
                reason = "the leadership watch broke: " + e;
            }
            // A stream that broke says nothing about the lease: assume it ended.
            setNotWritable();
            deactivate(reason);
            pause(options.reconnectMs);
        }
    }

    private void refresh() {
        while (!isClosed()) {
            boolean w;
            long term;
            synchronized (lock) {
                w = writable;
                term = streamTerm;
            }
            if (w) {
                try {
                    onStatus(Http.request(socket, "GET", "/v1/status", new byte[0], options.requestTimeoutMs)
                            .check().json(), term);
                } catch (RegentException e) {
                    // The lease runs out on its own; the clock ends it.
                }
            }
            pause(options.refreshMs);
        }
    }

    private void onStatus(Map<String, Object> status, long term) {
        Map<String, Object> lease = obj(status, "lease");
        synchronized (lock) {
            if (streamTerm != term || !writable) return;
            long deadline = num(lease, "deadline_monotonic_ns");
            if (num(status, "term") == term && Boolean.TRUE.equals(status.get("writable"))
                    && Boolean.TRUE.equals(lease.get("valid")) && deadline > deadlineNs) {
                deadlineNs = deadline;
                warned = false;
            }
            lock.notifyAll();
        }
        maybeActivate();
    }

    private void clock() {
        while (true) {
            long expired;
            synchronized (lock) {
                while (true) {
                    if (closed) return;
                    long now = monotonicNs();
                    if (activeTerm != 0 && now >= deadlineNs) {
                        expired = deadlineNs;
                        break;
                    }
                    try {
                        if (activeTerm != 0) {
                            long wait = deadlineNs - now;
                            lock.wait(wait / 1_000_000, (int) (wait % 1_000_000));
                        } else {
                            lock.wait();
                        }
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }
            deactivate("the lease ran out unrenewed at " + expired + " ns");
        }
    }
}
