//! Errors of the chain JSON-RPC clients.
//!
//! Every `url` field holds a *redacted* endpoint (`scheme://host[:port]`,
//! see [`redact_url`]): provider URLs often carry an API key in their path
//! or query, and these errors end up in logs.

/// An error of a JSON-RPC call.
///
/// Decide on the variant and, for [`RpcError::Rpc`], on the typed `code`
/// (plus follow-up queries such as a nonce or a receipt), never on the text
/// of `message`: nodes and providers word their messages differently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The endpoint could not be reached or did not answer in time
    /// (connection refused, DNS failure, timeout, HTTP 429 or 5xx without a
    /// JSON-RPC body). Retryable; [`super::evm::EvmRpc`] already tried every
    /// URL it was given before returning it.
    #[error("transport error with {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The node answered with a JSON-RPC error object.
    #[error("{url} answered {method} with JSON-RPC error {code}: {message}")]
    Rpc {
        url: String,
        method: String,
        code: i64,
        message: String,
    },
    /// The node answered something that is not the expected JSON-RPC
    /// response (not JSON, wrong id, a result of the wrong shape, ...).
    #[error("bad response from {url} to {method}: {reason}")]
    BadResponse {
        url: String,
        method: String,
        reason: String,
    },
    /// The response body exceeded `limit` bytes and was not read further.
    #[error("response from {url} exceeds {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// The client could not be built (no URL, an unparsable URL, ...).
    #[error("invalid RPC configuration: {reason}")]
    Config { reason: String },
}

impl RpcError {
    /// Whether another endpoint, or a later attempt, may succeed.
    pub fn is_transport(&self) -> bool {
        matches!(self, RpcError::Transport { .. })
    }

    /// The JSON-RPC error code, when the node answered with one.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            RpcError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// `scheme://host[:port]` of `url`: what may be logged or kept in an error.
/// Path, query, user name and password (where API keys live) are dropped.
pub fn redact_url(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(p) => format!("{}://{}:{}", url.scheme(), host, p),
        None => format!("{}://{}", url.scheme(), host),
    }
}
