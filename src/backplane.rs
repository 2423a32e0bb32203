//! The backplane (cluster mode, docs/CLUSTER.md "Backplane"): messages between the processes of a
//! cluster over Redis pub/sub, for what a game publishes to a topic (`RoomControl::publish`) or sends to
//! one player wherever it is connected (`RoomControl::tell`). The loop never talks to Redis: it hands
//! messages to a **publisher** thread over a bounded channel (`try_send`; a full queue drops and counts)
//! and takes what a **subscriber** thread received from a second bounded channel, which wakes it through
//! the loop's `mio::Waker`. If Redis is slow or gone, only those threads wait; each reconnects with
//! backoff.
//!
//! # Channels
//!
//! | channel | carries |
//! |---|---|
//! | `<cluster>:topic:<topic>` | what is published to `<topic>`; every process subscribes to the topics its room types name |
//! | `<cluster>:accounts` | messages to one account (a ticket's player id); every process subscribes |
//!
//! A message to an account goes to **every** process, and each delivers it to its own connections for
//! that account only: O(processes) fan-out per message. At scale the directory would say which process
//! holds which player (a `<cluster>:player:<account>` key written when a player joins) and each process
//! would subscribe to a channel of its own (`<cluster>:process:<id>:inbox`), so a message reaches only
//! the process that holds its player.
//!
//! # Envelope (the PUBLISH payload, binary)
//!
//! | bytes | meaning |
//! |---|---|
//! | 1 | format version, [`ENVELOPE_VERSION`] (1) |
//! | 1 + n | origin: n (a u8), then the publishing process's id (n bytes, UTF-8) |
//! | 1 + m | accounts channel only: m (a u8, at least 1), then the account (m bytes, UTF-8) |
//! | rest | the body, at most [`crate::proto::MESSAGE_BODY_MAX`] bytes (a topic's name is in its channel) |
//!
//! A received envelope that does not parse (another version, lengths past the end, a body too long, an
//! account that is not UTF-8, a channel we did not ask for) is dropped and counted
//! ([`BackplaneStats::malformed`]).
//!
//! # Promises
//!
//! - **Other processes only.** The subscriber drops what this process published (its origin is our
//!   process id): the loop delivers its own publications locally, at once.
//! - **At most once**, and **in order per publisher**: one publisher thread, one connection, a FIFO
//!   queue; nothing is ever retried, so a message is delivered once or not at all.
//! - **Bounded size**: a body over [`crate::proto::MESSAGE_BODY_MAX`] bytes, an account of 0 or more than
//!   255 bytes, or an empty topic is refused at [`Backplane::publish`] / [`Backplane::tell`]
//!   ([`BackplaneStats::refused`]).
//! - **Rate-limited**: one token bucket per process for `publish` and `tell` together, `rate_per_s`
//!   tokens a second and a burst of `rate_per_s` (full at start); past it, dropped
//!   ([`BackplaneStats::dropped_rate`]).
//! - **Bounded queues**: at most [`OUTGOING_MAX`] messages wait for the publisher (beyond:
//!   [`BackplaneStats::dropped_queue`]) and [`INCOMING_MAX`] deliveries for the loop (beyond:
//!   [`BackplaneStats::dropped_incoming`]); the publisher sends at most [`PIPELINE_MAX`] per round trip.
//! - **Lost while disconnected**: what the publisher cannot hand to Redis (unreachable, a round trip that
//!   failed, a command Redis refused) is dropped ([`BackplaneStats::dropped_down`]), never queued
//!   without bound; Redis pub/sub keeps nothing, so whatever is published while a subscriber is
//!   disconnected (until it has re-subscribed) never reaches that subscriber.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use mio::Waker;

use crate::cluster::{Settings, REDIS_IO_TIMEOUT};
use crate::proto::MESSAGE_BODY_MAX;

/// Messages the loop may have waiting for the publisher; beyond, new ones are dropped (and counted).
pub const OUTGOING_MAX: usize = 1024;
/// Deliveries the subscriber may have waiting for the loop; beyond, new ones are dropped (and counted).
pub const INCOMING_MAX: usize = 4096;
/// Most `PUBLISH` commands in one round trip.
pub const PIPELINE_MAX: usize = 256;
/// The first byte of every envelope.
pub const ENVELOPE_VERSION: u8 = 1;
/// How long the subscriber waits for a message before it looks at the stop flag again.
pub const SUBSCRIBER_POLL: Duration = Duration::from_millis(200);
/// After this long without a message, the subscriber PINGs Redis, so a connection that died without a
/// word (a lost machine, a partition) is noticed.
pub const SUBSCRIBER_KEEPALIVE: Duration = Duration::from_secs(1);
/// How long dropping a [`Backplane`] waits for its threads; past it they are left to end on their own.
pub const STOP_WAIT: Duration = Duration::from_secs(2);
/// Reconnect backoff: the first wait, doubled after every failure up to the cap.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the backplane brings from other processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Published to `topic` by another process.
    Topic { topic: String, body: Vec<u8> },
    /// For the connections whose ticket named `account`.
    Account { account: String, body: Vec<u8> },
}

/// What the backplane did, counted since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackplaneStats {
    /// Handed to Redis (`PUBLISH` answered).
    pub published: u64,
    /// The publisher thread's queue was full.
    pub dropped_queue: u64,
    /// Past the rate limit.
    pub dropped_rate: u64,
    /// Redis unreachable when the publisher tried (or the round trip failed, or Redis refused it).
    pub dropped_down: u64,
    /// Deliveries handed to the loop.
    pub received: u64,
    /// Deliveries dropped because the loop's queue was full.
    pub dropped_incoming: u64,
    /// Refused at `publish`/`tell`: a body over `MESSAGE_BODY_MAX`, an account of 0 or over 255 bytes,
    /// an empty topic.
    pub refused: u64,
    /// Received envelopes that did not parse, dropped.
    pub malformed: u64,
}

/// Counters and flags the threads share with the loop.
#[derive(Default)]
struct Shared {
    published: AtomicU64,
    dropped_down: AtomicU64,
    received: AtomicU64,
    dropped_incoming: AtomicU64,
    malformed: AtomicU64,
    subscribed: AtomicBool,
    stop: AtomicBool,
}

/// Where a message goes.
#[derive(Debug)]
enum Target {
    Topic(String),
    Accounts,
}

/// A message for the publisher: its channel and its envelope, built on the loop.
#[derive(Debug)]
struct Outgoing {
    target: Target,
    envelope: Vec<u8>,
}

/// The loop's end of the backplane.
pub struct Backplane {
    process_id: String,
    tx: Option<Sender<Outgoing>>,
    rx: Receiver<Delivery>,
    shared: Arc<Shared>,
    bucket: Bucket,
    dropped_queue: u64,
    dropped_rate: u64,
    refused: u64,
    threads: Vec<JoinHandle<()>>,
}

impl Backplane {
    /// Starts the publisher and subscriber threads: this process (`settings.process_id`) in cluster
    /// `settings.cluster`, receiving `topics` and the accounts channel, publishing at most `rate_per_s`
    /// messages a second (burst `rate_per_s`). Fails on a Redis URL that does not parse, a process id
    /// over 255 bytes, or a rate of 0; Redis being unreachable is not an error (the threads retry).
    pub fn start(
        settings: &Settings,
        topics: &[String],
        rate_per_s: u32,
        waker: Arc<Waker>,
    ) -> std::io::Result<Backplane> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|e| invalid(format!("--redis: {e}")))?;
        if settings.process_id.len() > u8::MAX as usize {
            return Err(invalid(format!(
                "backplane: process id {:?} is over 255 bytes",
                settings.process_id
            )));
        }
        if rate_per_s == 0 {
            return Err(invalid(
                "backplane: the rate must be at least 1 a second".into(),
            ));
        }
        let shared = Arc::new(Shared::default());
        let (tx, publisher_rx) = crossbeam_channel::bounded(OUTGOING_MAX);
        let (subscriber_tx, rx) = crossbeam_channel::bounded(INCOMING_MAX);
        let mut channels: Vec<String> = topics
            .iter()
            .map(|topic| topic_channel(&settings.cluster, topic))
            .collect();
        channels.push(accounts_channel(&settings.cluster));
        channels.sort();
        channels.dedup();
        let publisher = Publisher {
            client: client.clone(),
            cluster: settings.cluster.clone(),
            rx: publisher_rx,
            shared: shared.clone(),
            con: None,
            backoff: BACKOFF_MIN,
            retry_at: None,
        };
        let subscriber = Subscriber {
            client,
            topic_prefix: topic_channel(&settings.cluster, ""),
            accounts: accounts_channel(&settings.cluster),
            channels,
            process_id: settings.process_id.clone(),
            tx: subscriber_tx,
            waker,
            shared: shared.clone(),
        };
        let mut threads = Vec::with_capacity(2);
        threads.push(
            std::thread::Builder::new()
                .name("backplane-pub".into())
                .spawn(move || publisher.run())?,
        );
        match std::thread::Builder::new()
            .name("backplane-sub".into())
            .spawn(move || subscriber.run())
        {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                // `tx` goes with this frame: the publisher sees its queue closed and ends.
                shared.stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(Backplane {
            process_id: settings.process_id.clone(),
            tx: Some(tx),
            rx,
            shared,
            bucket: Bucket::new(rate_per_s),
            dropped_queue: 0,
            dropped_rate: 0,
            refused: 0,
            threads,
        })
    }

    /// Publishes `body` to `topic` on every other process of the cluster. Non-blocking: refused if too
    /// big, dropped past the rate limit or when the publisher's queue is full; every drop is counted.
    pub fn publish(&mut self, now: Instant, topic: &str, body: &[u8]) {
        if topic.is_empty() || body.len() > MESSAGE_BODY_MAX {
            self.refused += 1;
            return;
        }
        if !self.bucket.take(now) {
            self.dropped_rate += 1;
            return;
        }
        let envelope = encode_topic(&self.process_id, body);
        self.hand_over(Target::Topic(topic.to_string()), envelope);
    }

    /// Sends `body` to the player whose account is `account`, wherever it is connected (every other
    /// process receives it and delivers it to its own connections of that account). As `publish`.
    pub fn tell(&mut self, now: Instant, account: &str, body: &[u8]) {
        if account.is_empty() || account.len() > u8::MAX as usize || body.len() > MESSAGE_BODY_MAX {
            self.refused += 1;
            return;
        }
        if !self.bucket.take(now) {
            self.dropped_rate += 1;
            return;
        }
        let envelope = encode_account(&self.process_id, account, body);
        self.hand_over(Target::Accounts, envelope);
    }

    fn hand_over(&mut self, target: Target, envelope: Vec<u8>) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(Outgoing { target, envelope }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped_queue += 1,
            // The publisher is gone (it never stops on its own): nothing reaches Redis.
            Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped_down.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The next delivery from another process, if one is waiting; never blocks. The subscriber wakes
    /// the loop's waker for every delivery it queues, so a loop that leaves some here for the next
    /// turn must come back for them itself (a wake may already have been spent).
    pub fn try_recv(&self) -> Option<Delivery> {
        self.rx.try_recv().ok()
    }

    /// Whether deliveries are waiting for the loop.
    pub fn has_deliveries(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Every counter, read now.
    pub fn stats(&self) -> BackplaneStats {
        let s = &self.shared;
        BackplaneStats {
            published: s.published.load(Ordering::Relaxed),
            dropped_queue: self.dropped_queue,
            dropped_rate: self.dropped_rate,
            dropped_down: s.dropped_down.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            dropped_incoming: s.dropped_incoming.load(Ordering::Relaxed),
            refused: self.refused,
            malformed: s.malformed.load(Ordering::Relaxed),
        }
    }

    /// Whether the subscriber is connected and subscribed to every channel right now.
    pub fn subscribed(&self) -> bool {
        self.shared.subscribed.load(Ordering::Relaxed)
    }
}

impl Drop for Backplane {
    /// Stops both threads: the publisher sends what is already queued (while Redis answers; it makes
    /// no new connection) and ends, the subscriber ends within a poll. Waits for them at most
    /// [`STOP_WAIT`], then leaves them to finish on their own.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        let deadline = Instant::now() + STOP_WAIT;
        for thread in std::mem::take(&mut self.threads) {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` held, full at start.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    fn new(rate_per_s: u32) -> Bucket {
        let rate = f64::from(rate_per_s);
        Bucket {
            rate,
            tokens: rate,
            at: None,
        }
    }

    /// Takes a token at `now` if there is one (an instant earlier than the last one adds nothing).
    fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn topic_channel(cluster: &str, topic: &str) -> String {
    format!("{cluster}:topic:{topic}")
}

fn accounts_channel(cluster: &str) -> String {
    format!("{cluster}:accounts")
}

/// The envelope of a message to a topic: version, origin, body.
pub fn encode_topic(origin: &str, body: &[u8]) -> Vec<u8> {
    let mut envelope = Vec::with_capacity(2 + origin.len() + body.len());
    put_header(&mut envelope, origin);
    envelope.extend_from_slice(body);
    envelope
}

/// The envelope of a message to an account: version, origin, account, body.
pub fn encode_account(origin: &str, account: &str, body: &[u8]) -> Vec<u8> {
    assert!(account.len() <= u8::MAX as usize, "account too long");
    let mut envelope = Vec::with_capacity(3 + origin.len() + account.len() + body.len());
    put_header(&mut envelope, origin);
    envelope.push(account.len() as u8);
    envelope.extend_from_slice(account.as_bytes());
    envelope.extend_from_slice(body);
    envelope
}

fn put_header(envelope: &mut Vec<u8>, origin: &str) {
    assert!(origin.len() <= u8::MAX as usize, "origin too long");
    envelope.push(ENVELOPE_VERSION);
    envelope.push(origin.len() as u8);
    envelope.extend_from_slice(origin.as_bytes());
}

/// An envelope taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub origin: &'a [u8],
    /// For the accounts channel: the account.
    pub account: Option<&'a str>,
    pub body: &'a [u8],
}

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Version(u8),
    Truncated,
    Account,
    BodyTooLong(usize),
}

/// Takes apart an envelope received on a topic channel (`accounts` false) or the accounts channel.
pub fn decode(envelope: &[u8], accounts: bool) -> Result<Envelope<'_>, Malformed> {
    let (&version, rest) = envelope.split_first().ok_or(Malformed::Truncated)?;
    if version != ENVELOPE_VERSION {
        return Err(Malformed::Version(version));
    }
    let (origin, mut rest) = take_counted(rest)?;
    let mut account = None;
    if accounts {
        let (name, after) = take_counted(rest)?;
        let name = std::str::from_utf8(name).map_err(|_| Malformed::Account)?;
        if name.is_empty() {
            return Err(Malformed::Account);
        }
        account = Some(name);
        rest = after;
    }
    if rest.len() > MESSAGE_BODY_MAX {
        return Err(Malformed::BodyTooLong(rest.len()));
    }
    Ok(Envelope {
        origin,
        account,
        body: rest,
    })
}

/// A u8 length and that many bytes.
fn take_counted(bytes: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let (&len, rest) = bytes.split_first().ok_or(Malformed::Truncated)?;
    let len = len as usize;
    if rest.len() < len {
        return Err(Malformed::Truncated);
    }
    Ok(rest.split_at(len))
}

/// The publisher thread: one connection, sends what the loop queued, in order, pipelined.
struct Publisher {
    client: redis::Client,
    cluster: String,
    rx: Receiver<Outgoing>,
    shared: Arc<Shared>,
    con: Option<redis::Connection>,
    backoff: Duration,
    /// While unreachable, when to try connecting again.
    retry_at: Option<Instant>,
}

impl Publisher {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(PIPELINE_MAX);
        loop {
            // Wake at least every backoff period, to reconnect while the loop has nothing to send.
            match self.rx.recv_timeout(BACKOFF_MIN) {
                Ok(msg) => batch.push(msg),
                Err(RecvTimeoutError::Timeout) => {
                    self.connected();
                    continue;
                }
                // The loop dropped its end and everything it queued has been handled.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < PIPELINE_MAX {
                match self.rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            self.send(&mut batch);
        }
    }

    /// One round trip for `batch` (emptied); what does not reach Redis is counted down.
    fn send(&mut self, batch: &mut Vec<Outgoing>) {
        let count = batch.len() as u64;
        if !self.connected() {
            batch.clear();
            self.shared.dropped_down.fetch_add(count, Ordering::Relaxed);
            return;
        }
        let mut pipe = redis::pipe();
        for msg in batch.drain(..) {
            let channel = match &msg.target {
                Target::Topic(topic) => topic_channel(&self.cluster, topic),
                Target::Accounts => accounts_channel(&self.cluster),
            };
            pipe.cmd("PUBLISH").arg(channel).arg(msg.envelope);
        }
        let con = self.con.as_mut().expect("connected");
        // By hand rather than `req_packed_commands`, which keeps reading (a timeout each) after the
        // first failed answer: here the first failure ends the round trip and the connection.
        let mut answered = 0;
        let mut failed = con.send_packed_command(&pipe.get_packed_pipeline()).err();
        if failed.is_none() {
            for _ in 0..count {
                match con.recv_response() {
                    Ok(redis::Value::ServerError(_)) => {}
                    Ok(_) => answered += 1,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        self.shared.published.fetch_add(answered, Ordering::Relaxed);
        self.shared
            .dropped_down
            .fetch_add(count - answered, Ordering::Relaxed);
        if failed.is_some() {
            // Unreachable, timed out, or out of step with Redis: start over on a new connection.
            self.lost();
        }
    }

    /// A connection, made now if there is none and the backoff allows (and we are not stopping).
    fn connected(&mut self) -> bool {
        if self.con.is_some() {
            return true;
        }
        if self.shared.stop.load(Ordering::Relaxed)
            || self.retry_at.is_some_and(|at| Instant::now() < at)
        {
            return false;
        }
        match connect(&self.client) {
            Ok(con) => {
                self.con = Some(con);
                self.backoff = BACKOFF_MIN;
                self.retry_at = None;
                true
            }
            Err(_) => {
                self.lost();
                false
            }
        }
    }

    fn lost(&mut self) {
        self.con = None;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// A connection with every timeout set that answered `PING`.
fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let mut con = client.get_connection_with_timeout(REDIS_IO_TIMEOUT)?;
    con.set_read_timeout(Some(REDIS_IO_TIMEOUT))?;
    con.set_write_timeout(Some(REDIS_IO_TIMEOUT))?;
    // A TCP connect is not an answer: Redis must say PONG (NOAUTH, LOADING, ... fail here).
    redis::cmd("PING").query::<String>(&mut con)?;
    Ok(con)
}

/// The subscriber thread: its own connection in pub/sub mode; hands deliveries to the loop.
struct Subscriber {
    client: redis::Client,
    /// `<cluster>:topic:`, what every topic channel starts with.
    topic_prefix: String,
    accounts: String,
    /// Every channel to subscribe to, sorted, without repeats.
    channels: Vec<String>,
    process_id: String,
    tx: Sender<Delivery>,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
}

impl Subscriber {
    fn run(self) {
        let mut backoff = BACKOFF_MIN;
        while !self.stopping() {
            if let Ok(mut con) = connect(&self.client) {
                if self.listen(&mut con) {
                    backoff = BACKOFF_MIN;
                }
                self.shared.subscribed.store(false, Ordering::Relaxed);
                if self.stopping() {
                    return;
                }
            }
            // Back off, in short naps so that a stop is seen at once.
            let until = Instant::now() + backoff;
            while !self.stopping() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Subscribes and hands over messages until the connection fails or we stop; whether it ever
    /// subscribed.
    fn listen(&self, con: &mut redis::Connection) -> bool {
        let mut pubsub = con.as_pubsub();
        for channel in &self.channels {
            // One channel per command, each confirmed, so `subscribed` means every one.
            if pubsub.subscribe(channel).is_err() {
                return false;
            }
        }
        if pubsub.set_read_timeout(Some(SUBSCRIBER_POLL)).is_err() {
            return false;
        }
        self.shared.subscribed.store(true, Ordering::Relaxed);
        let mut heard = Instant::now();
        while !self.stopping() {
            match pubsub.get_message() {
                Ok(msg) => {
                    heard = Instant::now();
                    self.deliver(msg.get_channel_name(), msg.get_payload_bytes());
                }
                Err(e) if e.is_timeout() => {
                    if heard.elapsed() >= SUBSCRIBER_KEEPALIVE {
                        let alive = pubsub
                            .set_read_timeout(Some(REDIS_IO_TIMEOUT))
                            .and_then(|()| pubsub.ping::<redis::Value>())
                            .and_then(|_| pubsub.set_read_timeout(Some(SUBSCRIBER_POLL)));
                        if alive.is_err() {
                            return true;
                        }
                        heard = Instant::now();
                    }
                }
                Err(_) => return true,
            }
        }
        true
    }

    /// One message from Redis: parsed, ours dropped, the rest handed to the loop.
    fn deliver(&self, channel: &str, payload: &[u8]) {
        let accounts = channel == self.accounts;
        let topic = channel.strip_prefix(self.topic_prefix.as_str());
        if !accounts && topic.is_none() {
            self.shared.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let envelope = match decode(payload, accounts) {
            Ok(envelope) => envelope,
            Err(_) => {
                self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if envelope.origin == self.process_id.as_bytes() {
            return;
        }
        let body = envelope.body.to_vec();
        let delivery = match (envelope.account, topic) {
            (Some(account), _) => Delivery::Account {
                account: account.to_string(),
                body,
            },
            (None, Some(topic)) => Delivery::Topic {
                topic: topic.to_string(),
                body,
            },
            (None, None) => unreachable!("accounts envelopes carry an account"),
        };
        match self.tx.try_send(delivery) {
            Ok(()) => {
                self.shared.received.fetch_add(1, Ordering::Relaxed);
                let _ = self.waker.wake();
            }
            Err(TrySendError::Full(_)) => {
                self.shared.dropped_incoming.fetch_add(1, Ordering::Relaxed);
            }
            // The loop is gone: the stop flag ends this thread at the next message or poll.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let topic = encode_topic("p1", b"hello");
        assert_eq!(topic, b"\x01\x02p1hello");
        assert_eq!(
            decode(&topic, false),
            Ok(Envelope {
                origin: b"p1",
                account: None,
                body: b"hello"
            })
        );
        let account = encode_account("p1", "alice", b"");
        assert_eq!(account, b"\x01\x02p1\x05alice");
        assert_eq!(
            decode(&account, true),
            Ok(Envelope {
                origin: b"p1",
                account: Some("alice"),
                body: b""
            })
        );
        let big = vec![7u8; MESSAGE_BODY_MAX];
        assert_eq!(
            decode(&encode_topic("p", &big), false).unwrap().body,
            &big[..]
        );
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        assert_eq!(decode(b"", false), Err(Malformed::Truncated));
        assert_eq!(decode(b"\x02\x00", false), Err(Malformed::Version(2)));
        assert_eq!(decode(b"\x01", false), Err(Malformed::Truncated));
        assert_eq!(decode(b"\x01\x05p1", false), Err(Malformed::Truncated));
        assert_eq!(decode(b"\x01\x02p1", true), Err(Malformed::Truncated));
        assert_eq!(decode(b"\x01\x02p1\x00body", true), Err(Malformed::Account));
        assert_eq!(decode(b"\x01\x02p1\x01\xff", true), Err(Malformed::Account));
        assert_eq!(decode(b"\x01\x02p1\x03ab", true), Err(Malformed::Truncated));
        let too_long = encode_topic("p", &vec![0; MESSAGE_BODY_MAX + 1]);
        assert_eq!(
            decode(&too_long, false),
            Err(Malformed::BodyTooLong(MESSAGE_BODY_MAX + 1))
        );
    }

    #[test]
    fn the_bucket_admits_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(10);
        assert_eq!((0..100).filter(|_| bucket.take(t0)).count(), 10);
        // A tenth of a second brings one token back; a minute brings at most the burst.
        assert!(bucket.take(t0 + Duration::from_millis(100)));
        assert!(!bucket.take(t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| bucket.take(later)).count(), 10);
        // An earlier instant adds nothing.
        assert!(!bucket.take(t0));
    }
}
