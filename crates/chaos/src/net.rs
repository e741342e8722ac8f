//! The network the chaos nodes talk over, and its faults.
//!
//! - [`Net::Namespaces`] (root, with `ip`): every node in a network namespace of its own with
//!   its own address, joined by veth pairs to one bridge. A one-way cut from A to B is a
//!   blackhole route to B in A's namespace; loss, delay and reordering are `tc netem` on each
//!   node's interface.
//! - [`Net::Loopback`]: every node on loopback, reaching its peers through the fault-injecting
//!   UDP relay of [`super::relay`] (cuts, loss, delay, reordering in user space).
//!
//! Invariant: every namespace, veth and bridge made here has a name unique to the run (a tag
//! from the process id and the clock) and is deleted when the `Net` is dropped, whichever way
//! the run ends.

use super::relay::{Netem, Relay};
use anyhow::{bail, Context};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;

/// The port every node listens on inside its namespace.
const NS_PORT: u16 = 7401;

pub enum Net {
    Namespaces(Namespaces),
    Loopback(LoopbackNet),
}

/// Which network to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetChoice {
    /// Namespaces when `ip netns` works here, else loopback with the relay.
    Auto,
    Namespaces,
    Loopback,
}

impl Net {
    /// Sets up the network for `n` nodes.
    pub fn setup(n: u64, choice: NetChoice) -> anyhow::Result<Net> {
        match choice {
            NetChoice::Loopback => Ok(Net::Loopback(LoopbackNet::new(n)?)),
            NetChoice::Namespaces => Ok(Net::Namespaces(Namespaces::new(n)?)),
            NetChoice::Auto => match Namespaces::new(n) {
                Ok(ns) => Ok(Net::Namespaces(ns)),
                Err(err) => {
                    eprintln!("chaos: network namespaces unavailable ({err:#}); using loopback and the UDP relay");
                    Ok(Net::Loopback(LoopbackNet::new(n)?))
                }
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Net::Namespaces(ns) if ns.relay.is_some() => "namespaces+relay (no tc netem here)",
            Net::Namespaces(_) => "namespaces+netem",
            Net::Loopback(_) => "loopback+relay",
        }
    }

    /// The run's unique tag in interface and namespace names (`rc<tag>...`), if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Net::Namespaces(ns) => Some(&ns.tag),
            Net::Loopback(_) => None,
        }
    }

    /// The address node `id` listens on (what `cluster init` puts in its configuration).
    pub fn listen_address(&self, id: u64) -> SocketAddr {
        match self {
            Net::Namespaces(ns) => ns.address(id),
            Net::Loopback(lo) => lo.real[&id],
        }
    }

    /// The address node `from` dials to reach `to`.
    pub fn peer_address(&self, from: u64, to: u64) -> SocketAddr {
        let _ = from;
        match self {
            Net::Namespaces(ns) => match &ns.relay {
                Some(relay) => relay.fronts[&to],
                None => ns.address(to),
            },
            Net::Loopback(lo) => lo.relay.as_ref().expect("relay started").fronts[&to],
        }
    }

    /// Starts forwarding (loopback: the relay, once the real addresses are fixed).
    pub fn start(&mut self) {
        match self {
            Net::Loopback(lo) => lo.relay = Some(Relay::start(&lo.real)),
            Net::Namespaces(ns) if !ns.netem_available => {
                let real = (1..=ns.n).map(|id| (id, ns.address(id))).collect();
                let [a, b] = ns.subnet;
                ns.relay = Some(Relay::start_on([10, a, b, 254].into(), &real));
            }
            Net::Namespaces(_) => {}
        }
    }

    /// The command that runs `program` as node `id` (inside its namespace).
    pub fn command(&self, id: u64, program: &std::path::Path) -> Command {
        match self {
            Net::Namespaces(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.netns(id)]).arg(program);
                c
            }
            Net::Loopback(_) => Command::new(program),
        }
    }

    /// Drops every packet from `from` to `to` (one way) until [`Net::heal`].
    pub fn cut(&mut self, from: u64, to: u64) -> anyhow::Result<()> {
        match self {
            Net::Namespaces(ns) => ns.cut(from, to),
            Net::Loopback(lo) => {
                lo.relay.as_ref().expect("relay started").cut(from, to);
                Ok(())
            }
        }
    }

    /// Loss, delay and reordering on every node's traffic until [`Net::heal`].
    pub fn netem(&mut self, netem: Netem) -> anyhow::Result<()> {
        match self {
            Net::Namespaces(ns) => ns.netem(netem),
            Net::Loopback(lo) => {
                lo.relay
                    .as_ref()
                    .expect("relay started")
                    .set_netem(Some(netem));
                Ok(())
            }
        }
    }

    /// Removes every cut and every netem setting.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        match self {
            Net::Namespaces(ns) => ns.heal(),
            Net::Loopback(lo) => {
                let relay = lo.relay.as_ref().expect("relay started");
                relay.heal_all();
                relay.set_netem(None);
                Ok(())
            }
        }
    }
}

/// Loopback addresses and the relay.
pub struct LoopbackNet {
    real: BTreeMap<u64, SocketAddr>,
    relay: Option<Relay>,
}

impl LoopbackNet {
    fn new(n: u64) -> anyhow::Result<LoopbackNet> {
        let mut real = BTreeMap::new();
        for id in 1..=n {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            real.insert(id, SocketAddr::from(([127, 0, 0, 1], port)));
        }
        Ok(LoopbackNet { real, relay: None })
    }
}

/// One namespace per node, veths to a bridge; removed on drop.
pub struct Namespaces {
    tag: String,
    n: u64,
    /// 10.a.b.0/24, unique per run.
    subnet: [u8; 2],
    cuts: BTreeSet<(u64, u64)>,
    netem_on: bool,
    made_bridge: bool,
    made: Vec<u64>,
    /// Whether `tc netem` works here (probed once).
    netem_available: bool,
    /// The relay the nodes talk through when it does not.
    relay: Option<Relay>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (is iproute2 installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Namespaces {
    fn new(n: u64) -> anyhow::Result<Namespaces> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mix = (std::process::id() as u64).wrapping_mul(0x9E37_79B9) ^ nanos as u64;
        let tag = format!("{:06x}", mix & 0xff_ffff);
        let mut ns = Namespaces {
            subnet: [100 + (mix % 100) as u8, ((mix >> 8) % 250) as u8],
            tag,
            n,
            cuts: BTreeSet::new(),
            netem_on: false,
            made_bridge: false,
            made: Vec::new(),
            netem_available: false,
            relay: None,
        };
        ns.build().context("setting up network namespaces")?;
        Ok(ns)
    }

    fn bridge(&self) -> String {
        format!("rc{}b", self.tag)
    }

    fn netns(&self, id: u64) -> String {
        format!("rc{}n{id}", self.tag)
    }

    fn host_veth(&self, id: u64) -> String {
        format!("rc{}v{id}", self.tag)
    }

    fn address(&self, id: u64) -> SocketAddr {
        let [a, b] = self.subnet;
        SocketAddr::from(([10, a, b, id as u8], NS_PORT))
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let bridge = self.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.made_bridge = true;
        ip(&["link", "set", &bridge, "up"])?;
        let [a, b] = self.subnet;
        ip(&["addr", "add", &format!("10.{a}.{b}.254/24"), "dev", &bridge])?;
        for id in 1..=self.n {
            let (netns, veth) = (self.netns(id), self.host_veth(id));
            let peer = format!("rc{}p{id}", self.tag);
            ip(&["netns", "add", &netns])?;
            self.made.push(id);
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &peer, "netns", &netns])?;
            ip(&["link", "set", &veth, "master", &bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&["-n", &netns, "link", "set", &peer, "name", "eth0"])?;
            let cidr = format!("{}/24", self.address(id).ip());
            ip(&["-n", &netns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        }
        let probe = [
            "-n",
            &self.netns(1),
            "qdisc",
            "add",
            "dev",
            "eth0",
            "root",
            "netem",
            "delay",
            "1ms",
        ];
        self.netem_available = run("tc", &probe).is_ok();
        if self.netem_available {
            run(
                "tc",
                &["-n", &self.netns(1), "qdisc", "del", "dev", "eth0", "root"],
            )?;
        }
        Ok(())
    }

    fn cut(&mut self, from: u64, to: u64) -> anyhow::Result<()> {
        if let Some(relay) = &self.relay {
            relay.cut(from, to);
            return Ok(());
        }
        if self.cuts.insert((from, to)) {
            let target = format!("{}/32", self.address(to).ip());
            ip(&[
                "-n",
                &self.netns(from),
                "route",
                "add",
                "blackhole",
                &target,
            ])?;
        }
        Ok(())
    }

    fn netem(&mut self, netem: Netem) -> anyhow::Result<()> {
        if let Some(relay) = &self.relay {
            relay.set_netem(Some(netem));
            return Ok(());
        }
        for id in 1..=self.n {
            let mut args: Vec<String> = ["-n", &self.netns(id), "qdisc", "replace", "dev"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            args.extend(["eth0", "root", "netem"].map(String::from));
            args.extend(netem.tc_args());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run("tc", &refs)?;
        }
        self.netem_on = true;
        Ok(())
    }

    fn heal(&mut self) -> anyhow::Result<()> {
        if let Some(relay) = &self.relay {
            relay.heal_all();
            relay.set_netem(None);
        }
        for (from, to) in std::mem::take(&mut self.cuts) {
            let target = format!("{}/32", self.address(to).ip());
            ip(&[
                "-n",
                &self.netns(from),
                "route",
                "del",
                "blackhole",
                &target,
            ])?;
        }
        if std::mem::take(&mut self.netem_on) {
            for id in 1..=self.n {
                run(
                    "tc",
                    &["-n", &self.netns(id), "qdisc", "del", "dev", "eth0", "root"],
                )?;
            }
        }
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.relay = None;
        for &id in &self.made {
            let _ = ip(&["netns", "del", &self.netns(id)]);
            let _ = ip(&["link", "del", &self.host_veth(id)]);
        }
        if self.made_bridge {
            let _ = ip(&["link", "del", &self.bridge()]);
        }
    }
}
