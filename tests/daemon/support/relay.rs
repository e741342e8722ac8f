//! A fault-injecting UDP relay between regent nodes on loopback: every node reaches its peers
//! through the relay, which can cut a node off (both directions) while its socket still
//! answers — a partition without root or network namespaces.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(50);

pub struct Relay {
    /// The address through which each node is reached.
    pub fronts: BTreeMap<u64, SocketAddr>,
    cut: Arc<Mutex<BTreeSet<u64>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Starts one front per node; `real` maps each node id to its real listen address.
    pub fn start(real: &BTreeMap<u64, SocketAddr>) -> Relay {
        let cut = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let by_addr: Arc<HashMap<SocketAddr, u64>> =
            Arc::new(real.iter().map(|(&id, &addr)| (addr, id)).collect());
        let mut fronts = BTreeMap::new();
        for (&id, &target) in real {
            let front = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
            front.set_read_timeout(Some(POLL)).unwrap();
            fronts.insert(id, front.local_addr().unwrap());
            let (cut, stop, by_addr) = (cut.clone(), stop.clone(), by_addr.clone());
            std::thread::spawn(move || serve_front(id, target, front, cut, stop, by_addr));
        }
        Relay { fronts, cut, stop }
    }

    /// Drops every datagram to or from node `id`.
    pub fn cut(&self, id: u64) {
        self.cut.lock().unwrap().insert(id);
    }

    pub fn heal(&self, id: u64) {
        self.cut.lock().unwrap().remove(&id);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Forwards datagrams for node `id` (at `target`): from each client to the node through an
/// upstream socket of that client's own, and the node's answers back to the client.
fn serve_front(
    id: u64,
    target: SocketAddr,
    front: Arc<UdpSocket>,
    cut: Arc<Mutex<BTreeSet<u64>>>,
    stop: Arc<AtomicBool>,
    by_addr: Arc<HashMap<SocketAddr, u64>>,
) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, client)) = front.recv_from(&mut buf) else {
            continue;
        };
        let client_id = by_addr.get(&client).copied();
        let blocked = |cut: &Mutex<BTreeSet<u64>>| {
            let cut = cut.lock().unwrap();
            cut.contains(&id) || client_id.is_some_and(|c| cut.contains(&c))
        };
        if blocked(&cut) {
            continue;
        }
        let upstream = upstreams.entry(client).or_insert_with(|| {
            let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
            socket.connect(target).unwrap();
            socket.set_read_timeout(Some(POLL)).unwrap();
            let (socket2, front2, cut2, stop2) =
                (socket.clone(), front.clone(), cut.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop2.load(Ordering::Relaxed) {
                    let Ok(len) = socket2.recv(&mut buf) else {
                        continue;
                    };
                    let blocked = {
                        let cut = cut2.lock().unwrap();
                        cut.contains(&id) || client_id.is_some_and(|c| cut.contains(&c))
                    };
                    if !blocked {
                        let _ = front2.send_to(&buf[..len], client);
                    }
                }
            });
            socket
        });
        let _ = upstream.send(&buf[..len]);
    }
}
