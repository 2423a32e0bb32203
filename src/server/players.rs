//! Who a connection is in its room: `Hello` (join, or resume a player whose connection dropped), `Watch`
//! (spectate), the room's caps, the ticket check when tickets are required, and the end of a player
//! (goodbye, grace period over, kicked by the game).

use super::sessions::{ConnRef, Link};
use super::*;
use crate::proto::Resume;
use crate::sim::{Joining, PlayerId};
use crate::ticket::TicketError;

impl<G: Game, C: Clock> Server<G, C> {
    /// `Hello`: resume the player `resume` names if its session in this room is alive, else join a new
    /// one.
    pub(super) fn hello(
        &mut self,
        k: usize,
        name: &str,
        ticket: &str,
        resume: Option<Resume>,
    ) -> Flow {
        if matches!(self.net.conns[k].role(), Some(Role::Player(_))) {
            return self.close(k, Close::HelloTwice);
        }
        let r = self.room_of(k);
        // A live token is a credential of its own: it was issued to a connection that passed the ticket
        // check, and tickets are short-lived while a resume may come later. A ticket it brings must be valid
        // and of the session's account, and so must one the connection already holds (from `?ticket=` or a
        // `Watch`): a ticket never lends its account to another account's token.
        let sessions = &self.rooms.get(r).sessions;
        let live = resume
            .as_ref()
            .and_then(|resume| Some((sessions.by_token(&resume.token)?, resume.tick)));
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

    /// `Watch`: updates from the next tick on, control of nothing; refused past the room's spectator cap.
    pub(super) fn watch(&mut self, k: usize, ticket: &str) -> Flow {
        if self.net.conns[k].role() != Some(Role::Pending) {
            return self.close(k, Close::WatchAfterRole);
        }
        if let Err(e) = self.authenticate(k, ticket) {
            return self.close(k, Close::Ticket(e));
        }
        let room = self.rooms.get(self.room_of(k));
        if let Some(max) = room.max_spectators.filter(|&max| room.spectators >= max) {
            return self.close(k, Close::RoomFullOfSpectators(max));
        }
        self.set_role(k, Role::Spectator);
        Flow::Go
    }

    /// Takes the ticket a message brought (`take_ticket`), then requires that the connection holds one,
    /// from this message or an earlier one or its upgrade, when tickets are in use.
    fn authenticate(&mut self, k: usize, ticket: &str) -> Result<(), TicketError> {
        self.take_ticket(k, ticket)?;
        let has_account = self.net.conns[k]
            .ws()
            .is_some_and(|ws| ws.account.is_some());
        match self.ticket_secret.is_none() || has_account {
            true => Ok(()),
            false => Err(TicketError::Missing),
        }
    }

    /// Checks the ticket a message brought (empty: none), refuses one bound to another room, and makes its
    /// player id the connection's account. Without `--ticket-secret-file`, tickets are ignored.
    fn take_ticket(&mut self, k: usize, ticket: &str) -> Result<(), TicketError> {
        if ticket.is_empty() {
            return Ok(());
        }
        if let Some(admit) = self.check_ticket(ticket)? {
            let room = &self.rooms.get(self.room_of(k)).name;
            if let Some(bound) = admit.room.filter(|bound| bound != room) {
                return Err(TicketError::OtherRoom { room: bound });
            }
            self.set_account(k, admit.account);
        }
        Ok(())
    }

    /// A connection that holds no account (no ticket: the token alone decides) or the account `player`'s
    /// session was created with may resume it. Without tickets neither side has an account.
    fn same_account(&self, k: usize, player: PlayerId) -> Result<(), TicketError> {
        let Some(account) = self.net.conns[k].ws().and_then(|ws| ws.account.as_deref()) else {
            return Ok(());
        };
        let room = self.rooms.get(self.room_of(k));
        let session = room.sessions.get(player).expect("live session");
        match session.account.as_deref() == Some(account) {
            true => Ok(()),
            false => Err(TicketError::OtherAccount),
        }
    }

    fn join(&mut self, k: usize, name: &str) -> Flow {
        let player = self.net.conns[k].id;
        let r = self.room_of(k);
        let room = self.rooms.get_mut(r);
        if let Some(max) = room.max_players.filter(|&max| room.players() >= max) {
            return self.close(k, Close::RoomFullOfPlayers(max));
        }
        let ws = self.net.conns[k].ws().expect("Hello after the upgrade");
        let joining = Joining {
            name,
            account: ws.account.as_deref(),
        };
        let Some(entity) = room.game.join(&mut room.world, player, joining) else {
            return self.close(k, Close::WorldFull);
        };
        let account = ws.account.clone();
        let conn = self.conn_ref(k);
        let resume_token = self
            .rooms
            .get_mut(r)
            .sessions
            .create(player, entity, account, conn);
        self.set_role(k, Role::Player(player));
        self.send_joined(k, entity, resume_token, false)
    }

    /// Takes `player` back on connection `k`, with a new resume token in its `Joined` (the one it came with
    /// resumes nothing any more). The update that follows starts from `tick`, the last one the client
    /// applied, when the history still reaches it; else it is a `Full`. Tick 0 means "nothing": no update is
    /// ever sent for tick 0, so a client with an empty mirror gets a `Full`.
    fn resume(&mut self, k: usize, player: PlayerId, tick: u64) -> Flow {
        let r = self.room_of(k);
        let conn = self.conn_ref(k);
        let room = self.rooms.get_mut(r);
        match room.sessions.attach(player, conn) {
            Link::Detached(_) => room.game.resumed(&mut room.world, player),
            // The old connection has not noticed it is dead (or the client opened a second one): the
            // newer wins. The old one no longer plays, so its end does not touch the session.
            Link::Attached(old) => {
                let live = self.net.conns.get(old.key).is_some_and(|c| c.id == old.id);
                debug_assert!(live, "a reaped connection detaches its player");
                if live {
                    self.ws_mut(old.key).role = Role::Pending;
                    self.close(old.key, Close::Replaced);
                }
            }
        }
        self.metrics.resumes += 1;
        self.set_role(k, Role::Player(player));
        // A resume by token alone still plays the session's account: messages to it come here now.
        let account = self
            .rooms
            .get(r)
            .sessions
            .get(player)
            .and_then(|s| s.account.clone());
        let has_account = self.net.conns[k]
            .ws()
            .is_some_and(|ws| ws.account.is_some());
        if let (Some(account), false) = (account, has_account) {
            self.set_account(k, account);
        }
        let room = self.rooms.get_mut(r);
        let (world_tick, in_history) = (room.world.tick(), room.world.can_delta_from(tick));
        let token = room.sessions.rotate(player);
        let entity = room.sessions.get(player).expect("live session").entity;
        let ws = self.ws_mut(k);
        if ws.baseline.is_none() && (1..=world_tick).contains(&tick) && in_history {
            ws.baseline = Some(tick);
        }
        self.send_joined(k, entity, token, true)
    }

    fn send_joined(
        &mut self,
        k: usize,
        entity: u32,
        resume_token: proto::ResumeToken,
        resumed: bool,
    ) -> Flow {
        self.net.scratch.clear();
        let joined = ServerMsg::<(), ()>::Joined {
            entity,
            resume_token,
            resumed,
        };
        append_message(&mut self.net.scratch, &joined);
        self.send_scratch(k)
    }

    /// The client closed with 1000: its player leaves now, before the connection is gone, so its token
    /// resumes nothing from this moment on.
    pub(super) fn goodbye(&mut self, k: usize) {
        let Some(Role::Player(player)) = self.net.conns[k].role() else {
            return;
        };
        self.set_role(k, Role::Pending);
        self.end_player(self.room_of(k), player);
    }

    /// A player's connection (in room `r`) was reaped. It waits to be resumed, unless resuming is off or
    /// the server is shutting down.
    pub(super) fn player_gone(&mut self, r: usize, player: PlayerId) {
        if self.drain_deadline.is_some() || self.cfg.resume_grace_ms == 0 {
            return self.end_player(r, player);
        }
        let room = self.rooms.get_mut(r);
        room.sessions.detach(player, self.now);
        room.game.detached(&mut room.world, player);
    }

    /// Room `r`'s players detached longer than the grace period leave. Once per tick of the room
    /// (`--detached-max` is the process's: `cap_detached`).
    pub(super) fn expire_detached(&mut self, r: usize) {
        let grace = Duration::from_millis(self.cfg.resume_grace_ms);
        let room = self.rooms.get_mut(r);
        let mut expired = std::mem::take(&mut room.expired);
        room.sessions.expired(self.now, grace, &mut expired);
        for &player in &expired {
            self.metrics.sessions_expired += 1;
            self.end_player(r, player);
        }
        self.rooms.get_mut(r).expired = expired;
    }

    /// The game kicked `player` of room `r`: its connection, if it has one, is closed with 4008, and the
    /// player leaves. A player the room does not know (gone already) is ignored.
    pub(super) fn kick(&mut self, r: usize, player: PlayerId, why: String) {
        let Some(session) = self.rooms.get(r).sessions.get(player) else {
            return;
        };
        if let Link::Attached(conn) = session.link {
            self.ws_mut(conn.key).role = Role::Pending;
            self.close(conn.key, Close::Kicked(why));
        }
        self.end_player(r, player);
    }

    pub(super) fn end_player(&mut self, r: usize, player: PlayerId) {
        let room = self.rooms.get_mut(r);
        room.sessions.remove(player);
        room.game.leave(&mut room.world, player);
    }

    /// Gives connection `k` its role, keeping its room's spectator count.
    fn set_role(&mut self, k: usize, role: Role) {
        let r = self.room_of(k);
        let old = std::mem::replace(&mut self.ws_mut(k).role, role);
        let room = self.rooms.get_mut(r);
        room.spectators -= usize::from(old == Role::Spectator);
        room.spectators += usize::from(role == Role::Spectator);
        room.entered |= role != Role::Pending;
        room.members_current = None;
    }

    /// The room connection `k` is in: every upgraded connection but the echo is in one.
    pub(super) fn room_of(&self, k: usize) -> usize {
        self.net.conns[k]
            .membership
            .expect("a WebSocket in a room")
            .room
    }

    pub(super) fn conn_ref(&self, k: usize) -> ConnRef {
        ConnRef {
            key: k,
            id: self.net.conns[k].id,
        }
    }

    fn ws_mut(&mut self, k: usize) -> &mut WsState {
        match &mut self.net.conns[k].phase {
            Phase::Ws(ws) => ws,
            Phase::Http { .. } => unreachable!("a message before the upgrade"),
        }
    }
}
