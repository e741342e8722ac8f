package regent;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A small HTTP/1.1 client over regent's Unix socket ({@link UnixDomainSocketAddress}, JDK 16+):
 * one connection per request ({@code Connection: close}); bodies by Content-Length, chunked, or
 * until close. A request's timeout closes its channel from a timer thread.
 */
final class Http {
    /** The longest answer head read. */
    static final int HEAD_BYTES_MAX = 64 << 10;
    /** The largest answer body read whole. */
    static final int BODY_BYTES_MAX = 64 << 20;

    private static final ScheduledExecutorService TIMER = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "regent-http-timer");
        t.setDaemon(true);
        return t;
    });

    private Http() {}

    static final class Answer {
        final int status;
        final Map<String, String> headers;
        final byte[] body;

        Answer(int status, Map<String, String> headers, byte[] body) {
            this.status = status;
            this.headers = headers;
            this.body = body;
        }

        /** This answer, or its typed error when it is not 2xx. */
        Answer check() throws RegentException {
            if (status >= 200 && status < 300) return this;
            throw RegentException.fromAnswer(status, body);
        }

        Map<String, Object> json() throws RegentException {
            try {
                return Json.object(new String(body, StandardCharsets.UTF_8));
            } catch (IllegalArgumentException e) {
                throw new RegentException("bad_answer", status, e.getMessage(), null);
            }
        }
    }

    /** A connection with its answer's head read; the body is {@code body}. */
    static final class Exchange implements Closeable {
        final SocketChannel channel;
        final InputStream in;
        int status;
        final Map<String, String> headers = new LinkedHashMap<>();
        InputStream body;

        Exchange(SocketChannel channel) {
            this.channel = channel;
            this.in = new BufferedInputStream(Channels.newInputStream(channel), 16 << 10);
        }

        @Override
        public void close() {
            try {
                channel.close();
            } catch (IOException e) {
                // Closing is all that was asked.
            }
        }
    }

    private static Exchange open(Path socket, String method, String path, byte[] body, AtomicBoolean sent)
            throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ch.connect(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            ch.close();
            throw e;
        }
        Exchange x = new Exchange(ch);
        String head = method + " " + path + " HTTP/1.1\r\nHost: regent\r\nConnection: close\r\n"
                + "Content-Length: " + body.length + "\r\n\r\n";
        ByteBuffer out = ByteBuffer.allocate(head.length() + body.length);
        out.put(head.getBytes(StandardCharsets.ISO_8859_1)).put(body).flip();
        sent.set(true);
        while (out.hasRemaining()) ch.write(out);
        readHead(x);
        return x;
    }

    private static String line(InputStream in, int max) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        while (true) {
            int c = in.read();
            if (c < 0) throw new EOFException("the connection closed in the answer's head");
            if (c == '\n') break;
            if (b.size() >= max) throw new IOException("an answer line longer than " + max + " bytes");
            b.write(c);
        }
        String s = b.toString(StandardCharsets.ISO_8859_1);
        return s.endsWith("\r") ? s.substring(0, s.length() - 1) : s;
    }

    private static void readHead(Exchange x) throws IOException {
        String status = line(x.in, HEAD_BYTES_MAX);
        String[] parts = status.split(" ", 3);
        if (parts.length < 2 || !parts[0].startsWith("HTTP/1.")) throw new IOException("no status line: " + status);
        x.status = Integer.parseInt(parts[1]);
        int total = status.length();
        while (true) {
            String h = line(x.in, HEAD_BYTES_MAX);
            total += h.length();
            if (total > HEAD_BYTES_MAX) throw new IOException("the answer's head is too large");
            if (h.isEmpty()) break;
            int colon = h.indexOf(':');
            if (colon <= 0) throw new IOException("a malformed header line: " + h);
            x.headers.put(h.substring(0, colon).trim().toLowerCase(), h.substring(colon + 1).trim());
        }
        String te = x.headers.getOrDefault("transfer-encoding", "");
        String cl = x.headers.get("content-length");
        if (te.toLowerCase().contains("chunked")) x.body = new Chunked(x.in);
        else if (cl != null) x.body = new Limited(x.in, Long.parseLong(cl));
        else x.body = x.in;
    }

    /** One request and its whole answer. */
    static Answer request(Path socket, String method, String path, byte[] body, long timeoutMs)
            throws RegentException {
        AtomicBoolean sent = new AtomicBoolean(false);
        AtomicBoolean timedOut = new AtomicBoolean(false);
        Exchange[] holder = new Exchange[1];
        SocketChannel[] channel = new SocketChannel[1];
        ScheduledFuture<?> timer = null;
        try {
            SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
            channel[0] = ch;
            timer = TIMER.schedule(() -> {
                timedOut.set(true);
                try {
                    ch.close();
                } catch (IOException e) {
                    // Closed either way.
                }
            }, timeoutMs, TimeUnit.MILLISECONDS);
            try {
                ch.connect(UnixDomainSocketAddress.of(socket));
            } catch (IOException e) {
                throw new RegentException.Unavailable(method + " " + path + " on " + socket + ": " + e, false,
                        timedOut.get());
            }
            Exchange x = new Exchange(ch);
            holder[0] = x;
            String head = method + " " + path + " HTTP/1.1\r\nHost: regent\r\nConnection: close\r\n"
                    + "Content-Length: " + body.length + "\r\n\r\n";
            ByteBuffer out = ByteBuffer.allocate(head.length() + body.length);
            out.put(head.getBytes(StandardCharsets.ISO_8859_1)).put(body).flip();
            sent.set(true);
            while (out.hasRemaining()) ch.write(out);
            readHead(x);
            byte[] data = readAll(x.body);
            return new Answer(x.status, x.headers, data);
        } catch (IOException e) {
            throw new RegentException.Unavailable(method + " " + path + " on " + socket + ": " + e, sent.get(),
                    timedOut.get());
        } finally {
            if (timer != null) timer.cancel(false);
            if (channel[0] != null) {
                try {
                    channel[0].close();
                } catch (IOException e) {
                    // Closed either way.
                }
            }
        }
    }

    static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        byte[] buf = new byte[16 << 10];
        int n;
        while ((n = in.read(buf)) > 0) {
            b.write(buf, 0, n);
            if (b.size() > BODY_BYTES_MAX) throw new IOException("an answer body over " + BODY_BYTES_MAX + " bytes");
        }
        return b.toByteArray();
    }

    /** A streaming GET: its body (de-chunked) to read until it ends; close() cuts a blocked read. */
    static Exchange stream(Path socket, String path) throws RegentException {
        AtomicBoolean sent = new AtomicBoolean(false);
        Exchange x;
        try {
            x = open(socket, "GET", path, new byte[0], sent);
        } catch (IOException e) {
            throw new RegentException.Unavailable("GET " + path + " on " + socket + ": " + e, sent.get(), false);
        }
        if (x.status != 200) {
            try {
                byte[] data = readAll(x.body);
                throw RegentException.fromAnswer(x.status, data);
            } catch (IOException e) {
                throw new RegentException.Unavailable("GET " + path + ": " + e, true, false);
            } finally {
                x.close();
            }
        }
        return x;
    }

    /** Reads one line (without its end) from a stream's body; null at its end. */
    static String readLine(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        while (true) {
            int c = in.read();
            if (c < 0) return b.size() == 0 ? null : b.toString(StandardCharsets.UTF_8);
            if (c == '\n') return b.toString(StandardCharsets.UTF_8);
            b.write(c);
        }
    }

    /** Content-Length bytes of the stream under it. */
    private static final class Limited extends InputStream {
        private final InputStream in;
        private long left;

        Limited(InputStream in, long length) {
            this.in = in;
            this.left = length;
        }

        @Override
        public int read() throws IOException {
            byte[] one = new byte[1];
            return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (left == 0) return -1;
            int n = in.read(b, off, (int) Math.min(len, left));
            if (n < 0) throw new EOFException("the connection closed in the answer's body");
            left -= n;
            return n;
        }
    }

    /** A chunked body's data, without the framing. */
    private static final class Chunked extends InputStream {
        private final InputStream in;
        private long left;
        private boolean done;

        Chunked(InputStream in) {
            this.in = in;
        }

        @Override
        public int read() throws IOException {
            byte[] one = new byte[1];
            return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (done) return -1;
            if (left == 0) {
                String size = line(in, 4096);
                if (size.isEmpty()) size = line(in, 4096); // the CRLF after the last chunk's data
                int semi = size.indexOf(';');
                left = Long.parseLong((semi >= 0 ? size.substring(0, semi) : size).trim(), 16);
                if (left == 0) {
                    done = true;
                    return -1;
                }
            }
            int n = in.read(b, off, (int) Math.min(len, left));
            if (n < 0) throw new EOFException("the connection closed in a chunk");
            left -= n;
            return n;
        }
    }
}
