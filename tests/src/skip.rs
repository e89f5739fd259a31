//! Tests that need something this machine may lack (root, namespaces, QEMU) skip
//! with the reason on a developer's machine; under `CI=true` a missing prerequisite
//! fails the test instead, so that CI never passes by skipping.

/// Whether this run is CI's: `CI` set to `true` (or `1`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a missing prerequisite: panics under CI, else prints the reason.
/// The caller returns after it (the test is skipped).
pub fn missing(why: &str) {
    if in_ci() {
        panic!("CI=true and a prerequisite is missing: {why}");
    }
    eprintln!("skipped: {why}");
}

/// Skips the calling test (or fails it under `CI=true`) when `why` is `Some`.
#[macro_export]
macro_rules! require {
    ($why:expr) => {
        if let Some(why) = $why {
            $crate::skip::missing(&why);
            return;
        }
    };
}

/// `Some(reason)` if `program` does not run here (`program --version` fails), for
/// [`require!`](crate::require).
pub fn not_installed(program: &str) -> Option<String> {
    let runs = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!runs).then(|| format!("{program} is not installed"))
}
