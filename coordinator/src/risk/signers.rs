//! Freezes pushed to the signers, which enforce them on their own
//! (`docs/risk.md`, "Freezes at the signers").
//!
//! A freeze or a lift is sent to every signer at once, off the request's
//! path (a slow signer delays nothing). Every `RESEND_SECS` the coordinator
//! sends every active freeze and every lift of the last day again, so a
//! signer that was down, or restored from a backup, catches up on its own;
//! both commands are idempotent at the signer. A lift that expired before
//! a signer got it leaves that signer frozen (it fails closed): officers
//! sign a new one.

use std::sync::{Arc, Weak};
use std::time::Duration;

use keyfold_proto::signer::{Command, FreezeSubject};
use keyfold_store::FreezeRow;
use tokio::sync::Notify;

use crate::signers::client::SignerClient;
use crate::Coordinator;

/// How often every freeze is sent again.
pub const RESEND_SECS: u64 = 5;

/// The command that freezes `f` at a signer.
fn freeze_command(f: &FreezeRow) -> Command {
    Command::Freeze {
        freeze_id: f.freeze_id.clone(),
        subject: FreezeSubject {
            scope: f.scope.clone(),
            subject: f.subject.clone(),
        },
    }
}

/// Sends `command` to every signer; logs those that did not take it (the
/// next resend tries them again).
pub(crate) async fn push(client: &SignerClient, timeout: Duration, what: &str, command: Command) {
    let results = client
        .call_each(client.all_signers(), timeout, |_| command.clone())
        .await;
    for (r, s) in results.iter().zip(client.all_signers()) {
        if let Err(e) = r {
            tracing::warn!(signer = %s.node_id, %what, error = %e, "a signer did not take a freeze change yet; it is sent again");
        }
    }
}

/// Pushes a new freeze to every signer in the background.
pub(crate) fn push_freeze(client: &SignerClient, timeout: Duration, f: &FreezeRow) {
    let (client, command, id) = (client.clone(), freeze_command(f), f.freeze_id.clone());
    tokio::spawn(async move { push(&client, timeout, &id, command).await });
}

/// Pushes a lift to every signer in the background.
pub(crate) fn push_lift(
    client: &SignerClient,
    timeout: Duration,
    freeze_id: &str,
    lift_json: &str,
) {
    let command = Command::LiftFreeze {
        freeze_id: freeze_id.to_string(),
        lift: lift_json.to_string(),
    };
    let (client, id) = (client.clone(), freeze_id.to_string());
    tokio::spawn(async move { push(&client, timeout, &id, command).await });
}

/// Rounds of the resend loop between two purges of raw client context
/// (60 rounds of 5 s: five minutes).
const PURGE_EVERY_ROUNDS: u64 = 60;

/// Resends every active freeze and the last day's lifts until `stop`.
async fn resend_loop(coordinator: Weak<Coordinator>, stop: Arc<Notify>) {
    let mut rounds: u64 = 0;
    loop {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        // Retention housekeeping rides along, once every few minutes.
        if c.risk.is_some() && rounds.is_multiple_of(PURGE_EVERY_ROUNDS) {
            match c.purge_raw_context().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "raw client context past its retention purged"),
                Err(e) => tracing::warn!(error = %e, "cannot purge raw client context"),
            }
        }
        rounds = rounds.wrapping_add(1);
        if c.risk.is_some() {
            match c
                .read(|s| s.freezes(false, keyfold_store::MAX_RISK_PAGE))
                .await
            {
                Ok(rows) => {
                    let day_ago = i64::try_from(c.clock.now_secs()).unwrap_or(i64::MAX) - 86_400;
                    let timeout = c.cfg.tuning.probe_timeout();
                    for f in rows {
                        match (&f.lifted_at, &f.lift_json) {
                            (None, _) => {
                                push(&c.client, timeout, &f.freeze_id, freeze_command(&f)).await
                            }
                            (Some(at), Some(lift)) if *at >= day_ago => {
                                // A signer that missed the freeze too needs
                                // it before the lift can name it.
                                push(&c.client, timeout, &f.freeze_id, freeze_command(&f)).await;
                                push(
                                    &c.client,
                                    timeout,
                                    &f.freeze_id,
                                    Command::LiftFreeze {
                                        freeze_id: f.freeze_id.clone(),
                                        lift: lift.clone(),
                                    },
                                )
                                .await;
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the freezes to send them again"),
            }
        }
        drop(c);
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(Duration::from_secs(RESEND_SECS)) => {}
        }
    }
}

/// Starts the resend loop, if the coordinator has a risk module.
pub fn spawn(coordinator: &Arc<Coordinator>) -> Option<(Arc<Notify>, tokio::task::JoinHandle<()>)> {
    coordinator.risk.as_ref()?;
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(resend_loop(Arc::downgrade(coordinator), stop.clone()));
    Some((stop, task))
}
