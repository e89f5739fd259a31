//! embassy-net adapter for the handover protocol on Cortex-M.
#![no_std]
