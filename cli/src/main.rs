//! `burnlink`: the command-line client of a burnlink app server, for scripts and people.
//!
//! Authenticates with a personal access token (`--token` / `BURNLINK_TOKEN`, made on the app's
//! Access tokens page); `get` needs none. Prints one plain line per result (or the API's JSON
//! object with `--json`) on stdout, messages on stderr, and exits with a code a script can act
//! on ([`Failure::exit_code`]).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

mod api;
mod get;
mod tus;

use api::{Api, Failure};

#[derive(Parser)]
#[command(
    name = "burnlink",
    version,
    about = "Upload files to burnlink, mint one-time links and shares, download them"
)]
#[command(
    after_help = "Exit codes: 0 done; 1 the server refused (its message is printed); \
    2 usage; 3 the server could not be reached or the transfer broke; 4 a local file error."
)]
struct Cli {
    /// The app server's URL.
    #[arg(
        long,
        env = "BURNLINK_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// A personal access token (`blpat_…`).
    #[arg(long, env = "BURNLINK_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON object instead of the plain line.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload a file; prints its id (scope files:write). From 4 MiB on it goes through tus
    /// (docs/UPLOADS.md) and resumes by itself after a broken connection, and in a later run.
    /// With --to, send it through someone's upload link instead (no token needed; from 4 MiB
    /// on through tus too, resuming within the run); prints its name and size.
    Upload {
        file: PathBuf,
        /// Failures in a row a large upload resumes after before giving up.
        #[arg(long, default_value_t = 8)]
        retries: u32,
        /// An upload link, `<app>/u/<secret>`.
        #[arg(long, value_name = "LINK")]
        to: Option<String>,
        /// With --to: read the link's password from standard input (first line).
        #[arg(long, requires = "to")]
        password_stdin: bool,
    },
    /// List your files: id, size in bytes, name (scope files:read).
    Ls,
    /// Mint a one-time download URL for a file (scope links:mint).
    Link {
        /// The file's id (base64url: it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Create a share link; prints its URL (scope shares:write).
    Share {
        /// The file's id (base64url: it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Lifetime: seconds, or a number with s, m, h, d or w (`7d`).
        #[arg(long, value_parser = parse_duration)]
        expires: Option<u64>,
        /// How many downloads it allows.
        #[arg(long)]
        downloads: Option<u64>,
        /// Read a password for the share from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Download a one-time URL or a share URL to a file, resuming if the connection breaks.
    Get {
        url: String,
        /// Where to write the file.
        #[arg(short, long)]
        output: PathBuf,
        /// Read the share's password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a file and its shares (scope files:write).
    Rm {
        /// The file's id (base64url: it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Webhooks: your app hears of downloads and shares, signed (docs/WEBHOOKS.md).
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Add an endpoint; prints its id and its signing secret, shown only now (scope
    /// webhooks:write).
    Add {
        /// Where events are sent: `https://…`.
        #[arg(value_name = "URL")]
        endpoint: String,
        /// Events to send, comma-separated: download.completed, download.partial,
        /// share.exhausted, share.expired, upload.received.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List your endpoints: id, status, events, URL (scope webhooks:read).
    Ls,
    /// Delete an endpoint (scope webhooks:write).
    Rm {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Send a `webhook.test` event to an endpoint; prints its webhook-id (scope
    /// webhooks:write).
    Test {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

/// `7d` → 604800. A bare number is seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => s.split_at(at),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 3600, 90m, 12h or 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        other => return Err(format!("unknown unit {other:?} (s, m, h, d, w)")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn read_password() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::Local(format!("reading the password from stdin: {e}")))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        return Err(Failure::Usage(
            "--password-stdin: standard input is empty".into(),
        ));
    }
    Ok(line)
}

/// The password from standard input when `--password-stdin` was given.
fn password_if(password_stdin: bool) -> Result<Option<String>, Failure> {
    password_stdin.then(read_password).transpose()
}

/// Whether progress bars are drawn: only for a person watching.
pub fn show_progress() -> bool {
    std::io::stderr().is_terminal()
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let api = || Api::new(&cli.url, cli.token.as_deref());
    let print = |value: &Value, plain: String| {
        if cli.json {
            println!("{value}");
        } else if !plain.is_empty() {
            println!("{plain}");
        }
    };
    match &cli.command {
        Command::Upload {
            file,
            retries,
            to: None,
            password_stdin: _,
        } => {
            let api = api()?;
            let len = std::fs::metadata(file)
                .map_err(|e| Failure::Local(format!("{}: {e}", file.display())))?
                .len();
            let info = if len >= tus::THRESHOLD {
                tus::upload(&tus::Endpoint::own(&api), file, *retries).await?
            } else {
                api.upload(file).await?
            };
            print(&info, str_field(&info, "id"));
        }
        Command::Upload {
            file,
            retries,
            to: Some(link),
            password_stdin,
        } => {
            let password = password_if(*password_stdin)?;
            let arrived = api::upload_to(link, file, password.as_deref(), *retries).await?;
            print(
                &arrived,
                format!("{}\t{}", str_field(&arrived, "name"), arrived["size"]),
            );
        }
        Command::Ls => {
            let list = api()?.get_json("/api/files").await?;
            let lines: Vec<String> = list
                .as_array()
                .map(|files| {
                    files
                        .iter()
                        .map(|f| {
                            format!(
                                "{}\t{}\t{}",
                                str_field(f, "id"),
                                f["size"],
                                str_field(f, "name")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            print(&list, lines.join("\n"));
        }
        Command::Link { id } => {
            let link = api()?
                .post_json(&format!("/api/files/{}/link", api::segment(id)), None)
                .await?;
            print(&link, str_field(&link, "url"));
        }
        Command::Share {
            id,
            expires,
            downloads,
            password_stdin,
        } => {
            let password = password_if(*password_stdin)?;
            let body = json!({
                "expires_in_secs": expires,
                "max_downloads": downloads,
                "password": password,
            });
            let share = api()?
                .post_json(
                    &format!("/api/files/{}/shares", api::segment(id)),
                    Some(body),
                )
                .await?;
            print(&share, str_field(&share, "url"));
        }
        Command::Get {
            url,
            output,
            password_stdin,
        } => {
            let password = password_if(*password_stdin)?;
            let done = get::download(url, output, password.as_deref()).await?;
            let summary = json!({
                "file": output.display().to_string(),
                "bytes": done.bytes,
                "resumed": done.resumed,
            });
            print(&summary, String::new());
        }
        Command::Rm { id } => {
            api()?
                .delete(&format!("/api/files/{}", api::segment(id)))
                .await?;
            print(&json!({ "id": id, "deleted": true }), String::new());
        }
        Command::Webhook(command) => webhook(&api()?, command, print).await?,
    }
    Ok(())
}

async fn webhook(
    api: &Api,
    command: &WebhookCommand,
    print: impl Fn(&Value, String),
) -> Result<(), Failure> {
    match command {
        WebhookCommand::Add {
            endpoint,
            events,
            description,
        } => {
            let body = json!({ "url": endpoint, "events": events, "description": description });
            let created = api.post_json("/api/webhooks", Some(body)).await?;
            let plain = format!(
                "{}\t{}",
                str_field(&created, "id"),
                str_field(&created, "secret")
            );
            print(&created, plain);
            eprintln!("burnlink: the secret is shown only now; your receiver verifies with it");
        }
        WebhookCommand::Ls => {
            let list = api.get_json("/api/webhooks").await?;
            let lines: Vec<String> = list
                .as_array()
                .map(|hooks| {
                    hooks
                        .iter()
                        .map(|h| {
                            let events: Vec<&str> = h["events"]
                                .as_array()
                                .map(|e| e.iter().filter_map(Value::as_str).collect())
                                .unwrap_or_default();
                            format!(
                                "{}\t{}\t{}\t{}",
                                str_field(h, "id"),
                                str_field(h, "status"),
                                events.join(","),
                                str_field(h, "url")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            print(&list, lines.join("\n"));
        }
        WebhookCommand::Rm { id } => {
            api.delete(&format!("/api/webhooks/{}", api::segment(id)))
                .await?;
            print(&json!({ "id": id, "deleted": true }), String::new());
        }
        WebhookCommand::Test { id } => {
            let sent = api
                .post_json(&format!("/api/webhooks/{}/test", api::segment(id)), None)
                .await?;
            print(&sent, str_field(&sent, "event_id"));
        }
    }
    Ok(())
}

fn str_field(value: &Value, name: &str) -> String {
    value[name].as_str().unwrap_or_default().to_owned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("burnlink: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        assert!(parse_duration("7y").is_err());
        assert!(parse_duration("d").is_err());
    }

    #[test]
    fn the_arguments_parse() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
