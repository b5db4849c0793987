pub mod download;
pub mod health;
pub mod metrics;
