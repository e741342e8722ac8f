//! A streaming answer (the leadership watch, a journal tail, a KV watch) on a connection of
//! its own, read in parts, which another thread can cut (`Cutter`) to end a blocked read.

use crate::http::UnixConn;
use crate::regent_error::RegentError;
use crate::{Answer, Conn};
use std::os::unix::net::UnixStream;
use std::path::Path;

pub(crate) struct Feed {
    conn: UnixConn,
    /// Bytes of the body read and not yet taken.
    pub(crate) pending: Vec<u8>,
}

/// Shuts a feed's socket down from another thread: its blocked read returns.
#[derive(Debug)]
pub(crate) struct Cutter(UnixStream);

impl Cutter {
    pub(crate) fn cut(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

impl Feed {
    /// `GET path`; an answer other than 200 is its error.
    pub(crate) fn open(socket: &Path, path: &str) -> Result<Feed, RegentError> {
        let unavailable = |sent: bool, message: String| RegentError::Unavailable {
            message: format!("GET {path} on {}: {message}", socket.display()),
            sent,
            timeout: false,
        };
        let mut conn = Conn::unix(socket, None).map_err(|e| unavailable(false, e.to_string()))?;
        conn.send("GET", path, b"")
            .map_err(|e| unavailable(true, e.to_string()))?;
        let status = conn
            .read_head()
            .map_err(|e| unavailable(true, e.to_string()))?;
        if status != 200 {
            let answer =
                Answer::read_rest(&mut conn).map_err(|e| unavailable(true, e.to_string()))?;
            return Err(RegentError::from_answer(status, &answer.body));
        }
        Ok(Feed {
            conn,
            pending: Vec::new(),
        })
    }

    pub(crate) fn cutter(&self) -> Option<Cutter> {
        self.conn.get_ref().0.try_clone().ok().map(Cutter)
    }

    /// Reads the next part of the body into `pending`; false once the stream has ended (also
    /// when it broke: a killed daemon, a cut).
    pub(crate) fn fill(&mut self) -> bool {
        match self.conn.read_body_part(&mut self.pending) {
            Ok(0) | Err(_) => false,
            Ok(_) => true,
        }
    }

    /// The next line (without its end), or None once the stream has ended.
    pub(crate) fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.pending[..end]).into_owned();
                self.pending.drain(..=end);
                if line.trim().is_empty() {
                    continue;
                }
                return Some(line);
            }
            if !self.fill() {
                return None;
            }
        }
    }
}
