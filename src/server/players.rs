//! Who a connection is: `Hello` (join, or resume a player whose connection dropped), `Watch` (spectate),
//! the ticket check when tickets are required, and the end of a player (goodbye, grace period over).

use super::sessions::{ConnRef, Link};
use super::*;
use crate::proto::Resume;
use crate::sim::{Joining, PlayerId};
use crate::ticket::TicketError;

impl<G: Game, C: Clock> Server<G, C> {
    /// `Hello`: resume the player `resume` names if its session is alive, else join a new one.
    pub(super) fn hello(&mut self, k: usize, name: &str, ticket: &str, resume: Option<Resume>) {
        if matches!(self.conns[k].role(), Some(Role::Player(_))) {
            return self.close(k, Close::HelloTwice);
        }
        // A live token is a credential of its own: it was issued to a connection that passed the ticket
        // check, and tickets are short-lived while a resume may come later. A ticket it brings must be valid
        // and of the session's account, and so must one the connection already holds (from `?ticket=` or a
        // `Watch`): a ticket never lends its account to another account's token.
        let live = resume
            .as_ref()
            .and_then(|r| Some((self.room.sessions.by_token(&r.token)?, r.tick)));
        let checked = match live {
            Some((player, _)) => self
                .take_ticket(k, ticket)
                .and_then(|()| self.same_account(k, player)),
            None => self.authenticate(k, ticket),
        };
        if let Err(e) = checked {
            return self.close(k, Close::Ticket(e));
        }
        match live {
            Some((player, tick)) => self.resume(k, player, tick),
            None => {
                self.metrics.resumes_refused += u64::from(resume.is_some());
                self.join(k, name)
            }
        }
    }

    /// `Watch`: updates from the next tick on, control of nothing.
    pub(super) fn watch(&mut self, k: usize, ticket: &str) {
        if self.conns[k].role() != Some(Role::Pending) {
            return self.close(k, Close::WatchAfterRole);
        }
        match self.authenticate(k, ticket) {
            Ok(()) => {
                self.ws_mut(k).role = Role::Spectator;
                self.enter_room(k);
            }
            Err(e) => self.close(k, Close::Ticket(e)),
        }
    }

    /// Takes the ticket a message brought (`take_ticket`), then requires that the connection holds one,
    /// from this message or an earlier one or its upgrade, when tickets are in use.
    fn authenticate(&mut self, k: usize, ticket: &str) -> Result<(), TicketError> {
        self.take_ticket(k, ticket)?;
        let has_account = self.conns[k].ws().is_some_and(|ws| ws.account.is_some());
        match self.ticket_secret.is_none() || has_account {
            true => Ok(()),
            false => Err(TicketError::Missing),
        }
    }

    /// Checks the ticket a message brought (empty: none) and makes its player id the connection's
    /// account. Without `--ticket-secret-file`, tickets are ignored.
    fn take_ticket(&mut self, k: usize, ticket: &str) -> Result<(), TicketError> {
        if ticket.is_empty() {
            return Ok(());
        }
        if let Some(account) = self.check_ticket(ticket)? {
            self.ws_mut(k).account = Some(account);
        }
        Ok(())
    }

    /// A connection that holds no account (no ticket: the token alone decides) or the account `player`'s
    /// session was created with may resume it. Without tickets neither side has an account.
    fn same_account(&self, k: usize, player: PlayerId) -> Result<(), TicketError> {
        let Some(account) = self.conns[k].ws().and_then(|ws| ws.account.as_deref()) else {
            return Ok(());
        };
        let session = self.room.sessions.get(player).expect("live session");
        match session.account.as_deref() == Some(account) {
            true => Ok(()),
            false => Err(TicketError::OtherAccount),
        }
    }

    fn join(&mut self, k: usize, name: &str) {
        let player = self.conns[k].id;
        let ws = self.conns[k].ws().expect("Hello after the upgrade");
        let joining = Joining {
            name,
            account: ws.account.as_deref(),
        };
        let Some(entity) = self.room.game.join(&mut self.room.world, player, joining) else {
            return self.close(k, Close::WorldFull);
        };
        let account = self.conns[k].ws().and_then(|ws| ws.account.clone());
        let resume_token = self
            .room
            .sessions
            .create(player, entity, account, self.conn_ref(k));
        self.ws_mut(k).role = Role::Player(player);
        self.enter_room(k);
        self.send_joined(k, entity, resume_token, false);
    }

    /// Takes `player` back on connection `k`, with a new resume token in its `Joined` (the one it came with
    /// resumes nothing any more). The update that follows starts from `tick`, the last one the client
    /// applied, when the history still reaches it; else it is a `Full`. Tick 0 means "nothing": no update is
    /// ever sent for tick 0, so a client with an empty mirror gets a `Full`.
    fn resume(&mut self, k: usize, player: PlayerId, tick: u64) {
        match self.room.sessions.attach(player, self.conn_ref(k)) {
            Link::Detached(_) => self.room.game.resumed(&mut self.room.world, player),
            // The old connection has not noticed it is dead (or the client opened a second one): the
            // newer wins. The old one no longer plays, so its end does not touch the session.
            Link::Attached(old) => {
                let live = self.conns.get(old.key).is_some_and(|c| c.id == old.id);
                debug_assert!(live, "a reaped connection detaches its player");
                if live {
                    self.ws_mut(old.key).role = Role::Pending;
                    self.close(old.key, Close::Replaced);
                }
            }
        }
        self.metrics.resumes += 1;
        let (world_tick, in_history) =
            (self.room.world.tick(), self.room.world.can_delta_from(tick));
        let ws = self.ws_mut(k);
        ws.role = Role::Player(player);
        self.enter_room(k);
        let ws = self.ws_mut(k);
        if ws.baseline.is_none() && (1..=world_tick).contains(&tick) && in_history {
            ws.baseline = Some(tick);
        }
        let token = self.room.sessions.rotate(player);
        let entity = self.room.sessions.get(player).expect("live session").entity;
        self.send_joined(k, entity, token, true);
    }

    fn send_joined(
        &mut self,
        k: usize,
        entity: u32,
        resume_token: proto::ResumeToken,
        resumed: bool,
    ) {
        self.scratch.clear();
        let joined = ServerMsg::<(), ()>::Joined {
            entity,
            resume_token,
            resumed,
        };
        append_message(&mut self.scratch, &joined);
        self.send_scratch(k);
    }

    /// The client closed with 1000: its player leaves now, before the connection is gone, so its token
    /// resumes nothing from this moment on.
    pub(super) fn goodbye(&mut self, k: usize) {
        let ws = self.ws_mut(k);
        if let Role::Player(player) = std::mem::replace(&mut ws.role, Role::Pending) {
            self.end_player(player);
        }
    }

    /// A player's connection was reaped. It waits to be resumed, unless resuming is off or the server is
    /// shutting down.
    pub(super) fn player_gone(&mut self, player: PlayerId) {
        if self.drain_deadline.is_some() || self.cfg.resume_grace_ms == 0 {
            return self.end_player(player);
        }
        self.room.sessions.detach(player, self.now);
        self.room.game.detached(&mut self.room.world, player);
    }

    /// Players detached longer than the grace period, or beyond `--detached-max`, leave. Once per tick.
    pub(super) fn expire_detached(&mut self) {
        let grace = Duration::from_millis(self.cfg.resume_grace_ms);
        let mut expired = std::mem::take(&mut self.room.expired);
        self.room
            .sessions
            .expired(self.now, grace, self.cfg.detached_max, &mut expired);
        for &player in &expired {
            self.metrics.sessions_expired += 1;
            self.end_player(player);
        }
        self.room.expired = expired;
    }

    fn end_player(&mut self, player: PlayerId) {
        self.room.sessions.remove(player);
        self.room.game.leave(&mut self.room.world, player);
    }

    /// Connection `k` said who it is: from the next tick on it is sent the room's updates.
    fn enter_room(&mut self, k: usize) {
        let member = self.conn_ref(k);
        self.room.add_member(member, &mut self.conns[k]);
    }

    fn conn_ref(&self, k: usize) -> ConnRef {
        ConnRef {
            key: k,
            id: self.conns[k].id,
        }
    }

    fn ws_mut(&mut self, k: usize) -> &mut WsState {
        match &mut self.conns[k].phase {
            Phase::Ws(ws) => ws,
            Phase::Http { .. } => unreachable!("a message before the upgrade"),
        }
    }
}
