//! Game messages outside the tick's update (docs/PROTOCOL.md `Send` and `Message`, docs/CLUSTER.md
//! "Backplane"): a player's `Send` handed to its room's game, and what a game sends through its
//! [`RoomControl`](crate::sim::RoomControl) delivered to its room, to one player, to an account wherever it
//! is connected, or to a topic's rooms on every process.
//!
//! Delivery is at most once: a client past `--send-hwm-bytes` is skipped (counted), never queued without
//! bound, since unlike state a message cannot be coalesced. Topic messages wait in a bounded queue and go
//! to the subscribed rooms at the start of the next turn's tick step, a bounded number of room visits per
//! turn, so a game that publishes from `topic_message` cannot keep the loop in a cycle.

use std::collections::VecDeque;
use std::time::Instant;

use super::sessions::{ConnRef, Link};
use super::*;
use crate::backplane::Delivery;
use crate::sim::room::Outgoing;
use crate::sim::PlayerId;

/// Topic messages waiting for local delivery; beyond, new ones are dropped (counted).
pub const TOPIC_QUEUE_MAX: usize = 4096;
/// Topic deliveries per turn, counting each room visited and each of its members (a message goes to all
/// its rooms in the turn it starts, so a turn may pass this by one message's worth).
const TOPIC_VISITS_PER_TURN: usize = 16_384;

/// Backplane deliveries taken per turn; more wait for the next.
const DELIVERIES_PER_TURN: usize = 1024;

/// What the game-message stage keeps between turns.
#[derive(Default)]
pub(super) struct Mail {
    /// Messages to and from the other processes of the cluster (`--redis`).
    pub(super) backplane: Option<crate::backplane::Backplane>,
    /// Topic messages for this process's subscribed rooms: published here or received from the backplane.
    topics: VecDeque<(Box<str>, Vec<u8>)>,
    /// Connections by the account their ticket named (for `RoomControl::tell`).
    accounts: std::collections::HashMap<Box<str>, Vec<ConnRef>>,
    /// Tokens for topic messages the games here publish (`--backplane-messages-per-s`, burst as large),
    /// and when they were last counted: one chat flood costs every subscribed room of the cluster, so the
    /// process bounds what it starts, here and through the backplane alike.
    publish_tokens: f64,
    publish_counted_at: Option<Instant>,
}

impl Mail {
    pub(super) fn has_topics(&self) -> bool {
        !self.topics.is_empty()
    }

    /// Whether the loop should come back at once: topic messages or backplane deliveries wait.
    pub(super) fn has_work(&self) -> bool {
        self.has_topics() || self.backplane.as_ref().is_some_and(|b| b.has_deliveries())
    }
}

impl<G: Game, C: Clock> Server<G, C> {
    /// Player `player` on connection `k` sent `body`: its game hears it, and what it sends in answer goes.
    pub(super) fn player_sent(&mut self, k: usize, player: PlayerId, body: &[u8]) -> Flow {
        let r = self.room_of(k);
        let room = self.rooms.get_mut(r);
        room.game
            .message(&mut room.world, player, body, &mut room.control);
        self.deliver_outbox(r);
        let conn = &self.net.conns[k];
        match conn.dead.is_none() && conn.closing.is_none() {
            true => Flow::Go,
            false => Flow::Stop,
        }
    }

    /// Sends what room `r`'s game put in its outbox during its last callback.
    pub(super) fn deliver_outbox(&mut self, r: usize) {
        let room = self.rooms.get_mut(r);
        self.metrics.game_messages_dropped += std::mem::take(&mut room.control.refused);
        if room.control.outbox.is_empty() {
            return;
        }
        let outbox = std::mem::take(&mut room.control.outbox);
        for msg in outbox {
            match msg {
                Outgoing::Room(body) => {
                    let frame = message_frame(&body);
                    for i in 0..self.rooms.get(r).members.len() {
                        let k = self.rooms.get(r).members[i].key;
                        self.queue_message(k, &frame);
                    }
                }
                Outgoing::Player(player, body) => {
                    let room = self.rooms.get(r);
                    if let Some(Link::Attached(conn)) = room.sessions.get(player).map(|s| s.link) {
                        self.queue_message(conn.key, &message_frame(&body));
                    }
                }
                Outgoing::Account(account, body) => {
                    self.message_account(&account, &body);
                    self.backplane_tell(&account, &body);
                }
                Outgoing::Topic(topic, body) => {
                    if !self.may_publish() {
                        self.metrics.game_messages_dropped += 1;
                        continue;
                    }
                    self.backplane_publish(&topic, &body);
                    self.queue_topic(topic.into(), body);
                }
            }
        }
    }

    /// Takes a token for one topic message published here, if one is left.
    fn may_publish(&mut self) -> bool {
        let rate = f64::from(self.cfg.backplane_messages_per_s);
        let mail = &mut self.mail;
        let elapsed = mail.publish_counted_at.map_or(f64::INFINITY, |at| {
            self.now.saturating_duration_since(at).as_secs_f64()
        });
        mail.publish_tokens = (mail.publish_tokens + elapsed * rate).min(rate);
        mail.publish_counted_at = Some(self.now);
        if mail.publish_tokens < 1.0 {
            return false;
        }
        mail.publish_tokens -= 1.0;
        true
    }

    /// A topic message for this process's rooms (published here, or from the backplane).
    pub(super) fn queue_topic(&mut self, topic: Box<str>, body: Vec<u8>) {
        if self.mail.topics.len() >= TOPIC_QUEUE_MAX {
            self.metrics.game_messages_dropped += 1;
            return;
        }
        self.mail.topics.push_back((topic, body));
    }

    /// Hands waiting topic messages to every room whose type subscribes to them, while this turn's
    /// budget lasts: a room visit and each of its members count one.
    pub(super) fn deliver_topics(&mut self) {
        let mut visits = 0;
        while visits < TOPIC_VISITS_PER_TURN {
            let Some((topic, body)) = self.mail.topics.pop_front() else {
                return;
            };
            let types = &self.rooms.types.types;
            let subscribed: Vec<bool> = types
                .iter()
                .map(|t| t.topics.iter().any(|s| **s == *topic))
                .collect();
            let rooms: Vec<usize> = self
                .rooms
                .iter()
                .filter(|(_, room)| subscribed[room.kind])
                .map(|(r, _)| r)
                .collect();
            let members: usize = rooms.iter().map(|&r| self.rooms.get(r).members.len()).sum();
            visits += (rooms.len() + members).max(1);
            for r in rooms {
                let room = self.rooms.get_mut(r);
                room.game
                    .topic_message(&mut room.world, &topic, &body, &mut room.control);
                self.deliver_outbox(r);
            }
        }
    }

    /// Sends `body` to every connection here whose ticket named `account`.
    pub(super) fn message_account(&mut self, account: &str, body: &[u8]) {
        let Some(conns) = self.mail.accounts.get(account) else {
            return;
        };
        let conns = conns.clone();
        let frame = message_frame(body);
        for conn in conns {
            if self
                .net
                .conns
                .get(conn.key)
                .is_some_and(|c| c.id == conn.id)
            {
                self.queue_message(conn.key, &frame);
            }
        }
    }

    /// Connection `k`'s ticket names `account`: it is found by it from now on.
    pub(super) fn set_account(&mut self, k: usize, account: Box<str>) {
        let conn = self.conn_ref(k);
        let ws = self.net.conns[k].ws_mut().expect("an upgraded connection");
        if let Some(old) = ws.account.replace(account.clone()) {
            forget_account(&mut self.mail.accounts, &old, conn);
        }
        self.mail.accounts.entry(account).or_default().push(conn);
    }

    /// Connection `conn` is being reaped: it is found by its account no more.
    pub(super) fn forget_account(&mut self, account: &str, conn: ConnRef) {
        forget_account(&mut self.mail.accounts, account, conn);
    }

    /// Queues one `Message` frame to connection `k`, unless it said neither `Hello` nor `Watch`, is
    /// closing, or is behind (its own high-water mark, or the process's queued-bytes budget); then it is
    /// dropped and counted: at most once.
    fn queue_message(&mut self, k: usize, frame: &[u8]) {
        let conn = &mut self.net.conns[k];
        let entered = matches!(conn.role(), Some(Role::Player(_) | Role::Spectator));
        if !entered {
            return;
        }
        if conn.closing.is_some()
            || conn.dead.is_some()
            || conn.queued() > self.cfg.send_hwm_bytes
            || self.queued_estimate > self.cfg.queued_bytes_max
        {
            self.metrics.game_messages_dropped += 1;
            return;
        }
        match conn.queue(frame) {
            Ok(n) => {
                self.metrics.bytes_out += n as u64;
                self.queued_estimate += frame.len() - n;
            }
            Err(_) => {
                self.kill(k, CloseReason::IoError);
                return;
            }
        }
        self.metrics.game_messages += 1;
        self.metrics.frames_out += 1;
        if self.net.conns[k].has_output() {
            self.want_write(k);
        }
    }

    /// Takes what other processes sent (at most `DELIVERIES_PER_TURN`): topic messages join the local
    /// queue, account messages go to this process's connections of that account.
    pub(super) fn take_backplane(&mut self) {
        for _ in 0..DELIVERIES_PER_TURN {
            let Some(delivery) = self.mail.backplane.as_ref().and_then(|b| b.try_recv()) else {
                return;
            };
            match delivery {
                Delivery::Topic { topic, body } => self.queue_topic(topic.into(), body),
                Delivery::Account { account, body } => self.message_account(&account, &body),
            }
        }
    }

    fn backplane_publish(&mut self, topic: &str, body: &[u8]) {
        if let Some(backplane) = &mut self.mail.backplane {
            backplane.publish(self.now, topic, body);
        }
    }

    fn backplane_tell(&mut self, account: &str, body: &[u8]) {
        if let Some(backplane) = &mut self.mail.backplane {
            backplane.tell(self.now, account, body);
        }
    }
}

fn forget_account(
    accounts: &mut std::collections::HashMap<Box<str>, Vec<ConnRef>>,
    account: &str,
    conn: ConnRef,
) {
    if let Some(conns) = accounts.get_mut(account) {
        conns.retain(|c| *c != conn);
        if conns.is_empty() {
            accounts.remove(account);
        }
    }
}

/// The WebSocket frame of `Message { body }`.
fn message_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 8);
    append_message(
        &mut frame,
        &ServerMsg::<(), ()>::Message {
            body: body.to_vec(),
        },
    );
    frame
}
