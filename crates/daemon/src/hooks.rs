//! Hooks and fencing: the commands that start, stop and fence a master that knows nothing of
//! regent (`hooks:` and `fencing:` in the configuration; the fields in
//! `config::{HooksConfig, FencingConfig}`).
//!
//! Two tasks: the *runner* carries out one command at a time, in the order asked (one hook at
//! a time per node, in event order), each with its timeout (the process group is killed when
//! it passes), its output in regent's log; the *watcher* turns the published status into
//! leadership events ([`crate::leadership::Watcher`], the same events the host's watch gets)
//! and asks the runner for `on_promote`, `on_demote`, `on_lease_warning` and
//! `on_leader_change`.
//!
//! The promotion itself is the replica's decision ([`regent_replica::Action::Promote`]): the
//! driver hands it to the runner, which fences the previous leader (after a failover, when
//! methods are configured; with `fencing.required` it retries until a method succeeds, showing
//! `fence_pending`), runs `pre_promote`, and reports the outcome back as
//! `Request::Promoted`. The replica keeps the node unwritable until then.
//!
//! Invariants: a hook never runs past its timeout; `on_demote` follows every `on_promote`,
//! also at shutdown; a promotion for a term this node no longer leads is abandoned, not
//! reported done.

use crate::api::status::NodeStatus;
use crate::api::{LiveOptions, Request};
use crate::config::{FenceMethod, FencingConfig, HooksConfig, HOOK_NAMES};
use crate::leadership::{EventKind, Watcher};
use regent_raft::{Nanos, NodeId, Role, Term};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

/// Upper bounds (seconds) of the `regent_hook_duration_seconds` histogram's buckets.
pub const DURATION_BUCKETS: [f64; 7] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
/// The longest a clean stop waits for the hooks still queued (on_demote above all).
pub const STOP_WAIT_MAX: Duration = Duration::from_secs(30);

/// How one run of a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// Exit status 0.
    Ok,
    /// Another exit status, or killed by a signal (None).
    Failed(Option<i32>),
    /// Killed at its timeout.
    Timeout,
    /// Could not be started.
    NotStarted(String),
}

impl RunResult {
    /// The `result` label of the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Failed(_) => "failed",
            RunResult::Timeout => "timeout",
            RunResult::NotStarted(_) => "not_started",
        }
    }

    fn describe(&self) -> String {
        match self {
            RunResult::Ok => "exit 0".into(),
            RunResult::Failed(Some(code)) => format!("exit {code}"),
            RunResult::Failed(None) => "killed by a signal".into(),
            RunResult::Timeout => "timed out".into(),
            RunResult::NotStarted(why) => format!("not started: {why}"),
        }
    }
}

/// The last run of one hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRun {
    pub result: RunResult,
    pub exit: Option<i32>,
    pub duration_ms: u64,
    /// When it ended, Unix milliseconds.
    pub at_unix_ms: u64,
}

/// Counters and last runs, for the status and the metrics.
#[derive(Debug, Default)]
pub struct HookStats {
    pub last: BTreeMap<&'static str, LastRun>,
    /// (hook, result label) → runs.
    pub runs: BTreeMap<(&'static str, &'static str), u64>,
    /// hook → (bucket counts as in `DURATION_BUCKETS`, count, sum of seconds).
    pub durations: BTreeMap<&'static str, ([u64; DURATION_BUCKETS.len()], u64, f64)>,
}

impl HookStats {
    fn record(
        &mut self,
        hook: &'static str,
        result: &RunResult,
        exit: Option<i32>,
        took: Duration,
    ) {
        *self.runs.entry((hook, result.label())).or_default() += 1;
        let seconds = took.as_secs_f64();
        let (buckets, count, sum) =
            self.durations
                .entry(hook)
                .or_insert(([0; DURATION_BUCKETS.len()], 0, 0.0));
        for (bucket, bound) in buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        *count += 1;
        *sum += seconds;
        self.last.insert(
            hook,
            LastRun {
                result: result.clone(),
                exit,
                duration_ms: took.as_millis() as u64,
                at_unix_ms: crate::clock::unix_ms(),
            },
        );
    }
}

/// What the API and the driver share with the hooks.
#[derive(Clone, Debug)]
pub struct HooksView {
    pub stats: Arc<Mutex<HookStats>>,
    /// A promotion waits for a fence method to succeed.
    pub fence_pending: Arc<AtomicBool>,
    /// Set when a fence run by hand (`regent fence`) succeeded against this node.
    fenced_by_hand: Arc<Mutex<Option<NodeId>>>,
    fencing: Arc<FencingConfig>,
    node: NodeId,
    socket: PathBuf,
}

impl HooksView {
    /// Runs the fence methods against `node` now, in order, until one succeeds (`regent fence
    /// --node ID`). Returns which method succeeded, or why none did.
    pub async fn fence_by_hand(
        &self,
        node: NodeId,
        address: Option<SocketAddr>,
    ) -> Result<String, String> {
        if self.fencing.methods.is_empty() {
            return Err("no fencing.methods are configured".into());
        }
        let env = fence_env(self.node, &self.socket, node, address);
        let outcome = fence_once(&self.fencing.methods, &env, &self.stats).await;
        if outcome.is_ok() {
            *self
                .fenced_by_hand
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(node);
        }
        outcome
    }

    /// `{name: {result, exit, duration_ms, at_unix_ms}}` of the hooks that ran.
    pub fn last_runs(&self) -> BTreeMap<&'static str, LastRun> {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last
            .clone()
    }
}

enum Job {
    Hook {
        name: &'static str,
        term: Term,
        env: Vec<(String, String)>,
    },
    /// A hand-over waits for this: `on_demote` (unless it already ran for `term`), then
    /// `Request::Demoted`.
    Demote {
        term: Term,
        env: Vec<(String, String)>,
    },
    Promote {
        term: Term,
        previous: Option<(NodeId, Option<SocketAddr>)>,
        handover: bool,
        env: Vec<(String, String)>,
    },
    /// Answered once everything asked before it has run.
    Drain(oneshot::Sender<()>),
}

/// The driver's side: asks for promotions, waits for the queue at shutdown.
#[derive(Clone)]
pub struct Hooks {
    jobs: mpsc::UnboundedSender<Job>,
    pub view: HooksView,
    /// Whether a promotion gate is needed (`pre_promote` or fence methods configured).
    pub gated: bool,
    pub backoff_ns: Nanos,
    /// The watcher task: it ends when the driver's status channel closes, asking for
    /// `on_demote` if the node was writable.
    watcher: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Hooks {
    /// Starts the runner and the watcher.
    pub fn start(
        config: &crate::config::DaemonConfig,
        status: watch::Receiver<NodeStatus>,
        live: watch::Receiver<LiveOptions>,
        requests: mpsc::Sender<Request>,
    ) -> Hooks {
        let (node, socket) = (config.node_id, config.socket.clone());
        let (hooks, fencing) = (config.hooks.clone(), config.fencing.clone());
        let lease_ms = config.timing.lease_ns() / 1_000_000;
        let (jobs, queue) = mpsc::unbounded_channel();
        let view = HooksView {
            stats: Arc::default(),
            fence_pending: Arc::default(),
            fenced_by_hand: Arc::default(),
            fencing: Arc::new(fencing),
            node,
            socket: socket.clone(),
        };
        let gated = hooks.pre_promote.is_some() || !view.fencing.methods.is_empty();
        let backoff_ns = hooks.promote_failure_backoff_ms.saturating_mul(1_000_000);
        let hooks = Arc::new(hooks);
        let runner = Runner {
            hooks: hooks.clone(),
            view: view.clone(),
            lease_ms,
            status: status.clone(),
            requests,
        };
        tokio::spawn(runner.run(queue));
        let watcher = HOOK_NAMES
            .iter()
            .any(|&n| n != "pre_promote" && hooks.get(n).is_some())
            .then(|| {
                tokio::spawn(watch_events(
                    Watcher::new(status, live),
                    jobs.clone(),
                    socket,
                    hooks,
                ))
            });
        Hooks {
            jobs,
            view,
            gated,
            backoff_ns,
            watcher: Arc::new(Mutex::new(watcher)),
        }
    }

    /// The replica asks for this term's promotion.
    pub fn promote(
        &self,
        term: Term,
        previous: Option<(NodeId, Option<SocketAddr>)>,
        handover: bool,
        status: &NodeStatus,
    ) {
        let env = hook_env(status, &self.view.socket, "pre_promote");
        let _ = self.jobs.send(Job::Promote {
            term,
            previous,
            handover,
            env,
        });
    }

    /// The replica holds a hand-over until this node's host is demoted.
    pub fn demote(&self, term: Term, status: &NodeStatus) {
        let env = hook_env(status, &self.view.socket, "on_demote");
        let _ = self.jobs.send(Job::Demote { term, env });
    }

    /// Waits (at most `STOP_WAIT_MAX`) until every hook asked so far has run: at shutdown,
    /// after the last status was published, so that `on_demote` runs before the daemon exits.
    pub async fn drain(&self) {
        let watcher = self
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let wait = async {
            if let Some(watcher) = watcher {
                let _ = watcher.await;
            }
            let (tx, rx) = oneshot::channel();
            if self.jobs.send(Job::Drain(tx)).is_ok() {
                let _ = rx.await;
            }
        };
        let _ = tokio::time::timeout(STOP_WAIT_MAX, wait).await;
    }
}

/// The environment every hook gets.
fn hook_env(s: &NodeStatus, socket: &std::path::Path, hook: &str) -> Vec<(String, String)> {
    let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    vec![
        ("REGENT_HOOK".into(), hook.into()),
        ("REGENT_NODE_ID".into(), s.node_id.0.to_string()),
        ("REGENT_TERM".into(), s.term.0.to_string()),
        ("REGENT_ROLE".into(), s.role_name().into()),
        ("REGENT_LEADER_ID".into(), opt(s.leader_id.map(|l| l.0))),
        ("REGENT_CATCH_UP_INDEX".into(), opt(s.catch_up_index)),
        (
            "REGENT_LEASE_DEADLINE_NS".into(),
            opt(s.lease_deadline_ns.filter(|_| s.role == Role::Leader)),
        ),
        ("REGENT_SOCKET".into(), socket.display().to_string()),
    ]
}

fn fence_env(
    this: NodeId,
    socket: &std::path::Path,
    target: NodeId,
    address: Option<SocketAddr>,
) -> Vec<(String, String)> {
    vec![
        ("REGENT_HOOK".into(), "fence".into()),
        ("REGENT_NODE_ID".into(), this.0.to_string()),
        ("REGENT_SOCKET".into(), socket.display().to_string()),
        ("REGENT_FENCE_NODE_ID".into(), target.0.to_string()),
        (
            "REGENT_FENCE_ADDRESS".into(),
            address.map_or(String::new(), |a| a.to_string()),
        ),
        (
            "REGENT_FENCE_HOST".into(),
            address.map_or(String::new(), |a| a.ip().to_string()),
        ),
    ]
}

/// Turns leadership events into hook runs.
async fn watch_events(
    mut watcher: Watcher,
    jobs: mpsc::UnboundedSender<Job>,
    socket: PathBuf,
    hooks: Arc<HooksConfig>,
) {
    let ask = |name: &'static str, status: &NodeStatus| {
        if hooks.get(name).is_some() {
            let _ = jobs.send(Job::Hook {
                name,
                term: status.term,
                env: hook_env(status, &socket, name),
            });
        }
    };
    let mut last: Option<(bool, NodeStatus)> = None;
    while let Some(event) = watcher.next().await {
        last = Some((event.after.writable, event.status.clone()));
        let before = event.before;
        let after = event.after;
        let s = &event.status;
        if event.kind == EventKind::LeaseWarning {
            ask("on_lease_warning", s);
            continue;
        }
        let was_writable = before.is_some_and(|b| b.writable);
        if was_writable && !after.writable {
            ask("on_demote", s);
        }
        let leader_before = before.and_then(|b| b.leader);
        if after.leader.is_some() && after.leader != leader_before {
            ask("on_leader_change", s);
        }
        if !was_writable && after.writable {
            ask("on_promote", s);
        }
    }
    // The driver is gone (the daemon stops): a node that was writable no longer is.
    if let Some((true, s)) = last {
        ask("on_demote", &s);
    }
}

struct Runner {
    hooks: Arc<HooksConfig>,
    view: HooksView,
    lease_ms: u64,
    status: watch::Receiver<NodeStatus>,
    requests: mpsc::Sender<Request>,
}

impl Runner {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
        // The term whose `on_demote` already ran ahead of a hand-over.
        let mut demoted: Option<Term> = None;
        while let Some(job) = queue.recv().await {
            match job {
                Job::Hook { name, term, env } => {
                    if name == "on_demote" && demoted == Some(term) {
                        continue;
                    }
                    if let Some(hook) = self.hooks.get(name) {
                        let timeout = Duration::from_millis(hook.timeout_ms(self.lease_ms));
                        run_logged(name, &hook.exec, &env, timeout, &self.view.stats).await;
                    }
                }
                Job::Demote { term, env } => {
                    if demoted != Some(term) {
                        demoted = Some(term);
                        if let Some(hook) = &self.hooks.on_demote {
                            let timeout = Duration::from_millis(hook.timeout_ms(self.lease_ms));
                            run_logged("on_demote", &hook.exec, &env, timeout, &self.view.stats)
                                .await;
                        }
                    }
                    let _ = self.requests.send(Request::Demoted { term }).await;
                }
                Job::Promote {
                    term,
                    previous,
                    handover,
                    env,
                } => {
                    let result = self.promote(term, previous, handover, &env).await;
                    if let Some(result) = result {
                        let _ = self.requests.send(Request::Promoted { term, result }).await;
                    }
                }
                Job::Drain(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Whether this node still leads `term`.
    fn leads(&self, term: Term) -> bool {
        let s = self.status.borrow();
        s.term == term && s.role == Role::Leader
    }

    /// Fences (after a failover) and runs `pre_promote`. None: abandoned (the term is over).
    async fn promote(
        &self,
        term: Term,
        previous: Option<(NodeId, Option<SocketAddr>)>,
        handover: bool,
        env: &[(String, String)],
    ) -> Option<Result<(), String>> {
        let fencing = &self.view.fencing;
        if let (false, Some((node, address)), false) =
            (handover, previous, fencing.methods.is_empty())
        {
            let fence = fence_env(self.view.node, &self.view.socket, node, address);
            loop {
                if !self.leads(term) {
                    self.view.fence_pending.store(false, Ordering::Relaxed);
                    return None;
                }
                let by_hand = *self
                    .view
                    .fenced_by_hand
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if by_hand == Some(node) {
                    tracing::info!(%node, "the previous leader was fenced by hand");
                    break;
                }
                match fence_once(&fencing.methods, &fence, &self.view.stats).await {
                    Ok(method) => {
                        tracing::info!(%node, %method, "previous leader fenced");
                        break;
                    }
                    Err(why) if fencing.required => {
                        self.view.fence_pending.store(true, Ordering::Relaxed);
                        tracing::error!(%node, %why, "fencing failed; not writable until a method succeeds (or `regent fence --node {node}`)");
                        tokio::time::sleep(Duration::from_millis(fencing.retry_interval_ms)).await;
                    }
                    Err(why) => {
                        tracing::warn!(%node, %why, "fencing failed; going on (fencing.required is false)");
                        break;
                    }
                }
            }
            self.view.fence_pending.store(false, Ordering::Relaxed);
        }
        if !self.leads(term) {
            return None;
        }
        let Some(hook) = &self.hooks.pre_promote else {
            return Some(Ok(()));
        };
        let timeout = Duration::from_millis(hook.timeout_ms(self.lease_ms));
        let result = run_logged("pre_promote", &hook.exec, env, timeout, &self.view.stats).await;
        Some(match result {
            RunResult::Ok => Ok(()),
            other => Err(format!("pre_promote: {}", other.describe())),
        })
    }
}

/// Tries the fence methods in order; the first that exits 0 wins.
async fn fence_once(
    methods: &[FenceMethod],
    env: &[(String, String)],
    stats: &Mutex<HookStats>,
) -> Result<String, String> {
    let mut failures = Vec::new();
    for method in methods {
        let timeout = Duration::from_millis(method.timeout_ms);
        match run_logged("fence", &method.exec, env, timeout, stats).await {
            RunResult::Ok => return Ok(method.exec.join(" ")),
            other => failures.push(format!("{}: {}", method.exec.join(" "), other.describe())),
        }
    }
    Err(failures.join("; "))
}

/// Runs one command, logs its output line by line, records it under `name`.
async fn run_logged(
    name: &'static str,
    exec: &[String],
    env: &[(String, String)],
    timeout: Duration,
    stats: &Mutex<HookStats>,
) -> RunResult {
    let started = Instant::now();
    let (result, exit) = run(name, exec, env, timeout).await;
    let took = started.elapsed();
    let level_ok = result == RunResult::Ok;
    if level_ok {
        tracing::info!(
            hook = name,
            took_ms = took.as_millis() as u64,
            "hook ran: exit 0"
        );
    } else {
        tracing::warn!(hook = name, took_ms = took.as_millis() as u64, result = %result.describe(), "hook failed");
    }
    stats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record(name, &result, exit, took);
    result
}

async fn run(
    name: &'static str,
    exec: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> (RunResult, Option<i32>) {
    let Some((program, args)) = exec.split_first() else {
        return (RunResult::NotStarted("empty exec".into()), None);
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => return (RunResult::NotStarted(format!("{program}: {err}")), None),
    };
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let log_lines = async {
        let out = async {
            if let Some(out) = stdout {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(hook = name, "{line}");
                }
            }
        };
        let err = async {
            if let Some(err) = stderr {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::warn!(hook = name, "{line}");
                }
            }
        };
        tokio::join!(out, err);
    };
    let waited = tokio::time::timeout(timeout, async {
        let (status, ()) = tokio::join!(child.wait(), log_lines);
        status
    })
    .await;
    match waited {
        Ok(Ok(status)) if status.success() => (RunResult::Ok, Some(0)),
        Ok(Ok(status)) => (RunResult::Failed(status.code()), status.code()),
        Ok(Err(err)) => (RunResult::NotStarted(err.to_string()), None),
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: kill(2) of the process group we created for the hook.
                unsafe {
                    libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
                }
            }
            let _ = child.wait().await;
            (RunResult::Timeout, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_hook_gets_its_environment_and_its_exit_status_counts() {
        let env = vec![("REGENT_TERM".to_string(), "7".to_string())];
        let (ok, exit) = run(
            "t",
            &sh("test \"$REGENT_TERM\" = 7"),
            &env,
            Duration::from_secs(20),
        )
        .await;
        assert_eq!((ok, exit), (RunResult::Ok, Some(0)));
        let (failed, exit) = run("t", &sh("exit 3"), &env, Duration::from_secs(20)).await;
        assert_eq!((failed, exit), (RunResult::Failed(Some(3)), Some(3)));
        let (missing, _) = run(
            "t",
            &["/nonexistent/hook".to_string()],
            &env,
            Duration::from_secs(20),
        )
        .await;
        assert!(matches!(missing, RunResult::NotStarted(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-still-ran");
        // The hook starts a child of its own that would write the marker later.
        let script = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let (result, _) = run("t", &sh(&script), &[], Duration::from_millis(200)).await;
        assert_eq!(result, RunResult::Timeout);
        tokio::time::resume();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!marker.exists(), "the hook's process group was not killed");
    }

    #[test]
    fn stats_count_runs_and_durations() {
        let mut stats = HookStats::default();
        stats.record(
            "on_promote",
            &RunResult::Ok,
            Some(0),
            Duration::from_millis(30),
        );
        stats.record(
            "on_promote",
            &RunResult::Timeout,
            None,
            Duration::from_secs(2),
        );
        assert_eq!(stats.runs[&("on_promote", "ok")], 1);
        assert_eq!(stats.runs[&("on_promote", "timeout")], 1);
        let (buckets, count, _) = stats.durations["on_promote"];
        assert_eq!(count, 2);
        assert_eq!(buckets[1], 1); // ≤ 0.05 s
        assert_eq!(buckets[6], 2); // ≤ 30 s
        assert_eq!(stats.last["on_promote"].result, RunResult::Timeout);
    }
}
