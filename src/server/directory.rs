//! The server's side of cluster mode (`--redis`, docs/CLUSTER.md): heartbeats that keep this process and
//! its rooms in the directory, a claim as soon as a room is created, a release when it goes, and what the
//! helper thread reports (Redis up or down, a room another process holds). Nothing here waits on Redis:
//! `crate::cluster` carries every message through bounded channels.

use super::*;
use crate::cluster::{FromRedis, ProcessInfo, RoomBeat, ToRedis, FROM_REDIS_MAX};

impl<G: Game, C: Clock> Server<G, C> {
    /// Takes what the Redis helper reported since the last turn (at most `FROM_REDIS_MAX`); a room another
    /// process holds is closed here with 4009.
    pub(super) fn take_cluster_news(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let mut lost = Vec::new();
        let mut placed = Vec::new();
        for _ in 0..FROM_REDIS_MAX {
            match cluster.rx.try_recv() {
                Ok(FromRedis::Up) => {
                    if cluster.down.take().is_some() {
                        tracing::info!(
                            redis = "up",
                            "cluster: redis answers again, no longer degraded"
                        );
                    }
                }
                Ok(FromRedis::Down(why)) => {
                    tracing::warn!(redis = "down", %why, "cluster: degraded: redis unreachable");
                    cluster.down = Some(why);
                }
                Ok(FromRedis::Lost { room, owner }) => {
                    tracing::warn!(%room, %owner, "cluster: claim lost: another process holds the room");
                    lost.push(room)
                }
                Ok(FromRedis::Placed { conn, result }) => placed.push((conn, result)),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    if cluster.down.is_none() {
                        tracing::error!(
                            redis = "down",
                            "cluster: degraded: the redis helper thread stopped"
                        );
                    }
                    cluster.down = Some("the redis helper thread stopped".into());
                    break;
                }
            }
        }
        for (conn, result) in placed {
            self.answer_placement(conn, result);
        }
        for room in lost {
            // The default room is this process's own and never claimed; any other may have gone since.
            if let Some(key) = self
                .rooms
                .find(&room)
                .filter(|&k| !self.rooms.get(k).permanent)
            {
                self.close_room(key, Close::RoomElsewhere(room.to_string()));
                if let Some(cluster) = &mut self.cluster {
                    cluster.claims_lost += 1;
                }
            }
        }
    }

    /// Every third of `--cluster-ttl-ms` (or now, with `force`): this process's entry and a claim of every
    /// room it holds but the default one (bounded by `--max-rooms`).
    pub(super) fn cluster_beat(&mut self, force: bool) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if !force && !cluster.beat_due(self.now) {
            return;
        }
        let rooms = || self.rooms.iter().map(|(_, room)| room);
        let info = ProcessInfo {
            rooms: self.rooms.len(),
            players: rooms().map(|r| r.players()).sum(),
            room_capacity: self.cfg.max_rooms.saturating_sub(self.rooms.len()),
            draining: self.drain_deadline.is_some(),
        };
        let rooms = self.rooms.beats();
        let cluster = self.cluster.as_mut().expect("checked above");
        cluster.send(ToRedis::Heartbeat { info, rooms });
        cluster.beat_at = Some(self.now);
    }

    /// Room `name` was just created here: claim it in the directory at once.
    pub(super) fn cluster_claim(&mut self, name: &str) {
        if let Some(cluster) = &mut self.cluster {
            cluster.send(ToRedis::Claim(name.into()));
        }
    }

    /// A room is gone from here: give its name (and its free seats) back.
    pub(super) fn cluster_release(&mut self, room: RoomBeat) {
        if let Some(cluster) = &mut self.cluster {
            cluster.send(ToRedis::Release(room));
        }
    }

    /// What `/healthz` says: `ok`, or that the cluster's Redis is not doing its part (still 200: the
    /// process serves its rooms). Redis's own words (host names, say) go to stderr, not to anyone asking.
    pub(super) fn health_text(&self) -> String {
        match self.cluster.as_ref().and_then(|c| c.down.as_deref()) {
            None => "ok\n".to_string(),
            Some(_) => "ok, degraded: redis unreachable\n".to_string(),
        }
    }
}
