//! Codec tests: round trips, the streaming writers against the derived decoder, and error texts.

use proptest::prelude::*;

use super::*;
use crate::sim::arena::{ArenaDiff, ArenaEntity, ArenaInput};

type Msg = ServerMsg<ArenaEntity, ArenaDiff>;

fn e(x: u16, y: u16, seq: u32) -> ArenaEntity {
    ArenaEntity { x, y, seq }
}

#[test]
fn streamed_full_decodes_as_the_derived_message() {
    let entities = [
        (0u32, e(4000, 100, 0)),
        (2, e(8000, 0, 5)),
        (300, e(1, 2, 70_000)),
    ];
    let mut out = Vec::new();
    write_full(&mut out, 300, entities.iter().map(|(id, s)| (*id, s)));
    let mut decoded: Msg = decode(&out).unwrap();
    let ServerMsg::Full {
        tick,
        entities: list,
    } = &mut decoded
    else {
        panic!("{decoded:?}")
    };
    assert_eq!(*tick, 300);
    ungap(list);
    assert_eq!(list.as_slice(), &entities[..]);
}

#[test]
fn streamed_delta_decodes_as_the_derived_message() {
    let set = [(7u32, e(1, 2, 0))];
    let changed = [
        (
            0u32,
            ArenaDiff {
                dx: 40,
                dy: -40,
                dseq: 1,
            },
        ),
        (
            2,
            ArenaDiff {
                dx: -3,
                dy: 0,
                dseq: 0,
            },
        ),
    ];
    let mut out = Vec::new();
    write_delta(
        &mut out,
        300,
        301,
        [5u32, 9].into_iter(),
        set.iter().map(|(id, s)| (*id, s)),
        changed.iter().copied(),
    );
    let decoded: Msg = decode(&out).unwrap();
    let ServerMsg::Delta {
        base,
        tick,
        mut despawned,
        set: mut s,
        changed: mut c,
    } = decoded
    else {
        panic!()
    };
    ungap_ids(&mut despawned);
    ungap(&mut s);
    ungap(&mut c);
    assert_eq!((base, tick), (300, 301));
    assert_eq!(despawned, vec![5, 9]);
    assert_eq!(s, set.to_vec());
    assert_eq!(c, changed.to_vec());
}

#[test]
fn decode_errors_say_what_is_wrong() {
    let err = |bytes: &[u8]| decode_client::<ArenaInput>(bytes).unwrap_err().0;
    assert_eq!(err(&[]), "message ends 1 byte(s) too early");
    assert!(
        err(&[9]).contains("integer `9`, expected variant index"),
        "{}",
        err(&[9])
    );
    assert!(
        err(&[1, 1, 0, 0, 0xff]).contains("trailing"),
        "{}",
        err(&[1, 1, 0, 0, 0xff])
    );
    // A varint marker byte with its payload cut off.
    assert!(
        err(&[2, 253, 1]).contains("too early"),
        "{}",
        err(&[2, 253, 1])
    );
    // A name whose length prefix claims far more than the message holds: no big allocation, an error.
    let e = err(&[0, 1, 253, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert!(e.contains("claims more") || e.contains("too early"), "{e}");
    let long = encode(&ClientMsg::<ArenaInput>::Hello {
        protocol: PROTOCOL_VERSION,
        name: "x".repeat(NAME_LEN_MAX + 1),
        ticket: String::new(),
        resume: None,
    });
    assert!(err(&long).contains("limit is 32"), "{}", err(&long));
    let long_ticket = encode(&ClientMsg::<ArenaInput>::Watch {
        protocol: PROTOCOL_VERSION,
        ticket: "t".repeat(257),
    });
    assert!(
        err(&long_ticket).contains("limit is 256"),
        "{}",
        err(&long_ticket)
    );
    // A resume option byte other than 0 or 1.
    assert!(
        err(&[0, 2, 0, 0, 7]).contains("tag 7"),
        "{}",
        err(&[0, 2, 0, 0, 7])
    );
    let bad_utf8 = [0u8, 1, 2, 0xff, 0xfe];
    assert_eq!(err(&bad_utf8), "string is not valid UTF-8");
}

#[test]
fn a_hello_or_watch_announces_its_version_whatever_follows() {
    // A version 1 `Hello` (protocol, name) no longer decodes, but still says which version it speaks.
    let v1_hello = [0u8, 1, 3, b'a', b'n', b'n'];
    assert!(decode_client::<ArenaInput>(&v1_hello).is_err());
    assert_eq!(announced_version(&v1_hello), Some(1));
    let watch = encode(&ClientMsg::<ArenaInput>::Watch {
        protocol: 9,
        ticket: String::new(),
    });
    assert_eq!(announced_version(&watch), Some(9));
    let ping = encode(&ClientMsg::<ArenaInput>::Ping { nonce: 5 });
    assert_eq!(announced_version(&ping), None);
    assert_eq!(announced_version(&[0]), None);
}

#[test]
fn world_hash_is_fnv1a_over_encoded_ids_and_states() {
    // Spelled out by hand, as a client in another language would compute it.
    let mut bytes = Vec::new();
    for (id, s) in [(0u32, e(4000, 100, 0)), (2, e(8000, 0, 5))] {
        bytes.extend(encode(&id));
        bytes.extend(encode(&s));
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let entities = [(0u32, e(4000, 100, 0)), (2, e(8000, 0, 5))];
    assert_eq!(
        world_hash(&mut Vec::new(), entities.iter().map(|(i, s)| (*i, s))),
        h
    );
}

fn arb_entity() -> impl Strategy<Value = ArenaEntity> + Clone {
    (any::<u16>(), any::<u16>(), any::<u32>()).prop_map(|(x, y, seq)| ArenaEntity { x, y, seq })
}

fn arb_server_msg() -> impl Strategy<Value = Msg> {
    let list = prop::collection::vec((any::<u32>(), arb_entity()), 0..20);
    let diffs = prop::collection::vec(
        (
            any::<u32>(),
            (any::<i16>(), any::<i16>(), any::<u32>()).prop_map(|(dx, dy, dseq)| ArenaDiff {
                dx,
                dy,
                dseq,
            }),
        ),
        0..20,
    );
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
            "[A-Za-z0-9_-]{1,64}"
        )
            .prop_map(|(protocol, tick_hz, tick, connection_id, room)| {
                ServerMsg::Welcome {
                    protocol,
                    tick_hz,
                    tick,
                    connection_id,
                    room,
                }
            }),
        (any::<u32>(), any::<[u8; 16]>(), any::<bool>()).prop_map(
            |(entity, resume_token, resumed)| ServerMsg::Joined {
                entity,
                resume_token,
                resumed
            }
        ),
        (any::<u64>(), list.clone())
            .prop_map(|(tick, entities)| ServerMsg::Full { tick, entities }),
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u32>(), 0..20),
            list,
            diffs
        )
            .prop_map(|(base, tick, despawned, set, changed)| ServerMsg::Delta {
                base,
                tick,
                despawned,
                set,
                changed
            }),
        (any::<u64>(), any::<u64>()).prop_map(|(tick, hash)| ServerMsg::Checksum { tick, hash }),
        (any::<u64>(), any::<u64>()).prop_map(|(nonce, tick)| ServerMsg::Pong { nonce, tick }),
    ]
}

fn arb_client_msg() -> impl Strategy<Value = ClientMsg<ArenaInput>> {
    prop_oneof![
        (
            any::<u16>(),
            "[a-zA-Z0-9 é]{0,8}",
            "[a-zA-Z0-9._-]{0,40}",
            prop::option::of((any::<[u8; 16]>(), any::<u64>()))
        )
            .prop_map(|(protocol, name, ticket, resume)| ClientMsg::Hello {
                protocol,
                name,
                ticket,
                resume: resume.map(|(token, tick)| Resume { token, tick }),
            }),
        (any::<u16>(), "[a-zA-Z0-9._-]{0,40}")
            .prop_map(|(protocol, ticket)| ClientMsg::Watch { protocol, ticket }),
        (any::<u32>(), any::<i8>(), any::<i8>()).prop_map(|(seq, dx, dy)| ClientMsg::Input {
            seq,
            input: ArenaInput { dx, dy }
        }),
        any::<u64>().prop_map(|nonce| ClientMsg::Ping { nonce }),
    ]
}

proptest! {
    #[test]
    fn server_messages_round_trip(msg in arb_server_msg()) {
        prop_assert_eq!(decode::<Msg>(&encode(&msg)).unwrap(), msg);
    }

    #[test]
    fn client_messages_round_trip(msg in arb_client_msg()) {
        prop_assert_eq!(decode_client::<ArenaInput>(&encode(&msg)).unwrap(), msg);
    }

    /// Random bytes never panic the decoder; they decode or give an error.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_client::<ArenaInput>(&bytes);
    }
}

#[test]
fn huge_length_prefixes_fail_without_allocating_them() {
    // Hello whose name claims 2^62 bytes, and one that claims 16 MiB: both must be plain errors.
    let mut huge = vec![0u8, 1, 0xfd];
    huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let e = decode_client::<ArenaInput>(&huge).unwrap_err().0;
    assert!(!e.is_empty());
    let mut big = vec![0u8, 1, 0xfc];
    big.extend_from_slice(&(16u32 << 20).to_le_bytes());
    let e = decode_client::<ArenaInput>(&big).unwrap_err().0;
    assert!(!e.is_empty());
}

#[test]
fn server_tags_are_the_first_byte_of_each_message() {
    use super::server_tag as t;
    let cases: [(Msg, u32); 7] = [
        (
            ServerMsg::Welcome {
                protocol: PROTOCOL_VERSION,
                tick_hz: 20,
                tick: 0,
                connection_id: 1,
                room: String::new(),
            },
            t::WELCOME,
        ),
        (
            ServerMsg::Joined {
                entity: 0,
                resume_token: [0; 16],
                resumed: false,
            },
            t::JOINED,
        ),
        (
            ServerMsg::Full {
                tick: 1,
                entities: vec![],
            },
            t::FULL,
        ),
        (
            ServerMsg::Delta {
                base: 1,
                tick: 2,
                despawned: vec![],
                set: vec![],
                changed: vec![],
            },
            t::DELTA,
        ),
        (ServerMsg::Checksum { tick: 1, hash: 2 }, t::CHECKSUM),
        (ServerMsg::Pong { nonce: 1, tick: 2 }, t::PONG),
        (ServerMsg::Message { body: vec![1] }, t::MESSAGE),
    ];
    for (msg, tag) in cases {
        let bytes = encode(&msg);
        assert_eq!(decode_prefix::<u32>(&bytes), Ok((tag, 1)), "{msg:?}");
    }
}
