//! The `hooks` and `fencing` sections: commands regent runs when this node's leadership
//! changes, so that a master that knows nothing of regent can be started, stopped and fenced
//! (ZKFC's and Patroni's job). They run in `daemon::hooks`.

use serde::{Deserialize, Serialize};

/// One command: an argv list run without a shell (write `["sh", "-c", "..."]` for one).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HookCommand {
    pub exec: Vec<String>,
    /// Killed (its process group) after this long; None: the lease's length.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl HookCommand {
    /// The timeout in force, given the lease's length.
    pub fn timeout_ms(&self, lease_ms: u64) -> u64 {
        self.timeout_ms.unwrap_or(lease_ms).max(1)
    }
}

/// The `hooks:` section. Every hook is optional.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Runs before this node reports `writable: true`; exit 0 within its timeout makes it
    /// writable, anything else hands leadership away and holds campaigns for
    /// `promote_failure_backoff_ms`.
    #[serde(default)]
    pub pre_promote: Option<HookCommand>,
    /// Runs once the node is writable.
    #[serde(default)]
    pub on_promote: Option<HookCommand>,
    /// Runs as soon as the node stops being writable (lease lost, stepped down, hand-over,
    /// SIGTERM).
    #[serde(default)]
    pub on_demote: Option<HookCommand>,
    /// Runs when the lease has not been renewed `timing.lease_warning_ms` before it lapses.
    #[serde(default)]
    pub on_lease_warning: Option<HookCommand>,
    /// Runs when this node learns of a new leader (itself included).
    #[serde(default)]
    pub on_leader_change: Option<HookCommand>,
    /// How long a node whose promotion failed does not campaign.
    #[serde(default = "defaults::promote_failure_backoff_ms")]
    pub promote_failure_backoff_ms: u64,
}

impl HooksConfig {
    /// Whether any hook is configured.
    pub fn any(&self) -> bool {
        self.pre_promote.is_some()
            || self.on_promote.is_some()
            || self.on_demote.is_some()
            || self.on_lease_warning.is_some()
            || self.on_leader_change.is_some()
    }
}

impl Default for HooksConfig {
    fn default() -> HooksConfig {
        HooksConfig {
            pre_promote: None,
            on_promote: None,
            on_demote: None,
            on_lease_warning: None,
            on_leader_change: None,
            promote_failure_backoff_ms: defaults::promote_failure_backoff_ms(),
        }
    }
}

/// The `fencing:` section: ZKFC's fence methods, run against the previous leader before a new
/// leader becomes writable after a failover (not after an acknowledged hand-over).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FencingConfig {
    /// Tried in order until one exits 0.
    #[serde(default)]
    pub methods: Vec<FenceMethod>,
    /// Writable waits until a method succeeds (status `fence_pending: true`), retrying every
    /// `retry_interval_ms`; false: a failure is logged and the node goes on.
    #[serde(default)]
    pub required: bool,
    #[serde(default = "defaults::fence_retry_interval_ms")]
    pub retry_interval_ms: u64,
}

impl Default for FencingConfig {
    fn default() -> FencingConfig {
        FencingConfig {
            methods: Vec::new(),
            required: false,
            retry_interval_ms: defaults::fence_retry_interval_ms(),
        }
    }
}

/// One fence method.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FenceMethod {
    pub exec: Vec<String>,
    #[serde(default = "defaults::fence_timeout_ms")]
    pub timeout_ms: u64,
}

mod defaults {
    pub fn promote_failure_backoff_ms() -> u64 {
        30_000
    }
    pub fn fence_retry_interval_ms() -> u64 {
        2_000
    }
    pub fn fence_timeout_ms() -> u64 {
        10_000
    }
}

/// The hooks by name, in a fixed order (status, metrics, logs).
pub const HOOK_NAMES: [&str; 5] = [
    "pre_promote",
    "on_promote",
    "on_demote",
    "on_lease_warning",
    "on_leader_change",
];

impl HooksConfig {
    /// The hook called `name` (one of `HOOK_NAMES`), if configured.
    pub fn get(&self, name: &str) -> Option<&HookCommand> {
        match name {
            "pre_promote" => self.pre_promote.as_ref(),
            "on_promote" => self.on_promote.as_ref(),
            "on_demote" => self.on_demote.as_ref(),
            "on_lease_warning" => self.on_lease_warning.as_ref(),
            "on_leader_change" => self.on_leader_change.as_ref(),
            _ => None,
        }
    }

    /// Each hook names a program, and none may run longer than the lease: a hook that outlives
    /// it acts on a leadership that may already have moved. Returns the field and the rule.
    pub fn check(&self, lease_ms: u64) -> Result<(), (String, String)> {
        for name in HOOK_NAMES {
            let Some(hook) = self.get(name) else { continue };
            if hook.exec.first().is_none_or(|p| p.is_empty()) {
                return Err((
                    format!("hooks.{name}.exec"),
                    "must name a program (an argv list; no shell unless you write one)".into(),
                ));
            }
            if let Some(timeout) = hook.timeout_ms {
                if timeout == 0 || timeout > lease_ms {
                    return Err((
                        format!("hooks.{name}.timeout_ms"),
                        format!(
                            "{timeout} ms is longer than the lease ({lease_ms} ms = \
                             timing.election_timeout_min_ms × (1 − timing.clock_drift_max)) or \
                             0: a hook must end while the leadership it acts on still holds; \
                             shorten the hook or lengthen timing.election_timeout_min_ms"
                        ),
                    ));
                }
            }
        }
        if self.promote_failure_backoff_ms == 0 {
            return Err((
                "hooks.promote_failure_backoff_ms".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl FencingConfig {
    pub fn check(&self) -> Result<(), (String, String)> {
        for (i, method) in self.methods.iter().enumerate() {
            if method.exec.first().is_none_or(|p| p.is_empty()) {
                return Err((
                    format!("fencing.methods[{i}].exec"),
                    "must name a program".into(),
                ));
            }
            if method.timeout_ms == 0 {
                return Err((
                    format!("fencing.methods[{i}].timeout_ms"),
                    "must be at least 1".into(),
                ));
            }
        }
        if self.required && self.methods.is_empty() {
            return Err((
                "fencing.required".into(),
                "needs at least one method in fencing.methods".into(),
            ));
        }
        if self.retry_interval_ms == 0 {
            return Err((
                "fencing.retry_interval_ms".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(timeout_ms: Option<u64>) -> HookCommand {
        HookCommand {
            exec: vec!["/bin/true".into()],
            timeout_ms,
        }
    }

    #[test]
    fn a_hook_longer_than_the_lease_is_refused_naming_both() {
        let hooks = HooksConfig {
            on_demote: Some(hook(Some(900))),
            promote_failure_backoff_ms: 1000,
            ..Default::default()
        };
        let (field, reason) = hooks.check(475).unwrap_err();
        assert_eq!(field, "hooks.on_demote.timeout_ms");
        assert!(
            reason.contains("900 ms") && reason.contains("lease (475 ms"),
            "{reason}"
        );
        assert!(hooks.check(900).is_ok());
        let empty = HooksConfig {
            pre_promote: Some(HookCommand {
                exec: vec![],
                timeout_ms: None,
            }),
            promote_failure_backoff_ms: 1000,
            ..Default::default()
        };
        assert_eq!(empty.check(475).unwrap_err().0, "hooks.pre_promote.exec");
        assert_eq!(hook(None).timeout_ms(475), 475);
    }

    #[test]
    fn required_fencing_needs_a_method() {
        let fencing = FencingConfig {
            required: true,
            ..Default::default()
        };
        assert_eq!(fencing.check().unwrap_err().0, "fencing.required");
    }
}
