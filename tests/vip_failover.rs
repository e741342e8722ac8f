//! The virtual IP on real processes (`vip:`): three regents in network namespaces on a bridge,
//! the test in the root namespace as the client that reaches the VIP over the bridge. Through
//! kill -9, SIGSTOP and a partition of the leader: never two nodes hold the address at once
//! (sampled all along), and the client reaches the new leader's service on the VIP within the
//! failover bound `explain-timing` prints (plus the kernel's one-second lifetime check and a
//! busy machine's slack).

use regent_chaos::cluster::Cluster;
use regent_chaos::net::{Net, NetChoice};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_regent");
const SERVICE_PORT: u16 = 7777;
/// lifetime_s 2 (+1 s of the kernel's check) must end within the lease: 3500 × 0.95 = 3325 ms.
const TIMING: &str = "timing:\n  election_timeout_min_ms: 3500\n  heartbeat_interval_ms: 250\n";
const SLACK: Duration = Duration::from_secs(4);
const WAIT: Duration = Duration::from_secs(40);

fn status(c: &Cluster, id: u64) -> Option<serde_json::Value> {
    regent_client::fetch_status(&c.socket(id)).ok()
}

fn writable(c: &Cluster, except: Option<u64>) -> Option<u64> {
    (1..=c.n)
        .filter(|&id| Some(id) != except)
        .find(|&id| status(c, id).is_some_and(|s| s["writable"] == true))
}

/// Which nodes hold `vip` on their eth0 now.
fn holders(c: &Cluster, vip: IpAddr) -> Vec<u64> {
    (1..=c.n)
        .filter(|&id| {
            let out = c
                .net
                .command(id, Path::new("ip"))
                .args(["-o", "addr", "show", "dev", "eth0"])
                .output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {vip}/")))
        })
        .collect()
}

/// Asks the service on the VIP who it is.
fn who(vip: IpAddr) -> Option<u64> {
    let addr = SocketAddr::new(vip, SERVICE_PORT);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"?\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.trim().parse().ok()
}

fn failover_bound(config: &Path) -> Duration {
    let config = regent_daemon::config::DaemonConfig::load_unvalidated(config).unwrap();
    Duration::from_millis(config.explain_timing().failover_worst_ms().ceil() as u64)
}

/// When the holders were sampled, and who held the VIP.
type Sample = (Instant, Vec<u64>);

struct Services(Vec<Child>);

impl Drop for Services {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_virtual_ip_follows_the_writable_node_and_is_never_held_twice() {
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let net = match Net::setup(3, NetChoice::Namespaces) {
        Ok(net) => net,
        Err(err) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: no network namespaces here ({err:#})");
            return;
        }
        Err(err) => panic!("network namespaces: {err:#}"),
    };
    let IpAddr::V4(first) = net.listen_address(1).ip() else {
        panic!("IPv4 namespaces")
    };
    let [a, b, c_, _] = first.octets();
    let vip = IpAddr::from([a, b, c_, 200]);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{TIMING}vip:\n  address: {vip}\n  interface: eth0\n  lifetime_s: 2\n  announce_count: 3\n  announce_interval_ms: 100\n"
    );
    let mut c = Cluster::init(dir.path(), Path::new(BIN), 3, net, &extra).unwrap();
    let bound = failover_bound(&c.config(1)) + Duration::from_secs(1) + SLACK;
    // A service on every node that says which node it is, listening on all addresses: only
    // the VIP's holder is reached through the VIP.
    let mut services = Services(Vec::new());
    for id in 1..=3 {
        let script = format!(
            "import socket,threading\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{SERVICE_PORT}));s.listen(64)\nwhile True:\n c,_=s.accept()\n try:\n  c.recv(16);c.sendall(b'{id}\\n')\n except OSError: pass\n c.close()\n"
        );
        services.0.push(
            c.net
                .command(id, Path::new("python3"))
                .args(["-c", &script])
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    for id in 1..=3 {
        c.start(id).unwrap();
    }
    let started = Instant::now();
    let mut leader = loop {
        if let Some(l) = writable(&c, None) {
            break l;
        }
        assert!(started.elapsed() < WAIT, "no leader");
        std::thread::sleep(Duration::from_millis(50));
    };

    // Sample the holders all along, on a thread.
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let cluster = Arc::new(Mutex::new(c));
    let sampler = {
        let (stop, samples, cluster) = (stop.clone(), samples.clone(), cluster.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let h = holders(&cluster.lock().unwrap(), vip);
                samples.lock().unwrap().push((Instant::now(), h));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let reach = |expect: Option<u64>, not: Option<u64>| -> (u64, Duration) {
        let from = Instant::now();
        loop {
            if let Some(n) = who(vip) {
                if expect.is_none_or(|e| e == n) && not != Some(n) {
                    return (n, from.elapsed());
                }
            }
            assert!(
                from.elapsed() < WAIT,
                "the VIP did not reach {expect:?} (not {not:?})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (first_seen, _) = reach(Some(leader), None);
    assert_eq!(first_seen, leader);

    for fault in ["kill", "pause", "partition"] {
        let at = Instant::now();
        {
            let mut c = cluster.lock().unwrap();
            match fault {
                "kill" => c.kill(leader),
                "pause" => {
                    c.pause(leader);
                }
                _ => {
                    for other in (1..=3).filter(|&o| o != leader) {
                        c.net.cut(leader, other).unwrap();
                        c.net.cut(other, leader).unwrap();
                    }
                }
            }
        }
        let (next, _) = reach(None, Some(leader));
        let took = at.elapsed();
        assert!(
            took <= bound,
            "{fault}: the VIP reached node {next} after {took:?}, past {bound:?}"
        );
        let now_leader = writable(&cluster.lock().unwrap(), Some(leader));
        assert_eq!(
            now_leader,
            Some(next),
            "{fault}: the VIP's holder is the leader"
        );
        {
            let mut c = cluster.lock().unwrap();
            match fault {
                "kill" => c.start(leader).unwrap(),
                "pause" => c.resume(leader),
                _ => c.net.heal().unwrap(),
            }
        }
        leader = next;
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let samples = samples.lock().unwrap();
    let twice: Vec<_> = samples.iter().filter(|(_, h)| h.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "the VIP held by two nodes at once: {twice:?}"
    );
    assert!(samples.len() > 100, "{} samples", samples.len());
    cluster.lock().unwrap().kill_all();
}
