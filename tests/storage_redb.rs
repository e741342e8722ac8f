//! `RedbStorage` on real files: crashes of a real process (SIGKILL at random moments), files
//! that are not this node's (foreign, another node's, another cluster's, damaged), a full disk
//! (a small tmpfs), file compaction and the deferred apply mode.

use regent_raft::{Entry, EntryPayload, HardState, LogIndex, NodeId, Term};
use regent_storage::{
    ApplyMode, Batch, Command, Identity, LogStorage, Proposal, RedbStorage, StateReader,
    StorageError, StorageOptions, CLEAN_MARKER_NAME, DB_FILE_NAME,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

fn identity(node: u64) -> Identity {
    Identity {
        cluster_id: "redb-tests".into(),
        node_id: NodeId(node),
    }
}

/// A small deterministic generator (xorshift), so failures replay from the printed seed.
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

/// The entry the crash workload writes at `index` in `term`: its key and value name both, so
/// the parent can check any entry and any key on its own.
fn workload_entry(index: u64, term: u64, padding: usize) -> Entry {
    let proposal = Proposal::new(Command::Put {
        key: format!("k{index}").into_bytes(),
        value: format!("{index}:{term}:{}", "p".repeat(padding)).into_bytes(),
    });
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Normal(proposal.encode()),
    }
}

/// Writes one batch of the crash workload: new entries (sometimes replacing the uncommitted
/// tail in a new term), a commit index a little behind, and the newly committed entries.
fn workload_batch(s: &mut RedbStorage, rng: &mut Rng, padding: usize) -> LogIndex {
    let st = s.state().clone();
    let mut term = st.hard_state.term.0.max(1);
    let mut first = st.last_index.next();
    let mut truncate_from = None;
    if rng.below(8) == 0 && st.last_index > st.hard_state.commit {
        term += 1;
        first = st.hard_state.commit.next();
        truncate_from = Some(first);
    }
    let count = 1 + rng.below(20);
    let entries: Vec<Entry> = (first.0..first.0 + count)
        .map(|i| workload_entry(i, term, padding))
        .collect();
    let last = first.0 + count - 1;
    let commit = LogIndex((last - rng.below(3.min(count))).max(st.hard_state.commit.0));
    // Entries to apply: those already stored below `first`, then those of this batch.
    let mut committed = Vec::new();
    if st.applied.next() < first {
        let stored_to = LogIndex(commit.0.min(first.0 - 1));
        committed = s
            .entries(st.applied.next(), stored_to.next(), usize::MAX)
            .unwrap();
    }
    committed.extend(entries.iter().filter(|e| e.index <= commit).cloned());
    s.write_batch(&Batch {
        hard_state: Some(HardState {
            term: Term(term),
            vote: Some(NodeId(1)),
            commit,
        }),
        truncate_from,
        entries,
        committed,
    })
    .unwrap();
    commit
}

/// Checks what the crash workload left: everything up to `acked` is committed, applied and
/// intact, and the log agrees with the KV state.
fn check_workload(s: &RedbStorage, acked: LogIndex) {
    let st = s.state();
    assert!(
        st.hard_state.commit >= acked,
        "commit {} < acknowledged {acked}",
        st.hard_state.commit
    );
    assert_eq!(
        st.applied, st.hard_state.commit,
        "applied with the log (ApplyMode::WithLog)"
    );
    for i in 1..=st.hard_state.commit.0 {
        let kv = s.kv_get(format!("k{i}").as_bytes()).unwrap();
        let kv = kv.unwrap_or_else(|| panic!("key k{i} of a committed entry is missing"));
        let value = String::from_utf8(kv.value).unwrap();
        assert!(value.starts_with(&format!("{i}:")), "k{i} = {value}");
        if LogIndex(i) >= st.first_index {
            let entry = &s.entries(LogIndex(i), LogIndex(i + 1), usize::MAX).unwrap()[0];
            assert!(
                value.starts_with(&format!("{i}:{}:", entry.term.0)),
                "k{i} = {value} vs {entry:?}"
            );
        }
    }
}

/// Replays a seeded test: `REGENT_TEST_SEED=<seed> cargo test --release --test storage_redb`.
const SEED_ENV: &str = "REGENT_TEST_SEED";

/// The seed of a seeded test: `REGENT_TEST_SEED` when set, else one from the clock. Printed
/// always, with the command that replays it.
fn test_seed() -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{SEED_ENV}={text:?} is not a u64: {e}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    // The generator is xorshift: a zero state stays zero.
    let seed = seed.max(1);
    println!("seed {seed}; replay with {SEED_ENV}={seed} cargo test --release --test storage_redb");
    seed
}

const CHILD_DIR_ENV: &str = "REGENT_STORAGE_CRASH_DIR";
const CHILD_SEED_ENV: &str = "REGENT_STORAGE_CRASH_SEED";

/// Not a test of its own: the entry point of the child process that `crash_test_sigkill`
/// re-executes (with `--ignored`). Ignored, so that it does not count as a passing test.
#[test]
#[ignore = "the child process of crash_test_sigkill, which runs it"]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap();
    let options = StorageOptions {
        compact_free_bytes_min: 1 << 20,
        compact_free_percent_min: 30,
        ..StorageOptions::default()
    };
    let (mut s, _) = RedbStorage::open(Path::new(&dir), &identity(1), options).unwrap();
    let mut rng = Rng(seed);
    let mut out = std::io::stdout().lock();
    for batch in 1u64.. {
        let commit = workload_batch(&mut s, &mut rng, 200);
        // Printed only once the durable commit has returned.
        use std::io::Write;
        writeln!(out, "acked {}", commit.0).unwrap();
        out.flush().unwrap();
        if batch % 25 == 0 && s.state().applied.0 > 60 {
            s.compact_log(LogIndex(s.state().applied.0 - 50)).unwrap();
        }
        if batch % 150 == 0 {
            s.maybe_compact_file().unwrap();
        }
    }
}

/// How long the crash test waits for a child's first acknowledged commit (milliseconds on an
/// idle machine).
const CHILD_STARTS_WITHIN: Duration = Duration::from_secs(30);

#[test]
fn crash_test_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let seed = test_seed();
    let mut rng = Rng(seed);
    let rounds = 20;
    let mut acked = LogIndex(0);
    let mut kills_mid_run = 0;
    for round in 0..rounds {
        let mut child = Process::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_SEED_ENV, (seed ^ round).max(1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (first_ack, streaming) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("acked ") {
                    if last.is_none() {
                        let _ = first_ack.send(());
                    }
                    last = Some(n.parse::<u64>().unwrap());
                }
            }
            last
        });
        // Kill at a random moment: every fourth round any time from the start (sometimes
        // while it opens), the others after its first acknowledged commit (mid-stream, however
        // long a busy machine takes to start the child).
        if round % 4 != 0 {
            streaming
                .recv_timeout(CHILD_STARTS_WITHIN)
                .unwrap_or_else(|e| {
                    panic!(
                        "seed {seed}: no commit from the child within {CHILD_STARTS_WITHIN:?}: {e}"
                    )
                });
        }
        std::thread::sleep(Duration::from_millis(10 + rng.below(150)));
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("seed {seed}: the child exited on its own ({status}):\n{err}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(last) = reader.join().unwrap() {
            kills_mid_run += 1;
            assert!(LogIndex(last) >= acked, "acknowledged commits only grow");
            acked = LogIndex(last);
        }
        let (s, _) = RedbStorage::open(dir.path(), &identity(1), StorageOptions::default())
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: reopen after SIGKILL: {e}"));
        check_workload(&s, acked);
    }
    println!("crash test: seed {seed}, {rounds} SIGKILLs, {kills_mid_run} mid-run, last acknowledged commit {acked}");
    assert!(
        kills_mid_run >= rounds / 2,
        "seed {seed}: most kills land mid-run ({kills_mid_run})"
    );
    assert!(
        acked.0 > 100,
        "seed {seed}: the children made progress ({acked})"
    );
}

#[test]
fn foreign_files_are_refused_with_the_path_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    let open =
        || RedbStorage::open(dir.path(), &identity(1), StorageOptions::default()).map(|_| ());

    std::fs::write(&path, b"this is a text file, not a database\n".repeat(200)).unwrap();
    let err = open().unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Foreign { .. } | StorageError::Open { .. }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"this is a text file, not a database\n".repeat(200),
        "a refused file is left untouched"
    );

    std::fs::remove_file(&path).unwrap();
    {
        // Another program's redb database.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let table: redb::TableDefinition<'_, &str, u64> = redb::TableDefinition::new("other");
        txn.open_table(table).unwrap().insert("x", &1).unwrap();
        txn.commit().unwrap();
    }
    let err = open().unwrap_err();
    assert!(matches!(err, StorageError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("no regent_meta table"), "{err}");

    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"").unwrap();
    let err = open().unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn another_nodes_or_clusters_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    RedbStorage::open(dir.path(), &identity(1), StorageOptions::default()).unwrap();
    let err = RedbStorage::open(dir.path(), &identity(2), StorageOptions::default())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, StorageError::WrongIdentity { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("node n1") && message.contains("node n2"),
        "{message}"
    );
    assert!(message.contains(DB_FILE_NAME), "{message}");
    let other_cluster = Identity {
        cluster_id: "another".into(),
        node_id: NodeId(1),
    };
    let err = RedbStorage::open(dir.path(), &other_cluster, StorageOptions::default())
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("\"another\""), "{err}");
    // Still this node's directory, unharmed.
    RedbStorage::open(dir.path(), &identity(1), StorageOptions::default()).unwrap();
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_first, _) =
        RedbStorage::open(dir.path(), &identity(1), StorageOptions::default()).unwrap();
    let err = RedbStorage::open(dir.path(), &identity(1), StorageOptions::default())
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("already open"), "{err}");
}

fn filled_store(dir: &Path, entries: u64) -> PathBuf {
    let (mut s, _) = RedbStorage::open(dir, &identity(1), StorageOptions::default()).unwrap();
    let mut rng = Rng(7);
    while s.state().last_index.0 < entries {
        workload_batch(&mut s, &mut rng, 100);
    }
    s.path().to_path_buf()
}

/// Every offset at which `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(at, _)| at)
        .collect()
}

#[test]
fn damaged_files_are_refused_never_repaired() {
    // Three regions of the file that certainly hold data in use: every copy of the value an
    // early, a middle and a late entry wrote (in the log and in the KV table, and in any stale
    // page). Each damaged region alone must be caught by redb's checksums or our checks.
    let dir = tempfile::tempdir().unwrap();
    let path = filled_store(dir.path(), 300);
    let values: Vec<Vec<u8>> = {
        let (s, _) =
            RedbStorage::open(dir.path(), &identity(1), StorageOptions::default()).unwrap();
        [10u64, 150, 290]
            .iter()
            .map(|i| s.kv_get(format!("k{i}").as_bytes()).unwrap().unwrap().value)
            .collect()
    };
    let original = std::fs::read(&path).unwrap();
    for value in &values {
        let copies = occurrences(&original, value);
        assert!(
            !copies.is_empty(),
            "{:?} is in the file",
            String::from_utf8_lossy(&value[..12])
        );
        let mut bytes = original.clone();
        for at in &copies {
            // The middle of the padding: not a length or a key, just the data.
            for b in &mut bytes[at + value.len() / 2..at + value.len() / 2 + 16] {
                *b ^= 0x5a;
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = RedbStorage::open(dir.path(), &identity(1), StorageOptions::default())
            .map(|_| ())
            .expect_err("a damaged region in use must be caught");
        assert!(
            matches!(
                err,
                StorageError::Damaged { .. } | StorageError::Open { .. }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "a refused file is never repaired"
        );
        std::fs::write(&path, &original).unwrap();
    }
    // Restored, the file opens and holds everything.
    let (s, _) = RedbStorage::open(dir.path(), &identity(1), StorageOptions::default()).unwrap();
    check_workload(&s, LogIndex(0));
    drop(s);

    // A consistent redb file whose content breaks an invariant: a gap in the log.
    let dir = tempfile::tempdir().unwrap();
    let path = filled_store(dir.path(), 100);
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let log: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("log");
        // The table layout is internal; the test knows it to break it on purpose.
        txn.open_table(log).unwrap().remove(&50).unwrap();
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = RedbStorage::open(dir.path(), &identity(1), StorageOptions::default())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, StorageError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("gap"), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let err = RedbStorage::open(dir.path(), &identity(1), StorageOptions::default())
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string().contains("gap"),
        "still refused: nothing was rewritten: {err}"
    );
    assert_eq!(std::fs::read(&path).unwrap().len(), before.len());

    // Terms that decrease, and a term above the current one: the checks recovery makes by
    // bisecting the log's runs of one term (not by reading every entry) find both.
    for (from, term, expect) in [
        (60u64, 0u64, "below the term"),
        (100, 1_000, "above the current term"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = filled_store(dir.path(), 100);
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let log: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("log");
            {
                use redb::ReadableTable;
                let mut table = txn.open_table(log).unwrap();
                let last = table.last().unwrap().unwrap().0.value();
                for index in from..=last {
                    let mut bytes = table.get(&index).unwrap().unwrap().value().to_vec();
                    // The term is stored first (the layout is internal; the test knows it).
                    bytes[..8].copy_from_slice(&term.to_le_bytes());
                    table.insert(&index, bytes.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let err = RedbStorage::open(dir.path(), &identity(1), StorageOptions::default())
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, StorageError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains(expect), "{expect}: {err}");
    }
}

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

/// Mounts a tmpfs with `options` for `test`, or says why it cannot. In CI (the environment
/// variable `CI` is set) a missing prerequisite fails the test; elsewhere the test is skipped,
/// with a line on the terminal that the test harness does not swallow.
fn tmpfs_or_skip(test: &str, options: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(options) {
        Ok(fs) => Some(fs),
        Err(why) if std::env::var_os("CI").is_some() => panic!(
            "{test}: {why}. CI must provide `mount` (util-linux) and the right to mount (root)"
        ),
        Err(why) => {
            use std::io::Write;
            // Straight to the stream: the harness captures only print! and eprint!.
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: {why} (with CI set, this fails instead)"
            );
            None
        }
    }
}

impl Tmpfs {
    fn mount(options: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Process::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_fails_writes_clearly_and_recovers_after_space_is_freed() {
    let Some(fs) = tmpfs_or_skip(
        "a_full_disk_fails_writes_clearly_and_recovers_after_space_is_freed",
        "size=6m",
    ) else {
        return;
    };
    let data = fs.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (mut s, _) = RedbStorage::open(&data, &identity(1), StorageOptions::default()).unwrap();
    let ballast = fs.dir.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 1 << 20]).unwrap();
    let mut rng = Rng(3);
    let mut acked = LogIndex(0);
    let err = loop {
        let st = s.state().clone();
        let index = st.last_index.next();
        let entry = workload_entry(index.0, 1, 32 << 10);
        match s.write_batch(&Batch {
            hard_state: Some(HardState {
                term: Term(1),
                vote: Some(NodeId(1)),
                commit: index,
            }),
            truncate_from: None,
            entries: vec![entry.clone()],
            committed: vec![entry],
        }) {
            Ok(_) => acked = index,
            Err(err) => break err,
        }
        assert!(index.0 < 10_000, "the disk never filled");
        rng.next();
    };
    println!("disk full after {acked} entries: {err}");
    assert!(matches!(err, StorageError::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("disk is full"), "{err}");
    assert!(acked.0 > 10, "some writes fit first ({acked})");
    // Refused until reloaded: redb's state after a failed commit is not trusted.
    let again = s.write_batch(&Batch::default()).unwrap_err();
    assert!(again.requires_reload(), "{again}");
    drop(s);
    std::fs::remove_file(&ballast).unwrap();
    let (mut s, _) = RedbStorage::open(&data, &identity(1), StorageOptions::default()).unwrap();
    check_workload(&s, acked);
    // Writes succeed again.
    for _ in 0..5 {
        let index = s.state().last_index.next();
        let entry = workload_entry(index.0, 1, 1024);
        s.write_batch(&Batch {
            hard_state: Some(HardState {
                term: Term(1),
                vote: Some(NodeId(1)),
                commit: index,
            }),
            truncate_from: None,
            entries: vec![entry.clone()],
            committed: vec![entry],
        })
        .unwrap();
    }
    check_workload(&s, LogIndex(acked.0 + 5));
}

#[test]
fn a_read_only_data_directory_is_named_as_such() {
    let test = "a_read_only_data_directory_is_named_as_such";
    // A new data directory on a read-only file system.
    let Some(fs) = tmpfs_or_skip(test, "size=1m,ro") else {
        return;
    };
    let err = RedbStorage::open(fs.dir.path(), &identity(1), StorageOptions::default())
        .map(|_| ())
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StorageError::ReadOnly { .. }), "{message}");
    assert!(
        message.starts_with(&format!("{}: ", fs.dir.path().display()))
            && message.contains("read-only file system"),
        "{message}"
    );
    drop(fs);
    // An existing data directory whose file system was remounted read-only.
    let Some(fs) = tmpfs_or_skip(test, "size=4m") else {
        return;
    };
    let data = fs.dir.path().join("data");
    drop(RedbStorage::open(&data, &identity(1), StorageOptions::default()).unwrap());
    let remount = Process::new("mount")
        .args(["-o", "remount,ro"])
        .arg(fs.dir.path())
        .status()
        .unwrap();
    assert!(remount.success());
    let err = RedbStorage::open(&data, &identity(1), StorageOptions::default())
        .map(|_| ())
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StorageError::ReadOnly { .. }), "{message}");
    assert!(
        message.starts_with(&format!("{}: ", data.display())),
        "{message}"
    );
}

#[test]
fn a_cluster_id_follows_the_one_rule_for_cluster_names() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["é\n/../x", "", "Upper", "a.b", "-a", &"a".repeat(64)] {
        let identity = Identity {
            cluster_id: bad.to_string(),
            node_id: NodeId(1),
        };
        let err = RedbStorage::open(dir.path(), &identity, StorageOptions::default())
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidRequest(_)),
            "{bad:?}: {err}"
        );
        // The same words as the PKI's refusal of the same name.
        let pki = regent_transport::pki::identity::validate_cluster_name(bad).unwrap_err();
        assert!(err.to_string().contains(&pki.to_string()), "{err} / {pki}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{bad:?}: nothing is created for a refused identity"
        );
    }
    let ok = Identity {
        cluster_id: "a-1".into(),
        node_id: NodeId(1),
    };
    RedbStorage::open(dir.path(), &ok, StorageOptions::default()).unwrap();
}

#[test]
fn file_compaction_shrinks_the_file_after_log_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        compact_free_bytes_min: 1 << 20,
        compact_free_percent_min: 30,
        ..StorageOptions::default()
    };
    let (mut s, _) = RedbStorage::open(dir.path(), &identity(1), options.clone()).unwrap();
    let mut rng = Rng(11);
    while s.state().last_index.0 < 4_000 {
        workload_batch(&mut s, &mut rng, 2_000);
    }
    // The KV state holds most of the data: delete it, then drop the log.
    let keys: Vec<Proposal> = (1..=s.state().applied.0)
        .map(|i| {
            Proposal::new(Command::Delete {
                key: format!("k{i}").into_bytes(),
            })
        })
        .collect();
    for chunk in keys.chunks(1_000) {
        let st = s.state().clone();
        let entries: Vec<Entry> = chunk
            .iter()
            .enumerate()
            .map(|(n, p)| Entry {
                term: st.hard_state.term,
                index: LogIndex(st.last_index.0 + 1 + n as u64),
                payload: EntryPayload::Normal(p.encode()),
            })
            .collect();
        let mut committed = s
            .entries(st.applied.next(), st.last_index.next(), usize::MAX)
            .unwrap();
        committed.extend(entries.iter().cloned());
        let last = entries.last().unwrap().index;
        s.write_batch(&Batch {
            hard_state: Some(HardState {
                commit: last,
                ..st.hard_state
            }),
            truncate_from: None,
            entries,
            committed,
        })
        .unwrap();
    }
    let applied = s.state().applied;
    s.compact_log(applied).unwrap();
    let (before, free) = s.file_usage().unwrap();
    assert!(
        free > before / 2,
        "most of the file is free: {free} of {before}"
    );
    let snapshot = s.snapshot().unwrap();
    assert!(
        !s.maybe_compact_file().unwrap(),
        "a live snapshot read holds the file"
    );
    drop(snapshot);
    assert!(s.maybe_compact_file().unwrap());
    let after = std::fs::metadata(s.path()).unwrap().len();
    assert!(after < before / 2, "{before} -> {after} bytes");
    assert!(!s.maybe_compact_file().unwrap(), "nothing left to gain");
    let digest = s.digest().unwrap();
    drop(s);
    let (s, _) = RedbStorage::open(dir.path(), &identity(1), options).unwrap();
    assert_eq!(s.digest().unwrap(), digest);
}

#[test]
fn deferred_apply_is_redone_from_the_log_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        apply_mode: ApplyMode::Deferred,
        ..StorageOptions::default()
    };
    let (mut s, _) = RedbStorage::open(dir.path(), &identity(1), options.clone()).unwrap();
    let mut rng = Rng(5);
    for _ in 0..20 {
        workload_batch(&mut s, &mut rng, 10);
    }
    let applied = s.state().applied;
    assert_eq!(applied, s.state().hard_state.commit);
    // Leak the handle as a crash would: the last non-durable apply may be lost.
    let recovered = {
        std::mem::forget(s);
        let reopened = redb::Database::open(dir.path().join(DB_FILE_NAME));
        assert!(reopened.is_err(), "the leaked handle still holds the lock");
        // A second handle in this process cannot open it; read what is durable through a
        // copy of the file instead, as a restarted process would.
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(
            dir.path().join(DB_FILE_NAME),
            copy.path().join(DB_FILE_NAME),
        )
        .unwrap();
        let (_, recovered) = RedbStorage::open(copy.path(), &identity(1), options).unwrap();
        recovered
    };
    let st = &recovered.state;
    assert!(st.applied <= st.hard_state.commit);
    assert_eq!(
        st.hard_state.commit, applied,
        "the log and commit index are durable"
    );
    // What was not durably applied is in the recovered tail, ready to apply again.
    let tail: Vec<LogIndex> = recovered.entries.iter().map(|e| e.index).collect();
    let expected: Vec<LogIndex> = (st.applied.0 + 1..=st.last_index.0).map(LogIndex).collect();
    assert_eq!(tail, expected);
}

/// A clean close leaves the marker that lets the next open skip redb's page check; the open
/// takes it (before anything is written), and a store dropped without `close` (a crash) leaves
/// none, so the open after it checks every page.
#[test]
fn a_clean_close_leaves_a_marker_that_the_next_open_takes() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join(CLEAN_MARKER_NAME);
    let path = filled_store(dir.path(), 100);
    assert!(!marker.exists(), "dropped, not closed: no marker");
    let (s, _) = RedbStorage::open(dir.path(), &identity(1), StorageOptions::default()).unwrap();
    s.close().unwrap();
    assert!(marker.exists(), "closed cleanly: the marker is there");
    let (s, recovered) =
        RedbStorage::open(dir.path(), &identity(1), StorageOptions::default()).unwrap();
    assert!(!marker.exists(), "the open took the marker");
    assert_eq!(recovered.state.last_index, s.state().last_index);
    check_workload(&s, LogIndex(0));
    drop(s);
    assert!(!marker.exists(), "dropped without close: no marker");
    assert!(path.exists());
}

/// A backup of a redb store, taken while writes go on: it verifies to the digest the store had
/// at the backup's index, and restores into another redb store (of another cluster) to it.
#[test]
fn a_backup_taken_while_writing_restores_into_another_store_to_its_digest() {
    use regent_storage::{backup, BackupHeader, BackupWriter};
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        snapshot_chunk_bytes: 4096,
        ..StorageOptions::default()
    };
    let (mut s, _) = RedbStorage::open(dir.path(), &identity(1), options.clone()).unwrap();
    let mut rng = Rng(11);
    while s.state().applied.0 < 300 {
        workload_batch(&mut s, &mut rng, 100);
    }
    let digest_then = s.digest().unwrap();
    let mut source = s.snapshot().unwrap();
    let meta = source.meta().clone();
    assert_eq!(meta.last_included_index, digest_then.applied);
    let (mut writer, mut file) = BackupWriter::start(BackupHeader {
        cluster_id: "redb-tests".into(),
        node_id: NodeId(1),
        index: meta.last_included_index,
        term: meta.last_included_term,
        taken_unix_ms: 0,
    });
    // Writes go on between the frames: the snapshot's read transaction does not see them.
    while let Some(frame) = source.next_chunk().unwrap() {
        file.extend(writer.frame(&frame).unwrap());
        workload_batch(&mut s, &mut rng, 100);
    }
    let (trailer, summary) = writer.finish().unwrap();
    file.extend(trailer);
    assert!(summary.frame_count > 5, "{summary:?}");
    assert_ne!(s.digest().unwrap(), digest_then, "the store moved on");
    assert_eq!(summary.digest, digest_then);
    assert_eq!(backup::verify(&file[..]).unwrap(), summary);

    let other = tempfile::tempdir().unwrap();
    let new_identity = Identity {
        cluster_id: "restored".into(),
        node_id: NodeId(4),
    };
    let (mut r, _) = RedbStorage::open(other.path(), &new_identity, options.clone()).unwrap();
    let voters = regent_raft::Membership::new([NodeId(4), NodeId(5)]);
    let restored = backup::restore(&file[..], &mut r, voters.clone(), &Default::default()).unwrap();
    assert_eq!(restored.digest, digest_then);
    drop(r);
    let (r, recovered) = RedbStorage::open(other.path(), &new_identity, options).unwrap();
    assert_eq!(recovered.state.applied, digest_then.applied);
    assert_eq!(recovered.state.snapshot.membership, voters);
    assert_eq!(recovered.state.hard_state.term, meta.last_included_term);
    assert_eq!(
        r.digest().unwrap(),
        digest_then,
        "durable, read back after a reopen"
    );
}
