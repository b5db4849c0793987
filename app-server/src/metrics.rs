//! Prometheus metrics of the app server, served at `GET /metrics` (text format 0.0.4). Series
//! are resolved once at start, so counting is one atomic add; the registry lives in
//! [`crate::state::AppState`] (the minted-links counter also in the minter), not in a global.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// How a login attempt ended (`burnlink_logins_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Ok = 0,
    BadCredentials,
    Throttled,
}

impl Login {
    const ALL: [Login; 3] = [Login::Ok, Login::BadCredentials, Login::Throttled];

    fn as_str(self) -> &'static str {
        match self {
            Login::Ok => "ok",
            Login::BadCredentials => "bad_credentials",
            Login::Throttled => "throttled",
        }
    }
}

/// The app server's series.
pub struct Metrics {
    registry: Registry,
    /// `burnlink_tokens_minted_total`: download links handed out.
    pub tokens_minted: IntCounter,
    logins: [IntCounter; Login::ALL.len()],
}

impl Metrics {
    pub fn new() -> Metrics {
        // Fixed, unique, valid names: registration cannot fail (the unit test proves it).
        Self::try_new().expect("metric names are valid and unique")
    }

    fn try_new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let tokens_minted = IntCounter::new(
            "burnlink_tokens_minted_total",
            "Download tokens (one-time links) minted.",
        )?;
        registry.register(Box::new(tokens_minted.clone()))?;
        let logins = IntCounterVec::new(
            Opts::new("burnlink_logins_total", "Login attempts by outcome."),
            &["outcome"],
        )?;
        registry.register(Box::new(logins.clone()))?;
        let logins = Login::ALL.map(|o| logins.with_label_values(&[o.as_str()]));
        Ok(Metrics {
            registry,
            tokens_minted,
            logins,
        })
    }

    pub fn login(&self, outcome: Login) {
        self.logins[outcome as usize].inc();
    }

    /// Everything, in the Prometheus text format 0.0.4.
    /// The registry, for the metrics listener.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn render(&self) -> String {
        server_kit::metrics::render(&self.registry)
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
    fn each_login_outcome_counts_apart() {
        let metrics = Metrics::try_new().expect("registers");
        for (i, outcome) in Login::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i);
        }
        metrics.login(Login::Throttled);
        metrics.tokens_minted.inc();
        let text = metrics.render();
        assert!(
            text.contains("burnlink_logins_total{outcome=\"throttled\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("burnlink_logins_total{outcome=\"ok\"} 0"),
            "{text}"
        );
        assert!(text.contains("burnlink_tokens_minted_total 1"), "{text}");
    }
}
