//! slx's one integration-test binary.

mod support;

mod cli;
mod e2e;
mod emulator;
mod events;
mod faults;
mod hostile;
mod init;
mod provider;
mod record;
mod releases;
mod snapshots;
mod spec;
mod websocket;
