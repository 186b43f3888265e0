//! slx: deploy serverless stacks to AWS straight through the service APIs.
//!
//! Data flows one way: [`spec`] (YAML → typed, validated spec) → [`graph`]
//! (resources, edges, order) → [`provider`] (live state) → [`plan`] (pure diff)
//! → [`render`] / [`apply`]. [`cli`] wires them together.

// Output that outlives its reader. std's print macros panic when stdout or
// stderr is a pipe whose reader has gone (`slx deploy | head`), which would
// stop a deploy halfway; these drop what cannot be written to a closed pipe
// and carry on. Any other write error still panics, as std's do.
macro_rules! emit {
    ($write:ident, $stream:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = $write!($stream, $($arg)*) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                panic!("cannot write output: {e}");
            }
        }
    }};
}
macro_rules! print { ($($arg:tt)*) => { emit!(write, std::io::stdout().lock(), $($arg)*) }; }
macro_rules! println { ($($arg:tt)*) => { emit!(writeln, std::io::stdout().lock(), $($arg)*) }; }
macro_rules! eprint { ($($arg:tt)*) => { emit!(write, std::io::stderr().lock(), $($arg)*) }; }
macro_rules! eprintln { ($($arg:tt)*) => { emit!(writeln, std::io::stderr().lock(), $($arg)*) }; }

pub mod apply;
pub mod cli;
pub mod diag;
pub mod graph;
pub mod init;
pub mod live;
pub mod package;
pub mod plan;
pub mod provider;
pub mod record;
pub mod render;
pub mod resource;
pub mod rollout;
pub mod spec;
