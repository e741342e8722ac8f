//! The process's log filter: `log_level` from the configuration, else `REGENT_LOG`, else
//! `warn`; replaced at run time by a reload (SIGHUP) without restarting.
//!
//! Invariant: the filter is installed once per process (`init`); `set_filter` only swaps it,
//! and a directive string that does not parse is refused before anything changes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The filter used when neither the configuration nor `REGENT_LOG` names one.
pub const LOG_FILTER_DEFAULT: &str = "warn";

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Lines as JSON (`log.format: json`) instead of text.
static JSON: AtomicBool = AtomicBool::new(false);
/// This node's id and current term, put on every JSON line (0: not known yet).
static NODE: AtomicU64 = AtomicU64::new(0);
static TERM: AtomicU64 = AtomicU64::new(0);

/// The format of the log lines (`log.format`): text, or one JSON object per line.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// The node id every JSON line carries.
pub fn set_node(id: u64) {
    NODE.store(id, Ordering::Relaxed);
}

/// The term every JSON line carries (the driver updates it as the term moves).
pub fn set_term(term: u64) {
    TERM.store(term, Ordering::Relaxed);
}

/// Text as tracing formats it, or JSON lines as journald and log shippers expect:
/// `{"timestamp", "level", "target", "node_id", "term", "message", ...fields}`.
struct Lines {
    text: format::Format,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if !JSON.load(Ordering::Relaxed) {
            return self.text.format_event(ctx, writer, event);
        }
        writeln!(writer, "{}", json_line(event, std::time::SystemTime::now()))
    }
}

/// One event as a JSON object.
fn json_line(event: &tracing::Event<'_>, at: std::time::SystemTime) -> serde_json::Value {
    let meta = event.metadata();
    let mut line = serde_json::Map::new();
    line.insert("timestamp".into(), rfc3339(at).into());
    line.insert("level".into(), meta.level().as_str().to_lowercase().into());
    line.insert("target".into(), meta.target().into());
    for (key, value) in [("node_id", &NODE), ("term", &TERM)] {
        match value.load(Ordering::Relaxed) {
            0 => {}
            v => {
                line.insert(key.into(), v.into());
            }
        }
    }
    let mut fields = Fields(serde_json::Map::new());
    event.record(&mut fields);
    for (key, value) in fields.0 {
        // An event's own `node` or `term` field says more than the process-wide one.
        line.insert(key, value);
    }
    serde_json::Value::Object(line)
}

struct Fields(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// `2026-12-07T10:40:00.123456Z` (UTC, microseconds).
pub(crate) fn rfc3339(at: std::time::SystemTime) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// Installs the global subscriber (logs to stderr) with `REGENT_LOG` or the default.
pub fn init() {
    let (layer, handle) = reload::Layer::new(env_filter());
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .event_format(Lines {
                    text: format::Format::default(),
                }),
        )
        .try_init();
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_env("REGENT_LOG").unwrap_or_else(|_| EnvFilter::new(LOG_FILTER_DEFAULT))
}

/// Why a log filter was not installed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The directives do not parse; the message holds the parser's error.
    #[error(
        "{directives:?} is not a log filter ({error}); say e.g. info or warn,regent::daemon=debug"
    )]
    Parse {
        directives: String,
        error: tracing_subscriber::filter::ParseError,
    },
    /// The installed subscriber would not take the new filter.
    #[error("replacing the log filter: {error}")]
    Reload { error: reload::Error },
}

/// Checks a `log_level` value: `EnvFilter` directives such as `info` or
/// `warn,regent::daemon=debug`.
pub fn parse(directives: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|error| LoggingError::Parse {
            directives: directives.to_string(),
            error,
        })
}

/// Makes `directives` the filter (`None`: back to `REGENT_LOG` or the default). Returns the
/// filter now in force.
pub fn set_filter(directives: Option<&str>) -> Result<String, LoggingError> {
    let filter = match directives {
        Some(d) => parse(d)?,
        None => env_filter(),
    };
    let text = filter.to_string();
    if let Some(handle) = FILTER.get() {
        handle
            .reload(filter)
            .map_err(|error| LoggingError::Reload { error })?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_796_638_800_123_456);
        assert_eq!(rfc3339(at), "2026-12-07T10:20:00.123456Z");
        assert_eq!(
            rfc3339(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        let leap = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }
}
