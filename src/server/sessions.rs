//! Player sessions: a player outlives its connection. Each player has a random resume token; when its
//! connection drops without a goodbye the session is **detached** and keeps its entity for
//! `--resume-grace-ms`, so a client that reconnects with the token (`Hello.resume`) takes the same player
//! back. Every resume **rotates** the token: the `Joined` that answers it carries a new one and the old one
//! resumes nothing from then on, so a token seen once (a log, a shoulder) is not good for the whole
//! session. Detached sessions are bounded in time (the grace period, here) and in number (`--detached-max`,
//! over every room: the oldest goes first, `Server::cap_detached`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::proto::ResumeToken;
use crate::sim::PlayerId;
use crate::sync::EntityId;

/// A connection, by its own id (unique for the process's life) and where it sits in the loop's slab. The
/// key alone is no identity: a slab key is reused once its connection is reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    pub key: usize,
    pub id: u64,
}

/// Where a session's player is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Playing on this connection.
    Attached(ConnRef),
    /// No connection since this moment.
    Detached(Instant),
}

#[derive(Debug)]
pub struct Session {
    pub entity: EntityId,
    /// What resumes this player now; replaced on every resume ([`Sessions::rotate`]).
    pub token: ResumeToken,
    /// The player id of the ticket the session was created with, when tickets are in use: a resume that
    /// brings a ticket must bring one of this account.
    pub account: Option<Box<str>>,
    pub link: Link,
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_player: HashMap<PlayerId, Session>,
    by_token: HashMap<ResumeToken, PlayerId>,
    detached: usize,
}

impl Sessions {
    /// A new session for `player` of `account`, attached to connection `conn`, with a fresh random token.
    pub fn create(
        &mut self,
        player: PlayerId,
        entity: EntityId,
        account: Option<Box<str>>,
        conn: ConnRef,
    ) -> ResumeToken {
        let token = self.fresh_token();
        self.by_token.insert(token, player);
        let session = Session {
            entity,
            token,
            account,
            link: Link::Attached(conn),
        };
        let previous = self.by_player.insert(player, session);
        debug_assert!(previous.is_none(), "player {player} joined twice");
        token
    }

    /// Gives the player's session a fresh token and returns it; the old one resumes nothing from now on.
    pub fn rotate(&mut self, player: PlayerId) -> ResumeToken {
        let token = self.fresh_token();
        let session = self.by_player.get_mut(&player).expect("live session");
        let old = std::mem::replace(&mut session.token, token);
        let was = self.by_token.remove(&old);
        debug_assert_eq!(was, Some(player), "by_token out of step with by_player");
        self.by_token.insert(token, player);
        token
    }

    /// A random token no live session holds.
    fn fresh_token(&self) -> ResumeToken {
        loop {
            let mut token = ResumeToken::default();
            getrandom::fill(&mut token).expect("the operating system's random source");
            // 2^-128 per existing token; the loop is for correctness, not expected to turn.
            if !self.by_token.contains_key(&token) {
                return token;
            }
        }
    }

    pub fn get(&self, player: PlayerId) -> Option<&Session> {
        self.by_player.get(&player)
    }

    /// The player a token resumes, if its session is still alive.
    pub fn by_token(&self, token: &ResumeToken) -> Option<PlayerId> {
        self.by_token.get(token).copied()
    }

    /// Attaches the player to connection `conn`; returns where it was.
    pub fn attach(&mut self, player: PlayerId, conn: ConnRef) -> Link {
        let session = self.by_player.get_mut(&player).expect("live session");
        let was = std::mem::replace(&mut session.link, Link::Attached(conn));
        if matches!(was, Link::Detached(_)) {
            self.detached -= 1;
        }
        was
    }

    /// The player's connection is gone; its session waits for a resume.
    pub fn detach(&mut self, player: PlayerId, now: Instant) {
        let session = self.by_player.get_mut(&player).expect("live session");
        debug_assert!(matches!(session.link, Link::Attached(_)));
        session.link = Link::Detached(now);
        self.detached += 1;
    }

    /// Ends the player's session; its token resumes nothing from now on.
    pub fn remove(&mut self, player: PlayerId) {
        if let Some(session) = self.by_player.remove(&player) {
            self.by_token.remove(&session.token);
            if matches!(session.link, Link::Detached(_)) {
                self.detached -= 1;
            }
        }
    }

    /// No player at all, attached or detached.
    pub fn is_empty(&self) -> bool {
        self.by_player.is_empty()
    }

    /// Players waiting to be resumed.
    pub fn detached(&self) -> usize {
        self.detached
    }

    /// Players playing on a connection.
    pub fn attached(&self) -> usize {
        self.by_player.len() - self.detached
    }

    /// Lists in `out` the detached players whose grace period is over at `now`; the caller ends them.
    /// Scans every session, but only while someone is detached, once per tick.
    pub fn expired(&self, now: Instant, grace: Duration, out: &mut Vec<PlayerId>) {
        out.clear();
        if self.detached == 0 {
            return;
        }
        out.extend(
            self.detached_since()
                .filter(|(since, _)| now.saturating_duration_since(*since) >= grace)
                .map(|(_, player)| player),
        );
    }

    /// Every detached player, with when it was detached.
    pub fn detached_since(&self) -> impl Iterator<Item = (Instant, PlayerId)> + '_ {
        self.by_player
            .iter()
            .filter_map(|(&player, session)| match session.link {
                Link::Detached(since) => Some((since, player)),
                Link::Attached(_) => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection whose id is its slab key plus 100, say.
    fn c(key: usize) -> ConnRef {
        ConnRef {
            key,
            id: key as u64 + 100,
        }
    }

    #[test]
    fn a_session_lives_from_create_through_detach_and_attach_to_remove() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        let token = s.create(7, 3, Some("ann".into()), c(11));
        assert_eq!(s.by_token(&token), Some(7));
        assert_eq!(s.get(7).unwrap().account.as_deref(), Some("ann"));
        assert_eq!(s.get(7).unwrap().entity, 3);
        assert_eq!((s.attached(), s.detached()), (1, 0));
        s.detach(7, t0);
        assert_eq!((s.attached(), s.detached()), (0, 1));
        assert_eq!(s.attach(7, c(12)), Link::Detached(t0));
        assert_eq!(s.detached(), 0);
        assert_eq!(s.attach(7, c(13)), Link::Attached(c(12)));
        s.remove(7);
        assert_eq!(s.by_token(&token), None);
        assert!(s.get(7).is_none());
    }

    #[test]
    fn tokens_are_distinct() {
        let mut s = Sessions::default();
        let a = s.create(1, 1, None, c(1));
        let b = s.create(2, 2, None, c(2));
        assert_ne!(a, b);
    }

    #[test]
    fn a_rotated_token_replaces_the_old_one_and_removal_forgets_it() {
        let mut s = Sessions::default();
        let old = s.create(7, 3, None, c(11));
        let other = s.create(8, 4, None, c(12));
        let new = s.rotate(7);
        assert_ne!(new, old);
        assert_eq!(s.by_token(&old), None, "the old token resumes nothing");
        assert_eq!(s.by_token(&new), Some(7));
        assert_eq!(s.get(7).unwrap().token, new);
        assert_eq!(s.by_token(&other), Some(8), "other sessions keep theirs");
        assert_eq!((s.attached(), s.detached()), (2, 0));
        s.remove(7);
        assert_eq!(s.by_token(&new), None);
        assert_eq!(s.by_token(&other), Some(8));
    }

    #[test]
    fn expiry_takes_the_grace_period() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Sessions::default();
        for player in 1..=4 {
            s.create(player, player as u32, None, c(player as usize));
            s.detach(player, t0 + ms(player * 10));
        }
        let mut out = Vec::new();
        // At 35 ms with 20 ms of grace: player 1 (detached at 10 ms) is out of time.
        s.expired(t0 + ms(35), ms(20), &mut out);
        assert_eq!(out, vec![1]);
        let mut all: Vec<_> = s.detached_since().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=4).map(|p| (t0 + ms(p * 10), p)).collect::<Vec<_>>()
        );
    }
}
