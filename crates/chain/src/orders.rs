//! The state of a payment order, computed from its terms, the deposits the
//! chain watcher has seen for its address, the chain head and the time.
//!
//! Pure and deterministic: [`evaluate`] reads no clock and no chain; the
//! caller passes the previous state it stored, the current head and `now`,
//! and stores what comes back. Amounts are exact base units ([`U256`]).
//!
//! A deposit's confirmations are `head - block_number + 1` (0 while its block
//! is above the head). It is *confirmed* when that reaches
//! [`OrderTerms::confirmations`] (a requirement of 0 confirms at once). It is
//! *on time* when `first_seen_at < expires_at`, else *late*. Deposits of zero
//! base units pay nothing and are ignored (a zero-value token transfer costs
//! an attacker only gas, so it must not move an order out of `New`).
//!
//! The state, from the first row whose condition holds ("confirmed" and
//! "on-time total" count on-time deposits only; late ones never count):
//!
//! | # | previous   | condition                                         | state        |
//! |---|------------|---------------------------------------------------|--------------|
//! | 1 | Invalid    | (anything)                                        | `Invalid`    |
//! | 2 | Settled    | confirmed total >= amount                         | `Settled`    |
//! | 3 | Settled    | confirmed total < amount (a reorg deeper than the confirmation depth took a deposit away) | `Invalid` |
//! | 4 | other/none | confirmed total >= amount                         | `Settled`, `settled_at = now` |
//! | 5 | Expired    | on-time total (confirmed + pending) >= amount     | `Processing` (paid in time, confirmations came late) |
//! | 6 | Expired    | otherwise                                         | `Expired`    |
//! | 7 | other/none | `now < expires_at`, on-time total > 0             | `Processing` |
//! | 8 | other/none | `now < expires_at`                                | `New`        |
//! | 9 | other/none | `now >= expires_at`, on-time total >= amount      | `Processing` (paid in time, waiting for confirmations) |
//! |10 | other/none | `now >= expires_at`                               | `Expired`    |
//!
//! `Settled` and `Invalid` are final (rows 1-3): a settled order was booked
//! in the ledger, so losing its deposit is an incident for a person
//! (`Invalid`), never a silent return to `Processing`. `Expired` is final
//! too, except that a deposit first seen before expiry may still gather its
//! confirmations afterwards (rows 5, 4); a late deposit never revives it.
//!
//! The extra statuses, set whatever the state:
//!
//! | status         | condition                                  |
//! |----------------|--------------------------------------------|
//! | `paid_partial` | 0 < on-time total < amount                 |
//! | `paid_over`    | on-time total > amount                     |
//! | `paid_late`    | some late deposit (late total > 0)         |
//!
//! `settled_at` is `Some(now)` only on the evaluation where the state becomes
//! `Settled` from a state that was not; the caller keeps that first value.
//!
//! Totals saturate at `U256::MAX` rather than wrap: no real asset's supply
//! comes near it, and a saturated sum can only over-state a payment that
//! is impossible anyway, never panic on hostile input.

use alloy_primitives::U256;

/// What the order asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderTerms {
    /// The amount due, in base units of the order's asset. The caller
    /// refuses a zero amount at creation: here it would settle at once, as
    /// nothing is owed.
    pub amount: U256,
    /// Unix seconds; deposits first seen at or after this are late.
    pub expires_at: u64,
    /// Confirmations a deposit needs before it counts (0 = at once).
    pub confirmations: u32,
}

/// A deposit to the order's address, as the chain watcher saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenDeposit {
    /// Base units of the order's asset.
    pub amount: U256,
    /// The block that includes it.
    pub block_number: u64,
    /// Unix seconds when the watcher first saw it (kept across reorgs that
    /// move it to another block, so a re-included deposit stays on time).
    pub first_seen_at: u64,
}

impl SeenDeposit {
    /// Its confirmations at `head`: `head - block_number + 1`, or 0 while
    /// its block is above the head (the caller's head lags the watcher's).
    pub fn confirmations(&self, head: u64) -> u64 {
        match head.checked_sub(self.block_number) {
            Some(depth) => depth.saturating_add(1),
            None => 0,
        }
    }

    /// Whether it has the confirmations `terms` ask for at `head`.
    pub fn is_confirmed(&self, terms: &OrderTerms, head: u64) -> bool {
        terms.confirmations == 0 || self.confirmations(head) >= u64::from(terms.confirmations)
    }

    /// Whether it was first seen before the order expired.
    pub fn is_on_time(&self, terms: &OrderTerms) -> bool {
        self.first_seen_at < terms.expires_at
    }
}

/// The state of a payment order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderState {
    /// Nothing paid yet, not expired.
    New,
    /// Paid in time (in part or in full), waiting for more or for
    /// confirmations.
    Processing,
    /// Paid in full in time, confirmed. Final.
    Settled,
    /// Expired unpaid (or under-paid). Final unless an on-time deposit
    /// turns out to complete the payment.
    Expired,
    /// Was settled, then a reorg removed a confirmed deposit. Final: a
    /// person must look at it.
    Invalid,
}

/// A state name that [`OrderState::parse`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "order state {found:?} is unknown; expected one of new, processing, settled, expired, invalid \
     (was the store written by a newer Keyfold?)"
)]
pub struct UnknownOrderState {
    /// The refused text (cut to 40 characters).
    pub found: String,
}

impl OrderState {
    /// Every state, in lifecycle order.
    pub const ALL: [OrderState; 5] = [
        OrderState::New,
        OrderState::Processing,
        OrderState::Settled,
        OrderState::Expired,
        OrderState::Invalid,
    ];

    /// The name on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::New => "new",
            OrderState::Processing => "processing",
            OrderState::Settled => "settled",
            OrderState::Expired => "expired",
            OrderState::Invalid => "invalid",
        }
    }

    /// Parses [`OrderState::as_str`] (exact, lowercase).
    pub fn parse(s: &str) -> Result<OrderState, UnknownOrderState> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownOrderState {
                found: s.chars().take(40).collect(),
            })
    }

    /// No evaluation leaves this state (`Expired` is not counted: a late
    /// confirmation of an on-time deposit can still settle it).
    pub fn is_final(self) -> bool {
        matches!(self, OrderState::Settled | OrderState::Invalid)
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`evaluate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderStatus {
    /// The state.
    pub state: OrderState,
    /// 0 < on-time total < amount.
    pub paid_partial: bool,
    /// On-time total > amount.
    pub paid_over: bool,
    /// Some deposit came at or after expiry.
    pub paid_late: bool,
    /// On-time deposits with enough confirmations.
    pub confirmed_total: U256,
    /// On-time deposits still waiting for confirmations.
    pub pending_total: U256,
    /// Late deposits, confirmed or not (never counted towards the order;
    /// the merchant refunds or credits them).
    pub late_total: U256,
    /// `Some(now)` when this evaluation settled the order.
    pub settled_at: Option<u64>,
}

impl OrderStatus {
    /// The extra statuses set, in a fixed order: `paid_partial`,
    /// `paid_over`, `paid_late`.
    pub fn statuses(&self) -> Vec<&'static str> {
        [
            (self.paid_partial, "paid_partial"),
            (self.paid_over, "paid_over"),
            (self.paid_late, "paid_late"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }

    /// Confirmed plus pending on-time deposits.
    pub fn on_time_total(&self) -> U256 {
        self.confirmed_total.saturating_add(self.pending_total)
    }
}

/// The order's status, by the rules in the module documentation.
///
/// `previous` is the state stored by the last evaluation (`None` for a new
/// order), `head` the chain's current block number and `now` unix seconds.
pub fn evaluate(
    previous: Option<OrderState>,
    terms: &OrderTerms,
    deposits: &[SeenDeposit],
    head: u64,
    now: u64,
) -> OrderStatus {
    let mut confirmed_total = U256::ZERO;
    let mut pending_total = U256::ZERO;
    let mut late_total = U256::ZERO;
    for d in deposits.iter().filter(|d| !d.amount.is_zero()) {
        let total = if !d.is_on_time(terms) {
            &mut late_total
        } else if d.is_confirmed(terms, head) {
            &mut confirmed_total
        } else {
            &mut pending_total
        };
        *total = total.saturating_add(d.amount);
    }
    let on_time_total = confirmed_total.saturating_add(pending_total);
    let paid_in_full = confirmed_total >= terms.amount;
    let paid_in_time = on_time_total >= terms.amount;
    let before_expiry = now < terms.expires_at;

    let state = match previous {
        Some(OrderState::Invalid) => OrderState::Invalid,
        Some(OrderState::Settled) if paid_in_full => OrderState::Settled,
        Some(OrderState::Settled) => OrderState::Invalid,
        _ if paid_in_full => OrderState::Settled,
        Some(OrderState::Expired) if paid_in_time => OrderState::Processing,
        Some(OrderState::Expired) => OrderState::Expired,
        _ if before_expiry && !on_time_total.is_zero() => OrderState::Processing,
        _ if before_expiry => OrderState::New,
        _ if paid_in_time => OrderState::Processing,
        _ => OrderState::Expired,
    };
    let settled_at =
        (state == OrderState::Settled && previous != Some(OrderState::Settled)).then_some(now);

    OrderStatus {
        state,
        paid_partial: !on_time_total.is_zero() && on_time_total < terms.amount,
        paid_over: on_time_total > terms.amount,
        paid_late: !late_total.is_zero(),
        confirmed_total,
        pending_total,
        late_total,
        settled_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXPIRES: u64 = 1_000;

    fn terms(amount: u64) -> OrderTerms {
        OrderTerms {
            amount: U256::from(amount),
            expires_at: EXPIRES,
            confirmations: 3,
        }
    }

    fn dep(amount: u64, block_number: u64, first_seen_at: u64) -> SeenDeposit {
        SeenDeposit {
            amount: U256::from(amount),
            block_number,
            first_seen_at,
        }
    }

    fn u(v: u64) -> U256 {
        U256::from(v)
    }

    #[test]
    fn state_names_round_trip() {
        for st in OrderState::ALL {
            assert_eq!(OrderState::parse(st.as_str()), Ok(st));
            assert_eq!(st.to_string(), st.as_str());
        }
        let err = OrderState::parse("Settled").unwrap_err();
        assert!(err.to_string().contains("expected one of new"), "{err}");
        assert_eq!(
            OrderState::parse(&"x".repeat(1000))
                .unwrap_err()
                .found
                .len(),
            40
        );
    }

    #[test]
    fn confirmations_count_the_including_block() {
        let d = dep(1, 10, 0);
        assert_eq!(d.confirmations(9), 0, "block above head");
        assert_eq!(d.confirmations(10), 1);
        assert_eq!(d.confirmations(12), 3);
        assert_eq!(dep(1, 0, 0).confirmations(u64::MAX), u64::MAX, "saturates");
        let t = terms(1);
        assert!(!d.is_confirmed(&t, 11));
        assert!(d.is_confirmed(&t, 12));
        let at_once = OrderTerms {
            confirmations: 0,
            ..t
        };
        assert!(d.is_confirmed(&at_once, 5), "0 required confirms at once");
    }

    #[test]
    fn row1_invalid_is_absorbing() {
        let s = evaluate(
            Some(OrderState::Invalid),
            &terms(100),
            &[dep(100, 1, 10)],
            50,
            10,
        );
        assert_eq!(s.state, OrderState::Invalid);
        assert_eq!(s.settled_at, None);
    }

    #[test]
    fn row2_settled_stays_settled() {
        let s = evaluate(
            Some(OrderState::Settled),
            &terms(100),
            &[dep(100, 1, 10)],
            50,
            5_000,
        );
        assert_eq!(s.state, OrderState::Settled);
        assert_eq!(s.settled_at, None, "the caller keeps the first settled_at");
    }

    #[test]
    fn row3_settled_loses_its_deposit_to_a_deep_reorg() {
        let s = evaluate(Some(OrderState::Settled), &terms(100), &[], 50, 20);
        assert_eq!(s.state, OrderState::Invalid);
        // The deposit re-included in a fresh block is no longer confirmed.
        let s = evaluate(
            Some(OrderState::Settled),
            &terms(100),
            &[dep(100, 50, 10)],
            50,
            20,
        );
        assert_eq!(s.state, OrderState::Invalid);
    }

    #[test]
    fn row4_confirmed_on_time_total_settles() {
        let t = terms(100);
        let d = [dep(60, 10, 100), dep(40, 11, 200)];
        let s = evaluate(Some(OrderState::Processing), &t, &d, 13, 300);
        assert_eq!(s.state, OrderState::Settled);
        assert_eq!(s.settled_at, Some(300));
        assert_eq!(s.confirmed_total, u(100));
        assert_eq!(s.pending_total, U256::ZERO);
        assert!(s.statuses().is_empty());
        // Settles after expiry as well, and straight from a new order.
        let s = evaluate(None, &t, &d, 13, EXPIRES + 50);
        assert_eq!(
            (s.state, s.settled_at),
            (OrderState::Settled, Some(EXPIRES + 50))
        );
    }

    #[test]
    fn row5_expired_revived_by_on_time_deposit_confirming_late() {
        let t = terms(100);
        // Seen at 900 (before expiry), only one confirmation at expiry.
        let d = [dep(100, 10, 900)];
        let s = evaluate(Some(OrderState::Expired), &t, &d, 10, EXPIRES + 10);
        assert_eq!(s.state, OrderState::Processing);
        let s = evaluate(Some(s.state), &t, &d, 12, EXPIRES + 40);
        assert_eq!(
            (s.state, s.settled_at),
            (OrderState::Settled, Some(EXPIRES + 40))
        );
    }

    #[test]
    fn row6_expired_stays_expired() {
        let t = terms(100);
        let s = evaluate(
            Some(OrderState::Expired),
            &t,
            &[dep(50, 10, 900)],
            20,
            2_000,
        );
        assert_eq!(s.state, OrderState::Expired);
        assert!(s.paid_partial);
        // Late deposits, even confirmed and enough, never revive it.
        let d = [dep(50, 10, 900), dep(500, 11, EXPIRES)];
        let s = evaluate(Some(OrderState::Expired), &t, &d, 20, 2_000);
        assert_eq!(s.state, OrderState::Expired);
        assert!(s.paid_late && s.paid_partial && !s.paid_over);
        assert_eq!(s.late_total, u(500));
        // A clock that went back does not reopen it either.
        let s = evaluate(Some(OrderState::Expired), &t, &[dep(50, 10, 900)], 20, 10);
        assert_eq!(s.state, OrderState::Expired);
    }

    #[test]
    fn row7_processing_before_expiry_with_any_on_time_deposit() {
        let t = terms(100);
        // Unconfirmed (block above head even).
        let s = evaluate(Some(OrderState::New), &t, &[dep(10, 30, 100)], 20, 150);
        assert_eq!(s.state, OrderState::Processing);
        assert_eq!(s.pending_total, u(10));
        // Confirmed but short.
        let s = evaluate(None, &t, &[dep(10, 1, 100)], 20, 150);
        assert_eq!(s.state, OrderState::Processing);
        assert_eq!(s.confirmed_total, u(10));
        assert_eq!(s.statuses(), vec!["paid_partial"]);
        // Paid in full but waiting for confirmations.
        let s = evaluate(None, &t, &[dep(100, 20, 100)], 20, 150);
        assert_eq!(s.state, OrderState::Processing);
        assert!(!s.paid_partial && !s.paid_over);
    }

    #[test]
    fn row8_new_before_expiry_without_deposits() {
        let t = terms(100);
        assert_eq!(evaluate(None, &t, &[], 20, 150).state, OrderState::New);
        // Zero-amount deposits pay nothing.
        let s = evaluate(None, &t, &[dep(0, 1, 100)], 20, 150);
        assert_eq!(s.state, OrderState::New);
        assert!(s.statuses().is_empty());
    }

    #[test]
    fn row9_paid_in_time_waits_for_confirmations_past_expiry() {
        let t = terms(100);
        let d = [dep(70, 5, 100), dep(30, 20, 999)];
        let s = evaluate(Some(OrderState::Processing), &t, &d, 20, EXPIRES);
        assert_eq!(s.state, OrderState::Processing);
        assert_eq!((s.confirmed_total, s.pending_total), (u(70), u(30)));
    }

    #[test]
    fn row10_expires_at_expiry_when_short() {
        let t = terms(100);
        assert_eq!(
            evaluate(None, &t, &[], 20, EXPIRES).state,
            OrderState::Expired
        );
        assert_eq!(
            evaluate(None, &t, &[], 20, EXPIRES - 1).state,
            OrderState::New
        );
        let s = evaluate(
            Some(OrderState::Processing),
            &t,
            &[dep(99, 1, 10)],
            20,
            EXPIRES,
        );
        assert_eq!(s.state, OrderState::Expired);
        assert!(s.paid_partial);
        // Only late money: expired, paid late, not partial.
        let s = evaluate(
            Some(OrderState::New),
            &t,
            &[dep(100, 1, EXPIRES)],
            20,
            EXPIRES,
        );
        assert_eq!(s.state, OrderState::Expired);
        assert_eq!(s.statuses(), vec!["paid_late"]);
    }

    #[test]
    fn flags_over_and_late_alongside_settled() {
        let t = terms(100);
        let d = [dep(150, 1, 10), dep(5, 2, EXPIRES + 1)];
        let s = evaluate(None, &t, &d, 20, EXPIRES + 2);
        assert_eq!(s.state, OrderState::Settled);
        assert_eq!(s.statuses(), vec!["paid_over", "paid_late"]);
        assert_eq!((s.confirmed_total, s.late_total), (u(150), u(5)));
        // Late deposits do not make an on-time payment "over".
        let d = [dep(100, 1, 10), dep(5, 2, EXPIRES + 1)];
        assert!(!evaluate(None, &t, &d, 20, EXPIRES + 2).paid_over);
    }

    #[test]
    fn huge_totals_saturate_instead_of_panicking() {
        let t = terms(1);
        let d = [SeenDeposit {
            amount: U256::MAX,
            block_number: 1,
            first_seen_at: 1,
        }; 3];
        let s = evaluate(None, &t, &d, 10, 10);
        assert_eq!(s.confirmed_total, U256::MAX);
        assert_eq!(s.state, OrderState::Settled);
    }

    // ---- property tests ----

    fn arb_state() -> impl Strategy<Value = Option<OrderState>> {
        prop_oneof![
            Just(None),
            proptest::sample::select(OrderState::ALL.to_vec()).prop_map(Some),
        ]
    }

    fn arb_terms() -> impl Strategy<Value = OrderTerms> {
        (1u64..=1_000, 100u64..200, 0u32..5).prop_map(|(amount, expires_at, confirmations)| {
            OrderTerms {
                amount: U256::from(amount),
                expires_at,
                confirmations,
            }
        })
    }

    fn arb_deposit() -> impl Strategy<Value = SeenDeposit> {
        (0u64..=600, 0u64..30, 50u64..250).prop_map(|(a, b, s)| dep(a, b, s))
    }

    fn arb_deposits() -> impl Strategy<Value = Vec<SeenDeposit>> {
        proptest::collection::vec(arb_deposit(), 0..8)
    }

    /// One thing that can happen between two evaluations.
    #[derive(Debug, Clone)]
    enum Step {
        Add(SeenDeposit),
        /// A reorg drops the deposit at this index (modulo the count).
        Remove(usize),
        /// The head moves (down too: a reorg to a shorter chain).
        Head(i8),
        Time(u16),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            arb_deposit().prop_map(Step::Add),
            any::<usize>().prop_map(Step::Remove),
            (-2i8..=4).prop_map(Step::Head),
            (0u16..60).prop_map(Step::Time),
        ]
    }

    proptest! {
        /// (a), (b): along any history, Settled only goes to Settled or
        /// Invalid, and Invalid never leaves.
        #[test]
        fn settled_and_invalid_are_final_along_histories(
            t in arb_terms(),
            start in arb_deposits(),
            steps in proptest::collection::vec(arb_step(), 0..40),
            head0 in 0u64..30,
            now0 in 50u64..250,
        ) {
            let (mut deposits, mut head, mut now) = (start, head0, now0);
            let mut state = evaluate(None, &t, &deposits, head, now).state;
            for step in steps {
                match step {
                    Step::Add(d) => deposits.push(d),
                    Step::Remove(i) if !deposits.is_empty() => {
                        let i = i % deposits.len();
                        deposits.remove(i);
                    }
                    Step::Remove(_) => {}
                    Step::Head(dh) => head = head.saturating_add_signed(i64::from(dh)),
                    Step::Time(dt) => now += u64::from(dt),
                }
                let next = evaluate(Some(state), &t, &deposits, head, now);
                match state {
                    OrderState::Settled => prop_assert!(
                        matches!(next.state, OrderState::Settled | OrderState::Invalid),
                        "settled went to {:?}", next.state
                    ),
                    OrderState::Invalid => prop_assert_eq!(next.state, OrderState::Invalid),
                    _ => {}
                }
                prop_assert_eq!(
                    next.settled_at.is_some(),
                    next.state == OrderState::Settled && state != OrderState::Settled
                );
                state = next.state;
            }
        }

        /// (a), (b) for any single evaluation.
        #[test]
        fn final_states_from_any_inputs(
            t in arb_terms(), d in arb_deposits(), head in 0u64..40, now in 0u64..300,
        ) {
            let s = evaluate(Some(OrderState::Settled), &t, &d, head, now).state;
            prop_assert!(matches!(s, OrderState::Settled | OrderState::Invalid));
            let s = evaluate(Some(OrderState::Invalid), &t, &d, head, now).state;
            prop_assert_eq!(s, OrderState::Invalid);
        }

        /// (c): a further confirmed on-time deposit never un-settles.
        #[test]
        fn extra_confirmed_on_time_deposit_keeps_settled(
            prev in arb_state(),
            t in arb_terms(),
            d in arb_deposits(),
            head in 0u64..40,
            now in 0u64..300,
            extra_amount in 0u64..=600,
            extra_depth in 0u64..10,
            extra_seen in 0u64..100,
        ) {
            let s = evaluate(prev, &t, &d, head, now);
            prop_assume!(s.state == OrderState::Settled);
            // Deep enough to be confirmed at `head`.
            let needed = u64::from(t.confirmations).max(1) - 1;
            prop_assume!(head >= needed);
            let block_number = (head - needed).saturating_sub(extra_depth);
            let extra = dep(extra_amount, block_number, extra_seen);
            prop_assert!(extra.is_on_time(&t) && extra.is_confirmed(&t, head));
            let mut more = d.clone();
            more.push(extra);
            prop_assert_eq!(
                evaluate(Some(OrderState::Settled), &t, &more, head, now).state,
                OrderState::Settled
            );
            prop_assert_eq!(evaluate(prev, &t, &more, head, now).state, OrderState::Settled);
        }

        /// (d): confirmed + pending is exactly the on-time deposits' sum;
        /// the late total is the rest.
        #[test]
        fn totals_partition_the_deposits(
            prev in arb_state(), t in arb_terms(), d in arb_deposits(),
            head in 0u64..40, now in 0u64..300,
        ) {
            let s = evaluate(prev, &t, &d, head, now);
            let on_time = d.iter().filter(|x| x.is_on_time(&t)).fold(U256::ZERO, |a, x| a + x.amount);
            let late = d.iter().filter(|x| !x.is_on_time(&t)).fold(U256::ZERO, |a, x| a + x.amount);
            prop_assert_eq!(s.confirmed_total + s.pending_total, on_time);
            prop_assert_eq!(s.on_time_total(), on_time);
            prop_assert_eq!(s.late_total, late);
            prop_assert_eq!(s.paid_partial, !on_time.is_zero() && on_time < t.amount);
            prop_assert_eq!(s.paid_over, on_time > t.amount);
            prop_assert_eq!(s.paid_late, !late.is_zero());
        }

        /// (e): same inputs, same output, whatever the deposits' order.
        #[test]
        fn deterministic_and_order_independent(
            prev in arb_state(), t in arb_terms(), d in arb_deposits(),
            head in 0u64..40, now in 0u64..300,
        ) {
            let a = evaluate(prev, &t, &d, head, now);
            prop_assert_eq!(&a, &evaluate(prev, &t, &d, head, now));
            let mut rev = d.clone();
            rev.reverse();
            prop_assert_eq!(&a, &evaluate(prev, &t, &rev, head, now));
        }

        /// Late deposits never revive an expired order.
        #[test]
        fn late_deposit_never_revives_expired(
            t in arb_terms(), d in arb_deposits(), head in 0u64..40,
            after in 0u64..100, late_amount in 1u64..=10_000, late_block in 0u64..40,
            late_delay in 0u64..100,
        ) {
            let now = t.expires_at + after;
            let s = evaluate(Some(OrderState::Expired), &t, &d, head, now);
            prop_assume!(s.state == OrderState::Expired);
            let mut more = d.clone();
            more.push(dep(late_amount, late_block, t.expires_at + late_delay));
            let s2 = evaluate(Some(OrderState::Expired), &t, &more, head, now);
            prop_assert_eq!(s2.state, OrderState::Expired);
            prop_assert!(s2.paid_late);
        }
    }
}
