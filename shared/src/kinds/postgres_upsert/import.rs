//! The import itself: COPY the prepared rows into a temporary staging table, then one
//! `INSERT … SELECT … ON CONFLICT (keys) DO UPDATE … WHERE (changed)` that rewrites only rows
//! whose values differ and counts inserts and updates (`xmax = 0`).
//!
//! `atomic`: one transaction for everything; a refused row, a duplicated key, a constraint
//! violation, a timeout or a dropped connection (SIGTERM, kill -9) leaves the table as it was.
//! `batched`: one transaction per batch; a batch that fails is split in halves inside
//! savepoints until the failing rows are isolated and recorded, the others commit.
//! Neither takes a table lock beyond the ROW EXCLUSIVE every INSERT takes; rows are written in
//! key order so concurrent imports into one table take row locks in the same order.

use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::{Map, Value};
use tokio_postgres::Client;

use super::results::RejectLog;
use super::source::{Chunk, Reject, Rows, Span};
use super::target::{key_text, pg_msg, sqlstate, Statements, STAGE};
use super::values::split_copy_line;
use crate::error::{JobError, JobResult};
use crate::kinds::ProgressFn;
use crate::store::runs::RunRef;
use crate::store::Store;

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Non-blank source rows read.
    pub read: u64,
    /// Fully empty source rows skipped.
    pub blank: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Transactions committed.
    pub batches: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.read += o.read;
        self.blank += o.blank;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.batches += o.batches;
    }
}

/// Attempts at a transaction that hit a deadlock or serialization failure.
const TRIES: u32 = 5;
/// Rejected rows recorded in `import_results` per run, at most.
pub const RECORD_CAP: u64 = 1_000_000;
/// Rejected rows recorded for a failed atomic run (they explain the rollback).
pub const RECORD_CAP_ATOMIC: u64 = 1_000;

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(sqlstate(e), Some("40001" | "40P01"))
}

/// Errors caused by the data of some row (bad value, constraint, trigger) rather than by the
/// database or the connection: in batched mode these are isolated to their rows.
fn row_caused(e: &tokio_postgres::Error) -> bool {
    sqlstate(e).is_some_and(|c| ["22", "23", "21", "54", "P0"].iter().any(|p| c.starts_with(p)))
}

/// The message with the server's context (`COPY _stb_stage, line 3, column qty: "abc"`).
fn full_msg(e: &tokio_postgres::Error) -> String {
    let mut m = pg_msg(e);
    if let Some(w) = e.as_db_error().and_then(|d| d.where_()) {
        m.push_str(&format!(" [{}]", w.lines().next().unwrap_or(w)));
    }
    m
}

/// Says in an atomic-mode error that the table was left as it was.
fn nothing_imported(e: JobError) -> JobError {
    JobError { message: format!("{}; nothing was imported (atomic mode)", e.message), ..e }
}

/// Everything the import needs from the unit.
pub struct Engine<'a> {
    pub client: &'a Client,
    pub st: &'a Statements,
    pub keys: &'a [String],
    /// (key column, position in a COPY line).
    pub key_pos: Vec<(String, usize)>,
    pub table: &'a str,
    pub timeout_secs: u64,
    pub progress: ProgressFn,
    pub total: Option<u64>,
    pub ledger: Option<(&'a Store, RunRef)>,
}

impl Engine<'_> {
    fn db_error(&self, e: &tokio_postgres::Error, what: &str) -> JobError {
        match sqlstate(e) {
            Some("57014") => JobError::destination(format!(
                "{what}: timed out after {}s (spec.statement_timeout_seconds / IMPORT_TIMEOUT_SECONDS) or cancelled",
                self.timeout_secs
            )),
            _ if row_caused(e) => JobError::validation(format!("{what}: {}", full_msg(e))),
            _ => JobError::destination(format!("{what}: {}", full_msg(e))),
        }
    }

    async fn exec(&self, sql: &str, what: &str) -> JobResult<()> {
        self.client.batch_execute(sql).await.map_err(|e| self.db_error(&e, what))
    }

    fn key_json(&self, vals: &[Option<String>]) -> Value {
        let mut m = Map::new();
        for (k, v) in self.keys.iter().zip(vals) {
            m.insert(k.clone(), v.clone().map_or(Value::Null, Value::String));
        }
        Value::Object(m)
    }

    /// One transaction: stage everything, check duplicate keys, upsert, commit.
    pub async fn atomic(&self, rows: &mut Rows, log: &mut RejectLog) -> JobResult<Counts> {
        let result = self.atomic_inner(rows, log).await;
        if result.is_err() {
            // Best effort: the connection closing would roll back just the same.
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        result
    }

    async fn atomic_inner(&self, rows: &mut Rows, log: &mut RejectLog) -> JobResult<Counts> {
        self.exec("BEGIN", "starting the import transaction").await?;
        self.exec(&self.st.create_stage_atomic, "creating the staging table").await?;
        let sink = self
            .client
            .copy_in::<_, Bytes>(&self.st.copy)
            .await
            .map_err(|e| self.db_error(&e, "starting COPY into the staging table"))?;
        let mut sink = std::pin::pin!(sink);
        let mut counts = Counts::default();
        let mut refused = false;
        while let Some(chunk) = rows.next().await.map_err(nothing_imported)? {
            counts.read += chunk.read;
            counts.blank += chunk.blank;
            if !chunk.rejects.is_empty() {
                refused = true;
                log.extend(chunk.rejects);
            }
            if !refused && !chunk.buf.is_empty() {
                sink.send(chunk.buf.freeze()).await.map_err(|e| nothing_imported(self.db_error(&e, "staging rows")))?;
            }
            (self.progress)(counts.read, self.total);
        }
        if refused {
            return Err(nothing_imported(JobError::validation(format!(
                "{} of {} source rows cannot be imported (first: {})",
                log.total,
                counts.read,
                log.messages().first().cloned().unwrap_or_default()
            )))
            .with_details(log.messages()));
        }
        let staged = sink.as_mut().finish().await.map_err(|e| nothing_imported(self.db_error(&e, "staging rows")))?;
        tracing::info!(rows = staged, "rows staged");

        let dups = self
            .client
            .query(&self.st.source_duplicates, &[])
            .await
            .map_err(|e| self.db_error(&e, "checking the source for duplicate keys"))?;
        if let Some(first) = dups.first() {
            let groups: i64 = first.get(2);
            let mut lines = Vec::new();
            for r in &dups {
                let key: Vec<Option<String>> = r.get(0);
                let at: Vec<i64> = r.get(1);
                let shown = key_text(self.keys, &key);
                lines.push(format!("{shown} at rows {}", at.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")));
                for row in &at[1..] {
                    log.push(Reject {
                        row: *row as u64,
                        cell: None,
                        key: Some(self.key_json(&key)),
                        reason: format!("duplicate key {shown} (first at row {})", at[0]),
                    });
                }
            }
            return Err(nothing_imported(JobError::validation(format!(
                "the source has {groups} duplicated key(s), e.g. {}",
                lines[0]
            )))
            .with_details(lines));
        }

        let (inserted, updated) = self.upsert_with_retry().await.map_err(nothing_imported)?;
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| nothing_imported(self.db_error(&e, "committing the import")))?;
        counts.inserted = inserted;
        counts.updated = updated;
        counts.unchanged = staged - inserted - updated;
        counts.batches = 1;
        (self.progress)(counts.read, self.total);
        Ok(counts)
    }

    async fn upsert_with_retry(&self) -> JobResult<(u64, u64)> {
        for attempt in 1..=TRIES {
            self.exec("SAVEPOINT stb_upsert", "upserting").await?;
            match self.client.query_one(&self.st.upsert, &[]).await {
                Ok(row) => {
                    let (i, u): (i64, i64) = (row.get(0), row.get(1));
                    return Ok((i as u64, u as u64));
                }
                Err(e) if retryable(&e) && attempt < TRIES => {
                    tracing::warn!(attempt, error = %pg_msg(&e), "upsert hit a deadlock or serialization failure; retrying");
                    self.exec("ROLLBACK TO SAVEPOINT stb_upsert", "upserting").await?;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt) + fastrand::u64(0..100))).await;
                }
                Err(e) => return Err(self.db_error(&e, &format!("upserting into {}", self.table))),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// One transaction per batch of `batch_size` source rows.
    pub async fn batched(&self, rows: &mut Rows, log: &mut RejectLog, batch_size: u64) -> JobResult<Counts> {
        let mut counts = Counts::default();
        match self.batched_inner(rows, log, batch_size, &mut counts).await {
            Ok(()) => Ok(counts),
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                log.flush(self.ledger, RECORD_CAP).await;
                Err(JobError {
                    message: format!(
                        "{}; committed before the failure: {} batches, inserted {}, updated {}, unchanged {}, rejected {}",
                        e.message, counts.batches, counts.inserted, counts.updated, counts.unchanged, log.total
                    ),
                    ..e
                })
            }
        }
    }

    async fn batched_inner(
        &self,
        rows: &mut Rows,
        log: &mut RejectLog,
        batch_size: u64,
        counts: &mut Counts,
    ) -> JobResult<()> {
        self.exec(&self.st.create_stage_batched, "creating the staging table").await?;
        self.exec(&self.st.create_seen, "creating the key table").await?;
        let mut pending = Chunk::default();
        loop {
            let next = rows.next().await?;
            let done = next.is_none();
            if let Some(c) = next {
                pending.append(c);
            }
            let size = (pending.spans.len() + pending.rejects.len()) as u64;
            if size >= batch_size || (done && (pending.read > 0 || pending.blank > 0)) {
                let batch = std::mem::take(&mut pending);
                counts.read += batch.read;
                counts.blank += batch.blank;
                log.extend(batch.rejects);
                if !batch.spans.is_empty() {
                    let (c, rejects) = self.batch(batch.buf.freeze(), &batch.spans).await?;
                    counts.add(c);
                    log.extend(rejects);
                }
                log.flush(self.ledger, RECORD_CAP).await;
                (self.progress)(counts.read, self.total);
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Commits one batch, isolating failing rows; retried whole on deadlock.
    async fn batch(&self, bytes: Bytes, spans: &[Span]) -> JobResult<(Counts, Vec<Reject>)> {
        for attempt in 1..=TRIES {
            self.exec("BEGIN", "starting a batch").await?;
            let res = match self.isolate(&bytes, spans).await {
                Ok(r) => self.client.batch_execute("COMMIT").await.map(|()| r),
                Err(e) => Err(e),
            };
            match res {
                Ok((mut c, rejects)) => {
                    c.batches = 1;
                    return Ok((c, rejects));
                }
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    if retryable(&e) && attempt < TRIES {
                        tracing::warn!(attempt, error = %pg_msg(&e), "batch hit a deadlock or serialization failure; retrying");
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt) + fastrand::u64(0..100)))
                            .await;
                        continue;
                    }
                    return Err(self.db_error(
                        &e,
                        &format!("importing rows {}-{} into {}", spans[0].row, spans[spans.len() - 1].row, self.table),
                    ));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Applies `spans` inside savepoints, halving failing ranges down to single rows.
    async fn isolate(&self, bytes: &Bytes, spans: &[Span]) -> Result<(Counts, Vec<Reject>), tokio_postgres::Error> {
        let mut total = Counts::default();
        let mut rejects = Vec::new();
        let mut stack = vec![(0usize, spans.len())];
        while let Some((a, b)) = stack.pop() {
            self.client.batch_execute("SAVEPOINT stb_part").await?;
            match self.attempt(bytes.slice(spans[a].start..spans[b - 1].end)).await {
                Ok((c, dups)) => {
                    self.client.batch_execute("RELEASE SAVEPOINT stb_part").await?;
                    total.add(c);
                    rejects.extend(dups);
                }
                Err(e) if row_caused(&e) => {
                    self.client.batch_execute("ROLLBACK TO SAVEPOINT stb_part; RELEASE SAVEPOINT stb_part").await?;
                    if b - a == 1 {
                        let s = spans[a];
                        let fields = split_copy_line(&bytes[s.start..s.end]);
                        let mut key = Map::new();
                        for (k, pos) in &self.key_pos {
                            key.insert(
                                k.clone(),
                                fields.get(*pos).cloned().flatten().map_or(Value::Null, Value::String),
                            );
                        }
                        rejects.push(Reject {
                            row: s.row,
                            cell: None,
                            key: Some(Value::Object(key)),
                            reason: full_msg(&e),
                        });
                    } else {
                        let m = (a + b) / 2;
                        stack.push((m, b));
                        stack.push((a, m));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        rejects.sort_by_key(|r| r.row);
        Ok((total, rejects))
    }

    /// Stages `data`, drops keys already seen (this batch or earlier), upserts the rest.
    async fn attempt(&self, data: Bytes) -> Result<(Counts, Vec<Reject>), tokio_postgres::Error> {
        let c = self.client;
        let sink = c.copy_in::<_, Bytes>(&self.st.copy).await?;
        let mut sink = std::pin::pin!(sink);
        sink.send(data).await?;
        let staged = sink.as_mut().finish().await?;
        let dups = c.query(&self.st.batch_duplicates, &[]).await?;
        let mut rejects = Vec::new();
        let mut ids: Vec<i64> = Vec::new();
        for r in &dups {
            let (row, first, key): (i64, i64, Vec<Option<String>>) = (r.get(0), r.get(1), r.get(2));
            rejects.push(Reject {
                row: row as u64,
                cell: None,
                key: Some(self.key_json(&key)),
                reason: format!("duplicate key {} in the source (first at row {first})", key_text(self.keys, &key)),
            });
            ids.push(row);
        }
        if !ids.is_empty() {
            c.execute(&self.st.delete_staged, &[&ids]).await?;
        }
        c.execute(&self.st.remember_keys, &[]).await?;
        let row = c.query_one(&self.st.upsert, &[]).await?;
        c.batch_execute(&format!("TRUNCATE {STAGE}")).await?;
        let (ins, upd): (i64, i64) = (row.get(0), row.get(1));
        let applied = staged - ids.len() as u64;
        let counts = Counts {
            inserted: ins as u64,
            updated: upd as u64,
            unchanged: applied - ins as u64 - upd as u64,
            ..Counts::default()
        };
        Ok((counts, rejects))
    }
}
