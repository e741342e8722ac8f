//! A fault-injecting UDP relay for nodes on loopback (where network namespaces are missing):
//! each node reaches each peer through the peer's *front*; the relay forwards every datagram
//! and its answers, dropping those of a cut direction, and applying loss, delay and jitter
//! (jitter reorders).
//!
//! Invariant: a direction (from, to) is cut exactly while it is in the cut set; every thread
//! ends within one poll interval of the relay being dropped.

use regent_raft::RaftRng;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);

/// Loss, delay and reordering, as `tc netem` takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Netem {
    pub loss_percent: f64,
    pub delay_ms: u64,
    pub jitter_ms: u64,
    /// Percentage of packets sent at once (ahead of delayed ones): reordering.
    pub reorder_percent: f64,
}

impl Netem {
    /// The arguments after `netem`.
    pub fn tc_args(&self) -> Vec<String> {
        let mut args = vec![
            "delay".into(),
            format!("{}ms", self.delay_ms),
            format!("{}ms", self.jitter_ms),
        ];
        if self.reorder_percent > 0.0 {
            args.extend(["reorder".into(), format!("{}%", self.reorder_percent)]);
        }
        if self.loss_percent > 0.0 {
            args.extend(["loss".into(), format!("{}%", self.loss_percent)]);
        }
        args
    }
}

struct Shared {
    cut: Mutex<BTreeSet<(u64, u64)>>,
    netem: Mutex<Option<Netem>>,
    stop: AtomicBool,
    delayed: Mutex<BinaryHeap<Delayed>>,
    wake: Condvar,
    rng: Mutex<regent_raft::SplitMix64>,
}

struct Delayed {
    due: Instant,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    /// Earliest due first (a max-heap reversed).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.due.cmp(&self.due)
    }
}

impl Shared {
    /// Sends now, later, or never, as the faults say.
    fn forward(
        &self,
        from: Option<u64>,
        to: Option<u64>,
        socket: &Arc<UdpSocket>,
        dest: SocketAddr,
        bytes: &[u8],
    ) {
        if let (Some(f), Some(t)) = (from, to) {
            if self.cut.lock().unwrap().contains(&(f, t)) {
                return;
            }
        }
        let netem = *self.netem.lock().unwrap();
        let Some(netem) = netem else {
            let _ = socket.send_to(bytes, dest);
            return;
        };
        let (lost, reorder, jitter) = {
            let mut rng = self.rng.lock().unwrap();
            let lost = (rng.below(1_000_000) as f64) < netem.loss_percent * 10_000.0;
            let reorder = (rng.below(1_000_000) as f64) < netem.reorder_percent * 10_000.0;
            let jitter = if netem.jitter_ms > 0 {
                rng.below(2 * netem.jitter_ms + 1)
            } else {
                0
            };
            let _ = rng.next_u64();
            (lost, reorder, jitter)
        };
        if lost {
            return;
        }
        let delay_ms = if reorder {
            0
        } else {
            (netem.delay_ms + jitter).saturating_sub(netem.jitter_ms)
        };
        if delay_ms == 0 {
            let _ = socket.send_to(bytes, dest);
            return;
        }
        self.delayed.lock().unwrap().push(Delayed {
            due: Instant::now() + Duration::from_millis(delay_ms),
            socket: socket.clone(),
            to: dest,
            bytes: bytes.to_vec(),
        });
        self.wake.notify_one();
    }
}

pub struct Relay {
    /// The address through which each node is reached.
    pub fronts: BTreeMap<u64, SocketAddr>,
    shared: Arc<Shared>,
}

impl Relay {
    /// Starts one front per node; `real` maps each node id to its real listen address.
    pub fn start(real: &BTreeMap<u64, SocketAddr>) -> Relay {
        Relay::start_on(std::net::IpAddr::from([127, 0, 0, 1]), real)
    }

    /// Starts one front per node on `ip` (loopback, or the bridge's address in the root
    /// namespace).
    pub fn start_on(ip: std::net::IpAddr, real: &BTreeMap<u64, SocketAddr>) -> Relay {
        let shared = Arc::new(Shared {
            cut: Mutex::new(BTreeSet::new()),
            netem: Mutex::new(None),
            stop: AtomicBool::new(false),
            delayed: Mutex::new(BinaryHeap::new()),
            wake: Condvar::new(),
            rng: Mutex::new(regent_raft::SplitMix64::new(0x5eed)),
        });
        let by_addr: Arc<HashMap<SocketAddr, u64>> =
            Arc::new(real.iter().map(|(&id, &addr)| (addr, id)).collect());
        let mut fronts = BTreeMap::new();
        for (&id, &target) in real {
            let front = Arc::new(UdpSocket::bind((ip, 0)).expect("a UDP port for the relay"));
            front.set_read_timeout(Some(POLL)).expect("a read timeout");
            fronts.insert(id, front.local_addr().expect("bound"));
            let (shared, by_addr) = (shared.clone(), by_addr.clone());
            std::thread::spawn(move || serve_front(id, target, front, shared, by_addr));
        }
        let delayer = shared.clone();
        std::thread::spawn(move || send_delayed(delayer));
        Relay { fronts, shared }
    }

    /// Drops every datagram from node `from` to node `to`.
    pub fn cut(&self, from: u64, to: u64) {
        self.shared.cut.lock().unwrap().insert((from, to));
    }

    /// Drops every datagram to or from node `id`: a partition of that one node whose socket
    /// still answers.
    pub fn isolate(&self, id: u64) {
        let mut cut = self.shared.cut.lock().unwrap();
        for &other in self.fronts.keys().filter(|&&other| other != id) {
            cut.insert((id, other));
            cut.insert((other, id));
        }
    }

    /// Undoes `isolate`: every direction to or from node `id` carries datagrams again.
    pub fn rejoin(&self, id: u64) {
        self.shared
            .cut
            .lock()
            .unwrap()
            .retain(|&(from, to)| from != id && to != id);
    }

    pub fn heal_all(&self) {
        self.shared.cut.lock().unwrap().clear();
    }

    pub fn set_netem(&self, netem: Option<Netem>) {
        *self.shared.netem.lock().unwrap() = netem;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
    }
}

fn send_delayed(shared: Arc<Shared>) {
    let mut queue = shared.delayed.lock().unwrap();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        match queue.peek().map(|d| d.due) {
            Some(due) if due <= now => {
                let d = queue.pop().expect("peeked");
                let _ = d.socket.send_to(&d.bytes, d.to);
            }
            Some(due) => {
                queue = shared.wake.wait_timeout(queue, due - now).unwrap().0;
            }
            None => {
                queue = shared.wake.wait_timeout(queue, POLL).unwrap().0;
            }
        }
    }
}

/// Forwards datagrams for node `id` (at `target`): from each sender to the node through an
/// upstream socket of that sender's own, and the node's answers back to the sender.
fn serve_front(
    id: u64,
    target: SocketAddr,
    front: Arc<UdpSocket>,
    shared: Arc<Shared>,
    by_addr: Arc<HashMap<SocketAddr, u64>>,
) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::Relaxed) {
        let Ok((len, sender)) = front.recv_from(&mut buf) else {
            continue;
        };
        let sender_id = by_addr.get(&sender).copied();
        let upstream = upstreams.entry(sender).or_insert_with(|| {
            let socket = Arc::new(
                UdpSocket::bind((front.local_addr().expect("bound").ip(), 0))
                    .expect("a UDP port for the relay"),
            );
            socket.set_read_timeout(Some(POLL)).expect("a read timeout");
            let (socket2, front2, shared2) = (socket.clone(), front.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !shared2.stop.load(Ordering::Relaxed) {
                    let Ok((len, _)) = socket2.recv_from(&mut buf) else {
                        continue;
                    };
                    shared2.forward(Some(id), sender_id, &front2, sender, &buf[..len]);
                }
            });
            socket
        });
        let upstream = upstream.clone();
        shared.forward(sender_id, Some(id), &upstream, target, &buf[..len]);
    }
}
