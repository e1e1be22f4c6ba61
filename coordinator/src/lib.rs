//! Keyfold coordinator: the REST API, and the orchestration of key generation
//! and signing across signer nodes over QUIC.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod orchestrator;
pub mod policy_gate;
mod run;
pub mod service;

pub use config::CoordinatorConfig;
pub use orchestrator::Orchestrator;
pub use run::run;
