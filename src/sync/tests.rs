//! Replication property: for random worlds and random baselines, the update a connection holding baseline
//! `a` is sent brings its mirror exactly to the world `b` (apply(delta(a, b), a) == b), checksum included.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::proto::{self, ServerMsg};
use crate::sim::arena::{ArenaDiff, ArenaEntity};

type Msg = ServerMsg<ArenaEntity, ArenaDiff>;

#[derive(Debug, Clone)]
enum Op {
    Spawn(u16, u16),
    /// Move the n-th live entity (modulo) by a step.
    Move(usize, i16, i16),
    Despawn(usize),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (any::<u16>(), any::<u16>()).prop_map(|(x, y)| Op::Spawn(x, y)),
        4 => (any::<usize>(), -300i16..300, -300i16..300).prop_map(|(i, dx, dy)| Op::Move(i, dx, dy)),
        1 => any::<usize>().prop_map(Op::Despawn),
    ]
}

fn apply_op(world: &mut World<ArenaEntity>, op: &Op) {
    let ids: Vec<u32> = world.iter().map(|(id, _)| id).collect();
    match *op {
        Op::Spawn(x, y) => {
            world.spawn(ArenaEntity { x, y, seq: 0 });
        }
        Op::Move(i, dx, dy) if !ids.is_empty() => {
            let id = ids[i % ids.len()];
            let mut s = *world.get(id).unwrap();
            s.x = s.x.wrapping_add(dx as u16);
            s.y = s.y.wrapping_add(dy as u16);
            s.seq += 1;
            world.set(id, s);
        }
        Op::Despawn(i) if !ids.is_empty() => world.despawn(ids[i % ids.len()]),
        _ => {}
    }
}

/// Splits back-to-back unmasked binary frames into payloads.
fn payloads(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[0], 0x82, "final binary frame");
        let (len, header) = match bytes[1] {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        out.push(bytes[header..header + len].to_vec());
        bytes = &bytes[header + len..];
    }
    out
}

fn mirror_of(snapshot: &BTreeMap<u32, ArenaEntity>, tick: u64) -> Mirror<ArenaEntity> {
    let mut m = Mirror::new();
    let mut list: Vec<(u32, ArenaEntity)> = Vec::new();
    let mut prev = 0;
    for (&id, &s) in snapshot {
        list.push((id - prev, s));
        prev = id;
    }
    m.apply(ServerMsg::Full {
        tick,
        entities: list,
    })
    .unwrap();
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_baseline_is_brought_exactly_to_the_current_world(
        ticks in prop::collection::vec(prop::collection::vec(arb_op(), 0..12), 1..40),
        between in prop::collection::vec(arb_op(), 0..4),
        despawn_log_max in 1usize..16,
        history_ticks in 1u64..24,
    ) {
        let mut world = World::new(WorldLimits { entities_max: 64, history_ticks, despawn_log_max });
        let mut snapshots = vec![BTreeMap::new()];
        let mut updates = Updates::default();
        for ops in &ticks {
            // Changes made between ticks (joins, leaves) reach clients with the next tick too.
            for op in &between {
                apply_op(&mut world, op);
            }
            for op in ops {
                apply_op(&mut world, op);
            }
            world.complete_tick();
            let now = world.tick();
            snapshots.push(world.iter().map(|(id, s)| (id, *s)).collect());
            updates.begin(&world, true);
            let bases = (0..now).map(Some).chain([None]);
            for base in bases {
                let mut mirror = match base {
                    Some(b) => mirror_of(&snapshots[b as usize], b),
                    None => Mirror::new(),
                };
                let (range, kind) = updates.for_baseline(&world, base);
                let frames = payloads(updates.bytes(range));
                prop_assert_eq!(frames.len(), 2, "an update and its checksum");
                for payload in frames {
                    let msg: Msg = proto::decode(&payload).unwrap();
                    mirror.apply(msg).map_err(|e| TestCaseError::fail(format!("{kind:?} from {base:?}: {e}")))?;
                }
                let got: BTreeMap<u32, ArenaEntity> = mirror.iter().map(|(id, s)| (id, *s)).collect();
                prop_assert_eq!(&got, snapshots.last().unwrap());
                prop_assert_eq!(mirror.checksums_verified, 1);
                match base {
                    None => prop_assert_eq!(kind, UpdateKind::Full),
                    Some(b) if b + 1 == now && world.can_delta_from(b) => prop_assert_eq!(kind, UpdateKind::Delta),
                    Some(b) if now - b > history_ticks => prop_assert_eq!(kind, UpdateKind::Full),
                    Some(_) => {}
                }
            }
        }
    }
}

#[test]
fn a_quiet_world_sends_empty_deltas() {
    let mut world = World::new(WorldLimits::default());
    let id = world.spawn(ArenaEntity { x: 1, y: 2, seq: 0 }).unwrap();
    world.complete_tick();
    world.set(id, ArenaEntity { x: 1, y: 2, seq: 0 });
    world.complete_tick();
    let mut updates = Updates::default();
    updates.begin(&world, false);
    let (range, kind) = updates.for_baseline(&world, Some(1));
    assert_eq!(kind, UpdateKind::Delta);
    // tag, base, tick, and three empty lists.
    assert_eq!(payloads(updates.bytes(range)), vec![vec![3, 1, 2, 0, 0, 0]]);
}

#[test]
fn one_moving_entity_costs_four_bytes_in_a_delta() {
    let mut world = World::new(WorldLimits::default());
    let ids: Vec<u32> = (0..100)
        .map(|i| world.spawn(ArenaEntity { x: i, y: i, seq: 0 }).unwrap())
        .collect();
    world.complete_tick();
    for &id in &ids {
        let mut s = *world.get(id).unwrap();
        s.x += 40;
        s.seq += 1;
        world.set(id, s);
    }
    world.complete_tick();
    let mut updates = Updates::default();
    updates.begin(&world, false);
    let (range, _) = updates.for_baseline(&world, Some(1));
    let payload = &payloads(updates.bytes(range))[0];
    // 6 bytes of header and empty lists, then id gap + dx + dy + dseq per entity.
    assert_eq!(payload.len(), 6 + 4 * ids.len());
}
