//! `handover-etcd`: `handover` with the etcd election linked in (gRPC, TLS).
//! `handover --election etcd` executes it; it takes every command `handover` does.

fn main() -> std::process::ExitCode {
    handover_cli::main(handover_cli::Backends::WITH_ETCD)
}
