//! Retries for Google API calls: exponential backoff with full jitter on 429, 5xx and connection
//! errors, bounded in attempts and total time; any other error fails at once with the API's own
//! message.

use std::future::Future;
use std::time::{Duration, Instant};

/// A failed call to a Google API (or the emulator standing in for it).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// `sheets`, `bigquery` or `run` (the Cloud Run Admin API).
    pub api: &'static str,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The API's own message (`error.message`), or the transport error.
    pub message: String,
    /// Worth retrying: 408, 429, 5xx, or no response at all.
    pub transient: bool,
    /// How long the API asked to wait before trying again (`Retry-After`), when it said.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn http(api: &'static str, status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            api,
            status: Some(status),
            message: message.into(),
            transient: matches!(status, 408 | 429 | 500..=599),
            retry_after: None,
        }
    }
    pub fn transport(api: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { api, status: None, message: message.into(), transient: true, retry_after: None }
    }
    pub fn permanent(api: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { api, status: None, message: message.into(), transient: false, retry_after: None }
    }
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
    pub fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }

    /// The same error, with the wait a `Retry-After: SECONDS` header asked for.
    pub fn with_retry_after(self, header: Option<&str>) -> ApiError {
        let retry_after = header.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
        ApiError { retry_after, ..self }
    }

    /// Extracts `error.message` / `error.status` from a Google error body.
    pub fn from_body(api: &'static str, status: u16, body: &[u8]) -> ApiError {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let msg = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .map(|e| {
                let m = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
                match e.get("status").and_then(|s| s.as_str()) {
                    Some(s) if !m.is_empty() => format!("{m} ({s})"),
                    _ => m.to_string(),
                }
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let short: String = text.chars().take(300).collect();
                if short.trim().is_empty() {
                    "no error message in the response".into()
                } else {
                    short
                }
            });
        ApiError::http(api, status, msg)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} API answered HTTP {s}: {}", self.api, self.message),
            None => write!(f, "{} API: {}", self.api, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

/// Bounds for retrying one call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(180),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `n` (1-based): full jitter over `initial * 2^(n-1)`, capped.
    pub fn delay(&self, n: u32) -> Duration {
        let exp = self.initial_delay.saturating_mul(1u32 << (n - 1).min(16)).min(self.max_delay);
        // Full jitter, but never below half the step so a 429 storm actually backs off.
        let half = exp / 2;
        half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
    }

    /// Runs `call` until it succeeds, fails permanently, or the budget is spent.
    pub async fn run<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.transient => return Err(e),
                Err(e) => {
                    // Never sooner than the API asked to be called again (Retry-After).
                    let backoff = self.delay(attempt);
                    let delay = e.retry_after.map_or(backoff, |after| after.max(backoff));
                    if attempt >= self.max_attempts || started.elapsed() + delay > self.max_elapsed {
                        return Err(ApiError {
                            message: format!(
                                "{} (gave up after {attempt} attempts in {:.1}s)",
                                e.message,
                                started.elapsed().as_secs_f64()
                            ),
                            ..e
                        });
                    }
                    tracing::warn!(
                        api = e.api,
                        call = what,
                        status = e.status,
                        attempt,
                        retry_in_ms = delay.as_millis() as u64,
                        error = %e.message,
                        "transient API error, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let p = RetryPolicy::default();
        for n in 1..10 {
            let d = p.delay(n);
            let step = (p.initial_delay * (1 << (n - 1))).min(p.max_delay);
            assert!(d >= step / 2 && d <= step, "{n}: {d:?}");
        }
    }

    #[test]
    fn google_error_bodies_are_read() {
        let e = ApiError::from_body(
            "sheets",
            403,
            br#"{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(e.message, "The caller does not have permission (PERMISSION_DENIED)");
        assert!(!e.transient);
        assert!(ApiError::from_body("sheets", 429, b"{}").transient);
        let throttled = ApiError::from_body("run", 429, b"{}").with_retry_after(Some(" 7"));
        assert_eq!(throttled.retry_after, Some(Duration::from_secs(7)));
    }
}
