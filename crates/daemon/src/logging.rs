//! The process's log filter: `log_level` from the configuration, else `REGENT_LOG`, else
//! `warn`; replaced at run time by a reload (SIGHUP) without restarting.
//!
//! Invariant: the filter is installed once per process (`init`); `set_filter` only swaps it,
//! and a directive string that does not parse is refused before anything changes.

use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The filter used when neither the configuration nor `REGENT_LOG` names one.
pub const LOG_FILTER_DEFAULT: &str = "warn";

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber (logs to stderr) with `REGENT_LOG` or the default.
pub fn init() {
    let (layer, handle) = reload::Layer::new(env_filter());
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
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
