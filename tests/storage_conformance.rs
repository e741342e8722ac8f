//! The one conformance suite of `LogStorage`, run against `RedbStorage` and `MemStorage`: the
//! log, batches, the KV state machine, transactions, the change feed, sessions, compaction and
//! snapshots. Both backends must give the same answers (`backends_agree` checks it directly).

use regent_raft::{Entry, EntryPayload, HardState, LogIndex, Membership, NodeId, Term};
use regent_storage::{
    Applied, ApplyResult, Batch, Command, CommandError, Compare, CompareOp, CompareTarget,
    Identity, InstallProgress, JournalRetention, LogStorage, MemFault, MemStorage, Op, Proposal,
    RedbStorage, Response, SessionSeq, StateReader, StorageError, StorageOptions, Txn,
};

// ---------------------------------------------------------------------------------------------
// Harnesses: how to make a fresh store and how to restart one.

trait Harness {
    type S: LogStorage;
    fn fresh(&mut self, options: StorageOptions) -> Self::S;
    /// What a restart does: for redb, close and reopen the file; for memory, reload.
    fn restart(&mut self, storage: Self::S) -> Self::S;
}

struct RedbHarness {
    dirs: Vec<tempfile::TempDir>,
    options: StorageOptions,
}

struct MemHarness;

fn identity() -> Identity {
    Identity {
        cluster_id: "conformance".into(),
        node_id: NodeId(1),
    }
}

impl Harness for RedbHarness {
    type S = RedbStorage;
    fn fresh(&mut self, options: StorageOptions) -> Self::S {
        let dir = tempfile::tempdir().unwrap();
        let (storage, recovered) =
            RedbStorage::open(dir.path(), &identity(), options.clone()).unwrap();
        assert_eq!(recovered.state.first_index, LogIndex(1));
        assert_eq!(recovered.state.last_index, LogIndex(0));
        self.dirs.push(dir);
        self.options = options;
        storage
    }
    fn restart(&mut self, storage: Self::S) -> Self::S {
        let dir = storage.path().parent().unwrap().to_path_buf();
        drop(storage);
        RedbStorage::open(&dir, &identity(), self.options.clone())
            .unwrap()
            .0
    }
}

impl Harness for MemHarness {
    type S = MemStorage;
    fn fresh(&mut self, options: StorageOptions) -> Self::S {
        MemStorage::new(identity(), options).unwrap().0
    }
    fn restart(&mut self, mut storage: Self::S) -> Self::S {
        storage.reload().unwrap();
        storage
    }
}

/// Instantiates every case of the suite for one harness.
macro_rules! conformance {
    ($module:ident, $harness:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[test]
                fn $case() {
                    let mut harness = $harness;
                    super::$case(&mut harness);
                }
            )*
        }
    };
}

macro_rules! suite {
    ($($module:ident => $harness:expr),*) => {$(
        conformance!($module, $harness, [
            fresh_store_is_empty,
            append_read_and_restart,
            truncate_replaces_the_uncommitted_tail,
            invalid_batches_change_nothing,
            kv_put_get_delete_range,
            txn_compares_pick_the_branch,
            change_feed_lists_changes_and_reports_compaction,
            bad_command_bytes_apply_as_errors,
            sessions_apply_once_and_expire_by_log_time,
            writes_are_fenced_by_the_term_of_their_entry,
            config_entries_set_the_membership,
            compact_log_drops_the_prefix,
            snapshot_round_trip,
            snapshot_is_consistent_while_writes_go_on,
            corrupted_or_incomplete_snapshots_are_rejected,
            install_keeps_a_matching_log_suffix,
            journal_appends_are_dense_fenced_and_exactly_once,
            journal_truncates_by_checkpoints_and_bounds,
            journal_travels_in_snapshots,
        ]);
    )*};
}

suite!(
    redb => RedbHarness { dirs: Vec::new(), options: StorageOptions::default() },
    mem => MemHarness
);

// ---------------------------------------------------------------------------------------------
// Helpers.

fn put(key: &str, value: &str) -> Proposal {
    Proposal::new(Command::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    })
}

fn cmd(command: Command) -> Proposal {
    Proposal::new(command)
}

fn normal(p: &Proposal) -> EntryPayload {
    EntryPayload::Normal(p.encode())
}

/// Appends `payloads` at the end of the log in `term`, commits and applies them in one batch,
/// as a single-node leader would.
fn commit_payloads(
    s: &mut impl LogStorage,
    term: u64,
    payloads: Vec<EntryPayload>,
) -> Vec<Applied> {
    let state = s.state().clone();
    let term = Term(term.max(state.hard_state.term.0));
    let mut index = state.last_index;
    let entries: Vec<Entry> = payloads
        .into_iter()
        .map(|payload| {
            index = index.next();
            Entry {
                term,
                index,
                payload,
            }
        })
        .collect();
    // Apply everything committed so far that is not applied yet, then the new entries.
    let mut committed = if state.applied < state.last_index {
        s.entries(state.applied.next(), state.last_index.next(), usize::MAX)
            .unwrap()
    } else {
        Vec::new()
    };
    committed.extend(entries.iter().cloned());
    let batch = Batch {
        hard_state: Some(HardState {
            term,
            vote: state
                .hard_state
                .vote
                .filter(|_| term == state.hard_state.term),
            commit: index,
        }),
        truncate_from: None,
        entries,
        committed,
    };
    s.write_batch(&batch).unwrap()
}

fn commit(s: &mut impl LogStorage, proposals: &[Proposal]) -> Vec<Applied> {
    commit_payloads(s, 1, proposals.iter().map(normal).collect())
}

fn outcome(applied: &Applied) -> &Result<Response, CommandError> {
    match &applied.result {
        ApplyResult::Command(outcome) => outcome,
        other => panic!("expected a command result, got {other:?}"),
    }
}

fn value_of(s: &impl LogStorage, key: &str) -> Option<Vec<u8>> {
    s.kv_get(key.as_bytes()).unwrap().map(|kv| kv.value)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Normal(format!("e{index}t{term}").into_bytes()),
    }
}

fn hs(term: u64, commit: u64) -> Option<HardState> {
    Some(HardState {
        term: Term(term),
        vote: Some(NodeId(1)),
        commit: LogIndex(commit),
    })
}

/// A store with many keys, some deletes, a session and a config, for snapshot tests.
fn populate(s: &mut impl LogStorage, keys: usize) {
    let registered = commit(s, &[cmd(Command::RegisterSession { ttl_ms: 60_000 })]);
    let Ok(Response::SessionRegistered { client_id }) = outcome(&registered[0]) else {
        panic!("session registered");
    };
    let mut with_session = put("session-key", "v");
    with_session.session = Some(SessionSeq {
        client_id: *client_id,
        seq: 1,
        acked_below: 0,
    });
    commit(s, &[with_session]);
    commit_payloads(
        s,
        1,
        vec![EntryPayload::Config(Membership::new([
            NodeId(1),
            NodeId(2),
            NodeId(3),
        ]))],
    );
    for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
        let proposals: Vec<Proposal> = chunk
            .iter()
            .map(|i| {
                put(
                    &format!("key/{i:06}"),
                    &format!("value-{i}-{}", "x".repeat(i % 50)),
                )
            })
            .collect();
        commit(s, &proposals);
    }
    commit(
        s,
        &[cmd(Command::Delete {
            key: b"key/000003".to_vec(),
        })],
    );
}

/// Streams every chunk of `from`'s snapshot into `to`.
fn transfer(
    from: &impl LogStorage,
    to: &mut impl LogStorage,
) -> Result<InstallProgress, StorageError> {
    let mut source = from.snapshot()?;
    let mut last = None;
    while let Some(chunk) = source.next_chunk()? {
        last = Some(to.install_chunk(&chunk)?);
    }
    Ok(last.expect("a snapshot has chunks"))
}

fn chunks_of(s: &impl LogStorage) -> Vec<Vec<u8>> {
    let mut source = s.snapshot().unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = source.next_chunk().unwrap() {
        chunks.push(chunk);
    }
    chunks
}

fn small_chunks() -> StorageOptions {
    StorageOptions {
        snapshot_chunk_bytes: 4096,
        ..StorageOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

fn fresh_store_is_empty<H: Harness>(h: &mut H) {
    let s = h.fresh(StorageOptions::default());
    let state = s.state().clone();
    assert_eq!(state.first_index, LogIndex(1));
    assert_eq!(state.last_index, LogIndex(0));
    assert_eq!(s.term(LogIndex(0)).unwrap(), Term(0));
    assert!(s.entries(LogIndex(1), LogIndex(1), 100).unwrap().is_empty());
    assert!(matches!(
        s.entries(LogIndex(1), LogIndex(2), 100),
        Err(StorageError::Unavailable { .. })
    ));
    assert!(matches!(
        s.term(LogIndex(1)),
        Err(StorageError::Unavailable { .. })
    ));
    assert_eq!(s.kv_get(b"missing").unwrap(), None);
    let s = h.restart(s);
    assert_eq!(s.state(), &state);
}

fn append_read_and_restart<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    let entries: Vec<Entry> = (1..=10).map(|i| entry(1 + i / 5, i)).collect();
    let applied = s
        .write_batch(&Batch {
            hard_state: hs(3, 4),
            truncate_from: None,
            entries: entries.clone(),
            committed: vec![],
        })
        .unwrap();
    assert!(applied.is_empty());
    let s = h.restart(s);
    let state = s.state();
    assert_eq!((state.last_index, state.last_term), (LogIndex(10), Term(3)));
    assert_eq!(state.hard_state, hs(3, 4).unwrap());
    assert_eq!(
        s.entries(LogIndex(1), LogIndex(11), usize::MAX).unwrap(),
        entries
    );
    assert_eq!(
        s.entries(LogIndex(3), LogIndex(6), usize::MAX).unwrap(),
        entries[2..5]
    );
    // The byte limit stops early but always returns at least one entry.
    assert_eq!(s.entries(LogIndex(1), LogIndex(11), 1).unwrap().len(), 1);
    let two = entries[0].size_bytes() + entries[1].size_bytes();
    assert_eq!(s.entries(LogIndex(1), LogIndex(11), two).unwrap().len(), 2);
    assert_eq!(s.term(LogIndex(5)).unwrap(), Term(2));
    assert!(matches!(
        s.term(LogIndex(11)),
        Err(StorageError::Unavailable { .. })
    ));
}

fn truncate_replaces_the_uncommitted_tail<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    s.write_batch(&Batch {
        hard_state: hs(1, 2),
        entries: (1..=5).map(|i| entry(1, i)).collect(),
        ..Batch::default()
    })
    .unwrap();
    let replacement: Vec<Entry> = (4..=6).map(|i| entry(2, i)).collect();
    s.write_batch(&Batch {
        hard_state: hs(2, 2),
        truncate_from: Some(LogIndex(4)),
        entries: replacement.clone(),
        committed: vec![],
    })
    .unwrap();
    // A truncation with nothing appended shortens the log.
    s.write_batch(&Batch {
        truncate_from: Some(LogIndex(6)),
        ..Batch::default()
    })
    .unwrap();
    let s = h.restart(s);
    assert_eq!(s.state().last_index, LogIndex(5));
    assert_eq!(s.state().last_term, Term(2));
    let all = s.entries(LogIndex(1), LogIndex(6), usize::MAX).unwrap();
    assert_eq!(
        all[..3],
        (1..=3).map(|i| entry(1, i)).collect::<Vec<_>>()[..]
    );
    assert_eq!(all[3..], replacement[..2]);
}

fn invalid_batches_change_nothing<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    commit(&mut s, &[put("a", "1"), put("b", "2")]);
    s.write_batch(&Batch {
        hard_state: hs(2, 2),
        entries: vec![entry(2, 3), entry(2, 4)],
        ..Batch::default()
    })
    .unwrap();
    let state = s.state().clone();
    let digest = s.digest().unwrap();
    let bad = [
        (
            "truncating a committed entry",
            Batch {
                truncate_from: Some(LogIndex(2)),
                entries: vec![entry(2, 2)],
                ..Batch::default()
            },
        ),
        (
            "a gap",
            Batch {
                entries: vec![entry(2, 6)],
                ..Batch::default()
            },
        ),
        (
            "a term below the last",
            Batch {
                entries: vec![entry(1, 5)],
                ..Batch::default()
            },
        ),
        (
            "a term above the hard state",
            Batch {
                entries: vec![entry(3, 5)],
                ..Batch::default()
            },
        ),
        (
            "the term going back",
            Batch {
                hard_state: hs(1, 2),
                ..Batch::default()
            },
        ),
        (
            "a second vote in one term",
            Batch {
                hard_state: Some(HardState {
                    term: Term(2),
                    vote: Some(NodeId(2)),
                    commit: LogIndex(2),
                }),
                ..Batch::default()
            },
        ),
        (
            "commit beyond the log",
            Batch {
                hard_state: hs(2, 9),
                ..Batch::default()
            },
        ),
        (
            "commit going back",
            Batch {
                hard_state: hs(2, 1),
                ..Batch::default()
            },
        ),
        (
            "applying above commit",
            Batch {
                committed: vec![entry(2, 3)],
                ..Batch::default()
            },
        ),
        (
            "applying out of order",
            Batch {
                hard_state: hs(2, 4),
                committed: vec![entry(2, 4)],
                ..Batch::default()
            },
        ),
        (
            "applying an entry of another term",
            Batch {
                hard_state: hs(2, 4),
                committed: vec![entry(1, 3)],
                ..Batch::default()
            },
        ),
        (
            "truncating beyond the end",
            Batch {
                truncate_from: Some(LogIndex(7)),
                ..Batch::default()
            },
        ),
    ];
    for (what, batch) in bad {
        let err = s.write_batch(&batch).expect_err(what);
        assert!(
            matches!(err, StorageError::InvalidBatch(_)),
            "{what}: {err}"
        );
        assert!(!err.requires_reload(), "{what}");
        assert_eq!(s.state(), &state, "{what}");
        assert_eq!(s.digest().unwrap(), digest, "{what}");
    }
    let s = h.restart(s);
    assert_eq!(s.state(), &state);
    assert_eq!(
        s.entries(LogIndex(3), LogIndex(5), usize::MAX).unwrap(),
        vec![entry(2, 3), entry(2, 4)]
    );
}

fn kv_put_get_delete_range<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    let results = commit(
        &mut s,
        &[
            put("a/1", "x"),
            put("a/2", "y"),
            put("b/1", "z"),
            put("a/1", "x2"),
            cmd(Command::Delete {
                key: b"b/1".to_vec(),
            }),
            cmd(Command::Delete {
                key: b"missing".to_vec(),
            }),
            cmd(Command::Get {
                key: b"a/1".to_vec(),
            }),
            cmd(Command::Range {
                prefix: b"a/".to_vec(),
                limit: 1,
            }),
        ],
    );
    assert_eq!(results.len(), 8);
    assert!(matches!(
        outcome(&results[0]),
        Ok(Response::Put {
            revision: 1,
            prev: None
        })
    ));
    let Ok(Response::Put {
        revision: 4,
        prev: Some(prev),
    }) = outcome(&results[3])
    else {
        panic!("{:?}", results[3]);
    };
    assert_eq!((prev.value.as_slice(), prev.version), (&b"x"[..], 1));
    let Ok(Response::Delete {
        revision: 5,
        prev: Some(_),
    }) = outcome(&results[4])
    else {
        panic!("{:?}", results[4]);
    };
    // Deleting nothing does not move the revision.
    assert!(matches!(
        outcome(&results[5]),
        Ok(Response::Delete {
            revision: 5,
            prev: None
        })
    ));
    let Ok(Response::Get {
        kv: Some(kv),
        revision: 5,
    }) = outcome(&results[6])
    else {
        panic!("{:?}", results[6]);
    };
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 4, 2));
    let Ok(Response::Range {
        kvs, more: true, ..
    }) = outcome(&results[7])
    else {
        panic!("{:?}", results[7]);
    };
    assert_eq!(kvs.len(), 1);
    let s = h.restart(s);
    assert_eq!(s.state().revision, 5);
    assert_eq!(s.state().applied, LogIndex(8));
    assert_eq!(value_of(&s, "a/1"), Some(b"x2".to_vec()));
    assert_eq!(value_of(&s, "b/1"), None);
    let (kvs, more) = s.kv_range(b"a/", 10).unwrap();
    assert!(!more);
    assert_eq!(
        kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        vec![b"a/1".to_vec(), b"a/2".to_vec()]
    );
    let (all, _) = s.kv_range(b"", 10).unwrap();
    assert_eq!(all.len(), 2);
}

fn txn_compares_pick_the_branch<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    commit(&mut s, &[put("k", "v1"), put("k", "v2")]);
    let txn = |compares: Vec<Compare>| {
        cmd(Command::Txn(Txn {
            compares,
            success: vec![Op::Put {
                key: b"won".to_vec(),
                value: b"yes".to_vec(),
            }],
            failure: vec![Op::Get { key: b"k".to_vec() }],
        }))
    };
    let c = |op, target| Compare {
        key: b"k".to_vec(),
        op,
        target,
    };
    let absent = |op, target| Compare {
        key: b"absent".to_vec(),
        op,
        target,
    };
    let cases = [
        (
            c(CompareOp::Equal, CompareTarget::Value(b"v2".to_vec())),
            true,
        ),
        (
            c(CompareOp::Equal, CompareTarget::Value(b"v1".to_vec())),
            false,
        ),
        (
            c(CompareOp::Greater, CompareTarget::Value(b"v1".to_vec())),
            true,
        ),
        (c(CompareOp::Equal, CompareTarget::Version(2)), true),
        (c(CompareOp::Less, CompareTarget::Version(2)), false),
        (c(CompareOp::Equal, CompareTarget::ModRevision(2)), true),
        (c(CompareOp::Equal, CompareTarget::CreateRevision(1)), true),
        (
            c(CompareOp::NotEqual, CompareTarget::CreateRevision(1)),
            false,
        ),
        (c(CompareOp::Equal, CompareTarget::Exists(true)), true),
        (absent(CompareOp::Equal, CompareTarget::Exists(false)), true),
        (absent(CompareOp::Equal, CompareTarget::Version(0)), true),
        // A value compare on a missing key fails whatever the operator.
        (
            absent(CompareOp::NotEqual, CompareTarget::Value(b"x".to_vec())),
            false,
        ),
    ];
    for (compare, expected) in cases {
        let results = commit(&mut s, &[txn(vec![compare.clone()])]);
        let Ok(Response::Txn {
            succeeded,
            responses,
            ..
        }) = outcome(&results[0])
        else {
            panic!("{compare:?}: {:?}", results[0]);
        };
        assert_eq!(*succeeded, expected, "{compare:?}");
        assert_eq!(responses.len(), 1);
    }
    // All writes of a transaction share one revision; reads inside see earlier writes.
    let before = s.state().revision;
    let results = commit(
        &mut s,
        &[cmd(Command::Txn(Txn {
            compares: vec![],
            success: vec![
                Op::Put {
                    key: b"t1".to_vec(),
                    value: b"1".to_vec(),
                },
                Op::Put {
                    key: b"t2".to_vec(),
                    value: b"2".to_vec(),
                },
                Op::Get {
                    key: b"t1".to_vec(),
                },
                Op::Delete { key: b"k".to_vec() },
            ],
            failure: vec![],
        }))],
    );
    let Ok(Response::Txn {
        succeeded: true,
        revision,
        responses,
    }) = outcome(&results[0])
    else {
        panic!("{:?}", results[0]);
    };
    assert_eq!(*revision, before + 1);
    assert_eq!(s.state().revision, before + 1);
    let Response::Get { kv: Some(kv), .. } = &responses[2] else {
        panic!("{:?}", responses[2]);
    };
    assert_eq!(kv.mod_revision, before + 1);
    assert_eq!(value_of(&s, "k"), None);
    // Existence compares only take Equal and NotEqual; the refusal is a result, not a panic.
    let results = commit(
        &mut s,
        &[txn(vec![c(CompareOp::Less, CompareTarget::Exists(true))])],
    );
    assert!(matches!(
        outcome(&results[0]),
        Err(CommandError::InvalidCompare { .. })
    ));
}

fn change_feed_lists_changes_and_reports_compaction<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions {
        changes_retained_max: 5,
        ..StorageOptions::default()
    });
    commit(
        &mut s,
        &[
            put("a", "1"),
            put("b", "2"),
            cmd(Command::Delete { key: b"a".to_vec() }),
        ],
    );
    let page = s.changes_after(0, 10).unwrap();
    assert!(!page.more);
    let summary: Vec<(u64, Vec<u8>, bool)> = page
        .changes
        .iter()
        .map(|c| {
            (
                c.revision,
                c.key.clone(),
                matches!(c.kind, regent_storage::ChangeKind::Delete),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, b"a".to_vec(), false),
            (2, b"b".to_vec(), false),
            (3, b"a".to_vec(), true)
        ]
    );
    let page = s.changes_after(1, 1).unwrap();
    assert_eq!((page.changes[0].revision, page.more), (2, true));
    assert!(s.changes_after(3, 10).unwrap().changes.is_empty());
    // Seven more writes: only the last five revisions stay.
    commit(
        &mut s,
        &(0..7).map(|i| put("c", &i.to_string())).collect::<Vec<_>>(),
    );
    let s = h.restart(s);
    assert_eq!(s.state().revision, 10);
    let err = s.changes_after(2, 10).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::ChangesCompacted {
                requested: 2,
                floor: 5
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("compacted"), "{err}");
    let page = s.changes_after(5, 100).unwrap();
    assert_eq!(
        page.changes.iter().map(|c| c.revision).collect::<Vec<_>>(),
        vec![6, 7, 8, 9, 10]
    );
}

fn bad_command_bytes_apply_as_errors<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    let garbage = vec![
        EntryPayload::Normal(vec![]),
        EntryPayload::Normal(vec![0xff, 1, 2, 3]),
        EntryPayload::Normal(vec![regent_storage::COMMAND_FORMAT_VERSION, 0xff, 0xff]),
        EntryPayload::Normal(
            cmd(Command::Put {
                key: vec![],
                value: vec![],
            })
            .encode(),
        ),
        EntryPayload::Noop,
    ];
    let results = commit_payloads(&mut s, 1, garbage);
    assert!(matches!(outcome(&results[0]), Err(CommandError::Empty)));
    assert!(matches!(
        outcome(&results[1]),
        Err(CommandError::Version { found: 0xff, .. })
    ));
    assert!(matches!(
        outcome(&results[2]),
        Err(CommandError::Decode { .. })
    ));
    assert!(matches!(outcome(&results[3]), Err(CommandError::EmptyKey)));
    assert_eq!(results[4].result, ApplyResult::Noop);
    assert_eq!(s.state().applied, LogIndex(5));
    assert_eq!(s.state().revision, 0);
    let s = h.restart(s);
    assert_eq!(s.state().applied, LogIndex(5));
}

fn sessions_apply_once_and_expire_by_log_time<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    let at = |time_ms: u64, mut p: Proposal| {
        p.time_ms = time_ms;
        p
    };
    let results = commit(
        &mut s,
        &[at(1_000, cmd(Command::RegisterSession { ttl_ms: 5_000 }))],
    );
    let Ok(Response::SessionRegistered { client_id }) = outcome(&results[0]).clone() else {
        panic!("{:?}", results[0]);
    };
    assert_eq!(
        client_id, results[0].index.0,
        "the client id is the entry's index"
    );
    let with = |seq: u64, acked_below: u64, p: Proposal| Proposal {
        session: Some(SessionSeq {
            client_id,
            seq,
            acked_below,
        }),
        ..p
    };
    // The same (client, seq) twice in the log: applied once, the retry gets the same answer.
    let results = commit(
        &mut s,
        &[
            at(2_000, with(1, 0, put("k", "first"))),
            at(2_500, with(1, 0, put("k", "retry"))),
        ],
    );
    assert_eq!(outcome(&results[0]), outcome(&results[1]));
    let kv = s.kv_get(b"k").unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.version), (&b"first"[..], 1));
    // Acknowledged results are dropped: a late retry is refused, never re-applied.
    let results = commit(
        &mut s,
        &[
            at(3_000, with(2, 2, put("k", "second"))),
            at(3_000, with(1, 2, put("k", "late"))),
        ],
    );
    assert!(outcome(&results[0]).is_ok());
    assert!(matches!(
        outcome(&results[1]),
        Err(CommandError::SeqDiscarded { seq: 1, .. })
    ));
    assert_eq!(value_of(&s, "k"), Some(b"second".to_vec()));
    let record = s.session(client_id).unwrap().unwrap();
    assert_eq!(record.last_active_ms, 3_000);
    assert_eq!(record.floor_seq, 2);
    // Log time passes the ttl (entries of other clients carry it): the session is gone on
    // every node at the same index, whatever the local clock says.
    let s2 = h.restart(s);
    let mut s = s2;
    commit(&mut s, &[at(8_001, put("other", "x"))]);
    assert!(s.session(client_id).unwrap().is_none(), "swept by log time");
    let results = commit(&mut s, &[at(8_002, with(3, 2, put("k", "after")))]);
    assert!(matches!(
        outcome(&results[0]),
        Err(CommandError::SessionUnknown { .. })
    ));
    assert_eq!(value_of(&s, "k"), Some(b"second".to_vec()));
    // A leader with a slow clock does not move log time back.
    let results = commit(
        &mut s,
        &[at(10, cmd(Command::RegisterSession { ttl_ms: 1_000 }))],
    );
    let Ok(Response::SessionRegistered { client_id: second }) = outcome(&results[0]).clone() else {
        panic!("{:?}", results[0]);
    };
    assert_eq!(s.session(second).unwrap().unwrap().last_active_ms, 8_002);
    let results = commit(&mut s, &[cmd(Command::RegisterSession { ttl_ms: 1 })]);
    assert!(matches!(
        outcome(&results[0]),
        Err(CommandError::SessionTtl { .. })
    ));
}

fn writes_are_fenced_by_the_term_of_their_entry<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    let fenced = |term: u64, p: Proposal| Proposal {
        expected_term: Some(term),
        ..p
    };
    // Appended in term 3: a write expecting term 3 applies, one expecting term 2 (a deposed
    // leader's host) is refused, on every node alike, and changes nothing.
    let results = commit_payloads(
        &mut s,
        3,
        vec![
            normal(&fenced(3, put("k", "current"))),
            normal(&fenced(2, put("k", "stale"))),
        ],
    );
    assert!(
        matches!(outcome(&results[0]), Ok(Response::Put { .. })),
        "{results:?}"
    );
    assert_eq!(
        outcome(&results[1]),
        &Err(CommandError::TermMismatch {
            expected: 2,
            actual: 3
        })
    );
    assert_eq!(value_of(&s, "k").as_deref(), Some(&b"current"[..]));
    // A write expecting a later term is refused too: the term is the leader's that appended it.
    let results = commit_payloads(&mut s, 3, vec![normal(&fenced(4, put("k", "future")))]);
    assert!(matches!(
        outcome(&results[0]),
        Err(CommandError::TermMismatch { .. })
    ));
    assert_eq!(value_of(&s, "k").as_deref(), Some(&b"current"[..]));
}

fn config_entries_set_the_membership<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    let first = Membership::new([NodeId(1)]);
    let second = Membership::new([NodeId(1), NodeId(2), NodeId(3)]);
    let results = commit_payloads(
        &mut s,
        1,
        vec![
            EntryPayload::Config(first.clone()),
            EntryPayload::Noop,
            EntryPayload::Config(second.clone()),
            EntryPayload::Noop,
        ],
    );
    assert_eq!(results[0].result, ApplyResult::Config(first.clone()));
    assert_eq!(results[1].result, ApplyResult::Noop);
    assert_eq!(s.state().membership, second);
    assert_eq!(s.state().membership_index, LogIndex(3));
    // An appended, not yet applied Config is what the core uses after a restart.
    let third = Membership::new([NodeId(1), NodeId(2)]);
    s.write_batch(&Batch {
        entries: vec![Entry {
            term: Term(1),
            index: LogIndex(5),
            payload: EntryPayload::Config(third.clone()),
        }],
        ..Batch::default()
    })
    .unwrap();
    let mut s = h.restart(s);
    let recovered = s.reload().unwrap();
    assert_eq!(recovered.state.membership, second);
    assert_eq!(recovered.entries.len(), 1);
    assert_eq!(recovered.latest_membership(), (&third, LogIndex(5)));
    // Compacting through an index before the last applied Config records the one in force there.
    s.compact_log(LogIndex(2)).unwrap();
    assert_eq!(s.state().snapshot.membership, first);
    s.compact_log(LogIndex(4)).unwrap();
    assert_eq!(s.state().snapshot.membership, second);
}

fn compact_log_drops_the_prefix<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    commit_payloads(&mut s, 1, (0..10).map(|_| EntryPayload::Noop).collect());
    commit_payloads(&mut s, 2, (0..5).map(|_| EntryPayload::Noop).collect());
    let err = s.compact_log(LogIndex(16)).unwrap_err();
    assert!(matches!(err, StorageError::InvalidRequest(_)), "{err}");
    s.compact_log(LogIndex(12)).unwrap();
    s.compact_log(LogIndex(5)).unwrap(); // below the prefix: nothing to do
    let s = h.restart(s);
    let state = s.state();
    assert_eq!(state.first_index, LogIndex(13));
    assert_eq!(state.snapshot.last_included_index, LogIndex(12));
    assert_eq!(state.snapshot.last_included_term, Term(2));
    assert_eq!(s.term(LogIndex(12)).unwrap(), Term(2));
    assert!(matches!(
        s.term(LogIndex(11)),
        Err(StorageError::Compacted { .. })
    ));
    assert!(matches!(
        s.entries(LogIndex(12), LogIndex(14), usize::MAX),
        Err(StorageError::Compacted { .. })
    ));
    assert_eq!(
        s.entries(LogIndex(13), LogIndex(16), usize::MAX)
            .unwrap()
            .len(),
        3
    );
    // Compacting everything leaves an empty log that continues after the prefix.
    let mut s = s;
    s.compact_log(LogIndex(15)).unwrap();
    let mut s = h.restart(s);
    assert_eq!(
        (s.state().first_index, s.state().last_index),
        (LogIndex(16), LogIndex(15))
    );
    assert_eq!(s.term(LogIndex(15)).unwrap(), Term(2));
    commit_payloads(&mut s, 2, vec![EntryPayload::Noop]);
    assert_eq!(s.state().last_index, LogIndex(16));
}

fn snapshot_round_trip<H: Harness>(h: &mut H) {
    let mut a = h.fresh(small_chunks());
    populate(&mut a, 2_000);
    let mut b = h.fresh(small_chunks());
    b.write_batch(&Batch {
        hard_state: hs(1, 0),
        ..Batch::default()
    })
    .unwrap();
    let chunks = chunks_of(&a);
    assert!(
        chunks.len() > 10,
        "small chunks make many: {}",
        chunks.len()
    );
    let installed = transfer(&a, &mut b).unwrap();
    let InstallProgress::Installed(state) = installed else {
        panic!("{installed:?}");
    };
    assert_eq!(state.applied, a.state().applied);
    assert_eq!(state.snapshot.membership, a.state().membership);
    assert_eq!(b.digest().unwrap(), a.digest().unwrap());
    let mut b = h.restart(b);
    assert_eq!(b.digest().unwrap(), a.digest().unwrap());
    assert_eq!(b.state().first_index, a.state().applied.next());
    assert_eq!(b.state().revision, a.state().revision);
    assert_eq!(
        b.kv_get(b"key/000010").unwrap(),
        a.kv_get(b"key/000010").unwrap()
    );
    assert_eq!(b.kv_get(b"key/000003").unwrap(), None);
    // The change feed starts at the snapshot: older revisions are reported compacted.
    assert!(matches!(
        b.changes_after(0, 1),
        Err(StorageError::ChangesCompacted { .. })
    ));
    // The receiver goes on applying after the snapshot, with the sessions it received.
    let results = commit(&mut b, &[put("after", "snapshot")]);
    assert_eq!(results[0].index, a.state().applied.next());
    assert!(b.session(1).unwrap().is_some());
    // A snapshot that is not newer than what is applied is refused.
    let err = transfer(&a, &mut b).unwrap_err();
    assert!(matches!(err, StorageError::Snapshot(_)), "{err}");
}

fn snapshot_is_consistent_while_writes_go_on<H: Harness>(h: &mut H) {
    let mut a = h.fresh(small_chunks());
    populate(&mut a, 500);
    let digest = a.digest().unwrap();
    let mut source = a.snapshot().unwrap();
    let first = source.next_chunk().unwrap().unwrap();
    // Writes after the snapshot began do not show in it.
    commit(
        &mut a,
        &(0..50)
            .map(|i| put(&format!("key/{i:06}"), "changed"))
            .collect::<Vec<_>>(),
    );
    assert_ne!(a.digest().unwrap(), digest);
    let mut b = h.fresh(small_chunks());
    b.write_batch(&Batch {
        hard_state: hs(1, 0),
        ..Batch::default()
    })
    .unwrap();
    b.install_chunk(&first).unwrap();
    let mut last = None;
    while let Some(chunk) = source.next_chunk().unwrap() {
        last = Some(b.install_chunk(&chunk).unwrap());
    }
    assert!(matches!(last, Some(InstallProgress::Installed(_))));
    assert_eq!(b.digest().unwrap(), digest);
}

fn corrupted_or_incomplete_snapshots_are_rejected<H: Harness>(h: &mut H) {
    let mut a = h.fresh(small_chunks());
    populate(&mut a, 1_000);
    let chunks = chunks_of(&a);
    let mut b = h.fresh(small_chunks());
    b.write_batch(&Batch {
        hard_state: hs(1, 0),
        ..Batch::default()
    })
    .unwrap();
    let empty = b.digest().unwrap();
    let feed = |b: &mut H::S, chunks: &[Vec<u8>]| -> Result<InstallProgress, StorageError> {
        let mut last = None;
        for chunk in chunks {
            last = Some(b.install_chunk(chunk)?);
        }
        Ok(last.unwrap())
    };
    // A flipped bit in a middle chunk.
    let mut corrupted = chunks.clone();
    let middle = corrupted.len() / 2;
    let at = corrupted[middle].len() / 2;
    corrupted[middle][at] ^= 0x01;
    let err = feed(&mut b, &corrupted).unwrap_err();
    let StorageError::SnapshotChunk { seq, reason } = &err else {
        panic!("{err}");
    };
    assert_eq!(*seq as usize, middle);
    assert!(reason.contains("checksum"), "{err}");
    assert_eq!(b.digest().unwrap(), empty, "nothing was swapped in");
    // The chunks after the bad one are refused too: the install was abandoned.
    assert!(b.install_chunk(&chunks[middle + 1]).is_err());
    // A missing chunk.
    let mut missing = chunks.clone();
    missing.remove(middle);
    let err = feed(&mut b, &missing).unwrap_err();
    assert!(err.to_string().contains("out of order"), "{err}");
    // A stream cut before its end marker installs nothing.
    let cut = &chunks[..chunks.len() - 1];
    assert!(matches!(
        feed(&mut b, cut).unwrap(),
        InstallProgress::Continue { .. }
    ));
    b.install_abort();
    assert_eq!(b.digest().unwrap(), empty);
    // Garbage is not a chunk.
    assert!(b.install_chunk(b"definitely not a snapshot chunk").is_err());
    // After all that, the intact snapshot installs.
    assert!(matches!(
        feed(&mut b, &chunks).unwrap(),
        InstallProgress::Installed(_)
    ));
    let b = h.restart(b);
    assert_eq!(b.digest().unwrap(), a.digest().unwrap());
}

fn install_keeps_a_matching_log_suffix<H: Harness>(h: &mut H) {
    let mut a = h.fresh(small_chunks());
    commit(
        &mut a,
        &(0..10)
            .map(|i| put(&format!("k{i}"), "v"))
            .collect::<Vec<_>>(),
    );
    // The follower has the same 12 entries (one more than the leader applied... plus more).
    let mut b = h.fresh(small_chunks());
    let leader_log = a.entries(LogIndex(1), LogIndex(11), usize::MAX).unwrap();
    let mut follower_log = leader_log.clone();
    follower_log.push(Entry {
        term: Term(1),
        index: LogIndex(11),
        payload: EntryPayload::Noop,
    });
    b.write_batch(&Batch {
        hard_state: hs(1, 3),
        entries: follower_log,
        ..Batch::default()
    })
    .unwrap();
    transfer(&a, &mut b).unwrap();
    let b = h.restart(b);
    assert_eq!(b.state().applied, LogIndex(10));
    assert_eq!(b.state().first_index, LogIndex(11));
    assert_eq!(
        b.state().last_index,
        LogIndex(11),
        "the entry after the snapshot is kept"
    );
    assert_eq!(b.state().hard_state.commit, LogIndex(10));
    assert_eq!(b.digest().unwrap(), a.digest().unwrap());
}

// ---------------------------------------------------------------------------------------------
// The host's journal.

const WIDE: JournalRetention = JournalRetention {
    bytes_max: 1 << 30,
    count_max: 1 << 30,
    age_max_ms: 1 << 40,
};

fn journal_append(ops: &[&str], retention: JournalRetention) -> Proposal {
    cmd(Command::JournalAppend {
        ops: ops.iter().map(|o| o.as_bytes().to_vec()).collect(),
        retention,
    })
}

fn journal_report(node: u64, applied: Option<u64>, checkpoint: Option<u64>) -> Proposal {
    cmd(Command::JournalReport {
        node,
        applied,
        checkpoint,
        retention: WIDE,
    })
}

/// (index, term, op) of every retained operation from `from` on.
fn journal_ops(s: &impl LogStorage, from: u64) -> Vec<(u64, u64, String)> {
    s.journal_page(from, usize::MAX, usize::MAX)
        .unwrap()
        .ops
        .into_iter()
        .map(|o| (o.index, o.term, String::from_utf8(o.op).unwrap()))
        .collect()
}

fn journal_appends_are_dense_fenced_and_exactly_once<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    let results = commit_payloads(
        &mut s,
        2,
        vec![
            normal(&journal_append(&["mkdir /a"], WIDE)),
            normal(&journal_append(&["create /a/x", "rename /a/x /a/y"], WIDE)),
        ],
    );
    assert_eq!(
        outcome(&results[0]),
        &Ok(Response::JournalAppended { first: 1, last: 1 })
    );
    assert_eq!(
        outcome(&results[1]),
        &Ok(Response::JournalAppended { first: 2, last: 3 })
    );
    // Fencing: an append expecting another term is refused and takes no index.
    let mut fenced = journal_append(&["stale"], WIDE);
    fenced.expected_term = Some(1);
    let results = commit_payloads(&mut s, 3, vec![normal(&fenced)]);
    assert!(matches!(
        outcome(&results[0]),
        Err(CommandError::TermMismatch {
            expected: 1,
            actual: 3
        })
    ));
    let mut current = journal_append(&["delete /a/y"], WIDE);
    current.expected_term = Some(3);
    let results = commit_payloads(&mut s, 3, vec![normal(&current)]);
    assert_eq!(
        outcome(&results[0]),
        &Ok(Response::JournalAppended { first: 4, last: 4 })
    );
    // Exactly once: a retried append (same client and seq) is answered, not appended again.
    let registered = commit(&mut s, &[cmd(Command::RegisterSession { ttl_ms: 60_000 })]);
    let Ok(Response::SessionRegistered { client_id }) = outcome(&registered[0]).clone() else {
        panic!("session registered");
    };
    let mut once = journal_append(&["mkdir /b"], WIDE);
    once.session = Some(SessionSeq {
        client_id,
        seq: 1,
        acked_below: 0,
    });
    let first = commit_payloads(&mut s, 3, vec![normal(&once)]);
    assert_eq!(
        outcome(&first[0]),
        &Ok(Response::JournalAppended { first: 5, last: 5 })
    );
    // The retry arrives in a later term: its answer names the term the operation was stored
    // with (3), not the term of the entry that carried the retry.
    let retry = commit_payloads(&mut s, 4, vec![normal(&once)]);
    assert_eq!(
        outcome(&retry[0]),
        &Ok(Response::JournalRetried {
            first: 5,
            last: 5,
            term: Some(3)
        })
    );
    assert_eq!(s.state().journal.last, 5);
    assert_eq!(journal_ops(&s, 5), vec![(5, 3, "mkdir /b".to_string())]);
    // Bad journal commands are refused deterministically and change nothing.
    for bad in [
        journal_append(&[], WIDE),
        journal_append(&[""], WIDE),
        journal_append(
            &["x"],
            JournalRetention {
                count_max: 0,
                ..WIDE
            },
        ),
        journal_report(0, Some(1), None),
        journal_report(1, None, None),
    ] {
        let results = commit(&mut s, &[bad]);
        assert!(
            matches!(outcome(&results[0]), Err(CommandError::Journal { .. })),
            "{:?}",
            results[0]
        );
    }
    let ahead = commit(&mut s, &[journal_report(1, Some(6), None)]);
    assert_eq!(
        outcome(&ahead[0]),
        &Err(CommandError::JournalReportAhead { index: 6, last: 5 })
    );
    let s = h.restart(s);
    let expected = vec![
        (1, 2, "mkdir /a".to_string()),
        (2, 2, "create /a/x".to_string()),
        (3, 2, "rename /a/x /a/y".to_string()),
        (4, 3, "delete /a/y".to_string()),
        (5, 3, "mkdir /b".to_string()),
    ];
    assert_eq!(journal_ops(&s, 1), expected);
    assert_eq!(journal_ops(&s, 4), expected[3..].to_vec());
    assert!(
        journal_ops(&s, 6).is_empty(),
        "beyond the end: an empty page"
    );
    let page = s.journal_page(1, 2, usize::MAX).unwrap();
    assert_eq!(page.ops.len(), 2, "a page stops at its limit");
    let journal = &s.state().journal;
    assert_eq!((journal.first, journal.last, journal.last_term), (1, 5, 3));
    assert_eq!(
        journal.catch_up_index(4),
        5,
        "a leader of term 4 catches up to 5"
    );
    assert_eq!(
        journal.catch_up_index(3),
        3,
        "term 3's own operations follow 3"
    );
}

fn journal_truncates_by_checkpoints_and_bounds<H: Harness>(h: &mut H) {
    let mut s = h.fresh(StorageOptions::default());
    commit_payloads(
        &mut s,
        1,
        vec![EntryPayload::Config(Membership::new([
            NodeId(1),
            NodeId(2),
            NodeId(3),
        ]))],
    );
    let ops: Vec<String> = (1..=10).map(|i| format!("op{i}")).collect();
    let refs: Vec<&str> = ops.iter().map(String::as_str).collect();
    commit(&mut s, &[journal_append(&refs, WIDE)]);
    // Two of three members checkpointed: everything stays.
    commit(
        &mut s,
        &[
            journal_report(1, Some(8), Some(6)),
            journal_report(2, None, Some(4)),
        ],
    );
    assert_eq!(s.state().journal.first, 1);
    // The third one too: the prefix every host checkpointed past goes.
    let results = commit(&mut s, &[journal_report(3, None, Some(5))]);
    assert_eq!(
        outcome(&results[0]),
        &Ok(Response::JournalReported { first: 5, last: 10 })
    );
    assert!(matches!(
        s.journal_page(4, 10, usize::MAX),
        Err(StorageError::JournalCompacted {
            requested: 4,
            first: 5
        })
    ));
    assert_eq!(journal_ops(&s, 5).len(), 6);
    let journal = s.state().journal.clone();
    assert_eq!(journal.bytes, 3 * 5 + 4, "op5..op9 and op10");
    assert_eq!(journal.members.len(), 3);
    assert_eq!(
        (journal.members[0].applied, journal.members[0].checkpoint),
        (8, 6)
    );
    // Checkpoints only move forward.
    commit(&mut s, &[journal_report(2, None, Some(1))]);
    assert_eq!(s.state().journal.members[1].checkpoint, 4);
    // The count bound drops the oldest beyond it, checkpointed or not.
    let count = JournalRetention {
        count_max: 4,
        ..WIDE
    };
    let results = commit(&mut s, &[journal_append(&["op11", "op12"], count)]);
    assert_eq!(
        outcome(&results[0]),
        &Ok(Response::JournalAppended {
            first: 11,
            last: 12
        })
    );
    assert_eq!((s.state().journal.first, s.state().journal.last), (9, 12));
    // The bytes bound likewise.
    let bytes = JournalRetention {
        bytes_max: 9,
        ..WIDE
    };
    commit(&mut s, &[journal_append(&["op13"], bytes)]);
    assert_eq!(
        journal_ops(&s, 12).len(),
        2,
        "op9..op13 held 19 bytes > 9: op12 and op13 (8 bytes) stay"
    );
    let s_state = s.state().journal.clone();
    assert_eq!((s_state.first, s_state.bytes), (12, 8));
    // The age bound, by log time.
    let age = JournalRetention {
        age_max_ms: 1_000,
        ..WIDE
    };
    let mut later = journal_append(&["op14"], age);
    later.time_ms = 10_000;
    commit(&mut s, &[later]);
    let mut much_later = journal_append(&["op15"], age);
    much_later.time_ms = 10_500;
    commit(&mut s, &[much_later]);
    assert_eq!(
        journal_ops(&s, 14).iter().map(|o| o.0).collect::<Vec<_>>(),
        vec![14, 15],
        "op12 and op13 (log time 0) are older than 1 s at log time 10000"
    );
    let s = h.restart(s);
    assert_eq!((s.state().journal.first, s.state().journal.last), (14, 15));
}

fn journal_travels_in_snapshots<H: Harness>(h: &mut H) {
    let mut a = h.fresh(small_chunks());
    populate(&mut a, 200);
    for round in 0..20 {
        let ops: Vec<String> = (0..50)
            .map(|i| format!("round {round} op {i} {}", "y".repeat(i)))
            .collect();
        let refs: Vec<&str> = ops.iter().map(String::as_str).collect();
        commit(&mut a, &[journal_append(&refs, WIDE)]);
    }
    for node in 1..=3 {
        commit(&mut a, &[journal_report(node, Some(900), Some(100 + node))]);
    }
    assert_eq!(
        (a.state().journal.first, a.state().journal.last),
        (102, 1000)
    );
    let mut b = h.fresh(small_chunks());
    b.write_batch(&Batch {
        hard_state: hs(1, 0),
        ..Batch::default()
    })
    .unwrap();
    let installed = transfer(&a, &mut b).unwrap();
    assert!(matches!(installed, InstallProgress::Installed(_)));
    assert_eq!(b.digest().unwrap(), a.digest().unwrap());
    let mut b = h.restart(b);
    assert_eq!(b.state().journal, a.state().journal);
    assert_eq!(journal_ops(&b, 102), journal_ops(&a, 102));
    assert!(matches!(
        b.journal_page(101, 1, usize::MAX),
        Err(StorageError::JournalCompacted { first: 102, .. })
    ));
    // The receiver goes on with the next dense index.
    let results = commit(&mut b, &[journal_append(&["after the snapshot"], WIDE)]);
    assert_eq!(
        outcome(&results[0]),
        &Ok(Response::JournalAppended {
            first: 1001,
            last: 1001
        })
    );
    // A snapshot whose journal was tampered with is refused (the chunk checksums are valid).
    let mut c = h.fresh(small_chunks());
    c.write_batch(&Batch {
        hard_state: hs(1, 0),
        ..Batch::default()
    })
    .unwrap();
    let chunks = chunks_of(&a);
    let last = chunks.len() - 1;
    let mut result = Ok(InstallProgress::Continue { chunks: 0 });
    for (i, chunk) in chunks.iter().enumerate() {
        if i == last - 1 {
            continue; // drop the last journal chunk
        }
        result = c.install_chunk(chunk);
        if result.is_err() {
            break;
        }
    }
    assert!(
        result.is_err(),
        "a snapshot missing journal chunks is refused"
    );
}

// ---------------------------------------------------------------------------------------------
// Cross-backend and memory-only checks.

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_proposal(rng: &mut Rng, client: Option<u64>, seq: u64) -> EntryPayload {
    let key = format!("k{}", rng.below(20)).into_bytes();
    let command = match rng.below(10) {
        0 => Command::Delete { key },
        1 => Command::Get { key },
        2 => Command::Range {
            prefix: b"k1".to_vec(),
            limit: 1 + rng.below(5) as u32,
        },
        3 => Command::Txn(Txn {
            compares: vec![Compare {
                key: key.clone(),
                op: CompareOp::Greater,
                target: CompareTarget::Version(rng.below(3)),
            }],
            success: vec![Op::Put {
                key: key.clone(),
                value: b"txn".to_vec(),
            }],
            failure: vec![Op::Delete { key }],
        }),
        4 => return EntryPayload::Normal((0..rng.below(6)).map(|_| rng.next() as u8).collect()),
        5 => Command::JournalAppend {
            ops: (0..1 + rng.below(3))
                .map(|_| rng.next().to_le_bytes()[..1 + rng.below(8) as usize].to_vec())
                .collect(),
            retention: JournalRetention {
                bytes_max: 64,
                count_max: 12,
                age_max_ms: 20_000,
            },
        },
        6 => Command::JournalReport {
            node: 1,
            applied: Some(rng.below(8)),
            checkpoint: Some(rng.below(4)),
            retention: WIDE,
        },
        _ => Command::Put {
            key,
            value: rng.next().to_le_bytes().to_vec(),
        },
    };
    let mut proposal = Proposal::new(command);
    proposal.time_ms = 1_000 * seq;
    proposal.session = client.map(|client_id| SessionSeq {
        client_id,
        seq: seq - rng.below(2),
        acked_below: seq.saturating_sub(3),
    });
    EntryPayload::Normal(proposal.encode())
}

#[test]
fn backends_agree() {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        changes_retained_max: 50,
        ..small_chunks()
    };
    let (mut redb, _) = RedbStorage::open(dir.path(), &identity(), options.clone()).unwrap();
    let (mut mem, _) = MemStorage::new(identity(), options).unwrap();
    let seed = 0x5eed_u64;
    let mut rng = Rng(seed);
    let mut client = None;
    for round in 1..=60u64 {
        let mut payloads = Vec::new();
        if round == 2 {
            payloads.push(EntryPayload::Normal(
                cmd(Command::RegisterSession { ttl_ms: 20_000 }).encode(),
            ));
        }
        for _ in 0..1 + rng.below(8) {
            payloads.push(random_proposal(&mut rng, client, round));
        }
        let from_redb = commit_payloads(&mut redb, 1, payloads.clone());
        let from_mem = commit_payloads(&mut mem, 1, payloads);
        assert_eq!(from_redb, from_mem, "seed {seed:#x} round {round}");
        if round == 2 {
            client = Some(from_redb[0].index.0);
        }
        assert_eq!(
            redb.digest().unwrap(),
            mem.digest().unwrap(),
            "round {round}"
        );
        assert_eq!(redb.state(), mem.state(), "round {round}");
        let r = redb.changes_after(redb.state().revision.saturating_sub(10), 100);
        let m = mem.changes_after(mem.state().revision.saturating_sub(10), 100);
        assert_eq!(r.unwrap(), m.unwrap());
        if round % 20 == 0 {
            let through = LogIndex(redb.state().applied.0 - 5);
            redb.compact_log(through).unwrap();
            mem.compact_log(through).unwrap();
            assert_eq!(redb.state(), mem.state());
        }
    }
    // A snapshot of one installs on the other: the format is shared.
    let (mut mem2, _) = MemStorage::new(identity(), small_chunks()).unwrap();
    mem2.write_batch(&Batch {
        hard_state: hs(1, 0),
        ..Batch::default()
    })
    .unwrap();
    transfer(&redb, &mut mem2).unwrap();
    assert_eq!(mem2.digest().unwrap(), redb.digest().unwrap());
    let dir2 = tempfile::tempdir().unwrap();
    let (mut redb2, _) = RedbStorage::open(dir2.path(), &identity(), small_chunks()).unwrap();
    redb2
        .write_batch(&Batch {
            hard_state: hs(1, 0),
            ..Batch::default()
        })
        .unwrap();
    transfer(&mem, &mut redb2).unwrap();
    assert_eq!(redb2.digest().unwrap(), mem.digest().unwrap());
}

#[test]
fn mem_faults_roll_back_entirely() {
    let (mut s, _) = MemStorage::new(identity(), StorageOptions::default()).unwrap();
    commit(&mut s, &[put("a", "1")]);
    let state = s.state().clone();
    let digest = s.digest().unwrap();
    let proposals: Vec<Proposal> = (0..5).map(|i| put(&format!("k{i}"), "v")).collect();
    // Fail at every primitive change of the batch in turn: nothing of it may remain.
    let mut op = 0;
    loop {
        s.inject(MemFault::FailAtOp(op));
        let batch_state = s.state().clone();
        let batch = Batch {
            hard_state: hs(1, batch_state.last_index.0 + 5),
            truncate_from: None,
            entries: (1..=5)
                .map(|i| Entry {
                    term: Term(1),
                    index: LogIndex(batch_state.last_index.0 + i),
                    payload: normal(&proposals[i as usize - 1]),
                })
                .collect(),
            committed: vec![],
        };
        let mut batch = batch;
        batch.committed = batch.entries.clone();
        match s.write_batch(&batch) {
            Ok(_) => break,
            Err(err) => {
                assert!(matches!(err, StorageError::Injected { .. }), "{err}");
                assert!(matches!(
                    s.write_batch(&batch),
                    Err(StorageError::ReloadRequired { .. })
                ));
                let recovered = s.reload().unwrap();
                assert_eq!(recovered.state, state, "fault at op {op}");
                assert_eq!(s.digest().unwrap(), digest, "fault at op {op}");
            }
        }
        op += 1;
    }
    assert!(op > 10, "the batch has many primitive changes: {op}");
    // A failure after the commit: the write happened, the caller learns it by reloading.
    s.inject(MemFault::FailAfterCommit);
    let before = s.state().last_index;
    assert!(s
        .write_batch(&Batch {
            entries: vec![Entry {
                term: Term(1),
                index: before.next(),
                payload: EntryPayload::Noop
            }],
            ..Batch::default()
        })
        .is_err());
    assert_eq!(s.reload().unwrap().state.last_index, before.next());
    s.inject(MemFault::FailBeforeCommit);
    assert!(s.compact_log(LogIndex(2)).is_err());
    assert_eq!(s.reload().unwrap().state.first_index, LogIndex(1));
}
