//! Bridge networking: a superseded instance whose successor could not take the
//! sockets (another network namespace) forwards the connections that still
//! reach it.

use std::net::SocketAddr;

use super::{Address, Listener};

/// Accepts what still reaches the TCP sockets among `listeners` and forwards each
/// connection to `successor`, same port, until `stop` resolves.
pub(super) async fn forward_all(
    listeners: &[Listener],
    successor: std::net::IpAddr,
    stop: impl std::future::Future,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        if !matches!(listener.spec().address, Address::Tcp(_)) {
            continue;
        }
        let (Some(port), Ok(copy)) = (listener.port(), listener.try_clone()) else {
            continue;
        };
        let Ok(accepting) = copy.into_tokio_tcp() else {
            continue;
        };
        let to = SocketAddr::new(successor, port);
        tracing::info!("forwarding {} to {to}", listener.name());
        tasks.spawn(forward(accepting, to));
    }
    stop.await;
}

/// Accepts on `listener` and joins each connection to one made to `to`.
async fn forward(listener: tokio::net::TcpListener, to: SocketAddr) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(to).await {
                Ok(mut server) => {
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                Err(e) => tracing::warn!("forwarding to {to}: {e}"),
            }
        });
    }
}
