//! The virtual IP: one address that follows the writable node. The address is on this node's
//! interface only while this node is writable, and each time it is put there the node announces
//! it (a gratuitous ARP for IPv4, an unsolicited neighbour advertisement for IPv6) so that the
//! hosts on the link send to this node's MAC at once rather than when their caches expire.
//!
//! Invariants, for the caller that ties this to leadership:
//! - The address is held only between [`Vip::acquire`] and [`Vip::release`]: the caller
//!   acquires after `pre_promote` and releases at an unrenewed `lease_warning`, on demote and
//!   on stop.
//! - No announcement leaves after `release` has begun: the repeats run in a task that checks,
//!   under the same lock that `release` takes first, whether they were cancelled.
//! - `acquire` and `release` are idempotent: an address already there (or already gone) is
//!   not an error.
//! - A copy left by a crash is removed at start ([`Vip::remove_stale`]) before the node may
//!   lead, and [`release_blocking`] removes it from a shutdown or panic path with no runtime.
//! - With `lifetime_s`, the kernel itself removes the address of a holder that stopped
//!   renewing it ([`Vip::renew`]): a node killed with SIGKILL or frozen with SIGSTOP, which can
//!   release nothing, still loses the address within `lifetime_s` (+ about 1 s).
//!
//! The addresses are changed through rtnetlink; the announcements go out on an `AF_PACKET`
//! socket (IPv4) or a raw ICMPv6 socket (IPv6). Every socket is opened by [`Vip::new`] and is
//! bound to the network namespace of the thread that called it.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, CacheInfo,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkLayerType};
use serde::{Deserialize, Serialize};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `announce_count`: at most this many announcements per acquire.
pub const ANNOUNCE_COUNT_MAX: u32 = 100;
/// `announce_interval_ms`: the shortest gap between two announcements ...
pub const ANNOUNCE_INTERVAL_MS_MIN: u64 = 10;
/// ... and the longest.
pub const ANNOUNCE_INTERVAL_MS_MAX: u64 = 60_000;
/// Each netlink request is answered within this time or fails: a release at a lease warning
/// must not wait on a kernel that does not answer.
pub const NETLINK_TIMEOUT_MS: u64 = 2_000;
/// `lifetime_s`: the shortest valid lifetime (the kernel checks lifetimes about once a second)
/// ...
pub const LIFETIME_S_MIN: u32 = 2;
/// ... and the longest.
pub const LIFETIME_S_MAX: u32 = 86_400;
/// An interface name's bytes (`IFNAMSIZ` less the terminating NUL).
pub const INTERFACE_BYTES_MAX: usize = 15;

/// The `vip` section of the configuration: the address that follows the writable node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, from = "VipConfigFile")]
pub struct VipConfig {
    /// The virtual address, IPv4 or IPv6.
    pub address: IpAddr,
    /// Its prefix length on the interface: 32 for IPv4 and 128 for IPv6 unless set.
    pub prefix_len: u8,
    /// The interface the address is added on (`eth0`).
    pub interface: String,
    /// Announcements sent per acquire (gratuitous ARPs or neighbour advertisements).
    pub announce_count: u32,
    /// The gap between two announcements.
    pub announce_interval_ms: u64,
    /// The address's valid lifetime in the kernel, renewed by [`Vip::renew`]: a holder that
    /// stops renewing (killed, stopped, wedged) loses the address this long after its last
    /// renewal, give or take the kernel's one-second check. None: the address stays until
    /// released.
    pub lifetime_s: Option<u32>,
}

/// The section as written in the file: the default prefix length depends on the address.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VipConfigFile {
    address: IpAddr,
    #[serde(default)]
    prefix_len: Option<u8>,
    interface: String,
    #[serde(default = "defaults::announce_count")]
    announce_count: u32,
    #[serde(default = "defaults::announce_interval_ms")]
    announce_interval_ms: u64,
    #[serde(default)]
    lifetime_s: Option<u32>,
}

impl From<VipConfigFile> for VipConfig {
    fn from(file: VipConfigFile) -> VipConfig {
        VipConfig {
            address: file.address,
            prefix_len: file
                .prefix_len
                .unwrap_or_else(|| defaults::prefix_len(file.address)),
            interface: file.interface,
            announce_count: file.announce_count,
            announce_interval_ms: file.announce_interval_ms,
            lifetime_s: file.lifetime_s,
        }
    }
}

mod defaults {
    use std::net::IpAddr;

    /// A host address: the VIP reaches its link through the interface's own prefix route.
    pub fn prefix_len(address: IpAddr) -> u8 {
        match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }
    pub fn announce_count() -> u32 {
        3
    }
    pub fn announce_interval_ms() -> u64 {
        200
    }
}

impl VipConfig {
    /// A configuration with the defaults for everything but the address and the interface.
    pub fn new(address: IpAddr, interface: &str) -> VipConfig {
        VipConfig {
            address,
            prefix_len: defaults::prefix_len(address),
            interface: interface.to_string(),
            announce_count: defaults::announce_count(),
            announce_interval_ms: defaults::announce_interval_ms(),
            lifetime_s: None,
        }
    }

    /// Checks every rule; the error names the field by its YAML path, then the rule.
    pub fn validate(&self) -> Result<(), String> {
        let address = self.address;
        let usable = match address {
            IpAddr::V4(v4) => {
                !(v4.is_unspecified() || v4.is_loopback() || v4.is_multicast() || v4.is_broadcast())
            }
            IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_loopback() || v6.is_multicast()),
        };
        if !usable {
            return Err(format!(
                "vip.address: {address} must be a unicast address (not unspecified, loopback, \
                 multicast or broadcast)"
            ));
        }
        let bits = defaults::prefix_len(address);
        if !(1..=bits).contains(&self.prefix_len) {
            return Err(format!(
                "vip.prefix_len: must be within 1..={bits} for {address} (got {})",
                self.prefix_len
            ));
        }
        let name = &self.interface;
        if name.is_empty() {
            return Err("vip.interface: must not be empty".into());
        }
        if name.len() > INTERFACE_BYTES_MAX {
            return Err(format!(
                "vip.interface: {name:?} is longer than {INTERFACE_BYTES_MAX} bytes"
            ));
        }
        if name == "."
            || name == ".."
            || name.contains(['/', ':', '\0'])
            || name.contains(char::is_whitespace)
        {
            return Err(format!("vip.interface: {name:?} is not an interface name"));
        }
        if !(1..=ANNOUNCE_COUNT_MAX).contains(&self.announce_count) {
            return Err(format!(
                "vip.announce_count: must be within 1..={ANNOUNCE_COUNT_MAX} (got {})",
                self.announce_count
            ));
        }
        if !(ANNOUNCE_INTERVAL_MS_MIN..=ANNOUNCE_INTERVAL_MS_MAX)
            .contains(&self.announce_interval_ms)
        {
            return Err(format!(
                "vip.announce_interval_ms: must be within \
                 {ANNOUNCE_INTERVAL_MS_MIN}..={ANNOUNCE_INTERVAL_MS_MAX} (got {})",
                self.announce_interval_ms
            ));
        }
        if let Some(lifetime) = self.lifetime_s {
            if !(LIFETIME_S_MIN..=LIFETIME_S_MAX).contains(&lifetime) {
                return Err(format!(
                    "vip.lifetime_s: must be within {LIFETIME_S_MIN}..={LIFETIME_S_MAX} \
                     (got {lifetime})"
                ));
            }
        }
        Ok(())
    }
}

/// Why a VIP operation failed. Each message names the address, the interface and the OS or
/// netlink error (`adding 10.0.0.5/32 on eth0: Operation not permitted (os error 1)`).
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("{0}")]
    Config(String),
    #[error("vip.interface {interface}: {error}")]
    Interface { interface: String, error: io::Error },
    #[error("opening {what} for {address} on {interface}: {error}")]
    Socket {
        what: &'static str,
        address: IpAddr,
        interface: String,
        error: io::Error,
    },
    #[error("{action} {address}/{prefix_len} on {interface}: {error}")]
    Netlink {
        action: &'static str,
        address: IpAddr,
        prefix_len: u8,
        interface: String,
        error: io::Error,
    },
    #[error("announcing {address} on {interface}: {error}")]
    Announce {
        address: IpAddr,
        interface: String,
        error: io::Error,
    },
    #[error("renewing {address} on {interface}: it expired (lifetime_s ran out before a renewal)")]
    Expired { address: IpAddr, interface: String },
    #[error("removing {address} on {interface}: the helper thread: {error}")]
    Thread {
        address: IpAddr,
        interface: String,
        error: io::Error,
    },
}

/// Awaits one netlink request for at most [`NETLINK_TIMEOUT_MS`]; a netlink error becomes
/// the OS error it carries.
async fn bounded<T>(
    request: impl std::future::Future<Output = Result<T, rtnetlink::Error>>,
) -> io::Result<T> {
    match tokio::time::timeout(Duration::from_millis(NETLINK_TIMEOUT_MS), request).await {
        Ok(result) => result.map_err(netlink_io),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from netlink within {NETLINK_TIMEOUT_MS} ms"),
        )),
    }
}

/// A netlink error as the OS error it carries (`File exists (os error 17)`).
fn netlink_io(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// The virtual IP on one interface. See the module's invariants.
pub struct Vip {
    config: VipConfig,
    netlink: rtnetlink::Handle,
    /// The socket the announcements leave on: `AF_PACKET` for IPv4, raw ICMPv6 for IPv6.
    announcer: Arc<OwnedFd>,
    /// True from a successful add in `acquire` until `release` removed the address or
    /// `renew` found that the kernel had (lifetime expired).
    held: bool,
    /// The repeats of the current acquire; `None` when none are pending.
    repeats: Option<Arc<Repeats>>,
    /// When the address's lifetime was last set (acquire or renew); `None` when not held.
    renewed_at: Option<tokio::time::Instant>,
}

/// The announcements still due after an acquire. The task sends only while holding `cancelled`
/// unset; `release` sets it first, so nothing leaves after that.
struct Repeats {
    cancelled: Mutex<bool>,
}

impl Repeats {
    fn cancel(&self) {
        *self.cancelled.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }
}

impl Drop for Vip {
    /// Stops pending announcements. The address itself stays: removing it needs netlink, so
    /// call `release` (or `release_blocking`) first.
    fn drop(&mut self) {
        if let Some(repeats) = self.repeats.take() {
            repeats.cancel();
        }
    }
}

/// What an announcement needs to know about the interface, read when acquiring.
#[derive(Clone, Copy, Debug)]
struct Link {
    index: u32,
    /// The interface's MAC; `None` on a link without Ethernet addresses (no announcement).
    mac: Option<[u8; 6]>,
}

impl Vip {
    /// Resolves the interface and opens the netlink and announcement sockets in the calling
    /// thread's network namespace. Fails on an invalid configuration or a missing interface.
    pub async fn new(config: VipConfig) -> Result<Vip, VipError> {
        config.validate().map_err(VipError::Config)?;
        let socket_error = |what, error| VipError::Socket {
            what,
            address: config.address,
            interface: config.interface.clone(),
            error,
        };
        let (connection, netlink, _) =
            rtnetlink::new_connection().map_err(|e| socket_error("a netlink socket", e))?;
        tokio::spawn(connection);
        let announcer = match config.address {
            IpAddr::V4(_) => packet_socket(),
            IpAddr::V6(_) => icmpv6_socket(),
        }
        .map_err(|e| socket_error("the announcement socket", e))?;
        let vip = Vip {
            config,
            netlink,
            announcer: Arc::new(announcer),
            held: false,
            repeats: None,
            renewed_at: None,
        };
        if vip.maybe_link().await?.is_none() {
            return Err(VipError::Interface {
                interface: vip.config.interface.clone(),
                error: io::Error::from_raw_os_error(libc::ENODEV),
            });
        }
        Ok(vip)
    }

    pub fn config(&self) -> &VipConfig {
        &self.config
    }

    /// Whether this node holds the address (`regent_vip_held`).
    pub fn held(&self) -> bool {
        self.held
    }

    /// At start, before this node may lead: removes a copy of the address left on the
    /// interface by a crash. Returns whether there was one (none if the interface is gone).
    pub async fn remove_stale(&self) -> Result<bool, VipError> {
        let Some(link) = self.maybe_link().await? else {
            return Ok(false);
        };
        let removed = self.remove(link.index).await?;
        if removed {
            tracing::warn!(
                address = %self.config.address, interface = %self.config.interface,
                "removed a stale copy of the virtual IP"
            );
        }
        Ok(removed)
    }

    /// Adds the address (already there is fine), then announces it: the first announcement
    /// before returning, the other `announce_count - 1` from a task, `announce_interval_ms`
    /// apart. After a failed announcement the address is still held (`held()` says so): the
    /// caller may keep it (hosts learn the MAC when their caches expire) or release it.
    pub async fn acquire(&mut self) -> Result<(), VipError> {
        let link = self
            .maybe_link()
            .await?
            .ok_or_else(|| VipError::Interface {
                interface: self.config.interface.clone(),
                error: io::Error::from_raw_os_error(libc::ENODEV),
            })?;
        let address = self.config.address;
        self.add(link.index).await?;
        self.held = true;
        tracing::info!(%address, interface = %self.config.interface, "virtual IP added");

        if let Some(previous) = self.repeats.take() {
            previous.cancel();
        }
        let Some(mac) = link.mac else {
            tracing::warn!(
                %address, interface = %self.config.interface,
                "the interface has no Ethernet address: the virtual IP is not announced"
            );
            return Ok(());
        };
        let announcement = Announcement {
            socket: self.announcer.clone(),
            index: link.index,
            mac,
            address,
        };
        announcement.send().map_err(|error| VipError::Announce {
            address,
            interface: self.config.interface.clone(),
            error,
        })?;
        if self.config.announce_count > 1 {
            let repeats = Arc::new(Repeats {
                cancelled: Mutex::new(false),
            });
            self.repeats = Some(repeats.clone());
            let count = self.config.announce_count - 1;
            let interval = Duration::from_millis(self.config.announce_interval_ms);
            let interface = self.config.interface.clone();
            tokio::spawn(async move {
                for _ in 0..count {
                    tokio::time::sleep(interval).await;
                    // Held across the send: `release` cannot pass `cancel` while a send is
                    // under way, so nothing leaves once it has.
                    let cancelled = repeats.cancelled.lock().unwrap_or_else(|e| e.into_inner());
                    if *cancelled {
                        return;
                    }
                    if let Err(error) = announcement.send() {
                        tracing::warn!(%address, %interface, %error, "announcing the virtual IP");
                    }
                }
            });
        }
        Ok(())
    }

    /// Extends the address's lifetime to `lifetime_s` from now; call it whenever the lease is
    /// renewed. It talks to the kernel at most once per quarter of the lifetime (calls in
    /// between return at once), and does nothing without a lifetime or when not held. It never
    /// adds the address: if the kernel already removed it, `held()` turns false and the error
    /// says it expired.
    pub async fn renew(&mut self) -> Result<(), VipError> {
        let (Some(lifetime), Some(renewed_at), true) =
            (self.config.lifetime_s, self.renewed_at, self.held)
        else {
            return Ok(());
        };
        if renewed_at.elapsed() < Duration::from_secs(u64::from(lifetime)) / 4 {
            return Ok(());
        }
        let link = match self.maybe_link().await? {
            Some(link) if !self.list(link.index).await?.is_empty() => link,
            _ => {
                self.expire();
                return Err(VipError::Expired {
                    address: self.config.address,
                    interface: self.config.interface.clone(),
                });
            }
        };
        // Between the listing and this replace the kernel could expire the address, and the
        // replace would add it back: the window is a netlink round trip, against a lifetime
        // checked once a second.
        self.add(link.index).await
    }

    /// The kernel removed the address: forget it and its announcements.
    fn expire(&mut self) {
        if let Some(repeats) = self.repeats.take() {
            repeats.cancel();
        }
        self.held = false;
        self.renewed_at = None;
        tracing::warn!(
            address = %self.config.address, interface = %self.config.interface,
            "the virtual IP expired before it was renewed"
        );
    }

    /// Adds the address, or replaces it (setting its lifetime again) if it is there.
    async fn add(&mut self, index: u32) -> Result<(), VipError> {
        let VipConfig {
            address,
            prefix_len,
            lifetime_s,
            ..
        } = self.config;
        let mut add = self
            .netlink
            .address()
            .add(index, address, prefix_len)
            .replace();
        if address.is_ipv6() {
            // No duplicate address detection: it would hold the address tentative (unusable)
            // for a second or more, and Raft, not DAD, decides who may hold it.
            add.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        if let Some(lifetime) = lifetime_s {
            // Preferred as long as valid: the address is never left deprecated but present.
            let mut info = CacheInfo::default();
            info.ifa_preferred = lifetime;
            info.ifa_valid = lifetime;
            add.message_mut()
                .attributes
                .push(AddressAttribute::CacheInfo(info));
        }
        let started = tokio::time::Instant::now();
        match bounded(add.execute()).await {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(error) => return Err(self.netlink_error("adding", error)),
        }
        self.renewed_at = Some(started);
        Ok(())
    }

    /// Stops pending announcements, then removes the address (already gone is fine, and so is
    /// a missing interface: the address went with it).
    pub async fn release(&mut self) -> Result<(), VipError> {
        if let Some(repeats) = self.repeats.take() {
            repeats.cancel();
        }
        let removed = match self.maybe_link().await? {
            Some(link) => self.remove(link.index).await?,
            None => false,
        };
        self.held = false;
        self.renewed_at = None;
        if removed {
            tracing::info!(
                address = %self.config.address, interface = %self.config.interface,
                "virtual IP removed"
            );
        }
        Ok(())
    }

    /// Every copy of the address on the interface (one, unless added with several prefixes).
    async fn list(&self, index: u32) -> Result<Vec<AddressMessage>, VipError> {
        let listing = self
            .netlink
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(self.config.address)
            .execute();
        bounded(listing.try_collect())
            .await
            .map_err(|e| self.netlink_error("listing", e))
    }

    /// Removes every copy of the address on the interface; returns whether there was one.
    async fn remove(&self, index: u32) -> Result<bool, VipError> {
        let copies = self.list(index).await?;
        let found = !copies.is_empty();
        for copy in copies {
            match bounded(self.netlink.address().del(copy).execute()).await {
                Ok(()) => {}
                // Gone between the listing and now: what we wanted.
                Err(error) if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
                Err(error) => return Err(self.netlink_error("removing", error)),
            }
        }
        Ok(found)
    }

    /// The interface's index and MAC, looked up by name each time (an interface recreated
    /// under the same name gets a new index); `None` if there is no such interface.
    async fn maybe_link(&self) -> Result<Option<Link>, VipError> {
        let mut links = self
            .netlink
            .link()
            .get()
            .match_name(self.config.interface.clone())
            .execute();
        let message = match bounded(links.try_next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(None),
            Err(error) if error.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            Err(error) => {
                return Err(VipError::Interface {
                    interface: self.config.interface.clone(),
                    error,
                })
            }
        };
        let mac = (message.header.link_layer_type == LinkLayerType::Ether)
            .then(|| {
                message
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                        _ => None,
                    })
            })
            .flatten();
        Ok(Some(Link {
            index: message.header.index,
            mac,
        }))
    }

    fn netlink_error(&self, action: &'static str, error: io::Error) -> VipError {
        VipError::Netlink {
            action,
            address: self.config.address,
            prefix_len: self.config.prefix_len,
            interface: self.config.interface.clone(),
            error,
        }
    }
}

/// Removes the address from a path without a runtime (shutdown, a panic hook): runs
/// [`Vip::remove_stale`] on a thread of its own with a one-thread runtime, in the namespace of
/// the calling thread. Returns whether the address was there. It cannot stop announcements
/// still due from a live [`Vip`] of this process: drop or release that one first, or abort
/// right after (a panic hook does).
pub fn release_blocking(config: &VipConfig) -> Result<bool, VipError> {
    let thread_error = |error| VipError::Thread {
        address: config.address,
        interface: config.interface.clone(),
        error,
    };
    let owned = config.clone();
    let thread = std::thread::Builder::new()
        .name("regent-vip-release".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| VipError::Thread {
                    address: owned.address,
                    interface: owned.interface.clone(),
                    error,
                })?;
            runtime.block_on(async move { Vip::new(owned).await?.remove_stale().await })
        })
        .map_err(thread_error)?;
    thread
        .join()
        .map_err(|_| thread_error(io::Error::other("the thread panicked")))?
}

/// One announcement of the address from this interface.
struct Announcement {
    socket: Arc<OwnedFd>,
    index: u32,
    mac: [u8; 6],
    address: IpAddr,
}

impl Announcement {
    /// Sends it once: for IPv4 an ARP request and an ARP reply (hosts differ in which one
    /// they act on), for IPv6 one neighbour advertisement.
    fn send(&self) -> io::Result<()> {
        match self.address {
            IpAddr::V4(address) => {
                for operation in [ARP_REQUEST, ARP_REPLY] {
                    let frame = gratuitous_arp(self.mac, address, operation);
                    send_frame(&self.socket, self.index, &frame)?;
                }
                Ok(())
            }
            IpAddr::V6(address) => {
                let message = neighbour_advertisement(self.mac, address);
                send_icmpv6(&self.socket, self.index, address, &message)
            }
        }
    }
}

pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;
/// An Ethernet frame's smallest size without its checksum; shorter frames are padded.
const ETHERNET_FRAME_BYTES_MIN: usize = 60;
/// ICMPv6 type of a neighbour advertisement (RFC 4861, 4.4).
pub const ICMPV6_NEIGHBOUR_ADVERTISEMENT: u8 = 136;

/// A gratuitous ARP frame (RFC 5227's announcement): broadcast from `mac`, sender and target
/// protocol address both `address`. A reply carries `mac` as its target hardware address
/// too, which Linux requires before it takes a reply as gratuitous; a request carries zeros.
pub fn gratuitous_arp(mac: [u8; 6], address: Ipv4Addr, operation: u16) -> [u8; 60] {
    assert!(operation == ARP_REQUEST || operation == ARP_REPLY);
    let target_mac = if operation == ARP_REPLY { mac } else { [0; 6] };
    let mut frame = [0u8; ETHERNET_FRAME_BYTES_MIN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        frame[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&[0xff; 6]);
    put(&mac);
    put(&ETHERTYPE_ARP.to_be_bytes());
    put(&1u16.to_be_bytes()); // Hardware: Ethernet.
    put(&0x0800u16.to_be_bytes()); // Protocol: IPv4.
    put(&[6, 4]);
    put(&operation.to_be_bytes());
    put(&mac);
    put(&address.octets());
    put(&target_mac);
    put(&address.octets());
    assert_eq!(at, 42);
    frame
}

/// An unsolicited neighbour advertisement for `address` (RFC 4861, 4.4 and 7.2.6): override
/// set, solicited unset, with the target link-layer address option. The checksum is left zero:
/// the kernel fills it in on a raw ICMPv6 socket.
pub fn neighbour_advertisement(mac: [u8; 6], address: Ipv6Addr) -> [u8; 32] {
    let mut message = [0u8; 32];
    message[0] = ICMPV6_NEIGHBOUR_ADVERTISEMENT;
    message[4] = 0x20; // R = 0, S = 0, O = 1.
    message[8..24].copy_from_slice(&address.octets());
    message[24] = 2; // Option: target link-layer address ...
    message[25] = 1; // ... eight bytes long.
    message[26..32].copy_from_slice(&mac);
    message
}

fn cvt(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn owned_socket(
    domain: libc::c_int,
    kind: libc::c_int,
    protocol: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; a descriptor it returns is ours alone.
    let fd = cvt(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `AF_PACKET` socket for sending whole frames. Protocol 0: it receives nothing.
fn packet_socket() -> io::Result<OwnedFd> {
    owned_socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
}

/// A raw ICMPv6 socket whose packets leave with hop limit 255, as RFC 4861 requires of
/// neighbour discovery (receivers drop any other).
fn icmpv6_socket() -> io::Result<OwnedFd> {
    let socket = owned_socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6)?;
    let hops: libc::c_int = 255;
    for option in [libc::IPV6_MULTICAST_HOPS, libc::IPV6_UNICAST_HOPS] {
        // SAFETY: `hops` outlives the call and its size is passed.
        cvt(unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IPV6,
                option,
                (&hops as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
    }
    Ok(socket)
}

fn send_frame(socket: &OwnedFd, index: u32, frame: &[u8]) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETHERTYPE_ARP.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: `frame` and `to` outlive the call and their sizes are passed.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT,
            (&to as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check_sent(sent, frame.len())
}

/// Sends `message` to all nodes (ff02::1) on the interface, from `source` (the VIP, which is
/// on the interface by now and, added without DAD, usable at once).
fn send_icmpv6(socket: &OwnedFd, index: u32, source: Ipv6Addr, message: &[u8]) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    from.sin6_family = libc::AF_INET6 as u16;
    from.sin6_addr.s6_addr = source.octets();
    from.sin6_scope_id = index;
    // SAFETY: `from` outlives the call and its size is passed. Binding again to the same
    // address is allowed; to another one (the interface changed) it fails with EINVAL, and a
    // neighbour advertisement from another address would do as well, so that is not an error.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&from as *const libc::sockaddr_in6).cast(),
            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINVAL) {
            return Err(error);
        }
    }
    let mut to = from;
    to.sin6_addr.s6_addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    // SAFETY: `message` and `to` outlive the call and their sizes are passed.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            libc::MSG_DONTWAIT,
            (&to as *const libc::sockaddr_in6).cast(),
            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    check_sent(sent, message.len())
}

fn check_sent(sent: isize, len: usize) -> io::Result<()> {
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if sent as usize != len {
        return Err(io::Error::other(format!("sent {sent} of {len} bytes")));
    }
    Ok(())
}

/// Ties the address to this node's leadership, following the published status until the
/// driver is gone: acquired once the node is writable (after `pre_promote`: the status is
/// writable only then), renewed with each lease renewal, released `lease_warning_ms` before
/// an unrenewed lease lapses, when the node stops being writable, and at stop. `held` mirrors
/// [`Vip::held`] for `regent_vip_held`.
pub async fn follow(
    mut vip: Vip,
    mut status: tokio::sync::watch::Receiver<crate::api::status::NodeStatus>,
    live: tokio::sync::watch::Receiver<crate::api::LiveOptions>,
    held: Arc<std::sync::atomic::AtomicBool>,
) {
    use crate::clock;
    use std::sync::atomic::Ordering;
    let mut renewed: Option<u64> = None;
    loop {
        let s = status.borrow_and_update().clone();
        let now = clock::now();
        let warning_ns = live.borrow().lease_warning_ms * 1_000_000;
        let deadline = s.lease_deadline_ns;
        // Writable, and not yet within the warning period of an unrenewed lease.
        let keep =
            s.writable_at(now) && deadline.is_some_and(|d| now < d.saturating_sub(warning_ns));
        match (vip.held(), keep) {
            (false, true) => match vip.acquire().await {
                Ok(()) => {
                    renewed = deadline;
                    tracing::info!(address = %vip.config().address, interface = %vip.config().interface, "virtual IP acquired: this node is writable");
                }
                Err(err) => tracing::error!(error = %err, "virtual IP: acquiring failed"),
            },
            (true, false) => {
                let why = if s.writable_at(now) {
                    "the lease is about to lapse unrenewed"
                } else {
                    "this node is no longer writable"
                };
                match vip.release().await {
                    Ok(()) => {
                        tracing::info!(address = %vip.config().address, why, "virtual IP released")
                    }
                    Err(err) => tracing::error!(error = %err, why, "virtual IP: releasing failed"),
                }
            }
            (true, true) if deadline > renewed => {
                renewed = deadline;
                if let Err(err) = vip.renew().await {
                    tracing::error!(error = %err, "virtual IP: renewing failed");
                }
            }
            _ => {}
        }
        held.store(vip.held(), Ordering::Relaxed);
        // Wake at the warning point of the lease as published (or when the status changes).
        let wake = deadline
            .filter(|_| vip.held())
            .map(|d| d.saturating_sub(warning_ns));
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep(clock::until(at, clock::now())).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = status.changed() => if changed.is_err() { break },
            _ = sleep => {}
        }
    }
    if vip.held() {
        match vip.release().await {
            Ok(()) => tracing::info!("virtual IP released at stop"),
            Err(err) => tracing::error!(error = %err, "virtual IP: releasing at stop failed"),
        }
    }
    held.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<VipConfig, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_depend_on_the_address_family() {
        let v4 = parse("address: 10.0.0.5\ninterface: eth0\n").unwrap();
        assert_eq!(v4, VipConfig::new("10.0.0.5".parse().unwrap(), "eth0"));
        assert_eq!(v4.prefix_len, 32);
        assert_eq!(v4.announce_count, 3);
        assert_eq!(v4.announce_interval_ms, 200);
        let v6 =
            parse("address: fd00::5\ninterface: eth0\nprefix_len: 64\nlifetime_s: 5\n").unwrap();
        assert_eq!(v6.lifetime_s, Some(5));
        assert_eq!(v6.prefix_len, 64);
        assert_eq!(
            parse("address: fd00::5\ninterface: eth0\n")
                .unwrap()
                .prefix_len,
            128
        );
        assert_eq!(v4.lifetime_s, None);
        assert_eq!(v4.validate(), Ok(()));
        assert_eq!(v6.validate(), Ok(()));
        let err = parse("address: 10.0.0.5\ninterface: eth0\nannounce: 3\n").unwrap_err();
        assert!(err.contains("unknown field `announce`"), "{err}");
        // What is written reads back the same.
        let yaml = serde_yaml::to_string(&v6).unwrap();
        assert_eq!(parse(&yaml).unwrap(), v6);
    }

    #[test]
    fn validation_names_the_field() {
        let good = VipConfig::new("10.0.0.5".parse().unwrap(), "eth0");
        let check = |change: &dyn Fn(&mut VipConfig)| {
            let mut config = good.clone();
            change(&mut config);
            config.validate().unwrap_err()
        };
        assert_eq!(
            check(&|c| c.prefix_len = 33),
            "vip.prefix_len: must be within 1..=32 for 10.0.0.5 (got 33)"
        );
        assert_eq!(
            check(&|c| c.prefix_len = 0),
            "vip.prefix_len: must be within 1..=32 for 10.0.0.5 (got 0)"
        );
        assert_eq!(
            check(&|c| c.interface.clear()),
            "vip.interface: must not be empty"
        );
        assert_eq!(
            check(&|c| c.interface = "a-very-long-interface".into()),
            "vip.interface: \"a-very-long-interface\" is longer than 15 bytes"
        );
        assert_eq!(
            check(&|c| c.interface = "eth0/1".into()),
            "vip.interface: \"eth0/1\" is not an interface name"
        );
        assert!(check(&|c| c.address = "224.0.0.1".parse().unwrap()).starts_with("vip.address: "));
        assert!(check(&|c| c.address = "::1".parse().unwrap()).starts_with("vip.address: "));
        assert_eq!(
            check(&|c| c.announce_count = 0),
            "vip.announce_count: must be within 1..=100 (got 0)"
        );
        assert_eq!(
            check(&|c| c.announce_interval_ms = 1),
            "vip.announce_interval_ms: must be within 10..=60000 (got 1)"
        );
        assert_eq!(
            check(&|c| c.lifetime_s = Some(1)),
            "vip.lifetime_s: must be within 2..=86400 (got 1)"
        );
        let mut v6 = VipConfig::new("fd00::5".parse().unwrap(), "eth0");
        v6.prefix_len = 129;
        assert_eq!(
            v6.validate().unwrap_err(),
            "vip.prefix_len: must be within 1..=128 for fd00::5 (got 129)"
        );
    }

    #[test]
    fn gratuitous_arp_layout() {
        let mac = [2, 0, 0, 0, 0, 0xaa];
        let request = gratuitous_arp(mac, Ipv4Addr::new(10, 0, 0, 5), ARP_REQUEST);
        #[rustfmt::skip]
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0xaa, 0x08, 0x06,
            0, 1, 0x08, 0, 6, 4, 0, 1,
            2, 0, 0, 0, 0, 0xaa, 10, 0, 0, 5,
            0, 0, 0, 0, 0, 0, 10, 0, 0, 5,
        ];
        assert_eq!(request[..42], expected);
        assert!(request[42..].iter().all(|&b| b == 0));
        let reply = gratuitous_arp(mac, Ipv4Addr::new(10, 0, 0, 5), ARP_REPLY);
        assert_eq!(reply[21], 2);
        assert_eq!(reply[32..38], mac);
    }

    #[test]
    fn neighbour_advertisement_layout() {
        let mac = [2, 0, 0, 0, 0, 0xbb];
        let address: Ipv6Addr = "fd00::5".parse().unwrap();
        let na = neighbour_advertisement(mac, address);
        assert_eq!(na[..8], [136, 0, 0, 0, 0x20, 0, 0, 0]);
        assert_eq!(na[8..24], address.octets());
        assert_eq!(na[24..], [2, 1, 2, 0, 0, 0, 0, 0xbb]);
    }
}
