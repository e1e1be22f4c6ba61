//! Session-bound delivery: every message travels in an [`Envelope`] that names
//! its session, and a party refuses any message from another session.
//!
//! `cggmp21` separates sessions by execution id, but a mismatch there shows up
//! as a failed zero-knowledge proof, and FROST signing in `givre` has no
//! execution id at all. Checking the whole [`SessionDescriptor`] on every message
//! turns both into an immediate error that names the party and the field that
//! differs (signer set, request id, execution nonce ...).
//!
//! Blame. A transport names the parties it blames by returning (or wrapping) a
//! [`TransportError`]; the protocol entry points find it in the library's
//! error chain and report its culprits in [`MpcError::Transport`]. Every
//! message that passes [`bind`] gets a message id that encodes its sender, so
//! a library error that names only a message id (`round_based`'s
//! `MismatchedMessageType`) still names a party.

use std::pin::Pin;

use futures::{future, Sink, SinkExt, Stream, StreamExt};
use round_based::{Delivery, Incoming, MsgId, Outgoing, PartyIndex};
use serde::{Deserialize, Serialize};

use crate::blame::Culprit;
use crate::{MpcError, SessionDescriptor};

/// A transport failure that names the parties it blames, by session index.
///
/// Transports built on other crates (QUIC in `keyfold-net`, test harnesses)
/// return this as their delivery error, or carry it in their error's
/// `source()` chain; [`bind`] and the protocol entry points find it there.
/// A transport error without it blames nobody.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TransportError {
    /// The parties blamed (session indices); empty when the failure is local
    /// or its cause is unknown.
    pub culprits: Vec<Culprit>,
    /// What the transport said, for a person.
    pub reason: String,
}

impl TransportError {
    /// A failure blaming `culprits`.
    pub fn new(culprits: Vec<Culprit>, reason: impl Into<String>) -> Self {
        Self {
            culprits,
            reason: reason.into(),
        }
    }
}

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
    let mut seq: u64 = 0;
    let incoming = incoming.map(move |item| {
        let item = item.map_err(|e| DeliveryError::Transport(Box::new(e)))?;
        let mut item = check_incoming(&ours, parties, item)?;
        item.id = msg_id(seq, item.sender);
        seq = seq.wrapping_add(1);
        Ok(item)
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

/// The message id given to the `seq`-th message received, from `sender`:
/// unique within the session (the sequence number) and naming its sender.
fn msg_id(seq: u64, sender: PartyIndex) -> MsgId {
    (seq << 16) | MsgId::from(sender)
}

/// The sender of a message, from the id [`bind`] gave it.
pub(crate) fn sender_of(id: MsgId) -> PartyIndex {
    (id & 0xffff) as PartyIndex
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_unique_and_name_their_sender() {
        let mut seen = std::collections::HashSet::new();
        for seq in 0..1000u64 {
            for sender in [0u16, 1, 2, 6, u16::MAX] {
                let id = msg_id(seq, sender);
                assert!(seen.insert(id), "id {id} reused");
                assert_eq!(sender_of(id), sender);
            }
        }
    }
}
