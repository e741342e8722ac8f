import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import regent.Kv;
import regent.Leadership;
import regent.RegentException;
import regent.Session;

/**
 * A toy master beside regent on the Java library: it writes a counter only while its Leadership
 * says it may, every write fenced with the term and sent exactly once.
 *
 * <pre>
 * clients/java/build.sh
 * java -cp clients/java/build/regent-client.jar clients/java/examples/Host.java demo/node1/regent.sock 10
 * </pre>
 */
public final class Host {
    public static void main(String[] args) throws InterruptedException {
        Path socket = Path.of(args.length > 0 ? args[0] : "/run/regent/regent.sock");
        long seconds = args.length > 1 ? Long.parseLong(args[1]) : 30;
        Leadership lead = Leadership.start(socket, new Leadership.Options(), new Leadership.Listener() {
            public void onActive(long term, Long catchUpIndex) {
                System.out.println("[watch] active in term " + term);
            }

            public void onInactive(String reason) {
                System.out.println("[watch] inactive: " + reason);
            }
        });
        Kv kv = new Kv(socket, lead, new Session.WriteOptions());
        long written = 0, refused = 0, counter = 0;
        long end = System.nanoTime() + seconds * 1_000_000_000L;
        while (System.nanoTime() < end) {
            if (!lead.isWritable()) {
                Thread.sleep(10);
                continue;
            }
            counter++;
            try {
                kv.put("toy-master/counter".getBytes(StandardCharsets.UTF_8),
                        Long.toString(counter).getBytes(StandardCharsets.UTF_8), 0);
                written++;
            } catch (RegentException.NotWritable e) {
                // The lease lapsed between the check and the write: nothing was sent.
            } catch (RegentException e) {
                refused++;
                System.out.println("[write] " + e.getMessage());
            }
            Thread.sleep(5);
        }
        lead.close();
        System.out.println("host: written=" + written + " refused=" + refused);
    }
}
