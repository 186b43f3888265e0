//! slx: deploy serverless stacks to AWS straight through the service APIs.
//!
//! Data flows one way: [`spec`] (YAML → typed, validated spec) → [`graph`]
//! (resources, edges, order) → [`provider`] (live state) → [`plan`] (pure diff)
//! → [`render`] / [`apply`]. [`cli`] wires them together.

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
