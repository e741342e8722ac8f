//! `regent journal append|tail|state`: the host's operation journal from the command line, one
//! subcommand per endpoint (`POST /v1/journal`, `GET /v1/journal`, `GET /v1/journal/state`).

use super::host::SocketArg;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use regent_client as client;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Args, Debug)]
pub struct JournalArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub forward: super::host::ForwardArg,
    #[command(subcommand)]
    pub command: JournalCommand,
}

#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// Append operations (on a follower, relayed to the leader unless --no-forward; a host
    /// appends only through its own writable node): one argument is one operation, several
    /// are one atomic batch; "-" (or no argument) reads one operation from stdin. Prints the
    /// indexes taken.
    Append {
        ops: Vec<String>,
        /// Fencing: refused unless this node leads this term when the entry lands.
        #[arg(long)]
        expected_term: Option<u64>,
        /// Exactly-once: the session (`POST /v1/session`) and this append's sequence number.
        #[arg(long, requires = "seq")]
        client_id: Option<u64>,
        #[arg(long, requires = "client_id")]
        seq: Option<u64>,
    },
    /// Print committed operations from an index on, in order, then live (NDJSON lines with
    /// index, term and the operation in base64; --text prints "INDEX TERM OPERATION").
    Tail {
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Stop after the backlog instead of waiting for new operations.
        #[arg(long)]
        no_follow: bool,
        /// Print each operation as text (lossy UTF-8) instead of NDJSON.
        #[arg(long)]
        text: bool,
    },
    /// The journal as this node sees it: retained range, catch-up index, members' reports.
    State,
}

pub fn run(args: JournalArgs) -> anyhow::Result<ExitCode> {
    let socket = client::socket_path(args.socket.socket);
    match args.command {
        JournalCommand::Append {
            ops,
            expected_term,
            client_id,
            seq,
        } => {
            let ops = if ops.is_empty() {
                vec!["-".to_string()]
            } else {
                ops
            };
            let mut bodies = Vec::with_capacity(ops.len());
            for op in ops {
                if op == "-" {
                    let mut body = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut body)
                        .context("reading the operation from stdin")?;
                    bodies.push(body);
                } else {
                    bodies.push(op.into_bytes());
                }
            }
            let mut params = Vec::new();
            let body = if bodies.len() == 1 {
                bodies.pop().expect("one operation")
            } else {
                params.push("batch=true".to_string());
                regent_daemon::api::journal::encode_batch(&bodies)
            };
            if let Some(term) = expected_term {
                params.push(format!("expected_term={term}"));
            }
            if let (Some(c), Some(s)) = (client_id, seq) {
                params.push(format!("client_id={c}&seq={s}"));
            }
            let path = if params.is_empty() {
                "/v1/journal".to_string()
            } else {
                format!("/v1/journal?{}", params.join("&"))
            };
            let answer = super::host::send_write(&socket, "POST", &path, &body, args.forward)?;
            if answer.status != 200 {
                bail!("append refused: {}", answer.error_text());
            }
            println!("{}", answer.json()?);
            eprintln!("answered by {}", super::host::answered_by(&answer));
            Ok(ExitCode::SUCCESS)
        }
        JournalCommand::Tail {
            from,
            no_follow,
            text,
        } => {
            let follow = if no_follow { "&follow=false" } else { "" };
            let path = format!("/v1/journal?from={from}&format=ndjson{follow}");
            let mut out = std::io::stdout().lock();
            let mut failed = None;
            client::stream(&socket, &path, |line| {
                let value: serde_json::Value = match serde_json::from_str(line) {
                    Ok(v) => v,
                    Err(_) => return true,
                };
                if value.get("error").is_some() {
                    failed = Some(value["message"].as_str().unwrap_or("error").to_string());
                    return false;
                }
                let printed = if text {
                    let op = value["op"].as_str().and_then(decode_op).unwrap_or_default();
                    writeln!(
                        out,
                        "{} {} {}",
                        value["index"],
                        value["term"],
                        String::from_utf8_lossy(&op)
                    )
                } else {
                    writeln!(out, "{line}")
                };
                printed.and_then(|()| out.flush()).is_ok()
            })?;
            if let Some(message) = failed {
                bail!("the tail ended: {message}");
            }
            Ok(ExitCode::SUCCESS)
        }
        JournalCommand::State => {
            let answer = client::request(&socket, "GET", "/v1/journal/state", b"", TIMEOUT)?;
            if answer.status != 200 {
                bail!("{}", answer.error_text());
            }
            println!("{}", serde_json::to_string_pretty(&answer.json()?)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Standard base64 with padding (RFC 4648), as the tail sends each operation; `None` on
/// anything else.
pub fn decode_op(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_decode_as_the_api_encodes() {
        for sample in [&b""[..], b"f", b"fo", b"foo", b"foob", &[0xff, 0xfe, 0x00]] {
            let encoded = regent_daemon::api::journal::op_base64(sample);
            assert_eq!(decode_op(&encoded).as_deref(), Some(sample));
        }
        assert_eq!(decode_op("abc"), None);
        assert_eq!(decode_op("a!=="), None);
    }
}
