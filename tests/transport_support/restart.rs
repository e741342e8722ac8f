//! Restarting a node on the address it had.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Binds `addr` again after a node on it shut down (its endpoint driver may take a moment to
/// release the socket).
pub async fn rebind(addr: SocketAddr) -> UdpSocket {
    for _ in 0..100 {
        if let Ok(socket) = UdpSocket::bind(addr) {
            return socket;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} stayed in use");
}
