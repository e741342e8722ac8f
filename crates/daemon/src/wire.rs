//! What regents say to each other over QUIC: Raft messages, and the reports of their hosts'
//! journal progress that a follower forwards to the leader (only the leader can put them in
//! the log, and the retention rule needs every member's checkpoint there).
//!
//! Versions: `regent/2` (commit 24c16e9) has `Raft` and `HostReport`; `regent/3` appended
//! `Clock`. Postcard encodes a variant by its index, so the first two encode alike in both.
//!
//! Invariant: a host report names no node of its own: the receiver attributes it to the
//! authenticated peer that sent it, so a regent can only report for its own host.

use regent_raft::{Message, MessageBody};
use regent_replica::{Candidacy, ClockStamp, ElectionRole};
use regent_transport::WireMessage;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    Raft(Message),
    /// The sender's host applied the journal up to `applied` and/or its durable checkpoint
    /// covers `checkpoint`.
    HostReport {
        applied: Option<u64>,
        checkpoint: Option<u64>,
    },
    /// The sender's clock (`regent_replica::ClockStamp`): a request once per heartbeat
    /// interval, or the answer to one (`echo`: the request's `sent_at`). Its CLOCK_MONOTONIC
    /// when sent, when its replica started (a new value: a new incarnation, measured afresh),
    /// and whether a quorum of voters' clocks agrees with its own. Appended last, so the
    /// encoding of the variants above is unchanged.
    ///
    /// It also carries the sender's election role (`role`: 0 candidate, 1 nofailover,
    /// 2 witness; a code this build does not know counts as a role that may not lead), its
    /// priority, and whether it is ready to lead now (`regent_replica::Candidacy`).
    Clock {
        sent_at: u64,
        epoch: u64,
        vouched: bool,
        echo: Option<u64>,
        role: u8,
        priority: u32,
        ready: bool,
    },
}

/// The wire code of an election role.
fn role_code(role: ElectionRole) -> u8 {
    match role {
        ElectionRole::Candidate => 0,
        ElectionRole::NoFailover => 1,
        ElectionRole::Witness => 2,
    }
}

/// The election role a wire code names: an unknown code (a newer role) may not lead.
fn role_of(code: u8) -> ElectionRole {
    match code {
        0 => ElectionRole::Candidate,
        2 => ElectionRole::Witness,
        _ => ElectionRole::NoFailover,
    }
}

impl PeerMessage {
    pub fn clock(stamp: ClockStamp) -> PeerMessage {
        PeerMessage::Clock {
            sent_at: stamp.sent_at,
            epoch: stamp.epoch,
            vouched: stamp.vouched,
            echo: stamp.echo,
            role: role_code(stamp.candidacy.role),
            priority: stamp.candidacy.priority,
            ready: stamp.ready,
        }
    }

    /// The clock stamp a `Clock` message carries (`None` for any other message).
    pub fn stamp(&self) -> Option<ClockStamp> {
        let PeerMessage::Clock {
            sent_at,
            epoch,
            vouched,
            echo,
            role,
            priority,
            ready,
        } = *self
        else {
            return None;
        };
        Some(ClockStamp {
            sent_at,
            epoch,
            vouched,
            echo,
            candidacy: Candidacy {
                role: role_of(role),
                priority,
            },
            ready,
        })
    }
}

impl WireMessage for PeerMessage {
    fn coalesce_key(&self) -> Option<u64> {
        match self {
            PeerMessage::Raft(m) => m.coalesce_key(),
            // A queued report is replaced by a newer one: the indexes only grow. (The Raft
            // keys are 1 and 2.)
            PeerMessage::HostReport { .. } => Some(3),
            // Only the newest stamp is worth sending after a stall; a request and an answer
            // are kept apart.
            PeerMessage::Clock { echo: None, .. } => Some(4),
            PeerMessage::Clock { echo: Some(_), .. } => Some(5),
        }
    }

    /// Clock stamps, a TimeoutNow with its cause and a stalled leader's notice came with
    /// `regent/3`: a `regent/2` node cannot decode them (it would close the link), so they never
    /// go to a link of that version. (The driver sends such a link a plain TimeoutNow instead;
    /// this catches what was queued before the link came up at version 2.)
    fn wire_version_min(&self) -> u8 {
        match self {
            PeerMessage::Raft(m)
                if matches!(
                    m.body,
                    MessageBody::TimeoutNowBecause { .. } | MessageBody::StallStepDown
                ) =>
            {
                3
            }
            PeerMessage::Raft(_) | PeerMessage::HostReport { .. } => {
                regent_transport::tls::WIRE_VERSION_MIN
            }
            PeerMessage::Clock { .. } => 3,
        }
    }
}
