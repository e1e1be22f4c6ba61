//! The signers as the coordinator sees them: the command client over a
//! transport ([`client`]) and which of them are up ([`liveness`]).

pub mod client;
pub mod liveness;

pub use client::{
    describe, Failure, NodeFailure, QuicTransport, SignerClient, Transport, Unreachable,
};
pub use liveness::Liveness;
