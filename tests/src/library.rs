//! Library instances (`handover_std::Handover`) in the tests' namespaces.

use handover_std::{Config, Handover};

use crate::netns::Netns;

/// Where an instance runs: the namespace its sockets live in (`None`: this one).
pub type Place<'a> = Option<&'a Netns>;

/// Starts an instance in `place` and says it is ready.
pub fn start(place: Place, config: Config) -> (tokio::runtime::Runtime, Handover) {
    let open = move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let handover = runtime.block_on(Handover::start(config)).expect("start");
        (runtime, handover)
    };
    // The runtime's worker thread is created inside the namespace, and the sockets
    // opened there stay there.
    let (runtime, handover) = match place {
        Some(ns) => ns.enter(open),
        None => open(),
    };
    runtime.block_on(handover.ready()).expect("ready");
    (runtime, handover)
}
