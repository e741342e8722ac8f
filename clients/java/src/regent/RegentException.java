package regent;

import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * What regent answered (the API's error codes, docs/api.md), or what kept a request from an
 * answer. Each code the protocol acts on is a subclass ({@code RegentException.NotLeader},
 * {@code .TermMismatch}, ...); {@link #code()} names the code in every case.
 */
public class RegentException extends Exception {
    private static final long serialVersionUID = 1L;

    private final String code;
    private final int status;
    private final transient Map<String, Object> body;

    public RegentException(String code, int status, String message, Map<String, Object> body) {
        super(code + ": " + message + (status != 0 ? " (HTTP " + status + ")" : ""));
        this.code = code;
        this.status = status;
        this.body = body == null ? Map.of() : body;
    }

    /** The API's error code, or the library's own ({@code not_writable}, {@code unavailable}). */
    public String code() {
        return code;
    }

    /** The HTTP status; 0 for the library's own errors. */
    public int status() {
        return status;
    }

    /** The answer's JSON object. */
    public Map<String, Object> body() {
        return body;
    }

    /** Whether a write that got this is sent again with the same seq. */
    boolean retried() {
        return this instanceof Busy || this instanceof Superseded || this instanceof OutcomeUnknown
                || this instanceof LeaderUnreachable || this instanceof ShuttingDown || this instanceof Unavailable;
    }

    /** 503 not_leader: {@link #leaderId()} when known. */
    public static final class NotLeader extends RegentException {
        private static final long serialVersionUID = 1L;

        NotLeader(int status, String message, Map<String, Object> body) {
            super("not_leader", status, message, body);
        }

        public Long leaderId() {
            return Json.longOf(body(), "leader_id");
        }
    }

    /** 409 term_mismatch: fenced; the host is deposed and must stop writing. */
    public static final class TermMismatch extends RegentException {
        private static final long serialVersionUID = 1L;

        TermMismatch(int status, String message, Map<String, Object> body) {
            super("term_mismatch", status, message, body);
        }
    }

    /** 503 busy: retried inside with the same seq. */
    public static final class Busy extends RegentException {
        private static final long serialVersionUID = 1L;

        Busy(int status, String message, Map<String, Object> body) {
            super("busy", status, message, body);
        }
    }

    /** 503 superseded: retried inside with the same seq. */
    public static final class Superseded extends RegentException {
        private static final long serialVersionUID = 1L;

        Superseded(int status, String message, Map<String, Object> body) {
            super("superseded", status, message, body);
        }
    }

    public static final class CommandRefused extends RegentException {
        private static final long serialVersionUID = 1L;

        CommandRefused(int status, String message, Map<String, Object> body) {
            super("command_refused", status, message, body);
        }
    }

    /** 410 journal_compacted: the journal starts at {@link #firstIndex()} now. */
    public static final class JournalCompacted extends RegentException {
        private static final long serialVersionUID = 1L;

        JournalCompacted(int status, String message, Map<String, Object> body) {
            super("journal_compacted", status, message, body);
        }

        public long firstIndex() {
            Long v = Json.longOf(body(), "first_index");
            return v == null ? 0 : v;
        }
    }

    /** 410 compacted: the KV feed starts at oldest_revision now. */
    public static final class Compacted extends RegentException {
        private static final long serialVersionUID = 1L;

        Compacted(int status, String message, Map<String, Object> body) {
            super("compacted", status, message, body);
        }
    }

    public static final class KeyNotFound extends RegentException {
        private static final long serialVersionUID = 1L;

        KeyNotFound(int status, String message, Map<String, Object> body) {
            super("key_not_found", status, message, body);
        }
    }

    public static final class LeaderUnreachable extends RegentException {
        private static final long serialVersionUID = 1L;

        LeaderUnreachable(int status, String message, Map<String, Object> body) {
            super("leader_unreachable", status, message, body);
        }
    }

    /** The write may or may not have been carried out: read before writing again. */
    public static final class OutcomeUnknown extends RegentException {
        private static final long serialVersionUID = 1L;

        public OutcomeUnknown(int status, String message, Map<String, Object> body) {
            super("outcome_unknown", status, message, body);
        }
    }

    public static final class ShuttingDown extends RegentException {
        private static final long serialVersionUID = 1L;

        ShuttingDown(int status, String message, Map<String, Object> body) {
            super("shutting_down", status, message, body);
        }
    }

    /** The library: this host is not active; nothing was sent. */
    public static final class NotWritable extends RegentException {
        private static final long serialVersionUID = 1L;

        public NotWritable(String message) {
            super("not_writable", 0, message, null);
        }
    }

    /** The library: the socket could not be reached or the exchange broke. */
    public static final class Unavailable extends RegentException {
        private static final long serialVersionUID = 1L;
        /** The request may have reached regent. */
        public final boolean sent;
        /** No answer in time. */
        public final boolean timeout;

        public Unavailable(String message, boolean sent, boolean timeout) {
            super("unavailable", 0, message, null);
            this.sent = sent;
            this.timeout = timeout;
        }
    }

    /** The typed error of a non-2xx answer. */
    static RegentException fromAnswer(int status, byte[] data) {
        Map<String, Object> v;
        try {
            v = Json.object(new String(data, StandardCharsets.UTF_8));
        } catch (IllegalArgumentException e) {
            v = Map.of();
        }
        return fromJson(status, v);
    }

    static RegentException fromJson(int status, Map<String, Object> v) {
        Object c = v.get("error");
        String code = c instanceof String ? (String) c : "http_" + status;
        Object m = v.get("message");
        String message = m instanceof String ? (String) m : "HTTP " + status;
        switch (code) {
            case "not_leader": return new NotLeader(status, message, v);
            case "term_mismatch": return new TermMismatch(status, message, v);
            case "busy": return new Busy(status, message, v);
            case "superseded": return new Superseded(status, message, v);
            case "command_refused": return new CommandRefused(status, message, v);
            case "journal_compacted": return new JournalCompacted(status, message, v);
            case "compacted": return new Compacted(status, message, v);
            case "key_not_found": return new KeyNotFound(status, message, v);
            case "leader_unreachable": return new LeaderUnreachable(status, message, v);
            case "outcome_unknown": return new OutcomeUnknown(status, message, v);
            case "shutting_down": return new ShuttingDown(status, message, v);
            default: return new RegentException(code, status, message, v);
        }
    }
}
