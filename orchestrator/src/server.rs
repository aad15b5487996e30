//! `orchestrator serve`: the HTTP service Cloud Scheduler triggers.
//!
//! - `POST /run` — authenticated (OIDC or static bearer token; otherwise 401/403 and no database
//!   write). Starts a tick, or, for a replayed request (same `X-CloudScheduler-JobName` and
//!   `X-CloudScheduler-ScheduleTime`), starts nothing and answers with the original tick's result.
//!   Answers within `--respond-within`: 200 with the tick report when it finished, else 202 while
//!   it goes on (its result is recorded and returned to replays).
//! - `GET /healthz` — 200 while serving, 503 while shutting down.
//! - `GET /metrics` — Prometheus text format.
//!
//! SIGTERM: stop claiming and accepting ticks, let in-flight local jobs finish within the grace
//! period, then stop them (recorded `cancelled`), record the ticks, exit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sheettobigquery::store::claims::TickBegin;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::oidc::Authenticator;
use crate::tick::{Orchestrator, TickRequest, Trigger};

/// Shared by the handlers.
pub struct AppState {
    pub orch: Arc<Orchestrator>,
    pub auth: Authenticator,
    pub respond_within: Duration,
    /// Held by every running tick; all dropped = all ticks done.
    pub ticks_done: mpsc::Sender<()>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/run", post(run))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

async fn run(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let principal = match s.auth.check(header_str(&headers, "authorization")).await {
        Ok(p) => p,
        Err(e) => {
            let code = e.status();
            s.orch.metrics().request_rejected(code);
            tracing::warn!(decision = "rejected", status = code, reason = %e, "POST /run refused");
            let mut r = error(StatusCode::from_u16(code).unwrap_or(StatusCode::UNAUTHORIZED), e.to_string());
            if code == 401 {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return r;
        }
    };
    if s.orch.is_stopping() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down; not starting a tick");
    }
    let schedule_time = match header_str(&headers, "x-cloudscheduler-scheduletime") {
        Some(t) => match DateTime::parse_from_rfc3339(t) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("X-CloudScheduler-ScheduleTime {t:?} is not an RFC 3339 time"),
                )
            }
        },
        None => None,
    };
    let scheduler_job = header_str(&headers, "x-cloudscheduler-jobname").map(str::to_string);
    let from_scheduler = schedule_time.is_some() || header_str(&headers, "x-cloudscheduler").is_some();
    let req = TickRequest {
        trigger: if from_scheduler { Trigger::Scheduler } else { Trigger::Manual },
        scheduler_job,
        schedule_time,
    };
    let tick_id = match s.orch.begin_tick(&req).await {
        Ok(TickBegin::Started(id)) => id,
        Ok(TickBegin::Replay(row)) => {
            tracing::info!(decision = "replay", tick_id = row.id, schedule_time = ?row.schedule_time, status = %row.status,
                principal = %principal, "replayed scheduler request; starting nothing");
            let mut r = if row.status == "running" {
                let status = if row.lease_expired { "abandoned" } else { "running" };
                (StatusCode::ACCEPTED, Json(json!({"tick_id": row.id, "status": status, "replay": true})))
                    .into_response()
            } else {
                let mut body = row.result.unwrap_or_else(|| json!({"tick_id": row.id}));
                body["replay"] = Value::Bool(true);
                let code = if row.status == "failed" { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
                (code, Json(body)).into_response()
            };
            r.headers_mut().insert("x-orchestrator-replay", HeaderValue::from_static("true"));
            return r;
        }
        Err(e) => {
            tracing::error!(error = %e.db_message(), "cannot record the tick");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.db_message());
        }
    };
    tracing::info!(tick_id, trigger = req.trigger.as_str(), schedule_time = ?req.schedule_time, principal = %principal, "tick started");
    // The tick runs on its own task: a client that hangs up does not stop it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let orch = s.orch.clone();
    let done = s.ticks_done.clone();
    tokio::spawn(async move {
        let report = orch.run_tick(tick_id, &req).await;
        let _ = tx.send(report);
        drop(done);
    });
    tokio::select! {
        r = tokio::time::timeout(s.respond_within, rx) => match r {
            Ok(Ok(report)) => {
                let code = if report.error.is_some() { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
                let mut body = serde_json::to_value(&report).unwrap_or_else(|_| json!({}));
                body["replay"] = Value::Bool(false);
                (code, Json(body)).into_response()
            }
            _ => (StatusCode::ACCEPTED, Json(json!({"tick_id": tick_id, "status": "running", "replay": false}))).into_response(),
        },
        _ = s.orch.stopping() => {
            (StatusCode::ACCEPTED, Json(json!({"tick_id": tick_id, "status": "running", "replay": false}))).into_response()
        }
    }
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    let body = json!({
        "status": if s.orch.is_stopping() { "stopping" } else { "ok" },
        "owner": s.orch.owner(),
        "inflight": s.orch.metrics().inflight(),
    });
    let code = if s.orch.is_stopping() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let mut r = s.orch.metrics().render().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// Serves until `shutdown` resolves, then drains: in-flight ticks get `grace` to finish before
/// their local executions are stopped and recorded.
pub async fn serve(
    listener: TcpListener,
    orch: Arc<Orchestrator>,
    auth: Authenticator,
    respond_within: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let state = Arc::new(AppState { orch: orch.clone(), auth, respond_within, ticks_done: done_tx });
    let orch2 = orch.clone();
    let signal = async move {
        shutdown.await;
        tracing::warn!(grace = %crate::settings::fmt_duration(grace), "shutting down: no new ticks or claims; in-flight runs get the grace period");
        orch2.stop_claiming();
    };
    axum::serve(listener, router(state)).with_graceful_shutdown(signal).await?;
    // The router (and its sender) is gone; each running tick still holds one.
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        tracing::warn!(inflight = orch.metrics().inflight(), "grace period over; stopping in-flight runs");
        orch.force_stop();
        let _ = done_rx.recv().await;
    }
    tracing::info!("stopped");
    Ok(())
}
