//! The app server on PostgreSQL, and several app servers sharing one database, one data dir or
//! one signing key. Each test gets a database of its own (see `burnlink_tests::postgres`).

use burnlink_tests::postgres::{PgDatabase, database, on_postgres};
use burnlink_tests::{ALICE, BOB, TestApp, User, error_code, sample_bytes, start, test_config};
use reqwest::StatusCode;
use serde_json::Value;
use shared::{Algorithm, SigningKey};

/// `user`'s session (its cookie jar and CSRF token) presented to another app server.
fn on(app: &TestApp, user: &User) -> User {
    User {
        client: user.client.clone(),
        csrf: user.csrf.clone(),
        app_url: app.app_url.clone(),
    }
}

async fn me(user: &User) -> StatusCode {
    user.client
        .get(format!("{}/api/me", user.app_url))
        .send()
        .await
        .expect("me request")
        .status()
}

async fn listed_names(user: &User) -> Vec<String> {
    let res = user.list().await;
    assert_eq!(res.status(), StatusCode::OK, "list on {}", user.app_url);
    let body: Value = res.json().await.expect("list JSON");
    body.as_array()
        .expect("a list")
        .iter()
        .map(|f| f["name"].as_str().expect("name").to_owned())
        .collect()
}

async fn jwks(app: &TestApp) -> Value {
    app.anon
        .get(format!("{}/.well-known/jwks.json", app.app_url))
        .send()
        .await
        .expect("jwks request")
        .json()
        .await
        .expect("jwks JSON")
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

async fn count(pg: &PgDatabase, table: &str) -> i64 {
    let mut conn = pg.connect().await;
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut conn)
        .await
        .expect("count rows")
}

#[tokio::test]
async fn core_flow_works_on_postgres() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let app = start(on_postgres(dir.path(), &pg)).await;
    let alice = app.login(ALICE).await;
    let bytes = sample_bytes(70_000);
    let file = alice.upload_ok("report.pdf", bytes.clone()).await;
    assert_eq!(file.size, 70_000);

    let listed: Value = alice.list().await.json().await.unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], file.id.as_str());
    assert_eq!(listed[0]["size"], 70_000);
    assert_eq!(listed[0]["content_type"], "application/pdf");
    assert!(listed[0]["created_at"].as_i64().unwrap() > 1_700_000_000);

    let url = alice.link_url(&file.id).await;
    let res = app.anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), bytes);
    assert_eq!(
        app.anon.get(&url).send().await.unwrap().status(),
        StatusCode::GONE
    );

    // The rows are in PostgreSQL, and no SQLite database appeared beside the files.
    assert_eq!(count(&pg, "users").await, 2);
    assert_eq!(count(&pg, "sessions").await, 1);
    assert_eq!(count(&pg, "files").await, 1);
    assert!(!dir.path().join("app.db").exists());

    let unused = alice.link_url(&file.id).await;
    assert_eq!(
        alice.delete(&file.id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(count(&pg, "files").await, 0);
    assert!(listed_names(&alice).await.is_empty());
    assert_eq!(
        app.anon.get(&unused).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let res = alice.link(&file.id).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");
    assert_eq!(alice.delete(&file.id).await.status(), StatusCode::NOT_FOUND);

    assert_eq!(alice.logout().await.status(), StatusCode::NO_CONTENT);
    assert_eq!(count(&pg, "sessions").await, 0);
}

/// A second app server behind the same load balancer: same database, same data dir, and the
/// first one's download server, so a link minted on either is burned in one place.
#[tokio::test]
async fn two_app_servers_on_one_database_serve_the_same_sessions_and_files() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = start(on_postgres(dir.path(), &pg)).await;
    let mut config_b = on_postgres(dir.path(), &pg);
    config_b.download_url = Some(a.dl_url.clone());
    let b = start(config_b).await;
    assert_ne!(a.app_url, b.app_url);

    let alice_a = a.login(ALICE).await;
    let alice_b = on(&b, &alice_a);
    assert_eq!(me(&alice_b).await, StatusCode::OK);
    assert!(listed_names(&alice_b).await.is_empty());

    let bytes = sample_bytes(5_000);
    let file = alice_b.upload_ok("from-b.bin", bytes.clone()).await;
    assert_eq!(listed_names(&alice_a).await, ["from-b.bin"]);

    // Minted on B, honoured by the download server A runs, from the shared data dir.
    let url = alice_b.link_url(&file.id).await;
    assert!(url.starts_with(&a.dl_url), "{url}");
    let res = a.anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), bytes);

    // Bob's session is his own on both.
    let bob_b = b.login(BOB).await;
    assert!(listed_names(&on(&a, &bob_b)).await.is_empty());

    assert_eq!(alice_a.logout().await.status(), StatusCode::NO_CONTENT);
    let res = alice_b.list().await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "unauthorized");
    assert_eq!(me(&alice_b).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&on(&a, &bob_b)).await, StatusCode::OK);
}

/// Two all-in-one app servers started at the same moment on a fresh database and a fresh data
/// dir: both migrate (one waits on the other's lock) and both end up with the one key
/// generated in the data dir, so each one's download server honours the other's links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_servers_starting_at_once_share_schema_and_key() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = tokio::join!(
        start(on_postgres(dir.path(), &pg)),
        start(on_postgres(dir.path(), &pg)),
    );
    let (jwks_a, jwks_b) = (jwks(&a).await, jwks(&b).await);
    assert_eq!(kids(&jwks_a).len(), 1, "{jwks_a}");
    assert_eq!(jwks_a, jwks_b);
    let on_disk = SigningKey::load(&dir.path().join("keys/ed25519.pem"), Algorithm::EdDSA)
        .expect("the data dir's key");
    assert_eq!(kids(&jwks_a), [on_disk.kid()]);
    let published: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("keys/jwks.json")).expect("keys/jwks.json"),
    )
    .unwrap();
    assert_eq!(published, jwks_a);

    let alice_b = b.login(ALICE).await;
    let file = alice_b.upload_ok("x.txt", b"both".to_vec()).await;
    let url = alice_b.link_url(&file.id).await;
    assert!(url.starts_with(&b.dl_url), "{url}");
    let on_a = url.replacen(&b.dl_url, &a.dl_url, 1);
    let res = a.anon.get(&on_a).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"both");
}

/// App servers on different hosts: their own data dirs (the stored files on a shared volume,
/// here a symlink), one database, and one key handed to both with `--signing-key`.
#[tokio::test]
async fn a_shared_signing_key_file_lets_any_download_server_honour_any_app_server() {
    let Some(pg) = database().await else { return };
    let (dir_a, dir_b, secrets) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let key_file = secrets.path().join("signing.pem");
    let key = SigningKey::load_or_generate(&key_file, Algorithm::EdDSA).unwrap();
    std::fs::create_dir(dir_a.path().join("files")).unwrap();
    std::os::unix::fs::symlink(dir_a.path().join("files"), dir_b.path().join("files")).unwrap();

    let mut config_a = on_postgres(dir_a.path(), &pg);
    config_a.signing_key = Some(key_file.clone());
    let a = start(config_a).await;
    let mut config_b = on_postgres(dir_b.path(), &pg);
    config_b.signing_key = Some(key_file.clone());
    let b = start(config_b).await;

    for (app, dir) in [(&a, &dir_a), (&b, &dir_b)] {
        assert_eq!(kids(&jwks(app).await), [key.kid()], "{}", app.app_url);
        let published =
            std::fs::read_to_string(dir.path().join("keys/jwks.json")).expect("keys/jwks.json");
        assert!(published.contains(key.kid()), "{published}");
        assert!(
            !dir.path().join("keys/ed25519.pem").exists(),
            "no key of its own is generated beside a --signing-key"
        );
    }

    let alice_b = b.login(ALICE).await;
    let bytes = sample_bytes(3_000);
    let file = alice_b.upload_ok("shared.bin", bytes.clone()).await;
    let url = alice_b.link_url(&file.id).await;
    let on_a = url.replacen(&b.dl_url, &a.dl_url, 1);
    assert_ne!(on_a, url);
    let res = a.anon.get(&on_a).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), bytes);
}

#[tokio::test]
async fn a_missing_signing_key_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.signing_key = Some(dir.path().join("no-such-key.pem"));
    let err = app_server::Application::build(config)
        .await
        .err()
        .expect("start-up refused");
    assert!(err.to_string().contains("SIGNING_KEY_FILE"), "{err}");
}

#[tokio::test]
async fn a_password_change_ends_the_users_sessions_on_every_app_server() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = start(on_postgres(dir.path(), &pg)).await;
    let mut config_b = on_postgres(dir.path(), &pg);
    config_b.download_url = Some(a.dl_url.clone());
    let b = start(config_b.clone()).await;

    let alice_a = a.login(ALICE).await;
    let alice_b = b.login(ALICE).await;
    let bob_a = a.login(BOB).await;
    for session in [&alice_a, &alice_b] {
        assert_eq!(me(&on(&a, session)).await, StatusCode::OK);
        assert_eq!(me(&on(&b, session)).await, StatusCode::OK);
    }

    // As an operator would: any instance on the database, here one that never serves.
    let admin = app_server::Application::build(config_b)
        .await
        .expect("admin instance");
    admin
        .change_password(ALICE.0, "alice-new-password")
        .await
        .expect("password changed");

    for session in [&alice_a, &alice_b] {
        assert_eq!(me(&on(&a, session)).await, StatusCode::UNAUTHORIZED);
        assert_eq!(me(&on(&b, session)).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(me(&bob_a).await, StatusCode::OK, "other users keep theirs");
    let old = burnlink_tests::client()
        .post(format!("{}/api/login", b.app_url))
        .json(&serde_json::json!({ "username": ALICE.0, "password": ALICE.1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let again = a.login((ALICE.0, "alice-new-password")).await;
    assert_eq!(me(&on(&b, &again)).await, StatusCode::OK);
}

/// The queries the other tests do not reach: the demo user's first-start check, session touch
/// and expiry, and deleting a user with their files.
#[tokio::test]
async fn user_management_and_session_expiry_run_on_postgres() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = on_postgres(dir.path(), &pg);
    config.demo_user = true;
    // Built, never run: an operator's instance on the same database and data dir.
    let admin = app_server::Application::build(config.clone())
        .await
        .expect("admin instance");
    assert_eq!(admin.demo_user().expect("demo user").username, "demo");
    let app = start(on_postgres(dir.path(), &pg)).await;
    assert!(matches!(
        admin.create_user(ALICE.0, "another-password").await,
        Err(app_server::AppError::UserExists(_))
    ));

    let alice = app.login(ALICE).await;
    alice.upload_ok("a.txt", b"aaa".to_vec()).await;
    let mut conn = pg.connect().await;
    let last_seen = || async {
        let mut conn = pg.connect().await;
        sqlx::query_scalar::<_, i64>("SELECT last_seen FROM sessions")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    sqlx::query("UPDATE sessions SET last_seen = last_seen - 120")
        .execute(&mut conn)
        .await
        .unwrap();
    let before = last_seen().await;
    assert_eq!(me(&alice).await, StatusCode::OK);
    assert!(last_seen().await >= before + 120, "the session was touched");

    sqlx::query("UPDATE sessions SET created_at = created_at - 86400")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(me(&alice).await, StatusCode::UNAUTHORIZED);
    assert_eq!(count(&pg, "sessions").await, 0, "deleted on sight");

    let alice = app.login(ALICE).await;
    assert_eq!(me(&alice).await, StatusCode::OK);
    admin.delete_user(ALICE.0).await.expect("alice deleted");
    assert_eq!(me(&alice).await, StatusCode::UNAUTHORIZED);
    assert_eq!(count(&pg, "files").await, 0);
    assert_eq!(count(&pg, "users").await, 2, "demo and bob are left");
    assert!(burnlink_tests::stored_files(&app.files_dir()).is_empty());
}

#[tokio::test]
async fn access_tokens_work_on_postgres() {
    let Some(pg) = database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let app = start(on_postgres(dir.path(), &pg)).await;
    let alice = app.login(ALICE).await;
    let token = alice.create_token(&["files:read", "links:mint"]).await;
    let file = alice.upload_ok("a.txt", b"abc".to_vec()).await;
    let client = reqwest::Client::new();
    let with = |path: String| {
        client
            .post(format!("{}{path}", app.app_url))
            .bearer_auth(&token)
    };
    let res = with(format!("/api/files/{}/link", file.id))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = with(format!("/api/files/{}/shares", file.id))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "insufficient_scope");
    let list: Value = alice.get_json(format!("{}/api/tokens", app.app_url)).await;
    assert!(list[0]["last_used_at"].as_i64().is_some(), "{list}");
    assert!(list[0]["expires_at"].is_null(), "{list}");
    let id = list[0]["id"].as_str().unwrap();
    let res = alice
        .client
        .delete(format!("{}/api/tokens/{id}", app.app_url))
        .header("X-CSRF-Token", &alice.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = with(format!("/api/files/{}/link", file.id))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
