//! A local stand-in for Google's OIDC signing keys, for the orchestrator's `serve` tests: a JWKS
//! endpoint (the shape of https://www.googleapis.com/oauth2/v3/certs) serving one RSA key, and
//! RS256 ID tokens minted with it carrying the claims Cloud Scheduler's Google-signed tokens carry
//! (`iss`, `aud`, `azp`, `sub`, `email`, `email_verified`, `iat`, `exp`).
//!
//! The key below was generated for these tests only (an RSA-2048 private key, PKCS#1 DER); it
//! protects nothing and must never be trusted outside them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// The issuer of Google ID tokens.
pub const ISSUER: &str = "https://accounts.google.com";
/// The `kid` of the test key.
pub const KID: &str = "stb-test-key-1";

pub const TEST_KEY_RSA_DER_B64: &str = concat!(
    "MIIEpAIBAAKCAQEA9vmyd5tN/8kATBdFbZfEz0SwNbw049sDhBnWKTsKFqZIXfmQ/jEL9+ARR8W72+usrcbBZOyEOFaD14/k",
    "eXjH1t4eAMNnQeREhzJwABFhwvztU4EonYTr07Ai+fQprYr9taz481GBy2BJJs5AXLZWVhEvcEYXCp5R6SfG13ml4WZpFDAv",
    "RpOzHxkZWU/aRlCOlw2imxjVrmpnwtvi3wQxESibK+lZG0lqVNwJMIU6wfKfhsoQK6o4BmpxHqsnNN/ssC0DXXcnGbVshnIE",
    "poTGPQ6uIyMvzCZ3xXEkaLua0crml+8UIH4m2OPtH+F9IItNZ2Pxl5HqsHnMefPqifDMxQIDAQABAoIBAAdP0qsMV8WSGZZn",
    "HPjW5K5/OdlJamZxijvbuPWtCAouH5fapuKDqLdMtK5DiiGDa3AUoY6fmvWBCDO2UJ0RCJeRqWE7579xZt76zQqPeS2457zQ",
    "ZtetAv9YKFzuj9pRslux1If9moJfJiNGOW0VP96Z8SXZiV6Y29NziEVCVnkjDGdcdYU2jeMSd7rnICPVM3Wra2TNOaKd/qJE",
    "s5PkNmif5s0TWpXwfO3vNKpoq8KLaKaoaykbzQsBo2x1abtqrFUm+bFyJO2XeSUQj+w6Ky7c8jbmWiecfEXRtHhKbBC0g+nb",
    "mCpvZEdz0KJYCLVAmoiGyaZ3WaV3NNe5Gq/RS+ECgYEA++QED17H14Jq9sJ/861xx+Iq68gof7r0bQVLs6IQa7HE+UszggtY",
    "apI+SoaMPIwZM3wrwN1bi8tKJl0rGj5XUtDdZsFtao6xX4vlNLB0ziXs99tXiekLgBK7Z1tQ8yJiIN870JXkf3kkw3yiRQO7",
    "eDG+tDIe1iftapR0RfYbwOECgYEA+wEnObXYtX9GwHl5X9L6gufUwMGjhV81B+7VC6JxcFuOD7jo0HWgM7j3c7S25qFcDTMV",
    "FNGxgpiEWJjRVacEqM4E2qpgCwRqTq5CqajuK73KQeUpBcfXQ4Y/nMsQbQUxmuPgjLtxrh+kw0u/U+oa5ytgrDoS2Mm/PP69",
    "TffQNGUCgYEA8R0RWdkjOEKJuwzxR8MV7/ypkyr0wVenExiHnzqZt0ziPLNkaa4Mg27bm6Dxah+9G9BXXXVGZSlCIDj8wlE8",
    "a3StCehLoT1Xwhr6WxYxqQcaryLRx5xBOuYzZzs84I9gGRE2g3KH2BGRRGLwPVnWQLZ1Uq3LYLm1hFj4d+OeK2ECgYEAp+nT",
    "ldXCzVgBus0Il0QKdfwk5XYksBpK3a22M/xNqv50gKwQgzPNIgzA7VSdbpfPfr0Hg0/sUhM5phNFJul+Qnbf5HBJo9UmUNBe",
    "pCTwf66NWZu137oalX9/mqJ1sJji4F1FYKAcooFktYk8yyQ3LyJjn5OR/BiqqGE5vqjjTckCgYApdwsjR4CzWwZHihaAf/fk",
    "EjkzcDAcoYNEDk3rCc8CbjtQzOysX1RZwAjVWe5r76gYe3wYggTCNcea50kmGQ3FRt8zm3m01LaE/YdPIIhnSxjk89ByltHn",
    "uOSA6vK2Z2gB++C9k5zRaQVY8MQyf9QIC8BIDQJiOsqkdqQZkpNqpg==",
);
/// Mints tokens and describes its public key.
pub struct OidcFake {
    key: RsaKeyPair,
    jwks: Value,
    fetches: AtomicUsize,
}

impl Default for OidcFake {
    fn default() -> Self {
        Self::new()
    }
}

impl OidcFake {
    pub fn new() -> OidcFake {
        let der = STANDARD.decode(TEST_KEY_RSA_DER_B64).expect("test key is base64");
        let key = RsaKeyPair::from_der(&der).expect("test key is an RSA private key");
        let public: RsaPublicKeyComponents<Vec<u8>> = key.public().into();
        let jwks = json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        }]});
        OidcFake { key, jwks, fetches: AtomicUsize::new(0) }
    }

    /// Claims of a valid Google ID token for `audience` and service account `email`, valid for an
    /// hour from now.
    pub fn claims(audience: &str, email: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": ISSUER,
            "aud": audience,
            "azp": "112233445566778899000",
            "sub": "112233445566778899000",
            "email": email,
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// An RS256 JWT over `claims`, signed with the test key.
    pub fn mint(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "kid": KID, "typ": "JWT"});
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut sig)
            .expect("sign the test token");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The same token with its payload replaced (so its signature no longer matches).
    pub fn tamper(token: &str, claims: &Value) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2])
    }

    /// Serves `GET /oauth2/v3/certs` on a free loopback port.
    pub async fn spawn(self) -> std::io::Result<RunningOidcFake> {
        let me = Arc::new(self);
        let app = Router::new().route("/oauth2/v3/certs", get(certs)).with_state(me.clone());
        let (addr, stop, _) = crate::serve_loopback(app).await?;
        Ok(RunningOidcFake { fake: me, addr, _stop: stop })
    }
}

async fn certs(State(f): State<Arc<OidcFake>>) -> impl IntoResponse {
    f.fetches.fetch_add(1, Ordering::Relaxed);
    ([(header::CACHE_CONTROL, "public, max-age=21600")], Json(f.jwks.clone()))
}

/// A serving fake; stops when dropped.
pub struct RunningOidcFake {
    fake: Arc<OidcFake>,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl RunningOidcFake {
    pub fn jwks_url(&self) -> String {
        format!("http://{}/oauth2/v3/certs", self.addr)
    }
    /// How often the keys were fetched.
    pub fn fetches(&self) -> usize {
        self.fake.fetches.load(Ordering::Relaxed)
    }
}

impl std::ops::Deref for RunningOidcFake {
    type Target = OidcFake;
    fn deref(&self) -> &OidcFake {
        &self.fake
    }
}
