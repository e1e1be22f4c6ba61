//! The CLI's client of the coordinator's REST API (used by the devnet and by
//! the officer commands): bearer token, JSON bodies, and error answers shown
//! as `code: message` (`keyfold_proto::api::ApiError`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

/// A coordinator API endpoint and the token to use.
pub struct Api {
    base: String,
    token: Zeroizing<String>,
    http: reqwest::Client,
}

impl Api {
    /// A client for `base` (e.g. `http://127.0.0.1:7100`); requests give up
    /// after `timeout`.
    pub fn new(
        base: &str,
        token: Zeroizing<String>,
        timeout: std::time::Duration,
    ) -> Result<Api, String> {
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?,
        })
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.call(reqwest::Method::DELETE, path, None::<&()>).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(self.token.as_str());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            format!(
                "{method} {}{path}: {e} (is the coordinator running?)",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if !status.is_success() {
            let msg = serde_json::from_str::<keyfold_proto::api::ApiError>(&text)
                .map(|e| format!("{}: {}", e.error.code, e.error.message))
                .unwrap_or(text);
            return Err(format!("{method} {path}: HTTP {status}: {msg}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: unreadable answer: {e}"))
    }
}
