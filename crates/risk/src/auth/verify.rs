//! Verifying a device-signed payment, with the nonce memory that stops
//! replays.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::canonical::{verify_signature, SignedDevicePayment};
use super::device::CustomerDevices;
use super::error::AuthRefusal;

/// Most nonces remembered per device.
///
/// When a device's log is full, its next signature is refused
/// ([`AuthRefusal::NonceLogFull`]) rather than an old nonce forgotten: a
/// nonce forgotten while its signature is still inside the window could be
/// replayed, so forgetting would turn a flood of signatures into a replay.
/// Refusing keeps the guarantee (no signature is accepted twice) and turns
/// the flood into refusals that the risk features count. With a 5-minute
/// window, 4096 is over 13 signatures a second, held for five minutes;
/// no person pays that fast.
pub const MAX_NONCES_PER_DEVICE: usize = 4096;

/// The nonces a customer's devices used recently: plain data, persisted by
/// the caller next to the customer's [`CustomerDevices`] and passed to
/// [`verify_device_signature`], which returns the next log.
///
/// A nonce is kept while a signature bearing it could still be accepted
/// (its timestamp within the window of the latest time seen), so the log
/// holds at most one window of each device's signatures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonceLog {
    /// The latest time this log was checked at. Time never goes back for
    /// the log: a coordinator whose clock lags must not see as fresh a
    /// signature whose nonce was already forgotten.
    #[serde(default)]
    now: u64,
    /// The latest timestamp of a forgotten nonce: a signature timestamped
    /// at or before it is stale whatever the window (which may have been
    /// widened since the nonce was forgotten).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forgotten_through: Option<u64>,
    /// Per device: nonce (hex) → signed timestamp.
    #[serde(default)]
    devices: BTreeMap<String, BTreeMap<String, u64>>,
}

impl NonceLog {
    /// An empty log.
    pub fn new() -> NonceLog {
        NonceLog::default()
    }

    /// The number of nonces remembered for a device.
    pub fn len(&self, device_id: &str) -> usize {
        self.devices.get(device_id).map_or(0, BTreeMap::len)
    }

    /// Whether no nonce is remembered for any device.
    pub fn is_empty(&self) -> bool {
        self.devices.values().all(BTreeMap::is_empty)
    }

    /// The log at `now` (not before its latest time) with the nonces that
    /// no window of `window_secs` accepts any more forgotten.
    pub fn pruned(&self, now: u64, window_secs: u64) -> NonceLog {
        let now = now.max(self.now);
        let mut forgotten_through = self.forgotten_through;
        let mut devices = BTreeMap::new();
        for (device, nonces) in &self.devices {
            let mut kept = BTreeMap::new();
            for (nonce, &ts) in nonces {
                if ts.saturating_add(window_secs) < now {
                    forgotten_through = Some(forgotten_through.map_or(ts, |f| f.max(ts)));
                } else {
                    kept.insert(nonce.clone(), ts);
                }
            }
            if !kept.is_empty() {
                devices.insert(device.clone(), kept);
            }
        }
        NonceLog {
            now,
            forgotten_through,
            devices,
        }
    }
}

/// Verifies a device-signed payment at `now`, accepting timestamps within
/// ±`window_secs`, and returns the nonce log with its nonce recorded.
///
/// Checked in this order, so that every refusal after the signature check
/// concerns a signature the device really made:
///
/// 1. the fields are within bounds (`malformed_request`);
/// 2. the device is registered for `signed.body.customer_id` in `devices`
///    (`unknown_device`) and not revoked (`device_revoked`);
/// 3. the signature parses (`malformed_signature`) and verifies over the
///    canonical bytes under the device's key (`wrong_device_key`: another
///    key, or any field, the timestamp or the nonce changed);
/// 4. the timestamp is within the window of `now` (`stale_timestamp`);
/// 5. the nonce was not used by this device within the window
///    (`replayed_device_signature`) and the device's log is not full
///    (`nonce_log_full`).
///
/// A signature that arrives after a newer one (reordered in transit) is
/// accepted when it passes all of these. On refusal nothing is to be
/// persisted; record the refusal with [`crate::RiskState::record_refusal`].
pub fn verify_device_signature(
    devices: &CustomerDevices,
    nonces: &NonceLog,
    signed: &SignedDevicePayment,
    now: u64,
    window_secs: u64,
) -> Result<NonceLog, AuthRefusal> {
    let body = &signed.body;
    let message = body.canonical_bytes()?;
    if body.customer_id != devices.customer_id {
        // The device list is another customer's: the device is not one of
        // this customer's.
        return Err(AuthRefusal::UnknownDevice {
            customer_id: body.customer_id.clone(),
            device_id: body.device_id.clone(),
        });
    }
    let device = devices.active_device(&body.device_id)?;
    verify_signature(&device.key, &device.id, &message, &signed.signature)?;

    let now = now.max(nonces.now);
    let stale = AuthRefusal::StaleTimestamp {
        timestamp: body.timestamp,
        now,
        window_secs,
    };
    if body.timestamp.abs_diff(now) > window_secs {
        return Err(stale);
    }
    if nonces
        .forgotten_through
        .is_some_and(|f| body.timestamp <= f)
    {
        return Err(stale);
    }

    let mut next = nonces.pruned(now, window_secs);
    let key = hex::encode(&body.nonce);
    let log = next.devices.entry(device.id.clone()).or_default();
    if log.contains_key(&key) {
        return Err(AuthRefusal::ReplayedDeviceSignature {
            device_id: device.id.clone(),
            window_secs,
        });
    }
    if log.len() >= MAX_NONCES_PER_DEVICE {
        return Err(AuthRefusal::NonceLogFull {
            device_id: device.id.clone(),
            cap: MAX_NONCES_PER_DEVICE,
            window_secs,
        });
    }
    log.insert(key, body.timestamp);
    Ok(next)
}
