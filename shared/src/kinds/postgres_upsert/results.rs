//! The rejected rows of an import: counted, sampled for the report, logged, and recorded in the
//! control plane's `import_results` (run id, attempt, row number, cell, key, reason) when the run
//! has a ledger row, so `jobctl runs show` and SQL can list them.

use serde_json::Value;

use super::source::Reject;
use crate::store::runs::RunRef;
use crate::store::{import_results, Store};

/// Rejects shown in the report and the ledger's `details`.
const SAMPLE: usize = 20;
/// Rejects logged one line each; the rest are only counted (and recorded).
const LOGGED: u64 = 100;

/// Everything rejected so far in one run.
#[derive(Default)]
pub struct RejectLog {
    pub total: u64,
    pub sample: Vec<Reject>,
    pending: Vec<Reject>,
    pub recorded: u64,
    /// Set once recording failed: rejects are then only logged.
    broken: bool,
}

impl RejectLog {
    pub fn push(&mut self, r: Reject) {
        self.total += 1;
        if self.total <= LOGGED {
            let key = r.key.as_ref().map(Value::to_string).unwrap_or_default();
            tracing::warn!(row = r.row, cell = r.cell.as_deref(), key = %key, reason = %r.reason, "row rejected");
        } else if self.total == LOGGED + 1 {
            tracing::warn!(
                "more rows rejected; further rejections are counted (and recorded in import_results) but not logged"
            );
        }
        if self.sample.len() < SAMPLE {
            self.sample.push(r.clone());
        }
        self.pending.push(r);
    }

    pub fn extend(&mut self, rs: impl IntoIterator<Item = Reject>) {
        for r in rs {
            self.push(r);
        }
    }

    /// Messages of the first rejects, for an error's details.
    pub fn messages(&self) -> Vec<String> {
        self.sample.iter().map(Reject::describe).collect()
    }

    pub fn sample_json(&self) -> Value {
        Value::Array(self.sample.iter().map(Reject::to_json).collect())
    }

    /// Writes the pending rejects to `import_results` (when there is a ledger), at most `cap`
    /// in total for this run. A failure is logged, not fatal: the rows were already committed or
    /// rolled back, and each reject up to the log cap is in the job's log.
    pub async fn flush(&mut self, ledger: Option<(&Store, RunRef)>, cap: u64) {
        let pending = std::mem::take(&mut self.pending);
        let Some((store, run)) = ledger else { return };
        if self.broken || pending.is_empty() {
            return;
        }
        let room = cap.saturating_sub(self.recorded) as usize;
        let batch = &pending[..pending.len().min(room)];
        if batch.is_empty() {
            return;
        }
        for part in batch.chunks(5_000) {
            let rows: Vec<import_results::RejectedRow> = part
                .iter()
                .map(|r| import_results::RejectedRow {
                    row_number: r.row as i64,
                    cell_ref: r.cell.clone(),
                    key: r.key.clone(),
                    reason: r.reason.clone(),
                })
                .collect();
            match import_results::insert(store, run, &rows).await {
                Ok(n) => self.recorded += n,
                Err(e) => {
                    self.broken = true;
                    tracing::error!(error = %e.db_message(), "cannot record rejected rows in import_results");
                    return;
                }
            }
        }
    }
}
