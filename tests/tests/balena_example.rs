//! The balena example (`examples/balena/`) as its images run it: each service's
//! `Dockerfile.template`, with `%%BALENA_ARCH%%` filled in for this machine, gives
//! the `handover` binary its `COPY` line names (put there by `dist/balena-binaries`,
//! the build step the README gives) and the ENTRYPOINT and CMD it runs. Each
//! container is started on a bridge with the environment balena gives it, in the
//! folder the Dockerfile copies into the image. A new container of each service
//! takes over from the old one; the Node service answers a real HTTP client (curl)
//! before and after.
//!
//! Needs root, `node`, `python3` and the binaries `dist/balena-binaries` builds;
//! skips with the reason otherwise, and fails under `CI=true`. (The images
//! themselves are not built here: that needs a Docker engine and the base images'
//! registry.)

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use handover_tests::netns::Netns;
use handover_tests::process::{scratch, Run};
use handover_tests::topology::{Container, Containers};
use handover_tests::{require, require_netns};

const WAIT: Duration = Duration::from_secs(20);

fn example(service: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/balena")
        .join(service)
}

/// The JSON-array form of `instruction` (`ENTRYPOINT`, `CMD`) in a Dockerfile.
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let prefix = format!("{instruction} ");
    let line = dockerfile
        .lines()
        .rfind(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    serde_json::from_str(&line[prefix.len()..])
        .unwrap_or_else(|e| panic!("{instruction} is not in exec form: {e}"))
}

/// balena's name for this machine's architecture, as `%%BALENA_ARCH%%` gives it.
fn balena_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "aarch64",
        "arm" => "armv7hf",
        other => panic!("no balena architecture for {other}"),
    }
}

/// The service's Dockerfile as balena builds it for this machine.
fn dockerfile(service: &str) -> String {
    let path = example(service).join("Dockerfile.template");
    let template = std::fs::read_to_string(&path).expect("Dockerfile.template");
    template.replace("%%BALENA_ARCH%%", balena_arch())
}

/// The file the `COPY` line that installs `/usr/local/bin/handover` takes from
/// the build context: `Err` with the reason if it is not there.
fn copied_handover(service: &str) -> Result<PathBuf, String> {
    let dockerfile = dockerfile(service);
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("COPY ") && l.ends_with(" /usr/local/bin/handover"))
        .expect("a COPY line that installs handover");
    let source = line.split_whitespace().nth(1).expect("COPY SOURCE DEST");
    let path = example(service).join(source);
    match path.is_file() {
        true => Ok(path),
        false => Err(format!(
            "{} is missing: `dist/balena-binaries` puts it there",
            path.display()
        )),
    }
}

/// What the image's entrypoint runs: `handover` and its arguments, the service's
/// command after them.
fn entrypoint(service: &str) -> Vec<String> {
    let dir = example(service);
    let dockerfile = dockerfile(service);
    let mut argv = exec_form(&dockerfile, "ENTRYPOINT");
    argv.extend(exec_form(&dockerfile, "CMD"));
    assert_eq!(argv[0], "handover", "the entrypoint is handover");
    let ignore = std::fs::read_to_string(dir.join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "build output is not sent to the builder"
    );
    argv
}

/// The container's entrypoint, started as balena starts it, with the binary the
/// image would hold.
fn start(c: &Container, service: &str, lock_dir: &Path) -> Run {
    let argv = entrypoint(service);
    let handover = copied_handover(service).expect("checked by the test");
    let mut cmd = c.ns.command(handover);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HANDOVER_LOG_FORMAT", "json")
        .env("BALENA", "1")
        .env("BALENA_DEVICE_UUID", "device1")
        .env("BALENA_SERVICE_NAME", service)
        .env(
            "BALENA_SERVICE_HANDOVER_COMPLETE_PATH",
            lock_dir.join("handover-complete"),
        )
        .current_dir(example(service))
        .args(&argv[1..]);
    Run::spawn(cmd)
}

/// `GET http://ADDR:8080/` with curl from the bridge's host, as a client on the
/// LAN: the body, or `None` if the request failed.
fn get(host: &Netns, address: Ipv4Addr) -> Option<String> {
    let out = host
        .command("curl")
        .args(["-sS", "--max-time", "2", &format!("http://{address}:8080/")])
        .output()
        .expect("curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pid of the service `run` started.
fn child_pid(run: &mut Run) -> u32 {
    let started = run
        .wait_event("child_started", WAIT)
        .expect("child_started");
    started["pid"].as_u64().expect("pid") as u32
}

fn missing_program(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find(|n| {
            std::process::Command::new(n)
                .arg("--version")
                .output()
                .is_err()
        })
        .map(|n| format!("`{n}` is not installed"))
}

/// The old container leads; a new one starts, is ready (detected `via` the way its
/// Dockerfile says), and takes over: the old service is stopped, `handover` exits 0
/// and writes the complete file. `serving` tells whether a container's service
/// (and its process) serves: the old one's before, the new one's after.
fn hand_over(service: &str, via: &str, serving: impl Fn(&Containers, &Container, u32) -> bool) {
    require_netns!();
    require!(copied_handover(service).err());
    let net = Containers::new();
    let (old_c, new_c) = (net.container(), net.container());
    let dir = scratch(&format!("balena-{service}"));

    let mut old = start(&old_c, service, &dir);
    let ready = old
        .wait_event("ready", WAIT)
        .expect("the old service is ready");
    assert_eq!(
        ready["via"], via,
        "{service}: readiness detected as documented"
    );
    assert!(old.saw("elected", WAIT), "{service}: {:?}", old.seen);
    let old_pid = child_pid(&mut old);
    assert!(
        serving(&net, &old_c, old_pid),
        "{service}: the old container serves"
    );

    let mut new = start(&new_c, service, &dir);
    assert!(new.saw("ready", WAIT), "{service}: {:?}", new.seen);
    assert!(old.saw("shutdown_requested", WAIT), "{service}");
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0), "{service}");
    assert!(dir.join("handover-complete").is_file(), "{service}");
    assert!(new.saw("predecessor_done", WAIT), "{service}");
    let new_pid = child_pid(&mut new);
    assert!(
        serving(&net, &new_c, new_pid),
        "{service}: the new container serves"
    );
    assert!(
        !serving(&net, &old_c, old_pid),
        "{service}: the old one is gone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_node_service_hands_over_ready_by_http() {
    require!(missing_program(&["node", "curl"]));
    hand_over("web", "http", |net, c, _| {
        get(net.host(), c.address.expect("plugged")).is_some_and(|body| {
            let reply: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            reply["pid"].is_u64()
        })
    });
}

#[test]
fn the_python_worker_hands_over_ready_by_notify_socket() {
    require!(missing_program(&["python3"]));
    // The worker serves no clients: whether its process runs.
    hand_over("worker", "notify", |_, _, pid| {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.contains("worker.py"))
    });
}
