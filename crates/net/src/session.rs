//! MPC sessions over the QUIC mesh: [`SessionDelivery`] implements
//! [`round_based::Delivery`] for one party of one session.
//!
//! Wire format. For each other party, the sender opens ONE unidirectional stream
//! on its (cached) connection to that party. The first frame is the header:
//! `b"KFS1" || session id (32 bytes) || sender index (u16 big-endian)`. Every
//! following frame is one message: a flag byte (0 = p2p, 1 = broadcast), then
//! the message as JSON. A broadcast is sent on each of these streams.
//!
//! Admission. The receiver routes a stream by session id. The header's sender
//! index must name, in that session's party list, the node id of the
//! authenticated peer (from its certificate), the peer must be a signer, and a
//! party gets one stream per session; otherwise the stream is refused and
//! logged, and nothing reaches the protocol. A stream for a session not joined
//! yet is parked for up to [`crate::NetConfig::round_timeout`].
//!
//! Failures. The receiving half yields [`NetError::Timeout`] when no message
//! arrives for `round_timeout` while the protocol waits, naming the suspects,
//! [`NetError::PeerGone`] when a party's stream or connection breaks, and
//! [`NetError::Malformed`] when a party's frame is not a message (unknown
//! flag, over the size limit, JSON that does not decode). All three name
//! their culprits as data: [`NetError::culprits`].
//! A stale cached connection (the peer restarted: QUIC stateless reset) is
//! replaced and the stream replayed from its start, transparently.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, Stream};
use quinn::{RecvStream, WriteError};
use round_based::{Delivery, Incoming, MessageDestination, MessageType, Outgoing};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::error::{NetError, Refusal};
use crate::frame::{read_frame, write_frame};
use crate::id::{NodeId, PeerAddr, Role};
use crate::node::{is_stateless_reset, stream_error, Node, Shared};
use crate::tls::PeerIdentity;

/// A session id (e.g. `keyfold_mpc::SessionId::as_bytes`).
pub type SessionKey = [u8; 32];

const MAGIC: &[u8; 4] = b"KFS1";
/// Length of the stream header frame.
pub const HEADER_LEN: usize = 4 + 32 + 2;
/// Most streams parked (waiting for their session to be joined) per node.
pub const MAX_PARKED: usize = 4096;
/// Events buffered between the stream readers and the protocol, per session.
const EVENT_QUEUE: usize = 64;

const FLAG_P2P: u8 = 0;
const FLAG_BROADCAST: u8 = 1;

fn short(session: &SessionKey) -> String {
    hex::encode(&session[..8])
}

fn header(session: &SessionKey, sender: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(session);
    h.extend_from_slice(&sender.to_be_bytes());
    h
}

fn parse_header(h: &[u8]) -> Option<(SessionKey, u16)> {
    if h.len() != HEADER_LEN || &h[..4] != MAGIC {
        return None;
    }
    let mut session = [0u8; 32];
    session.copy_from_slice(&h[4..36]);
    Some((session, u16::from_be_bytes([h[36], h[37]])))
}

enum Event {
    /// A message frame (flag byte + JSON) from `party`.
    Msg { party: u16, frame: Vec<u8> },
    /// `party` sent a frame that is not a message (unknown flag byte, over
    /// the size limit); its stream was stopped.
    Malformed { party: u16, reason: String },
    /// `party`'s stream or connection broke.
    Gone { party: u16, reason: String },
}

struct Route {
    tx: mpsc::Sender<Event>,
    party: u16,
}

struct Active {
    me: u16,
    parties: Vec<NodeId>,
    tx: mpsc::Sender<Event>,
    admitted: HashSet<u16>,
}

impl Active {
    fn admit(&mut self, peer: &NodeId, sender: u16) -> Result<Route, String> {
        let Some(expected) = self.parties.get(usize::from(sender)) else {
            return Err(format!(
                "sender index {sender} is outside the {}-party session",
                self.parties.len()
            ));
        };
        if sender == self.me {
            return Err(format!("sender index {sender} is our own index"));
        }
        if expected != peer {
            return Err(format!(
                "party {sender} of the session is {expected}, not {peer}"
            ));
        }
        if !self.admitted.insert(sender) {
            return Err(format!(
                "party {sender} already has a stream in this session"
            ));
        }
        Ok(Route {
            tx: self.tx.clone(),
            party: sender,
        })
    }
}

struct Parked {
    id: u64,
    peer: NodeId,
    sender: u16,
    reply: oneshot::Sender<Route>,
}

/// The sessions this node takes part in, and the streams waiting for one.
#[derive(Default)]
pub(crate) struct Registry {
    active: HashMap<SessionKey, Active>,
    parked: HashMap<SessionKey, Vec<Parked>>,
    parked_total: usize,
    next_id: u64,
}

enum Admission {
    Route(Route),
    Refused(String),
    Park(oneshot::Receiver<Route>, u64),
    Busy,
}

impl Registry {
    fn admit_or_park(&mut self, session: &SessionKey, peer: &NodeId, sender: u16) -> Admission {
        if let Some(active) = self.active.get_mut(session) {
            return match active.admit(peer, sender) {
                Ok(route) => Admission::Route(route),
                Err(reason) => Admission::Refused(reason),
            };
        }
        if self.parked_total >= MAX_PARKED {
            return Admission::Busy;
        }
        let (reply, rx) = oneshot::channel();
        self.next_id += 1;
        let id = self.next_id;
        self.parked.entry(*session).or_default().push(Parked {
            id,
            peer: peer.clone(),
            sender,
            reply,
        });
        self.parked_total += 1;
        Admission::Park(rx, id)
    }

    fn unpark(&mut self, session: &SessionKey, id: u64) {
        if let Some(list) = self.parked.get_mut(session) {
            let before = list.len();
            list.retain(|p| p.id != id);
            self.parked_total -= before - list.len();
            if list.is_empty() {
                self.parked.remove(session);
            }
        }
    }
}

/// Removes the session from the registry when the receiving half is dropped.
struct Unregister {
    shared: Arc<Shared>,
    session: SessionKey,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.shared.sessions().active.remove(&self.session);
        debug!(session = %short(&self.session), "session left");
    }
}

/// Handles a unidirectional stream accepted from `peer`.
pub(crate) async fn incoming_stream(shared: Arc<Shared>, peer: PeerIdentity, mut recv: RecvStream) {
    if peer.role != Role::Signer {
        warn!(role = %peer.role, "session stream refused: only signers take part in sessions");
        let _ = recv.stop(Refusal::NotInSession.varint());
        return;
    }
    let header = match tokio::time::timeout(
        shared.cfg.connect_timeout,
        read_frame(&mut recv, HEADER_LEN),
    )
    .await
    {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn!(error = %e.with_peer(&peer.node), "session stream refused: bad header");
            let _ = recv.stop(Refusal::Malformed.varint());
            return;
        }
        Err(_) => {
            warn!("session stream refused: no header in time");
            let _ = recv.stop(Refusal::Malformed.varint());
            return;
        }
    };
    let Some((session, sender)) = parse_header(&header) else {
        warn!("session stream refused: malformed header");
        let _ = recv.stop(Refusal::Malformed.varint());
        return;
    };
    let span =
        info_span!("session_in", session = %short(&session), from = %peer.node, party = sender);
    async move {
        let admission = shared
            .sessions()
            .admit_or_park(&session, &peer.node, sender);
        let route = match admission {
            Admission::Route(route) => route,
            Admission::Refused(reason) => {
                warn!(%reason, "session stream refused");
                let _ = recv.stop(Refusal::NotInSession.varint());
                return;
            }
            Admission::Busy => {
                warn!("session stream refused: too many parked streams");
                let _ = recv.stop(Refusal::Busy.varint());
                return;
            }
            Admission::Park(mut rx, id) => {
                debug!("session not joined yet; stream parked");
                match tokio::time::timeout(shared.cfg.round_timeout, &mut rx).await {
                    Ok(Ok(route)) => route,
                    Ok(Err(_)) => {
                        // Refused when the session was joined (logged there).
                        let _ = recv.stop(Refusal::NotInSession.varint());
                        return;
                    }
                    Err(_) => {
                        shared.sessions().unpark(&session, id);
                        // The join may have raced with the timeout.
                        match rx.try_recv() {
                            Ok(route) => route,
                            Err(_) => {
                                info!("session not joined in time; parked stream dropped");
                                let _ = recv.stop(Refusal::SessionUnknown.varint());
                                return;
                            }
                        }
                    }
                }
            }
        };
        read_loop(recv, route, &peer.node, shared.cfg.max_frame).await;
    }
    .instrument(span)
    .await;
}

async fn read_loop(mut recv: RecvStream, route: Route, peer: &NodeId, max_frame: usize) {
    let party = route.party;
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut recv, max_frame) => f,
            _ = route.tx.closed() => {
                debug!("session over; stream closed");
                let _ = recv.stop(Refusal::Closed.varint());
                return;
            }
        };
        match frame {
            Ok(Some(frame)) => {
                if !matches!(frame.first(), Some(&FLAG_P2P | &FLAG_BROADCAST)) {
                    warn!("malformed message frame");
                    let _ = recv.stop(Refusal::Malformed.varint());
                    let _ = route
                        .tx
                        .send(Event::Malformed {
                            party,
                            reason: "message frame with an unknown flag byte".into(),
                        })
                        .await;
                    return;
                }
                if route.tx.send(Event::Msg { party, frame }).await.is_err() {
                    let _ = recv.stop(Refusal::Closed.varint());
                    return;
                }
            }
            Ok(None) => {
                debug!("party finished its stream");
                return;
            }
            Err(e) => {
                let e = e.with_peer(peer);
                warn!(error = %e, "session stream failed");
                let event = if matches!(e, NetError::FrameTooLarge { .. }) {
                    let _ = recv.stop(Refusal::FrameTooLarge.varint());
                    Event::Malformed {
                        party,
                        reason: e.to_string(),
                    }
                } else {
                    Event::Gone {
                        party,
                        reason: e.to_string(),
                    }
                };
                let _ = route.tx.send(event).await;
                return;
            }
        }
    }
}

type Frame = Arc<Vec<u8>>;

/// Did the party close the connection with code 0 (normal shutdown)?
fn closed_normally(e: &NetError) -> bool {
    match e {
        NetError::Write {
            source: WriteError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(c)),
            ..
        } => c.error_code.into_inner() == Refusal::Closed.code(),
        _ => false,
    }
}

struct Writer {
    node: Node,
    session: SessionKey,
    me: u16,
    party: u16,
    peer: PeerAddr,
    rx: mpsc::UnboundedReceiver<Frame>,
    events: mpsc::Sender<Event>,
    round_timeout: Duration,
}

enum WriteEnd {
    /// Everything was sent and acknowledged, or the party stopped reading
    /// because its session is over.
    Done,
    Failed(NetError),
}

impl Writer {
    async fn run(mut self) {
        let mut sent: Vec<Frame> = Vec::new();
        let mut replayed = false;
        loop {
            let (conn, cached) = match self.node.connection(&self.peer).await {
                Ok(c) => c,
                Err(e) => return self.gone(e).await,
            };
            match self.stream(&conn, &mut sent).await {
                WriteEnd::Done => return,
                WriteEnd::Failed(e) if cached && !replayed && is_stateless_reset(&e) => {
                    info!("cached connection was reset (party restarted); replaying the stream on a new connection");
                    replayed = true;
                }
                WriteEnd::Failed(e) if closed_normally(&e) => {
                    // The party shut its node down: if it still owed us
                    // messages, its own stream to us reports that.
                    debug!("party closed its connection");
                    return;
                }
                WriteEnd::Failed(e) => {
                    let e = stream_error(&self.peer, e);
                    return self.gone(e).await;
                }
            }
        }
    }

    /// Sends the header, replays `sent`, then forwards frames until the session
    /// drops its sending half; finally waits for the party to acknowledge.
    async fn stream(&mut self, conn: &quinn::Connection, sent: &mut Vec<Frame>) -> WriteEnd {
        let result: Result<Option<u64>, NetError> = async {
            let mut send = conn.open_uni().await.map_err(|e| NetError::Write {
                peer: None,
                source: WriteError::ConnectionLost(e),
            })?;
            write_frame(&mut send, &header(&self.session, self.me)).await?;
            for f in sent.iter() {
                write_frame(&mut send, f).await?;
            }
            loop {
                // Also watch for the party stopping our stream (refusal, or its
                // session is over) while we have nothing to send.
                let next = tokio::select! {
                    f = self.rx.recv() => Ok(f),
                    stopped = send.stopped() => Err(stopped),
                };
                match next {
                    Ok(Some(f)) => {
                        // Recorded first: a frame whose write fails is replayed too.
                        sent.push(f.clone());
                        write_frame(&mut send, &f).await?;
                    }
                    Ok(None) => break,
                    Err(Ok(code)) => return Ok(code.map(|c| c.into_inner())),
                    Err(Err(quinn::StoppedError::ConnectionLost(e))) => {
                        return Err(NetError::Write {
                            peer: None,
                            source: WriteError::ConnectionLost(e),
                        })
                    }
                    Err(Err(_)) => return Ok(None),
                }
            }
            let _ = send.finish();
            // Wait until the party has everything, so a stale connection is
            // still noticed (and the stream replayed) after our last message.
            match tokio::time::timeout(self.round_timeout, send.stopped()).await {
                Ok(Ok(code)) => Ok(code.map(|c| c.into_inner())),
                Ok(Err(quinn::StoppedError::ConnectionLost(e))) => Err(NetError::Write {
                    peer: None,
                    source: WriteError::ConnectionLost(e),
                }),
                Ok(Err(_)) | Err(_) => Ok(None),
            }
        }
        .await;
        match result {
            Ok(None) => WriteEnd::Done,
            Ok(Some(code)) => self.stopped(code),
            Err(NetError::Write {
                source: WriteError::Stopped(code),
                ..
            }) => self.stopped(code.into_inner()),
            Err(e) => WriteEnd::Failed(e),
        }
    }

    fn stopped(&self, code: u64) -> WriteEnd {
        let why = Refusal::from_code(code);
        if why == Refusal::Closed {
            // The party's session is over (or it left): nothing more to send.
            debug!("party closed its end of the session");
            WriteEnd::Done
        } else {
            WriteEnd::Failed(NetError::Refused {
                peer: self.peer.node.clone(),
                reason: why,
            })
        }
    }

    async fn gone(mut self, e: NetError) {
        warn!(error = %e, "cannot send to party");
        self.rx.close();
        let _ = self
            .events
            .send(Event::Gone {
                party: self.party,
                reason: e.to_string(),
            })
            .await;
    }
}

impl Node {
    /// Joins session `session_id` as party `me` of `parties` (`parties[i]` is the
    /// node of session index `i`, `parties[me]` is this node) and returns its
    /// delivery. Connections to the other parties are opened at once. Streams
    /// that other parties opened before this call are picked up.
    ///
    /// `round_timeout` bounds how long the receiving half waits for the next
    /// message. Dropping the receiving half leaves the session.
    pub async fn join_session<M>(
        &self,
        session_id: SessionKey,
        me: u16,
        parties: Vec<PeerAddr>,
        round_timeout: Duration,
    ) -> Result<SessionDelivery<M>, NetError>
    where
        M: Serialize + DeserializeOwned + Send + Unpin + 'static,
    {
        let invalid = |reason: String| NetError::InvalidSession {
            session: session_id,
            reason,
        };
        if self.role() != Role::Signer {
            return Err(invalid(format!(
                "this node's role is {}; only signers take part in sessions",
                self.role()
            )));
        }
        if parties.is_empty() || parties.len() > usize::from(u16::MAX) {
            return Err(invalid(format!("{} parties", parties.len())));
        }
        let n = parties.len() as u16;
        let Some(mine) = parties.get(usize::from(me)) else {
            return Err(invalid(format!(
                "index {me} is outside the {n}-party session"
            )));
        };
        if &mine.node != self.node_id() {
            return Err(invalid(format!(
                "party {me} is {}, not this node ({})",
                mine.node,
                self.node_id()
            )));
        }
        let mut seen = HashSet::new();
        for p in &parties {
            if !seen.insert(&p.node) {
                return Err(invalid(format!("{} appears twice", p.node)));
            }
        }
        if round_timeout.is_zero() {
            return Err(invalid("round_timeout is zero".into()));
        }

        let shared = self.shared().clone();
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let nodes: Vec<NodeId> = parties.iter().map(|p| p.node.clone()).collect();
        let span = info_span!("session", session = %short(&session_id), party = me, node = %self.node_id());
        {
            let mut reg = shared.sessions();
            if reg.active.contains_key(&session_id) {
                return Err(NetError::SessionExists {
                    session: session_id,
                });
            }
            let mut active = Active {
                me,
                parties: nodes.clone(),
                tx: tx.clone(),
                admitted: HashSet::new(),
            };
            if let Some(parked) = reg.parked.remove(&session_id) {
                reg.parked_total -= parked.len();
                for p in parked {
                    match active.admit(&p.peer, p.sender) {
                        Ok(route) => {
                            let _ = p.reply.send(route);
                        }
                        Err(reason) => {
                            span.in_scope(|| {
                                warn!(from = %p.peer, party = p.sender, %reason, "parked session stream refused");
                            });
                        }
                    }
                }
            }
            reg.active.insert(session_id, active);
        }
        let guard = Unregister {
            shared: shared.clone(),
            session: session_id,
        };

        let mut writers = Vec::with_capacity(parties.len());
        for (i, peer) in parties.iter().enumerate() {
            let i = i as u16;
            if i == me {
                writers.push(None);
                continue;
            }
            let (wtx, wrx) = mpsc::unbounded_channel();
            let writer = Writer {
                node: self.clone(),
                session: session_id,
                me,
                party: i,
                peer: peer.clone(),
                rx: wrx,
                events: tx.clone(),
                round_timeout,
            };
            let wspan = info_span!(parent: &span, "session_out", to = %peer.node, party = i);
            tokio::spawn(writer.run().instrument(wspan));
            writers.push(Some(wtx));
        }
        span.in_scope(|| debug!(parties = n, "session joined"));

        Ok(SessionDelivery {
            incoming: SessionIncoming {
                session: session_id,
                me,
                parties: nodes.clone(),
                rx,
                round_timeout,
                timer: None,
                counts: vec![0; parties.len()],
                next_id: 0,
                _guard: guard,
                _msg: PhantomData,
            },
            outgoing: SessionOutgoing {
                session: session_id,
                me,
                parties: nodes,
                writers,
                max_frame: self.config().max_frame,
                _msg: PhantomData,
            },
        })
    }
}

/// One party's delivery in one session: a [`round_based::Delivery`] of `M`.
pub struct SessionDelivery<M> {
    incoming: SessionIncoming<M>,
    outgoing: SessionOutgoing<M>,
}

impl<M> std::fmt::Debug for SessionDelivery<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionDelivery")
            .field("session", &hex::encode(self.incoming.session))
            .field("me", &self.incoming.me)
            .field("parties", &self.incoming.parties)
            .finish()
    }
}

impl<M> SessionDelivery<M> {
    /// The session id.
    pub fn session_id(&self) -> &SessionKey {
        &self.incoming.session
    }

    /// This party's index.
    pub fn me(&self) -> u16 {
        self.incoming.me
    }
}

impl<M> Delivery<M> for SessionDelivery<M>
where
    M: Serialize + DeserializeOwned + Send + Unpin + 'static,
{
    type Send = SessionOutgoing<M>;
    type Receive = SessionIncoming<M>;
    type SendError = NetError;
    type ReceiveError = NetError;

    fn split(self) -> (Self::Receive, Self::Send) {
        (self.incoming, self.outgoing)
    }
}

/// Receiving half of a [`SessionDelivery`]. Dropping it leaves the session.
pub struct SessionIncoming<M> {
    session: SessionKey,
    me: u16,
    parties: Vec<NodeId>,
    rx: mpsc::Receiver<Event>,
    round_timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    counts: Vec<u64>,
    next_id: u64,
    _guard: Unregister,
    _msg: PhantomData<fn() -> M>,
}

impl<M> SessionIncoming<M> {
    fn node(&self, party: u16) -> NodeId {
        self.parties[usize::from(party)].clone()
    }

    /// The parties that sent fewer messages than the most active one (all
    /// other parties when that singles out nobody).
    fn suspects(&self) -> Vec<(u16, NodeId)> {
        let others = || (0..self.parties.len() as u16).filter(|&p| p != self.me);
        let most = others()
            .map(|p| self.counts[usize::from(p)])
            .max()
            .unwrap_or(0);
        let behind: Vec<u16> = others()
            .filter(|&p| self.counts[usize::from(p)] < most)
            .collect();
        let list: Vec<u16> = if behind.is_empty() {
            others().collect()
        } else {
            behind
        };
        list.into_iter().map(|p| (p, self.node(p))).collect()
    }
}

impl<M> Stream for SessionIncoming<M>
where
    M: DeserializeOwned + Unpin,
{
    type Item = Result<Incoming<M>, NetError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Event::Msg { party, frame })) => {
                this.timer = None;
                this.counts[usize::from(party)] += 1;
                let msg_type = if frame.first() == Some(&FLAG_BROADCAST) {
                    MessageType::Broadcast
                } else {
                    MessageType::P2P
                };
                let body = frame.get(1..).unwrap_or_default();
                let item = match serde_json::from_slice::<M>(body) {
                    Ok(msg) => {
                        let id = this.next_id;
                        this.next_id += 1;
                        Ok(Incoming {
                            id,
                            sender: party,
                            msg_type,
                            msg,
                        })
                    }
                    Err(e) => Err(NetError::Malformed {
                        session: this.session,
                        party,
                        node: this.node(party),
                        reason: e.to_string(),
                    }),
                };
                Poll::Ready(Some(item))
            }
            Poll::Ready(Some(Event::Malformed { party, reason })) => {
                this.timer = None;
                Poll::Ready(Some(Err(NetError::Malformed {
                    session: this.session,
                    party,
                    node: this.node(party),
                    reason,
                })))
            }
            Poll::Ready(Some(Event::Gone { party, reason })) => {
                this.timer = None;
                Poll::Ready(Some(Err(NetError::PeerGone {
                    session: this.session,
                    party,
                    node: this.node(party),
                    reason,
                })))
            }
            // Cannot happen while the registry holds a sender; end the stream.
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let after = this.round_timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timer = None;
                        let waiting_for = this.suspects();
                        warn!(session = %short(&this.session), ?waiting_for, "round timed out");
                        Poll::Ready(Some(Err(NetError::Timeout {
                            session: this.session,
                            waiting_for,
                            after,
                        })))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// Sending half of a [`SessionDelivery`]. Messages are queued to one writer task
/// per party (never blocks); dropping or closing it finishes the streams.
pub struct SessionOutgoing<M> {
    session: SessionKey,
    me: u16,
    parties: Vec<NodeId>,
    writers: Vec<Option<mpsc::UnboundedSender<Frame>>>,
    max_frame: usize,
    _msg: PhantomData<fn(M)>,
}

impl<M> SessionOutgoing<M> {
    fn push(&self, party: u16, frame: &Frame) -> Result<(), NetError> {
        let gone = || NetError::PeerGone {
            session: self.session,
            party,
            node: self.parties[usize::from(party)].clone(),
            reason: "its stream failed earlier".into(),
        };
        match self.writers.get(usize::from(party)) {
            Some(Some(w)) => w.send(frame.clone()).map_err(|_| gone()),
            _ => Err(gone()),
        }
    }
}

impl<M> Sink<Outgoing<M>> for SessionOutgoing<M>
where
    M: Serialize + Unpin,
{
    type Error = NetError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), NetError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Outgoing<M>) -> Result<(), NetError> {
        let this = self.get_mut();
        let n = this.parties.len() as u16;
        let broadcast = matches!(item.recipient, MessageDestination::AllParties);
        let mut frame = vec![if broadcast { FLAG_BROADCAST } else { FLAG_P2P }];
        serde_json::to_writer(&mut frame, &item.msg).map_err(|e| NetError::Encode {
            session: this.session,
            reason: e.to_string(),
        })?;
        if frame.len() > this.max_frame {
            return Err(NetError::FrameTooLarge {
                len: frame.len() as u64,
                max: this.max_frame,
                peer: None,
            });
        }
        let frame = Arc::new(frame);
        match item.recipient {
            MessageDestination::AllParties => {
                let mut first_err = None;
                for p in (0..n).filter(|&p| p != this.me) {
                    if let Err(e) = this.push(p, &frame) {
                        first_err.get_or_insert(e);
                    }
                }
                first_err.map_or(Ok(()), Err)
            }
            MessageDestination::OneParty(p) => {
                if p >= n || p == this.me {
                    return Err(NetError::BadRecipient {
                        session: this.session,
                        recipient: p,
                        parties: n,
                    });
                }
                this.push(p, &frame)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), NetError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), NetError>> {
        let this = self.get_mut();
        this.writers.iter_mut().for_each(|w| *w = None);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let h = header(&[3u8; 32], 513);
        assert_eq!(h.len(), HEADER_LEN);
        assert_eq!(parse_header(&h), Some(([3u8; 32], 513)));
        assert_eq!(parse_header(&h[..HEADER_LEN - 1]), None);
        let mut bad = h.clone();
        bad[0] = b'X';
        assert_eq!(parse_header(&bad), None);
        bad = h;
        bad.push(0);
        assert_eq!(parse_header(&bad), None);
    }

    #[test]
    fn admission_checks_index_identity_and_duplicates() {
        let (tx, _rx) = mpsc::channel(1);
        let node = |s: &str| NodeId::new(s).unwrap();
        let mut active = Active {
            me: 0,
            parties: vec![node("a"), node("b"), node("c")],
            tx,
            admitted: HashSet::new(),
        };
        assert!(active.admit(&node("b"), 1).is_ok());
        assert!(active.admit(&node("b"), 1).is_err(), "duplicate stream");
        assert!(active.admit(&node("x"), 2).is_err(), "forged index");
        assert!(active.admit(&node("c"), 3).is_err(), "outside the session");
        assert!(active.admit(&node("a"), 0).is_err(), "our own index");
        assert!(active.admit(&node("c"), 2).is_ok());
    }
}
