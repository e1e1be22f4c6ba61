//! Fees of a replacement transaction (same nonce, higher fees) for an EVM
//! transaction stuck in the mempool.
//!
//! Nodes accept a transaction at a taken nonce only if it pays more: geth
//! and most others want at least 10% more on both the fee cap and the tip
//! (anvil takes any increase). [`bump`] raises both by 12.5% (rounded up),
//! or to what the network asks now if that is more, within the chain's
//! caps; when the caps leave no room for a 10% bump it says so instead of
//! producing a replacement the network would refuse.

/// The bump applied to each fee: numerator / denominator (12.5%).
const BUMP: (u128, u128) = (9, 8);
/// The least bump nodes accept (10%).
const MIN_BUMP: (u128, u128) = (11, 10);

/// Fees per gas of an EIP-1559 transaction, wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    /// `max_fee_per_gas`.
    pub max_fee_per_gas: u128,
    /// `max_priority_fee_per_gas`.
    pub max_priority_fee_per_gas: u128,
}

/// Why no replacement can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BumpError {
    /// The chain's cap on a fee leaves no room for a bump nodes accept.
    #[error("the {field} of the stuck transaction ({current} wei) cannot rise by 10% within the chain's cap of {cap} wei; raise the cap in the chain registry to replace it")]
    CapReached {
        /// `max_fee_per_gas` or `max_priority_fee_per_gas`.
        field: &'static str,
        /// The stuck transaction's value.
        current: u128,
        /// The chain's cap.
        cap: u128,
    },
}

fn scale(v: u128, (num, den): (u128, u128)) -> u128 {
    // Rounded up, so a 1-wei tip still rises.
    v.saturating_mul(num).div_ceil(den)
}

/// The fees of a replacement for a transaction paying `old`, given the
/// network's current base fee and tip and the chain's caps.
pub fn bump(
    old: Fees,
    base_fee_per_gas: u128,
    network_priority: u128,
    cap: Fees,
) -> Result<Fees, BumpError> {
    let least_tip = scale(old.max_priority_fee_per_gas, MIN_BUMP).max(1);
    let tip = scale(old.max_priority_fee_per_gas, BUMP)
        .max(network_priority)
        .max(least_tip)
        .min(cap.max_priority_fee_per_gas);
    if tip < least_tip {
        return Err(BumpError::CapReached {
            field: "max_priority_fee_per_gas",
            current: old.max_priority_fee_per_gas,
            cap: cap.max_priority_fee_per_gas,
        });
    }
    let least_fee = scale(old.max_fee_per_gas, MIN_BUMP).max(1);
    // As for a new payout: room for the base fee to double.
    let fee = scale(old.max_fee_per_gas, BUMP)
        .max(base_fee_per_gas.saturating_mul(2).saturating_add(tip))
        .max(least_fee)
        .min(cap.max_fee_per_gas);
    if fee < least_fee || fee < tip {
        return Err(BumpError::CapReached {
            field: "max_fee_per_gas",
            current: old.max_fee_per_gas,
            cap: cap.max_fee_per_gas,
        });
    }
    Ok(Fees {
        max_fee_per_gas: fee,
        max_priority_fee_per_gas: tip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GWEI: u128 = 1_000_000_000;

    fn fees(max: u128, tip: u128) -> Fees {
        Fees {
            max_fee_per_gas: max,
            max_priority_fee_per_gas: tip,
        }
    }

    #[test]
    fn raises_both_fees_by_an_eighth_when_the_network_is_quiet() {
        let out = bump(
            fees(40 * GWEI, 2 * GWEI),
            GWEI,
            GWEI,
            fees(500 * GWEI, 10 * GWEI),
        );
        assert_eq!(out, Ok(fees(45 * GWEI, 2_250_000_000)));
    }

    #[test]
    fn follows_the_network_when_it_asks_for_more() {
        let out = bump(
            fees(40 * GWEI, 2 * GWEI),
            100 * GWEI,
            3 * GWEI,
            fees(500 * GWEI, 10 * GWEI),
        )
        .expect("room under the caps");
        assert_eq!(out.max_priority_fee_per_gas, 3 * GWEI);
        assert_eq!(out.max_fee_per_gas, 203 * GWEI);
    }

    #[test]
    fn every_bump_is_at_least_ten_percent_even_from_one_wei() {
        let out = bump(fees(1, 1), 0, 0, fees(1000, 1000)).expect("room");
        assert!(out.max_fee_per_gas * 10 >= 11);
        assert!(out.max_priority_fee_per_gas >= 2);
        assert!(out.max_fee_per_gas >= out.max_priority_fee_per_gas);
    }

    #[test]
    fn stops_at_the_caps_and_says_which() {
        let capped = bump(
            fees(40 * GWEI, 2 * GWEI),
            100 * GWEI,
            GWEI,
            fees(50 * GWEI, 10 * GWEI),
        );
        assert_eq!(capped, Ok(fees(50 * GWEI, 2_250_000_000)));
        let fee = bump(
            fees(48 * GWEI, 2 * GWEI),
            GWEI,
            GWEI,
            fees(50 * GWEI, 10 * GWEI),
        );
        assert!(matches!(
            fee,
            Err(BumpError::CapReached {
                field: "max_fee_per_gas",
                ..
            })
        ));
        let tip = bump(
            fees(40 * GWEI, 2 * GWEI),
            GWEI,
            GWEI,
            fees(500 * GWEI, 2 * GWEI),
        );
        assert!(matches!(
            tip,
            Err(BumpError::CapReached {
                field: "max_priority_fee_per_gas",
                ..
            })
        ));
    }
}
