//! Reading typed fields out of a JSON object while collecting `field: problem` messages — shared
//! by the config validator and the validators of the kinds' `spec` settings, so every config
//! error reads the same way.

use std::fmt;

use serde_json::{Map, Value};

/// A validator that collects problems; the provided methods read one field each.
pub(crate) trait Fields {
    fn problem(&mut self, field: &str, msg: impl fmt::Display);

    /// A required, non-blank string (trimmed).
    fn req_str_at(&mut self, m: &Map<String, Value>, key: &str, field: &str) -> Option<String> {
        match m.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::String(_)) => {
                self.problem(field, "must not be empty");
                None
            }
            None | Some(Value::Null) => {
                self.problem(field, "is required");
                None
            }
            Some(_) => {
                self.problem(field, "must be a string");
                None
            }
        }
    }

    /// An optional string (trimmed; blank is absent).
    fn opt_str_at(&mut self, m: &Map<String, Value>, key: &str, field: &str) -> Option<String> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => {
                self.problem(field, "must be a string");
                None
            }
        }
    }

    /// An optional boolean (absent is `default`).
    fn opt_bool_at(&mut self, m: &Map<String, Value>, key: &str, field: &str, default: bool) -> bool {
        match m.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.problem(field, "must be true or false");
                default
            }
        }
    }
}
