//! Test support shared by the integration tests and the demo: isolated Postgres databases,
//! the BigQuery emulator, the local Sheets API v4 server, and running the binaries.

pub mod bq;
pub mod bq_fake;
pub mod cloudrun_fake;
pub mod oidc_fake;
pub mod pg;
pub mod proc;
pub mod sheets_server;

/// A router served on a fresh 127.0.0.1 port in a background task, until the sender is dropped
/// (or sent to); in-flight requests finish first. Every local fake API uses it.
pub async fn serve_loopback(
    app: axum::Router,
) -> std::io::Result<(
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok((addr, stop, task))
}
