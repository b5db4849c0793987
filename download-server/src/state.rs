use std::path::PathBuf;

use shared::Verifier;

/// What every handler shares, built once in [`crate::Application::build`].
pub struct AppState<S> {
    pub verifier: Verifier,
    pub store: S,
    /// `<data dir>/files`: the only directory files are read from.
    pub files: PathBuf,
    /// Bytes per read when streaming.
    pub read_buffer: usize,
}
