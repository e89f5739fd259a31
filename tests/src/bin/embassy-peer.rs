//! `handover-embassy` on an embassy-net stack over a TAP device: the firmware side of
//! the interop tests, on the host. Prints one JSON object per event on stderr, with
//! the same names and `t_us` clock as `handover run --log-format json`.
//!
//! `embassy-peer TAP ADDRESS [--failover PRIORITY] [--heartbeat-ms N] [--key HEX]`
//! (`--key`: the group key as the 64 hex digits of a `--key-file`)
//! (ADDRESS of the stack, e.g. 10.9.0.2; its /24 is the TAP's link)

use std::time::Duration;

use embassy_futures::select::{select3, Either3};
use embassy_net::StackResources;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use handover_embassy::{Buffers, Network, Shared};
use handover_proto::{wire, Config, Event, Policy};
use handover_tests::embassy::ipv4;
use handover_tests::process::monotonic_us;

fn say(event: &str, fields: &str) {
    let sep = if fields.is_empty() { "" } else { "," };
    eprintln!(
        r#"{{"t_us":{},"event":"{event}"{sep}{fields}}}"#,
        monotonic_us()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: embassy-peer TAP ADDRESS [--failover PRIORITY] [--heartbeat-ms N] [--key HEX]";
    let tap = args.get(1).expect(usage);
    let address: std::net::Ipv4Addr = args.get(2).expect(usage).parse().expect(usage);
    let text = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let option = |name: &str| text(name).map(|v| v.parse::<u64>().expect(usage));
    let id = u64::from(u32::from(address)) << 16 | u64::from(std::process::id() as u16);
    let mut config = Config::new(wire::scope_id(b"interop"), id, 1_700_000_000_000, id);
    config.heartbeat = Duration::from_millis(option("--heartbeat-ms").unwrap_or(100));
    if let Some(hex) = text("--key") {
        let mut key = [0u8; wire::KEY_LEN];
        assert_eq!(hex.len(), 2 * key.len(), "{usage}");
        for (byte, digits) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let digits = std::str::from_utf8(digits).expect(usage);
            *byte = u8::from_str_radix(digits, 16).expect(usage);
        }
        config.auth = Some(handover_proto::Auth::new(key));
    }
    if let Some(priority) = option("--failover") {
        config.policy = Policy::Failover { preempt: false };
        config.priority = priority as u8;
    }

    let mut device = embassy_net_tuntap::TunTapDevice::new(tap).expect("open the TAP device");
    let mac = [
        0x02,
        0x48,
        address.octets()[1],
        address.octets()[2],
        address.octets()[3],
        0x01,
    ];
    device.set_hardware_address(mac);
    let mut resources = StackResources::<4>::new();
    let (stack, mut net) = embassy_net::new(device, ipv4(address.octets()), &mut resources, id);
    let shared = Shared::<NoopRawMutex>::new();
    let mut buffers = Buffers::new();
    let (handover, mut runner) =
        handover_embassy::new::<_, 8>(stack, &mut buffers, &shared, config, Network::default())
            .expect("start handover");
    say("listening", &format!(r#""id":"{id:016x}""#));

    let mut events = handover.events().expect("a subscriber");
    let app = async {
        stack.wait_config_up().await;
        handover.ready().await;
        say("ready", "");
        loop {
            let fields = |id: Option<u64>| {
                id.map(|id| format!(r#""id":"{id:016x}""#))
                    .unwrap_or_default()
            };
            match events.next().await {
                Event::Shutdown { successor } => {
                    say("shutdown_requested", &fields(successor.id()));
                    handover.shutdown_complete().await.expect("yielding");
                    say("exit", r#""code":0"#);
                    return;
                }
                Event::Elected => say("elected", ""),
                Event::Demoted => say("demoted", ""),
                Event::PredecessorDone { id } => say("predecessor_done", &fields(Some(id))),
                Event::LeaderChanged { id } => say("leader_changed", &fields(id)),
                Event::PeerUp { id, .. } => say("peer_up", &fields(Some(id))),
                Event::PeerDown { id } => say("peer_down", &fields(Some(id))),
                _ => {}
            }
        }
    };
    // tokio parks the thread between wake-ups (embassy-net-tuntap's reactor and
    // embassy-time's driver wake it).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    match runtime.block_on(select3(net.run(), runner.run(), app)) {
        Either3::Third(()) | Either3::Second(()) => {}
        Either3::First(never) => match never {},
    }
}
