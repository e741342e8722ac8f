//! Who is what when a cluster starts, drawn per seed: some nodes vote, some are learners (up to
//! as many as the voters, some of them lagging behind on slow disks), the rest are spares
//! outside the configuration that the operator may add later.
//!
//! Invariant: at least two voters (so that a leader can be deposed), and the configuration
//! names only simulated nodes.

use super::time::MS;
use regent_raft::{Membership, Nanos, NodeId, SplitMix64};
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct Layout {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Node positions whose every disk write takes `lag_ns` longer: learners that lag.
    pub slow: BTreeSet<usize>,
    pub lag_ns: Nanos,
}

impl Layout {
    /// Draws the layout of `n` nodes. Even voter counts are drawn too: that is where a wrong
    /// joint quorum is a wrong quorum (a majority of four plus one is not a majority of four).
    pub fn draw(rng: &mut SplitMix64, n: usize) -> Layout {
        let v = [3, 3, 4, 2, n][rng.below(5) as usize].min(n).max(n.min(2));
        let spare = n - v;
        let l = rng.below(v.min(spare) as u64 + 1) as usize;
        let ids: Vec<NodeId> = (1..=n as u64).map(NodeId).collect();
        let voters: BTreeSet<NodeId> = ids[..v].iter().copied().collect();
        let learners: BTreeSet<NodeId> = ids[v..v + l].iter().copied().collect();
        let slow = (v..v + l).filter(|_| rng.below(2) == 0).collect();
        let lag_ns = [2, 5, 15][rng.below(3) as usize] * MS;
        Layout {
            voters,
            learners,
            slow,
            lag_ns,
        }
    }

    /// The configuration the cluster starts with.
    pub fn bootstrap(&self) -> Membership {
        Membership {
            voters: self.voters.clone(),
            voters_outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
        }
    }
}
