//! Other toolchains against the key the app generates: docs/TOKEN.md's Python (PyJWT) and Node
//! (`jose`) recipes, run as written (the fenced blocks are read from the document, with only
//! their free names defined before and the token printed after), mint links a live download
//! server honours; `openssl pkey` reads the key. The tools come from `.ci/install-deps`
//! (PyJWT and jose into `tests/interop/`); a missing one is a skip, a failure under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use burnlink_tests::services::{skip, tool_installed};
use burnlink_tests::{ALICE, TestApp, sample_bytes, spawn};
use reqwest::StatusCode;

/// Where `.ci/install-deps` puts PyJWT (`python/`) and jose (`node_modules/`).
fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// The one fenced code block of `lang` in docs/TOKEN.md.
fn token_md_recipe(lang: &str) -> String {
    burnlink_tests::doc_block("TOKEN.md", lang)
}

/// An app with one stored file; returns the app, the file's storage key and its bytes.
async fn app_with_a_file() -> (TestApp, String, Vec<u8>) {
    let app = spawn().await;
    let bytes = sample_bytes(4_000);
    app.login(ALICE)
        .await
        .upload_ok("report.pdf", bytes.clone())
        .await;
    let key = app.only_stored_file();
    (app, key, bytes)
}

/// The `kid` the app publishes (its only key).
async fn published_kid(app: &TestApp) -> String {
    let jwks: serde_json::Value = app
        .anon
        .get(format!("{}/.well-known/jwks.json", app.app_url))
        .send()
        .await
        .expect("jwks request")
        .json()
        .await
        .expect("jwks JSON");
    jwks["keys"][0]["kid"].as_str().expect("kid").to_owned()
}

/// Runs `program script` in `dir` with `envs`; its standard output, trimmed, or `None` after
/// a skip when the program is not installed. Any other failure fails the test.
async fn run(program: &str, script: &Path, dir: &Path, envs: &[(&str, &Path)]) -> Option<String> {
    let mut command = tokio::process::Command::new(program);
    command
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = match command.output().await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip(&format!("{program} not installed (.ci/install-deps)"));
            return None;
        }
        Err(e) => panic!("running {program}: {e}"),
    };
    assert!(
        output.status.success(),
        "{program} {}: {}\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8(output.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned(),
    )
}

/// Downloads `token` from the app's download server and checks it serves `bytes`.
async fn assert_downloads(app: &TestApp, token: &str, bytes: &[u8], who: &str) {
    let res = app.download(token).await;
    assert_eq!(res.status(), StatusCode::OK, "{who}'s token {token}");
    assert_eq!(res.bytes().await.expect("body"), bytes, "{who}");
    let res = app.download(token).await;
    assert_eq!(res.status(), StatusCode::GONE, "{who}'s token works once");
}

#[tokio::test]
async fn token_md_python_recipe_mints_with_the_generated_key() {
    let python = interop_dir().join("python");
    if !tool_installed("pyjwt") {
        return skip("PyJWT not installed in tests/interop/python (.ci/install-deps)");
    }
    let (app, storage_key, bytes) = app_with_a_file().await;
    let kid = published_kid(&app).await;
    // The recipe reads `data/keys/ed25519.pem`: run it beside a `data` that is the app's.
    let work = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(&app.data_dir, work.path().join("data")).expect("symlink");
    let script = work.path().join("mint.py");
    let source = format!(
        "storage_key = {storage_key:?}\nkid_from_jwks = {kid:?}\n{}print(token)\n",
        token_md_recipe("python")
    );
    std::fs::write(&script, source).expect("write script");
    let Some(token) = run("python3", &script, work.path(), &[("PYTHONPATH", &python)]).await else {
        return;
    };
    assert_downloads(&app, &token, &bytes, "PyJWT").await;
}

#[tokio::test]
async fn token_md_node_recipe_mints_with_the_generated_key() {
    let modules = interop_dir().join("node_modules");
    if !tool_installed("jose") {
        return skip("jose not installed in tests/interop/node_modules (.ci/install-deps)");
    }
    let (app, storage_key, bytes) = app_with_a_file().await;
    let kid = published_kid(&app).await;
    let pem =
        std::fs::read_to_string(app.data_dir.join("keys/ed25519.pem")).expect("the app's key");
    // An ES module (the recipe imports and awaits at top level) that finds `jose` through a
    // `node_modules` beside it.
    let work = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(&modules, work.path().join("node_modules")).expect("symlink");
    let script = work.path().join("mint.mjs");
    let source = format!(
        "const pem = {};\nconst storageKey = {storage_key:?};\nconst kid = {kid:?};\n{}\
         console.log(token);\n",
        serde_json::to_string(&pem).expect("JSON string"),
        token_md_recipe("js")
    );
    std::fs::write(&script, source).expect("write script");
    let Some(token) = run("node", &script, work.path(), &[]).await else {
        return;
    };
    assert_downloads(&app, &token, &bytes, "jose").await;
}

#[tokio::test]
async fn openssl_reads_the_generated_key() {
    let app = spawn().await;
    let key = app.data_dir.join("keys/ed25519.pem");
    let output = match tokio::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .await
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return skip("openssl not installed (.ci/install-deps)");
        }
        Err(e) => panic!("running openssl: {e}"),
    };
    assert!(
        output.status.success(),
        "openssl pkey: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The public key OpenSSL derives is the one the app publishes.
    let public = app.signing_key().verifying_key().to_pem().expect("Ed25519");
    assert_eq!(String::from_utf8_lossy(&output.stdout), public);
}
