package regent;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

/** Unit tests without a framework (the JDK alone): run by build.sh test with -ea. */
public final class Tests {
    private static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) {
        Map<String, Object> v = Json.object("{\"a\": [1, 2.5, \"x\\n\\u0041\", true, null], \"b\": {}}");
        check(((List<?>) v.get("a")).get(0).equals(1L), "integers are longs");
        check(((List<?>) v.get("a")).get(2).equals("x\nA"), "escapes");
        check(Json.write(v).equals("{\"a\":[1,2.5,\"x\\u000aA\",true,null],\"b\":{}}"), Json.write(v));

        RegentException e = RegentException.fromAnswer(503,
                "{\"error\":\"not_leader\",\"message\":\"m\",\"leader_id\":2}".getBytes(StandardCharsets.UTF_8));
        check(e instanceof RegentException.NotLeader, "not_leader is a type");
        check(((RegentException.NotLeader) e).leaderId() == 2L && e.status() == 503, "its fields");
        RegentException gone = RegentException.fromAnswer(410,
                "{\"error\":\"journal_compacted\",\"first_index\":9}".getBytes(StandardCharsets.UTF_8));
        check(((RegentException.JournalCompacted) gone).firstIndex() == 9, "first_index");
        RegentException other = RegentException.fromAnswer(502, "<html>".getBytes(StandardCharsets.UTF_8));
        check(other.code().equals("http_502") && !other.retried(), "unknown answers");
        check(RegentException.fromAnswer(503, "{\"error\":\"busy\"}".getBytes(StandardCharsets.UTF_8)).retried(),
                "busy is retried");
        check(Kv.encodeKey("a/b c".getBytes(StandardCharsets.UTF_8)).equals("a/b%20c"), "keys are encoded");
        long a = Leadership.monotonicNs(), b = Leadership.monotonicNs();
        check(a > 0 && b >= a, "the monotonic clock advances");
        System.out.println("regent Java client: unit tests passed");
    }
}
