//! Puts the memory map of the emulated board for the target where cortex-m-rt's
//! linker script finds it, as `memory.x`: the Cortex-M4 of mps2-an386, or the
//! Cortex-M0 of the BBC micro:bit (an nRF51822) for thumbv6m. No file in the package
//! has that name, as the linker would look there first.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let memory = match env::var("TARGET").unwrap().as_str() {
        "thumbv6m-none-eabi" => "memory-microbit.x",
        _ => "memory-mps2.x",
    };
    fs::copy(memory, out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory-mps2.x");
    println!("cargo:rerun-if-changed=memory-microbit.x");
}
