//! The policy at the coordinator: what is enforced and counted
//! ([`enforced`]), and how signed updates come in and reach the signers
//! ([`updates`]). Every signer evaluates every request again on its own.

pub mod enforced;
pub mod updates;

pub use enforced::{EnforcedPolicy, Gate};
