//! The client side of the host API: the protocol for masters (`Leadership`, `Journal`, `Kv`,
//! errors as `RegentError`), and under it one HTTP/1.1 request per connection over the daemon's
//! Unix socket, blocking, bounded in time and size (`request`, `stream`, `fetch_status`, used
//! by the command line). The HTTP/1.1 codec (`http`) is the tree's only HTTP client; the health
//! probe and the benchmarks use it too.
//!
//! ```no_run
//! use regent_client::{Journal, Leadership, LeadershipEvent, LeadershipOptions, WriteOptions};
//! let socket = std::path::Path::new("/run/regent/regent.sock");
//! let (lead, events) = Leadership::start(socket, LeadershipOptions::default());
//! let journal = Journal::new(socket, Some(lead.clone()), WriteOptions::default());
//! for event in events {
//!     if let LeadershipEvent::Active { term, .. } = event {
//!         // Fenced with `term`, exactly once; refused as NotWritable once the lease lapses.
//!         let appended = journal.append(&[b"op".as_slice()], None);
//!         println!("term {term}: {appended:?}");
//!     }
//! }
//! ```

#[cfg(feature = "tokio")]
pub mod asynch;
pub mod clock;
mod error;
mod feed;
pub mod http;
pub mod journal;
pub mod kv;
pub mod leadership;
pub mod local;
pub mod regent_error;
pub mod session;

pub use clock::monotonic_ns;
pub use error::ClientError;
pub use http::Conn;
pub use journal::{Appended, Entry, Journal, Tail};
pub use kv::{Change, Consistency, KeyValue, Kv, Watch};
pub use leadership::{Leadership, LeadershipEvent, LeadershipOptions};
pub use regent_error::RegentError;
pub use session::{Session, WriteOptions};

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket when neither `--socket` nor `$REGENT_SOCKET` names one.
pub const DEFAULT_SOCKET: &str = "/run/regent/regent.sock";

/// `--socket`, else `$REGENT_SOCKET`, else the default.
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("REGENT_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// An answer: status code, lower-cased headers, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// Reads the answer to the request just sent on `conn`: its head, then its whole body
    /// (up to the connection's body limit).
    pub fn read<S: Read + Write>(conn: &mut Conn<S>) -> Result<Answer, http::Error> {
        conn.read_head()?;
        Answer::rest(conn)
    }

    /// The answer whose head `conn` just read, with its body read to the end.
    pub(crate) fn read_rest<S: Read + Write>(conn: &mut Conn<S>) -> Result<Answer, http::Error> {
        Answer::rest(conn)
    }

    fn rest<S: Read + Write>(conn: &mut Conn<S>) -> Result<Answer, http::Error> {
        let headers = conn
            .headers()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        conn.read_body()?;
        Ok(Answer {
            status: conn.status(),
            headers,
            body: conn.take_body(),
        })
    }

    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|source| ClientError::NotJson {
            status: self.status,
            body: String::from_utf8_lossy(&self.body).into_owned(),
            source,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON error's message, or the status code.
    pub fn error_text(&self) -> String {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(v) => {
                let mut text = format!(
                    "{} ({})",
                    v["message"].as_str().unwrap_or("error"),
                    v["error"].as_str().unwrap_or("?")
                );
                if let Some(leader) = v["leader_id"].as_u64() {
                    text.push_str(&format!("; the leader is node {leader}"));
                    if let Some(addr) = v["leader_address"].as_str() {
                        text.push_str(&format!(" at {addr}"));
                    }
                }
                text
            }
            Err(_) => format!("HTTP {}", self.status),
        }
    }
}

/// Sends one request and reads the whole answer.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let mut conn = Conn::unix(socket, Some(timeout)).map_err(|source| ClientError::Connect {
        socket: socket.to_path_buf(),
        source,
    })?;
    conn.send_closing(method, path, body)
        .map_err(|source| ClientError::Send {
            socket: socket.to_path_buf(),
            source,
        })?;
    Answer::read(&mut conn).map_err(|source| ClientError::Receive {
        socket: socket.to_path_buf(),
        source,
    })
}

/// Opens a streaming endpoint and calls `on_line` with each line of its (chunked) body until
/// the stream ends or `on_line` returns false.
pub fn stream(
    socket: &Path,
    path: &str,
    mut on_line: impl FnMut(&str) -> bool,
) -> Result<(), ClientError> {
    // No timeout: a stream may stay quiet for as long as nothing happens.
    let mut conn = Conn::unix(socket, None).map_err(|source| ClientError::ConnectStream {
        socket: socket.to_path_buf(),
        source,
    })?;
    conn.send("GET", path, b"")?;
    let status = conn.read_head()?;
    if status != 200 || !conn.is_chunked() {
        let answer = Answer::rest(&mut conn)?;
        if status != 200 {
            return Err(ClientError::StreamRefused {
                path: path.to_string(),
                status,
                message: answer.error_text(),
            });
        }
        for l in String::from_utf8_lossy(&answer.body).lines() {
            if !on_line(l) {
                break;
            }
        }
        return Ok(());
    }
    let mut pending = Vec::new();
    loop {
        match conn.read_body_part(&mut pending) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // A daemon that stops ends its streams by closing the connection between chunks:
            // for the reader that is the stream's end, as a last chunk would be.
            Err(http::Error::Unterminated) => return Ok(()),
            Err(err) => return Err(err.into()),
        }
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(&pending[start..start + end]);
            start += end + 1;
            if !on_line(&text) {
                return Ok(());
            }
        }
        pending.drain(..start);
    }
}

/// Percent-encodes a key for a path segment (unreserved characters and `/` stay as they are).
pub fn encode_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How long `fetch_status` waits for an answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(15);

/// `GET /v1/status` as JSON.
pub fn fetch_status(socket: &Path) -> Result<Value, ClientError> {
    let answer = request(socket, "GET", "/v1/status", b"", STATUS_TIMEOUT)?;
    if answer.status != 200 {
        return Err(ClientError::StatusRefused {
            status: answer.status,
            message: answer.error_text(),
        });
    }
    answer.json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A one-connection server on a socket in `dir`: reads the request's head, checks its
    /// first line, and writes `answer`.
    fn serve_once(dir: &Path, first_line: &'static str, answer: &'static [u8]) -> PathBuf {
        let path = dir.join("regent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8];
            while !request.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                request.push(byte[0]);
            }
            let request = String::from_utf8(request).unwrap();
            assert!(request.starts_with(first_line), "{request}");
            stream.write_all(answer).unwrap();
        });
        path
    }

    #[test]
    fn a_request_gets_its_whole_answer() {
        let dir = tempfile::tempdir().unwrap();
        let socket = serve_once(
            dir.path(),
            "GET /v1/status HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\nX-Regent-Version: 7\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\n{\"a\r\n5\r\n\": 1}\r\n0\r\n\r\n",
        );
        let answer = request(&socket, "GET", "/v1/status", b"", Duration::from_secs(30)).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-regent-version"), Some("7"));
        assert_eq!(answer.json().unwrap()["a"], 1);
    }

    #[test]
    fn a_stream_yields_lines_across_chunks_until_told_to_stop() {
        let dir = tempfile::tempdir().unwrap();
        let socket = serve_once(
            dir.path(),
            "GET /v1/watch HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\none\r\n5\r\n\ntwo\n\r\n6\r\nthree\n\r\n6\r\nfour\n\n\r\n",
        );
        let mut lines = Vec::new();
        stream(&socket, "/v1/watch", |line| {
            lines.push(line.to_string());
            line != "three"
        })
        .unwrap();
        assert_eq!(lines, ["one", "two", "three"]);
    }

    #[test]
    fn a_stream_that_closes_between_chunks_has_ended() {
        let dir = tempfile::tempdir().unwrap();
        let socket = serve_once(
            dir.path(),
            "GET /v1/watch HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\none\n\r\n",
        );
        let mut lines = Vec::new();
        stream(&socket, "/v1/watch", |line| {
            lines.push(line.to_string());
            true
        })
        .unwrap();
        assert_eq!(lines, ["one"]);
    }

    #[test]
    fn a_refused_stream_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let socket = serve_once(
            dir.path(),
            "GET /v1/journal HTTP/1.1\r\n",
            b"HTTP/1.1 410 Gone\r\nContent-Length: 47\r\n\r\n\
              {\"error\":\"journal_compacted\",\"message\":\"gone\"}\n",
        );
        let err = stream(&socket, "/v1/journal", |_| true).unwrap_err();
        assert_eq!(err.to_string(), "/v1/journal: gone (journal_compacted)");
    }

    #[test]
    fn a_missing_daemon_is_named_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("regent.sock");
        let err = request(&socket, "GET", "/v1/status", b"", Duration::from_secs(30)).unwrap_err();
        assert!(matches!(&err, ClientError::Connect { socket: s, .. } if *s == socket));
        assert_eq!(
            err.to_string(),
            format!(
                "connecting to {} (is regent running? --socket or $REGENT_SOCKET name another \
                 socket)",
                socket.display()
            )
        );
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains("No such file"), "{cause}");
    }

    #[test]
    fn a_refused_status_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let socket = serve_once(
            dir.path(),
            "GET /v1/status HTTP/1.1\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 43\r\n\r\n\
              {\"error\":\"not_ready\",\"message\":\"starting\"}\n",
        );
        let err = fetch_status(&socket).unwrap_err();
        assert!(matches!(
            err,
            ClientError::StatusRefused { status: 503, .. }
        ));
        assert_eq!(err.to_string(), "status: starting (not_ready)");
    }

    #[test]
    fn a_body_that_is_not_json_is_shown() {
        let answer = Answer {
            status: 200,
            headers: Vec::new(),
            body: b"<html>".to_vec(),
        };
        let err = answer.json().unwrap_err();
        assert_eq!(
            err.to_string(),
            "the daemon answered 200 with a body that is not JSON: \"<html>\""
        );
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(answer.error_text(), "HTTP 200");
    }

    #[test]
    fn keys_are_encoded_for_paths() {
        assert_eq!(encode_key(b"a/b c"), "a/b%20c");
        assert_eq!(encode_key(&[0, 255]), "%00%FF");
    }
}
