//! The failover history: every record a replica writes names the node the checker saw leading
//! its term, is written in that term (by its leader), and a hand-over's record names the
//! leader of the term before as the previous leader (an election's or a disk stall's, some
//! earlier leader).
//! At the end every node keeps at most `keep` records, one per term, in term order.
//!
//! Checked where entries are applied (the record a transaction would put, whether or not its
//! compare let it land: a retry must be as true as the first) and on the final state.

use super::facts::Facts;
use super::{Finding, ViolationKind};
use regent_raft::{Entry, EntryPayload, Term};
use regent_replica::{history_key, Cause, HistoryRecord, Replica, HISTORY_PREFIX};
use regent_storage::{Command, Op, Proposal};

/// The history records an applied entry would write (a replica's own transaction).
pub fn records_in(e: &Entry) -> Result<Vec<HistoryRecord>, Finding> {
    let EntryPayload::Normal(data) = &e.payload else {
        return Ok(Vec::new());
    };
    let Ok(Proposal {
        command: Command::Txn(txn),
        ..
    }) = Proposal::decode(data)
    else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    for op in &txn.success {
        let Op::Put { key, value } = op else { continue };
        if !key.starts_with(HISTORY_PREFIX) {
            continue;
        }
        let Some(record) = HistoryRecord::decode(value) else {
            let detail = format!(
                "{} {}: a history record that does not parse",
                e.index, e.term
            );
            return Err(Finding::new(ViolationKind::History, detail));
        };
        if history_key(record.term) != *key {
            let detail = format!(
                "{} {}: {record:?} under another term's key",
                e.index, e.term
            );
            return Err(Finding::new(ViolationKind::History, detail));
        }
        records.push(record);
    }
    Ok(records)
}

/// A record applied at `e` tells the truth about its term.
pub fn check_record(facts: &Facts, e: &Entry, record: &HistoryRecord) -> Result<(), Finding> {
    let fail = |what: String| {
        Err(Finding::new(
            ViolationKind::History,
            format!("{} {}: {record:?}: {what}", e.index, e.term),
        ))
    };
    if record.term != e.term {
        return fail(format!("written in {} for another term", e.term));
    }
    let leader = facts.leader_of(record.term);
    if leader != Some(record.leader) {
        return fail(format!("the checker saw {leader:?} lead {}", record.term));
    }
    if !matches!(record.cause, Cause::Election | Cause::DiskStall) {
        let before = Term(record.term.0 - 1);
        let previous = facts.leader_of(before);
        if record.previous_leader != previous || previous.is_none() {
            return fail(format!("a hand-over, but {previous:?} led {before}"));
        }
    } else if let Some(p) = record.previous_leader {
        if !facts.led_before(p, record.term) {
            return fail(format!("{p} led no term before {}", record.term));
        }
    }
    Ok(())
}

/// A node's history at the end: at most `keep` records, strictly increasing terms.
pub fn check_final(replica: &Replica, keep: usize) -> Result<usize, Finding> {
    let records = replica.history(usize::MAX).map_err(|err| {
        let detail = format!(
            "{}: the history could not be read: {err}",
            replica.core().id()
        );
        Finding::new(ViolationKind::Contract, detail)
    })?;
    if records.len() > keep {
        let detail = format!(
            "{} keeps {} records, more than {keep}",
            replica.core().id(),
            records.len()
        );
        return Err(Finding::new(ViolationKind::History, detail));
    }
    if let Some(w) = records.windows(2).find(|w| w[0].term >= w[1].term) {
        let detail = format!("{}: records out of term order: {w:?}", replica.core().id());
        return Err(Finding::new(ViolationKind::History, detail));
    }
    Ok(records.len())
}
