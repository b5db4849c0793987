//! Administrators: `app-server user add NAME --admin` and `user admin NAME [--revoke]` make
//! them; only they see the Users page and end someone's sessions (CSRF-checked). The same
//! with a provider's groups is in `oidc.rs`.

use app_server::UserCommand;
use app_server::admin::Admin;
use burnlink_tests::{ALICE, BOB, TestApp, User, get_text, spawn};
use reqwest::StatusCode;

async fn cli(
    app: &TestApp,
    command: UserCommand,
    password: Option<&str>,
) -> Result<String, String> {
    let admin = Admin::connect(&app.config).await.expect("admin connects");
    admin
        .run(&command, password)
        .await
        .map_err(|e| e.to_string())
}

async fn users_page(user: &User) -> (StatusCode, String) {
    get_text(&user.client, &format!("{}/admin/users", user.app_url)).await
}

/// Whether `user`'s file list links the Users page in its header.
async fn links_users_page(user: &User) -> bool {
    user.files_page().await.contains("href=\"/admin/users\"")
}

#[tokio::test]
async fn user_add_admin_makes_an_administrator_and_only_they_see_the_users_page() {
    let app = spawn().await;
    let said = cli(
        &app,
        UserCommand::Add {
            name: "root".into(),
            admin: true,
        },
        Some("root-password-1"),
    )
    .await
    .unwrap();
    assert_eq!(said, "administrator root created");
    let root = app.login(("root", "root-password-1")).await;
    let (status, page) = users_page(&root).await;
    assert_eq!(status, StatusCode::OK);
    for user in ["alice", "bob", "root"] {
        assert!(
            page.contains(&format!("data-user=\"{user}\"")),
            "{user}: {page}"
        );
    }
    assert!(links_users_page(&root).await, "the header links it");

    let alice = app.login(ALICE).await;
    let (status, page) = users_page(&alice).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("Only administrators"), "{page}");
    assert!(!page.contains("data-user="), "{page}");
    assert!(!links_users_page(&alice).await, "not linked for alice");

    let res = app
        .anon
        .get(format!("{}/admin/users", app.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn user_admin_grants_and_revokes_at_once() {
    let app = spawn().await;
    let alice = app.login(ALICE).await;
    assert_eq!(users_page(&alice).await.0, StatusCode::FORBIDDEN);
    let admin = |revoke| UserCommand::Admin {
        name: "alice".into(),
        revoke,
    };
    assert_eq!(
        cli(&app, admin(false), None).await.unwrap(),
        "alice is an administrator"
    );
    assert_eq!(
        users_page(&alice).await.0,
        StatusCode::OK,
        "her session follows"
    );
    cli(&app, admin(true), None).await.unwrap();
    assert_eq!(users_page(&alice).await.0, StatusCode::FORBIDDEN);
    let err = cli(
        &app,
        UserCommand::Admin {
            name: "nobody".into(),
            revoke: false,
        },
        None,
    )
    .await
    .unwrap_err();
    assert!(err.contains("no user named nobody"), "{err}");
}

#[tokio::test]
async fn ending_sessions_needs_csrf_and_a_known_user() {
    let app = spawn().await;
    cli(
        &app,
        UserCommand::Admin {
            name: "alice".into(),
            revoke: false,
        },
        None,
    )
    .await
    .unwrap();
    let alice = app.login(ALICE).await;
    let bob = app.login(BOB).await;
    let (bob_id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE username = 'bob'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let end = |id: &str| format!("{}/admin/users/{id}/end-sessions", app.app_url);
    let res = alice.client.post(end(&bob_id)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no CSRF token");
    assert_eq!(bob.list().await.status(), StatusCode::OK, "bob still in");
    for unknown in ["no-such-user", "a.b"] {
        let res = alice
            .client
            .post(end(unknown))
            .form(&[("csrf_token", alice.csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{unknown}");
    }
    // Bob, no administrator, cannot end Alice's.
    let (alice_id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE username = 'alice'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let res = bob
        .client
        .post(end(&alice_id))
        .form(&[("csrf_token", bob.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(alice.list().await.status(), StatusCode::OK);

    let res = alice
        .client
        .post(end(&bob_id))
        .form(&[("csrf_token", alice.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(bob.list().await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(alice.list().await.status(), StatusCode::OK);
}
