//! Uploads, listing and deletion, and what one user can do to another's files.

use burnlink_tests::{ALICE, BOB, error_code, spawn, spawn_with};
use reqwest::StatusCode;

#[tokio::test]
async fn list_shows_only_my_files_newest_first() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let bob = app.login(BOB).await;
    alice.upload_ok("one.txt", b"1".to_vec()).await;
    alice.upload_ok("two.png", b"22".to_vec()).await;
    bob.upload_ok("bobs.txt", b"b".to_vec()).await;

    let listed: serde_json::Value = alice.list().await.json().await.unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let names: Vec<&str> = listed.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"one.txt") && names.contains(&"two.png"));
    let png = listed.iter().find(|f| f["name"] == "two.png").unwrap();
    assert_eq!(png["size"], 2);
    assert_eq!(png["content_type"], "image/png");
    assert!(png["created_at"].as_u64().unwrap() > 1_700_000_000);
    assert!(png["id"].is_string());
}

#[tokio::test]
async fn another_users_file_is_404_everywhere() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let bob = app.login(BOB).await;
    let file = alice.upload_ok("private.txt", b"mine".to_vec()).await;

    let res = bob.link(&file.id).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");
    assert_eq!(bob.delete(&file.id).await.status(), StatusCode::NOT_FOUND);
    let redirect = bob
        .client
        .get(format!("{}/files/{}/download", app.app_url, file.id))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::NOT_FOUND);
    // Same answer as for an id that never existed.
    assert_eq!(
        bob.link("no-such-file-id").await.status(),
        StatusCode::NOT_FOUND
    );
    // And alice still has it.
    assert_eq!(alice.link(&file.id).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn delete_removes_row_and_bytes_and_kills_links() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"bye".to_vec()).await;
    let url = alice.link_url(&file.id).await;
    assert_eq!(app.stored_objects().len(), 1);

    assert_eq!(
        alice.delete(&file.id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(app.stored_objects().is_empty());
    let listed: serde_json::Value = alice.list().await.json().await.unwrap();
    assert!(listed.as_array().unwrap().is_empty());
    assert_eq!(
        app.anon.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(alice.delete(&file.id).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upload_over_the_limit_is_413_and_leaves_nothing() {
    let app = spawn_with(|c| c.max_upload_bytes = 100_000).await;
    let alice = app.login(ALICE).await;
    let res = alice.upload("big.bin", vec![7u8; 100_001]).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(res).await, "too_large");
    assert!(
        app.stored_objects().is_empty(),
        "{:?}",
        app.stored_objects()
    );
    let listed: serde_json::Value = alice.list().await.json().await.unwrap();
    assert!(listed.as_array().unwrap().is_empty());
    alice.upload_ok("fits.bin", vec![7u8; 100_000]).await;
}

#[tokio::test]
async fn upload_without_a_file_field_is_400() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let form = reqwest::multipart::Form::new().text("other", "value");
    let res = alice
        .client
        .post(format!("{}/api/files", app.app_url))
        .header("X-CSRF-Token", &alice.csrf)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(app.stored_objects().is_empty());
}

#[tokio::test]
async fn uploaded_names_never_reach_the_filesystem() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("../../escape.txt", b"x".to_vec()).await;
    assert_eq!(file.name, "escape.txt");
    let stored = app.only_stored_file();
    assert!(!stored.contains("escape"), "{stored}");
    assert!(!app.data_dir.join("escape.txt").exists());
    assert!(shared::StorageKey::parse(&stored).is_ok());
}

#[tokio::test]
async fn a_link_says_how_long_it_lives_without_a_clock_to_compare() {
    // The page counts down from `expires_in`: `expires_at` against the Date header could read
    // a second more than the lifetime (Date has whole seconds and is cached for 500 ms).
    let app = spawn_with(|c| c.token_ttl = 45).await;
    let alice = app.login(ALICE).await;
    let file = alice.upload_ok("a.txt", b"abc".to_vec()).await;
    let res = alice.link(&file.id).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let link: serde_json::Value = res.json().await.unwrap();
    assert_eq!(link["expires_in"], 45, "{link}");
    let exp = link["expires_at"].as_u64().unwrap();
    let now = shared::unix_now();
    assert!(exp > now && exp <= now + 45, "{link}");
}
