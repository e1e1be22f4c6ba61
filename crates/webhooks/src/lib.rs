//! `keyfold-webhooks`: the pure parts of webhook delivery.
//!
//! Nothing here does I/O, spawns tasks or reads the clock: the time is an
//! argument and DNS answers come from the caller, so the coordinator's
//! webhook sender only drives these functions and every rule is testable
//! without sockets.
//!
//! * [`sign`]: Standard Webhooks 1.0 signatures. [`Secret`] (`whsec_`,
//!   HMAC-SHA256, `v1`) and [`SigningKey`] / [`VerifyingKey`] (`whsk_` /
//!   `whpk_`, Ed25519, `v1a`); [`sign_v1`], [`sign_v1a`],
//!   [`signature_header`] (several signatures during a secret rotation),
//!   [`verify`] with a [`TOLERANCE_SECS`] replay window, and
//!   [`new_message_id`].
//! * [`schedule`]: the retry schedule, [`MAX_ATTEMPTS`] attempts over about
//!   three days, with deterministic jitter ([`delay_after`]).
//! * [`target`]: SSRF checks on endpoint URLs ([`parse_endpoint_url`]) and
//!   on the addresses their hosts resolve to ([`check_resolved`],
//!   [`is_private`]).
//! * [`filter`]: event types (`order.settled`) and endpoint filters
//!   (`order.settled`, `order.*`, `*`): [`parse_filter`], [`matches()`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod filter;
pub mod schedule;
pub mod sign;
pub mod target;

pub use filter::{
    matches, matches_any, parse_filter, parse_filters, EventFilter, EventType, FilterError,
    MAX_EVENT_TYPE_LEN, MAX_FILTERS,
};
pub use schedule::{
    delay_after, nominal_delay_after, JITTER_PERMILLE, MAX_ATTEMPTS, NOMINAL_DELAYS, NOMINAL_TOTAL,
};
pub use sign::{
    new_message_id, new_message_id_with, parse_timestamp, sign_v1, sign_v1a, signature_header,
    verify, KeyError, Secret, SigningKey, VerifyError, VerifyingKey, HEADER_ID, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, TOLERANCE_SECS,
};
pub use target::{check_resolved, is_private, parse_endpoint_url, TargetError, MAX_URL_LEN};
