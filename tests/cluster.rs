//! Cluster mode against a real `redis-server` on a free loopback port (installed by scripts/test.sh):
//! a process registers itself and claims its rooms, releases them, survives Redis being down at start and
//! mid-game, loses a room another process holds (4009), and leaves the directory after a drain.

mod common;

use std::time::{Duration, Instant};

use common::redis::{cluster_secret, free_port, spawn_binary, url, Redis};
use common::{Client, Msg, TestServer, WAIT_MAX};

/// A server in cluster `tickcast` as process `p1`, its directory at `redis_url`.
fn clustered(redis_url: String, adjust: impl FnOnce(&mut common::TestConfig)) -> TestServer {
    TestServer::start(move |c| {
        c.npcs = 0;
        c.redis = Some(redis_url);
        c.public_url = Some("ws://game-1.example:7000".into());
        c.process_id = Some("p1".into());
        c.cluster_secret_file = Some(cluster_secret());
        c.cluster_ttl_ms = 1_000;
        adjust(c);
    })
}

/// Waits (bounded) until `/healthz` answers 200 with a body for which `done` holds.
fn wait_health(server: &TestServer, done: impl Fn(&str) -> bool) {
    let t0 = Instant::now();
    loop {
        let (status, body) = server.get("/healthz");
        if status == 200 && done(&body) {
            return;
        }
        assert!(t0.elapsed() < WAIT_MAX, "/healthz: {status} {body:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_process_registers_itself_claims_the_rooms_it_creates_and_releases_them() {
    let redis = Redis::start();
    let server = clustered(redis.url(), |c| c.room_idle_ms = 100);
    redis.wait_for("tickcast:process:p1", |v| {
        v.is_some_and(|v| {
            v.contains("\"url\":\"ws://game-1.example:7000\"") && v.contains("\"draining\":false")
        })
    });
    let mut c = Client::connect_at(&server, "/ws/arena-1");
    c.hello("a");
    redis.wait_for("tickcast:room:arena-1", |v| v == Some("p1"));
    assert_eq!(
        redis.get("tickcast:room:default"),
        None,
        "the default room is the process's own"
    );
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg("tickcast:processes")
        .arg("p1")
        .query(&mut redis.con().unwrap())
        .unwrap();
    assert!(score.is_some(), "p1 is in the process set");
    wait_health(&server, |body| body == "ok\n");
    // Its player leaves: the room is disposed after --room-idle-ms and its name given back.
    c.ws.close(None).unwrap();
    redis.wait_for("tickcast:room:arena-1", |v| v.is_none());
    assert_eq!(server.metric("tickcast_cluster_redis_up"), 1);
}

#[test]
fn with_redis_down_at_start_the_process_serves_degraded_and_registers_when_redis_comes() {
    let port = free_port();
    let server = clustered(url(port), |_| {});
    wait_health(&server, |body| {
        body.starts_with("ok, degraded: redis unreachable")
    });
    let mut c = Client::connect_at(&server, "/ws/early");
    c.hello("a");
    c.wait_for(|m| m.len() == 1);
    let redis = Redis::start_on(port);
    redis.wait_for("tickcast:process:p1", |v| v.is_some());
    redis.wait_for("tickcast:room:early", |v| v == Some("p1"));
    wait_health(&server, |body| body == "ok\n");
}

#[test]
fn with_redis_gone_mid_game_rooms_play_on_and_are_claimed_again_when_it_returns() {
    let redis = Redis::start();
    let port = redis.port;
    let server = clustered(redis.url(), |_| {});
    let mut c = Client::connect_at(&server, "/ws/steady");
    c.hello("a");
    c.wait_for(|m| m.len() == 1);
    redis.wait_for("tickcast:room:steady", |v| v == Some("p1"));
    drop(redis);
    wait_health(&server, |body| body.starts_with("ok, degraded"));
    assert_eq!(server.metric("tickcast_cluster_redis_up"), 0);
    // The room ticks on: every tick still reaches the player.
    let from = c.ticks.len();
    let until = c.mirror.tick().unwrap() + 20;
    c.recv_until(|m| matches!(m, Msg::Delta { tick, .. } if *tick >= until));
    c.assert_every_tick_since(from);
    // Redis is back, empty: the process registers again and claims its room again.
    let redis = Redis::start_on(port);
    redis.wait_for("tickcast:process:p1", |v| v.is_some());
    redis.wait_for("tickcast:room:steady", |v| v == Some("p1"));
    wait_health(&server, |body| body == "ok\n");
}

#[test]
fn a_room_another_process_holds_is_closed_with_4009() {
    let redis = Redis::start();
    redis::cmd("SET")
        .arg("tickcast:room:taken")
        .arg("p2")
        .arg("PX")
        .arg(60_000)
        .query::<()>(&mut redis.con().unwrap())
        .unwrap();
    let server = clustered(redis.url(), |_| {});
    // Closed whether or not it said Hello yet (the claim's answer may come first).
    let mut c = Client::connect_at(&server, "/ws/taken");
    let (code, reason) = c.expect_close();
    assert_eq!(
        (code, reason.as_str()),
        (
            4009,
            "room taken is hosted by another process: ask the matchmaker again"
        )
    );
    assert_eq!(
        redis.get("tickcast:room:taken").as_deref(),
        Some("p2"),
        "the owner keeps it"
    );
    assert_eq!(server.metric("tickcast_cluster_claims_lost_total"), 1);
}

#[test]
fn a_drained_process_leaves_the_directory_and_gives_its_rooms_back() {
    let redis = Redis::start();
    let server = clustered(redis.url(), |_| {});
    redis.wait_for("tickcast:process:p1", |v| v.is_some());
    let mut c = Client::connect_at(&server, "/ws/handed-back");
    c.hello("a");
    redis.wait_for("tickcast:room:handed-back", |v| v == Some("p1"));
    server.stop();
    assert_eq!(redis.get("tickcast:process:p1"), None);
    assert_eq!(
        redis.get("tickcast:room:handed-back"),
        None,
        "another process may create it at once"
    );
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg("tickcast:processes")
        .arg("p1")
        .query(&mut redis.con().unwrap())
        .unwrap();
    assert_eq!(score, None);
}

#[test]
fn cluster_mode_needs_a_public_url() {
    let cfg = tickcast::Config {
        redis: Some("redis://127.0.0.1:1/".into()),
        ..tickcast::Config::default()
    };
    let why = cfg.validate().unwrap_err();
    assert!(why.contains("--redis needs --public-url"), "{why}");
}

#[test]
fn a_process_killed_with_sigkill_leaves_the_directory_within_the_ttl() {
    let redis = Redis::start();
    let (mut child, addr) = spawn_binary(&redis.url(), "p2", &["--cluster-ttl-ms", "1000"]);
    let server = TestServer::external(addr);
    let mut c = Client::connect_at(&server, "/ws/doomed");
    c.hello("a");
    redis.wait_for("tickcast:room:doomed", |v| v == Some("p2"));
    redis.wait_for("tickcast:process:p2", |v| v.is_some());
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Nobody refreshes them now: both expire (1 s here; --cluster-ttl-ms).
    redis.wait_for("tickcast:process:p2", |v| v.is_none());
    redis.wait_for("tickcast:room:doomed", |v| v.is_none());
}

#[test]
fn two_processes_creating_one_room_at_once_end_with_one_room() {
    let redis = Redis::start();
    let one = clustered(redis.url(), |_| {});
    let two = clustered(redis.url(), |c| c.process_id = Some("p2".into()));
    // Both upgrades create the room in their process before either claim is answered.
    let mut a = Client::connect_at(&one, "/ws/contested");
    let mut b = Client::connect_at(&two, "/ws/contested");
    redis.wait_for("tickcast:room:contested", |v| v.is_some());
    let owner = redis.get("tickcast:room:contested").unwrap();
    let (winner, mut loser, loser_server) = match owner.as_str() {
        "p1" => (&mut a, b, &two),
        "p2" => (&mut b, a, &one),
        other => panic!("owned by {other}"),
    };
    assert_eq!(
        loser.expect_close().0,
        4009,
        "the copy the directory refused is closed"
    );
    assert_eq!(loser_server.get("/rooms/contested").0, 404);
    // The winner's room plays on.
    winner.hello("w");
    winner.wait_for(|m| m.len() == 1);
    let until = winner.mirror.tick().unwrap() + 10;
    winner.recv_until(|m| matches!(m, Msg::Delta { tick, .. } if *tick >= until));
}

#[test]
fn a_redis_that_refuses_us_is_reported_as_degraded() {
    let port = free_port();
    let _redis = Redis::spawn(port, &["--requirepass", "secret"]);
    // Connecting works; PING answers NOAUTH: that is no Redis to write to.
    let server = clustered(url(port), |_| {});
    wait_health(&server, |body| body == "ok, degraded: redis unreachable\n");
    assert_eq!(server.metric("tickcast_cluster_redis_up"), 0);
}
