package regent;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * The host's operation log (docs/api.md, "The host's operation journal"): fenced appends
 * exactly once in a session, a tail that reconnects from the next index (and throws
 * {@code JournalCompacted} when it is gone), the hand-over ack and checkpoints.
 */
public final class Journal {
    /** One committed operation. */
    public static final class Entry {
        public final long index;
        public final long term;
        public final byte[] op;

        Entry(long index, long term, byte[] op) {
            this.index = index;
            this.term = term;
            this.op = op;
        }
    }

    /** Where an append landed. */
    public static final class Appended {
        public final long index, term, firstIndex, lastIndex;

        Appended(Map<String, Object> v) {
            index = Json.longOf(v, "index");
            term = Json.longOf(v, "term");
            firstIndex = Json.longOf(v, "first_index");
            lastIndex = Json.longOf(v, "last_index");
        }
    }

    private final Path socket;
    private final Session session;

    /** On the regent at socket; appends fenced with leadership's term (null: not fenced unless named). */
    public Journal(Path socket, Leadership leadership, Session.WriteOptions options) {
        this.socket = socket;
        this.session = new Session(socket, leadership, options);
    }

    /** Appends ops (one: a plain append; more: one batch). expectedTerm 0 takes the Leadership's. */
    public Appended append(List<byte[]> ops, long expectedTerm) throws RegentException {
        if (ops.isEmpty() || ops.size() > 4096) {
            throw new RegentException("bad_batch", 0, ops.size() + " operations (1..=4096)", null);
        }
        if (ops.size() == 1) return new Appended(session.write("POST", "/v1/journal", ops.get(0), expectedTerm));
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (byte[] op : ops) {
            b.writeBytes(ByteBuffer.allocate(4).putInt(op.length).array());
            b.writeBytes(op);
        }
        return new Appended(session.write("POST", "/v1/journal?batch=true", b.toByteArray(), expectedTerm));
    }

    /** POST /v1/journal/applied: this host applied the journal up to index. */
    public Map<String, Object> ack(long index) throws RegentException {
        return report("/v1/journal/applied", index);
    }

    /** POST /v1/journal/checkpoint: this host's checkpoint covers the journal up to index. */
    public Map<String, Object> checkpoint(long index) throws RegentException {
        return report("/v1/journal/checkpoint", index);
    }

    private Map<String, Object> report(String path, long index) throws RegentException {
        return Http.request(socket, "POST", path, ("{\"index\": " + index + "}").getBytes(StandardCharsets.UTF_8),
                session.options.timeoutMs).check().json();
    }

    /** The committed operations from index {@code from} on. */
    public Tail tail(long from) {
        return new Tail(socket, from);
    }

    /** A journal tail: {@link #next()} blocks for the next entry, each once and in order. */
    public static final class Tail implements AutoCloseable {
        private final Path socket;
        private long next;
        private Http.Exchange exchange;
        private DataInputStream in;
        private volatile boolean closed;

        Tail(Path socket, long from) {
            this.socket = socket;
            this.next = from;
        }

        public long nextIndex() {
            return next;
        }

        /** The next entry; JournalCompacted when it is gone; reconnects after a broken stream. */
        public Entry next() throws RegentException {
            while (true) {
                if (closed) throw new RegentException("closed", 0, "the tail was closed", null);
                if (in == null) {
                    try {
                        exchange = Http.stream(socket, "/v1/journal?from=" + next);
                        in = new DataInputStream(exchange.body);
                    } catch (RegentException.JournalCompacted e) {
                        throw e;
                    } catch (RegentException e) {
                        pause();
                        continue;
                    }
                }
                try {
                    long index = in.readLong();
                    long term = in.readLong();
                    int len = in.readInt();
                    byte[] op = new byte[len];
                    in.readFully(op);
                    if (index != next) {
                        reset();
                        throw new RegentException("bad_stream", 0, "journal index " + index + " after " + (next - 1), null);
                    }
                    next++;
                    return new Entry(index, term, op);
                } catch (EOFException e) {
                    reset();
                    pause();
                } catch (IOException e) {
                    reset();
                    pause();
                }
            }
        }

        private void reset() {
            if (exchange != null) exchange.close();
            exchange = null;
            in = null;
        }

        private void pause() {
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                closed = true;
            }
        }

        @Override
        public void close() {
            closed = true;
            Http.Exchange x = exchange;
            if (x != null) x.close();
        }
    }
}
