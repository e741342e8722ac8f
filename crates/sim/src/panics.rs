//! A panic in a seed (a broken assertion in the core, the replica, storage or the simulator)
//! is that seed's violation, not the end of the campaign: it is caught, its message and
//! location kept, and the campaign goes on.
//!
//! Invariant: the default hook stays silent only on a thread that is running a seed under
//! [`catch`]; panics anywhere else (other tests, other threads) print as usual.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// `Some` while this thread runs a seed under [`catch`]: the message of the panic, once
    /// there is one.
    static CAUGHT: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Wraps the panic hook once per process: a thread running a seed records the panic's
/// message and location instead of printing them.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let recorded = CAUGHT.with(|slot| match &mut *slot.borrow_mut() {
                Some(message) => {
                    message.get_or_insert_with(|| info.to_string());
                    true
                }
                None => false,
            });
            if !recorded {
                previous(info);
            }
        }));
    });
}

/// A panic caught by [`catch`]: its message, with its location when the hook recorded it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Panic {
    pub message: String,
}

/// Runs `f`, returning its value or the panic's message (with its location).
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Panic> {
    install_hook();
    CAUGHT.with(|slot| *slot.borrow_mut() = Some(None));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let message = CAUGHT.with(|slot| slot.borrow_mut().take().flatten());
    result.map_err(|payload| {
        let message = message.unwrap_or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-text payload".to_string())
        });
        Panic { message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_location() {
        let caught = catch(|| -> u32 { panic!("the core broke an invariant: {}", 7) });
        let message = caught.expect_err("it panicked").message;
        assert!(
            message.contains("the core broke an invariant: 7"),
            "{message}"
        );
        assert!(message.contains("panics.rs"), "{message}");
        assert_eq!(catch(|| 5), Ok(5));
    }
}
