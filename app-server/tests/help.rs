//! `--help` never prints a secret: the database password, whether it comes from the
//! environment or from `--config FILE`.

use std::process::Command;

const SECRET: &str = "hunter2-db-secret";

fn help(env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_app-server"))
        .arg("--help")
        .env_remove("DATABASE_URL")
        .env_remove("BURNLINK_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("app-server --help runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

#[test]
fn help_hides_the_database_password_from_the_environment() {
    let url = format!("postgres://app:{SECRET}@db.internal:5432/burnlink");
    let text = help(&[("DATABASE_URL", &url)]);
    assert!(text.contains("DATABASE_URL"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn help_hides_the_database_password_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    std::fs::write(
        &path,
        format!("database-url = \"postgres://app:{SECRET}@db/burnlink\"\ntoken-ttl = 42\n"),
    )
    .unwrap();
    let text = help(&[("BURNLINK_CONFIG", path.to_str().unwrap())]);
    assert!(!text.contains(SECRET), "{text}");
    assert!(
        text.contains("[default: 42]"),
        "other file values still show: {text}"
    );
}
