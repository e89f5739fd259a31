//! Configuration from the environment: any values give a configuration or an error
//! that names the variable at fault, never a panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const VARIABLES: &[&str] = &[
    "BALENA_DEVICE_UUID",
    "BALENA_SERVICE_NAME",
    "HANDOVER_SCOPE",
    "BALENA_SERVICE_HANDOVER_COMPLETE_PATH",
    "HANDOVER_NETWORK_MODE",
    "NETWORK_INTERFACE",
    "SHUTDOWN_BROADCAST_ADDRESS",
    "SHUTDOWN_PORT",
    "RESIN_SERVICE_KILL_ME_PATH",
];

#[derive(Debug, Arbitrary)]
struct Input {
    vars: Vec<(u8, String)>,
    id: u64,
}

fuzz_target!(|input: Input| {
    let lookup = |name: &str| {
        input
            .vars
            .iter()
            .rev()
            .find(|(i, _)| VARIABLES[*i as usize % VARIABLES.len()] == name)
            .map(|(_, v)| v.clone())
    };
    match handover_std::Config::from_lookup(lookup) {
        Ok(config) => {
            // A configuration from the environment is one the core accepts, or the
            // error names the setting. (Ids are drawn by the driver, never 0.)
            if let Err(e) = config.to_proto(input.id.max(1), 0, 0, &[]) {
                assert!(e.to_string().starts_with("name:"), "{e}");
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                VARIABLES.iter().any(|v| message.starts_with(v)),
                "error does not name the variable: {message}"
            );
        }
    }
});
