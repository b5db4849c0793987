//! Browser tests' harness: headless Chromium driven over WebDriver by a private chromedriver.
//!
//! [`start`] finds `chromium` and `chromedriver` (Debian packages of those names; `sudo
//! .ci/install-deps`), else prints `skipped: …` and returns `None` (a failure under `CI=true`).
//! chromedriver is started with `--port=0`, so the OS picks a free port, which is read back
//! from its start-up line: no port is guessed and no race is possible. Each [`Browser`] is
//! its own WebDriver session with a fresh profile and download directory, so two of them are
//! two people who share nothing. Screenshots go to `target/screenshots/<test>/NN-name.png`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for chromedriver to say it listens.
const DRIVER_START: Duration = Duration::from_secs(20);
/// Longest wait for one WebDriver command (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for an element or a download to appear.
pub const WAIT: Duration = Duration::from_secs(15);

const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// A running chromedriver, killed when dropped, and the screenshots of one test.
pub struct Harness {
    driver: Child,
    driver_url: String,
    chromium: PathBuf,
    shots_dir: PathBuf,
    shot: AtomicUsize,
}

/// Starts chromedriver for the test `test` (which names the screenshot folder), or says why
/// browser tests are skipped.
pub async fn start(test: &str) -> Option<Harness> {
    let (Some(chromium), Some(chromedriver)) = (
        find_binary(&["chromium", "chromium-browser", "google-chrome"]),
        find_binary(&["chromedriver"]),
    ) else {
        crate::services::skip("chromium/chromedriver not installed");
        return None;
    };
    let mut child = Command::new(chromedriver)
        .arg("--port=0")
        // Its own process group, so the browsers it starts die with it (see `Drop`).
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(DRIVER_START, async {
        while let Some(line) = lines.next_line().await.expect("chromedriver output") {
            // "ChromeDriver was started successfully on port 46205."
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                return rest.trim_end_matches('.').trim().parse::<u16>().ok();
            }
        }
        None
    })
    .await
    .expect("chromedriver says it listens in time")
    .expect("chromedriver's start-up line names its port");
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let shots_dir = target_dir().join("screenshots").join(test);
    let _ = std::fs::remove_dir_all(&shots_dir);
    std::fs::create_dir_all(&shots_dir).expect("screenshot dir");
    Some(Harness {
        driver: child,
        driver_url: format!("http://127.0.0.1:{port}"),
        chromium,
        shots_dir,
        shot: AtomicUsize::new(0),
    })
}

impl Drop for Harness {
    /// Kills chromedriver's process group: after a failed test, no browser lives on.
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One browser: a WebDriver session with its own fresh profile and download directory.
pub struct Browser {
    pub driver: WebDriver,
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Harness {
    /// A new browser, as a different person would have it; `javascript: false` turns
    /// scripts off, to walk the pages as a browser without them does.
    pub async fn browser(&self, javascript: bool) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = tempfile::tempdir().expect("download dir");
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(&self.chromium.to_string_lossy())
            .expect("binary");
        for arg in CHROMIUM_ARGS {
            caps.add_arg(arg).expect("arg");
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display()))
            .expect("arg");
        let mut prefs = json!({
            "download.default_directory": downloads.path(),
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
            "safebrowsing.enabled": false,
        });
        if !javascript {
            prefs["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        caps.add_experimental_option("prefs", prefs).expect("prefs");
        let driver = WebDriver::builder(&self.driver_url, caps)
            .request_timeout(COMMAND_TIMEOUT)
            .await
            .expect("a Chromium session starts");
        // Belt and braces: headless Chromium honours the prefs, but say it over CDP too.
        driver
            .cdp()
            .send_raw(
                "Browser.setDownloadBehavior",
                json!({ "behavior": "allow", "downloadPath": downloads.path() }),
            )
            .await
            .expect("download behaviour set");
        Browser {
            driver,
            downloads,
            _profile: profile,
        }
    }

    /// Saves what `browser` shows as `NN-name.png` and returns the path.
    pub async fn screenshot(&self, browser: &Browser, name: &str) -> PathBuf {
        let n = self.shot.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.shots_dir.join(format!("{n:02}-{name}.png"));
        browser.driver.screenshot(&path).await.expect("screenshot");
        path
    }
}

impl Browser {
    /// Logs in as alice through the form at `app_url`, as a person types it, and waits for
    /// the file list.
    pub async fn log_in(&self, app_url: &str) {
        self.driver.goto(app_url).await.unwrap();
        self.find("#username")
            .await
            .send_keys(crate::ALICE.0)
            .await
            .unwrap();
        self.find("#password")
            .await
            .send_keys(crate::ALICE.1)
            .await
            .unwrap();
        self.find("form[action='/login'] button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        self.find("#upload-form").await;
    }

    /// The first element matching `css`, waiting for it to be displayed.
    pub async fn find(&self, css: &str) -> WebElement {
        self.driver
            .query(By::Css(css))
            .wait(WAIT, Duration::from_millis(50))
            .and_displayed()
            .first()
            .await
            .unwrap_or_else(|e| panic!("{css} shown within {WAIT:?}: {e}"))
    }

    /// The first element matching `css` whose text contains `text`.
    pub async fn find_text(&self, css: &str, text: &str) -> WebElement {
        self.driver
            .query(By::Css(css))
            .with_text(thirtyfour::stringmatch::StringMatch::new(text).partial())
            .wait(WAIT, Duration::from_millis(50))
            .and_displayed()
            .first()
            .await
            .unwrap_or_else(|e| panic!("{css} with {text:?} shown within {WAIT:?}: {e}"))
    }

    /// Waits until the page's body text contains `text`, and returns the body text.
    ///
    /// The page may navigate between finding `body` and reading its text (a form post, a
    /// redirect): the element is then stale, and the body is looked up again, until [`WAIT`].
    pub async fn wait_for_text(&self, text: &str) -> String {
        self.wait_for_texts(&[text], false).await
    }

    /// Reloads the page until its body text contains every one of `texts` (what the server
    /// learns in the background, such as a download's outcome), bounded by [`WAIT`].
    pub async fn reload_until_texts(&self, texts: &[&str]) -> String {
        self.wait_for_texts(texts, true).await
    }

    async fn wait_for_texts(&self, texts: &[&str], reload: bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            match self.body_text().await {
                Ok(body) if texts.iter().all(|text| body.contains(text)) => return body,
                Ok(body) => last = body,
                Err(e) if retryable(&e) => {}
                Err(e) => panic!("reading the page's text: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "{texts:?} not shown within {WAIT:?}; the page says {last:?}"
            );
            if reload {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.driver.refresh().await.expect("page reloads");
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Waits until the text of `css` reads as a percentage strictly between 0 and 100 (a
    /// progress bar on its way), bounded by [`WAIT`]. Reads through a script, so a page
    /// navigating meanwhile is an error to retry, not a stale element.
    pub async fn wait_for_percent_between(&self, css: &str) -> u32 {
        let script =
            "const el = document.querySelector(arguments[0]); return el ? el.textContent : '';";
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            if let Ok(value) = self.driver.execute(script, vec![json!(css)]).await
                && let Ok(text) = value.convert::<String>()
            {
                if let Some(pct) = text.trim().strip_suffix('%').and_then(|n| n.parse().ok())
                    && (1..100).contains(&pct)
                {
                    return pct;
                }
                if seen.last() != Some(&text) {
                    seen.push(text);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css} showed no percentage between 0 and 100 within {WAIT:?}, only {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn body_text(&self) -> WebDriverResult<String> {
        self.driver.find(By::Css("body")).await?.text().await
    }

    pub fn download_dir(&self) -> &Path {
        self.downloads.path()
    }

    /// The bytes of `name` once Chromium has finished downloading it (it writes
    /// `*.crdownload` until then). Polls the directory, bounded by [`WAIT`].
    pub async fn downloaded(&self, name: &str) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        let path = self.downloads.path().join(name);
        loop {
            let in_progress = crate::stored_files(self.downloads.path())
                .iter()
                .any(|f| f.ends_with(".crdownload"));
            if !in_progress && let Ok(bytes) = std::fs::read(&path) {
                return bytes;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not downloaded within {WAIT:?}; the directory holds {:?}",
                crate::stored_files(self.downloads.path())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The URLs Chromium downloaded from, newest first, as `chrome://downloads` lists them:
    /// the last hop of each redirect chain (for a burnlink download, the one-time link).
    pub async fn download_urls(&self) -> Vec<String> {
        self.driver
            .goto("chrome://downloads")
            .await
            .expect("chrome://downloads");
        let script = r#"
            const manager = document.querySelector('downloads-manager');
            const items = manager ? manager.shadowRoot.querySelectorAll('downloads-item') : [];
            return Array.from(items).map((item) => {
              const data = item.data || {};
              const url = data.url && (data.url.url || data.url);
              const link = item.shadowRoot && item.shadowRoot.querySelector('#url');
              return String(url || (link && link.href) || '');
            });
        "#;
        let deadline = Instant::now() + WAIT;
        loop {
            let urls: Vec<String> = self
                .driver
                .execute(script, Vec::new())
                .await
                .expect("reading chrome://downloads")
                .convert()
                .expect("a list of URLs");
            if !urls.is_empty() || Instant::now() >= deadline {
                return urls;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn quit(self) {
        let _ = self.driver.quit().await;
    }
}

/// Errors a wait retries: the element went away with the page it was on, or the new page has
/// no `body` yet.
fn retryable(e: &WebDriverError) -> bool {
    matches!(
        e.as_inner(),
        WebDriverErrorInner::StaleElementReference(_) | WebDriverErrorInner::NoSuchElement(_)
    )
}

/// `target/` of this build: the test binary lives in `target/<profile>/deps/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The first of `names` found on `PATH`.
fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
