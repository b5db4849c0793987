//! The record of one download attempt, the data contract between the servers: the download
//! server writes it (its audit file, its outcome events), the app server reads it (recent
//! downloads, share give-backs). One type, both ways.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The Redis Stream every download server of a fleet appends its records to and every app
/// server reads with one consumer group. An entry holds the records one writer had queued,
/// as JSON Lines in its field `e` (see [`stream_entry`]).
pub const OUTCOME_STREAM: &str = "burnlink:outcomes";

/// One stream entry's `e`: the records (each a JSON [`DownloadRecord`], which never holds a
/// raw newline) joined by `\n`. One record is an entry of one line, as before entries held
/// several (issue 29): one `XADD` per batch of records, not one per record.
pub fn stream_entry(records: &[String]) -> String {
    records.join("\n")
}

/// The `MAXLEN ~` for an entry of `in_entry` records when the stream should keep about
/// `records` of them: entries are trimmed as if each held as many as this one. Entries of
/// one size keep about `records`; a burst of large entries followed by small ones keeps at
/// most about twice that.
pub fn stream_maxlen(records: u64, in_entry: usize) -> u64 {
    records.div_ceil(in_entry.max(1) as u64).max(1)
}

/// The records of the entry `entry_id` whose `e` is `lines`, each with its event id: the
/// entry id for the first, `<entry id>/<n>` for the nth after it, so a redelivered entry
/// names each record as it did the first time.
pub fn stream_records<'a>(
    entry_id: &'a str,
    lines: &'a str,
) -> impl Iterator<Item = (Cow<'a, str>, &'a str)> {
    lines.split('\n').enumerate().map(move |(n, line)| {
        let id = match n {
            0 => Cow::Borrowed(entry_id),
            n => Cow::Owned(format!("{entry_id}/{n}")),
        };
        (id, line)
    })
}

/// How a download attempt ended: the `outcome` of the audit record and of
/// `burnlink_downloads_total`. Names and the list of variants are derived (serde and strum
/// agree on `snake_case`; a test holds them to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::VariantArray, strum::EnumCount, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// The whole requested range was sent.
    Ok = 0,
    /// Burned, but the client went away before the whole range was sent.
    Partial,
    /// Already burned (410).
    Used,
    /// Expired (401).
    Expired,
    /// Missing, malformed, badly signed or otherwise invalid token (401).
    Invalid,
    /// The file is gone (404); nothing burned.
    NotFound,
    /// The burn store could not answer (503); nothing burned, nothing served.
    Unavailable,
    /// 416; nothing burned.
    RangeNotSatisfiable,
    /// A prefetch, refused (503); nothing burned.
    PrefetchDeclined,
    /// A server-side failure (500), e.g. the file could not be read.
    Error,
    /// The rest of an earlier download of the same token, sent whole (206) to the client that
    /// holds its resume secret: one download in several parts, not another download.
    Resumed,
    /// A resume refused because the file changed since the download started (412).
    FileChanged,
    /// A `HEAD` answered (a link checker, a scanner, a probe); nothing burned. Audited so the
    /// owner sees who looked at a link without using it.
    Head,
}

impl Outcome {
    /// Every outcome, in discriminant order (the metrics index by it).
    pub const ALL: &'static [Outcome] = <Outcome as strum::VariantArray>::VARIANTS;
    /// How many outcomes there are.
    pub const COUNT: usize = <Outcome as strum::EnumCount>::COUNT;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether bytes went out (or may have): the one "served" rule. A link whose download was
    /// served is never given back to its share, and the owner's download lists show only
    /// served attempts. A partial download counts, or all-but-the-last-byte could be taken
    /// forever; a server error after the burn counts too (it may have been mid-transfer). A
    /// resumed part does not: its download was counted when it was first served.
    pub const fn served(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Partial | Outcome::Error)
    }
}

/// One download attempt, as the app server stores it: the record both servers agree on,
/// owned.
pub type OutcomeEvent = DownloadRecord<'static>;

/// Where download outcomes go besides the audit log: the seam through which the app server
/// learns what happened to the links it minted. Receives every attempt that carried a
/// verified token (attempts without one concern no link). A sink never slows or refuses a
/// download: it is handed a record and must return at once (queue it, drop it when full).
/// Backends: the app's in-process sink (all-in-one) and the download server's Redis Stream
/// ([`OUTCOME_STREAM`]). The record is borrowed from the download: a sink takes what it
/// queues (the stream's JSON, one allocation, made on the download's own thread).
pub trait OutcomeSink: Send + Sync + 'static {
    /// `json` is the same record as JSON when the caller has made it already (the audit
    /// file's line): a sink that queues JSON copies it rather than serializing again.
    fn send(&self, record: &DownloadRecord<'_>, json: Option<&str>);
}

/// One download attempt. Never the token. Written borrowed (no copy on the download path), read
/// owned (`DownloadRecord<'static>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRecord<'a> {
    /// Unix milliseconds at the end of the attempt.
    pub time_ms: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Cow<'a, str>>,
    /// The user id the token carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<Cow<'a, str>>,
    /// The storage key the token named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Cow<'a, str>>,
    /// The download name the token named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    pub status: u16,
    pub bytes: u64,
    /// The TCP peer (the reverse proxy, when there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    /// `X-Forwarded-For` as received, unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<Cow<'a, str>>,
    /// The request id the response carried as `X-Request-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Cow<'a, str>>,
}

impl DownloadRecord<'_> {
    /// The same record, owning its text.
    pub fn into_owned(self) -> DownloadRecord<'static> {
        let own = |c: Option<Cow<'_, str>>| c.map(|c| Cow::Owned(c.into_owned()));
        DownloadRecord {
            time_ms: self.time_ms,
            outcome: self.outcome,
            jti: own(self.jti),
            sub: own(self.sub),
            file: own(self.file),
            name: own(self.name),
            status: self.status,
            bytes: self.bytes,
            client: self.client,
            forwarded_for: own(self.forwarded_for),
            user_agent: own(self.user_agent),
            request_id: own(self.request_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_entry_gives_back_its_records_each_with_its_own_id() {
        let record = |jti: &'static str| DownloadRecord {
            time_ms: 1,
            outcome: Outcome::Ok,
            jti: Some(Cow::Borrowed(jti)),
            sub: None,
            file: None,
            name: Some(Cow::Borrowed("two\nlines.txt")),
            status: 200,
            bytes: 3,
            client: None,
            forwarded_for: None,
            user_agent: None,
            request_id: None,
        };
        let records: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|jti| serde_json::to_string(&record(jti)).expect("serializes"))
            .collect();
        let entry = stream_entry(&records);
        let read: Vec<(String, DownloadRecord<'static>)> = stream_records("17-0", &entry)
            .map(|(id, line)| {
                let record: DownloadRecord<'_> = serde_json::from_str(line).expect("one record");
                (id.into_owned(), record.into_owned())
            })
            .collect();
        let ids: Vec<&str> = read.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["17-0", "17-0/1", "17-0/2"]);
        assert_eq!(read[2].1, record("c"));
        // An entry of one record (as every entry was before) reads as it always did.
        let one: Vec<_> = stream_records("9-1", &records[0]).collect();
        assert_eq!(one, [(Cow::Borrowed("9-1"), records[0].as_str())]);
    }

    #[test]
    fn an_entry_of_many_records_is_trimmed_as_many() {
        assert_eq!(stream_maxlen(100_000, 1), 100_000);
        assert_eq!(stream_maxlen(100_000, 11), 9_091);
        assert_eq!(stream_maxlen(100_000, 0), 100_000);
        assert_eq!(stream_maxlen(5, 256), 1);
    }

    #[test]
    fn outcomes_are_listed_in_discriminant_order() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?}");
            let json = serde_json::to_string(outcome).expect("serializes");
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
        }
    }
}
