//! slx: deploy serverless stacks to AWS straight through the service APIs.
//!
//! Data flows one way: [`spec`] (YAML → typed, validated spec) → [`graph`]
//! (resources, edges, order) → [`provider`] (live state) → [`plan`] (pure diff)
//! → [`render`] / [`apply`]. [`cli`] wires them together.

pub mod diag;
pub mod spec;
pub mod graph;
pub mod package;
pub mod resource;
pub mod provider;
pub mod live;
pub mod plan;
pub mod apply;
pub mod render;
pub mod cli;
