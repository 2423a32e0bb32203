//! The test vectors in docs/PROTOCOL.md decode to the messages they name, and those messages encode back
//! to the same bytes, so the document and the code cannot drift apart.

use tickcast::proto::{self, ClientMsg, ServerMsg};
use tickcast::sim::arena::{ArenaDiff, ArenaEntity, ArenaInput};

type Server = ServerMsg<ArenaEntity, ArenaDiff>;
type Client = ClientMsg<ArenaInput>;

enum Expected {
    Server(Server),
    Client(Client),
    Hash(u64),
}

fn e(x: u16, y: u16, seq: u32) -> ArenaEntity {
    ArenaEntity { x, y, seq }
}

/// The world used by the `Full` and `checksum` vectors, with real ids.
fn example_world() -> Vec<(u32, ArenaEntity)> {
    vec![(0, e(4000, 100, 0)), (2, e(8000, 0, 5))]
}

/// Every vector PROTOCOL.md must carry.
const VECTOR_NAMES: [&str; 15] = [
    "welcome",
    "joined",
    "joined-resumed",
    "full",
    "delta",
    "checksum",
    "pong",
    "hello",
    "hello-resume",
    "watch",
    "input",
    "ping",
    "send",
    "message",
    "world-hash",
];

fn expected(name: &str) -> Expected {
    use Expected::*;
    match name {
        "welcome" => Server(ServerMsg::Welcome {
            protocol: 4,
            tick_hz: 20,
            tick: 300,
            connection_id: 7,
            room: "arena-1".to_string(),
        }),
        "joined" => Server(ServerMsg::Joined {
            entity: 3,
            resume_token: token(),
            resumed: false,
        }),
        "joined-resumed" => Server(ServerMsg::Joined {
            entity: 3,
            resume_token: token(),
            resumed: true,
        }),
        // Ids 0 and 2 travel as gaps 0 and 2.
        "full" => Server(ServerMsg::Full {
            tick: 300,
            entities: vec![(0, e(4000, 100, 0)), (2, e(8000, 0, 5))],
        }),
        // Despawned id 5; set id 7; changed ids 0 and 2 (gaps 0 and 2).
        "delta" => Server(ServerMsg::Delta {
            base: 300,
            tick: 301,
            despawned: vec![5],
            set: vec![(7, e(1, 2, 0))],
            changed: vec![
                (
                    0,
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
            ],
        }),
        "checksum" => Server(ServerMsg::Checksum {
            tick: 300,
            hash: world_hash(),
        }),
        "pong" => Server(ServerMsg::Pong {
            nonce: 99,
            tick: 301,
        }),
        "hello" => Client(ClientMsg::Hello {
            protocol: 4,
            name: "ann".into(),
            ticket: String::new(),
            resume: None,
        }),
        "hello-resume" => Client(ClientMsg::Hello {
            protocol: 4,
            name: "ann".into(),
            ticket: String::new(),
            resume: Some(proto::Resume {
                token: token(),
                tick: 300,
            }),
        }),
        "watch" => Client(ClientMsg::Watch {
            protocol: 4,
            ticket: "t.k".into(),
        }),
        "input" => Client(ClientMsg::Input {
            seq: 1,
            input: ArenaInput { dx: 1, dy: -1 },
        }),
        "ping" => Client(ClientMsg::Ping { nonce: 1000 }),
        "send" => Client(ClientMsg::Send {
            body: b"hi".to_vec(),
        }),
        "message" => Server(ServerMsg::Message {
            body: b"ann: hi".to_vec(),
        }),
        "world-hash" => Hash(world_hash()),
        other => panic!("PROTOCOL.md has a vector named {other:?} that this test does not know"),
    }
}

/// The resume token in the vectors: bytes 0x00 to 0x0f.
fn token() -> proto::ResumeToken {
    std::array::from_fn(|i| i as u8)
}

fn world_hash() -> u64 {
    let world = example_world();
    proto::world_hash(&mut Vec::new(), world.iter().map(|(id, s)| (*id, s)))
}

/// `(name, bytes)` of every ```vector block in the document.
fn vectors(doc: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut in_block = false;
    let (mut name, mut hex) = (String::new(), String::new());
    for line in doc.lines() {
        if line.trim() == "```vector" {
            in_block = true;
            name.clear();
            hex.clear();
        } else if in_block && line.trim() == "```" {
            in_block = false;
            let bytes = hex
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
                .collect();
            out.push((name.clone(), bytes));
        } else if in_block {
            if let Some(v) = line.strip_prefix("name:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("hex:") {
                hex.push_str(v);
            } else if line.starts_with("  ") {
                hex.push_str(line);
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn protocol_md_vectors_decode_and_reencode() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    let vectors = vectors(&doc);
    let names: Vec<&str> = vectors.iter().map(|(n, _)| n.as_str()).collect();
    for required in VECTOR_NAMES {
        assert!(
            names.contains(&required),
            "PROTOCOL.md lacks the {required} vector; it has {names:?}"
        );
    }
    for (name, bytes) in vectors {
        match expected(&name) {
            Expected::Server(mut msg) => {
                let mut decoded: Server =
                    proto::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                regap(&mut msg);
                assert_eq!(decoded, msg, "vector {name}");
                decoded = msg;
                assert_eq!(
                    hex(&proto::encode(&decoded)),
                    hex(&bytes),
                    "vector {name} re-encodes"
                );
            }
            Expected::Client(msg) => {
                let decoded: Client =
                    proto::decode_client(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(decoded, msg, "vector {name}");
                assert_eq!(
                    hex(&proto::encode(&msg)),
                    hex(&bytes),
                    "vector {name} re-encodes"
                );
            }
            Expected::Hash(h) => assert_eq!(
                hex(&h.to_le_bytes()),
                hex(&bytes),
                "{name}: little-endian u64"
            ),
        }
    }
}

/// Expected values above use real ids; on the wire lists carry gaps.
fn regap(msg: &mut Server) {
    fn gaps<T>(list: &mut [(u32, T)]) {
        let mut prev = 0;
        for (id, _) in list.iter_mut() {
            let g = *id - prev;
            prev = *id;
            *id = g;
        }
    }
    match msg {
        ServerMsg::Full { entities, .. } => gaps(entities),
        ServerMsg::Delta {
            despawned,
            set,
            changed,
            ..
        } => {
            let mut prev = 0;
            for id in despawned.iter_mut() {
                let g = *id - prev;
                prev = *id;
                *id = g;
            }
            gaps(set);
            gaps(changed);
        }
        _ => {}
    }
}

/// Prints the vectors in the document's format: `cargo test --test protocol_vectors -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_vectors() {
    for name in VECTOR_NAMES {
        let bytes = match expected(name) {
            Expected::Server(mut m) => {
                regap(&mut m);
                proto::encode(&m)
            }
            Expected::Client(m) => proto::encode(&m),
            Expected::Hash(h) => h.to_le_bytes().to_vec(),
        };
        println!("```vector\nname: {name}\nhex: {}\n```\n", hex(&bytes));
    }
}
