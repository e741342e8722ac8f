//! `regent admin cluster init`: a new cluster in one go — a CA (made, or reused when one is
//! already in `DIR/ca`), and for every node a directory `DIR/node<ID>` holding its certificate,
//! its key (0600), a copy of the CA bundle and a complete `regent.yaml` with absolute paths.
//!
//! Invariant: nothing is written for any node unless every node's directory is free and every
//! node's configuration passes `DaemonConfig::validate_settings`; each configuration is read
//! back after it is written and must be the one meant.

use super::admin::{CERT_DAYS_DEFAULT, NODE_BUNDLE_FILE, NODE_CERT_FILE, NODE_KEY_FILE};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use regent_daemon::config::DaemonConfig;
use regent_raft::NodeId;
use regent_transport::pki::ca::{validate_days, CaDir};
use regent_transport::pki::identity::{format_unix, unix_now, validate_cluster_name};
use regent_transport::pki::{files, issue, IssueRequest, Issued, NodeIdentity, Validity};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The configuration file written into each node's directory.
pub const NODE_CONFIG_FILE: &str = "regent.yaml";
/// The installed layout (`--system-paths`), as `systemd/regent.service` and
/// `systemd/install.sh` have it.
pub const SYSTEM_CONFIG_DIR: &str = "/etc/regent";
pub const SYSTEM_DATA_DIR: &str = "/var/lib/regent";
pub const SYSTEM_SOCKET: &str = "/run/regent/regent.sock";
/// The most nodes one `cluster init` sets up (the transport's peer limit plus one).
pub const NODES_MAX: usize = regent_daemon::config::MEMBERS_MAX;

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Create a CA (or reuse DIR/ca) and, for every node, DIR/node<ID> with node.pem, node.key
    /// (mode 0600), ca-bundle.pem and a complete regent.yaml. Refuses to touch an existing
    /// node directory.
    Init(InitArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The directory to write into (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// The cluster name: lowercase letters, digits and '-'.
    #[arg(long)]
    pub cluster: String,
    /// A node: its id and the address its peers dial, as ID=HOST:PORT (repeat for each node).
    /// HOST is an IP address ([..] for IPv6) or a DNS name, which goes into the certificate and
    /// is resolved here for the configuration.
    #[arg(long = "node", value_name = "ID=HOST:PORT", required = true, value_parser = parse_node_spec)]
    pub nodes: Vec<NodeSpec>,
    /// Data directories go to <D>/node<ID> instead of DIR/node<ID>/data.
    #[arg(long, value_name = "D")]
    pub data_root: Option<PathBuf>,
    /// Sockets go to <S>/node<ID>.sock instead of DIR/node<ID>/regent.sock.
    #[arg(long, value_name = "S")]
    pub socket_dir: Option<PathBuf>,
    /// Days the node certificates are valid.
    #[arg(long, default_value_t = CERT_DAYS_DEFAULT)]
    pub days: u32,
    /// Write each configuration for the installed layout of `systemd/install.sh` and the
    /// unit: certificate, key and bundle in /etc/regent, data_dir /var/lib/regent, socket
    /// /run/regent/regent.sock. Copy nodeN/ to machine N's /etc/regent (install.sh --node-dir).
    #[arg(long, conflicts_with_all = ["data_root", "socket_dir"])]
    pub system_paths: bool,
    /// Set up only node ID, a new member joining a running cluster (repeatable): its
    /// configuration says `join: true` and lists every --node as the members it first
    /// contacts; its certificate comes from the existing CA in DIR/ca (which must exist); the
    /// other nodes' directories are not touched. Then, on the leader:
    /// `regent members add ID HOST:PORT`.
    #[arg(long, value_name = "ID")]
    pub join: Vec<u64>,
}

/// One `--node ID=HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: NodeId,
    pub host: Host,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{}={}", self.id.0, SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{}={name}:{}", self.id.0, self.port),
        }
    }
}

/// Why a `--node` value is not `ID=HOST:PORT`; `Display` quotes the value, then the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: {problem}")]
pub struct NodeSpecError {
    pub text: String,
    pub problem: NodeSpecProblem,
}

/// What is wrong with a `--node` value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeSpecProblem {
    #[error("expected ID=HOST:PORT")]
    NoId,
    #[error("the node id {id:?} is not a number")]
    IdNotANumber { id: String },
    #[error("the node id must not be 0")]
    IdZero,
    #[error("expected [IPv6]:PORT")]
    NoBracketedPort,
    #[error("{ip:?} is not an IPv6 address")]
    NotIpv6 { ip: String },
    #[error("expected HOST:PORT after the '='")]
    NoPort,
    #[error("write an IPv6 address in brackets, as [::1]:7401")]
    UnbracketedIpv6,
    #[error("{host:?} is neither an IP address nor a DNS name")]
    BadHost { host: String },
    #[error("the port {port:?} is not a number up to 65535")]
    PortNotANumber { port: String },
    #[error("the port must not be 0")]
    PortZero,
}

/// Parses `ID=HOST:PORT`: a non-zero id, an IPv4 address, a bracketed IPv6 address or a DNS
/// name, and a non-zero port.
pub fn parse_node_spec(text: &str) -> Result<NodeSpec, NodeSpecError> {
    let bad = |problem| NodeSpecError {
        text: text.to_string(),
        problem,
    };
    let (id, host_port) = text
        .split_once('=')
        .ok_or_else(|| bad(NodeSpecProblem::NoId))?;
    let id: u64 = id
        .parse()
        .map_err(|_| bad(NodeSpecProblem::IdNotANumber { id: id.to_string() }))?;
    if id == 0 {
        return Err(bad(NodeSpecProblem::IdZero));
    }
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad(NodeSpecProblem::NoBracketedPort))?;
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| bad(NodeSpecProblem::NotIpv6 { ip: ip.to_string() }))?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = host_port
            .rsplit_once(':')
            .ok_or_else(|| bad(NodeSpecProblem::NoPort))?;
        if host.contains(':') {
            return Err(bad(NodeSpecProblem::UnbracketedIpv6));
        }
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => {
                let name_ok = !host.is_empty()
                    && host.len() <= 253
                    && host.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !name_ok {
                    return Err(bad(NodeSpecProblem::BadHost {
                        host: host.to_string(),
                    }));
                }
                Host::Name(host.to_ascii_lowercase())
            }
        };
        (host, port)
    };
    let port: u16 = port.parse().map_err(|_| {
        bad(NodeSpecProblem::PortNotANumber {
            port: port.to_string(),
        })
    })?;
    if port == 0 {
        return Err(bad(NodeSpecProblem::PortZero));
    }
    Ok(NodeSpec {
        id: NodeId(id),
        host,
        port,
    })
}

/// A node as it will be written: its spec, the address peers dial, its files.
struct Planned {
    spec: NodeSpec,
    address: SocketAddr,
    dir: PathBuf,
    yaml: String,
    config: DaemonConfig,
}

pub fn run(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Init(args) => init(args),
    }
}

fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    plan(args)?.write()?.print();
    Ok(ExitCode::SUCCESS)
}

/// A cluster checked and planned, nothing written yet.
pub struct Plan {
    args: InitArgs,
    dir: PathBuf,
    planned: Vec<Planned>,
}

/// A cluster whose CA, certificates and configurations are written.
pub struct Created {
    args: InitArgs,
    ca_dir: CaDir,
    ca_created: bool,
    planned: Vec<Planned>,
    issued: Vec<Issued>,
}

/// Checks everything that can be checked without writing and plans every node's files.
pub fn plan(args: InitArgs) -> anyhow::Result<Plan> {
    // Everything that can be checked without writing is checked first.
    validate_cluster_name(&args.cluster)?;
    validate_days(args.days)?;
    if args.nodes.is_empty() {
        bail!("at least one --node ID=HOST:PORT is needed");
    }
    if args.nodes.len() > NODES_MAX {
        bail!("{} nodes, more than {NODES_MAX}", args.nodes.len());
    }
    let mut addresses: BTreeMap<NodeId, SocketAddr> = BTreeMap::new();
    let mut seen: BTreeMap<SocketAddr, NodeId> = BTreeMap::new();
    for spec in &args.nodes {
        let address = resolve(spec)?;
        if addresses.insert(spec.id, address).is_some() {
            bail!("node {} is given twice; node ids must be unique", spec.id.0);
        }
        if let Some(other) = seen.insert(address, spec.id) {
            bail!(
                "nodes {} and {} have the same address {address}; addresses must be unique",
                other.0,
                spec.id.0
            );
        }
    }

    for id in &args.join {
        if !args.nodes.iter().any(|n| n.id.0 == *id) {
            bail!(
                "--join {id}: node {id} is not among the --node entries (give its address there)"
            );
        }
    }
    // With --join, only the joining nodes are written; the others are the running members.
    let written: Vec<NodeSpec> = args
        .nodes
        .iter()
        .filter(|n| args.join.is_empty() || args.join.contains(&n.id.0))
        .cloned()
        .collect();

    files::ensure_dir(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    if !args.join.is_empty() && !files::exists(&CaDir::new(dir.join("ca")).cert_path()) {
        bail!(
            "--join needs the cluster's CA in {}: a joining node's certificate must come from \
             the CA its peers trust (nothing was written)",
            dir.join("ca").display()
        );
    }
    let data_root = args.data_root.as_deref().map(absolute).transpose()?;
    let socket_dir = args.socket_dir.as_deref().map(absolute).transpose()?;
    for spec in &written {
        let node_dir = dir.join(format!("node{}", spec.id.0));
        if files::exists(&node_dir) {
            bail!(
                "{} already exists; cluster init never overwrites a node (nothing was written)",
                node_dir.display()
            );
        }
    }
    let mut planned = Vec::new();
    for spec in &written {
        let node_dir = dir.join(format!("node{}", spec.id.0));
        let data_dir = match &data_root {
            Some(root) => root.join(format!("node{}", spec.id.0)),
            None if args.system_paths => PathBuf::from(SYSTEM_DATA_DIR),
            None => node_dir.join("data"),
        };
        let socket = match &socket_dir {
            Some(sockets) => sockets.join(format!("node{}.sock", spec.id.0)),
            None if args.system_paths => PathBuf::from(SYSTEM_SOCKET),
            None => node_dir.join("regent.sock"),
        };
        // Where the configuration names its certificate, key and bundle.
        let config_dir = if args.system_paths {
            PathBuf::from(SYSTEM_CONFIG_DIR)
        } else {
            node_dir.clone()
        };
        let mut yaml = render_config(
            &args.cluster,
            spec.id,
            &args.nodes,
            &addresses,
            &config_dir,
            &data_dir,
            &socket,
        )?;
        if args.join.contains(&spec.id.0) {
            yaml.push_str(
                "# A new member of a running cluster: start as an empty learner and wait for\n\
                 # the leader to add it (`regent members add`), never bootstrap a new cluster.\n\
                 join: true\n",
            );
        }
        let config = DaemonConfig::parse(&yaml).map_err(|e| {
            anyhow::anyhow!(
                "the configuration written for node {} would not parse: {e}",
                spec.id.0
            )
        })?;
        config
            .validate_settings()
            .with_context(|| format!("node {} (nothing was written)", spec.id.0))?;
        planned.push(Planned {
            spec: spec.clone(),
            address: addresses[&spec.id],
            dir: node_dir,
            yaml,
            config,
        });
    }

    Ok(Plan { args, dir, planned })
}

impl Plan {
    /// The configuration each node will have (its data directory, socket, identity).
    pub fn configs(&self) -> impl Iterator<Item = &DaemonConfig> {
        self.planned.iter().map(|p| &p.config)
    }

    /// Creates or reuses the CA, issues every certificate, then writes every node.
    pub fn write(self) -> anyhow::Result<Created> {
        let Plan { args, dir, planned } = self;
        let ca_dir = CaDir::new(dir.join("ca"));
        let (ca, ca_created) = if files::exists(&ca_dir.cert_path()) {
            let ca = ca_dir.load().with_context(|| {
                format!(
                    "{} holds a CA that does not load (nothing was written)",
                    ca_dir.dir.display()
                )
            })?;
            (ca, false)
        } else {
            ca_dir.init(super::admin::CA_DAYS_DEFAULT)?;
            (ca_dir.load()?, true)
        };
        let bundle = files::read_limited(&ca_dir.bundle_path(), files::PEM_FILE_BYTES_MAX)?;
        // Every certificate is issued before the first node is written.
        let mut issued: Vec<Issued> = Vec::new();
        for node in &planned {
            let identity = NodeIdentity::new(&args.cluster, node.spec.id)?;
            let mut request = IssueRequest {
                identity,
                dns_names: Vec::new(),
                ip_addrs: Vec::new(),
                validity: Validity::days_from_now(args.days),
            };
            match &node.spec.host {
                Host::Ip(ip) => request.ip_addrs.push(*ip),
                Host::Name(name) => request.dns_names.push(name.clone()),
            }
            issued.push(issue::issue(&ca, &request)?);
        }

        for (node, cert) in planned.iter().zip(&issued) {
            write_node(node, cert, &bundle)?;
        }
        Ok(Created {
            args,
            ca_dir,
            ca_created,
            planned,
            issued,
        })
    }
}

impl Created {
    /// The configuration each node was given.
    pub fn configs(&self) -> impl Iterator<Item = &DaemonConfig> {
        self.planned.iter().map(|p| &p.config)
    }

    /// What was written, and how to start each node.
    pub fn print(&self) {
        let Created {
            args,
            ca_dir,
            ca_created,
            planned,
            issued,
        } = self;
        let ca_created = *ca_created;

        println!(
            "cluster {}: CA {} in {}",
            args.cluster,
            if ca_created { "created" } else { "reused" },
            ca_dir.dir.display()
        );
        println!(
            "  keep {} away from the nodes; each node needs only its own directory",
            ca_dir.key_path().display()
        );
        let mut notes = Vec::new();
        for (node, cert) in planned.iter().zip(issued.iter()) {
            let address = match &node.spec.host {
                Host::Ip(_) => node.address.to_string(),
                Host::Name(name) => format!("{name}:{}, now {}", node.spec.port, node.address),
            };
            println!(
                "node {} ({address}): {}",
                node.spec.id.0,
                node.dir.display()
            );
            println!(
                "  {NODE_CERT_FILE} (until {}), {NODE_KEY_FILE} (mode 0600), {NODE_BUNDLE_FILE}, \
             {NODE_CONFIG_FILE}",
                format_unix(cert.info.not_after_unix)
            );
            println!("  data_dir {}", node.config.data_dir.display());
            println!("  socket   {}", node.config.socket.display());
            if args.system_paths {
                continue; // Its paths are the installed machine's, not this one's.
            }
            if let Err(e) = DaemonConfig::load(&node.dir.join(NODE_CONFIG_FILE)) {
                notes.push(format!(
                    "note: node {} does not pass check-config on this machine: {e}",
                    node.spec.id.0
                ));
            }
        }
        for note in notes {
            println!("{note}");
        }
        if args.system_paths {
            println!(
                "on each machine N, with nodeN/ copied there (as root, from regent's source):"
            );
            for node in planned {
                println!(
                    "  systemd/install.sh --node-dir {}   && systemctl enable --now regent",
                    node.dir.file_name().unwrap_or_default().to_string_lossy()
                );
            }
        } else {
            println!(
            "start each node (on its own machine, its directory copied there at the same path):"
        );
        }
        for node in planned.iter().filter(|_| !args.system_paths) {
            println!(
                "  regent run --config {}",
                node.dir.join(NODE_CONFIG_FILE).display()
            );
        }
        for node in planned.iter().filter(|n| args.join.contains(&n.spec.id.0)) {
            println!(
                "then, on the leader: regent members add {} {}   (promote it once caught up)",
                node.spec.id.0, node.address
            );
        }
    }
}

/// The address peers dial: the IP as given, or the name resolved now.
fn resolve(spec: &NodeSpec) -> anyhow::Result<SocketAddr> {
    match &spec.host {
        Host::Ip(ip) => Ok(SocketAddr::new(*ip, spec.port)),
        Host::Name(name) => (name.as_str(), spec.port)
            .to_socket_addrs()
            .with_context(|| format!("node {}: resolving {name}", spec.id.0))?
            .next()
            .with_context(|| format!("node {}: {name} resolves to no address", spec.id.0)),
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(_) => {
            std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
        }
    }
}

/// A YAML scalar for `text`, quoted when YAML needs it.
fn yaml_scalar(text: &str) -> anyhow::Result<String> {
    Ok(serde_yaml::to_string(text)?.trim_end().to_string())
}

fn yaml_path(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8; YAML cannot hold it", path.display()))?;
    yaml_scalar(text)
}

/// The regent.yaml of one node: only what differs per node; the rest takes its default.
fn render_config(
    cluster: &str,
    id: NodeId,
    nodes: &[NodeSpec],
    addresses: &BTreeMap<NodeId, SocketAddr>,
    node_dir: &Path,
    data_dir: &Path,
    socket: &Path,
) -> anyhow::Result<String> {
    let mut out = String::new();
    out.push_str(&format!(
        "# regent configuration of node {} of cluster {cluster}.\n\
         # Written by `regent admin cluster init` at {}.\n\
         # Every setting not here takes its default; config/regent.yaml in regent's source\n\
         # documents them all. Check this file with: regent check-config {}\n\n",
        id.0,
        format_unix(unix_now()),
        node_dir.join(NODE_CONFIG_FILE).display()
    ));
    out.push_str(&format!("cluster: {cluster}\n"));
    out.push_str(&format!("node_id: {}\n", id.0));
    out.push_str(&format!("listen: \"{}\"\n", addresses[&id]));
    out.push_str("members:\n");
    for spec in nodes {
        out.push_str(&format!(
            "  - {{ id: {}, address: \"{}\" }}",
            spec.id.0, addresses[&spec.id]
        ));
        if let Host::Name(name) = &spec.host {
            out.push_str(&format!("  # {name}"));
        }
        out.push('\n');
    }
    out.push_str(&format!("data_dir: {}\n", yaml_path(data_dir)?));
    out.push_str(&format!("socket: {}\n", yaml_path(socket)?));
    out.push_str("tls:\n");
    out.push_str(&format!(
        "  cert: {}\n",
        yaml_path(&node_dir.join(NODE_CERT_FILE))?
    ));
    out.push_str(&format!(
        "  key: {}\n",
        yaml_path(&node_dir.join(NODE_KEY_FILE))?
    ));
    out.push_str(&format!(
        "  ca_bundle: {}\n",
        yaml_path(&node_dir.join(NODE_BUNDLE_FILE))?
    ));
    Ok(out)
}

/// Creates the node's directory (it must not exist) and writes its four files.
fn write_node(node: &Planned, cert: &Issued, bundle: &[u8]) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&node.dir)
        .with_context(|| format!("creating {}", node.dir.display()))?;
    issue::write_new(
        cert,
        &node.dir.join(NODE_CERT_FILE),
        &node.dir.join(NODE_KEY_FILE),
    )?;
    let hint = "cluster init never overwrites a node";
    files::Staged::write(&node.dir.join(NODE_BUNDLE_FILE), bundle, files::PUBLIC_MODE)?
        .create_new(hint)?;
    let path = node.dir.join(NODE_CONFIG_FILE);
    files::Staged::write(&path, node.yaml.as_bytes(), files::PUBLIC_MODE)?.create_new(hint)?;
    // Pair check: what the daemon will read is what was meant.
    let back = DaemonConfig::load_unvalidated(&path)?;
    assert_eq!(
        back,
        node.config,
        "{} reads back differently",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_specs_parse() {
        let spec = parse_node_spec("1=127.0.0.1:7401").unwrap();
        assert_eq!(spec.id, NodeId(1));
        assert_eq!(spec.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(spec.port, 7401);
        let spec = parse_node_spec("2=[::1]:7402").unwrap();
        assert_eq!(spec.host, Host::Ip("::1".parse().unwrap()));
        let spec = parse_node_spec("3=DB3.example.com:7403").unwrap();
        assert_eq!(spec.host, Host::Name("db3.example.com".into()));
        assert_eq!(spec.to_string(), "3=db3.example.com:7403");
        for bad in [
            "1",
            "0=127.0.0.1:7401",
            "x=127.0.0.1:7401",
            "1=127.0.0.1",
            "1=127.0.0.1:0",
            "1=127.0.0.1:70000",
            "1=::1:7401",
            "1=[::1]7401",
            "1=bad_name:7401",
            "1=:7401",
        ] {
            assert!(parse_node_spec(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn the_written_config_parses_to_what_was_meant() {
        let nodes = vec![
            parse_node_spec("1=127.0.0.1:7401").unwrap(),
            parse_node_spec("2=[::1]:7402").unwrap(),
        ];
        let addresses: BTreeMap<NodeId, SocketAddr> =
            nodes.iter().map(|n| (n.id, resolve(n).unwrap())).collect();
        let yaml = render_config(
            "demo",
            NodeId(2),
            &nodes,
            &addresses,
            Path::new("/srv/a dir/node2"),
            Path::new("/srv/a dir/node2/data"),
            Path::new("/srv/a dir/node2/regent.sock"),
        )
        .unwrap();
        let config = DaemonConfig::parse(&yaml).unwrap();
        assert_eq!(config.listen, "[::1]:7402".parse().unwrap());
        assert_eq!(config.peer_addresses().len(), 1);
        assert_eq!(config.tls.key, Path::new("/srv/a dir/node2/node.key"));
        config.validate_settings().unwrap();
    }
}
