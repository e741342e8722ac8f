package regent;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.net.URLEncoder;

/**
 * The replicated key-value store: writes fenced and exactly once in a session, reads at a
 * {@link Consistency}.
 */
public final class Kv {
    /** How fresh a read must be. */
    public enum Consistency {
        LINEARIZABLE, LEASE, LOCAL;

        String wire() {
            return name().toLowerCase();
        }
    }

    /** A key's value and revisions. */
    public static final class KeyValue {
        public final byte[] key, value;
        public final long createRevision, modRevision, version;

        KeyValue(byte[] key, byte[] value, long createRevision, long modRevision, long version) {
            this.key = key;
            this.value = value;
            this.createRevision = createRevision;
            this.modRevision = modRevision;
            this.version = version;
        }
    }

    /** The keys of a range and whether there are more. */
    public static final class Range {
        public final List<KeyValue> kvs;
        public final boolean more;

        Range(List<KeyValue> kvs, boolean more) {
            this.kvs = kvs;
            this.more = more;
        }
    }

    private final Path socket;
    private final Session session;

    public Kv(Path socket, Leadership leadership, Session.WriteOptions options) {
        this.socket = socket;
        this.session = new Session(socket, leadership, options);
    }

    /** Percent-encodes a key for a path segment ("/" stays as it is). */
    public static String encodeKey(byte[] key) {
        StringBuilder b = new StringBuilder();
        for (byte x : key) {
            int c = x & 0xff;
            if (Character.isLetterOrDigit(c) && c < 128 || "-._~/".indexOf(c) >= 0) b.append((char) c);
            else b.append(String.format("%%%02X", c));
        }
        return b.toString();
    }

    /** The key, or null when it is absent. */
    public KeyValue get(byte[] key, Consistency consistency) throws RegentException {
        Http.Answer a = Http.request(socket, "GET", "/v1/kv/" + encodeKey(key) + "?consistency=" + consistency.wire(),
                new byte[0], session.options.timeoutMs);
        try {
            a.check();
        } catch (RegentException.KeyNotFound e) {
            return null;
        }
        return new KeyValue(key, a.body, header(a, "x-regent-create-revision"), header(a, "x-regent-revision"),
                header(a, "x-regent-version"));
    }

    private static long header(Http.Answer a, String name) {
        try {
            return Long.parseLong(a.headers.getOrDefault(name, "0"));
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    /** The answer: revision, index, term. expectedTerm 0 takes the Leadership's. */
    public Map<String, Object> put(byte[] key, byte[] value, long expectedTerm) throws RegentException {
        return session.write("PUT", "/v1/kv/" + encodeKey(key), value, expectedTerm);
    }

    /** The answer: revision, index, term, deleted. */
    public Map<String, Object> delete(byte[] key, long expectedTerm) throws RegentException {
        return session.write("DELETE", "/v1/kv/" + encodeKey(key), new byte[0], expectedTerm);
    }

    /** The keys under prefix, at most limit. */
    @SuppressWarnings("unchecked")
    public Range range(byte[] prefix, int limit, Consistency consistency) throws RegentException {
        String p = URLEncoder.encode(new String(prefix, StandardCharsets.ISO_8859_1), StandardCharsets.ISO_8859_1);
        Map<String, Object> v = Http.request(socket, "GET", "/v1/kv?prefix=" + p + "&limit=" + limit
                + "&consistency=" + consistency.wire(), new byte[0], session.options.timeoutMs).check().json();
        List<KeyValue> out = new ArrayList<>();
        Object kvs = v.get("kvs");
        if (kvs instanceof List) {
            for (Object o : (List<Object>) kvs) {
                Map<String, Object> kv = (Map<String, Object>) o;
                out.add(new KeyValue(decodeBytes(kv.get("key")), decodeBytes(kv.get("value")),
                        Json.longOf(kv, "create_revision"), Json.longOf(kv, "mod_revision"), Json.longOf(kv, "version")));
            }
        }
        return new Range(out, Boolean.TRUE.equals(v.get("more")));
    }

    /** A transaction as docs/api.md writes it (compare, success, failure as JSON values). */
    public Map<String, Object> txn(Object compare, Object success, Object failure, long expectedTerm)
            throws RegentException {
        String body = Json.write(Map.of("compare", compare == null ? List.of() : compare,
                "success", success == null ? List.of() : success, "failure", failure == null ? List.of() : failure));
        return session.write("POST", "/v1/txn", body.getBytes(StandardCharsets.UTF_8), expectedTerm);
    }

    /** One change seen by {@link #watch}. */
    public static final class Change {
        /** "put" or "delete". */
        public final String type;
        public final byte[] key, value;
        public final long revision;

        Change(String type, byte[] key, byte[] value, long revision) {
            this.type = type;
            this.key = key;
            this.value = value;
            this.revision = revision;
        }
    }

    /** Receives the changes of {@link #watch}; returns false to end it. */
    public interface Watcher {
        boolean onChange(Change change);
    }

    /**
     * Calls {@code watcher} with the changes under {@code prefix} from {@code fromRevision} (0:
     * from now), in order, reconnecting from the next revision, until it returns false; throws
     * {@code Compacted} when the revision is gone.
     */
    public void watch(byte[] prefix, long fromRevision, Watcher watcher) throws RegentException {
        String p = URLEncoder.encode(new String(prefix, StandardCharsets.ISO_8859_1), StandardCharsets.ISO_8859_1);
        long next = fromRevision;
        while (true) {
            String path = "/v1/watch?prefix=" + p + (next > 0 ? "&from_revision=" + next : "");
            Http.Exchange x = null;
            try {
                x = Http.stream(socket, path);
                String line;
                while ((line = Http.readLine(x.body)) != null) {
                    if (line.isBlank()) continue;
                    Map<String, Object> e = Json.object(line);
                    if (e.containsKey("error")) break;
                    long revision = Json.longOf(e, "revision");
                    next = revision + 1;
                    if (!watcher.onChange(new Change((String) e.get("type"), decodeBytes(e.get("key")),
                            decodeBytes(e.get("value")), revision))) {
                        return;
                    }
                }
            } catch (RegentException.Compacted e) {
                throw e;
            } catch (RegentException | java.io.IOException | IllegalArgumentException e) {
                // Reconnect from the next revision below.
            } finally {
                if (x != null) x.close();
            }
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** The API's {"text": ...} / {"base64": ...} (or a plain string) as bytes. */
    @SuppressWarnings("unchecked")
    public static byte[] decodeBytes(Object v) {
        if (v instanceof String) return ((String) v).getBytes(StandardCharsets.UTF_8);
        if (!(v instanceof Map)) return null;
        Map<String, Object> m = (Map<String, Object>) v;
        if (m.get("text") instanceof String) return ((String) m.get("text")).getBytes(StandardCharsets.UTF_8);
        if (m.get("base64") instanceof String) return Base64.getDecoder().decode((String) m.get("base64"));
        return null;
    }
}
