//! A toy master beside regent on the Rust library: it writes a counter only while its
//! `Leadership` says it may, every write fenced with the term and sent exactly once.
//!
//! ```sh
//! cargo run --release -p regent-client --example host -- demo/node1/regent.sock 10
//! ```

use regent_client::{
    Kv, Leadership, LeadershipEvent, LeadershipOptions, RegentError, WriteOptions,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let socket = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/run/regent/regent.sock".into()),
    );
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let (lead, events) = Leadership::start(&socket, LeadershipOptions::default());
    std::thread::spawn(move || {
        for event in events {
            match event {
                LeadershipEvent::Active { term, .. } => println!("[watch] active in term {term}"),
                LeadershipEvent::Inactive { reason, .. } => println!("[watch] inactive: {reason}"),
            }
        }
    });
    let kv = Kv::new(&socket, Some(lead.clone()), WriteOptions::default());
    let (mut written, mut refused, mut counter) = (0u64, 0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        if !lead.is_writable() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        counter += 1;
        match kv.put(b"toy-master/counter", counter.to_string().as_bytes(), None) {
            Ok(_) => written += 1,
            Err(RegentError::NotWritable { .. }) => {}
            Err(err) => {
                refused += 1;
                println!("[write] {err}");
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    lead.close();
    println!("host: written={written} refused={refused}");
}
