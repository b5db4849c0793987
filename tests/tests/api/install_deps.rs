//! `.ci/install-deps` decides by one rule whether each test tool is installed into `tests/`,
//! and the tests ask the same script (`services::tool_installed`), so the two cannot disagree:
//! a copy importable only system-wide (`PYTHONPATH`, the user site, `NODE_PATH`) is not
//! installed, and the script installs the pinned one. Run against a scratch `tests/` folder
//! (`BURNLINK_TESTS_DIR`), with stand-in packages: nothing is installed or downloaded.

use std::path::Path;
use std::process::{Command, Stdio};

const TOOLS: [&str; 7] = [
    "pyjwt",
    "moto",
    "jose",
    "oidc-provider",
    "standardwebhooks",
    "standardwebhooks-npm",
    "tuspy",
];
/// Stand-in packages for every tool, under `root` (Python modules) and `root/node_modules`.
fn stand_ins(root: &Path) {
    for module in [
        "jwt/__init__.py",
        "cryptography/__init__.py",
        "moto/__init__.py",
        "moto/server.py",
        "flask/__init__.py",
        "standardwebhooks/__init__.py",
        "tusclient/__init__.py",
    ] {
        let file = root.join(module);
        std::fs::create_dir_all(file.parent().expect("a folder")).expect("mkdir");
        std::fs::write(file, "").expect("write module");
    }
    for package in ["jose", "oidc-provider", "standardwebhooks"] {
        let dir = root.join("node_modules").join(package);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("package.json"),
            format!(r#"{{"name":"{package}"}}"#),
        )
        .expect("write package");
    }
}

/// The user site-packages folder of Python under `PYTHONUSERBASE=ambient/userbase`.
fn user_site(ambient: &Path) -> std::path::PathBuf {
    let out = Command::new("python3")
        .args(["-m", "site", "--user-site"])
        .env("PYTHONUSERBASE", ambient.join("userbase"))
        .output()
        .expect("python3 runs");
    String::from_utf8(out.stdout).expect("UTF-8").trim().into()
}

/// The script, pointed at the scratch `tests`, with `ambient` on every system-wide path.
fn install_deps(tests: &Path, ambient: &Path, args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/install-deps"))
        .args(args)
        .env("BURNLINK_TESTS_DIR", tests)
        .env("PYTHONPATH", ambient)
        .env("PYTHONUSERBASE", ambient.join("userbase"))
        .env("NODE_PATH", ambient.join("node_modules"))
        .stdin(Stdio::null())
        .output()
        .expect("bash runs .ci/install-deps")
}

/// Which tools the script says are installed (`--check`), and which it would install (`--plan`).
fn decision(tests: &Path, ambient: &Path) -> (Vec<&'static str>, Vec<String>) {
    let installed = TOOLS
        .into_iter()
        .filter(|tool| {
            let out = install_deps(tests, ambient, &["--check", tool]);
            match out.status.code() {
                Some(0) => true,
                Some(1) => false,
                _ => panic!("--check {tool}: {out:?}"),
            }
        })
        .collect();
    let out = install_deps(tests, ambient, &["--plan"]);
    assert!(out.status.success(), "--plan: {out:?}");
    let plan = String::from_utf8(out.stdout).expect("UTF-8");
    (installed, plan.lines().map(str::to_owned).collect())
}

#[test]
fn a_tool_importable_only_system_wide_is_installed_into_tests() {
    let tests = tempfile::tempdir().expect("temp dir");
    let ambient = tempfile::tempdir().expect("temp dir");
    stand_ins(ambient.path());
    stand_ins(&user_site(ambient.path()));
    // The stand-ins really are importable the ways a system-wide copy is.
    for (variable, value) in [
        ("PYTHONPATH", ambient.path().to_owned()),
        ("PYTHONUSERBASE", ambient.path().join("userbase")),
    ] {
        let import = Command::new("python3")
            .args([
                "-c",
                "import jwt, cryptography, moto.server, flask, standardwebhooks",
            ])
            .env_remove("PYTHONPATH")
            .env(variable, value)
            .status()
            .expect("python3 runs");
        assert!(import.success(), "the stand-ins import through {variable}");
    }

    let (installed, plan) = decision(tests.path(), ambient.path());
    assert_eq!(installed, Vec::<&str>::new(), "nothing counts as installed");
    assert_eq!(plan, TOOLS, "every tool would be installed into tests/");
}

#[test]
fn an_absent_tool_is_installed_and_an_installed_one_is_left() {
    let tests = tempfile::tempdir().expect("temp dir");
    let ambient = tempfile::tempdir().expect("temp dir");
    let (installed, plan) = decision(tests.path(), ambient.path());
    assert_eq!(installed, Vec::<&str>::new());
    assert_eq!(plan, TOOLS);

    stand_ins(&tests.path().join("interop/python"));
    let (installed, plan) = decision(tests.path(), ambient.path());
    assert_eq!(installed, ["pyjwt"]);
    assert_eq!(
        plan,
        [
            "moto",
            "jose",
            "oidc-provider",
            "standardwebhooks",
            "standardwebhooks-npm",
            "tuspy"
        ]
    );
    stand_ins(&tests.path().join("s3/python"));
    stand_ins(&tests.path().join("interop"));
    let (installed, plan) = decision(tests.path(), ambient.path());
    assert_eq!(installed, ["pyjwt", "moto", "jose"]);
    assert_eq!(
        plan,
        [
            "oidc-provider",
            "standardwebhooks",
            "standardwebhooks-npm",
            "tuspy"
        ]
    );

    stand_ins(&tests.path().join("oidc"));
    let (installed, plan) = decision(tests.path(), ambient.path());
    assert_eq!(installed, ["pyjwt", "moto", "jose", "oidc-provider"]);
    assert_eq!(plan, ["standardwebhooks", "standardwebhooks-npm", "tuspy"]);

    stand_ins(&tests.path().join("webhooks/python"));
    stand_ins(&tests.path().join("webhooks"));
    stand_ins(&tests.path().join("tus/python"));
    let (installed, plan) = decision(tests.path(), ambient.path());
    assert_eq!(installed, TOOLS);
    assert_eq!(plan, Vec::<String>::new(), "nothing left to install");
}
