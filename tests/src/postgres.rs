//! A PostgreSQL database of its own for one test: a fresh database on the server `DATABASE_URL`
//! names, else a private throw-away cluster when the server binaries are installed, else a
//! skip (a failure under `CI=true`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{Connection, PgConnection};

use crate::TestApp;

/// How long a private cluster may take to accept connections.
const START_TIMEOUT_SECS: u32 = 60;

/// A database only this test uses, removed when dropped.
pub struct PgDatabase {
    url: String,
    /// `CREATE DATABASE`d on the `DATABASE_URL` server: dropped there on drop.
    on_server: Option<OnServer>,
    /// A private cluster: stopped on drop.
    _cluster: Option<Cluster>,
}

struct OnServer {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    /// The `postgres://` URL of the database, as `--database-url` takes it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A direct connection, for looking at what the app stored.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDatabase")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The harness configuration ([`crate::test_config`]), on `pg` instead of SQLite.
pub fn on_postgres(data_dir: &Path, pg: &PgDatabase) -> app_server::Config {
    let mut config = crate::test_config(data_dir);
    config.database_url = Some(pg.url().to_owned());
    config
}

/// Two app servers behind one load balancer: one database (`pg`), one data directory, one
/// file store (with S3, one bucket), and B mints links for A's download server, so a link
/// minted on either is burned in one place.
pub async fn two_app_servers(data_dir: &Path, pg: &PgDatabase) -> (TestApp, TestApp) {
    let a = crate::start(on_postgres(data_dir, pg)).await;
    let mut config_b = on_postgres(data_dir, pg);
    config_b.download_url = Some(a.dl_url.clone());
    config_b.file_store = a.config.file_store.clone();
    let b = crate::start(config_b).await;
    (a, b)
}

/// A PostgreSQL database for one test, or `None` (after printing why) when there is none to
/// be had. Under `CI=true` there must be one: a skip would hide the tests, so it panics.
pub async fn database() -> Option<PgDatabase> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        return Some(on_server(url).await);
    }
    if let Some(bin) = server_binaries() {
        let cluster = Cluster::start(&bin);
        return Some(PgDatabase {
            url: cluster.url("postgres"),
            on_server: None,
            _cluster: Some(cluster),
        });
    }
    let why = "skipped: PostgreSQL not installed and DATABASE_URL not set";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true: PostgreSQL tests must run)");
    }
    eprintln!("{why}");
    None
}

async fn on_server(admin_url: String) -> PgDatabase {
    // Lowercase letters and digits only: a plain identifier, no quoting surprises.
    let suffix: String = shared::random_token(12)
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { 'x' })
        .collect();
    let name = format!("burnlink_test_{suffix}");
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to DATABASE_URL: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = admin.close().await;
    PgDatabase {
        url: with_database(&admin_url, &name),
        on_server: Some(OnServer { admin_url, name }),
        _cluster: None,
    }
}

/// `url` with its database (the path) replaced by `name`; the query is kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let Some(OnServer { admin_url, name }) = self.on_server.take() else {
            return; // A private cluster goes with its own Drop.
        };
        // Best effort, on a runtime of its own: Drop cannot await, and the test's runtime may
        // be this very thread. FORCE ends the connections the app servers still hold.
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::raw_sql(&sql).execute(&mut admin).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: test database {name} was not dropped");
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian and Ubuntu keep them off `PATH`).
fn server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| has_both(dir))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A private cluster: data, socket and log in one temporary directory, no TCP listener, trust
/// authentication for `postgres`, stopped and removed on drop.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// PostgreSQL refuses to run as root: then every server command runs as `postgres`.
    as_postgres: bool,
}

impl Cluster {
    fn start(bin: &Path) -> Cluster {
        // Short base path: a unix socket path must fit in about 100 bytes.
        let dir = tempfile::Builder::new()
            .prefix("burnlink-pg-")
            .tempdir_in(if Path::new("/tmp").is_dir() {
                PathBuf::from("/tmp")
            } else {
                std::env::temp_dir()
            })
            .expect("temp dir for PostgreSQL");
        let as_postgres = running_as_root(dir.path());
        let cluster = Cluster {
            bin: bin.to_owned(),
            dir,
            as_postgres,
        };
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(cluster.dir.path())
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown postgres: {}",
                cluster.dir.path().display()
            );
        }
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        // pg_ctl passes -o through a shell: the socket directory is quoted, and tempfile
        // names have no quotes in them.
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            cluster.dir.path().display()
        );
        let log = cluster.dir.path().join("postgres.log");
        let timeout = START_TIMEOUT_SECS.to_string();
        // -w: return once the server accepts connections, at most -t seconds.
        let started = cluster.try_run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                timeout.as_ref(),
                "start".as_ref(),
            ],
        );
        if let Err(why) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("starting a private PostgreSQL failed: {why}\n{log}");
        }
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A URL sqlx accepts for the socket in our directory: `host=` starting with `/` names a
    /// socket directory, as in libpq, and overrides the placeholder host (sqlx refuses libpq's
    /// empty-host `postgres://user@/db` form).
    fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost/{database}?host={}",
            self.dir.path().display()
        )
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new(runuser());
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn try_run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let mut command = self.command(program);
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{}: {e}", command.get_program().display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        if let Err(why) = self.try_run(program, args) {
            panic!("private PostgreSQL: {why}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        // Immediate: the test is over, nothing needs a clean shutdown.
        let stopped = self.try_run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        if let Err(why) = stopped {
            eprintln!("note: stopping the private PostgreSQL: {why}");
        }
    }
}

/// `runuser` (util-linux), which root's `PATH` has but a trimmed one may not.
fn runuser() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("runuser"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| "runuser".into())
}

/// Whether this process runs as root, judged by the owner of a directory it just created.
fn running_as_root(fresh_dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(fresh_dir).is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls_parse_as_sqlx_expects() {
        use std::str::FromStr;
        let url = "postgres://postgres@localhost/db?host=/tmp/pg-x";
        let options = sqlx::postgres::PgConnectOptions::from_str(url).unwrap();
        assert_eq!(
            options.get_socket().map(PathBuf::as_path),
            Some(Path::new("/tmp/pg-x"))
        );
        assert_eq!(options.get_database(), Some("db"));
        assert_eq!(options.get_username(), "postgres");
        assert!(sqlx::any::AnyConnectOptions::from_str(url).is_ok());
        // libpq's empty-host form is not a URL the url crate accepts.
        assert!(
            sqlx::postgres::PgConnectOptions::from_str("postgres://postgres@/db?host=/x").is_err()
        );
    }

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgresql://u:p@db/app?sslmode=disable", "t2"),
            "postgresql://u:p@db/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://db", "t3"), "postgres://db/t3");
    }
}
