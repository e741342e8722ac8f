package regent;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeSet;

/**
 * Writes exactly once: an exactly-once session ({@code POST /v1/session}), a seq per write, and
 * retries of that very seq on busy, superseded, outcome_unknown, leader_unreachable,
 * shutting_down, a timeout or a broken connection, until {@code retryForMs}. A write ends with its
 * answer (carried out once), {@code TermMismatch} (fenced; the Leadership is told),
 * {@code NotLeader} (only when no earlier attempt may have landed) or {@code OutcomeUnknown}.
 *
 * <p>Invariant: acked_below never passes the lowest seq in flight.
 */
public final class Session {
    /** A session outlives any retry: a day. */
    public static final long SESSION_TTL_MS = 24L * 3600 * 1000;

    /** Bounds of a write's attempts. */
    public static final class WriteOptions {
        public long timeoutMs = 15_000;
        public long retryForMs = 30_000;
        public long retryPauseMs = 200;
        /** forward=true: a follower relays the write. A host never needs it. */
        public boolean forward;
    }

    private final Path socket;
    private final Leadership leadership;
    final WriteOptions options;
    private long clientId;
    private long seq;
    private final TreeSet<Long> inFlight = new TreeSet<>();

    public Session(Path socket, Leadership leadership, WriteOptions options) {
        this.socket = socket;
        this.leadership = leadership;
        this.options = options;
    }

    private String forward() {
        return options.forward ? "&forward=true" : "";
    }

    private long open() throws RegentException {
        Map<String, Object> v = Http.request(socket, "POST", "/v1/session?forward=" + options.forward,
                ("{\"ttl_ms\": " + SESSION_TTL_MS + "}").getBytes(StandardCharsets.UTF_8), options.timeoutMs)
                .check().json();
        Long id = Json.longOf(v, "client_id");
        if (id == null) throw new RegentException.OutcomeUnknown(200, "a session answer without client_id", v);
        return id;
    }

    private long fence() throws RegentException {
        if (leadership == null) return 0;
        long term = leadership.term();
        if (term == 0 || !leadership.isWritable()) {
            throw new RegentException.NotWritable("this host's regent is not a writable leader (or not caught up)");
        }
        return term;
    }

    /** Sends one write exactly once; expectedTerm 0 takes the Leadership's. Returns the answer's JSON. */
    public Map<String, Object> write(String method, String path, byte[] body, long expectedTerm)
            throws RegentException {
        long term = expectedTerm != 0 ? expectedTerm : fence();
        long id, s;
        synchronized (this) {
            if (clientId == 0) clientId = open();
            id = clientId;
            s = ++seq;
            inFlight.add(s);
        }
        try {
            return send(method, path, body, term, id, s);
        } finally {
            synchronized (this) {
                inFlight.remove(s);
            }
        }
    }

    private Map<String, Object> send(String method, String path, byte[] body, long term, long id, long s)
            throws RegentException {
        long deadline = System.nanoTime() + options.retryForMs * 1_000_000;
        boolean mayHaveLanded = false;
        while (true) {
            long ackedBelow;
            synchronized (this) {
                ackedBelow = Math.min(inFlight.isEmpty() ? s : inFlight.first(), s);
            }
            String url = path + (path.contains("?") ? "&" : "?") + "client_id=" + id + "&seq=" + s
                    + "&acked_below=" + ackedBelow + (term != 0 ? "&expected_term=" + term : "") + forward();
            RegentException err;
            try {
                return Http.request(socket, method, url, body, options.timeoutMs).check().json();
            } catch (RegentException.TermMismatch e) {
                if (leadership != null && term != 0) leadership.fenced(term);
                throw e;
            } catch (RegentException.NotLeader e) {
                if (mayHaveLanded) {
                    throw new RegentException.OutcomeUnknown(e.status(),
                            "an earlier attempt may have landed, then: " + e.getMessage(), e.body());
                }
                throw e;
            } catch (RegentException.CommandRefused e) {
                if (e.getMessage().contains("session") && !mayHaveLanded) {
                    synchronized (this) {
                        if (clientId == id) clientId = 0;
                    }
                }
                throw e;
            } catch (RegentException e) {
                if (!e.retried()) throw e;
                err = e;
                boolean sent = e instanceof RegentException.Unavailable ? ((RegentException.Unavailable) e).sent
                        : !(e instanceof RegentException.LeaderUnreachable);
                mayHaveLanded |= sent;
            }
            if (System.nanoTime() >= deadline) {
                if (mayHaveLanded) {
                    throw new RegentException.OutcomeUnknown(0,
                            "retries ran out after " + options.retryForMs + " ms: " + err.getMessage(), null);
                }
                throw err;
            }
            try {
                Thread.sleep(options.retryPauseMs);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new RegentException.OutcomeUnknown(0, "interrupted between retries", null);
            }
        }
    }
}
