//! `--issuer` and `--audience`: the claims the app server signs into every token and the only
//! ones the download server accepts, so one flag group that both servers flatten.

/// The token's `iss` and `aud`. Both servers read the same variables with the same defaults,
/// so a fleet configured once through the environment agrees.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct TokenArgs {
    /// `iss` of every token: what the app server signs, and the only one the download server
    /// accepts.
    #[arg(long, env = "BURNLINK_ISSUER", default_value = "burnlink-app")]
    pub issuer: String,

    /// `aud` of every token: what the app server signs, and the only one the download server
    /// accepts.
    #[arg(long, env = "BURNLINK_AUDIENCE", default_value = "burnlink-download")]
    pub audience: String,
}
