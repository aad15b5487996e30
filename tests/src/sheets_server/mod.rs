//! A small Google Sheets API v4 server for tests and the demo: no public emulator exists, so
//! this serves spreadsheets from fixtures (CSV, XLSX, JSON) or code with the real response
//! shapes — ragged rows, absent `values`, typed `UNFORMATTED_VALUE`s, serial-number dates,
//! Google's error bodies — and lets a test inject faults (429, 5xx, 403) and count requests.
//!
//! Layout:
//! - [`model`]: [`Spreadsheet`], [`Tab`], [`Cell`], serial-date arithmetic;
//! - `load`: fixture files (`Spreadsheet::from_path`); `generate`: big benchmark sheets;
//! - [`a1`]: A1 range parsing and normalisation;
//! - `render`: `ValueRange` and `GridData` JSON; `http`: the axum routes.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use testkit::sheets_server::{Cell, SheetsServer, Spreadsheet};
//! let server = SheetsServer::new();
//! server.put(Spreadsheet::new("abc").tab("Sheet1", 0, vec![vec![Cell::text("id")]]));
//! let running = server.spawn().await?;
//! let base = running.base_url(); // "http://127.0.0.1:PORT/"
//! running.fail_next("abc", 2, 429); // the next two requests for "abc" get a 429
//! # Ok(()) }
//! ```

pub mod a1;
mod generate;
mod google_error;
mod http;
mod load;
pub mod model;
mod render;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use google_error::GoogleError;

pub use load::default_sheet_id;
pub use model::{
    date_serial, datetime_serial, serial_to_datetime, time_serial, Cell, NumberFormatType, Spreadsheet, Tab,
};

/// The directory of the shipped fixtures (`tests/fixtures/sheets`).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sheets")
}

/// Which requests an injected fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultScope {
    /// Every API request.
    Any,
    /// Requests for this spreadsheet id.
    Spreadsheet(String),
}

impl From<&str> for FaultScope {
    fn from(id: &str) -> Self {
        FaultScope::Spreadsheet(id.to_owned())
    }
}

impl From<String> for FaultScope {
    fn from(id: String) -> Self {
        FaultScope::Spreadsheet(id)
    }
}

impl From<&String> for FaultScope {
    fn from(id: &String) -> Self {
        FaultScope::Spreadsheet(id.clone())
    }
}

/// The API method a request called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /v4/spreadsheets/{id}`.
    SpreadsheetsGet,
    /// `GET /v4/spreadsheets/{id}/values/{range}`.
    ValuesGet,
    /// `GET /v4/spreadsheets/{id}/values:batchGet`.
    ValuesBatchGet,
    /// Anything else (answered 404).
    Other,
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub endpoint: Endpoint,
    pub spreadsheet_id: Option<String>,
    /// The range of `values.get`, or the `ranges` parameters.
    pub ranges: Vec<String>,
    /// Query parameters as sent (decoded).
    pub query: Vec<(String, String)>,
    /// The HTTP status answered.
    pub status: u16,
}

/// Requests answered so far, per endpoint (failed ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub spreadsheets_get: usize,
    pub values_get: usize,
    pub values_batch_get: usize,
    pub other: usize,
}

impl RequestCounts {
    pub fn total(&self) -> usize {
        self.spreadsheets_get + self.values_get + self.values_batch_get + self.other
    }
}

#[derive(Debug)]
struct Fault {
    scope: FaultScope,
    remaining: usize,
    status: u16,
}

#[derive(Debug, Default)]
struct Inner {
    spreadsheets: RwLock<HashMap<String, Arc<Spreadsheet>>>,
    faults: Mutex<Vec<Fault>>,
    forbidden: Mutex<HashSet<String>>,
    log: Mutex<Vec<RecordedRequest>>,
    delay: Mutex<Duration>,
}

/// The server's state and the test's handle on it: cheap to clone, shared with the running
/// server, so a test can add spreadsheets and inject faults while requests are served.
#[derive(Debug, Clone, Default)]
pub struct SheetsServer {
    inner: Arc<Inner>,
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not wedge the server.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SheetsServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A server holding every `.csv`, `.xlsx` and `.json` fixture in `dir` (id = file stem).
    pub fn from_dir(dir: impl AsRef<Path>) -> anyhow::Result<Self> {
        let dir = dir.as_ref();
        let server = SheetsServer::new();
        let mut paths = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list fixture directory {}", dir.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot list fixture directory {}", dir.display()))?;
        paths.sort();
        for path in paths {
            let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            if matches!(ext.as_deref(), Some("csv" | "xlsx" | "json")) {
                server.put(Spreadsheet::from_path(&path)?);
            }
        }
        Ok(server)
    }

    /// Adds or replaces a spreadsheet (by id).
    pub fn put(&self, spreadsheet: Spreadsheet) {
        let mut map = self.inner.spreadsheets.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(spreadsheet.id.clone(), Arc::new(spreadsheet));
    }

    pub fn get(&self, id: &str) -> Option<Arc<Spreadsheet>> {
        let map = self.inner.spreadsheets.read().unwrap_or_else(PoisonError::into_inner);
        map.get(id).cloned()
    }

    /// Removes a spreadsheet; requests for it then get 404.
    pub fn remove(&self, id: &str) -> Option<Arc<Spreadsheet>> {
        let mut map = self.inner.spreadsheets.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(id)
    }

    /// The ids served, sorted.
    pub fn ids(&self) -> Vec<String> {
        let map = self.inner.spreadsheets.read().unwrap_or_else(PoisonError::into_inner);
        let mut ids: Vec<String> = map.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Makes the next `n` API requests in `scope` (a spreadsheet id, or [`FaultScope::Any`])
    /// answer `status` with the body Google sends for it (429 quota exceeded, 500, 502 HTML,
    /// 503, …). Faults queue up: each request consumes one from the first matching entry.
    pub fn fail_next(&self, scope: impl Into<FaultScope>, n: usize, status: u16) {
        if n > 0 {
            lock(&self.inner.faults).push(Fault { scope: scope.into(), remaining: n, status });
        }
    }

    /// Answers every request for `id` with 403 PERMISSION_DENIED (not shared with the caller)
    /// until [`SheetsServer::allow`].
    pub fn forbid(&self, id: &str) {
        lock(&self.inner.forbidden).insert(id.to_owned());
    }

    pub fn allow(&self, id: &str) {
        lock(&self.inner.forbidden).remove(id);
    }

    /// Delays every response by `delay` (zero turns it off), for timeout tests.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.inner.delay) = delay;
    }

    fn delay(&self) -> Duration {
        *lock(&self.inner.delay)
    }

    /// Requests answered so far, per endpoint.
    pub fn request_count(&self) -> RequestCounts {
        let mut counts = RequestCounts::default();
        for r in lock(&self.inner.log).iter() {
            match r.endpoint {
                Endpoint::SpreadsheetsGet => counts.spreadsheets_get += 1,
                Endpoint::ValuesGet => counts.values_get += 1,
                Endpoint::ValuesBatchGet => counts.values_batch_get += 1,
                Endpoint::Other => counts.other += 1,
            }
        }
        counts
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.log).clone()
    }

    /// Forgets the request log (counts start again from zero).
    pub fn reset_requests(&self) {
        lock(&self.inner.log).clear();
    }

    fn record(
        &self,
        endpoint: Endpoint,
        spreadsheet_id: Option<String>,
        ranges: Vec<String>,
        query: Vec<(String, String)>,
        status: u16,
    ) {
        lock(&self.inner.log).push(RecordedRequest { endpoint, spreadsheet_id, ranges, query, status });
    }

    /// Decides the fate of a request for `id`: an injected fault, 403, 404, or the spreadsheet.
    fn admit(&self, id: &str) -> Result<Arc<Spreadsheet>, GoogleError> {
        {
            let mut faults = lock(&self.inner.faults);
            let hit = faults.iter_mut().find(|f| match &f.scope {
                FaultScope::Any => true,
                FaultScope::Spreadsheet(s) => s == id,
            });
            if let Some(fault) = hit {
                fault.remaining -= 1;
                let status = fault.status;
                faults.retain(|f| f.remaining > 0);
                return Err(GoogleError::injected(status));
            }
        }
        if lock(&self.inner.forbidden).contains(id) {
            return Err(GoogleError::permission_denied());
        }
        self.get(id).ok_or_else(GoogleError::not_found)
    }

    /// The axum router serving this state, to mount or serve yourself.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Serves on a fresh port of 127.0.0.1 in a background task until the returned handle is
    /// dropped or shut down.
    pub async fn spawn(self) -> std::io::Result<RunningSheetsServer> {
        let (addr, stop, task) = crate::serve_loopback(self.router()).await?;
        Ok(RunningSheetsServer { server: self, addr, stop: Some(stop), task: Some(task) })
    }
}

/// Serves the Sheets API on `listener` until `shutdown` completes, then finishes in-flight
/// requests.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    state: SheetsServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, state.router()).with_graceful_shutdown(shutdown).await
}

/// A server running in the background (from [`SheetsServer::spawn`]); derefs to its
/// [`SheetsServer`] handle. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningSheetsServer {
    server: SheetsServer,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSheetsServer {
    /// `http://127.0.0.1:PORT/`: the base URL to give the Sheets client.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn server(&self) -> &SheetsServer {
        &self.server
    }

    /// Stops accepting, finishes in-flight requests and waits for the server task.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.context("sheets server task panicked")?.context("sheets server failed")?;
        }
        Ok(())
    }
}

impl std::ops::Deref for RunningSheetsServer {
    type Target = SheetsServer;

    fn deref(&self) -> &SheetsServer {
        &self.server
    }
}

impl Drop for RunningSheetsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests;
