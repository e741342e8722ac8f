//! `regent admin`: the cluster CA and node certificates — create, issue, inspect, renew, and
//! rotate the CA — over `regent_transport::pki`.
//!
//! Invariant: every key this command writes is created with mode 0600 before its bytes are
//! written, and every replaced file is replaced by rename; a CA key readable by group or
//! others is refused, with the `chmod 600` that fixes it.

use anyhow::Context;
use clap::{Args, Subcommand};
use regent_raft::NodeId;
use regent_transport::pki::ca::CaDir;
use regent_transport::pki::identity::{format_unix, unix_now, CertInfo, NodeIdentity};
use regent_transport::pki::{files, issue, IssueRequest, Validity};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Default lifetime of a CA.
pub const CA_DAYS_DEFAULT: u32 = 3650;
/// Default lifetime of a node certificate.
pub const CERT_DAYS_DEFAULT: u32 = 365;

/// File names `cert issue` writes into its `--out` directory.
pub const NODE_CERT_FILE: &str = "node.pem";
pub const NODE_KEY_FILE: &str = "node.key";
pub const NODE_BUNDLE_FILE: &str = "ca-bundle.pem";

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// The cluster certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Node certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// A new cluster in one go: a CA, and for every node its certificate, key and regent.yaml.
    Cluster {
        #[command(subcommand)]
        command: super::cluster_init::ClusterCommand,
    },
    /// Renew a node certificate with a NEW key, signed by the CA's current certificate.
    ///
    /// KEY must be CERT's own key: a key of another certificate is refused before anything
    /// is written. The certificate and key files are written aside and renamed into place.
    /// A running regent keeps using its old certificate until it reloads (`--reload SOCKET`
    /// here, `systemctl reload regent`, or SIGHUP); established links stay up, new ones
    /// present the new certificate.
    RotateCerts {
        /// The CA directory (made by `regent admin ca init`).
        #[arg(long)]
        ca_dir: PathBuf,
        /// The node certificate to renew (its identity and names are kept).
        #[arg(long)]
        cert: PathBuf,
        /// The certificate's key file, replaced by a new key.
        #[arg(long)]
        key: PathBuf,
        /// Days the new certificate is valid, 1..=36500.
        #[arg(long, default_value_t = CERT_DAYS_DEFAULT)]
        days: u32,
        /// Then ask the running regent on this socket to reload (finishes the rotation).
        #[arg(long)]
        reload: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create a new CA in DIR: ca.pem, ca.key (mode 0600) and bundle.pem.
    Init {
        /// The CA directory to create (or an empty one); it must not hold a CA yet.
        #[arg(long)]
        dir: PathBuf,
        /// Days the CA certificate is valid, 1..=36500.
        #[arg(long, default_value_t = CA_DAYS_DEFAULT)]
        days: u32,
    },
    /// Start a CA rotation: create a new CA, keep the old one as ca.old.*, and write a
    /// bundle.pem trusting both. Then install the bundle on every node and reload, reissue
    /// every node (`rotate-certs`) and reload, and finish with `ca drop-old`.
    Rotate {
        /// The CA directory (made by `regent admin ca init`), with no rotation in progress.
        #[arg(long)]
        dir: PathBuf,
        /// Days the new CA certificate is valid, 1..=36500.
        #[arg(long, default_value_t = CA_DAYS_DEFAULT)]
        days: u32,
    },
    /// Finish a CA rotation: bundle.pem trusts only the current CA; the old CA's certificate
    /// and key are deleted. Run it only once every node holds a certificate from the new CA.
    DropOld {
        /// The CA directory whose rotation to finish.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Show the CAs that DIR's bundle.pem trusts.
    Show {
        /// The CA directory to show.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Issue a node certificate and a new key into OUT: node.pem, node.key (mode 0600), and a
    /// copy of the CA bundle, ca-bundle.pem.
    Issue {
        /// The CA directory (made by `regent admin ca init`).
        #[arg(long)]
        ca_dir: PathBuf,
        /// The node id the certificate names (`regent://<cluster>/node/<id>`).
        #[arg(long)]
        node_id: u64,
        /// The cluster name: lowercase letters, digits and '-'.
        #[arg(long)]
        cluster: String,
        /// The directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// Extra DNS names (repeatable). A wildcard may only be the whole leftmost label
        /// (`*.example.com`).
        #[arg(long)]
        dns: Vec<String>,
        /// IP addresses (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Days the certificate is valid, 1..=36500.
        #[arg(long, default_value_t = CERT_DAYS_DEFAULT)]
        days: u32,
    },
    /// Print what a certificate file says: subject, node id, SANs, issuer, validity, days left.
    Inspect {
        /// A PEM file with one or more certificates.
        file: PathBuf,
    },
}

pub fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AdminCommand::Ca { command } => run_ca(command),
        AdminCommand::Cert { command } => run_cert(command),
        AdminCommand::Cluster { command } => super::cluster_init::run(command),
        AdminCommand::RotateCerts {
            ca_dir,
            cert,
            key,
            days,
            reload,
        } => rotate_certs(ca_dir, cert, key, days, reload),
    }
}

fn run_ca(command: CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Init { dir, days } => {
            let ca = CaDir::new(&dir);
            let info = ca.init(days)?;
            println!("created CA {:?}", info.subject);
            println!("  certificate: {}", ca.cert_path().display());
            println!(
                "  key:         {} (mode 0600; keep it offline if you can)",
                ca.key_path().display()
            );
            println!(
                "  bundle:      {} (install on every node as its ca_bundle)",
                ca.bundle_path().display()
            );
            println!("  valid until: {}", format_unix(info.not_after_unix));
        }
        CaCommand::Rotate { dir, days } => {
            let ca = CaDir::new(&dir);
            let rotation = ca.rotate(days)?;
            println!(
                "new CA {:?}, valid until {}",
                rotation.new.subject,
                format_unix(rotation.new.not_after_unix)
            );
            println!(
                "old CA {:?} kept as {}",
                rotation.old.subject,
                ca.old_cert_path().display()
            );
            println!("{} now trusts both. Next:", ca.bundle_path().display());
            println!(
                "  1. install {} on every node and reload it;",
                ca.bundle_path().display()
            );
            println!("  2. on every node: regent admin rotate-certs --ca-dir {} --cert ... --key ..., then reload;", dir.display());
            println!(
                "  3. regent admin ca drop-old --dir {}, install the bundle again and reload.",
                dir.display()
            );
        }
        CaCommand::DropOld { dir } => {
            let ca = CaDir::new(&dir);
            let dropped = ca.drop_old()?;
            println!(
                "dropped old CA {:?}; its certificate and key are deleted",
                dropped.subject
            );
            println!(
                "{} now trusts only the current CA.",
                ca.bundle_path().display()
            );
            println!("Install it on every node and reload; nodes still holding a certificate from the old CA will be refused.");
        }
        CaCommand::Show { dir } => {
            let ca = CaDir::new(&dir);
            let now = unix_now();
            for (i, info) in ca.bundle()?.iter().enumerate() {
                println!("bundle CA #{}: {:?}", i + 1, info.subject);
                println!("  serial:    {}", info.serial);
                println!(
                    "  not after: {} ({})",
                    format_unix(info.not_after_unix),
                    days_left_text(info, now)
                );
            }
            if files::exists(&ca.old_cert_path()) {
                println!(
                    "a rotation is in progress: finish it with `regent admin ca drop-old --dir {}`",
                    dir.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_cert(command: CertCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertCommand::Issue {
            ca_dir,
            node_id,
            cluster,
            out,
            dns,
            ip,
            days,
        } => {
            regent_transport::pki::ca::validate_days(days)?;
            let identity = NodeIdentity::new(&cluster, NodeId(node_id))?;
            let ca_dir = CaDir::new(&ca_dir);
            let ca = ca_dir.load()?;
            let request = IssueRequest {
                identity,
                dns_names: dns,
                ip_addrs: ip,
                validity: Validity::days_from_now(days),
            };
            let issued = issue::issue(&ca, &request)?;
            files::ensure_dir(&out)?;
            let cert_path = out.join(NODE_CERT_FILE);
            let key_path = out.join(NODE_KEY_FILE);
            let bundle_path = out.join(NODE_BUNDLE_FILE);
            issue::write_new(&issued, &cert_path, &key_path)?;
            let bundle = files::read_pem_file(&ca_dir.bundle_path())?;
            files::Staged::write(&bundle_path, &bundle, files::PUBLIC_MODE)?.replace()?;
            println!("issued {} ({})", request.identity, request.identity.uri());
            println!("  certificate: {}", cert_path.display());
            println!("  key:         {} (mode 0600)", key_path.display());
            println!("  CA bundle:   {}", bundle_path.display());
            println!("  DNS names:   {}", issued.info.dns_names.join(", "));
            if !issued.info.ip_addrs.is_empty() {
                let ips: Vec<String> = issued.info.ip_addrs.iter().map(|i| i.to_string()).collect();
                println!("  IP addrs:    {}", ips.join(", "));
            }
            println!("  valid until: {}", format_unix(issued.info.not_after_unix));
        }
        CertCommand::Inspect { file } => {
            let certs = files::read_certificates(&file)?;
            let now = unix_now();
            for (i, der) in certs.iter().enumerate() {
                let info = CertInfo::parse(der.as_ref()).map_err(|reason| {
                    anyhow::anyhow!("{}: certificate #{}: {reason}", file.display(), i + 1)
                })?;
                if certs.len() > 1 {
                    println!("certificate #{} of {}", i + 1, certs.len());
                }
                print_cert(&file, &info, now);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rotate_certs(
    ca_dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    days: u32,
    reload: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let ca = CaDir::new(&ca_dir)
        .load()
        .with_context(|| format!("loading the CA from {}", ca_dir.display()))?;
    let renewal = issue::renew(&ca, &cert, &key, days)?;
    let identity = renewal.new.identity()?;
    println!(
        "renewed {identity} with a new key, signed by {:?}",
        renewal.new.issuer
    );
    println!(
        "  old: serial {}, expires {}",
        renewal.old.serial,
        format_unix(renewal.old.not_after_unix)
    );
    println!(
        "  new: serial {}, expires {}",
        renewal.new.serial,
        format_unix(renewal.new.not_after_unix)
    );
    println!(
        "  replaced {} and {} (written aside, then renamed)",
        cert.display(),
        key.display()
    );
    let Some(socket) = reload else {
        println!("A running regent keeps its old certificate until it reloads: run");
        println!("  systemctl reload regent   (or kill -HUP, or POST /v1/admin/reload)");
        return Ok(ExitCode::SUCCESS);
    };
    let answer = regent_client::request(
        &socket,
        "POST",
        "/v1/admin/reload",
        b"",
        std::time::Duration::from_secs(15),
    )?;
    if answer.status != 200 {
        anyhow::bail!(
            "the files are rotated, but the reload through {} failed: {}",
            socket.display(),
            answer.error_text()
        );
    }
    println!(
        "reloaded: {}",
        answer.json()?["reloaded"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

fn print_cert(file: &std::path::Path, info: &CertInfo, now: i64) {
    println!("file:        {}", file.display());
    println!("subject:     {}", info.subject);
    println!("issuer:      {}", info.issuer);
    println!("serial:      {}", info.serial);
    match (info.is_ca, info.identity()) {
        (true, _) => println!("node:        none (a CA certificate)"),
        (false, Ok(identity)) => println!("node:        {} ({})", identity, identity.uri()),
        (false, Err(e)) => println!("node:        none ({e})"),
    }
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    println!("URI SANs:    {}", list(info.uris.clone()));
    println!("DNS SANs:    {}", list(info.dns_names.clone()));
    println!(
        "IP SANs:     {}",
        list(info.ip_addrs.iter().map(|i| i.to_string()).collect())
    );
    println!("not before:  {}", format_unix(info.not_before_unix));
    println!("not after:   {}", format_unix(info.not_after_unix));
    println!("days left:   {}", days_left_text(info, now));
}

fn days_left_text(info: &CertInfo, now: i64) -> String {
    if now < info.not_before_unix {
        format!(
            "NOT YET VALID (starts {})",
            format_unix(info.not_before_unix)
        )
    } else if now > info.not_after_unix {
        format!("EXPIRED {} days ago", -info.days_left(now))
    } else {
        info.days_left(now).to_string()
    }
}
