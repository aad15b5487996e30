//! Credentials for Google APIs: Application Default Credentials through yup-oauth2 (a key file
//! named by `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, or the metadata server on
//! Cloud Run), or none at all when an emulator endpoint is configured. Tokens never leave this
//! module except in an `Authorization` header; `describe` names the account, never the secret.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use yup_oauth2::authenticator::{ApplicationDefaultCredentialsTypes, Authenticator};

pub const SHEETS_SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets.readonly";
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

type Auth = Authenticator<HttpsConnector<HttpConnector>>;

/// A cheap-to-clone source of OAuth2 access tokens.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

enum Inner {
    None,
    Yup { auth: Auth, description: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({})", self.describe())
    }
}

impl Credentials {
    /// No authentication (emulators and local fakes).
    pub fn none() -> Credentials {
        Credentials { inner: Arc::new(Inner::None) }
    }

    /// Application Default Credentials, looked up in Google's order: the key file in
    /// `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's application-default file, the metadata server.
    pub async fn application_default() -> Result<Credentials, String> {
        let path = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from).or_else(|| {
            let home = std::env::var_os("HOME")?;
            let p = PathBuf::from(home).join(".config/gcloud/application_default_credentials.json");
            p.exists().then_some(p)
        });
        if let Some(path) = path {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("credentials file {} is not JSON: {e}", path.display()))?;
            return match json.get("type").and_then(|t| t.as_str()) {
                Some("service_account") => {
                    let key: yup_oauth2::ServiceAccountKey = serde_json::from_value(json).map_err(|e| {
                        format!("credentials file {} is not a service-account key: {e}", path.display())
                    })?;
                    let description = format!("service account {} (key file)", key.client_email);
                    let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
                        .build()
                        .await
                        .map_err(|e| format!("cannot use service-account key {}: {e}", path.display()))?;
                    Ok(Credentials { inner: Arc::new(Inner::Yup { auth, description }) })
                }
                Some("authorized_user") => {
                    let secret: yup_oauth2::authorized_user::AuthorizedUserSecret = serde_json::from_value(json)
                        .map_err(|e| {
                            format!("credentials file {} is not an authorized-user file: {e}", path.display())
                        })?;
                    let auth = yup_oauth2::AuthorizedUserAuthenticator::builder(secret)
                        .build()
                        .await
                        .map_err(|e| format!("cannot use user credentials {}: {e}", path.display()))?;
                    Ok(Credentials {
                        inner: Arc::new(Inner::Yup { auth, description: "gcloud user credentials".into() }),
                    })
                }
                other => Err(format!(
                    "credentials file {} has unsupported type {:?} (expected service_account or authorized_user)",
                    path.display(),
                    other.unwrap_or("none")
                )),
            };
        }
        let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts::default();
        let auth = match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts).await {
            ApplicationDefaultCredentialsTypes::InstanceMetadata(b) => b.build().await,
            ApplicationDefaultCredentialsTypes::ServiceAccount(b) => b.build().await,
        }
        .map_err(|e| format!("no Application Default Credentials: {e}"))?;
        Ok(Credentials {
            inner: Arc::new(Inner::Yup { auth, description: "metadata server (attached service account)".into() }),
        })
    }

    /// What is in use, for `jobctl test-connection` and logs: the account, never the secret.
    pub fn describe(&self) -> &str {
        match &*self.inner {
            Inner::None => "none (emulator endpoint)",
            Inner::Yup { description, .. } => description,
        }
    }

    /// An access token for `scopes`, or None when authentication is off.
    pub async fn token(&self, scopes: &[&str]) -> Result<Option<String>, String> {
        match &*self.inner {
            Inner::None => Ok(None),
            Inner::Yup { auth, .. } => {
                let t = auth.token(scopes).await.map_err(|e| format!("cannot get an access token: {e}"))?;
                t.token()
                    .map(|s| Some(s.to_string()))
                    .ok_or_else(|| "the token endpoint returned no access token".into())
            }
        }
    }
}

type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>> + Send + 'a>>;

impl google_sheets4::common::GetToken for Credentials {
    fn get_token<'a>(&'a self, scopes: &'a [&str]) -> TokenFuture<'a> {
        Box::pin(async move { self.token(scopes).await.map_err(Into::into) })
    }
}

/// Adapter for gcp-bigquery-client, which asks for a token without scopes.
#[derive(Clone)]
pub(crate) struct BigQueryAuth(pub Credentials);

#[async_trait::async_trait]
impl gcp_bigquery_client::auth::Authenticator for BigQueryAuth {
    async fn access_token(&self) -> Result<String, gcp_bigquery_client::error::BQError> {
        match self.0.token(&[BIGQUERY_SCOPE]).await {
            Ok(t) => Ok(t.unwrap_or_default()),
            Err(_) => Err(gcp_bigquery_client::error::BQError::NoToken),
        }
    }
}
