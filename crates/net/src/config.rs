//! Transport limits and timeouts.

use std::time::Duration;

/// Default largest frame: 8 MiB.
pub const DEFAULT_MAX_FRAME: usize = 8 << 20;

/// Limits and timeouts of a [`crate::Node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Largest frame (request, response or session message) accepted or sent.
    pub max_frame: usize,
    /// Limit for a QUIC + TLS handshake, and for a session stream's header to arrive.
    pub connect_timeout: Duration,
    /// A connection with no traffic for this long is closed; also the limit for a
    /// request to arrive on an RPC stream the server accepted.
    pub idle_timeout: Duration,
    /// Keep-alive period of connections (must be below `idle_timeout`): keeps
    /// cached connections open and detects restarted peers.
    pub keep_alive: Duration,
    /// How long a session stream that arrives before the local `join_session`
    /// is kept waiting for it.
    pub round_timeout: Duration,
    /// Concurrent streams a peer may open on one connection (each direction
    /// and kind); quinn's default of 100 is too low for many sessions.
    pub max_concurrent_streams: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            round_timeout: Duration::from_secs(60),
            max_concurrent_streams: 1024,
        }
    }
}

impl NetConfig {
    /// Checks that the values are usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_frame == 0 || self.max_frame > u32::MAX as usize {
            return Err(format!(
                "max_frame {} must be between 1 and {}",
                self.max_frame,
                u32::MAX
            ));
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("idle_timeout", self.idle_timeout),
            ("keep_alive", self.keep_alive),
            ("round_timeout", self.round_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must not be zero"));
            }
        }
        if self.keep_alive >= self.idle_timeout {
            return Err(format!(
                "keep_alive {:?} must be below idle_timeout {:?}",
                self.keep_alive, self.idle_timeout
            ));
        }
        if self.idle_timeout > Duration::from_secs(3600) {
            return Err("idle_timeout must be at most one hour".into());
        }
        if self.max_concurrent_streams == 0 {
            return Err("max_concurrent_streams must not be zero".into());
        }
        Ok(())
    }
}
