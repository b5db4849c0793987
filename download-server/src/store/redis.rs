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
/// second it was created. Every burn is one Lua script that checks, atomically with the
/// `SET NX`, that the bucket's epoch is still the one this server knows: a bucket whose epoch
/// is gone or new has lost its records, so the server learns (or creates) the new epoch and
/// refuses every token issued before it, as the memory store refuses tokens issued before its
/// start. Buckets share a hash tag with their ids, so on a cluster each node's loss is seen
/// for the ids it holds. Epochs are also checked every second, and by `/readyz`, which is not
/// ready until the seconds refused by a new epoch are over.
///
/// **Replicas.** With `--burn-store-replicas N`, a burn is served only once `WAIT N` says that
/// many replicas have it (standalone Redis), so a failover cannot forget it.
///
/// **Group commit.** On one Redis, burns go out in batches: one task sends every burn queued
/// while the previous batch was on its way as one script call ([`BURN_MANY`]) and, with
/// replicas, one `WAIT` for the whole batch. A lone burn goes at once; under load Redis runs
/// one script per batch instead of one per download (issue 18). A cluster takes one script per
/// burn, as a script may only touch the keys of one slot.
///
/// **Outcomes ride with burns.** When the outcome stream is the burn store's own Redis
/// (`--outcomes-redis auto`, one Redis), [`RedisStore::outcome_sink`] queues finished
/// downloads' records for the same task, and the next batch's script appends them to the
/// stream as one entry (one `XADD` inside [`BURN_MANY`], after the burns, through
/// `redis.pcall` so a stream that refuses it never changes a burn's answer): one round trip
/// per download under load instead of a burn and an `XADD`, and one `XADD` per batch
/// (issue 29). Records wait for a burn at most `--outcomes-linger-ms` (50 ms by default),
/// then go on their own in the same script with no burns. A cluster, or an outcome stream on
/// another Redis, keeps the stream's own writer ([`crate::outcome::redis::RedisStreamSink`]).
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
/// Records appended by one script call, at most.
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

/// Burns queued for one batch, at most: a script this long runs in well under a millisecond.
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
    /// The script's answer for this burn (1, 0 or -1), once replicated when replicas are
    /// asked for.
    reply: oneshot::Sender<Result<i64, StoreError>>,
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
    burn_many: Script,
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

/// [`BURN`] for many ids at once: `KEYS` holds the n burns' epoch keys, then their ids, `ARGV`
/// each burn's known epoch, life and value; one answer per burn, in order. The batch's epochs
/// are read by one `MGET`, not one `GET` per burn (the batch path is a single Redis's, which
/// holds every bucket; a cluster's buckets are in many slots and burn one script each). Then the outcome records, when there are any: the
/// stream is the last key (an odd count of keys), and after the burns' arguments come the
/// stream's `MAXLEN ~` and one entry holding every record ([`shared::record::stream_entry`]),
/// appended after every burn is decided. The last answer is 1 when the stream refused it.
const BURN_MANY: &str = r"
local n = math.floor(#KEYS / 2)
local out = {}
if n > 0 then
  local epochs = redis.call('MGET', unpack(KEYS, 1, n))
  for i = 1, n do
    local a = 3 * i - 2
    if epochs[i] ~= ARGV[a] then
      out[i] = -1
    elseif redis.call('SET', KEYS[n + i], ARGV[a + 2], 'NX', 'PX', ARGV[a + 1]) then
      out[i] = 1
    else
      out[i] = 0
    end
  end
end
local refused = 0
if #KEYS > 2 * n then
  local id = redis.pcall('XADD', KEYS[#KEYS], 'MAXLEN', '~', ARGV[3 * n + 1], '*', 'e',
    ARGV[3 * n + 2])
  if type(id) == 'table' and id.err then refused = 1 end
end
out[n + 1] = refused
return out
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
                burn_many: Script::new(BURN_MANY),
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
        let epoch = Epoch::parse(value)?;
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
        Ok(epoch)
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
            let answer = match (op, &self.burns) {
                (Op::Burn { life_ms, value }, Some(burns)) => {
                    let (reply, answer) = oneshot::channel();
                    let burn = Queued {
                        bucket,
                        key: burn_key(bucket, req.jti),
                        epoch: epoch.value.clone(),
                        life_ms,
                        value: value.clone(),
                        reply,
                    };
                    Value::Int(self.queue_burn(burns, burn, answer).await?)
                }
                _ => {
                    let mut call = op.script(&self.epochs).prepare_invoke();
                    call.key(epoch_key(bucket))
                        .key(burn_key(bucket, req.jti))
                        .arg(&*epoch.value);
                    if let Op::Burn { life_ms, value } = op {
                        call.arg(life_ms).arg(&**value);
                    }
                    let mut conn = self.conn.clone();
                    self.within(self.timeout, call.invoke_async(&mut conn))
                        .await?
                }
            };
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

    /// Queues `burn` for the batching task and waits for its answer: within the deadline for
    /// the script, and the `WAIT` one beside it when replicas are asked for. A burn whose
    /// caller stopped waiting before its batch left is not sent.
    async fn queue_burn(
        &self,
        burns: &mpsc::Sender<Queued>,
        burn: Queued,
        answer: oneshot::Receiver<Result<i64, StoreError>>,
    ) -> Result<i64, StoreError> {
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

    /// The batching task: sends every burn queued meanwhile as one [`BURN_MANY`] call (and one
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

    /// One [`BURN_MANY`] call: `batch`'s burns (each handed its answer), then `records`
    /// appended to the outcome stream. How many records were not written.
    async fn send_batch(&self, batch: &mut Vec<Queued>, records: &[String], maxlen: u64) -> u64 {
        let mut call = self.epochs.burn_many.prepare_invoke();
        for burn in batch.iter() {
            call.key(epoch_key(burn.bucket));
        }
        for burn in batch.iter() {
            call.key(&burn.key)
                .arg(&*burn.epoch)
                .arg(burn.life_ms)
                .arg(&*burn.value);
        }
        if !records.is_empty() {
            call.key(OUTCOME_STREAM)
                .arg(stream_maxlen(maxlen, records.len()))
                .arg(stream_entry(records));
        }
        let mut conn = self.conn.clone();
        let answers: Result<Vec<i64>, StoreError> = self
            .within(self.timeout, call.invoke_async(&mut conn))
            .await;
        // The last answer says whether the stream refused the records; the rest are the
        // burns'.
        let answers = match answers {
            Ok(mut a) if a.len() == batch.len() + 1 => {
                let lost = match a.pop() {
                    Some(0) => 0,
                    _ => records.len() as u64,
                };
                Ok((a, lost))
            }
            Ok(a) => Err(StoreError(format!(
                "{} answers for {} burns",
                a.len(),
                batch.len()
            ))),
            Err(e) => Err(e),
        };
        // The records the script ran for were written (or counted refused) whatever `WAIT`
        // says of the burns.
        let (answers, lost) = match answers {
            // Something was burned: served only once the replicas asked for have it.
            Ok((a, lost)) if a.contains(&1) => (self.replicated().await.map(|()| a), lost),
            Ok((a, lost)) => (Ok(a), lost),
            Err(e) => (Err(e), records.len() as u64),
        };
        match answers {
            Ok(answers) => {
                for (burn, answer) in batch.drain(..).zip(answers) {
                    let _ = burn.reply.send(Ok(answer));
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
}
