//! The HTML pages over plain HTTP: security headers, static assets, escaping, and the flows
//! that must work without JavaScript (plain forms, redirects).

use burnlink_tests::{ALICE, TestApp, client, spawn, spawn_with};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use reqwest::{Client, Response, StatusCode};

fn header(res: &Response, name: impl reqwest::header::AsHeaderName) -> &str {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

async fn page(client: &Client, url: &str) -> String {
    let res = client.get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{url}");
    res.text().await.unwrap()
}

/// The value of the first hidden `csrf_token` field of a page.
fn csrf_field(html: &str) -> String {
    let start = html
        .find("name=\"csrf_token\" value=\"")
        .expect("a csrf_token field")
        + "name=\"csrf_token\" value=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The `src`/`href` of `/static/<name>?v=…` in a page.
fn asset_url(html: &str, name: &str) -> String {
    let needle = format!("\"/static/{name}?v=");
    let start = html.find(&needle).expect("asset linked") + 1;
    html[start..].split('"').next().unwrap().to_owned()
}

/// Logs in through the HTML form (no JavaScript), returning the cookie-keeping client.
async fn form_login(app: &TestApp) -> Client {
    let browser = client();
    let res = browser
        .post(format!("{}/login", app.app_url))
        .form(&[("username", ALICE.0), ("password", ALICE.1)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&res, LOCATION), "/");
    assert!(header(&res, "set-cookie").starts_with("burnlink_session="));
    browser
}

async fn form_upload(
    app: &TestApp,
    browser: &Client,
    csrf: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Response {
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", csrf.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
    browser
        .post(format!("{}/files", app.app_url))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pages_carry_the_csp_and_security_headers() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    for (who, client) in [("anonymous", &app.anon), ("alice", &alice.client)] {
        let res = client
            .get(format!("{}/", app.app_url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{who}");
        assert_eq!(header(&res, CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(
            header(&res, "content-security-policy"),
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            "{who}"
        );
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        assert_eq!(header(&res, "x-frame-options"), "DENY");
        assert_eq!(header(&res, "referrer-policy"), "no-referrer");
        assert_eq!(header(&res, CACHE_CONTROL), "no-store");
        let body = res.text().await.unwrap();
        assert!(!body.contains("<style"), "no inline style: {body}");
        assert!(!body.contains(" style="), "no inline style: {body}");
        // app.js, and on the file list tus-js-client (large uploads), both served by the app.
        let scripts = if who == "alice" { 2 } else { 1 };
        assert_eq!(body.matches("<script").count(), scripts, "{body}");
        assert_eq!(
            body.matches("<script src=\"/static/").count(),
            scripts,
            "{body}"
        );
    }
}

#[tokio::test]
async fn static_assets_are_served_with_their_types_and_cached_by_version() {
    let app = spawn().await;
    let html = page(&app.anon, &format!("{}/", app.app_url)).await;
    for (name, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        let versioned = asset_url(&html, name);
        let res = app
            .anon
            .get(format!("{}{versioned}", app.app_url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{versioned}");
        assert_eq!(header(&res, CONTENT_TYPE), content_type);
        assert_eq!(
            header(&res, CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        let versioned_body = res.text().await.unwrap();
        assert!(versioned_body.len() > 1000, "{name} has content");

        // Unversioned or stale: the same file, revalidated every time.
        for url in [
            format!("/static/{name}"),
            format!("/static/{name}?v=0000000000000000"),
        ] {
            let res = app
                .anon
                .get(format!("{}{url}", app.app_url))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(header(&res, CACHE_CONTROL), "no-cache", "{url}");
            assert_eq!(res.text().await.unwrap(), versioned_body);
        }
    }
    let missing = app
        .anon
        .get(format!("{}/static/other.js", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_user_supplied_string_is_html_escaped() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    // The upload keeps only the last path component: this one becomes `script>.txt`.
    let script = alice
        .upload_ok("<script>alert(1)</script>.txt", b"x".to_vec())
        .await;
    assert_eq!(script.name, "script>.txt");
    let attr = alice
        .upload_ok("<img src=x onerror=alert(1)>\"'&.txt", b"y".to_vec())
        .await;
    assert_eq!(attr.name, "<img src=x onerror=alert(1)>\"'&.txt");

    let html = alice.files_page().await;
    assert!(html.contains("script&gt;.txt"), "{html}");
    assert!(!html.contains("script>.txt"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;'&amp;.txt"),
        "{html}"
    );
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("onerror=alert(1)>"), "{html}");
    // In attributes too (data-name, aria-label, data-confirm): always double-quoted, and a
    // double quote never comes through raw.
    assert!(
        html.contains("data-confirm=\"&lt;img src=x onerror=alert(1)&gt;&quot;'&amp;.txt\""),
        "{html}"
    );
    assert_eq!(html.matches("<script src=\"/static/").count(), 2, "{html}");
    assert_eq!(html.matches("<script").count(), 2, "{html}");
}

#[tokio::test]
async fn without_javascript_login_upload_list_download_delete_and_logout_work() {
    let app = spawn().await;
    let browser = form_login(&app).await;
    let html = page(&browser, &format!("{}/", app.app_url)).await;
    assert!(html.contains("Signed in as"), "{html}");
    assert!(html.contains("No files yet"), "{html}");
    let csrf = csrf_field(&html);

    let res = form_upload(&app, &browser, &csrf, "notes.txt", b"plain form".to_vec()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&res, LOCATION), "/");
    let html = page(&browser, &format!("{}/", app.app_url)).await;
    assert!(html.contains(">notes.txt</a>"), "{html}");
    assert!(html.contains("10 B"), "{html}");
    assert!(html.contains("text/plain"), "{html}");

    // The download link is a plain link: a redirect to a one-time URL.
    let href_start = html.find("href=\"/files/").unwrap() + "href=\"".len();
    let href = html[href_start..].split('"').next().unwrap().to_owned();
    assert!(href.ends_with("/download"), "{href}");
    let res = browser
        .get(format!("{}{href}", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = header(&res, LOCATION).to_owned();
    let got = app.anon.get(&location).send().await.unwrap();
    assert_eq!(got.text().await.unwrap(), "plain form");

    let id = href
        .trim_start_matches("/files/")
        .trim_end_matches("/download");
    let res = browser
        .post(format!("{}/files/{id}/delete", app.app_url))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = page(&browser, &format!("{}/", app.app_url)).await;
    assert!(!html.contains("notes.txt"), "{html}");

    let res = browser
        .post(format!("{}/logout", app.app_url))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = page(&browser, &format!("{}/", app.app_url)).await;
    assert!(html.contains("action=\"/login\""), "{html}");
}

#[tokio::test]
async fn form_errors_are_pages_with_the_api_status_and_a_clear_message() {
    let app = spawn_with(|c| c.max_upload_bytes = 1000).await;

    // Bad credentials: the form again, 401, the username kept.
    let res = app
        .anon
        .post(format!("{}/login", app.app_url))
        .form(&[("username", "alice"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&res, CONTENT_TYPE), "text/html; charset=utf-8");
    assert!(res.headers().get("set-cookie").is_none());
    let html = res.text().await.unwrap();
    assert!(html.contains("Unknown user or wrong password."), "{html}");
    assert!(html.contains("value=\"alice\""), "{html}");

    let browser = form_login(&app).await;
    let html = page(&browser, &format!("{}/", app.app_url)).await;
    let csrf = csrf_field(&html);

    let cases = [
        (
            form_upload(&app, &browser, "wrong-token", "a.txt", b"x".to_vec()).await,
            StatusCode::FORBIDDEN,
            "out of date",
        ),
        (
            form_upload(&app, &browser, &csrf, "big.bin", vec![0; 1001]).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "the limit is 1000 B",
        ),
        (
            browser
                .post(format!("{}/files/no-such-file/delete", app.app_url))
                .form(&[("csrf_token", csrf.as_str())])
                .send()
                .await
                .unwrap(),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            app.anon
                .post(format!("{}/files/x/delete", app.app_url))
                .form(&[("csrf_token", "x")])
                .send()
                .await
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "Log in again",
        ),
    ];
    for (res, status, says) in cases {
        assert_eq!(res.status(), status, "{says}");
        assert_eq!(header(&res, CONTENT_TYPE), "text/html; charset=utf-8");
        assert!(!header(&res, "content-security-policy").is_empty());
        let html = res.text().await.unwrap();
        assert!(html.contains(says), "{says}: {html}");
        assert!(html.contains("href=\"/\""), "a way back: {html}");
    }
    // Nothing was stored.
    let html = page(&browser, &format!("{}/", app.app_url)).await;
    assert!(html.contains("No files yet"), "{html}");
}

#[tokio::test]
async fn download_error_pages_are_friendly_and_link_back_to_the_app() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"x".to_vec()).await;
    let url = alice.link_url(&file.id).await;
    assert_eq!(
        app.anon.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let key = app.only_stored_file();
    let mut expired = app.claims(&key, "a.txt");
    expired.iat -= 200;
    expired.nbf -= 200;
    expired.exp -= 200;
    let expired = format!("{}/d/{}", app.dl_url, app.mint(&expired));
    let missing = format!(
        "{}/d/{}",
        app.dl_url,
        app.mint(&app.claims("NoSuchStorageKey", "gone.txt"))
    );
    let invalid = format!("{}/d/not-a-token", app.dl_url);

    for (url, status, title) in [
        (url.as_str(), StatusCode::GONE, "Link already used"),
        (expired.as_str(), StatusCode::UNAUTHORIZED, "Link expired"),
        (missing.as_str(), StatusCode::NOT_FOUND, "File not found"),
        (invalid.as_str(), StatusCode::UNAUTHORIZED, "Invalid link"),
    ] {
        let res = app
            .anon
            .get(url)
            .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{title}");
        assert_eq!(header(&res, CONTENT_TYPE), "text/html; charset=utf-8");
        let csp = header(&res, "content-security-policy").to_owned();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let html = res.text().await.unwrap();
        assert!(html.contains(&format!("<h1>{title}</h1>")), "{html}");
        assert!(
            html.contains(&format!("href=\"{}/\"", app.app_url)),
            "a way back to the app: {html}"
        );
        assert!(!html.contains("<script"), "{html}");
    }
}
