//! `--help` never prints a secret: the Redis password of `--burn-store`, whether it comes from
//! the environment or from `--config FILE`.

use std::process::Command;

const SECRET: &str = "hunter2-redis-secret";

fn help(env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_download-server"))
        .arg("--help")
        .env_remove("BURN_STORE")
        .env_remove("BURNLINK_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("download-server --help runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

#[test]
fn help_hides_the_burn_store_password_from_the_environment() {
    let url = format!("redis://burner:{SECRET}@redis.internal:6379/0");
    let text = help(&[("BURN_STORE", &url)]);
    assert!(text.contains("BURN_STORE"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn help_hides_the_burn_store_password_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dl.toml");
    std::fs::write(
        &path,
        format!("burn-store = \"redis://:{SECRET}@redis/0\"\nleeway = 7\n"),
    )
    .unwrap();
    let text = help(&[("BURNLINK_CONFIG", path.to_str().unwrap())]);
    assert!(!text.contains(SECRET), "{text}");
    assert!(
        text.contains("[default: 7]"),
        "other file values still show: {text}"
    );
}

#[test]
fn help_hides_the_s3_secret_access_key_from_the_environment() {
    let text = help(&[("AWS_SECRET_ACCESS_KEY", SECRET)]);
    assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}
