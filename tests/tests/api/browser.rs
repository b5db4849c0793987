//! The pages in a real headless Chromium, over WebDriver: what a person sees and clicks.
//! Skipped (failing under `CI=true`) when chromium/chromedriver are not installed.

use std::future::Future;
use std::time::Duration;

use burnlink_tests::browser::{self, Browser};
use burnlink_tests::{ALICE, sample_bytes, spawn_with};
use thirtyfour::By;

/// Longest a whole browser walk may take.
const WALK_LIMIT: Duration = Duration::from_secs(120);

async fn bounded(walk: impl Future<Output = ()>) {
    tokio::time::timeout(WALK_LIMIT, walk)
        .await
        .expect("the browser walk finishes in time");
}

/// Limits uploads to `bytes_per_sec` (`None`: no limit).
async fn throttle_uploads(browser: &Browser, bytes_per_sec: Option<u32>) {
    let upload = bytes_per_sec.map_or(-1.0, f64::from);
    let cdp = browser.driver.cdp();
    cdp.send_raw("Network.enable", serde_json::json!({}))
        .await
        .expect("network domain");
    cdp.send_raw(
        "Network.emulateNetworkConditions",
        serde_json::json!({
            "offline": false,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": upload,
        }),
    )
    .await
    .expect("network emulation");
}

#[tokio::test]
async fn browser_walk_upload_download_share_and_log_out() {
    let test = "browser_walk_upload_download_share_and_log_out";
    let Some(harness) = browser::start(test).await else {
        return;
    };
    let app = spawn_with(|c| c.max_upload_bytes = 64 * 1024).await;
    bounded(async {
        let alice = harness.browser(true).await;

        // The login form, a wrong password, then the right one.
        alice.driver.goto(&app.app_url).await.unwrap();
        alice
            .find("#username")
            .await
            .send_keys(ALICE.0)
            .await
            .unwrap();
        harness.screenshot(&alice, "login").await;
        alice
            .find("#password")
            .await
            .send_keys("not-it")
            .await
            .unwrap();
        alice
            .find("form[action='/login'] button")
            .await
            .click()
            .await
            .unwrap();
        alice
            .find_text("[role=alert]", "Unknown user or wrong password")
            .await;
        harness.screenshot(&alice, "login-refused").await;
        alice.log_in(&app.app_url).await;
        alice.wait_for_text("No files yet").await;
        harness.screenshot(&alice, "no-files").await;

        // Too large: refused before a byte is sent, with the limit.
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.bin");
        std::fs::write(&big, vec![0u8; 64 * 1024 + 1]).unwrap();
        let input = alice.driver.find(By::Css("#file-input")).await.unwrap();
        input.send_keys(big.to_string_lossy()).await.unwrap();
        alice.find("#upload-button").await.click().await.unwrap();
        alice
            .find_text("#upload-status", "too large: the limit is 64.0 KiB")
            .await;
        harness.screenshot(&alice, "too-large").await;

        // Upload through the form's file input; the page lists it.
        let bytes = sample_bytes(20_000);
        let file = dir.path().join("report.pdf");
        std::fs::write(&file, &bytes).unwrap();
        input.send_keys(file.to_string_lossy()).await.unwrap();
        // Slow the upload down (CDP network emulation) to see the progress bar move.
        throttle_uploads(&alice, Some(4_000)).await;
        alice.find("#upload-button").await.click().await.unwrap();
        alice.find("#upload-progress").await;
        alice
            .find_text("#upload-status", "Uploading report.pdf")
            .await;
        alice.wait_for_percent_between("#upload-percent").await;
        harness.screenshot(&alice, "uploading").await;
        let row = alice.find_text("table.files tbody tr", "report.pdf").await;
        throttle_uploads(&alice, None).await;
        let row_text = row.text().await.unwrap();
        assert!(row_text.contains("19.5 KiB"), "{row_text}");
        assert!(row_text.contains("application/pdf"), "{row_text}");
        alice.find_text("#messages", "Uploaded report.pdf").await;
        harness.screenshot(&alice, "listed").await;

        // Download: a plain link, redirected to a one-time URL; the same bytes arrive.
        row.find(By::LinkText("Download"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert_eq!(alice.downloaded("report.pdf").await, bytes);

        // The link it used is burned: opening it again says so, with a way back.
        let used = alice.download_urls().await;
        let used = used.first().expect("chrome://downloads lists the download");
        assert!(used.starts_with(&format!("{}/d/", app.dl_url)), "{used}");
        alice.driver.goto(used).await.unwrap();
        alice.find_text("h1", "Link already used").await;
        alice.wait_for_text("already been used").await;
        harness.screenshot(&alice, "link-used").await;
        alice
            .find_text("a", "Go to burnlink")
            .await
            .click()
            .await
            .unwrap();
        let row = alice.find_text("table.files tbody tr", "report.pdf").await;

        // Share: the dialog makes a link with the defaults (7 days, 1 download) and shows it
        // with a Copy button.
        row.find(By::Css(".share-open"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        alice.find("#share-dialog").await;
        alice.find_text("#share-name", "report.pdf").await;
        harness.screenshot(&alice, "share-dialog").await;
        alice.find("#share-create").await.click().await.unwrap();
        let url_field = alice.find("#share-url").await;
        let link = url_field.value().await.unwrap().unwrap_or_default();
        assert!(link.starts_with(&format!("{}/s/", app.app_url)), "{link}");
        alice.find("#share-copy").await.click().await.unwrap();
        alice.find_text("#copy-status", "Cop").await;
        harness.screenshot(&alice, "share-link").await;

        // Someone else, in a browser of their own, opens the page (which uses nothing),
        // presses Download and gets the file.
        let bob = harness.browser(true).await;
        bob.driver.goto(&link).await.unwrap();
        bob.find_text(".share-file", "report.pdf").await;
        bob.find_text(".share-left", "1").await;
        harness.screenshot(&bob, "share-page").await;
        bob.find("#share-download button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        assert_eq!(bob.downloaded("report.pdf").await, bytes);
        // Reopened: nothing left.
        bob.driver.goto(&link).await.unwrap();
        bob.wait_for_text("no downloads left").await;
        harness.screenshot(&bob, "share-used-up").await;
        bob.quit().await;

        // The owner's list shows the share used up, with the completed download.
        alice.find("#share-done").await.click().await.unwrap();
        alice
            .reload_until_texts(&["1 of 1 downloads used", "Complete"])
            .await;
        harness.screenshot(&alice, "share-downloaded").await;

        // At phone width the list stays readable.
        alice.driver.set_window_rect(0, 0, 360, 800).await.unwrap();
        alice.driver.refresh().await.unwrap();
        alice.find_text("table.files tbody tr", "report.pdf").await;
        harness.screenshot(&alice, "phone").await;
        alice.driver.set_window_rect(0, 0, 1280, 900).await.unwrap();

        // Deleting asks first; declining keeps the file.
        alice
            .find("form[data-confirm] button")
            .await
            .click()
            .await
            .unwrap();
        let alert = alice.driver.get_alert_text().await.unwrap();
        assert!(alert.contains("Delete “report.pdf”?"), "{alert}");
        alice.driver.dismiss_alert().await.unwrap();
        alice.find_text("table.files tbody tr", "report.pdf").await;

        // Log out: back to the login form.
        alice
            .find("form[action='/logout'] button")
            .await
            .click()
            .await
            .unwrap();
        alice.find("#username").await;
        harness.screenshot(&alice, "logged-out").await;
        alice.quit().await;
    })
    .await;
}

#[tokio::test]
async fn browser_without_javascript_logs_in_uploads_and_downloads() {
    let test = "browser_without_javascript_logs_in_uploads_and_downloads";
    let Some(harness) = browser::start(test).await else {
        return;
    };
    let app = spawn_with(|_| {}).await;
    bounded(async {
        let browser = harness.browser(false).await;
        browser.log_in(&app.app_url).await;

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain.txt");
        std::fs::write(&file, b"no script needed").unwrap();
        let input = browser.find("#file-input").await;
        input.send_keys(file.to_string_lossy()).await.unwrap();
        browser.find("#upload-button").await.click().await.unwrap();
        let row = browser.find_text("table.files tbody tr", "plain.txt").await;
        harness.screenshot(&browser, "no-js-listed").await;

        // Share without script: a page with the form, then the link on a page of its own.
        row.find(By::LinkText("Share"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .find("form[action$='/shares'] button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        let link = browser
            .find("#share-url")
            .await
            .value()
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(link.starts_with(&format!("{}/s/", app.app_url)), "{link}");
        harness.screenshot(&browser, "no-js-share-created").await;
        browser
            .find_text("a", "Back to your files")
            .await
            .click()
            .await
            .unwrap();
        let row = browser.find_text("table.files tbody tr", "plain.txt").await;
        row.find(By::LinkText("Download"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert_eq!(browser.downloaded("plain.txt").await, b"no script needed");

        // Delete goes straight through without script (no confirmation dialog to run).
        browser
            .find("form[data-confirm] button")
            .await
            .click()
            .await
            .unwrap();
        browser.wait_for_text("No files yet").await;
        browser.quit().await;
    })
    .await;
}

#[tokio::test]
async fn chromium_resumes_a_cut_download_by_itself() {
    let Some(harness) = browser::start("chromium_resumes_a_cut_download_by_itself").await else {
        return;
    };
    bounded(async {
        let app = spawn_with(|_| {}).await;
        let alice = app.login(ALICE).await;
        let bytes = sample_bytes(3 * 1024 * 1024);
        let file = alice.upload_ok("big.bin", bytes.clone()).await;
        let url = alice.link_url(&file.id).await;
        let proxy = burnlink_tests::services::cutting_proxy_for(&url, 300_000).await;

        // The link is opened as a person would; the network breaks after 300 kB. Chromium
        // retries an interrupted download by itself, with `Range` and `If-Range` (the first
        // response's ETag) and the download server's cookie.
        let browser = harness.browser(true).await;
        let _ = browser.driver.goto(&proxy.url_for(&url)).await;
        let got = browser.downloaded("big.bin").await;
        let requests = proxy.requests();
        assert!(
            got == bytes,
            "whole file, byte for byte; requests: {requests:#?}"
        );
        assert!(requests.len() >= 2, "{requests:#?}");
        // Seen: `Range: bytes=299424-`, `If-Range: "<version>-<secret>"` and the
        // `blr_<jti>` cookie, each of which alone proves the secret.
        let resumed = requests[1].to_ascii_lowercase();
        assert!(resumed.contains("\r\nrange: bytes="), "{resumed}");
        assert!(resumed.contains("\r\nif-range: \""), "{resumed}");
    })
    .await;
}
