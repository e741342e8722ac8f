//! Framing: random splits of a byte stream decode the same messages; oversized, truncated and
//! corrupted frames are refused; and a seeded fuzz run of a million inputs (random bytes and
//! mutated valid frames) through the decoder never panics.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use regent_raft::{
    ConflictHint, Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId, Term,
};
use regent_transport::frame::{self, Frame, FrameDecoder, FrameError, FrameKind};

const MAX: usize = 64 << 10;

fn arb_message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        (
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            any::<Option<u64>>()
        )
            .prop_map(|(pre_vote, i, t, transfer_round)| {
                MessageBody::RequestVote {
                    pre_vote,
                    last_log_index: LogIndex(i),
                    last_log_term: Term(t),
                    transfer_round,
                }
            }),
        any::<u64>().prop_map(|round| MessageBody::TimeoutNow { round }),
        (any::<u64>(), any::<u8>())
            .prop_map(|(round, cause)| MessageBody::TimeoutNowBecause { round, cause }),
        Just(MessageBody::StallStepDown),
        (any::<u64>(), any::<Option<u64>>()).prop_map(|(ctx, index)| {
            MessageBody::ReadIndexResponse {
                ctx,
                index: index.map(LogIndex),
            }
        }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(pre_vote, granted)| MessageBody::RequestVoteResponse { pre_vote, granted }),
        (
            any::<u64>(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..5),
            any::<u64>()
        )
            .prop_map(|(i, payloads, round)| MessageBody::AppendEntries {
                prev_log_index: LogIndex(i),
                prev_log_term: Term(1),
                entries: payloads
                    .into_iter()
                    .enumerate()
                    .map(|(k, p)| Entry {
                        term: Term(1),
                        index: LogIndex(i.wrapping_add(k as u64 + 1)),
                        payload: if p.is_empty() {
                            EntryPayload::Noop
                        } else {
                            EntryPayload::Normal(p)
                        },
                    })
                    .collect(),
                leader_commit: LogIndex(i),
                round,
            }),
        (
            any::<bool>(),
            any::<u64>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(success, m, t)| MessageBody::AppendEntriesResponse {
                success,
                match_index: LogIndex(m),
                conflict: t.map(|t| ConflictHint {
                    term: Some(Term(t)),
                    first_index: LogIndex(m)
                }),
                round: 3,
            }),
        (any::<u64>(), any::<u64>()).prop_map(|(c, round)| MessageBody::Heartbeat {
            commit: LogIndex(c),
            round
        }),
        any::<u64>().prop_map(|round| MessageBody::HeartbeatResponse { round }),
    ];
    (1u64..6, 1u64..6, any::<u64>(), body).prop_map(|(from, to, term, body)| Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    })
}

fn encode_all(messages: &[Message]) -> Vec<u8> {
    let mut stream = Vec::new();
    for m in messages {
        frame::encode(FrameKind::Message, m, MAX, &mut stream).unwrap();
    }
    stream
}

/// Feeds `stream` to a decoder in pieces ending at `cuts`, collecting messages.
fn decode_split(stream: &[u8], cuts: &[usize]) -> Result<Vec<Message>, FrameError> {
    let mut decoder = FrameDecoder::new(MAX);
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    for end in ends {
        decoder.push(&stream[start..end]);
        start = end;
        while let Some(frame) = decoder.next_frame()? {
            out.push(frame::decode_expected(&frame, FrameKind::Message)?);
        }
    }
    decoder.finish()?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_splits_decode_the_same_messages(
        messages in proptest::collection::vec(arb_message(), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..50),
    ) {
        let stream = encode_all(&messages);
        prop_assert_eq!(decode_split(&stream, &cuts).unwrap(), messages);
    }
}

#[test]
fn oversized_frame_is_refused_before_its_body_arrives() {
    let mut decoder = FrameDecoder::new(MAX);
    decoder.push(&((MAX + 1) as u32).to_le_bytes());
    assert_eq!(
        decoder.next_frame(),
        Err(FrameError::TooLarge {
            len: MAX + 1,
            max: MAX
        })
    );
    let big = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![Entry {
                term: Term(1),
                index: LogIndex(1),
                payload: EntryPayload::Normal(vec![0; MAX]),
            }],
            leader_commit: LogIndex(0),
            round: 0,
        },
    };
    let mut out = Vec::new();
    assert!(matches!(
        frame::encode(FrameKind::Message, &big, MAX, &mut out),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn corrupted_frames_are_refused() {
    let message = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::Heartbeat {
            commit: LogIndex(4),
            round: 5,
        },
    };
    let good = encode_all(std::slice::from_ref(&message));
    let decode = |bytes: &[u8]| decode_split(bytes, &[]);
    assert_eq!(decode(&good).unwrap(), vec![message]);

    let mut version = good.clone();
    version[4] = 2;
    assert_eq!(
        decode(&version),
        Err(FrameError::UnknownVersion { version: 2 })
    );

    let mut kind = good.clone();
    kind[5] = 200;
    assert_eq!(decode(&kind), Err(FrameError::UnknownKind { kind: 200 }));

    let mut body = good.clone();
    body[6] = 0xff; // `from` becomes an unterminated varint... or garbage
    body[7] = 0xff;
    assert!(matches!(decode(&body), Err(FrameError::BadBody { .. })));

    let mut trailing = good.clone();
    trailing[0] += 1;
    trailing.push(0);
    assert!(matches!(decode(&trailing), Err(FrameError::BadBody { .. })));

    let truncated = &good[..good.len() - 1];
    assert!(matches!(
        decode(truncated),
        Err(FrameError::Truncated { .. })
    ));

    assert_eq!(
        decode(&[1, 0, 0, 0, 1]),
        Err(FrameError::TooShort { len: 1 })
    );

    let mut wrong_kind = Vec::new();
    frame::encode_raw(FrameKind::SnapshotChunk, b"x", MAX, &mut wrong_kind).unwrap();
    assert!(matches!(
        decode(&wrong_kind),
        Err(FrameError::Unexpected { .. })
    ));
}

/// A small seeded generator, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One million inputs through the decoder and the message decoding, none may panic. Half are
/// random bytes, half valid streams with mutations (bit flips, byte changes, insertions,
/// deletions, truncation, tampered lengths), each fed in random pieces.
#[test]
fn fuzz_a_million_inputs_without_panic() {
    const INPUTS: u64 = 1_000_000;
    const SEED: u64 = 0x5eed_f00d;
    let mut rng = Rng(SEED);
    let seeds: Vec<Vec<u8>> = {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = proptest::collection::vec(arb_message(), 1..4);
        (0..256)
            .map(|_| encode_all(&strategy.new_tree(&mut runner).unwrap().current()))
            .collect()
    };
    let (mut frames_ok, mut messages_ok, mut errors) = (0u64, 0u64, 0u64);
    let mut input = Vec::new();
    for _ in 0..INPUTS {
        input.clear();
        if rng.next().is_multiple_of(2) {
            let len = rng.below(48);
            input.extend((0..len).map(|_| rng.next() as u8));
        } else {
            input.extend_from_slice(&seeds[rng.below(seeds.len())]);
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(input.len().max(1));
                match rng.below(6) {
                    0 if !input.is_empty() => input[at] ^= 1 << rng.below(8),
                    1 if !input.is_empty() => input[at] = rng.next() as u8,
                    2 => input.insert(at.min(input.len()), rng.next() as u8),
                    3 if !input.is_empty() => {
                        input.remove(at);
                    }
                    4 => input.truncate(at),
                    _ if input.len() >= 4 => {
                        let len = [0u32, 1, 2, 3, u32::MAX, (MAX + 1) as u32, rng.next() as u32];
                        input[..4].copy_from_slice(&len[rng.below(len.len())].to_le_bytes());
                    }
                    _ => {}
                }
            }
        }
        let mut decoder = FrameDecoder::new(MAX);
        let mut start = 0;
        let outcome: Result<(), FrameError> = (|| {
            while start < input.len() {
                let end = (start + 1 + rng.below(16)).min(input.len());
                decoder.push(&input[start..end]);
                start = end;
                while let Some(frame) = decoder.next_frame()? {
                    frames_ok += 1;
                    let _: Message = frame::decode_expected(&frame, FrameKind::Message)?;
                    messages_ok += 1;
                }
            }
            decoder.finish()
        })();
        if outcome.is_err() {
            errors += 1;
        }
    }
    assert!(
        messages_ok > 10_000,
        "mutations should leave many messages decodable"
    );
    assert!(errors > 400_000, "most inputs should be refused");
    println!("fuzz: {INPUTS} inputs (seed {SEED:#x}): {frames_ok} frames, {messages_ok} messages decoded, {errors} inputs refused");
}

#[test]
fn decoded_frame_kinds_round_trip() {
    for kind in 1u8..=7 {
        let kind = FrameKind::from_u8(kind).unwrap();
        let mut out = Vec::new();
        frame::encode_raw(kind, b"abc", MAX, &mut out).unwrap();
        let mut decoder = FrameDecoder::new(MAX);
        decoder.push(&out);
        assert_eq!(
            decoder.next_frame().unwrap(),
            Some(Frame {
                kind,
                body: b"abc".to_vec()
            })
        );
    }
}
