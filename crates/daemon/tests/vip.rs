//! The virtual IP on a real kernel, in network namespaces this test creates (and deletes, even
//! on failure): the address added and removed through netlink, the gratuitous ARP and the
//! neighbour advertisement on the wire, and a client that follows the address from one node to
//! another without flushing its neighbour cache. Needs root; without it each test says so and
//! passes, unless `CI` is set, where it fails.
//!
//! Namespaces are named `rv<pid><tag>` so parallel runs do not clash; inside them the
//! interfaces have fixed names. Code runs in a namespace on a thread that entered it with
//! `setns`, with a one-thread tokio runtime of its own (the module's sockets belong to the
//! namespace of the thread that opens them). The `ip` command sets up the namespaces; the
//! module under test never runs it.

use regent_daemon::vip::{self, Vip, VipConfig, ARP_REPLY, ARP_REQUEST, ETHERTYPE_ARP};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

/// The port each node's test server listens on (in its own namespace).
const PORT: u16 = 7000;

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: needs root (network namespaces), and CI is set"
    );
    eprintln!("{test}: skipped: needs root to create network namespaces");
    false
}

/// Runs `ip ARGS`, panicking with its stderr on failure; returns its stdout.
fn ip(args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ip -n NS ARGS`.
fn ip_in(ns: &str, args: &str) -> String {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    ip(&all)
}

/// Network namespaces deleted on drop, so a failing test leaves none behind.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// Creates `rv<pid><tag>` for each tag, with loopback up.
    fn create(tags: &[&str]) -> Namespaces {
        let mut namespaces = Namespaces { names: Vec::new() };
        for tag in tags {
            let name = format!("rv{}{tag}", std::process::id());
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            ip(&["netns", "add", &name]);
            namespaces.names.push(name.clone());
            ip_in(&name, "link set lo up");
        }
        namespaces
    }

    fn name(&self, i: usize) -> String {
        self.names[i].clone()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// Enters network namespace `ns` on the calling thread.
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("opening the netns");
    // SAFETY: a valid descriptor of a network namespace; only this thread moves.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside `ns` and returns its result (a panic in it fails the test).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Whether `address` is on `dev` in `ns`, read back with `ip -o addr`.
fn holds(ns: &str, dev: &str, address: IpAddr) -> bool {
    ip_in(ns, &format!("-o addr show dev {dev}")).contains(&format!(" {address}/"))
}

/// The MAC of `dev` in `ns`.
fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let out = ip_in(ns, &format!("-o link show dev {dev}"));
    let text = out
        .split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC in {out:?}"));
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

enum Op {
    Acquire,
    Release,
    RemoveStale,
    Renew,
    Held,
}

/// An operation for a node and where its answer goes (`held()` after it, or what
/// `remove_stale` returned).
type Call = (Op, std_mpsc::Sender<Result<bool, String>>);

/// A node: a thread in its namespace that owns a `Vip` and serves its name on [`PORT`] on
/// every address, IPv4 and IPv6 (so on the VIP only while it holds it).
struct Node {
    ops: Option<tokio::sync::mpsc::UnboundedSender<Call>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Node {
    /// Stops the node and waits for its thread, so its port is free again (the address
    /// stays, as after a crash).
    fn drop(&mut self) {
        self.ops.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Node {
    fn start(ns: &str, config: VipConfig, name: &'static str) -> Node {
        let (ops, mut rx) = tokio::sync::mpsc::unbounded_channel::<Call>();
        let (ready_tx, ready) = std_mpsc::channel();
        let ns = ns.to_string();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            runtime().block_on(async move {
                let mut vip = match Vip::new(config).await {
                    Ok(vip) => vip,
                    Err(e) => return ready_tx.send(Err(e.to_string())).unwrap(),
                };
                let listener = tokio::net::TcpListener::bind(("::", PORT)).await.unwrap();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    while let Ok((mut stream, _)) = listener.accept().await {
                        let _ = stream.write_all(name.as_bytes()).await;
                    }
                });
                ready_tx.send(Ok(())).unwrap();
                while let Some((op, reply)) = rx.recv().await {
                    let result = match op {
                        Op::Acquire => vip.acquire().await.map(|()| vip.held()),
                        Op::Release => vip.release().await.map(|()| vip.held()),
                        Op::RemoveStale => vip.remove_stale().await,
                        Op::Renew => vip.renew().await.map(|()| vip.held()),
                        Op::Held => Ok(vip.held()),
                    };
                    let _ = reply.send(result.map_err(|e| e.to_string()));
                }
            });
        });
        ready.recv().unwrap().expect("starting the node");
        Node {
            ops: Some(ops),
            thread: Some(thread),
        }
    }

    fn call(&self, op: Op) -> Result<bool, String> {
        let (tx, rx) = std_mpsc::channel();
        self.ops.as_ref().unwrap().send((op, tx)).unwrap();
        rx.recv().unwrap()
    }
}

/// One attempt to read a node's name through `address`.
fn read_name(address: IpAddr, timeout: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::new(address, PORT), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut name = String::new();
    stream.read_to_string(&mut name)?;
    let _ = stream.flush();
    Ok(name)
}

/// How a client fared trying to reach `expected` through the VIP.
#[derive(Debug)]
struct Reach {
    /// Time from the start to the first answer from `expected`, if any came.
    reached: Option<Duration>,
    attempts: u32,
    /// Every other answer seen (a node name) or error.
    others: Vec<String>,
}

/// Retries every attempt of `timeout` until `expected` answers or `within` passes.
fn reach(ns: &str, address: IpAddr, expected: &'static str, within: Duration) -> Reach {
    in_ns(ns, move || {
        let start = Instant::now();
        let mut outcome = Reach {
            reached: None,
            attempts: 0,
            others: Vec::new(),
        };
        while start.elapsed() < within {
            outcome.attempts += 1;
            let left = within.saturating_sub(start.elapsed());
            let timeout = left
                .min(Duration::from_millis(100))
                .max(Duration::from_millis(1));
            match read_name(address, timeout) {
                Ok(name) if name == expected => {
                    outcome.reached = Some(start.elapsed());
                    break;
                }
                Ok(name) => outcome.others.push(name),
                Err(error) => {
                    outcome.others.push(error.kind().to_string());
                    // A refused connect returns at once: do not spin.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        outcome
    })
}

/// Frames of one ethertype received on `dev` in `ns` during `window`, with their arrival time
/// after the capture opened. The capture is open when this returns.
fn capture(
    ns: &str,
    dev: &'static str,
    ethertype: u16,
    window: Duration,
) -> std::thread::JoinHandle<Vec<(Duration, Vec<u8>)>> {
    let (ready_tx, ready) = std_mpsc::channel();
    let ns = ns.to_string();
    let handle = std::thread::spawn(move || {
        enter(&ns);
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ethertype.to_be()),
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh descriptor, ours alone.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(dev).unwrap();
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(index, 0, "no interface {dev} in {ns}");
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        at.sll_family = libc::AF_PACKET as u16;
        at.sll_protocol = ethertype.to_be();
        at.sll_ifindex = index as i32;
        // SAFETY: `at` outlives the call and its size is passed.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&at as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        };
        // SAFETY: `timeout` outlives the call and its size is passed.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        ready_tx.send(()).unwrap();
        let start = Instant::now();
        let mut frames = Vec::new();
        let mut buffer = [0u8; 2048];
        while start.elapsed() < window {
            // SAFETY: `buffer` outlives the call and its size is passed.
            let n = unsafe {
                libc::recv(
                    socket.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                )
            };
            if n > 0 {
                frames.push((start.elapsed(), buffer[..n as usize].to_vec()));
            }
        }
        frames
    });
    ready.recv().unwrap();
    handle
}

/// The gratuitous ARPs among `frames`: (arrival, operation) of those from `mac` with sender
/// and target protocol address `vip`, broadcast.
fn gratuitous(frames: &[(Duration, Vec<u8>)], mac: [u8; 6], vip: Ipv4Addr) -> Vec<(Duration, u16)> {
    frames
        .iter()
        .filter(|(_, f)| {
            f.len() >= 42
                && f[0..6] == [0xff; 6]
                && f[6..12] == mac
                && f[12..14] == ETHERTYPE_ARP.to_be_bytes()
                && f[22..28] == mac
                && f[28..32] == vip.octets()
                && f[38..42] == vip.octets()
        })
        .map(|(at, f)| (*at, u16::from_be_bytes([f[20], f[21]])))
        .collect()
}

fn config(address: &str, interface: &str, count: u32, interval_ms: u64) -> VipConfig {
    VipConfig {
        announce_count: count,
        announce_interval_ms: interval_ms,
        ..VipConfig::new(address.parse().unwrap(), interface)
    }
}

/// Test 1: in one namespace with one interface, for IPv4 and IPv6: a stale copy is found
/// and removed; acquire adds the address, release removes it, both idempotent; a missing
/// interface is named; `release_blocking` removes what a dropped `Vip` left.
#[test]
fn addresses_are_added_and_removed() {
    if !root_or_skip("addresses_are_added_and_removed") {
        return;
    }
    let namespaces = Namespaces::create(&["t1"]);
    let ns = namespaces.name(0);
    // A veth pair rather than a dummy interface: not every kernel has the dummy driver.
    ip_in(&ns, "link add d0 type veth peer name d1");
    ip_in(&ns, "link set d1 up");
    ip_in(&ns, "link set d0 up");
    for (address, prefix) in [("10.99.0.7", 32), ("fd99::7", 128)] {
        let vip: IpAddr = address.parse().unwrap();
        let nodad = if vip.is_ipv6() { " nodad" } else { "" };
        ip_in(&ns, &format!("addr add {address}/{prefix} dev d0{nodad}"));
        assert!(holds(&ns, "d0", vip));
        let node = Node::start(&ns, config(address, "d0", 1, 200), "x");
        assert_eq!(
            node.call(Op::RemoveStale),
            Ok(true),
            "{address}: the stale copy"
        );
        assert!(!holds(&ns, "d0", vip));
        assert_eq!(
            node.call(Op::RemoveStale),
            Ok(false),
            "{address}: nothing left"
        );
        assert_eq!(node.call(Op::Held), Ok(false));

        assert_eq!(node.call(Op::Acquire), Ok(true), "{address}: acquire");
        assert!(
            holds(&ns, "d0", vip),
            "{address}: on the interface after acquire"
        );
        assert_eq!(node.call(Op::Acquire), Ok(true), "{address}: acquire again");
        assert!(holds(&ns, "d0", vip));
        let listing = ip_in(&ns, "-o addr show dev d0");
        assert_eq!(
            listing.matches(&format!(" {address}/{prefix} ")).count(),
            1,
            "{listing}"
        );

        assert_eq!(node.call(Op::Release), Ok(false), "{address}: release");
        assert!(!holds(&ns, "d0", vip), "{address}: gone after release");
        assert_eq!(
            node.call(Op::Release),
            Ok(false),
            "{address}: release again"
        );

        // A node that stops without releasing leaves the address; the blocking helper
        // removes it (from the namespace of the thread that calls it).
        assert_eq!(node.call(Op::Acquire), Ok(true));
        drop(node);
        let blocking = config(address, "d0", 1, 200);
        assert!(matches!(
            in_ns(&ns, move || vip::release_blocking(&blocking)),
            Ok(true)
        ));
        assert!(
            !holds(&ns, "d0", vip),
            "{address}: gone after release_blocking"
        );
        let blocking = config(address, "d0", 1, 200);
        assert!(matches!(
            in_ns(&ns, move || vip::release_blocking(&blocking)),
            Ok(false)
        ));
    }

    // The interface goes away while the address is held: release still succeeds (the
    // address went with it), remove_stale finds nothing, acquire names the interface.
    let node = Node::start(&ns, config("10.99.0.7", "d0", 1, 200), "x");
    assert_eq!(node.call(Op::Acquire), Ok(true));
    ip_in(&ns, "link del d0");
    assert_eq!(node.call(Op::Release), Ok(false));
    assert_eq!(node.call(Op::RemoveStale), Ok(false));
    assert_eq!(
        node.call(Op::Acquire),
        Err("vip.interface d0: No such device (os error 19)".into())
    );
    drop(node);

    let missing = config("10.99.0.7", "nosuch0", 1, 200);
    let error = in_ns(&ns, move || {
        runtime().block_on(Vip::new(missing)).err().unwrap()
    });
    assert_eq!(
        error.to_string(),
        "vip.interface nosuch0: No such device (os error 19)"
    );
}

/// With `lifetime_s`, the kernel removes an address its holder stopped renewing (as after
/// SIGKILL or SIGSTOP), and `renew` keeps it while called; a renewal after expiry says so.
#[test]
fn an_unrenewed_address_expires() {
    if !root_or_skip("an_unrenewed_address_expires") {
        return;
    }
    let namespaces = Namespaces::create(&["t5"]);
    let ns = namespaces.name(0);
    ip_in(&ns, "link add d0 type veth peer name d1");
    ip_in(&ns, "link set d1 up");
    ip_in(&ns, "link set d0 up");
    for address in ["10.96.0.7", "fd96::7"] {
        let vip: IpAddr = address.parse().unwrap();
        let mut with_lifetime = config(address, "d0", 1, 200);
        with_lifetime.lifetime_s = Some(2);
        let node = Node::start(&ns, with_lifetime, "x");
        assert_eq!(node.call(Op::Acquire), Ok(true));
        let listing = ip_in(&ns, "-o addr show dev d0");
        assert!(listing.contains("valid_lft 2sec"), "{listing}");
        // Renewed every 0.6 s, the address outlives its first lifetime twice over.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            std::thread::sleep(Duration::from_millis(600));
            assert_eq!(node.call(Op::Renew), Ok(true), "{address}");
            assert!(holds(&ns, "d0", vip), "{address}: expired while renewed");
        }
        // Unrenewed, it goes.
        let last = Instant::now();
        while holds(&ns, "d0", vip) {
            assert!(
                last.elapsed() < Duration::from_secs(5),
                "{address}: never expired"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{address}: lifetime 2 s, gone {} ms after the last renewal",
            last.elapsed().as_millis()
        );
        assert!(
            last.elapsed() > Duration::from_millis(1000),
            "{address}: expired early"
        );
        assert_eq!(
            node.call(Op::Renew),
            Err(format!(
                "renewing {address} on d0: it expired (lifetime_s ran out before a renewal)"
            ))
        );
        assert_eq!(node.call(Op::Held), Ok(false));
        assert!(
            !holds(&ns, "d0", vip),
            "{address}: a failed renewal added it back"
        );
        // A new acquire works as usual.
        assert_eq!(node.call(Op::Acquire), Ok(true));
        assert_eq!(node.call(Op::Release), Ok(false));
    }
}

/// Set in the environment of this test binary run again as a holder process: the namespace.
const HOLDER_ENV: &str = "REGENT_VIP_TEST_HOLDER_NS";

/// Not a test on its own: with [`HOLDER_ENV`] set, this is the holder process of
/// `a_killed_or_stopped_holder_loses_the_address`. It acquires 10.95.0.7 (lifetime 2 s) in the
/// namespace, says `vip-holder: held`, and renews every 200 ms until a renewal fails, which it
/// reports (`vip-holder: <error>`) before exiting; it gives up after 30 s, so that a failing
/// test never waits on it for ever.
#[test]
fn holder_process() {
    let Some(ns) = std::env::var_os(HOLDER_ENV) else {
        return;
    };
    enter(ns.to_str().unwrap());
    runtime().block_on(async {
        let mut config = config("10.95.0.7", "d0", 1, 200);
        config.lifetime_s = Some(2);
        let mut vip = Vip::new(config).await.unwrap();
        vip.acquire().await.unwrap();
        println!("vip-holder: held");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Err(error) = vip.renew().await {
                println!("vip-holder: {error}");
                assert!(!vip.held());
                return;
            }
        }
        vip.release().await.unwrap();
    });
}

/// A holder process (this binary again) killed with SIGKILL or frozen with SIGSTOP cannot
/// release; the kernel removes the address when its lifetime runs out. A frozen holder, when
/// continued, finds the address expired and does not add it back.
#[test]
fn a_killed_or_stopped_holder_loses_the_address() {
    if !root_or_skip("a_killed_or_stopped_holder_loses_the_address") {
        return;
    }
    use std::io::BufRead;
    let namespaces = Namespaces::create(&["t7"]);
    let ns = namespaces.name(0);
    ip_in(&ns, "link add d0 type veth peer name d1");
    ip_in(&ns, "link set d1 up");
    ip_in(&ns, "link set d0 up");
    let vip: IpAddr = "10.95.0.7".parse().unwrap();
    for signal in [libc::SIGKILL, libc::SIGSTOP] {
        let mut holder = Holder(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "holder_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(HOLDER_ENV, &ns)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut lines = std::io::BufReader::new(holder.0.stdout.take().unwrap()).lines();
        // libtest may print `test holder_process ... ` before it on the same line.
        let said = |line: String| line.find("vip-holder: ").map(|at| line[at..].to_string());
        let held = lines.by_ref().map_while(Result::ok).find_map(said);
        assert_eq!(held.as_deref(), Some("vip-holder: held"));
        assert!(holds(&ns, "d0", vip));
        // Renewed while alive.
        std::thread::sleep(Duration::from_millis(2500));
        assert!(holds(&ns, "d0", vip), "expired while the holder renewed it");

        // SAFETY: a child of ours that has not been waited for.
        assert_eq!(unsafe { libc::kill(holder.0.id() as i32, signal) }, 0);
        let since = Instant::now();
        assert!(
            holds(&ns, "d0", vip),
            "the kernel keeps the address of a dead holder..."
        );
        while holds(&ns, "d0", vip) {
            assert!(since.elapsed() < Duration::from_secs(5), "never expired");
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "holder sent signal {signal}: the address gone {} ms later (lifetime 2 s, renew called \
             every 200 ms, which renews at most every 500 ms)",
            since.elapsed().as_millis()
        );
        if signal == libc::SIGSTOP {
            // SAFETY: as above.
            assert_eq!(
                unsafe { libc::kill(holder.0.id() as i32, libc::SIGCONT) },
                0
            );
            let last = lines.map_while(Result::ok).find_map(said);
            assert_eq!(
                last.as_deref(),
                Some(
                    "vip-holder: renewing 10.95.0.7 on d0: it expired (lifetime_s ran out before \
                     a renewal)"
                )
            );
            assert!(!holds(&ns, "d0", vip), "the continued holder added it back");
        }
    }
}

/// The holder process, killed and reaped on drop (a failing test leaves none behind).
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Test 2: two namespaces joined by a veth pair. The owner's gratuitous ARPs arrive at the
/// peer (a request and a reply per round, `announce_count` rounds `announce_interval_ms`
/// apart, from the owner's MAC); the peer reaches a server on the VIP after acquire and not
/// after release; and a release stops the announcements still due.
#[test]
fn gratuitous_arp_is_on_the_wire() {
    if !root_or_skip("gratuitous_arp_is_on_the_wire") {
        return;
    }
    let namespaces = Namespaces::create(&["t2o", "t2p"]);
    let (owner, peer) = (namespaces.name(0), namespaces.name(1));
    ip_in(
        &owner,
        &format!("link add v0 type veth peer name v1 netns {peer}"),
    );
    ip_in(&owner, "addr add 10.98.0.1/24 dev v0");
    ip_in(&owner, "link set v0 up");
    ip_in(&peer, "addr add 10.98.0.2/24 dev v1");
    ip_in(&peer, "link set v1 up");
    let vip = Ipv4Addr::new(10, 98, 0, 100);
    let owner_mac = mac(&owner, "v0");

    let node = Node::start(&owner, config("10.98.0.100", "v0", 3, 100), "owner");
    let frames = capture(&peer, "v1", ETHERTYPE_ARP, Duration::from_millis(1500));
    assert_eq!(node.call(Op::Acquire), Ok(true));
    let frames = frames.join().unwrap();
    let seen = gratuitous(&frames, owner_mac, vip);
    eprintln!(
        "gratuitous ARPs at the peer (ms, op): {:?}",
        seen.iter()
            .map(|(t, op)| (t.as_millis(), op))
            .collect::<Vec<_>>()
    );
    let ops: Vec<u16> = seen.iter().map(|(_, op)| *op).collect();
    assert_eq!(ops, [ARP_REQUEST, ARP_REPLY].repeat(3), "{seen:?}");
    let spread = seen[5].0 - seen[0].0;
    assert!(
        spread >= Duration::from_millis(180) && spread < Duration::from_millis(1000),
        "three rounds 100 ms apart, spread over {spread:?}"
    );

    let reached = reach(&peer, vip.into(), "owner", Duration::from_secs(2));
    eprintln!("peer -> VIP after acquire: {reached:?}");
    assert!(reached.reached.is_some(), "{reached:?}");
    assert_eq!(node.call(Op::Release), Ok(false));
    let after = in_ns(&peer, move || {
        read_name(vip.into(), Duration::from_millis(300))
    });
    assert!(after.is_err(), "the VIP answered after release: {after:?}");
    drop(node);

    // Release with announcements still due: none leaves after it.
    let node = Node::start(&owner, config("10.98.0.100", "v0", 3, 1000), "owner");
    let frames = capture(&peer, "v1", ETHERTYPE_ARP, Duration::from_millis(2500));
    assert_eq!(node.call(Op::Acquire), Ok(true));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(node.call(Op::Release), Ok(false));
    let seen = gratuitous(&frames.join().unwrap(), owner_mac, vip);
    assert_eq!(
        seen.len(),
        2,
        "only the first round before release: {seen:?}"
    );
}

/// Test 2 for IPv6: the unsolicited neighbour advertisement (override set, to ff02::1, hop
/// limit 255, with the owner's MAC) arrives at the peer.
#[test]
fn neighbour_advertisement_is_on_the_wire() {
    if !root_or_skip("neighbour_advertisement_is_on_the_wire") {
        return;
    }
    let namespaces = Namespaces::create(&["t6o", "t6p"]);
    let (owner, peer) = (namespaces.name(0), namespaces.name(1));
    ip_in(
        &owner,
        &format!("link add v0 type veth peer name v1 netns {peer}"),
    );
    ip_in(&owner, "addr add fd98::1/64 dev v0 nodad");
    ip_in(&owner, "link set v0 up");
    ip_in(&peer, "addr add fd98::2/64 dev v1 nodad");
    ip_in(&peer, "link set v1 up");
    let vip: Ipv6Addr = "fd98::100".parse().unwrap();
    let owner_mac = mac(&owner, "v0");

    let node = Node::start(&owner, config("fd98::100", "v0", 2, 100), "owner");
    let frames = capture(&peer, "v1", 0x86dd, Duration::from_millis(1500));
    assert_eq!(node.call(Op::Acquire), Ok(true));
    let frames = frames.join().unwrap();
    // Ethernet (14) + IPv6 header (40) + the advertisement (32).
    let advertisements: Vec<_> = frames
        .iter()
        .filter(|(_, f)| {
            f.len() >= 86
                && f[6..12] == owner_mac
                && f[20] == 58 // Next header: ICMPv6.
                && f[54] == 136
                && f[62..78] == vip.octets()
        })
        .collect();
    eprintln!(
        "neighbour advertisements at the peer: {}",
        advertisements.len()
    );
    assert_eq!(advertisements.len(), 2, "{frames:?}");
    for (_, f) in &advertisements {
        assert_eq!(f[0..6], [0x33, 0x33, 0, 0, 0, 1], "to all nodes");
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(f[22..38], vip.octets(), "from the VIP");
        assert_eq!(f[38..54], "ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(f[58] & 0xe0, 0x20, "override, not solicited, not router");
        assert_eq!(
            f[78..86],
            [
                2,
                1,
                owner_mac[0],
                owner_mac[1],
                owner_mac[2],
                owner_mac[3],
                owner_mac[4],
                owner_mac[5]
            ]
        );
    }
    let reached = reach(&peer, vip.into(), "owner", Duration::from_secs(3));
    eprintln!("peer -> IPv6 VIP after acquire: {reached:?}");
    assert!(reached.reached.is_some(), "{reached:?}");
    assert_eq!(node.call(Op::Release), Ok(false));
}

/// Test 3: three nodes and a client on a bridge. The client reads "A" through the VIP; A
/// releases and B acquires: the client reads "B" within a second without flushing its
/// neighbour cache. The control: the address moved to C without an announcement (`ip addr
/// add`) is not reached within a second, since the client still sends to B's MAC; C's
/// acquire (the address already there) announces it and the client reads "C". At every step
/// at most one node holds the address.
#[test]
fn takeover_moves_the_client() {
    if root_or_skip("takeover_moves_the_client") {
        takeover("t3", "10.97.0.100", |i| format!("10.97.0.{i}/24"));
    }
}

/// Test 3 for IPv6: the unsolicited neighbour advertisement (override set) moves the client.
#[test]
fn takeover_moves_the_client_ipv6() {
    if root_or_skip("takeover_moves_the_client_ipv6") {
        takeover("t4", "fd97::100", |i| format!("fd97::{i}/64 nodad"));
    }
}

/// The takeover scenario with namespaces tagged `tag`, the VIP `address` and host `i`'s own
/// address (1, 2, 3 the nodes, 4 the client).
fn takeover(tag: &str, address: &'static str, host_address: impl Fn(usize) -> String) {
    let tags: Vec<String> = ["s", "a", "b", "c", "k"]
        .iter()
        .map(|h| format!("{tag}{h}"))
        .collect();
    let namespaces = Namespaces::create(&tags.iter().map(String::as_str).collect::<Vec<_>>());
    let switch = namespaces.name(0);
    ip_in(&switch, "link add br0 type bridge");
    ip_in(&switch, "link set br0 up");
    for (i, host) in [(1, "a"), (2, "b"), (3, "c"), (4, "k")] {
        let ns = namespaces.name(i);
        ip_in(
            &switch,
            &format!("link add p{host} type veth peer name e0 netns {ns}"),
        );
        ip_in(&switch, &format!("link set p{host} master br0 up"));
        ip_in(&ns, &format!("addr add {} dev e0", host_address(i)));
        ip_in(&ns, "link set e0 up");
    }
    let nodes = [namespaces.name(1), namespaces.name(2), namespaces.name(3)];
    let client = namespaces.name(4);
    let vip: IpAddr = address.parse().unwrap();
    let holders = || -> Vec<usize> { (0..3).filter(|&i| holds(&nodes[i], "e0", vip)).collect() };
    let within = Duration::from_secs(1);

    let a = Node::start(&nodes[0], config(address, "e0", 3, 200), "A");
    let b = Node::start(&nodes[1], config(address, "e0", 3, 200), "B");
    let c = Node::start(&nodes[2], config(address, "e0", 3, 200), "C");
    for node in [&a, &b, &c] {
        assert_eq!(node.call(Op::RemoveStale), Ok(false));
    }

    assert_eq!(a.call(Op::Acquire), Ok(true));
    assert_eq!(holders(), [0]);
    // IPv6 neighbour discovery on a fresh bridge can take longer than ARP: allow more.
    let first = reach(&client, vip, "A", Duration::from_secs(5));
    eprintln!("{address}: client -> A: {first:?}");
    assert!(first.reached.is_some(), "{first:?}");
    // The client's cache now maps the VIP to A's MAC.
    let cached = ip_in(&client, &format!("neigh show {address}"));
    assert!(cached.contains(&mac_text(mac(&nodes[0], "e0"))), "{cached}");

    assert_eq!(a.call(Op::Release), Ok(false));
    assert_eq!(holders(), Vec::<usize>::new());
    assert_eq!(b.call(Op::Acquire), Ok(true));
    assert_eq!(holders(), [1]);
    let takeover = reach(&client, vip, "B", within);
    eprintln!("{address}: takeover A -> B, client: {takeover:?}");
    assert!(
        takeover.reached.is_some(),
        "the client did not reach B within {within:?}: {takeover:?}"
    );
    assert!(
        !takeover.others.iter().any(|o| o == "A"),
        "A answered after release: {takeover:?}"
    );
    let cached = ip_in(&client, &format!("neigh show {address}"));
    assert!(cached.contains(&mac_text(mac(&nodes[1], "e0"))), "{cached}");

    // The control: moved without an announcement, the address is not reached in time.
    assert_eq!(b.call(Op::Release), Ok(false));
    let prefix = if vip.is_ipv4() { "32" } else { "128 nodad" };
    ip_in(&nodes[2], &format!("addr add {address}/{prefix} dev e0"));
    assert_eq!(holders(), [2]);
    let silent = reach(&client, vip, "C", within);
    eprintln!("{address}: moved to C without announcing, client: {silent:?}");
    assert!(
        silent.reached.is_none(),
        "reached C with no announcement: {silent:?}"
    );
    assert_eq!(c.call(Op::Acquire), Ok(true));
    assert_eq!(holders(), [2]);
    let announced = reach(&client, vip, "C", within);
    eprintln!("{address}: C announced, client: {announced:?}");
    assert!(announced.reached.is_some(), "{announced:?}");

    assert_eq!(c.call(Op::Release), Ok(false));
    assert_eq!(holders(), Vec::<usize>::new());
}
