//! The single-use download flow as a user sees it.

use burnlink_tests::{ALICE, error_code, sample_bytes, spawn, spawn_with, token_of};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};

fn header(res: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> &str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn uploaded_file_downloads_once_with_the_right_headers() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let bytes = sample_bytes(300_000);
    let file = alice.upload_ok("report.pdf", bytes.clone()).await;
    assert_eq!(file.size, 300_000);

    let url = alice.link_url(&file.id).await;
    assert!(
        url.starts_with(&app.dl_url),
        "{url} is on the download server"
    );
    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, CONTENT_TYPE), "application/pdf");
    assert_eq!(header(&res, CONTENT_LENGTH), "300000");
    assert_eq!(
        header(&res, CONTENT_DISPOSITION),
        "attachment; filename=\"report.pdf\""
    );
    assert_eq!(header(&res, ACCEPT_RANGES), "bytes");
    assert_eq!(header(&res, CACHE_CONTROL), "no-store");
    assert_eq!(header(&res, REFERRER_POLICY), "no-referrer");
    assert_eq!(header(&res, X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(res.bytes().await.unwrap(), bytes);

    let replay = app.anon.get(&url).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::GONE);
    assert_eq!(error_code(replay).await, "token_used");
}

#[tokio::test]
async fn replayed_token_is_gone_even_through_the_bearer_header() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"hello".to_vec()).await;
    let url = alice.link_url(&file.id).await;
    let token = token_of(&url);

    let bearer = |t: &str| {
        app.anon
            .get(format!("{}/d", app.dl_url))
            .bearer_auth(t)
            .send()
    };
    let first = bearer(token).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.text().await.unwrap(), "hello");
    assert_eq!(bearer(token).await.unwrap().status(), StatusCode::GONE);
    assert_eq!(app.download(token).await.status(), StatusCode::GONE);
}

#[tokio::test]
async fn firefox_and_safari_prefetches_do_not_burn() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"0123456789".to_vec()).await;
    let url = alice.link_url(&file.id).await;

    // Firefox marks link prefetches `X-Moz: prefetch`; Safari marks previews
    // `X-Purpose: preview`.
    for (name, value) in [
        ("X-Moz", "prefetch"),
        ("X-Purpose", "preview"),
        ("x-purpose", "Preview"),
    ] {
        let prefetch = app.get_with(&url, (name, value)).await;
        assert_eq!(
            prefetch.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{name}: {value}"
        );
        assert_eq!(error_code(prefetch).await, "prefetch_declined");
    }
    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the link was not consumed");
    assert_eq!(res.text().await.unwrap(), "0123456789");
}

#[tokio::test]
async fn head_and_prefetch_do_not_burn() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"0123456789".to_vec()).await;
    let url = alice.link_url(&file.id).await;

    for _ in 0..2 {
        let head = app.anon.head(&url).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, CONTENT_LENGTH), "10");
        assert_eq!(header(&head, CONTENT_TYPE), "text/plain");
    }
    for (name, value) in [
        ("Sec-Purpose", "prefetch"),
        ("Purpose", "prefetch"),
        ("Sec-Purpose", "prefetch;prerender"),
    ] {
        let prefetch = app.get_with(&url, (name, value)).await;
        assert_eq!(
            prefetch.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{name}: {value}"
        );
        assert_eq!(error_code(prefetch).await, "prefetch_declined");
    }

    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "0123456789");
    assert_eq!(
        app.anon.head(&url).send().await.unwrap().status(),
        StatusCode::GONE
    );
}

#[tokio::test]
async fn range_answers_206_and_unsatisfiable_416_without_burning() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let bytes = sample_bytes(1000);
    let file = alice.upload_ok("data.bin", bytes.clone()).await;

    let url = alice.link_url(&file.id).await;
    let too_far = app.get_with(&url, ("Range", "bytes=1000-")).await;
    assert_eq!(too_far.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&too_far, CONTENT_RANGE), "bytes */1000");

    // The 416 burned nothing: the same token still serves a range.
    let res = app.get_with(&url, ("Range", "bytes=100-199")).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&res, CONTENT_RANGE), "bytes 100-199/1000");
    assert_eq!(header(&res, CONTENT_LENGTH), "100");
    assert_eq!(res.bytes().await.unwrap(), bytes[100..200]);

    // Each range needs a fresh token (a file this small is never resumed: see
    // tests/api/resume.rs for larger ones).
    let again = app.get_with(&url, ("Range", "bytes=200-")).await;
    assert_eq!(again.status(), StatusCode::GONE);
    let url = alice.link_url(&file.id).await;
    let suffix = app.get_with(&url, ("Range", "bytes=-10")).await;
    assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(suffix.bytes().await.unwrap(), bytes[990..]);
}

#[tokio::test]
async fn fifty_concurrent_uses_of_one_token_serve_exactly_once() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.bin", sample_bytes(64 * 1024)).await;
    let url = alice.link_url(&file.id).await;

    let requests = (0..50).map(|_| {
        let (client, url) = (reqwest::Client::new(), url.clone());
        tokio::spawn(async move { client.get(&url).send().await.unwrap().status() })
    });
    let mut ok = 0;
    let mut gone = 0;
    for r in requests.collect::<Vec<_>>() {
        match r.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::GONE => gone += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, gone), (1, 49));
}

#[tokio::test]
async fn unicode_file_name_survives_in_content_disposition() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let name = "Été 写真 \"final\".txt";
    let file = alice.upload_ok(name, b"x".to_vec()).await;
    assert_eq!(file.name, name);
    let res = app
        .anon
        .get(alice.link_url(&file.id).await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, CONTENT_DISPOSITION),
        "attachment; filename=\"_t_ __ _final_.txt\"; \
         filename*=UTF-8''%C3%89t%C3%A9%20%E5%86%99%E7%9C%9F%20%22final%22.txt"
    );
}

#[tokio::test]
async fn missing_file_is_404_and_burns_nothing() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"kept".to_vec()).await;
    let url = alice.link_url(&file.id).await;
    let stored = app.only_stored_file();
    app.remove_stored(&stored).await;

    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");

    app.put_stored(&stored, b"kept").await;
    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the 404 did not burn the token"
    );
    assert_eq!(res.text().await.unwrap(), "kept");
}

#[tokio::test]
async fn empty_file_downloads_as_zero_bytes() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("empty.txt", Vec::new()).await;
    let res = app
        .anon
        .get(alice.link_url(&file.id).await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, CONTENT_LENGTH), "0");
    assert!(res.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn browser_errors_are_html_and_api_errors_json() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"x".to_vec()).await;
    let url = alice.link_url(&file.id).await;
    assert_eq!(
        app.anon.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );

    let page = app.get_with(&url, ("Accept", "text/html,*/*")).await;
    assert_eq!(page.status(), StatusCode::GONE);
    assert!(header(&page, CONTENT_TYPE).starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("already been used"));

    let api = app.get_with(&url, ("Accept", "application/json")).await;
    assert!(header(&api, CONTENT_TYPE).starts_with("application/json"));
}

/// Files, HEAD answers, JSON errors, error pages, health checks and unknown paths: every
/// response of the download server carries the security headers of one table
/// (`server_kit::headers`); only the error page sets a CSP of its own, which allows its style.
#[tokio::test]
async fn every_download_server_response_carries_the_security_headers() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let page = b"<p onclick=alert(1)>hi</p>".to_vec();
    let link = alice
        .link_url(&alice.upload_ok("a.html", page).await.id)
        .await;
    let dl = &app.dl_url;
    let get = |url: String| app.anon.get(url);
    let responses = [
        ("HEAD of a file", app.anon.head(&link)),
        ("file", get(link.clone())),
        ("JSON error", get(format!("{dl}/d"))),
        (
            "error page",
            get(link.clone()).header("Accept", "text/html"),
        ),
        ("healthz", get(format!("{dl}/healthz"))),
        ("readyz", get(format!("{dl}/readyz"))),
        ("unknown path", get(format!("{dl}/nope"))),
    ];
    for (what, req) in responses {
        let res = req.send().await.unwrap();
        assert_eq!(header(&res, CACHE_CONTROL), "no-store", "{what}");
        assert_eq!(header(&res, X_CONTENT_TYPE_OPTIONS), "nosniff", "{what}");
        assert_eq!(header(&res, REFERRER_POLICY), "no-referrer", "{what}");
        assert_eq!(header(&res, "x-frame-options"), "DENY", "{what}");
        let csp = header(&res, "content-security-policy");
        assert!(csp.starts_with("default-src 'none';"), "{what}: {csp}");
        match what {
            "error page" => assert!(csp.contains("style-src 'sha256-"), "{what}: {csp}"),
            _ => assert!(csp.contains("sandbox"), "{what}: {csp}"),
        }
    }
}

#[tokio::test]
async fn browser_route_redirects_to_a_fresh_download_url() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"via redirect".to_vec()).await;
    let res = alice
        .client
        .get(format!("{}/files/{}/download", app.app_url, file.id))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = header(&res, reqwest::header::LOCATION).to_owned();
    assert!(
        location.starts_with(&format!("{}/d/", app.dl_url)),
        "{location}"
    );
    let res = app.anon.get(&location).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "via redirect");

    // Without a session the route sends the browser to log in, minting nothing.
    let anon = app
        .anon
        .get(format!("{}/files/{}/download", app.app_url, file.id))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&anon, reqwest::header::LOCATION), "/");
}

#[tokio::test]
async fn hs256_mode_works_end_to_end() {
    let app = spawn_with(|c| c.alg = shared::Algorithm::HS256).await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"fast path".to_vec()).await;
    let url = alice.link_url(&file.id).await;
    let header_json = {
        use base64::Engine;
        let head = token_of(&url).split('.').next().unwrap();
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap()
    };
    let header_json: serde_json::Value = serde_json::from_slice(&header_json).unwrap();
    assert_eq!(header_json["alg"], "HS256");
    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "fast path");
    assert_eq!(
        app.anon.get(&url).send().await.unwrap().status(),
        StatusCode::GONE
    );

    // The shared secret is never published.
    let jwks: serde_json::Value = app
        .anon
        .get(format!("{}/.well-known/jwks.json", app.app_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!jwks.to_string().contains("\"k\""), "{jwks}");
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn().await;
    for url in [
        format!("{}/healthz", app.app_url),
        format!("{}/healthz", app.dl_url),
        format!("{}/readyz", app.dl_url),
    ] {
        assert_eq!(
            app.anon.get(&url).send().await.unwrap().status(),
            StatusCode::OK,
            "{url}"
        );
    }
}

/// A file large enough for reads to grow past the first size (a client that keeps up moves
/// to large reads after 50 ms): every byte arrives in order, whole and from a mid-file range.
#[tokio::test]
async fn large_file_streams_whole_and_in_ranges() {
    let app = spawn().await;
    let key = shared::StorageKey::generate();
    let bytes = sample_bytes(48 << 20);
    app.put_stored(key.as_str(), &bytes).await;

    let res = app
        .download(&app.mint(&app.claims(key.as_str(), "big.bin")))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, CONTENT_LENGTH), (48 << 20).to_string());
    let body = res.bytes().await.unwrap();
    assert!(body == bytes[..], "the whole file, byte for byte");

    let token = app.mint(&app.claims(key.as_str(), "big.bin"));
    let url = format!("{}/d/{token}", app.dl_url);
    let (first, last) = (20_000_001usize, 40_000_000usize);
    let res = app
        .get_with(&url, ("range", &format!("bytes={first}-{last}")))
        .await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    let body = res.bytes().await.unwrap();
    assert!(body == bytes[first..=last], "the range, byte for byte");
}

/// Small files are kept by the download server's open-file cache (`--open-file-cache`, on by
/// default), which must never serve bytes of a file replaced or deleted behind its back: a
/// link used after the change gets the new bytes under a new `ETag`, or a 404 that burns
/// nothing.
#[tokio::test]
async fn a_cached_small_file_replaced_or_deleted_is_served_as_it_is_now() {
    // The cache is the local directory's; with the files in S3 (CI's second pass) there is no
    // file here to replace behind the server's back.
    if burnlink_tests::s3::s3_under_test() {
        return;
    }
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("note.txt", vec![b'a'; 4096]).await;
    let stored = app.files_dir().join(app.only_stored_file());
    let fetch = |url: String| {
        let client = app.anon.clone();
        async move {
            let res = client.get(&url).send().await.unwrap();
            let status = res.status();
            let etag = header(&res, reqwest::header::ETAG).to_owned();
            (status, etag, res.bytes().await.unwrap().to_vec())
        }
    };

    let (status, first_etag, body) = fetch(alice.link_url(&file.id).await).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &[b'a'; 4096][..]));
    let (status, etag, body) = fetch(alice.link_url(&file.id).await).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &[b'a'; 4096][..]));
    assert_eq!(etag, first_etag, "the same version, served again");

    // Replaced by another process, same size: written aside and renamed over.
    let aside = app.data_dir.join("aside");
    std::fs::write(&aside, [b'b'; 4096]).unwrap();
    std::fs::rename(&aside, &stored).unwrap();
    let (status, etag, body) = fetch(alice.link_url(&file.id).await).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &[b'b'; 4096][..]));
    assert_ne!(etag, first_etag);

    // Rewritten in place with another length.
    std::fs::write(&stored, [b'c'; 100]).unwrap();
    let (status, _, body) = fetch(alice.link_url(&file.id).await).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &[b'c'; 100][..]));

    // Deleted: 404, and the link is not burned.
    std::fs::remove_file(&stored).unwrap();
    let url = alice.link_url(&file.id).await;
    let (status, _, _) = fetch(url.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    std::fs::write(&stored, [b'd'; 10]).unwrap();
    let (status, _, body) = fetch(url).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &[b'd'; 10][..]));
}
