//! Keyfold coordinator: the REST API, the request lifecycle, and the
//! orchestration of key generation and signing across signer nodes over
//! QUIC. [`core`] maps each concern to its module.
#![forbid(unsafe_code)]

pub mod api;
pub mod blame;
pub mod bootstrap;
pub mod chain_rpc;
pub mod clock;
pub mod config;
pub mod core;
pub mod escrow;
pub mod journal;
pub mod keys;
pub mod merchants;
pub mod modules;
pub mod orders;
pub mod payments;
pub mod policy;
pub mod presig_pool;
pub mod reconcile;
pub mod recovery;
pub mod requests;
pub mod risk;
mod run;
mod sandbox;
pub mod schedules;
pub mod service;
pub mod signers;
pub mod signing;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod treasury;
pub mod webhooks;

pub use bootstrap::Parts;
pub use config::CoordinatorConfig;
pub use core::Coordinator;
pub use run::{run, serve};
