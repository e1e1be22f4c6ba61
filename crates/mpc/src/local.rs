//! Runs every party of a session inside one process, over an in-memory network.
//!
//! Used by tests, benchmarks and `keyfold demo`. The protocol code is the same as
//! over QUIC: each party gets a [`LocalDelivery`] carrying [`Envelope`]s, which the
//! protocol entry points bind to their session. When one party fails, the others
//! are stopped at once (they would otherwise wait for its messages forever) and
//! report which party failed.

use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};
use round_based::sim::async_env::{MockedDelivery, Network};
use round_based::PartyIndex;

use crate::delivery::Envelope;
use crate::MpcError;

/// The in-memory delivery handed to each party.
pub type LocalDelivery<M> = MockedDelivery<Envelope<M>>;

/// Runs `parties` parties concurrently; `party(i, delivery)` is party `i`'s
/// protocol (for signing, `i` is the position in the signer set).
///
/// Returns one result per party, in order. If a party fails, the rest are
/// dropped and answer [`MpcError::Aborted`] naming it.
pub async fn run<M, T, F, Fut>(parties: u16, mut party: F) -> Vec<Result<T, MpcError>>
where
    M: Clone + Send + Unpin + 'static,
    F: FnMut(PartyIndex, LocalDelivery<M>) -> Fut,
    Fut: Future<Output = Result<T, MpcError>>,
{
    // Large enough that no message is dropped: the biggest protocol (aux info
    // with 7 parties) sends fewer than 7 * 7 * 4 messages.
    let mut net = Network::<Envelope<M>>::with_capacity(1024);
    let running: FuturesUnordered<_> = (0..parties)
        .map(|i| {
            let fut = party(i, net.connect_new_party());
            async move { (i, fut.await) }
        })
        .collect();
    let mut running = running;
    let mut results: Vec<Option<Result<T, MpcError>>> = (0..parties).map(|_| None).collect();
    let mut failure: Option<(PartyIndex, String)> = None;
    while let Some((i, result)) = running.next().await {
        if let Err(e) = &result {
            failure = Some((i, e.to_string()));
        }
        results[usize::from(i)] = Some(result);
        if failure.is_some() {
            break;
        }
    }
    drop(running);
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                let (culprit, reason) = failure
                    .clone()
                    .unwrap_or((PartyIndex::MAX, "unknown".to_string()));
                Err(MpcError::Aborted { culprit, reason })
            })
        })
        .collect()
}

/// Collects the per-party results, or the first error (preferring a party's own
/// error over the [`MpcError::Aborted`] of the parties stopped because of it).
pub fn all_ok<T>(results: Vec<Result<T, MpcError>>) -> Result<Vec<T>, MpcError> {
    let mut first_abort = None;
    let mut out = Vec::with_capacity(results.len());
    let mut own_error = None;
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e @ MpcError::Aborted { .. }) => {
                first_abort.get_or_insert(e);
            }
            Err(e) => {
                own_error.get_or_insert(e);
            }
        }
    }
    match (own_error, first_abort) {
        (Some(e), _) | (None, Some(e)) => Err(e),
        (None, None) => Ok(out),
    }
}
