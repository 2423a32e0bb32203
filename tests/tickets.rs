//! Authentication tickets (`--ticket-secret-file`): a bad ticket on the upgrade gets 401 with the reason;
//! without one there, the first `Hello` or `Watch` must bring a valid one (else close 4004 with the reason);
//! the ticket's player id reaches the game; a resume token needs no ticket, but a ticket of another account
//! than the session's is refused (4004); a ticket expiring beyond `--ticket-lifetime-max-s` is refused like a
//! bad one; tickets never show in /metrics.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Client, TestServer};
use tickcast::proto::{self, ClientMsg, ServerMsg};
use tickcast::sim::arena::{Arena, ArenaEntity, ArenaInput};
use tickcast::sim::{Game, Joining, PlayerId, RoomControl};
use tickcast::sync::World;
use tickcast::ticket;

const SECRET: &str = "a shared secret of at least 16 bytes";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A secret file in a fresh directory, removed when dropped.
struct SecretFile(std::path::PathBuf);

impl SecretFile {
    fn new(tag: &str) -> SecretFile {
        let dir = std::env::temp_dir().join(format!("tickcast-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), format!("{SECRET}\n")).unwrap();
        SecretFile(dir)
    }

    fn path(&self) -> std::path::PathBuf {
        self.0.join("secret")
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The arena, recording the account each joining player's ticket named.
struct Recording {
    arena: Arena,
    accounts: Arc<Mutex<Vec<Option<String>>>>,
}

impl Game for Recording {
    type Input = ArenaInput;
    type State = ArenaEntity;

    fn join(
        &mut self,
        world: &mut World<ArenaEntity>,
        player: PlayerId,
        joining: Joining<'_>,
    ) -> Option<u32> {
        let account = joining.account.map(str::to_string);
        self.accounts.lock().unwrap().push(account);
        self.arena.join(world, player, joining)
    }

    fn leave(&mut self, world: &mut World<ArenaEntity>, player: PlayerId) {
        self.arena.leave(world, player)
    }

    fn input(&mut self, player: PlayerId, seq: u32, input: ArenaInput) {
        self.arena.input(player, seq, input)
    }

    fn step(
        &mut self,
        world: &mut World<ArenaEntity>,
        tick: u64,
        dt_s: f32,
        room: &mut RoomControl,
    ) {
        self.arena.step(world, tick, dt_s, room)
    }
}

fn ticket_server(secret: &SecretFile) -> (TestServer, Arc<Mutex<Vec<Option<String>>>>) {
    let accounts = Arc::new(Mutex::new(Vec::new()));
    let recorded = accounts.clone();
    let path = secret.path();
    let server = TestServer::start_game(
        |c| {
            c.ticket_secret_file = Some(path);
            c.tick_hz = 50;
            c.handshake_timeout_ms = 300;
        },
        move |world, cfg| Recording {
            arena: Arena::new(world, cfg.npcs, cfg.seed),
            accounts: recorded.clone(),
        },
    );
    (server, accounts)
}

fn hello(ticket: &str) -> ClientMsg<ArenaInput> {
    ClientMsg::Hello {
        protocol: proto::PROTOCOL_VERSION,
        name: "p".into(),
        ticket: ticket.into(),
        resume: None,
    }
}

#[test]
fn a_bad_ticket_on_the_upgrade_gets_401_with_the_reason_and_is_never_shown() {
    let secret = SecretFile::new("tickets-upgrade");
    let (server, accounts) = ticket_server(&secret);
    let now = now_s();

    let forged = ticket::issue(b"not the shared secret at all", "mallory", now + 60);
    let (status, body) = server.upgrade_answer(&format!("/ws?ticket={forged}"));
    assert_eq!(status, 401);
    assert!(body.contains("invalid ticket signature"), "{body}");

    let expired = ticket::issue(SECRET.as_bytes(), "alice", now - 1);
    let (status, body) = server.upgrade_answer(&format!("/ws?ticket={expired}"));
    assert_eq!(status, 401);
    assert!(body.contains("ticket expired"), "{body}");

    let (status, body) = server.upgrade_answer("/ws?ticket=junk");
    assert_eq!(status, 401);
    assert!(body.contains("malformed ticket"), "{body}");

    // A valid one upgrades, and its player id is the account the game is given on Hello.
    let valid = ticket::issue(SECRET.as_bytes(), "alice", now + 60);
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(common::WAIT_MAX)).unwrap();
    let url = format!("ws://{}/ws?ticket={valid}", server.addr);
    let stream = common::ClientStream::from(stream);
    let (ws, response) = tungstenite::client(url, stream).expect("a valid ticket upgrades");
    assert_eq!(response.status(), 101);
    let mut alice = Client::from_upgraded(ws);
    alice.send(&hello(""));
    alice.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    assert_eq!(*accounts.lock().unwrap(), vec![Some("alice".to_string())]);

    let (_, metrics) = server.get("/metrics");
    assert!(
        !metrics.contains(&valid) && !metrics.contains("alice"),
        "tickets stay out of metrics"
    );
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"unauthorized\"}"),
        3
    );
}

#[test]
fn without_one_on_the_upgrade_the_first_message_must_bring_a_valid_ticket() {
    let secret = SecretFile::new("tickets-message");
    let (server, accounts) = ticket_server(&secret);
    let now = now_s();

    let mut none = Client::connect(&server);
    none.send(&hello(""));
    let (code, reason) = none.expect_close();
    assert_eq!(code, 4004, "{reason}");
    assert!(reason.contains("a ticket is required"), "{reason}");

    let mut expired = Client::connect(&server);
    expired.send(&ClientMsg::Watch {
        protocol: proto::PROTOCOL_VERSION,
        ticket: ticket::issue(SECRET.as_bytes(), "bob", now - 1),
    });
    let (code, reason) = expired.expect_close();
    assert_eq!((code, reason.as_str()), (4004, "ticket expired"));

    let mut forged = Client::connect(&server);
    forged.send(&hello(&ticket::issue(
        b"a guess at the secret",
        "bob",
        now + 60,
    )));
    let (code, reason) = forged.expect_close();
    assert_eq!((code, reason.as_str()), (4004, "invalid ticket signature"));

    let mut early = Client::connect(&server);
    early.input(1, 0);
    let (code, reason) = early.expect_close();
    assert_eq!((code, reason.as_str()), (1008, "Input before Hello"));

    // Silence: closed when the handshake time is up.
    let mut silent = Client::connect(&server);
    let (code, reason) = silent.expect_close();
    assert_eq!((code, reason.as_str()), (4004, "no ticket within 300 ms"));

    // A spectator with a ticket watches; a player with one plays, as the ticket's account.
    let mut watcher = Client::connect(&server);
    watcher.send(&ClientMsg::Watch {
        protocol: proto::PROTOCOL_VERSION,
        ticket: ticket::issue(SECRET.as_bytes(), "carol", now + 60),
    });
    watcher.verify_checksums(1);
    let mut dave = Client::connect(&server);
    dave.send(&hello(&ticket::issue(SECRET.as_bytes(), "dave", now + 60)));
    dave.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    let entity = dave.entity.unwrap();
    watcher.wait_for(|m| m.get(entity).is_some());
    assert_eq!(*accounts.lock().unwrap(), vec![Some("dave".to_string())]);

    // A resume that brings a bad ticket is refused, even with a live token.
    let mut forged_resume = Client::connect(&server);
    forged_resume.send(&ClientMsg::Hello {
        protocol: proto::PROTOCOL_VERSION,
        name: "d".into(),
        ticket: ticket::issue(b"a guess at the secret", "dave", now + 60),
        resume: Some(proto::Resume {
            token: dave.resume_token.unwrap(),
            tick: 0,
        }),
    });
    let (code, reason) = forged_resume.expect_close();
    assert_eq!((code, reason.as_str()), (4004, "invalid ticket signature"));

    // The resume token stands for the player on its own: no ticket needed to come back.
    dave.verify_checksums(1);
    let dave = dave.reconnect_resuming(&server);
    assert_eq!((dave.resumed, dave.entity), (Some(true), Some(entity)));
    assert_eq!(accounts.lock().unwrap().len(), 1, "a resume is not a join");
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"unauthorized\"}"),
        5
    );
}

#[test]
fn a_too_short_secret_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("tickcast-short-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, "short").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["--listen", "127.0.0.1:0", "--ticket-secret-file"])
        .arg(&secret_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 16 bytes"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

const OTHER_ACCOUNT: &str = "ticket is for another account than this session";

/// A spectator with a ticket of its own, following every tick: the honest client of the attack tests.
fn honest_watcher(server: &TestServer) -> Client {
    let mut watcher = Client::connect(server);
    watcher.send(&ClientMsg::Watch {
        protocol: proto::PROTOCOL_VERSION,
        ticket: ticket::issue(SECRET.as_bytes(), "carol", now_s() + 60),
    });
    watcher.verify_checksums(1);
    watcher
}

#[test]
fn a_resume_with_another_accounts_ticket_is_refused_4004_and_the_owner_keeps_its_player() {
    let secret = SecretFile::new("tickets-account");
    let (server, accounts) = ticket_server(&secret);
    let now = now_s();
    let alice_ticket = ticket::issue(SECRET.as_bytes(), "alice", now + 60);
    let mallory_ticket = ticket::issue(SECRET.as_bytes(), "mallory", now + 60);
    let mut watcher = honest_watcher(&server);
    let mut alice = Client::connect(&server);
    alice.send(&hello(&alice_ticket));
    alice.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    let entity = alice.entity.unwrap();
    alice.verify_checksums(1);
    // Mallory has a valid ticket of her own and has seen Alice's resume token.
    let token = alice.resume_token.unwrap();

    // In Hello, next to the token.
    let mut in_hello = Client::connect(&server);
    in_hello.hello_resuming(token, 0, &mallory_ticket);
    assert_eq!(in_hello.expect_close(), (4004, OTHER_ACCOUNT.to_string()));
    alice.verify_checksums(1);
    // On the upgrade URL, which makes Mallory the connection's account before Hello.
    let mut on_upgrade = Client::connect_with_ticket(&server, &mallory_ticket);
    on_upgrade.hello_resuming(token, 0, "");
    assert_eq!(on_upgrade.expect_close(), (4004, OTHER_ACCOUNT.to_string()));
    alice.verify_checksums(1);
    // From a spectator that watched with her ticket.
    let mut spectator = Client::connect(&server);
    spectator.send(&ClientMsg::Watch {
        protocol: proto::PROTOCOL_VERSION,
        ticket: mallory_ticket.clone(),
    });
    spectator.verify_checksums(1);
    spectator.hello_resuming(token, 0, "");
    assert_eq!(spectator.expect_close(), (4004, OTHER_ACCOUNT.to_string()));
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"unauthorized\"}"),
        3
    );

    // Alice was never taken over (no 4005), kept every tick, and is still the only player.
    alice.verify_checksums(1);
    alice.assert_every_tick();
    watcher.verify_checksums(1);
    watcher.assert_every_tick();
    assert_eq!(server.metric("tickcast_players"), 1);
    assert_eq!(server.metric("tickcast_resumes_total"), 0);
    assert_eq!(server.get("/healthz").0, 200);

    // Her token still resumes her: with her own ticket on the upgrade, then in Hello, then with none.
    for (url_ticket, hello_ticket) in [
        (Some(alice_ticket.as_str()), ""),
        (None, alice_ticket.as_str()),
        (None, ""),
    ] {
        alice
            .ws
            .get_ref()
            .shutdown(std::net::Shutdown::Both)
            .unwrap();
        alice = alice.reconnect_resuming_with(&server, url_ticket, hello_ticket);
        assert_eq!((alice.resumed, alice.entity), (Some(true), Some(entity)));
        alice.verify_checksums(1);
    }
    assert_eq!(server.metric("tickcast_resumes_total"), 3);
    assert_eq!(*accounts.lock().unwrap(), vec![Some("alice".to_string())]);
    watcher.assert_every_tick();
}

#[test]
fn a_ticket_expiring_beyond_the_lifetime_bound_gets_401_on_the_upgrade_and_4004_in_hello() {
    let secret = SecretFile::new("tickets-lifetime");
    let (server, accounts) = ticket_server(&secret);
    let now = now_s();
    let why = "ticket expires too far ahead: at most 300 s";
    let mut watcher = honest_watcher(&server);

    for expires in [now + 3_600, 1 << 63, u64::MAX] {
        let long = ticket::issue(SECRET.as_bytes(), "mallory", expires);
        let (status, body) = server.upgrade_answer(&format!("/ws?ticket={long}"));
        assert_eq!(status, 401, "expires {expires}: {body}");
        assert!(body.contains(why), "{body}");
        let mut in_hello = Client::connect(&server);
        in_hello.send(&hello(&long));
        assert_eq!(in_hello.expect_close(), (4004, why.to_string()));
        watcher.verify_checksums(1);
    }
    // A forged long-lived one is called forged, not told about the bound.
    let forged = ticket::issue(b"a guess at the secret", "mallory", 1 << 63);
    let (status, body) = server.upgrade_answer(&format!("/ws?ticket={forged}"));
    assert_eq!(status, 401);
    assert!(body.contains("invalid ticket signature"), "{body}");
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"unauthorized\"}"),
        7
    );

    // One within the bound plays.
    let mut bob = Client::connect(&server);
    bob.send(&hello(&ticket::issue(SECRET.as_bytes(), "bob", now + 200)));
    bob.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    bob.verify_checksums(1);
    assert_eq!(*accounts.lock().unwrap(), vec![Some("bob".to_string())]);
    watcher.verify_checksums(1);
    watcher.assert_every_tick();
    assert_eq!(server.get("/healthz").0, 200);
}

#[test]
fn a_room_bound_ticket_admits_to_its_room_only_and_alone_may_create_it_when_creation_needs_a_ticket(
) {
    let secret = SecretFile::new("rooms");
    let path = secret.path();
    let server = TestServer::start(|c| {
        c.ticket_secret_file = Some(path);
        c.room_creation = tickcast::config::RoomCreation::Ticket;
        c.handshake_timeout_ms = 300;
        c.npcs = 0;
    });
    let for_red = ticket::issue_for_room(SECRET.as_bytes(), "ann", "red", now_s() + 60);
    let anywhere = ticket::issue(SECRET.as_bytes(), "bob", now_s() + 60);
    // Presented at another room: 401 on the upgrade, with the room it is for.
    let (status, body) = server.upgrade_answer(&format!("/ws/blue?ticket={for_red}"));
    assert_eq!(
        (status, body.trim_end()),
        (401, "401 Unauthorized: ticket is for room red")
    );
    // An unbound ticket may not create a room when creation needs a ticket bound to it.
    let (status, body) = server.upgrade_answer(&format!("/ws/blue?ticket={anywhere}"));
    assert_eq!(
        (status, body.trim_end()),
        (404, "404 Not Found: no room named blue")
    );
    // Its own room: created by it.
    let mut ann = Client::connect_at(&server, &format!("/ws/red?ticket={for_red}"));
    assert_eq!(ann.room, "red");
    ann.hello("ann");
    // In a message, at a room that exists (the default one): 4004 with the same reason.
    let mut elsewhere = Client::connect(&server);
    elsewhere.send(&hello(&for_red));
    assert_eq!(
        elsewhere.expect_close(),
        (4004, "ticket is for room red".into())
    );
    // An unbound ticket joins any room that exists.
    let mut bob = Client::connect_at(&server, &format!("/ws/red?ticket={anywhere}"));
    bob.hello("bob");
    bob.wait_for(|m| m.len() == 2);
}
