//! What the treasury should do next for one tier (pure): from the ledger's
//! balances, the transfers in flight and the limits, the sweeps, the
//! hot-to-cold transfer and the replenishment to create, and the alerts to
//! raise. No I/O, no clock: the service reads the facts and the time and
//! carries out what comes back.
//!
//! * The hot wallet's **projected** balance is its booked balance, less
//!   what is on its way out (payouts and transfers not yet final), plus what
//!   is on its way in (sweeps and replenishments not yet final). Decisions
//!   rest on it, so a transfer in flight is never asked for twice.
//! * Above the high-water mark the excess over the target goes to cold (one
//!   transfer at a time, to the configured cold address only).
//! * Below the low-water mark a replenishment from cold up to the target is
//!   requested (one at a time; after officers refuse one, not again before
//!   the retry delay).
//! * Deposit addresses are swept into hot, at most `max_sweeps_in_flight`
//!   at once and `sweeps_per_minute` started per minute. A native sweep
//!   sends the balance less the fee reserve, and only when that is at
//!   least the reserve itself (dust is not worth its gas); a token sweep
//!   first needs the address to hold gas, which the gas tank sends (a
//!   top-up).
//! * Sweeps and their top-ups wait while a presignature pool is low: a
//!   sweep is a full threshold signing, and its CPU at the signers would
//!   starve the refill that keeps payouts on their fast path.

use std::collections::BTreeSet;

/// The limits of one tier (from its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sweep to cold above it.
    pub high_water: u128,
    /// Replenish below it.
    pub low_water: u128,
    /// Aim of both.
    pub target: u128,
    /// Smallest sweep.
    pub sweep_min: u128,
    /// Sweeps in flight at once.
    pub max_sweeps_in_flight: u32,
    /// New sweeps per minute.
    pub sweeps_per_minute: u32,
    /// Wait after a refused replenishment (seconds).
    pub replenish_retry_secs: u64,
}

/// A deposit address holding the tier's asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deposit {
    /// Its address.
    pub address: String,
    /// Ledger balance in the tier's asset.
    pub balance: u128,
    /// Ledger balance in the chain's native coin (gas for a token sweep).
    pub native: u128,
}

/// The facts the plan reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierState {
    /// Whether the asset is the chain's native coin (fees come out of the
    /// same balance).
    pub native: bool,
    /// The hot wallet's ledger balance.
    pub hot: u128,
    /// Out of hot, not yet final (payouts and transfers).
    pub hot_outgoing: u128,
    /// Into hot, not yet final (sweeps and replenishments).
    pub hot_incoming: u128,
    /// The cold wallet's ledger balance.
    pub cold: u128,
    /// The gas tank's native ledger balance (token tiers).
    pub gas_tank: u128,
    /// A hot-to-cold transfer is in flight.
    pub hot_to_cold_open: bool,
    /// A replenishment is in flight (waiting for officers, or sent).
    pub replenishment_open: Option<String>,
    /// The last replenishment that ended without a transfer (refused,
    /// expired, cancelled, failed): its payout id and when it ended.
    pub replenishment_refused: Option<(String, u64)>,
    /// Addresses with a sweep or a gas top-up in flight.
    pub busy: BTreeSet<String>,
    /// Sweeps in flight.
    pub sweeps_open: u32,
    /// Sweeps started in the last 60 seconds.
    pub sweeps_last_minute: u32,
    /// Deposit addresses holding the asset, oldest order first.
    pub deposits: Vec<Deposit>,
    /// The native fee one transfer of this asset may cost (gas limit times
    /// the fee cap it will be sent with).
    pub fee_reserve: u128,
    /// The native fee a top-up transfer may cost (token tiers).
    pub top_up_fee_reserve: u128,
    /// A presignature pool holds less than half its target: sweeps wait.
    pub pool_low: bool,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Sweep `amount` from a deposit address into hot.
    Sweep {
        /// The deposit address.
        address: String,
        /// Base units.
        amount: u128,
    },
    /// Send native gas from the gas tank to a deposit address first.
    GasTopUp {
        /// The deposit address.
        address: String,
        /// Native base units.
        amount: u128,
    },
    /// Send `amount` from hot to cold.
    HotToCold {
        /// Base units.
        amount: u128,
    },
    /// Ask for `amount` from cold to hot (goes through the policy).
    Replenish {
        /// Base units.
        amount: u128,
    },
    /// Something a person must look at.
    Alert(Alert),
}

/// Why the treasury needs a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// Hot is below its low-water mark and the last replenishment was
    /// refused; a new one is asked for after the retry delay.
    ReplenishmentRefused {
        /// The refused payout.
        payout_id: String,
        /// The projected hot balance.
        hot: u128,
        /// When a new one may be asked for.
        retry_at: u64,
    },
    /// Cold holds too little for the replenishment (it asks for what cold
    /// has, if anything).
    ColdShort {
        /// What hot needs.
        needed: u128,
        /// What cold holds.
        cold: u128,
    },
    /// The gas tank cannot pay a top-up: token sweeps wait.
    GasTankDry {
        /// What the top-up needs (with its own fee).
        needed: u128,
        /// What the tank holds.
        tank: u128,
    },
}

/// The plan for one tier at `now` (see the module docs).
pub fn plan(l: &Limits, s: &TierState, now: u64) -> Vec<Action> {
    let mut out = Vec::new();
    let projected = s
        .hot
        .saturating_sub(s.hot_outgoing)
        .saturating_add(s.hot_incoming);

    if projected > l.high_water && !s.hot_to_cold_open {
        // A native transfer's fee comes out of hot too.
        let spendable = if s.native {
            s.hot
                .saturating_sub(s.hot_outgoing)
                .saturating_sub(s.fee_reserve)
        } else {
            s.hot.saturating_sub(s.hot_outgoing)
        };
        let amount = (projected - l.target).min(spendable);
        if amount > 0 {
            out.push(Action::HotToCold { amount });
        }
    }

    if projected < l.low_water && s.replenishment_open.is_none() {
        let needed = l.target - projected.min(l.target);
        let refused = s
            .replenishment_refused
            .as_ref()
            .filter(|(_, at)| now < at.saturating_add(l.replenish_retry_secs));
        if let Some((payout_id, at)) = refused {
            out.push(Action::Alert(Alert::ReplenishmentRefused {
                payout_id: payout_id.clone(),
                hot: projected,
                retry_at: at.saturating_add(l.replenish_retry_secs),
            }));
        } else {
            let available = if s.native {
                s.cold.saturating_sub(s.fee_reserve)
            } else {
                s.cold
            };
            if available < needed {
                out.push(Action::Alert(Alert::ColdShort {
                    needed,
                    cold: s.cold,
                }));
            }
            let amount = needed.min(available);
            if amount > 0 {
                out.push(Action::Replenish { amount });
            }
        }
    }

    if s.pool_low {
        return out;
    }
    let mut open = s.sweeps_open;
    let mut started = s.sweeps_last_minute;
    let mut tank = s.gas_tank;
    for d in &s.deposits {
        if open >= l.max_sweeps_in_flight || started >= l.sweeps_per_minute {
            break;
        }
        if s.busy.contains(&d.address) {
            continue;
        }
        if s.native {
            // A sweep moves at least what it may cost: dust stays put.
            let amount = d.balance.saturating_sub(s.fee_reserve);
            if amount > 0 && amount >= l.sweep_min && amount >= s.fee_reserve {
                out.push(Action::Sweep {
                    address: d.address.clone(),
                    amount,
                });
                open += 1;
                started += 1;
            }
            continue;
        }
        if d.balance == 0 || d.balance < l.sweep_min {
            continue;
        }
        if d.native >= s.fee_reserve {
            out.push(Action::Sweep {
                address: d.address.clone(),
                amount: d.balance,
            });
            open += 1;
            started += 1;
        } else {
            let amount = s.fee_reserve - d.native;
            let needed = amount.saturating_add(s.top_up_fee_reserve);
            if tank < needed {
                out.push(Action::Alert(Alert::GasTankDry { needed, tank }));
                break;
            }
            tank -= needed;
            out.push(Action::GasTopUp {
                address: d.address.clone(),
                amount,
            });
            // A top-up takes a sweep's turn: it is the sweep's first half.
            open += 1;
            started += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        high_water: 1000,
        low_water: 200,
        target: 500,
        sweep_min: 10,
        max_sweeps_in_flight: 2,
        sweeps_per_minute: 30,
        replenish_retry_secs: 60,
    };

    fn native(hot: u128) -> TierState {
        TierState {
            native: true,
            hot,
            cold: 10_000,
            fee_reserve: 5,
            ..Default::default()
        }
    }

    fn dep(a: &str, balance: u128, native: u128) -> Deposit {
        Deposit {
            address: a.into(),
            balance,
            native,
        }
    }

    #[test]
    fn sweeps_and_top_ups_wait_while_a_presignature_pool_is_low() {
        let mut s = native(1500);
        s.deposits = vec![dep("0xa", 100, 0)];
        s.pool_low = true;
        // Hot-to-cold (a presignature or full signing of a root key, one
        // transfer) goes on; the deposit waits.
        assert_eq!(plan(&L, &s, 0), vec![Action::HotToCold { amount: 1000 }]);
        s.pool_low = false;
        assert!(plan(&L, &s, 0).contains(&Action::Sweep {
            address: "0xa".into(),
            amount: 95
        }));
        let mut t = TierState {
            native: false,
            hot: 300,
            fee_reserve: 5,
            top_up_fee_reserve: 5,
            gas_tank: 1000,
            deposits: vec![dep("0xb", 50, 0)],
            pool_low: true,
            ..Default::default()
        };
        assert_eq!(plan(&L, &t, 0), vec![]);
        t.pool_low = false;
        assert_eq!(
            plan(&L, &t, 0),
            vec![Action::GasTopUp {
                address: "0xb".into(),
                amount: 5
            }]
        );
    }

    #[test]
    fn hot_above_high_water_sweeps_the_excess_over_target_to_cold_once() {
        assert_eq!(
            plan(&L, &native(1500), 0),
            vec![Action::HotToCold { amount: 1000 }]
        );
        let mut s = native(1500);
        s.hot_to_cold_open = true;
        assert_eq!(plan(&L, &s, 0), vec![]);
        // In-flight payouts count: 1500 - 600 out is within the marks.
        let mut s = native(1500);
        s.hot_outgoing = 600;
        assert_eq!(plan(&L, &s, 0), vec![]);
        // Exactly at the mark: nothing.
        assert_eq!(plan(&L, &native(1000), 0), vec![]);
    }

    #[test]
    fn hot_below_low_water_asks_cold_for_the_difference_once() {
        assert_eq!(
            plan(&L, &native(150), 0),
            vec![Action::Replenish { amount: 350 }]
        );
        let mut s = native(150);
        s.replenishment_open = Some("replenish-1".into());
        assert_eq!(plan(&L, &s, 0), vec![]);
        // A sweep on its way in counts.
        let mut s = native(150);
        s.hot_incoming = 100;
        assert_eq!(plan(&L, &s, 0), vec![]);
    }

    #[test]
    fn a_refused_replenishment_alerts_and_waits_for_the_retry_delay() {
        let mut s = native(150);
        s.replenishment_refused = Some(("replenish-1".into(), 100));
        assert_eq!(
            plan(&L, &s, 130),
            vec![Action::Alert(Alert::ReplenishmentRefused {
                payout_id: "replenish-1".into(),
                hot: 150,
                retry_at: 160
            })]
        );
        assert_eq!(plan(&L, &s, 160), vec![Action::Replenish { amount: 350 }]);
    }

    #[test]
    fn a_short_cold_wallet_alerts_and_sends_what_it_has() {
        let mut s = native(0);
        s.cold = 105;
        assert_eq!(
            plan(&L, &s, 0),
            vec![
                Action::Alert(Alert::ColdShort {
                    needed: 500,
                    cold: 105
                }),
                Action::Replenish { amount: 100 }
            ]
        );
    }

    #[test]
    fn native_sweeps_leave_the_fee_and_respect_the_limits() {
        let mut s = native(500);
        s.deposits = vec![
            dep("a", 100, 100),
            dep("b", 12, 12),
            dep("c", 50, 50),
            dep("d", 70, 70),
        ];
        s.busy.insert("c".into());
        // b would sweep 7 < sweep_min; c is busy; two in flight at most.
        assert_eq!(
            plan(&L, &s, 0),
            vec![
                Action::Sweep {
                    address: "a".into(),
                    amount: 95
                },
                Action::Sweep {
                    address: "d".into(),
                    amount: 65
                }
            ]
        );
        s.sweeps_open = 2;
        assert_eq!(plan(&L, &s, 0), vec![]);
        s.sweeps_open = 0;
        s.sweeps_last_minute = 30;
        assert_eq!(plan(&L, &s, 0), vec![]);
    }

    #[test]
    fn token_sweeps_wait_for_gas_from_the_tank_and_a_dry_tank_alerts() {
        let mut s = TierState {
            native: false,
            hot: 500,
            fee_reserve: 20,
            top_up_fee_reserve: 3,
            gas_tank: 30,
            deposits: vec![dep("a", 100, 0), dep("b", 100, 25), dep("c", 100, 5)],
            ..Default::default()
        };
        assert_eq!(
            plan(&L, &s, 0),
            vec![
                Action::GasTopUp {
                    address: "a".into(),
                    amount: 20
                },
                Action::Sweep {
                    address: "b".into(),
                    amount: 100
                }
            ]
        );
        s.gas_tank = 10;
        s.deposits.remove(1);
        assert_eq!(
            plan(&L, &s, 0),
            vec![Action::Alert(Alert::GasTankDry {
                needed: 23,
                tank: 10
            })]
        );
    }
}
