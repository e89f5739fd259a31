//! `handover`: the multicast election in-process; `--election etcd` executes
//! `handover-etcd` in its place.

fn main() -> std::process::ExitCode {
    handover_cli::main(handover_cli::Backends::MULTICAST)
}
