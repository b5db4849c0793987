//! All integration tests in one binary: each test starts its own servers on port 0 with its
//! own data dir, so they run in parallel and in any order.

mod attacks;
mod download;
mod files;
mod session;
mod token_format;
