//! The tree's one HTTP/1.1 client codec: requests written, answers parsed (status line,
//! headers, Content-Length, chunked and close-delimited bodies), connections kept alive, over
//! any `Read + Write` stream, with front ends for a Unix socket and a TCP address.
//!
//! A `Conn` is a small state machine: a request is sent, then its answer's head is read, then
//! its body; only then can the next request go out on the same connection (the server keeps
//! it unless it said `Connection: close`, spoke HTTP/1.0 without keep-alive, or delimited the
//! body by closing). Its buffers (the request, the head, the header positions, the body) live
//! as long as the connection, so that a load generator making one request after another on it
//! allocates nothing in the steady state.
//!
//! Invariant: after any error but a read timeout in a body the connection is spent, since the
//! stream may stand in the middle of an answer; a body read that timed out resumes where it
//! stopped, so that a reader of an endless stream can poll a flag between reads.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The longest answer head (status line and headers) read: a server that sends more is not
/// one this client talks to.
pub const HEAD_BYTES_MAX: usize = 64 << 10;
/// The longest chunk-size line (with its extensions) or trailer line read.
const LINE_BYTES_MAX: usize = 4 << 10;
/// The largest body `read_body` gathers unless `set_body_limit` says otherwise.
pub const BODY_BYTES_MAX: u64 = 64 << 20;
/// The read buffer: a whole small answer fits, so that one answer costs one read(2).
const READ_BUFFER_BYTES: usize = 16 << 10;
/// Bodies up to this size go out in the same write as the head: one segment on the wire, so
/// that Nagle's algorithm and delayed ACKs cannot hold the body back on TCP.
const INLINE_BODY_BYTES: usize = 64 << 10;
/// Why a connection is spent after an error.
const BROKEN: &str = "an earlier error left it in the middle of an exchange";
/// Why a connection is spent after an answer its request asked to be the last.
const CLOSE_SENT: &str = "the request asked the server to close the connection";
/// Why a connection is spent after an answer the server said is its last.
const CLOSE_RECEIVED: &str = "the server closes the connection after its answer";

/// What went wrong in an exchange.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the answer has no status line: {0:?}")]
    StatusLine(String),
    #[error("the connection closed before the answer's headers ended")]
    ClosedInHead,
    #[error("the answer's headers exceed {HEAD_BYTES_MAX} bytes")]
    HeadTooLarge,
    #[error("a malformed header line in the answer: {0:?}")]
    HeaderLine(String),
    #[error("a malformed Content-Length in the answer: {0:?}")]
    ContentLength(String),
    #[error("a malformed chunk-size line in the answer: {0:?}")]
    ChunkSize(String),
    #[error("a chunk's data in the answer is not followed by CRLF")]
    ChunkEnd,
    #[error("the connection closed in the middle of an answer's body")]
    ClosedInBody,
    #[error("the connection closed before the last chunk of the answer's body")]
    Unterminated,
    #[error("the answer's body exceeds {0} bytes")]
    BodyTooLarge(u64),
    #[error("the connection is not ready for this: {0}")]
    NotReady(&'static str),
    #[error("a request line with a blank or a control character in it: {0:?}")]
    RequestLine(String),
}

impl Error {
    /// Whether a read timed out (the socket's read timeout): in a body, the read can be tried
    /// again.
    pub fn is_timeout(&self) -> bool {
        let Error::Io(err) = self else {
            return false;
        };
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }
}

/// Where a connection stands between exchanges.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Ready for a request.
    Idle,
    /// A request went out; its answer's head is next. The answer to a HEAD has no body.
    Sent { head_request: bool },
    /// The head was read; the body is next.
    Body(Body),
    /// The answer was read to its end, and no further request can go out, for the reason
    /// given.
    Ended(&'static str),
    /// An error left the stream at an unknown place in an exchange.
    Broken,
}

/// How much of the current answer's body is left, and how it is delimited.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// This many bytes of a Content-Length body.
    Length(u64),
    /// Chunked: a chunk-size line is next.
    ChunkSize,
    /// Chunked: this many bytes of the current chunk's data.
    ChunkData(u64),
    /// Chunked: the CRLF after a chunk's data, of which this many bytes were read.
    ChunkEnd(u8),
    /// Chunked: trailer lines, up to an empty one.
    Trailers,
    /// Everything until the server closes the connection.
    UntilClose,
    /// The body was read to its end.
    Done,
}

/// One HTTP/1.1 connection over `S`.
pub struct Conn<S> {
    io: BufReader<S>,
    /// The `Host` header's value.
    host: String,
    state: State,
    /// Whether this request asked the server to close the connection after its answer.
    close_sent: bool,
    /// Whether the connection can carry another request once this answer is read.
    keep_alive: bool,
    /// The request being written (head and a small body).
    out: Vec<u8>,
    /// The last answer's head, from its status line to the empty line.
    head: String,
    /// The status line's length in `head`, without its line end.
    status_line: usize,
    status: u16,
    /// Whether the last answer's body is chunked.
    chunked: bool,
    /// The headers' names and values, as positions in `head`.
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// A chunk-size or trailer line being read (kept across a read timeout).
    line: Vec<u8>,
    /// The last body `read_body` gathered.
    body: Vec<u8>,
    body_limit: u64,
}

/// A Unix stream socket whose writes never raise SIGPIPE (`send` with `MSG_NOSIGNAL`): the
/// command line restores SIGPIPE's default action so that `regent status | head -1` ends
/// quietly, and a daemon that closes a connection early must still give an error here, not a
/// silent death.
#[derive(Debug)]
pub struct UnixSocket(pub UnixStream);

impl Read for UnixSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for UnixSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: a valid socket fd and a buffer that lives across the call.
            let sent = unsafe {
                libc::send(
                    self.0.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if sent >= 0 {
                return Ok(sent as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection over a Unix socket.
pub type UnixConn = Conn<UnixSocket>;

impl Conn<UnixSocket> {
    /// Connects to the Unix socket at `path`; with `timeout`, each read and write on it is
    /// bounded by that. The `Host` header says `regent`, since a socket path is no host.
    pub fn unix(path: &Path, timeout: Option<Duration>) -> io::Result<Self> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        Ok(Conn::new(UnixSocket(stream), "regent"))
    }
}

impl Conn<TcpStream> {
    /// Connects to `address` (`HOST:PORT`), trying each address it resolves to; with
    /// `timeout`, the connect and each read and write are bounded by that. Nagle's algorithm
    /// is off, since every request is written whole and waits for its answer.
    pub fn tcp(address: &str, timeout: Option<Duration>) -> io::Result<Self> {
        let stream = match timeout {
            None => TcpStream::connect(address)?,
            Some(timeout) => {
                let mut last = None;
                let mut connected = None;
                for addr in address.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(stream) => {
                            connected = Some(stream);
                            break;
                        }
                        Err(err) => last = Some(err),
                    }
                }
                match (connected, last) {
                    (Some(stream), _) => stream,
                    (None, Some(err)) => return Err(err),
                    (None, None) => {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{address} resolves to no address"),
                        ))
                    }
                }
            }
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        Ok(Conn::new(stream, address))
    }
}

impl<S: Read + Write> Conn<S> {
    /// A connection over `stream`, whose requests name `host` in their `Host` header.
    pub fn new(stream: S, host: &str) -> Self {
        Conn {
            io: BufReader::with_capacity(READ_BUFFER_BYTES, stream),
            host: host.to_string(),
            state: State::Idle,
            close_sent: false,
            keep_alive: false,
            out: Vec::new(),
            head: String::new(),
            status_line: 0,
            status: 0,
            chunked: false,
            fields: Vec::new(),
            line: Vec::new(),
            body: Vec::new(),
            body_limit: BODY_BYTES_MAX,
        }
    }

    /// The stream, to set its options.
    pub fn get_ref(&self) -> &S {
        self.io.get_ref()
    }

    /// The largest body `read_body` gathers before it fails with `BodyTooLarge`.
    pub fn set_body_limit(&mut self, bytes: u64) {
        self.body_limit = bytes;
    }

    /// Sends a request and leaves the connection open for the next one.
    pub fn send(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(), Error> {
        self.write_request(method, path, body, false)
    }

    /// Sends a request with `Connection: close`: the server closes after its answer.
    pub fn send_closing(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(), Error> {
        self.write_request(method, path, body, true)
    }

    /// One whole exchange on the kept-alive connection: the request, its answer's head and
    /// body. Returns the status code; the body is in `body()`.
    pub fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Result<u16, Error> {
        self.send(method, path, body)?;
        let status = self.read_head()?;
        self.read_body()?;
        Ok(status)
    }

    fn write_request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        close: bool,
    ) -> Result<(), Error> {
        match self.state {
            State::Idle => {}
            State::Ended(why) => return Err(Error::NotReady(why)),
            State::Broken => return Err(Error::NotReady(BROKEN)),
            State::Sent { .. } | State::Body(_) => {
                return Err(Error::NotReady(
                    "the previous answer was not read to its end",
                ))
            }
        }
        // A blank or a line end in the request line would make the server read another
        // request than the one meant, and the answers that follow would be out of step.
        let unsafe_byte = |b: u8| b <= b' ' || b == 0x7f;
        if method.is_empty() || method.bytes().chain(path.bytes()).any(unsafe_byte) {
            return Err(Error::RequestLine(shorten(&format!("{method} {path}"))));
        }
        let out = &mut self.out;
        out.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        // A GET or HEAD without a body says nothing of one, as browsers do; every other
        // request states its length, since some servers refuse a POST without one.
        let bodiless = body.is_empty()
            && (method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD"));
        if !bodiless {
            let _ = write!(out, "Content-Length: {}\r\n", body.len());
        }
        out.extend_from_slice(b"\r\n");
        let inline = body.len() <= INLINE_BODY_BYTES;
        if inline {
            out.extend_from_slice(body);
        }
        let stream = self.io.get_mut();
        let written = stream.write_all(out).and_then(|()| {
            if inline {
                Ok(())
            } else {
                stream.write_all(body)
            }
        });
        if let Err(err) = written {
            self.state = State::Broken;
            return Err(err.into());
        }
        self.close_sent = close;
        self.state = State::Sent {
            head_request: method.eq_ignore_ascii_case("HEAD"),
        };
        Ok(())
    }

    /// Reads the answer's status line and headers (skipping interim 1xx answers); returns
    /// the status code. The body, if any, is next.
    pub fn read_head(&mut self) -> Result<u16, Error> {
        let head_request = match self.state {
            State::Sent { head_request } => head_request,
            State::Idle | State::Ended(_) => {
                return Err(Error::NotReady("no request awaits its answer"))
            }
            State::Body(_) => return Err(Error::NotReady("the answer's head was read already")),
            State::Broken => return Err(Error::NotReady(BROKEN)),
        };
        match self.parse_head(head_request) {
            Ok(body) => {
                self.state = State::Body(body);
                if matches!(body, Body::Done) {
                    self.finish_body();
                }
                Ok(self.status)
            }
            Err(err) => {
                // The head may be half parsed: none of it is shown as the last answer's.
                self.head.clear();
                self.status_line = 0;
                self.fields.clear();
                self.state = State::Broken;
                Err(err)
            }
        }
    }

    /// Reads one head into `self.head` and its fields, and says how its body is delimited.
    fn parse_head(&mut self, head_request: bool) -> Result<Body, Error> {
        loop {
            let mut raw = std::mem::take(&mut self.head).into_bytes();
            raw.clear();
            read_head_lines(&mut self.io, &mut raw)?;
            let head = String::from_utf8(raw).map_err(|err| {
                let raw = err.into_bytes();
                Error::HeaderLine(shorten(&String::from_utf8_lossy(&raw)))
            })?;
            let body = self.parse_fields(head, head_request)?;
            // Interim answers (100 Continue, 103 Early Hints) precede the real one; 101 is
            // final, since the connection then speaks another protocol.
            if !(100..200).contains(&self.status) || self.status == 101 {
                return Ok(body);
            }
        }
    }

    /// Parses the head read into `head`, keeping it and its field positions.
    fn parse_fields(&mut self, head: String, head_request: bool) -> Result<Body, Error> {
        self.fields.clear();
        let mut lines = head.split_inclusive('\n');
        let first = lines.next().unwrap_or("");
        let status_line = first.trim_end_matches(['\r', '\n']);
        let (minor, status) = parse_status_line(status_line)
            .ok_or_else(|| Error::StatusLine(shorten(status_line)))?;
        let mut at = first.len();
        let mut length: Option<u64> = None;
        let mut chunked: Option<bool> = None;
        let (mut close, mut keep_alive) = (false, false);
        for line in lines {
            let start = at;
            at += line.len();
            let text = line.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                break;
            }
            let Some((name, value)) = text.split_once(':') else {
                return Err(Error::HeaderLine(shorten(text)));
            };
            // A name with blanks (or a folded continuation line) is refused, as RFC 9112
            // asks: it is how a response smuggles a header past one reader and not another.
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(Error::HeaderLine(shorten(text)));
            }
            let value_trimmed = value.trim_matches([' ', '\t']);
            let value_start = start
                + name.len()
                + 1
                + (value.len() - value.trim_start_matches([' ', '\t']).len());
            self.fields.push((
                start..start + name.len(),
                value_start..value_start + value_trimmed.len(),
            ));
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(value_trimmed)
                    .ok_or_else(|| Error::ContentLength(shorten(value_trimmed)))?;
                if length.is_some_and(|m| m != n) {
                    return Err(Error::ContentLength(shorten(value_trimmed)));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // The last coding decides: only a chunked one delimits the body itself.
                let last = value_trimmed.rsplit(',').next().unwrap_or("").trim();
                chunked = Some(last.eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value_trimmed.split(',').map(str::trim) {
                    close |= token.eq_ignore_ascii_case("close");
                    keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
        }
        self.status_line = status_line.len();
        self.head = head;
        self.status = status;
        self.chunked = chunked == Some(true);
        let body = if head_request || status < 200 || status == 204 || status == 304 {
            Body::Done
        } else {
            match (chunked, length) {
                (Some(true), _) => Body::ChunkSize,
                (Some(false), _) | (None, None) => Body::UntilClose,
                (None, Some(n)) => Body::Length(n),
            }
        };
        // HTTP/1.1 keeps a connection unless told otherwise; HTTP/1.0 only when asked to.
        let persistent = if minor == 0 {
            keep_alive && !close
        } else {
            !close
        };
        self.keep_alive =
            persistent && !self.close_sent && status != 101 && !matches!(body, Body::UntilClose);
        Ok(body)
    }

    /// Appends the next part of the answer's body to `out` and returns its length: 0 once the
    /// body has ended (a chunked body's parts are its chunks' data, without the framing). A
    /// read timeout (`Error::is_timeout`) loses nothing: the next call resumes.
    pub fn read_body_part(&mut self, out: &mut Vec<u8>) -> Result<usize, Error> {
        let body = match &mut self.state {
            State::Body(body) => body,
            // The answer was read to its end (or had no body).
            State::Idle | State::Ended(_) => return Ok(0),
            State::Sent { .. } => return Err(Error::NotReady("the answer's head is not read")),
            State::Broken => return Err(Error::NotReady(BROKEN)),
        };
        let result = body_part(&mut self.io, &mut self.line, body, out);
        match &result {
            Ok(0) => self.finish_body(),
            Ok(_) => {}
            Err(err) if err.is_timeout() => {}
            Err(_) => self.state = State::Broken,
        }
        result
    }

    /// Reads the rest of the answer's body into `body()` (up to the body limit).
    pub fn read_body(&mut self) -> Result<&[u8], Error> {
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        if let State::Body(Body::Length(n)) = self.state {
            if n > self.body_limit {
                self.body = body;
                self.state = State::Broken;
                return Err(Error::BodyTooLarge(self.body_limit));
            }
            body.reserve(n as usize);
        }
        let result = loop {
            match self.read_body_part(&mut body) {
                Ok(0) => break Ok(()),
                Ok(_) if body.len() as u64 > self.body_limit => {
                    self.state = State::Broken;
                    break Err(Error::BodyTooLarge(self.body_limit));
                }
                Ok(_) => {}
                Err(err) => break Err(err),
            }
        };
        self.body = body;
        result.map(|()| self.body.as_slice())
    }

    /// The connection after a body read to its end: ready for the next request, or spent.
    fn finish_body(&mut self) {
        self.state = if self.keep_alive {
            State::Idle
        } else if self.close_sent {
            State::Ended(CLOSE_SENT)
        } else {
            State::Ended(CLOSE_RECEIVED)
        };
    }

    /// The last answer's status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The last answer's status line, e.g. `HTTP/1.1 503 Service Unavailable`.
    pub fn status_line(&self) -> &str {
        &self.head[..self.status_line]
    }

    /// The last answer's headers, names as the server wrote them, values without the blanks
    /// around them.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields
            .iter()
            .map(|(name, value)| (&self.head[name.clone()], &self.head[value.clone()]))
    }

    /// The first value of the header `name` (any case) in the last answer.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether the last answer's body is chunked (a stream's answer is).
    pub fn is_chunked(&self) -> bool {
        self.chunked
    }

    /// The body `read_body` (or `call`) read last.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body `read_body` read last, taken out (a one-shot exchange's answer keeps it).
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.body)
    }

    /// Whether another request can go out on this connection now.
    pub fn is_reusable(&self) -> bool {
        matches!(self.state, State::Idle)
    }
}

/// Reads head lines into `raw` up to and including the empty line that ends them.
fn read_head_lines<S: Read>(io: &mut BufReader<S>, raw: &mut Vec<u8>) -> Result<(), Error> {
    loop {
        let start = raw.len();
        let room = (HEAD_BYTES_MAX - start) as u64;
        (&mut *io).take(room).read_until(b'\n', raw)?;
        // Without a line end the stream ended, or the head outgrew its bound.
        if raw[start..].last() != Some(&b'\n') {
            if raw.len() >= HEAD_BYTES_MAX {
                return Err(Error::HeadTooLarge);
            }
            // A stream that ends within what should be a status line is named by what it
            // sent, which says more than "closed" when it is not HTTP at all.
            if start == 0 && !could_be_status_line(raw) {
                return Err(Error::StatusLine(shorten(&String::from_utf8_lossy(raw))));
            }
            return Err(Error::ClosedInHead);
        }
        let line = &raw[start..];
        if start == 0 && !could_be_status_line(line) {
            let text = String::from_utf8_lossy(line);
            return Err(Error::StatusLine(shorten(text.trim_end())));
        }
        if start > 0 && (line == b"\r\n" || line == b"\n") {
            return Ok(());
        }
    }
}

/// Whether `bytes` could begin an HTTP/1.x status line: checked on the first line so that an
/// answer that is not HTTP fails at once rather than after 64 KiB of it.
fn could_be_status_line(bytes: &[u8]) -> bool {
    const PREFIX: &[u8] = b"HTTP/1.";
    if bytes.len() < PREFIX.len() {
        PREFIX.starts_with(bytes)
    } else {
        bytes.starts_with(PREFIX)
    }
}

/// `HTTP/1.x NNN reason` (the reason may be missing): the minor version and the status code.
fn parse_status_line(line: &str) -> Option<(u8, u16)> {
    let rest = line.strip_prefix("HTTP/1.")?;
    let mut bytes = rest.bytes();
    let minor = bytes.next().filter(u8::is_ascii_digit)? - b'0';
    if bytes.next() != Some(b' ') {
        return None;
    }
    let code = rest.get(2..5)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !matches!(rest.as_bytes().get(5), None | Some(b' ')) {
        return None;
    }
    Some((minor, code.parse().ok()?))
}

/// A Content-Length value: digits only (`u64::from_str` would also take a sign).
fn parse_length(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// A chunk-size line's size: hex digits, then optional extensions after `;`.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line)
        .ok()?
        .trim_end_matches(['\r', '\n']);
    let size = text.split(';').next()?.trim_matches([' ', '\t']);
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(size, 16).ok()
}

/// Text from an answer for an error message, cut to a readable length.
fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Reads a chunk-size or trailer line into `line`, keeping what a timed-out read got.
/// Returns false if the stream ended before any byte of the line.
fn read_body_line<S: Read>(io: &mut BufReader<S>, line: &mut Vec<u8>) -> Result<bool, Error> {
    let room = LINE_BYTES_MAX.saturating_sub(line.len()) as u64;
    (&mut *io).take(room).read_until(b'\n', line)?;
    if line.last() == Some(&b'\n') {
        return Ok(true);
    }
    if line.len() >= LINE_BYTES_MAX {
        return Err(Error::ChunkSize(shorten(&String::from_utf8_lossy(line))));
    }
    if line.is_empty() {
        return Ok(false);
    }
    Err(Error::ClosedInBody)
}

/// One step of the body reader: see `Conn::read_body_part`.
fn body_part<S: Read>(
    io: &mut BufReader<S>,
    line: &mut Vec<u8>,
    body: &mut Body,
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    loop {
        match *body {
            Body::Done | Body::Length(0) => {
                *body = Body::Done;
                return Ok(0);
            }
            Body::Length(left) | Body::ChunkData(left) => {
                let buf = match io.fill_buf() {
                    Ok(buf) => buf,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err.into()),
                };
                if buf.is_empty() {
                    return Err(Error::ClosedInBody);
                }
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&buf[..n]);
                io.consume(n);
                let left = left - n as u64;
                *body = match *body {
                    Body::Length(_) => Body::Length(left),
                    _ if left == 0 => Body::ChunkEnd(0),
                    _ => Body::ChunkData(left),
                };
                return Ok(n);
            }
            Body::UntilClose => {
                let buf = match io.fill_buf() {
                    Ok(buf) => buf,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err.into()),
                };
                if buf.is_empty() {
                    *body = Body::Done;
                    return Ok(0);
                }
                let n = buf.len();
                out.extend_from_slice(buf);
                io.consume(n);
                return Ok(n);
            }
            Body::ChunkSize => {
                if !read_body_line(io, line)? {
                    return Err(Error::Unterminated);
                }
                let size = parse_chunk_size(line).ok_or_else(|| {
                    Error::ChunkSize(shorten(String::from_utf8_lossy(line).trim_end()))
                })?;
                line.clear();
                *body = if size == 0 {
                    Body::Trailers
                } else {
                    Body::ChunkData(size)
                };
            }
            Body::ChunkEnd(seen) => {
                let buf = match io.fill_buf() {
                    Ok(buf) => buf,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err.into()),
                };
                let Some(&byte) = buf.first() else {
                    return Err(Error::ClosedInBody);
                };
                if byte != b"\r\n"[usize::from(seen)] {
                    return Err(Error::ChunkEnd);
                }
                io.consume(1);
                *body = if seen == 0 {
                    Body::ChunkEnd(1)
                } else {
                    Body::ChunkSize
                };
            }
            Body::Trailers => {
                if !read_body_line(io, line)? {
                    return Err(Error::ClosedInBody);
                }
                let empty = line.as_slice() == b"\r\n" || line.as_slice() == b"\n";
                line.clear();
                if empty {
                    *body = Body::Done;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    /// An in-memory server: reads come from `input`, at most `step` bytes each, and a read at
    /// an offset listed in `pauses` first fails once as a timed-out read would; writes are kept.
    struct Script {
        input: Vec<u8>,
        at: usize,
        step: usize,
        pauses: Vec<usize>,
        written: Vec<u8>,
    }

    impl Script {
        fn new(input: &[u8], step: usize) -> Script {
            Script {
                input: input.to_vec(),
                at: 0,
                step,
                pauses: Vec::new(),
                written: Vec::new(),
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(i) = self.pauses.iter().position(|&p| p == self.at) {
                self.pauses.swap_remove(i);
                return Err(ErrorKind::WouldBlock.into());
            }
            let mut n = buf.len().min(self.step).min(self.input.len() - self.at);
            // A read stops short of the next pause, so that every pause is met.
            if let Some(&next) = self.pauses.iter().filter(|&&p| p > self.at).min() {
                n = n.min(next - self.at);
            }
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn conn(input: &[u8]) -> Conn<Script> {
        Conn::new(Script::new(input, usize::MAX), "example:80")
    }

    /// The error of one GET exchange with `input` as the answer.
    fn failure(input: &[u8]) -> Error {
        let mut c = conn(input);
        let err = c.call("GET", "/", b"").unwrap_err();
        // Whatever failed, the connection is spent, never reused half-way through, and no
        // half-parsed head is shown as the answer's.
        assert!(matches!(c.send("GET", "/", b""), Err(Error::NotReady(_))));
        if !matches!(
            err,
            Error::ClosedInBody
                | Error::Unterminated
                | Error::ChunkSize(_)
                | Error::ChunkEnd
                | Error::BodyTooLarge(_)
        ) {
            assert_eq!(c.status_line(), "");
            assert_eq!(c.headers().count(), 0);
        }
        err
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n";
    const LENGTH: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn a_content_length_body_and_the_request_as_written() {
        let mut c = conn(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing: \t a b \r\n\r\nhello");
        assert_eq!(c.call("PUT", "/k", b"v").unwrap(), 200);
        assert_eq!(c.body(), b"hello");
        assert_eq!(c.status_line(), "HTTP/1.1 200 OK");
        assert_eq!(c.header("x-thing"), Some("a b"));
        assert_eq!(c.header("CONTENT-LENGTH"), Some("5"));
        assert!(!c.is_chunked());
        assert!(c.is_reusable());
        assert_eq!(
            c.get_ref().written,
            b"PUT /k HTTP/1.1\r\nHost: example:80\r\nContent-Length: 1\r\n\r\nv"
        );
    }

    #[test]
    fn a_chunked_body_with_extensions_and_trailers() {
        let mut c = conn(CHUNKED);
        assert_eq!(c.call("GET", "/", b"").unwrap(), 200);
        assert!(c.is_chunked());
        assert_eq!(c.body(), b"hello world");
        assert!(c.is_reusable());
        // A GET without a body says nothing of its length.
        assert_eq!(
            c.get_ref().written,
            b"GET / HTTP/1.1\r\nHost: example:80\r\n\r\n"
        );
    }

    #[test]
    fn answers_split_over_many_small_reads() {
        // Two answers back to back on one connection, read with every read size from one
        // byte up: no boundary between reads may change what is parsed.
        let both = [CHUNKED, LENGTH].concat();
        for step in 1..=both.len() {
            let mut c = Conn::new(Script::new(&both, step), "x");
            assert_eq!(c.call("GET", "/a", b"").unwrap(), 200, "step {step}");
            assert_eq!(c.body(), b"hello world", "step {step}");
            assert_eq!(c.call("POST", "/b", b"{}").unwrap(), 201, "step {step}");
            assert_eq!(c.body(), b"body", "step {step}");
        }
    }

    #[test]
    fn a_malformed_status_line_is_named() {
        for (input, shown) in [
            (&b"garbage\r\n\r\n"[..], "garbage"),
            (b"SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-OpenSSH_9.2"),
            (b"HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/1.1 2x0 OK"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 2000 OK"),
            (b"HTTP/2 200\r\n\r\n", "HTTP/2 200"),
            (
                b"nonsense without a line end",
                "nonsense without a line end",
            ),
        ] {
            let err = failure(input);
            assert!(matches!(err, Error::StatusLine(_)), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("no status line"), "{text}");
            assert!(text.contains(shown), "{text}");
        }
        // Silence, or a status line cut short by the close, is a close.
        assert!(matches!(failure(b""), Error::ClosedInHead));
        assert!(matches!(failure(b"HTTP/1.1 20"), Error::ClosedInHead));
        assert!(matches!(
            failure(b"HTTP/1.1 200 OK\r\nA: b\r\n"),
            Error::ClosedInHead
        ));
    }

    #[test]
    fn malformed_heads_and_bodies_are_refused() {
        let cases: [(&[u8], &str); 11] = [
            (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "HeaderLine"),
            (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "HeaderLine"),
            (b"HTTP/1.1 200 OK\r\nX: \xff\r\n\r\n", "HeaderLine"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
                "ContentLength",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nhi",
                "ContentLength",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "ClosedInBody",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "ChunkSize",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX",
                "ChunkEnd",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhi",
                "ClosedInBody",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n",
                "Unterminated",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n",
                "ClosedInBody",
            ),
        ];
        for (input, expected) in cases {
            let err = failure(input);
            // The variant's name, from its Debug form.
            let kind = format!("{err:?}");
            let kind = kind.split('(').next().unwrap_or("");
            assert_eq!(
                kind,
                expected,
                "{:?}: {err:?}",
                String::from_utf8_lossy(input)
            );
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        while huge.len() <= HEAD_BYTES_MAX {
            huge.extend_from_slice(b"X-Filler: 0123456789abcdef0123456789abcdef\r\n");
        }
        assert!(matches!(failure(&huge), Error::HeadTooLarge));
        let mut c = conn(LENGTH);
        c.set_body_limit(3);
        assert!(matches!(
            c.call("GET", "/", b""),
            Err(Error::BodyTooLarge(3))
        ));
        let mut c = conn(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n",
        );
        c.set_body_limit(3);
        assert!(matches!(
            c.call("GET", "/", b""),
            Err(Error::BodyTooLarge(3))
        ));
    }

    #[test]
    fn a_request_line_that_would_split_is_refused() {
        for (method, path) in [
            ("GET", "/a b"),
            ("GET", "/a\r\nX-Injected: 1"),
            ("G T", "/"),
            ("", "/"),
        ] {
            let mut c = conn(LENGTH);
            let err = c.send(method, path, b"").unwrap_err();
            assert!(matches!(err, Error::RequestLine(_)), "{err:?}");
            assert!(c.get_ref().written.is_empty());
            // Nothing went out, so the connection is still good.
            assert_eq!(c.call("GET", "/a%20b", b"").unwrap(), 201);
        }
    }

    #[test]
    fn keep_alive_ends_when_either_side_says_close() {
        let mut c = conn(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(c.call("GET", "/", b"").unwrap(), 200);
        assert_eq!(c.body(), b"hi");
        assert!(!c.is_reusable());
        let err = c.send("GET", "/", b"").unwrap_err();
        assert!(err.to_string().contains(CLOSE_RECEIVED), "{err}");
        // HTTP/1.0 keeps a connection only when it says so.
        let mut c = conn(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        c.call("GET", "/", b"").unwrap();
        assert!(!c.is_reusable());
        let mut c = conn(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n");
        c.call("GET", "/", b"").unwrap();
        assert!(c.is_reusable());
        // A body delimited by the close ends the connection with it.
        let mut c = conn(b"HTTP/1.1 200 OK\r\n\r\nuntil the end");
        assert_eq!(c.call("GET", "/", b"").unwrap(), 200);
        assert_eq!(c.body(), b"until the end");
        assert!(!c.is_reusable());
        // So does a request that asks for it.
        let mut c = conn(LENGTH);
        c.send_closing("DELETE", "/k", b"").unwrap();
        assert_eq!(c.read_head().unwrap(), 201);
        assert_eq!(c.read_body().unwrap(), b"body");
        assert!(!c.is_reusable());
        assert_eq!(
            c.get_ref().written,
            b"DELETE /k HTTP/1.1\r\nHost: example:80\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        // A request cannot overtake the answer before it.
        let mut c = conn(LENGTH);
        c.send("GET", "/", b"").unwrap();
        assert!(matches!(c.send("GET", "/", b""), Err(Error::NotReady(_))));
    }

    #[test]
    fn answers_without_a_body_leave_the_next_answer_intact() {
        let input = [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..],
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            LENGTH,
        ]
        .concat();
        let mut c = conn(&input);
        assert_eq!(c.call("HEAD", "/", b"").unwrap(), 200);
        assert_eq!(c.body(), b"");
        assert_eq!(c.call("GET", "/", b"").unwrap(), 204);
        assert_eq!(c.call("GET", "/", b"").unwrap(), 304);
        assert_eq!(c.call("GET", "/", b"").unwrap(), 201);
        assert_eq!(c.body(), b"body");
    }

    #[test]
    fn a_timed_out_read_in_a_body_resumes_where_it_stopped() {
        // One byte a read, and a timed-out read before every byte of the body: each step of
        // the chunked decoder is interrupted once, and none may lose or repeat a byte.
        let body_start = CHUNKED.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut script = Script::new(CHUNKED, 1);
        script.pauses = (body_start..=CHUNKED.len()).collect();
        let mut c = Conn::new(script, "x");
        c.send("GET", "/", b"").unwrap();
        assert_eq!(c.read_head().unwrap(), 200);
        let (mut body, mut timeouts) = (Vec::new(), 0);
        loop {
            match c.read_body_part(&mut body) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) => {
                    assert!(err.is_timeout(), "{err:?}");
                    timeouts += 1;
                }
            }
        }
        assert_eq!(body, b"hello world");
        assert_eq!(timeouts, CHUNKED.len() - body_start);
        assert!(c.is_reusable());
    }

    #[test]
    fn keep_alive_reuses_one_socket_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        const ROUNDS: usize = 3;
        // The server accepts one connection only: were the client to open another, its
        // request would go unanswered and the client's read would fail.
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            for round in 1..=ROUNDS {
                let expected = format!("GET /{round} HTTP/1.1\r\nHost: regent\r\n\r\n");
                let mut request = vec![0; expected.len()];
                stream.read_exact(&mut request).unwrap();
                assert_eq!(request, expected.as_bytes());
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{round}");
                stream.write_all(answer.as_bytes()).unwrap();
            }
            ROUNDS
        });
        // A generous bound, so that a failure shows as an error rather than a hang.
        let mut c = Conn::unix(&path, Some(Duration::from_secs(30))).unwrap();
        for round in 1..=ROUNDS {
            assert_eq!(c.call("GET", &format!("/{round}"), b"").unwrap(), 200);
            assert_eq!(c.body(), round.to_string().as_bytes());
            assert!(c.is_reusable());
        }
        assert_eq!(server.join().unwrap(), ROUNDS);
    }

    #[test]
    fn a_tcp_connection_names_its_host() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let expected =
            format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = vec![0; expected.len()];
            stream.read_exact(&mut request).unwrap();
            assert_eq!(request, expected.as_bytes());
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        let mut c = Conn::tcp(&address, Some(Duration::from_secs(30))).unwrap();
        c.send_closing("GET", "/health", b"").unwrap();
        assert_eq!(c.read_head().unwrap(), 503);
        assert_eq!(c.status_line(), "HTTP/1.1 503 Service Unavailable");
        server.join().unwrap();
    }
}
