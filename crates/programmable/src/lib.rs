//! Keyfold's programmable payments, as pure logic: no I/O, no clock (the
//! time is always an argument), so the coordinator, every signer and the
//! offline auditor compute the same answers.
//!
//! * [`schedule`]: recurring payouts: calendar rules, their occurrences,
//!   and which occurrences are due (or missed) at a given time.
//! * [`condition`]: conditional payouts (escrow): typed conditions, judged
//!   with the facts the coordinator gathered, and what happens on expiry.
//! * [`allocation`]: token allocation plans: groups, beneficiaries, cliffs
//!   and linear release, and what a beneficiary may claim at a given time.
//! * [`allocation_policy`]: a plan as the policy's vesting rules, which
//!   bound every claim at the coordinator, every signer and the auditor.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod allocation;
pub mod allocation_policy;
pub mod condition;
pub mod schedule;
