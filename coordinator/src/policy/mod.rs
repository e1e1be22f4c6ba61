//! The policy at the coordinator: what is enforced and counted
//! ([`enforced`]), how signed updates come in and reach the signers
//! ([`updates`]), and a future version evaluated beside it in shadow
//! ([`shadow`]). Every signer evaluates every request again on its own.

pub mod enforced;
pub mod shadow;
pub mod updates;

pub use enforced::{EnforcedPolicy, Gate};
