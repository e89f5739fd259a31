//! The library's listening-socket API (`handover_std::sockets::Sockets`): three
//! instances of a scope, one after the other, share one TCP listener through a
//! coordination directory; a connection queued while the socket changes owners is
//! accepted by the next one. (Each instance is a `Sockets` here; between processes
//! the command's tests show the same.)

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use handover_std::sockets::{ListenSpec, Sockets, Source};
use tokio::io::AsyncReadExt;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("handover-std-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn each_instance_takes_the_same_listener_from_the_one_before() {
    let dir = scratch("sockets");
    // Port 0: the first instance binds any free port; the next ones must find the
    // very socket, not bind another.
    let specs: Vec<ListenSpec> = vec!["http=tcp:127.0.0.1:0".parse().unwrap()];

    let mut first = Sockets::acquire(&specs, &dir, "svc").await.unwrap();
    assert_eq!(first.source(), None, "nothing to inherit at first");
    let port = first.get("http").unwrap().port().unwrap();
    first.own().unwrap();

    // A client connects while the first instance is still in charge, and nobody
    // accepts yet: the connection waits in the queue.
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut waiting = TcpStream::connect(address).unwrap();
    waiting.write_all(b"queued before the hand-over").unwrap();

    let mut second = Sockets::acquire(&specs, &dir, "svc").await.unwrap();
    assert_eq!(second.source(), Some(Source::PreviousInstance));
    assert_eq!(second.inherited(), ["http"]);
    assert_eq!(second.get("http").unwrap().port(), Some(port));
    // The first one steps down and closes everything it had; the second accepts
    // the connection that was queued meanwhile.
    drop(first);
    let listener = second.tcp("http").unwrap();
    let (mut accepted, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the queued connection is accepted")
        .unwrap();
    let mut got = [0u8; 27];
    accepted.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"queued before the hand-over");
    second.own().unwrap();

    // And on to a third, with a socket the second did not have: bound fresh.
    let more: Vec<ListenSpec> = vec![
        "http=tcp:127.0.0.1:0".parse().unwrap(),
        "admin=tcp:127.0.0.1:0".parse().unwrap(),
    ];
    let third = Sockets::acquire(&more, &dir, "svc").await.unwrap();
    assert_eq!(third.inherited(), ["http"]);
    assert_eq!(third.get("http").unwrap().port(), Some(port));
    assert_ne!(third.get("admin").unwrap().port(), Some(port));
    drop((second, third, waiting));

    // Another scope in the same directory shares nothing.
    let other = Sockets::acquire(&specs, &dir, "other").await.unwrap();
    assert_eq!(other.source(), None);
    let _ = std::fs::remove_dir_all(&dir);
}
