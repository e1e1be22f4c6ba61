//! The load tools' client of the coordinator's REST API: a bearer token and
//! JSON bodies; an error answer is a failure that names the call.

use serde_json::Value;

/// A failure of a load tool.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The API at `base` with `token`.
pub struct Http {
    /// Base URL (`http://127.0.0.1:7100`).
    pub base: String,
    /// Bearer token.
    pub token: String,
    /// The shared client (its connection pool).
    pub client: reqwest::Client,
}

impl Http {
    /// `method path` with an optional JSON body; the JSON answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut r = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {v}").into());
        }
        Ok(v)
    }
}
