//! Session-bound delivery: every message travels in an [`Envelope`] that names
//! its session, and a party refuses any message from another session.
//!
//! `cggmp21` separates sessions by execution id, but a mismatch there shows up
//! as a failed zero-knowledge proof, and FROST signing in `givre` has no
//! execution id at all. Checking the whole [`SessionDescriptor`] on every message
//! turns both into an immediate error that names the party and the field that
//! differs (signer set, request id, execution nonce ...).

use std::pin::Pin;

use futures::{future, Sink, SinkExt, Stream, StreamExt};
use round_based::{Delivery, Incoming, Outgoing};
use serde::{Deserialize, Serialize};

use crate::{MpcError, SessionDescriptor};

/// A protocol message with the descriptor of the session it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<M> {
    /// The sender's view of the session.
    pub session: SessionDescriptor,
    /// The protocol message.
    pub msg: M,
}

/// Why a bound delivery stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// A message was refused: wrong session or a sender outside the session.
    #[error(transparent)]
    Refused(MpcError),
    /// The underlying transport failed.
    #[error("transport: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Incoming half of a bound delivery.
pub type BoundIncoming<M> = Pin<Box<dyn Stream<Item = Result<Incoming<M>, DeliveryError>> + Send>>;
/// Outgoing half of a bound delivery.
pub type BoundOutgoing<M> = Pin<Box<dyn Sink<Outgoing<M>, Error = DeliveryError> + Send>>;
/// A delivery that speaks plain protocol messages on top of an envelope transport.
pub type BoundDelivery<M> = (BoundIncoming<M>, BoundOutgoing<M>);

/// Binds `delivery` (which carries [`Envelope`]s) to `session`: outgoing messages
/// are wrapped with our descriptor; incoming ones are checked against it.
pub fn bind<M, D>(session: SessionDescriptor, delivery: D) -> BoundDelivery<M>
where
    M: Send + 'static,
    D: Delivery<Envelope<M>>,
    D::Receive: Send + 'static,
    D::Send: Send + 'static,
{
    let (incoming, outgoing) = delivery.split();
    let parties = session.parties().len();
    let ours = session.clone();
    let incoming = incoming.map(move |item| {
        let item = item.map_err(|e| DeliveryError::Transport(Box::new(e)))?;
        check_incoming(&ours, parties, item)
    });
    let outgoing = outgoing
        .sink_map_err(|e| DeliveryError::Transport(Box::new(e)))
        .with(move |out: Outgoing<M>| {
            let session = session.clone();
            future::ready(Ok::<_, DeliveryError>(
                out.map(|msg| Envelope { session, msg }),
            ))
        });
    (Box::pin(incoming), Box::pin(outgoing))
}

fn check_incoming<M>(
    ours: &SessionDescriptor,
    parties: u16,
    item: Incoming<Envelope<M>>,
) -> Result<Incoming<M>, DeliveryError> {
    if item.sender >= parties {
        return Err(DeliveryError::Refused(MpcError::UnexpectedSender {
            party: item.sender,
            parties,
        }));
    }
    if let Some((field, ours, theirs)) = ours.first_difference(&item.msg.session) {
        return Err(DeliveryError::Refused(MpcError::SessionMismatch {
            party: item.sender,
            field,
            ours,
            theirs,
        }));
    }
    Ok(item.map(|env| env.msg))
}
