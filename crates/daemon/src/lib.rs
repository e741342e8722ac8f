//! The daemon (`regent run`): tokio wiring around the replica — the driver task, the disk
//! thread, the QUIC links, the Unix socket, signals. It adds I/O and nothing else: every duty of
//! the core's caller is carried out by `replica::Replica`, the same code the simulator checks.
//!
//! Start-up order: configuration, storage (recovery), the replica, the QUIC endpoint, the
//! socket, then the driver. On the first start with an empty data directory a founding node
//! writes the initial configuration as the log's first entry (`replica::bootstrap_batch`); every
//! later start recovers from redb only, and the member list in the file is then advisory.

pub mod api;
pub mod backup;
pub mod clock;
pub mod config;
pub mod disk;
pub mod driver;
pub mod health;
pub mod hooks;
pub mod leadership;
pub mod logging;
pub mod notify;
pub mod streams;
pub mod versions;
pub mod vip;
pub mod watchdog;
pub mod wire;

use crate::api::{status, ApiContext, ApiError, ApiOptions};
use crate::config::{ConfigError, DaemonConfig};
use disk::Disk;
use driver::{Driver, DriverParts};
use regent_raft::{Membership, SplitMix64};
use regent_replica::{self as replica, Replica};
use regent_storage::{Identity, LogStorage, RedbStorage, StateReader, StorageError};
use regent_transport::pki::PkiError;
use regent_transport::{Transport, TransportError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// API requests queued for the driver before senders wait.
pub const REQUESTS_QUEUE_MAX: usize = 8192;

/// Why the daemon could not start. Each variant says which step failed and returns the
/// underlying error as its `source` (its own message does not repeat it), so print it with
/// its chain (`{:#}` through anyhow, as the CLI does): `starting the QUIC transport: ...`.
/// A fatal error after start is not one of these: `run` reports it and exits with failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("starting the tokio runtime")]
    Runtime(#[source] std::io::Error),
    #[error("log_level")]
    LogLevel(#[source] logging::LoggingError),
    #[error("creating data directory {}", .dir.display())]
    DataDir {
        dir: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("opening storage in {}", .dir.display())]
    OpenStorage {
        dir: PathBuf,
        #[source]
        error: StorageError,
    },
    #[error("writing the initial configuration")]
    Bootstrap(#[source] StorageError),
    #[error("seeding the election timer")]
    Seed(#[source] PkiError),
    #[error("restoring the replica from storage")]
    Replica(#[source] replica::ReplicaError),
    #[error("starting the QUIC transport")]
    Transport(#[source] TransportError),
    #[error(transparent)]
    Version(#[from] versions::VersionEnvError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("api.tcp_listen: binding {addr}")]
    TcpListen {
        addr: std::net::SocketAddr,
        #[source]
        error: std::io::Error,
    },
    #[error("the virtual IP")]
    Vip(#[source] vip::VipError),
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("starting the signal thread")]
    SignalThread(#[source] std::io::Error),
}

/// `regent run --config PATH`.
pub fn run(config_path: &Path) -> Result<ExitCode, RunError> {
    let config = DaemonConfig::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("regent")
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(run_daemon(config, config_path.to_path_buf()))
}

async fn run_daemon(config: DaemonConfig, config_path: PathBuf) -> Result<ExitCode, RunError> {
    let id = config.node_id;
    logging::set_node(id.0);
    logging::set_json(config.log.format == config::LogFormat::Json);
    if let Some(level) = config.log_filter() {
        logging::set_filter(Some(level)).map_err(RunError::LogLevel)?;
    }
    let identity = Identity {
        cluster_id: config.cluster.clone(),
        node_id: id,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|error| RunError::DataDir {
        dir: config.data_dir.clone(),
        error,
    })?;
    let (mut storage, _recovered) =
        RedbStorage::open(&config.data_dir, &identity, config.storage_options()).map_err(
            |error| RunError::OpenStorage {
                dir: config.data_dir.clone(),
                error,
            },
        )?;
    let bootstrap = bootstrap(&config, &mut storage)?;

    let now = clock::now();
    let mut seed = [0u8; 8];
    regent_transport::pki::fill_random(&mut seed).map_err(RunError::Seed)?;
    let rng = Box::new(SplitMix64::new(u64::from_le_bytes(seed)));
    let mut replica = Replica::new(config.raft_config(), &storage, bootstrap, rng, now)
        .map_err(RunError::Replica)?;
    replica.set_clock_check(config.clock_check());
    // Every link is reported by the driver (`LinkEvent::Up`): a peer without one speaks
    // nothing yet.
    let version_max = versions::version_max()?;
    replica.assume_peer_wire_version(None);
    replica.set_version_max(version_max);
    if version_max < regent_replica::VERSION_MAX {
        tracing::warn!(node = %id, version_max, "test switch {}: this node speaks as an older build", versions::TEST_WIRE_VERSION_MAX_ENV);
    }
    replica.set_history_keep(config.history.keep);
    let addresses = member_addresses(&config, &storage);
    let state = storage.state().clone();
    tracing::info!(
        node = %id, cluster = %config.cluster,
        term = state.hard_state.term.0, last_index = state.last_index.0,
        applied = state.applied.0, snapshot = state.snapshot.last_included_index.0,
        "recovered"
    );

    let mut transport_config = config.transport_config();
    transport_config.wire_version_max = version_max;
    let (transport, inbound) = Transport::start(transport_config).map_err(RunError::Transport)?;
    let options = ApiOptions {
        socket: config.socket.clone(),
        socket_mode: config.socket_mode.bits(),
        socket_gid: config.socket_gid()?,
        request_bytes_max: config.api.request_bytes_max,
        connections_max: config.api.connections_max,
    };
    let (live_tx, live) = watch::channel(driver::live_options(&config));
    let listener = api::bind(&options)?;

    let (shutdown_tx, shutdown) = watch::channel(false);
    let (status_tx, status_rx) = watch::channel(status::NodeStatus::starting(id));
    let (requests_tx, requests) = mpsc::channel(REQUESTS_QUEUE_MAX);
    let signals = watch_signals(shutdown_tx.clone(), requests_tx.clone())?;
    let metrics = Arc::new(api::metrics::Metrics::default());
    let hooks = hooks::Hooks::start(
        &config,
        status_rx.clone(),
        live.clone(),
        requests_tx.clone(),
    );
    let lease_ms = config.timing.lease_ns() / 1_000_000;
    let (watchdog, watchdog_works) = start_watchdog(&config.watchdog, lease_ms, &status_rx);
    let vip = match &config.vip {
        None => None,
        Some(vip_config) => {
            let vip = vip::Vip::new(vip_config.clone())
                .await
                .map_err(RunError::Vip)?;
            // A copy left by a crash goes before this node may lead.
            if vip.remove_stale().await.map_err(RunError::Vip)? {
                tracing::warn!(address = %vip_config.address, "removed a stale copy of the virtual IP left by an earlier run");
            }
            Some(tokio::spawn(vip::follow(
                vip,
                status_rx.clone(),
                live.clone(),
                metrics.vip_held.clone(),
            )))
        }
    };
    let context = Arc::new(ApiContext {
        requests: requests_tx,
        metrics: metrics.clone(),
        status: status_rx,
        options: options.clone(),
        live,
        transport: Some(transport.clone()),
        hooks: Some(hooks.view.clone()),
    });
    if let Some(backup) = config.backup.clone() {
        tokio::spawn(backup::schedule(
            backup,
            context.requests.clone(),
            context.status.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    let server = tokio::spawn(api::serve(listener, context.clone(), shutdown.clone()));
    let (calls_tx, calls) = mpsc::channel(api::forward::CALLS_QUEUE_MAX);
    tokio::spawn(api::forward::serve_calls(context.clone(), calls));
    if let Some(addr) = config.api.tcp_listen {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| RunError::TcpListen { addr, error })?;
        tracing::info!(%addr, "read-only checks and metrics on TCP");
        tokio::spawn(api::serve_tcp(tcp, context, shutdown.clone()));
    }

    let (done_tx, disk_done) = mpsc::unbounded_channel();
    let disk = {
        let transport = transport.clone();
        Disk::start(
            storage,
            done_tx,
            Box::new(move |m| driver::send_raft(&transport, id, m)),
        )
    };
    let driver = Driver::new(DriverParts {
        replica,
        disk,
        disk_done,
        transport,
        inbound,
        calls: calls_tx,
        hooks: hooks.clone(),
        requests,
        status: status_tx,
        shutdown: shutdown.clone(),
        addresses,
        persist_stall_max: Duration::from_millis(config.timing.persist_stall_max_ms),
        notifier: notify::Notifier::from_env(),
        metrics,
        host_health: config.host_health.clone().map(health::start),
        live: live_tx,
        config_path,
        config: config.clone(),
    });
    tracing::info!(node = %id, socket = %options.socket.display(), listen = %config.listen, "serving");
    let outcome = if watchdog_works {
        driver.run().await
    } else {
        driver.run_ineligible().await
    };
    // The driver is gone: the hooks watcher sees the end, and `on_demote` (if this node was
    // writable) and whatever was asked before run now, before the process exits.
    hooks.drain().await;
    if let Some(watchdog) = watchdog {
        let _ = tokio::time::timeout(Duration::from_secs(2), watchdog).await;
    }
    if let Some(vip) = vip {
        let _ = tokio::time::timeout(Duration::from_secs(5), vip).await;
    }

    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    let _ = std::fs::remove_file(&options.socket);
    signals.close();
    match outcome {
        Ok(()) => {
            tracing::info!(node = %id, "stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            tracing::error!(node = %id, error = %err, "stopping on a fatal error");
            eprintln!("regent: fatal: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Starts the watchdog task per `watchdog.mode`. Returns it and whether this node may
/// campaign: `required` with a device that cannot be armed may not.
fn start_watchdog(
    config: &watchdog::WatchdogConfig,
    lease_ms: u64,
    status: &watch::Receiver<status::NodeStatus>,
) -> (Option<tokio::task::JoinHandle<()>>, bool) {
    use watchdog::WatchdogMode;
    if config.mode == WatchdogMode::Off {
        return (None, true);
    }
    match watchdog::probe(config, lease_ms) {
        Ok(()) => {
            tracing::info!(device = %config.device.display(), "watchdog device works: armed while writable");
            let task = tokio::spawn(watchdog::run(config.clone(), lease_ms, status.clone()));
            (Some(task), true)
        }
        Err(err) if config.mode == WatchdogMode::Required => {
            tracing::error!(error = %err, "watchdog.mode is required and the device does not work: this node will not campaign");
            (None, false)
        }
        Err(err) => {
            tracing::warn!(error = %err, "watchdog device does not work; running without (watchdog.mode: automatic)");
            (None, true)
        }
    }
}

/// The configuration the cluster started with. A founding node with empty storage writes it as
/// the log's first entry; a joining node starts with none (an empty learner until the leader
/// adds it); after the first start the log is the only source.
fn bootstrap(config: &DaemonConfig, storage: &mut RedbStorage) -> Result<Membership, RunError> {
    let state = storage.state();
    let fresh = state.last_index.0 == 0
        && state.hard_state.term.0 == 0
        && state.snapshot.last_included_index.0 == 0;
    if config.join || !fresh {
        return Ok(Membership::default());
    }
    let voters = config.initial_membership();
    tracing::info!(
        voters = ?voters.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
        "empty data directory: bootstrapping the initial configuration"
    );
    storage
        .write_batch(&replica::bootstrap_batch(&voters))
        .map_err(RunError::Bootstrap)?;
    Ok(Membership::default())
}

/// Every member's address known at start: the configuration file's `members` (the
/// bootstrap), overridden by the replicated address records (`api::members`) of members added
/// at run time. The driver narrows the transport's peers to the configuration in force.
fn member_addresses(
    config: &DaemonConfig,
    storage: &RedbStorage,
) -> std::collections::BTreeMap<regent_raft::NodeId, std::net::SocketAddr> {
    let mut addresses: std::collections::BTreeMap<_, _> =
        config.members.iter().map(|m| (m.id, m.address)).collect();
    match storage.kv_range(
        api::members::MEMBER_ADDRESS_PREFIX,
        api::members::MEMBER_RECORDS_MAX,
    ) {
        Ok((kvs, _)) => {
            for kv in &kvs {
                match api::members::parse_member_address(kv) {
                    Some((id, addr)) => {
                        addresses.insert(id, addr);
                    }
                    None => tracing::warn!(
                        key = ?String::from_utf8_lossy(&kv.key),
                        "an address record that does not parse; ignored"
                    ),
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, "reading the members' addresses failed"),
    }
    addresses
}

/// The thread that turns SIGTERM and SIGINT into a shutdown request, and SIGHUP into a reload.
struct SignalWatch {
    handle: signal_hook::iterator::Handle,
}

impl SignalWatch {
    fn close(self) {
        self.handle.close();
    }
}

fn watch_signals(
    shutdown: watch::Sender<bool>,
    requests: mpsc::Sender<api::Request>,
) -> Result<SignalWatch, RunError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(RunError::Signals)?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("regent-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    tracing::info!(
                        "SIGHUP: reloading the configuration, certificate, key and CA bundle"
                    );
                    let _ = requests.blocking_send(api::Request::Reload { reply: None });
                    continue;
                }
                tracing::info!(
                    signal,
                    "stopping: no new proposals, flushing, closing links"
                );
                let _ = shutdown.send(true);
                break;
            }
        })
        .map_err(RunError::SignalThread)?;
    Ok(SignalWatch { handle })
}
