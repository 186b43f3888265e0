//! slx's one integration-test binary.

mod support;

mod cli;
mod e2e;
mod emulator;
mod events;
mod provider;
mod releases;
mod spec;
mod websocket;
