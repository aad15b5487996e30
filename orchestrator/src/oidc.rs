//! Authentication of `POST /run`: a Google-signed OIDC ID token (what Cloud Scheduler sends with
//! an OIDC target) verified against Google's JWKS — RS256 signature, `iss`, `aud`, `exp`, an
//! allowed service-account `email` with `email_verified` — or, outside GCP, a static bearer token
//! compared in constant time. Tokens never appear in logs or errors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde_json::Value;
use sheettobigquery::store::Secret;
use tokio::sync::RwLock;

use crate::settings::OidcSettings;

/// Clock skew tolerated on `exp`, `iat` and `nbf`.
const LEEWAY_SECS: i64 = 30;
/// An unknown `kid` refetches the keys at most this often.
const REFETCH_MIN: Duration = Duration::from_secs(30);

/// Why a request was refused. `status()` is 401 (who are you?) or 403 (not you).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("missing bearer token (Authorization: Bearer …)")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token signed with an unknown key ({0})")]
    UnknownKey(String),
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token issuer {0:?} is not accepted")]
    WrongIssuer(String),
    #[error("token audience {0:?} is not this service's")]
    WrongAudience(String),
    #[error("{0:?} is not allowed to trigger ticks")]
    EmailNotAllowed(String),
    #[error("token email is not verified")]
    EmailUnverified,
    #[error("invalid bearer token")]
    BadStaticToken,
    #[error("cannot fetch the token signing keys: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    pub fn status(&self) -> u16 {
        match self {
            AuthError::WrongAudience(_) | AuthError::EmailNotAllowed(_) | AuthError::EmailUnverified => 403,
            AuthError::KeysUnavailable(_) => 503,
            _ => 401,
        }
    }
}

/// Who a request was accepted as (for the logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    ServiceAccount(String),
    StaticToken,
    Anonymous,
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::ServiceAccount(e) => f.write_str(e),
            Principal::StaticToken => f.write_str("static token"),
            Principal::Anonymous => f.write_str("anonymous"),
        }
    }
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, (Vec<u8>, Vec<u8>)>,
    fetched: Option<Instant>,
    max_age: Duration,
}

/// Verifies Google-signed ID tokens.
pub struct OidcVerifier {
    s: OidcSettings,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed(format!("{what} is not base64url")))
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let cc = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    cc.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok()).map(Duration::from_secs)
}

impl OidcVerifier {
    pub fn new(s: OidcSettings) -> OidcVerifier {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        OidcVerifier { s, http, cache: RwLock::new(KeyCache::default()) }
    }

    async fn fetch_keys(&self) -> Result<(), AuthError> {
        let resp =
            self.http.get(&self.s.jwks_url).send().await.map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(AuthError::KeysUnavailable(format!("{} answered {}", self.s.jwks_url, resp.status())));
        }
        let age = max_age(resp.headers()).unwrap_or(Duration::from_secs(3600));
        let jwks: Value = resp.json().await.map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
        let mut keys = HashMap::new();
        for k in jwks["keys"].as_array().cloned().unwrap_or_default() {
            if k["kty"] != "RSA" {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (k["kid"].as_str(), k["n"].as_str(), k["e"].as_str()) else { continue };
            if let (Ok(n), Ok(e)) = (b64(n, "n"), b64(e, "e")) {
                keys.insert(kid.to_string(), (n, e));
            }
        }
        let mut c = self.cache.write().await;
        c.keys = keys;
        c.fetched = Some(Instant::now());
        c.max_age = age;
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<(Vec<u8>, Vec<u8>), AuthError> {
        {
            let c = self.cache.read().await;
            let fresh = c.fetched.is_some_and(|t| t.elapsed() < c.max_age);
            if let (true, Some(k)) = (fresh, c.keys.get(kid)) {
                return Ok(k.clone());
            }
            // Unknown kid with fresh keys: refetch only if the last fetch is not too recent.
            if fresh && c.fetched.is_some_and(|t| t.elapsed() < REFETCH_MIN) {
                return Err(AuthError::UnknownKey(kid.to_string()));
            }
        }
        self.fetch_keys().await?;
        self.cache.read().await.keys.get(kid).cloned().ok_or_else(|| AuthError::UnknownKey(kid.to_string()))
    }

    /// Verifies the token; returns the service-account email.
    pub async fn verify(&self, token: &str) -> Result<String, AuthError> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(AuthError::Malformed("not a JWT".into()));
        }
        let header: Value = serde_json::from_slice(&b64(parts[0], "header")?)
            .map_err(|_| AuthError::Malformed("header is not JSON".into()))?;
        if header["alg"] != "RS256" {
            return Err(AuthError::Malformed(format!("algorithm {} is not RS256", header["alg"])));
        }
        let kid = header["kid"].as_str().ok_or_else(|| AuthError::Malformed("no kid".into()))?;
        let (n, e) = self.key(kid).await?;
        let sig = b64(parts[2], "signature")?;
        let signed = format!("{}.{}", parts[0], parts[1]);
        RsaPublicKeyComponents { n: &n, e: &e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &sig)
            .map_err(|_| AuthError::BadSignature)?;
        let claims: Value = serde_json::from_slice(&b64(parts[1], "payload")?)
            .map_err(|_| AuthError::Malformed("payload is not JSON".into()))?;
        self.check_claims(&claims, chrono::Utc::now().timestamp())
    }

    fn check_claims(&self, c: &Value, now: i64) -> Result<String, AuthError> {
        let exp = c["exp"].as_i64().ok_or_else(|| AuthError::Malformed("no exp".into()))?;
        if exp + LEEWAY_SECS < now {
            return Err(AuthError::Expired);
        }
        for k in ["nbf", "iat"] {
            if c[k].as_i64().is_some_and(|t| t - LEEWAY_SECS > now) {
                return Err(AuthError::NotYetValid);
            }
        }
        let iss = c["iss"].as_str().unwrap_or("");
        if !self.s.issuers.iter().any(|i| i == iss) {
            return Err(AuthError::WrongIssuer(iss.to_string()));
        }
        let aud_ok = match &c["aud"] {
            Value::String(a) => *a == self.s.audience,
            Value::Array(a) => a.iter().any(|x| x.as_str() == Some(self.s.audience.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::WrongAudience(c["aud"].to_string().trim_matches('"').to_string()));
        }
        let email = c["email"].as_str().unwrap_or("").to_string();
        if !self.s.allowed_emails.iter().any(|e| e.eq_ignore_ascii_case(&email)) {
            return Err(AuthError::EmailNotAllowed(email));
        }
        let verified = match &c["email_verified"] {
            Value::Bool(b) => *b,
            Value::String(s) => s == "true",
            _ => false,
        };
        if !verified {
            return Err(AuthError::EmailUnverified);
        }
        Ok(email)
    }
}

/// Constant-time equality (length leaks, content does not).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request authenticator of `serve`.
pub struct Authenticator {
    static_token: Option<Secret>,
    oidc: Option<OidcVerifier>,
    open: bool,
}

impl Authenticator {
    pub fn new(static_token: Option<Secret>, oidc: Option<OidcSettings>, open: bool) -> Authenticator {
        Authenticator { static_token, oidc: oidc.map(OidcVerifier::new), open }
    }

    /// Checks the `Authorization` header value.
    pub async fn check(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = authorization.map(str::trim).and_then(|h| {
            let (scheme, rest) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return if self.open { Ok(Principal::Anonymous) } else { Err(AuthError::Missing) };
        };
        if let Some(s) = &self.static_token {
            if same(token.as_bytes(), s.expose().as_bytes()) {
                return Ok(Principal::StaticToken);
            }
        }
        match &self.oidc {
            Some(v) if token.split('.').count() == 3 => v.verify(token).await.map(Principal::ServiceAccount),
            _ if self.open => Ok(Principal::Anonymous),
            _ => Err(AuthError::BadStaticToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verifier() -> OidcVerifier {
        OidcVerifier::new(OidcSettings {
            audience: "https://orch.example".into(),
            allowed_emails: vec!["scheduler@p.iam.gserviceaccount.com".into()],
            jwks_url: "http://127.0.0.1:9/certs".into(),
            issuers: vec!["https://accounts.google.com".into()],
        })
    }

    #[test]
    fn claims_are_checked_in_order() {
        let v = verifier();
        let now = 1_700_000_000;
        let good = json!({"iss": "https://accounts.google.com", "aud": "https://orch.example", "exp": now + 600, "iat": now,
            "email": "scheduler@p.iam.gserviceaccount.com", "email_verified": true});
        assert_eq!(v.check_claims(&good, now).unwrap(), "scheduler@p.iam.gserviceaccount.com");
        let with = |k: &str, val: Value| {
            let mut c = good.clone();
            c[k] = val;
            v.check_claims(&c, now).unwrap_err()
        };
        assert_eq!(with("exp", json!(now - 120)), AuthError::Expired);
        assert_eq!(with("iss", json!("https://evil")).status(), 401);
        assert_eq!(with("aud", json!("https://other")).status(), 403);
        assert_eq!(with("email", json!("x@y.z")).status(), 403);
        assert_eq!(with("email_verified", json!(false)), AuthError::EmailUnverified);
        assert!(v.check_claims(&with_aud_list(&good), now).is_ok());
    }

    fn with_aud_list(c: &Value) -> Value {
        let mut c = c.clone();
        c["aud"] = json!(["x", "https://orch.example"]);
        c
    }

    #[tokio::test]
    async fn static_token_and_missing_header() {
        let a = Authenticator::new(Some(Secret::new("0123456789abcdef")), None, false);
        assert_eq!(a.check(None).await.unwrap_err().status(), 401);
        assert_eq!(a.check(Some("Bearer 0123456789abcdef")).await.unwrap(), Principal::StaticToken);
        assert_eq!(a.check(Some("bearer 0123456789abcdef")).await.unwrap(), Principal::StaticToken);
        assert_eq!(a.check(Some("Bearer 0123456789abcdeX")).await.unwrap_err(), AuthError::BadStaticToken);
        assert_eq!(a.check(Some("Basic abc")).await.unwrap_err(), AuthError::Missing);
    }
}
