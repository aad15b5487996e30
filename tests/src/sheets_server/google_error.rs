//! Error responses exactly as Google's APIs send them (`{"error":{"code","message","status"}}`,
//! `application/json; charset=UTF-8`), including the 429 quota body with its `details` and the
//! HTML page Google's front end answers a 502 with.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub(crate) const JSON_CONTENT_TYPE: &str = "application/json; charset=UTF-8";

/// An error response of the Sheets API.
#[derive(Debug, Clone)]
pub(crate) struct GoogleError {
    code: u16,
    body: ErrorBody,
}

#[derive(Debug, Clone)]
enum ErrorBody {
    Json(Value),
    Html(&'static str),
}

/// The canonical `status` string of an HTTP code, as in google.rpc.Code.
fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

const BAD_GATEWAY_HTML: &str = "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  \
<title>Error 502 (Server Error)!!1</title>\n  <p><b>502.</b> <ins>That\u{2019}s an error.</ins>\n  \
<p>The server encountered a temporary error and could not complete your request.<p>Please try \
again in 30 seconds.  <ins>That\u{2019}s all we know.</ins>\n";

impl GoogleError {
    /// `{"error":{"code":…,"message":…,"status":…}}`.
    pub(crate) fn new(code: u16, message: impl Into<String>) -> Self {
        GoogleError {
            code,
            body: ErrorBody::Json(json!({
                "error": { "code": code, "message": message.into(), "status": status_name(code) }
            })),
        }
    }

    /// 400 INVALID_ARGUMENT.
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 404 for an unknown spreadsheet.
    pub(crate) fn not_found() -> Self {
        Self::new(404, "Requested entity was not found.")
    }

    /// 403 for a spreadsheet not shared with the caller.
    pub(crate) fn permission_denied() -> Self {
        Self::new(403, "The caller does not have permission")
    }

    /// 400 for a bad query parameter value, e.g. `valueRenderOption=FOO`.
    pub(crate) fn invalid_value(field: &str, type_name: &str, value: &str) -> Self {
        Self::invalid_argument(format!("Invalid value at '{field}' ({type_name}), \"{value}\""))
    }

    /// The response Google sends for `code` when it fails a request on its own
    /// (quota, outages, auth): what `fail_next` injects.
    pub(crate) fn injected(code: u16) -> Self {
        match code {
            400 => Self::new(400, "Request contains an invalid argument."),
            401 => Self::new(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project.",
            ),
            403 => Self::permission_denied(),
            404 => Self::not_found(),
            429 => Self::quota_exceeded(),
            500 => Self::new(500, "Internal error encountered."),
            502 => GoogleError { code, body: ErrorBody::Html(BAD_GATEWAY_HTML) },
            503 => Self::new(503, "The service is currently unavailable."),
            504 => Self::new(504, "Deadline expired before operation could complete."),
            other => {
                let reason = StatusCode::from_u16(other).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
                Self::new(other, reason)
            }
        }
    }

    /// 429 RESOURCE_EXHAUSTED with the `ErrorInfo` and `Help` details of the read quota.
    fn quota_exceeded() -> Self {
        GoogleError {
            code: 429,
            body: ErrorBody::Json(json!({
                "error": {
                    "code": 429,
                    "message": "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per user' of service 'sheets.googleapis.com' for consumer 'project_number:000000000000'.",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "RATE_LIMIT_EXCEEDED",
                            "domain": "googleapis.com",
                            "metadata": {
                                "quota_metric": "sheets.googleapis.com/read_requests",
                                "quota_limit": "ReadRequestsPerMinutePerUser",
                                "quota_limit_value": "60",
                                "quota_location": "global",
                                "service": "sheets.googleapis.com",
                                "consumer": "projects/000000000000"
                            }
                        },
                        {
                            "@type": "type.googleapis.com/google.rpc.Help",
                            "links": [{
                                "description": "Request a higher quota limit.",
                                "url": "https://cloud.google.com/docs/quotas/help/request_increase"
                            }]
                        }
                    ]
                }
            })),
        }
    }

    pub(crate) fn code(&self) -> u16 {
        self.code
    }
}

/// A JSON body with Google's content type.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    response
}

impl IntoResponse for GoogleError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match self.body {
            ErrorBody::Json(value) => {
                let body = serde_json::to_vec(&value).expect("JSON values serialize");
                json_response(status, body)
            }
            ErrorBody::Html(page) => {
                let mut response = (status, page).into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=UTF-8"));
                response
            }
        }
    }
}
