//! The backplane (`src/backplane.rs`) against a real `redis-server` on a free loopback port (installed
//! by scripts/test.sh): two processes' backplanes exchange topic and account messages, once each, in
//! order, never their own; bodies and rates are bounded; Redis down drops and counts, and both threads
//! come back when it does; a loop that does not read keeps at most `INCOMING_MAX` deliveries.
//! Every wait is capped at `WAIT_MAX`; nothing asserts a speed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use tickcast::backplane::{Backplane, BackplaneStats, Delivery, INCOMING_MAX, OUTGOING_MAX};
use tickcast::cluster::Settings;
use tickcast::proto::MESSAGE_BODY_MAX;

use common::redis::{free_port, url, Redis};
use common::WAIT_MAX;

const CLUSTER: &str = "bp";

/// Waits (bounded) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < WAIT_MAX, "waited {WAIT_MAX:?} for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One process's backplane, with the poll its waker wakes (the loop's, in the server).
struct Process {
    bp: Backplane,
    poll: Poll,
}

impl Process {
    fn start(redis_url: String, id: &str, topics: &[&str], rate_per_s: u32) -> Process {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let settings = Settings {
            redis_url,
            cluster: CLUSTER.into(),
            process_id: id.into(),
            public_url: format!("ws://{id}.example:7000"),
            ttl: Duration::from_secs(3),
            seats: Vec::new(),
        };
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let bp = Backplane::start(&settings, &topics, rate_per_s, waker).unwrap();
        Process { bp, poll }
    }

    /// The next delivery, waiting for it (bounded) on the waker's poll.
    fn next(&mut self) -> Delivery {
        let t0 = Instant::now();
        let mut events = Events::with_capacity(4);
        loop {
            if let Some(delivery) = self.bp.try_recv() {
                return delivery;
            }
            assert!(
                t0.elapsed() < WAIT_MAX,
                "no delivery in {WAIT_MAX:?}; {:?}",
                self.bp.stats()
            );
            self.poll
                .poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
        }
    }

    fn stats(&self) -> BackplaneStats {
        self.bp.stats()
    }
}

fn topic(topic: &str, body: &[u8]) -> Delivery {
    Delivery::Topic {
        topic: topic.into(),
        body: body.to_vec(),
    }
}

fn account(account: &str, body: &[u8]) -> Delivery {
    Delivery::Account {
        account: account.into(),
        body: body.to_vec(),
    }
}

fn both_subscribed(a: &Process, b: &Process) {
    wait_until("both subscribed", || a.bp.subscribed() && b.bp.subscribed());
}

#[test]
fn messages_reach_the_other_process_once_in_order_and_never_their_own() {
    let redis = Redis::start();
    let mut a = Process::start(redis.url(), "a", &["chat", "news"], 10_000);
    let mut b = Process::start(redis.url(), "b", &["chat"], 10_000);
    both_subscribed(&a, &b);

    // A topic message from A wakes B's loop and reaches it with its topic and body.
    a.bp.publish(Instant::now(), "chat", b"hello");
    let mut events = Events::with_capacity(4);
    b.poll.poll(&mut events, Some(WAIT_MAX)).unwrap();
    assert!(!events.is_empty(), "B's waker was not woken");
    assert_eq!(b.next(), topic("chat", b"hello"));

    // B's own publication reaches A, not B: B's next delivery is what A sends once it has B's.
    b.bp.publish(Instant::now(), "chat", b"from b");
    assert_eq!(a.next(), topic("chat", b"from b"));
    a.bp.publish(Instant::now(), "chat", b"marker 1");
    assert_eq!(b.next(), topic("chat", b"marker 1"));

    // An account message from A reaches B (not A); one from B reaches A (not B).
    a.bp.tell(Instant::now(), "alice", b"psst");
    assert_eq!(b.next(), account("alice", b"psst"));
    b.bp.tell(Instant::now(), "bob", b"");
    assert_eq!(a.next(), account("bob", b""));
    a.bp.publish(Instant::now(), "chat", b"marker 2");
    assert_eq!(b.next(), topic("chat", b"marker 2"));
    assert!(a.bp.try_recv().is_none(), "A got a message of its own");

    // A topic B does not subscribe to reaches A only (A subscribes to it).
    b.bp.publish(Instant::now(), "news", b"extra");
    assert_eq!(a.next(), topic("news", b"extra"));

    // 500 numbered messages from one publisher arrive in order, each once (the marker comes next).
    let now = Instant::now();
    for i in 0..500 {
        a.bp.publish(now, "chat", i.to_string().as_bytes());
    }
    a.bp.publish(now, "chat", b"marker 3");
    for i in 0..500 {
        assert_eq!(
            b.next(),
            topic("chat", i.to_string().as_bytes()),
            "message {i}"
        );
    }
    assert_eq!(b.next(), topic("chat", b"marker 3"));

    // The largest body goes; one byte more is refused at publish and at tell, and counted.
    let largest = vec![b'x'; MESSAGE_BODY_MAX];
    let too_big = vec![b'x'; MESSAGE_BODY_MAX + 1];
    a.bp.publish(Instant::now(), "chat", &too_big);
    a.bp.tell(Instant::now(), "alice", &too_big);
    a.bp.publish(Instant::now(), "chat", &largest);
    assert_eq!(b.next(), topic("chat", &largest));
    assert_eq!(a.stats().refused, 2);

    // What arrives on our channels without a valid envelope is dropped and counted.
    let mut raw = redis.con().unwrap();
    for payload in [&b"\x09not ours"[..], b"", b"\x01\x05ab"] {
        redis::cmd("PUBLISH")
            .arg(format!("{CLUSTER}:topic:chat"))
            .arg(payload)
            .query::<i64>(&mut raw)
            .unwrap();
    }
    redis::cmd("PUBLISH")
        .arg(format!("{CLUSTER}:accounts"))
        .arg(&b"\x01\x01z\x00"[..])
        .query::<i64>(&mut raw)
        .unwrap();
    a.bp.publish(Instant::now(), "chat", b"marker 4");
    assert_eq!(b.next(), topic("chat", b"marker 4"));
    assert_eq!(b.stats().malformed, 4);

    // Every count adds up: A published 1 + 1 + 1 + 1 + 500 + 1 + 1 + 1 = 507 and dropped none;
    // B received all of them but its own; nobody dropped anything. (B may hold a message before A's
    // publisher has read Redis's answer for it.)
    wait_until("A's publications answered", || a.stats().published == 507);
    let sa = a.stats();
    assert_eq!(
        (
            sa.published,
            sa.dropped_queue,
            sa.dropped_rate,
            sa.dropped_down
        ),
        (507, 0, 0, 0),
        "{sa:?}"
    );
    let sb = b.stats();
    assert_eq!((sb.received, sb.dropped_incoming), (507, 0), "{sb:?}");
    wait_until("B's publications answered", || b.stats().published == 3);
    assert_eq!(a.stats().received, 3);
}

#[test]
fn past_the_rate_limit_messages_are_dropped_and_counted() {
    let redis = Redis::start();
    let mut a = Process::start(redis.url(), "a", &[], 10);
    let mut b = Process::start(redis.url(), "b", &["chat"], 10);
    both_subscribed(&a, &b);

    // A burst of 10 at t0, then nothing until tokens come back.
    let t0 = Instant::now();
    for i in 0..100 {
        a.bp.publish(t0, "chat", i.to_string().as_bytes());
    }
    assert_eq!(a.stats().dropped_rate, 90);
    for i in 0..10 {
        assert_eq!(b.next(), topic("chat", i.to_string().as_bytes()));
    }
    // Half a second later, 5 more, shared between publish and tell.
    let later = t0 + Duration::from_millis(500);
    for _ in 0..4 {
        a.bp.publish(later, "chat", b"later");
    }
    a.bp.tell(later, "alice", b"later");
    a.bp.tell(later, "alice", b"too soon");
    assert_eq!(a.stats().dropped_rate, 91);
    for _ in 0..4 {
        assert_eq!(b.next(), topic("chat", b"later"));
    }
    assert_eq!(b.next(), account("alice", b"later"));
    wait_until("A's publications answered", || a.stats().published == 15);
    assert_eq!(a.stats().dropped_queue, 0);
}

#[test]
fn redis_down_drops_and_counts_then_both_threads_come_back() {
    let port = free_port();
    let mut a = Process::start(url(port), "a", &["chat"], 10_000);
    let mut b = Process::start(url(port), "b", &["chat"], 10_000);

    // Nothing listens: publishing returns at once, every message is dropped and counted.
    for _ in 0..10 {
        a.bp.publish(Instant::now(), "chat", b"lost");
        a.bp.tell(Instant::now(), "alice", b"lost");
    }
    wait_until("A counts its messages dropped", || {
        a.stats().dropped_down == 20
    });
    assert_eq!(a.stats().published, 0);
    assert!(!a.bp.subscribed() && !b.bp.subscribed());

    // Redis comes up on that port: both subscribers subscribe and A's publisher connects.
    let redis = Redis::start_on(port);
    both_subscribed(&a, &b);
    arrives(&mut a, &mut b, b"back");

    // Redis goes away mid-game and comes back empty: B notices, re-subscribes, and A's publisher
    // drops its dead connection for a new one.
    drop(redis);
    wait_until("B notices Redis is gone", || !b.bp.subscribed());
    let _redis = Redis::start_on(port);
    both_subscribed(&a, &b);
    arrives(&mut a, &mut b, b"back again");
}

/// Publishes `body` from A every 50 ms until B has it (what A published before does not come later),
/// then once more and checks that B gets that one after any repeats.
fn arrives(a: &mut Process, b: &mut Process, body: &[u8]) {
    let t0 = Instant::now();
    loop {
        a.bp.publish(Instant::now(), "chat", body);
        std::thread::sleep(Duration::from_millis(50));
        if let Some(delivery) = b.bp.try_recv() {
            assert_eq!(delivery, topic("chat", body));
            break;
        }
        assert!(t0.elapsed() < WAIT_MAX, "{:?}", a.stats());
    }
    a.bp.publish(Instant::now(), "chat", b"last");
    loop {
        match b.next() {
            d if d == topic("chat", body) => {}
            d => {
                assert_eq!(d, topic("chat", b"last"));
                break;
            }
        }
    }
}

#[test]
fn a_loop_that_does_not_read_keeps_at_most_the_incoming_capacity() {
    let redis = Redis::start();
    let mut a = Process::start(redis.url(), "a", &[], 1_000_000);
    let mut b = Process::start(redis.url(), "b", &["chat"], 1_000_000);
    both_subscribed(&a, &b);

    // More than B's queue holds, handed to A's publisher in batches that fit its queue.
    let total = INCOMING_MAX + 1000;
    let batch = OUTGOING_MAX / 2;
    let mut sent = 0;
    while sent < total {
        let now = Instant::now();
        let n = batch.min(total - sent);
        for i in sent..sent + n {
            a.bp.publish(now, "chat", i.to_string().as_bytes());
        }
        sent += n;
        wait_until("A's publisher caught up", || {
            a.stats().published as usize == sent
        });
    }
    assert_eq!(a.stats().dropped_queue, 0);

    // B's loop never read: it holds exactly its capacity, the first ones, and dropped the rest.
    wait_until("B saw everything", || {
        let s = b.stats();
        (s.received + s.dropped_incoming) as usize == total
    });
    let s = b.stats();
    assert_eq!(s.received as usize, INCOMING_MAX, "{s:?}");
    assert_eq!(s.dropped_incoming as usize, total - INCOMING_MAX, "{s:?}");
    let mut held = 0;
    while let Some(delivery) = b.bp.try_recv() {
        assert_eq!(delivery, topic("chat", held.to_string().as_bytes()));
        held += 1;
    }
    assert_eq!(held, INCOMING_MAX);

    // Once read, there is room again.
    a.bp.publish(Instant::now(), "chat", b"room again");
    assert_eq!(b.next(), topic("chat", b"room again"));
}
