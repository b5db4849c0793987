pub mod download;
pub mod health;
