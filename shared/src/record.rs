//! The record of one download attempt, the data contract between the servers: the download
//! server writes it (its audit file, its outcome events), the app server reads it (recent
//! downloads, share give-backs). One type, both ways.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The Redis Stream every download server of a fleet appends its records to (one JSON
/// [`DownloadRecord`] per entry) and every app server reads with one consumer group.
pub const OUTCOME_STREAM: &str = "burnlink:outcomes";

/// How a download attempt ended: the `outcome` of the audit record and of
/// `burnlink_downloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    pub const ALL: [Outcome; 13] = [
        Outcome::Ok,
        Outcome::Partial,
        Outcome::Used,
        Outcome::Expired,
        Outcome::Invalid,
        Outcome::NotFound,
        Outcome::Unavailable,
        Outcome::RangeNotSatisfiable,
        Outcome::PrefetchDeclined,
        Outcome::Error,
        Outcome::Resumed,
        Outcome::FileChanged,
        Outcome::Head,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Used => "used",
            Outcome::Expired => "expired",
            Outcome::Invalid => "invalid",
            Outcome::NotFound => "not_found",
            Outcome::Unavailable => "unavailable",
            Outcome::RangeNotSatisfiable => "range_not_satisfiable",
            Outcome::PrefetchDeclined => "prefetch_declined",
            Outcome::Error => "error",
            Outcome::Resumed => "resumed",
            Outcome::FileChanged => "file_changed",
            Outcome::Head => "head",
        }
    }
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
