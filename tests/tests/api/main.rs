//! All integration tests in one binary: each test starts its own servers on port 0 with its
//! own data dir, so they run in parallel and in any order.

mod accounts;
mod attacks;
mod browser;
mod download;
mod faults;
mod file_store;
mod files;
mod fleet;
mod hardening;
mod install_deps;
mod interop;
mod observability;
mod oidc;
mod openapi;
mod pages;
mod postgres;
mod resume;
mod rotation;
mod s3;
mod session;
mod shares;
mod slow_bodies;
mod tls;
mod token_format;
mod tokens;
mod upload_links;
mod uploads;
mod webhooks;
