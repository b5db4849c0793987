use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use app_server::admin::Admin;
use app_server::{Application, Cli, Command, KeysCommand, UserCommand};

#[tokio::main]
async fn main() -> ExitCode {
    // Flags, then environment, then `--config FILE`, then defaults.
    let cli: Cli = server_kit::config_file::parse().unwrap_or_else(|e| e.exit());
    app_server::telemetry::init(cli.config.service.log_format);
    let result = match cli.command {
        None | Some(Command::Serve) => serve(cli.config).await,
        Some(Command::User(command)) => user(cli.config, command).await,
        Some(Command::Keys(KeysCommand::Rotate)) => rotate_keys(cli.config).await,
        Some(Command::Keys(KeysCommand::Revoke { kid })) => revoke_key(cli.config, &kid).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, without a backtrace: this is for the operator.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: app_server::Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    println!(
        "burnlink app on {}  downloads on {}",
        app.public_url(),
        app.download_url()
    );
    if let Some(demo) = app.demo_user() {
        println!(
            "demo user created: open {} and log in as {} with password {}",
            app.public_url(),
            demo.username,
            demo.password
        );
    }
    app.run_until_stopped().await?;
    Ok(())
}

async fn user(config: app_server::Config, command: UserCommand) -> anyhow::Result<()> {
    let password = match command {
        UserCommand::Add { .. } | UserCommand::Passwd { .. } => Some(read_password()?),
        UserCommand::Del { .. } | UserCommand::Admin { .. } => None,
    };
    if let Some(p) = &password
        && p.len() < app_server::users::MIN_PASSWORD_BYTES
    {
        anyhow::bail!(
            "refused: the password must be at least {} bytes (read one line from standard input)",
            app_server::users::MIN_PASSWORD_BYTES
        );
    }
    let admin = Admin::connect(&config).await?;
    let message = admin
        .run(&command, password.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
    println!("{message}");
    Ok(())
}

async fn rotate_keys(config: app_server::Config) -> anyhow::Result<()> {
    let rotation = app_server::keys::rotate_configured(&config).await?;
    println!(
        "new {} signing key {} is active; {} stays published for {} s",
        config.alg, rotation.active_kid, rotation.retired_kid, config.retired_key_publish_secs
    );
    Ok(())
}

async fn revoke_key(config: app_server::Config, kid: &str) -> anyhow::Result<()> {
    let revocation = app_server::keys::revoke_configured(&config, kid).await?;
    if let Some(active) = &revocation.rotated_to {
        println!(
            "{kid} was the active key: new {} signing key {active} is active",
            config.alg
        );
    }
    println!(
        "{kid} revoked: no longer published; servers refuse it within seconds \
         (download servers on --jwks-url within their --jwks-refresh-secs)"
    );
    Ok(())
}

/// One line from standard input, without its line ending.
fn read_password() -> anyhow::Result<String> {
    eprintln!("password (one line on standard input):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}
