//! Prometheus metrics of the download server, served at `GET /metrics` (text format 0.0.4) on
//! a listener of its own, `--metrics-bind` ([`server_kit::metrics::MetricsServer`]).
//!
//! Every series is resolved once at start: the hot path only bumps atomics, never formats a
//! label or looks one up. The registry lives in [`crate::state::AppState`], not in a global,
//! so each server (and each test's server) counts for itself.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use shared::record::Outcome;

/// The download server's series.
pub struct Metrics {
    registry: Registry,
    /// `burnlink_downloads_total{outcome}`, one pre-resolved counter per [`Outcome`].
    downloads: [IntCounter; Outcome::COUNT],
    /// `burnlink_download_bytes_sent_total`: body bytes handed to clients.
    pub bytes_sent: IntCounter,
    /// `burnlink_active_streams`: bodies being streamed right now.
    pub active_streams: IntGauge,
    /// `burnlink_burn_store_seconds`: how long `burn` took, whatever it answered.
    pub burn_seconds: Histogram,
    /// `burnlink_verify_batch_tokens`: Ed25519 tokens checked together, one observation per
    /// batch (see [`crate::keys`]).
    pub verify_batch_tokens: Histogram,
    /// `burnlink_audit_dropped_total`: audit lines lost because the writer fell behind.
    pub audit_dropped: IntCounter,
    /// `burnlink_outcomes_dropped_total`: outcome events not published to the stream.
    pub outcomes_dropped: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        // Registration only fails on a duplicate or malformed name: fixed names below, so a
        // failure is a programming error caught by the unit test.
        Self::try_new().expect("metric names are valid and unique")
    }

    fn try_new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let downloads = IntCounterVec::new(
            Opts::new(
                "burnlink_downloads_total",
                "Download attempts by outcome (a HEAD answered is `head`).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(downloads.clone()))?;
        let downloads =
            std::array::from_fn(|i| downloads.with_label_values(&[Outcome::ALL[i].as_str()]));
        let bytes_sent = IntCounter::new(
            "burnlink_download_bytes_sent_total",
            "File bytes sent to clients.",
        )?;
        registry.register(Box::new(bytes_sent.clone()))?;
        let active_streams = IntGauge::new(
            "burnlink_active_streams",
            "Downloads being streamed right now.",
        )?;
        registry.register(Box::new(active_streams.clone()))?;
        let burn_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "burnlink_burn_store_seconds",
                "Time to burn a token id in the burn store, in seconds.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ]),
        )?;
        registry.register(Box::new(burn_seconds.clone()))?;
        let verify_batch_tokens = Histogram::with_opts(
            HistogramOpts::new(
                "burnlink_verify_batch_tokens",
                "Ed25519 tokens whose signatures were verified together, per batch.",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )?;
        registry.register(Box::new(verify_batch_tokens.clone()))?;
        let audit_dropped = IntCounter::new(
            "burnlink_audit_dropped_total",
            "Audit lines not written because the audit writer fell behind or failed.",
        )?;
        registry.register(Box::new(audit_dropped.clone()))?;
        let outcomes_dropped = IntCounter::new(
            "burnlink_outcomes_dropped_total",
            "Download outcome events not published because the queue was full or Redis failed.",
        )?;
        registry.register(Box::new(outcomes_dropped.clone()))?;
        Ok(Metrics {
            registry,
            downloads,
            bytes_sent,
            active_streams,
            burn_seconds,
            verify_batch_tokens,
            audit_dropped,
            outcomes_dropped,
        })
    }

    /// Counts one download attempt.
    pub fn download(&self, outcome: Outcome) {
        self.downloads[outcome as usize].inc();
    }

    /// Everything, in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        server_kit::metrics::render(&self.registry)
    }

    /// The registry, for the metrics listener (which may serve several servers' registries).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_series() {
        let metrics = Metrics::try_new().expect("registers");
        metrics.download(Outcome::Used);
        metrics.download(Outcome::Used);
        metrics.download(Outcome::PrefetchDeclined);
        let text = metrics.render();
        assert!(
            text.contains("burnlink_downloads_total{outcome=\"used\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("burnlink_downloads_total{outcome=\"prefetch_declined\"} 1"),
            "{text}"
        );
        for outcome in Outcome::ALL {
            assert!(
                text.contains(&format!("{{outcome=\"{}\"}}", outcome.as_str())),
                "{outcome:?} missing: {text}"
            );
        }
    }
}
