use std::borrow::Cow;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus::IntCounter;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionInfo, Pipeline, RedisFuture, Script, Value};
use shared::Jti;
use shared::record::{DownloadRecord, OUTCOME_STREAM, OutcomeSink, stream_entry, stream_maxlen};
use tokio::sync::{mpsc, oneshot};

use super::{Burn, BurnRequest, BurnStore, ResumeGrant, StoreError};

/// Burned ids in Redis (one server, or a Redis Cluster), shared by every download server
/// pointed at it: keys that expire when no server can accept their token any more, so memory
/// is bounded by issuance rate times record lifetime (see docs/DEPLOY.md for the measured size).
///
/// **Store loss.** A Redis that restarts empty, or a replica promoted before it had every
/// write, forgets burns; each still-valid link would work again. So the store keeps *epochs*:
/// one key per bucket of ids (`burnlink:{eNN}:epoch`, never expiring), whose value names the
/// second it was created. Every burn reads the bucket's epoch atomically with its `SET NX`
/// (one Lua script, or one transaction for a batch): a bucket whose epoch is gone or not the
/// one this server knows has lost its records, so the server learns (or creates) the new epoch
/// and refuses every token issued before it, as the memory store refuses tokens issued before
/// its start. Buckets share a hash tag with their ids, so on a cluster each node's loss is seen
/// for the ids it holds. Epochs are also checked every second, and by `/readyz`, which is not
/// ready until the seconds refused by a new epoch are over.
///
/// **Replicas.** With `--burn-store-replicas N`, a burn is served only once `WAIT N` says that
/// many replicas have it (standalone Redis), so a failover cannot forget it.
///
/// **Group commit.** On one Redis, burns go out in batches: one task sends every burn queued
/// while the previous batch was on its way as one transaction ([`RedisStore::send_batch`]:
/// `MULTI`, one `MGET` of the batch's epochs, a `SET NX PX` per burn, `EXEC`; no Lua, whose
/// call around each `SET` was half of Redis's time per burn) and, with replicas, one `WAIT`
/// for the whole batch. A lone burn goes at once; under load Redis runs one transaction per batch
/// instead of one per download (issue 18). A cluster takes one script per burn ([`BURN`]), as
/// a transaction may only touch the keys of one slot.
///
/// **Outcomes ride with burns.** When the outcome stream is the burn store's own Redis
/// (`--outcomes-redis auto`, one Redis), [`RedisStore::outcome_sink`] queues finished
/// downloads' records for the same task, and the next batch's transaction appends them to the
/// stream as one entry (one `XADD` after the burns; a stream that refuses it fails alone and
/// never changes a burn's answer): one round trip per download under load instead of a burn
/// and an `XADD`, and one `XADD` per batch (issue 29). Records wait for a burn at most
/// `--outcomes-linger-ms` (50 ms by default), then go on their own with no burns. A cluster,
/// or an outcome stream on another Redis, keeps the stream's own writer
/// ([`crate::outcome::redis::RedisStreamSink`]).
///
/// The connection is made on first use and remade after any failure, so a server starts while
/// Redis is down (unready, refusing downloads with 503) and recovers on its own when Redis is
/// back. Every command is bounded by the `--burn-store-timeout-ms` deadline: past it the
/// caller gets a [`StoreError`] and must fail closed.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    timeout: Duration,
    replicas: u32,
    epochs: Arc<Epochs>,
    /// Where burns queue for the batching task (one Redis only).
    burns: Option<mpsc::Sender<Queued>>,
}

/// Records waiting for a batch, at most; past it a record is dropped (and counted).
const OUTCOME_QUEUE: usize = 4096;
/// Records appended by one batch, at most.
const OUTCOME_BATCH: usize = 256;

/// The outcome records' end of the batching task (see [`RedisStore::outcome_sink`]).
struct OutcomeFeed {
    /// Each record as the stream's JSON.
    records: mpsc::Receiver<String>,
    maxlen: u64,
    linger: Duration,
    dropped: IntCounter,
}

/// Download records for the outcome stream, handed to the burn batching task of the store
/// that made it: an [`OutcomeSink`] that only queues (a full queue drops, counted).
pub struct BatchedOutcomes {
    records: mpsc::Sender<String>,
    dropped: IntCounter,
}

impl OutcomeSink for BatchedOutcomes {
    fn send(&self, record: &DownloadRecord<'_>, json: Option<&str>) {
        crate::outcome::queue_json(&self.records, record, json, &self.dropped);
    }
}

/// Burns queued for one batch, at most: a transaction this long runs in well under a
/// millisecond.
const MAX_BURNS: usize = 128;
/// Burns waiting for a batch, at most; past it a burn fails closed (503) at once.
const BURN_QUEUE: usize = 8192;

/// One burn waiting for its batch.
struct Queued {
    bucket: usize,
    key: String,
    /// The bucket's epoch as the caller knew it.
    epoch: Arc<str>,
    life_ms: u64,
    value: Cow<'static, str>,
    /// The transaction's answer for this burn, once replicated when replicas are asked for.
    reply: oneshot::Sender<Result<Batched, StoreError>>,
}

/// What one burn of a batch met in Redis: whether its `SET NX` wrote the id, and the bucket's
/// epoch that the same transaction read.
#[derive(Debug, PartialEq, Eq)]
struct Batched {
    set: bool,
    met: Met,
}

/// The bucket's epoch as a batched burn's transaction read it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Met {
    /// The one this server knew: the bucket still holds every burn of its epoch.
    Known,
    /// Another one, made since by some server (this value): the bucket lost its records.
    Other(String),
    /// None: the bucket lost its records and no server has made its new epoch yet.
    Missing,
}

impl Batched {
    /// Whether the token was burned now: the `SET`'s answer, when the records the bucket holds
    /// are every record it could have held for this token. They are when the epoch was the
    /// known one; after a loss only for a token issued at or after the new epoch's boundary
    /// (`epoch`, the one `met`), as no server accepted it before the loss. `None`: issued
    /// before the loss, refused.
    fn burned(&self, iat: u64, epoch: Option<&Epoch>) -> Option<bool> {
        match (&self.met, epoch) {
            (Met::Known, _) => Some(self.set),
            (_, Some(epoch)) if iat >= epoch.boundary => Some(self.set),
            _ => None,
        }
    }
}

/// Buckets of ids, each with its own epoch. A power of two, and enough for a cluster of
/// dozens of nodes to spread the ids over; each costs one key in Redis and one check a
/// second.
const BUCKETS: usize = 64;

/// One Redis or a cluster, behind one [`ConnectionLike`].
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A bucket's epoch as this server knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Epoch {
    /// The value in Redis: `<boundary>-<random>` (shared by every burn that reads it, not
    /// copied for each).
    value: Arc<str>,
    /// Tokens issued (`iat`) before this second are refused.
    boundary: u64,
}

impl Epoch {
    /// A candidate for a bucket that has none: refuses what the lost records may have burned
    /// ([`super::forgotten_burns_boundary`]).
    fn new(leeway: u64) -> Epoch {
        let boundary = super::forgotten_burns_boundary(leeway);
        Epoch {
            value: format!("{boundary}-{}", shared::random_token(9)).into(),
            boundary,
        }
    }

    fn parse(value: String) -> Result<Epoch, StoreError> {
        let boundary = value
            .split_once('-')
            .and_then(|(b, _)| b.parse().ok())
            .ok_or_else(|| StoreError(format!("unreadable burn store epoch {value:?}")))?;
        Ok(Epoch {
            value: value.into(),
            boundary,
        })
    }
}

struct Epochs {
    known: Vec<RwLock<Option<Epoch>>>,
    /// The verifier's leeway on `iat`: how far past a new epoch's second it refuses.
    leeway: u64,
    burn: Script,
    /// The batching task's end of the burn queue, until [`RedisStore::start`] takes it.
    queued: Mutex<Option<mpsc::Receiver<Queued>>>,
    /// The outcome records' end, when [`RedisStore::outcome_sink`] made one, until
    /// [`RedisStore::start`] takes it.
    outcomes: Mutex<Option<OutcomeFeed>>,
    grant: Script,
    is_burned: Script,
    get_or_create: Script,
}

/// `KEYS[1]` the bucket's epoch, `KEYS[2]` the id; `ARGV[1]` the epoch this server knows,
/// `ARGV[2]` the record's life in milliseconds, `ARGV[3]` its value (`1`, or a resume grant).
/// 1: burned now; 0: already burned; -1: the bucket's epoch is not the one known (its records
/// were lost).
const BURN: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
";

/// The record's value (a resume grant, or `1`), 0 when there is none, -1 on an epoch change.
const GRANT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
return redis.call('GET', KEYS[2]) or 0
";

/// As [`BURN`], without writing: 1 burned, 0 not, -1 epoch changed.
const IS_BURNED: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
return redis.call('EXISTS', KEYS[2])
";

/// The bucket's epoch, set to `ARGV[1]` if it has none.
const GET_OR_CREATE: &str = r"
local epoch = redis.call('GET', KEYS[1])
if epoch then return epoch end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
";

fn bucket(jti: &Jti) -> usize {
    // FNV-1a: ids are random, any spread-out hash will do, and this one needs no key.
    let hash = shared::fnv1a(jti.as_str().as_bytes());
    (hash as usize) & (BUCKETS - 1)
}

/// The bucket's hash tag: its epoch and its ids live in one cluster slot.
fn epoch_key(bucket: usize) -> String {
    format!("burnlink:{{e{bucket:02}}}:epoch")
}

fn burn_key(bucket: usize, jti: &Jti) -> String {
    format!("burnlink:{{e{bucket:02}}}:burn:{}", jti.as_str())
}

/// What a script answered: yes (with the record's value when it returns one), no, or the
/// epoch changed twice.
enum Answer {
    Yes(Option<String>),
    No,
    EpochChanged,
}

/// What a script runs for.
#[derive(Clone, Copy)]
enum Op<'a> {
    /// Record the id for `life_ms`, with `value` (`1`, or a resume grant).
    Burn {
        life_ms: u64,
        value: &'a Cow<'static, str>,
    },
    Grant,
    IsBurned,
}

impl Op<'_> {
    fn script(self, epochs: &Epochs) -> &Script {
        match self {
            Op::Burn { .. } => &epochs.burn,
            Op::Grant => &epochs.grant,
            Op::IsBurned => &epochs.is_burned,
        }
    }
}

impl RedisStore {
    /// A store for one Redis that has not connected yet (no I/O happens here). Burns are sent
    /// once [`RedisStore::start`] has run.
    pub fn new(
        info: ConnectionInfo,
        timeout: Duration,
        replicas: u32,
        leeway: u64,
    ) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(info).map_err(|e| StoreError(e.to_string()))?;
        // Reconnection attempts back off from 50 ms to at most 1 s, so a Redis that comes back
        // is found again within about a second; callers never wait on them beyond `timeout`.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(10);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError(e.to_string()))?;
        let (burns, queued) = mpsc::channel(BURN_QUEUE);
        let mut store = RedisStore::with(Conn::Single(conn), timeout, replicas, leeway);
        store.burns = Some(burns);
        *store
            .epochs
            .queued
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(queued);
        Ok(store)
    }

    /// A store for a Redis Cluster reached through any of `nodes` (it learns the rest), not
    /// connected yet.
    pub fn cluster(
        nodes: Vec<ConnectionInfo>,
        timeout: Duration,
        leeway: u64,
    ) -> Result<RedisStore, StoreError> {
        let client = ClusterClient::builder(nodes)
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(1000)
            .build()
            .map_err(|e| StoreError(e.to_string()))?;
        let config = ClusterConfig::new()
            .set_connection_timeout(timeout.max(Duration::from_secs(1)))
            .set_response_timeout(timeout);
        let conn = client.get_pending_async_connection_with_config(config);
        Ok(RedisStore::with(Conn::Cluster(conn), timeout, 0, leeway))
    }

    /// A sink whose records the burn batches append to the outcome stream (see the type's
    /// doc), capped at `maxlen` entries; `None` on a cluster. Made before [`RedisStore::start`].
    pub fn outcome_sink(
        &self,
        maxlen: u64,
        linger: Duration,
        dropped: IntCounter,
    ) -> Option<BatchedOutcomes> {
        self.burns.as_ref()?;
        let (records, feed) = mpsc::channel(OUTCOME_QUEUE);
        *self
            .epochs
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(OutcomeFeed {
            records: feed,
            maxlen,
            linger,
            dropped: dropped.clone(),
        });
        Some(BatchedOutcomes { records, dropped })
    }

    fn with(conn: Conn, timeout: Duration, replicas: u32, leeway: u64) -> RedisStore {
        RedisStore {
            conn,
            timeout,
            replicas,
            burns: None,
            epochs: Arc::new(Epochs {
                known: (0..BUCKETS).map(|_| RwLock::new(None)).collect(),
                leeway,
                burn: Script::new(BURN),
                queued: Mutex::new(None),
                outcomes: Mutex::new(None),
                grant: Script::new(GRANT),
                is_burned: Script::new(IS_BURNED),
                get_or_create: Script::new(GET_OR_CREATE),
            }),
        }
    }

    /// Learns every bucket's epoch now (creating those that are missing) and, if that created
    /// any, waits out the seconds it refuses, so that no token minted after the server starts
    /// serving is refused. A Redis that is down is only logged: downloads are refused (503)
    /// until it answers. Then checks the epochs every second while the store lives, and (one
    /// Redis) sends the queued burns.
    pub async fn start(&self) {
        let queued = self
            .epochs
            .queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(queued) = queued {
            let outcomes = self
                .epochs
                .outcomes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            tokio::spawn(self.clone().send_burns(queued, outcomes));
        }
        match self.check_epochs().await {
            Ok(boundary) => super::wait_for_second(boundary).await,
            Err(e) => tracing::warn!(error = %e, "redis burn store not reachable yet"),
        }
        let weak = Arc::downgrade(&self.epochs);
        let conn = self.conn.clone();
        let (timeout, replicas) = (self.timeout, self.replicas);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(epochs) = weak.upgrade() else { break };
                let store = RedisStore {
                    conn: conn.clone(),
                    timeout,
                    replicas,
                    epochs,
                    burns: None,
                };
                // Failures show in `/readyz` and in the downloads they refuse.
                let _ = store.check_epochs().await;
            }
        });
    }

    /// Reads (or creates) every bucket's epoch; the latest boundary among them.
    async fn check_epochs(&self) -> Result<u64, StoreError> {
        let checks = (0..BUCKETS).map(|b| self.learn_epoch(b));
        let epochs = futures_util::future::try_join_all(checks).await?;
        Ok(epochs.iter().map(|e| e.boundary).max().unwrap_or(0))
    }

    /// The bucket's epoch as Redis has it now (created if missing), remembered.
    async fn learn_epoch(&self, bucket: usize) -> Result<Epoch, StoreError> {
        let mut call = self.epochs.get_or_create.prepare_invoke();
        call.key(epoch_key(bucket))
            .arg(&*Epoch::new(self.epochs.leeway).value);
        let mut conn = self.conn.clone();
        let value: String = self
            .within(self.timeout, call.invoke_async(&mut conn))
            .await?;
        Ok(self.remember(bucket, Epoch::parse(value)?))
    }

    /// Keeps `epoch` as the bucket's, warning when it replaces another.
    fn remember(&self, bucket: usize, epoch: Epoch) -> Epoch {
        let mut known = self.epochs.known[bucket]
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(old) = known.as_ref().filter(|old| **old != epoch) {
            tracing::warn!(
                bucket,
                old = &*old.value,
                new = &*epoch.value,
                refused_before = epoch.boundary,
                "burn store lost its records (epoch changed): refusing tokens issued before the \
                 new epoch"
            );
        }
        *known = Some(epoch.clone());
        epoch
    }

    /// The bucket's epoch as this server knows it, learned first if it knows none.
    async fn epoch(&self, bucket: usize) -> Result<Epoch, StoreError> {
        let known = self.epochs.known[bucket]
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match known {
            Some(epoch) => Ok(epoch),
            None => self.learn_epoch(bucket).await,
        }
    }

    /// Runs `op`'s script for the request under the bucket's known epoch; on an epoch change
    /// (`-1`), learns the new one and decides again. `None`: issued before the loss.
    async fn run_script(
        &self,
        op: Op<'_>,
        req: &BurnRequest<'_>,
    ) -> Result<Option<Answer>, StoreError> {
        let bucket = bucket(req.jti);
        let mut epoch = self.epoch(bucket).await?;
        // Twice at most: an epoch that changes again between two commands is a store that
        // keeps losing its data, and is treated as down.
        for _ in 0..2 {
            if req.iat < epoch.boundary {
                return Ok(None);
            }
            if let (Op::Burn { life_ms, value }, Some(burns)) = (op, &self.burns) {
                let (reply, answer) = oneshot::channel();
                let burn = Queued {
                    bucket,
                    key: burn_key(bucket, req.jti),
                    epoch: epoch.value.clone(),
                    life_ms,
                    value: value.clone(),
                    reply,
                };
                let batched = self.queue_burn(burns, burn, answer).await?;
                return self.settle(bucket, req.iat, batched).await;
            }
            let mut call = op.script(&self.epochs).prepare_invoke();
            call.key(epoch_key(bucket))
                .key(burn_key(bucket, req.jti))
                .arg(&*epoch.value);
            if let Op::Burn { life_ms, value } = op {
                call.arg(life_ms).arg(&**value);
            }
            let mut conn = self.conn.clone();
            let answer = self
                .within(self.timeout, call.invoke_async(&mut conn))
                .await?;
            match answer {
                Value::Int(1) => return Ok(Some(Answer::Yes(None))),
                Value::Int(0) => return Ok(Some(Answer::No)),
                Value::BulkString(bytes) => {
                    return Ok(Some(Answer::Yes(Some(
                        String::from_utf8_lossy(&bytes).into_owned(),
                    ))));
                }
                Value::Int(-1) => epoch = self.learn_epoch(bucket).await?,
                other => return Err(StoreError(format!("unexpected answer {other:?}"))),
            }
        }
        Ok(Some(Answer::EpochChanged))
    }

    /// A batched burn's answer (see [`Batched::burned`]), learning the epoch it met when that
    /// was not the known one: read by its transaction, or made now when the bucket had none.
    async fn settle(
        &self,
        bucket: usize,
        iat: u64,
        batched: Batched,
    ) -> Result<Option<Answer>, StoreError> {
        let epoch = match &batched.met {
            Met::Known => None,
            Met::Other(value) => Some(self.remember(bucket, Epoch::parse(value.clone())?)),
            Met::Missing => Some(self.learn_epoch(bucket).await?),
        };
        Ok(batched.burned(iat, epoch.as_ref()).map(|burned| {
            if burned {
                Answer::Yes(None)
            } else {
                Answer::No
            }
        }))
    }

    /// Queues `burn` for the batching task and waits for its answer: within the deadline for
    /// the transaction, and the `WAIT` one beside it when replicas are asked for. A burn whose
    /// caller stopped waiting before its batch left is not sent.
    async fn queue_burn(
        &self,
        burns: &mpsc::Sender<Queued>,
        burn: Queued,
        answer: oneshot::Receiver<Result<Batched, StoreError>>,
    ) -> Result<Batched, StoreError> {
        burns
            .try_send(burn)
            .map_err(|e| StoreError(format!("burn queue: {e}")))?;
        let deadline = match self.replicas {
            0 => self.timeout,
            _ => self.timeout * 3,
        };
        match tokio::time::timeout(deadline, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(StoreError("the burn batching task stopped".into())),
            Err(_) => Err(StoreError(format!(
                "no answer within {} ms",
                deadline.as_millis()
            ))),
        }
    }

    /// The batching task: sends every burn queued meanwhile as one transaction (and one
    /// `WAIT` when replicas are asked for), with the outcome records queued meanwhile, hands
    /// each burn its answer, and goes again, until every store holding the queue is gone.
    /// Records with no burn to ride on wait the feed's `linger` for one, then go alone.
    async fn send_burns(self, mut queued: mpsc::Receiver<Queued>, feed: Option<OutcomeFeed>) {
        // Only the queue's other ends may keep it open.
        let store = RedisStore {
            burns: None,
            ..self
        };
        let (mut records_rx, maxlen, linger, dropped) = match feed {
            Some(f) => (Some(f.records), f.maxlen, f.linger, Some(f.dropped)),
            None => (None, 0, Duration::ZERO, None),
        };
        let mut batch = Vec::with_capacity(MAX_BURNS);
        let mut records = Vec::new();
        loop {
            let feed_open = records_rx.is_some();
            tokio::select! {
                biased;
                n = queued.recv_many(&mut batch, MAX_BURNS) => if n == 0 { break },
                n = async {
                    match records_rx.as_mut() {
                        Some(rx) => rx.recv_many(&mut records, OUTCOME_BATCH).await,
                        None => 0,
                    }
                }, if feed_open => {
                    if n == 0 {
                        records_rx = None;
                        continue;
                    }
                    // Records alone: a burn arriving soon carries them.
                    let wait = queued.recv_many(&mut batch, MAX_BURNS);
                    if let Ok(0) = tokio::time::timeout(linger, wait).await {
                        break;
                    }
                }
            }
            if let Some(rx) = records_rx.as_mut() {
                while records.len() < OUTCOME_BATCH {
                    match rx.try_recv() {
                        Ok(record) => records.push(record),
                        Err(_) => break,
                    }
                }
            }
            batch.retain(|burn| !burn.reply.is_closed());
            if batch.is_empty() && records.is_empty() {
                continue;
            }
            let lost = store.send_batch(&mut batch, &records, maxlen).await;
            lost_outcomes(dropped.as_ref(), lost);
            records.clear();
        }
        // The last records, when every store is gone.
        if !records.is_empty() {
            let lost = store.send_batch(&mut Vec::new(), &records, maxlen).await;
            lost_outcomes(dropped.as_ref(), lost);
        }
    }

    /// One transaction (`MULTI` ... `EXEC`, one round trip): the batch's epochs by one `MGET`,
    /// each burn's `SET NX PX` (each handed its answer and the epoch beside it), then `records`
    /// appended to the outcome stream as one entry. How many records were not written.
    async fn send_batch(&self, batch: &mut Vec<Queued>, records: &[String], maxlen: u64) -> u64 {
        let mut pipe = redis::pipe();
        // A command that fails (a stream that refuses the entry) fails alone: the others'
        // answers come back beside its error, as Redis ran them.
        pipe.ignore_errors();
        if !batch.is_empty() {
            pipe.atomic().cmd("MGET");
            for burn in batch.iter() {
                pipe.arg(epoch_key(burn.bucket));
            }
            for burn in batch.iter() {
                pipe.cmd("SET")
                    .arg(&burn.key)
                    .arg(&*burn.value)
                    .arg("NX")
                    .arg("PX")
                    .arg(burn.life_ms);
            }
        }
        if !records.is_empty() {
            pipe.cmd("XADD")
                .arg(OUTCOME_STREAM)
                .arg("MAXLEN")
                .arg("~")
                .arg(stream_maxlen(maxlen, records.len()))
                .arg("*")
                .arg("e")
                .arg(stream_entry(records));
        }
        let mut conn = self.conn.clone();
        let replies: Result<Vec<Value>, StoreError> =
            self.within(self.timeout, pipe.query_async(&mut conn)).await;
        // The records' `XADD` is the last reply when there are any; the rest are the burns'.
        let (answers, lost) = match replies {
            Ok(mut replies) => {
                let appended = records.is_empty()
                    || !matches!(replies.pop(), None | Some(Value::ServerError(_)));
                let answers = read_burns(batch.iter().map(|b| &*b.epoch), replies);
                (answers, if appended { 0 } else { records.len() as u64 })
            }
            Err(e) => (Err(e), records.len() as u64),
        };
        let answers = match answers {
            // Something was burned: served only once the replicas asked for have it.
            Ok(a) if a.iter().any(|a| matches!(a, Ok(Batched { set: true, .. }))) => {
                self.replicated().await.map(|()| a)
            }
            answers => answers,
        };
        match answers {
            Ok(answers) => {
                for (burn, answer) in batch.drain(..).zip(answers) {
                    let _ = burn.reply.send(answer);
                }
            }
            Err(e) => {
                for burn in batch.drain(..) {
                    let _ = burn.reply.send(Err(StoreError(e.0.clone())));
                }
            }
        }
        lost
    }

    /// Waits for `WAIT replicas timeout` to report enough replicas holding this connection's
    /// writes (the burn just made among them).
    async fn replicated(&self) -> Result<(), StoreError> {
        if self.replicas == 0 {
            return Ok(());
        }
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.replicas).arg(self.timeout.as_millis() as u64);
        let mut conn = self.conn.clone();
        // WAIT's own deadline, plus the usual one for the answer to arrive.
        let acked: u32 = (self.within(self.timeout * 2, cmd.query_async(&mut conn))).await?;
        if acked < self.replicas {
            return Err(StoreError(format!(
                "only {acked} of {} replicas acknowledged the burn",
                self.replicas
            )));
        }
        Ok(())
    }

    /// Awaits one call within `deadline`. A call that times out may still have run on the
    /// server: the caller treats it as unknown and serves nothing.
    async fn within<T>(
        &self,
        deadline: Duration,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError(e.to_string())),
            Err(_) => Err(StoreError(format!(
                "no answer within {} ms",
                deadline.as_millis()
            ))),
        }
    }
}

/// The burns' answers in a batch's replies (the `MGET`'s epochs, then one reply per `SET`), for
/// burns that knew the epochs `known`: one per burn, in order, or an error for them all when
/// the replies are not those of the batch.
fn read_burns<'a>(
    known: impl ExactSizeIterator<Item = &'a str>,
    replies: Vec<Value>,
) -> Result<Vec<Result<Batched, StoreError>>, StoreError> {
    let n = known.len();
    if n == 0 && replies.is_empty() {
        return Ok(Vec::new());
    }
    let mut replies = replies.into_iter();
    let epochs = match replies.next() {
        Some(Value::Array(epochs)) if epochs.len() == n && replies.len() == n => epochs,
        other => {
            return Err(StoreError(format!(
                "unexpected answer to {n} burns: {other:?}"
            )));
        }
    };
    let read = |known: &str, epoch: Value, set: Value| {
        let met = match epoch {
            Value::BulkString(seen) if seen == known.as_bytes() => Met::Known,
            Value::BulkString(seen) => Met::Other(String::from_utf8_lossy(&seen).into_owned()),
            Value::Nil => Met::Missing,
            other => return Err(StoreError(format!("unexpected epoch {other:?}"))),
        };
        let set = match set {
            Value::Okay => true,
            Value::SimpleString(ok) if ok == "OK" => true,
            Value::Nil => false,
            other => {
                return Err(StoreError(format!(
                    "unexpected answer to a burn: {other:?}"
                )));
            }
        };
        Ok(Batched { set, met })
    };
    Ok(known
        .zip(epochs)
        .zip(replies)
        .map(|((known, epoch), set)| read(known, epoch, set))
        .collect())
}

/// Counts and logs outcome records that were not written.
fn lost_outcomes(dropped: Option<&IntCounter>, lost: u64) {
    if let Some(dropped) = dropped.filter(|_| lost > 0) {
        dropped.inc_by(lost);
        tracing::warn!(events = lost, "outcomes not written");
    }
}

/// Logs a failure against the id it concerns (never the token).
fn warn(jti: &Jti) -> impl FnOnce(&StoreError) + '_ {
    move |e| tracing::warn!(jti = jti.as_str(), error = %e, "redis burn store failed")
}

impl BurnStore for RedisStore {
    async fn burn(
        &self,
        req: &BurnRequest<'_>,
        grant: Option<&ResumeGrant>,
    ) -> Result<Burn, StoreError> {
        // A relative life, counted by Redis from when it runs the command: the record lasts at
        // least until `keep_until_ms` by this server's clock, whatever Redis's clock says.
        let ttl_ms = req.keep_until_ms.saturating_sub(req.now_ms);
        if ttl_ms == 0 {
            return Ok(Burn::Expired);
        }
        let life_ms = ttl_ms.max(grant.map_or(0, |g| g.until_ms.saturating_sub(req.now_ms)));
        let value = grant.map_or(Cow::Borrowed("1"), |g| Cow::Owned(g.encode()));
        let op = Op::Burn {
            life_ms,
            value: &value,
        };
        let answer = self.run_script(op, req).await;
        // Replicated before it answers yes, when replicas are asked for (one Redis only).
        Ok(match answer.inspect_err(warn(req.jti))? {
            Some(Answer::Yes(_)) => Burn::Fresh,
            Some(Answer::No) => Burn::AlreadyUsed,
            None => Burn::IssuedBeforeLoss,
            Some(Answer::EpochChanged) => {
                return Err(StoreError("burn store epoch keeps changing".into()));
            }
        })
    }

    async fn resume_grant(&self, req: &BurnRequest<'_>) -> Result<Option<ResumeGrant>, StoreError> {
        let answer = self.run_script(Op::Grant, req).await;
        Ok(match answer.inspect_err(warn(req.jti))? {
            Some(Answer::Yes(Some(value))) => ResumeGrant::decode(&value),
            Some(Answer::Yes(None) | Answer::No) | None => None,
            Some(Answer::EpochChanged) => {
                return Err(StoreError("burn store epoch keeps changing".into()));
            }
        })
    }

    async fn is_burned(&self, req: &BurnRequest<'_>) -> Result<bool, StoreError> {
        let answer = self.run_script(Op::IsBurned, req).await;
        Ok(match answer.inspect_err(warn(req.jti))? {
            Some(Answer::No) => false,
            Some(Answer::Yes(_)) | None => true,
            Some(Answer::EpochChanged) => {
                return Err(StoreError("burn store epoch keeps changing".into()));
            }
        })
    }

    async fn ready(&self) -> Result<(), StoreError> {
        // Logged by `/readyz`, which is the only caller.
        let boundary = self.check_epochs().await?;
        let now = shared::unix_now();
        if now < boundary {
            return Err(StoreError(format!(
                "burn store lost its records; tokens issued before {boundary} are refused, \
                 ready in {} s",
                boundary - now
            )));
        }
        Ok(())
    }

    fn forgets_on_restart(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_over_every_bucket() {
        let mut seen = [0u32; BUCKETS];
        for _ in 0..BUCKETS * 64 {
            seen[bucket(&Jti::generate())] += 1;
        }
        assert!(seen.iter().all(|&n| n > 16), "{seen:?}");
    }

    #[test]
    fn an_epoch_names_its_boundary() {
        let before = shared::unix_now();
        let epoch = Epoch::new(5);
        assert_eq!(Epoch::parse(epoch.value.to_string()).unwrap(), epoch);
        assert!(
            epoch.boundary >= before + 1 + 5,
            "the next second, past the leeway"
        );
        assert!(Epoch::parse("garbage".into()).is_err());
    }
    fn epoch(boundary: u64) -> Epoch {
        Epoch::parse(format!("{boundary}-x")).unwrap()
    }

    #[test]
    fn a_batched_burn_is_decided_by_its_set_unless_issued_before_the_epoch_it_met() {
        let burn = |set, met| Batched { set, met };
        // The known epoch: the `SET`'s answer.
        assert_eq!(burn(true, Met::Known).burned(10, None), Some(true));
        assert_eq!(burn(false, Met::Known).burned(10, None), Some(false));
        // Another epoch, or none (then the one made since): the `SET`'s answer for a token
        // issued at or after its boundary, never a second burn of its own id.
        for met in [Met::Other("20-y".into()), Met::Missing] {
            assert_eq!(
                burn(true, met.clone()).burned(20, Some(&epoch(20))),
                Some(true)
            );
            assert_eq!(
                burn(false, met.clone()).burned(21, Some(&epoch(20))),
                Some(false)
            );
            // Issued before it: perhaps burned before the loss, refused.
            assert_eq!(burn(true, met.clone()).burned(19, Some(&epoch(20))), None);
            assert_eq!(burn(true, met).burned(19, None), None);
        }
    }

    #[test]
    fn a_batchs_replies_are_read_burn_by_burn() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let replies = vec![
            Value::Array(vec![bulk("1-a"), bulk("2-b"), Value::Nil, bulk("1-a")]),
            Value::Okay,
            Value::Nil,
            Value::SimpleString("OK".into()),
            Value::Int(3),
        ];
        let read = read_burns(["1-a", "1-a", "1-a", "1-a"].into_iter(), replies).unwrap();
        let read: Vec<_> = read.into_iter().map(|r| r.map_err(|e| e.0)).collect();
        assert_eq!(
            read[0],
            Ok(Batched {
                set: true,
                met: Met::Known
            })
        );
        assert_eq!(
            read[1],
            Ok(Batched {
                set: false,
                met: Met::Other("2-b".into())
            })
        );
        assert_eq!(
            read[2],
            Ok(Batched {
                set: true,
                met: Met::Missing
            })
        );
        // A reply that is no `SET`'s fails its own burn only.
        assert!(read[3].is_err(), "{:?}", read[3]);
        // Replies that are not the batch's fail them all.
        let short = vec![Value::Array(vec![bulk("1-a")]), Value::Okay];
        assert!(read_burns(["1-a", "1-a"].into_iter(), short).is_err());
        assert!(read_burns(["1-a"].into_iter(), Vec::new()).is_err());
        assert!(
            read_burns(std::iter::empty(), Vec::new())
                .unwrap()
                .is_empty()
        );
    }
}
