//! The client side of the host API for the command line: one HTTP/1.1 request per connection
//! over the daemon's Unix socket, blocking, bounded in time and size.

pub mod local;

use anyhow::{bail, Context};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket when neither `--socket` nor `$REGENT_SOCKET` names one.
pub const DEFAULT_SOCKET: &str = "/run/regent/regent.sock";
/// The largest answer read.
const ANSWER_BYTES_MAX: u64 = 64 << 20;

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
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the daemon answered {} with a body that is not JSON: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
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
        match self.json() {
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
) -> anyhow::Result<Answer> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to {} (is regent running? --socket or $REGENT_SOCKET name another socket)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: regent\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream
        .take(ANSWER_BYTES_MAX)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer from {}", socket.display()))?;
    parse(&raw)
}

/// Opens a streaming endpoint and calls `on_line` with each line of its (chunked) body until
/// the stream ends or `on_line` returns false.
pub fn stream(
    socket: &Path,
    path: &str,
    mut on_line: impl FnMut(&str) -> bool,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: regent\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the answer has no status line")?;
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        chunked |= lower.starts_with("transfer-encoding") && lower.contains("chunked");
    }
    if status != 200 || !chunked {
        let mut rest = Vec::new();
        reader.take(ANSWER_BYTES_MAX).read_to_end(&mut rest)?;
        let body = if chunked {
            dechunk(&rest).unwrap_or(rest)
        } else {
            rest
        };
        let answer = Answer {
            status,
            headers: Vec::new(),
            body,
        };
        if status != 200 {
            bail!("{path}: {}", answer.error_text());
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
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let size = usize::from_str_radix(line.trim(), 16).context("bad chunk size")?;
        if size == 0 {
            return Ok(());
        }
        let mut data = vec![0; size + 2];
        reader.read_exact(&mut data)?;
        pending.extend_from_slice(&data[..size]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..=end);
            if !on_line(&text) {
                return Ok(());
            }
        }
    }
}

fn parse(raw: &[u8]) -> anyhow::Result<Answer> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("the daemon's answer has no end of headers");
    };
    let head = std::str::from_utf8(&raw[..split]).context("answer headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("the answer has no status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end])?.trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).context("short chunk")?);
        data = data.get(size + 2..).context("short chunk")?;
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
pub fn fetch_status(socket: &Path) -> anyhow::Result<Value> {
    let answer = request(socket, "GET", "/v1/status", b"", STATUS_TIMEOUT)?;
    if answer.status != 200 {
        bail!("status: {}", answer.error_text());
    }
    answer.json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let a = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"hi"[..]));
        let a = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1\r\n!\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(a.body, b"hi!");
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn keys_are_encoded_for_paths() {
        assert_eq!(encode_key(b"a/b c"), "a/b%20c");
        assert_eq!(encode_key(&[0, 255]), "%00%FF");
    }
}
