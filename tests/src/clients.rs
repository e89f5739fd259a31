//! The client packages, installed the way their users install them: the Node
//! package as the tarball `npm pack` makes, with `npm install`; the Python package
//! with `pip install ./clients/python`, into a virtual environment.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python client's source (`clients/python`), for a `PYTHONPATH`.
pub fn python_source() -> PathBuf {
    root().join("clients/python")
}

/// The test services in `tests/clients`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An app directory in `dir` with `handover-client` installed from its tarball,
/// and the test services copied in (Node resolves the package from the script's
/// own directory).
pub fn node_app(dir: &Path) -> PathBuf {
    let packed = run(Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(dir)
        .current_dir(root().join("clients/node")));
    let tarball = dir.join(
        packed
            .lines()
            .last()
            .expect("npm pack names its tarball")
            .trim(),
    );
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("package.json"), r#"{"name":"app","private":true}"#).unwrap();
    // No registry is needed: the package has no dependencies.
    run(Command::new("npm")
        .args([
            "install",
            "--offline",
            "--no-audit",
            "--no-fund",
            "--silent",
        ])
        .arg(&tarball)
        .current_dir(&app));
    for entry in std::fs::read_dir(script("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "js") {
            std::fs::copy(&path, app.join(path.file_name().unwrap())).unwrap();
        }
    }
    app
}

/// A virtual environment in `dir` with `handover-client` installed by pip; its
/// Python.
pub fn python_env(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    // The README's command (pip fetches setuptools to build it, as for a user).
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet"])
        .arg(root().join("clients/python")));
    venv.join("bin/python")
}

/// `Some(reason)` if Node.js, npm or Python's venv is missing.
pub fn missing() -> Option<String> {
    let checks: [(&str, &[&str]); 3] = [
        ("node", &["--version"]),
        ("npm", &["--version"]),
        ("python3", &["-c", "import venv, ensurepip"]),
    ];
    for (program, args) in checks {
        let ran = Command::new(program).args(args).output();
        if !ran.is_ok_and(|o| o.status.success()) {
            return Some(format!(
                "{program} is not installed (Debian: nodejs, npm, python3-venv)"
            ));
        }
    }
    None
}
