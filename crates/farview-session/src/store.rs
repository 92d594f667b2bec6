//! Durable session records in an embedded SQLite file (WAL, synchronous=FULL): written before the
//! API answers, kept after a session ends until the retention purges them; and the host's
//! heartbeat, the last time it was known alive, with its live sessions' counters as of then.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::session::{SessionRecord, Status};

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("session store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored record could not be (de)serialized.
    #[error("session store record: {0}")]
    Record(#[from] serde_json::Error),
    /// The store's lock was poisoned by a panic elsewhere.
    #[error("session store lock poisoned")]
    Poisoned,
}

/// The record store. Cheap operations under one connection and a mutex: the API's request rates
/// are far below what SQLite serves from one writer.
#[derive(Debug)]
pub struct RecordStore {
    conn: Mutex<Connection>,
}

impl RecordStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sessions (
                 id TEXT PRIMARY KEY,
                 status TEXT NOT NULL,
                 created_at_ms INTEGER NOT NULL,
                 stopped_at_ms INTEGER,
                 record TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS sessions_status ON sessions(status);
             CREATE INDEX IF NOT EXISTS sessions_stopped ON sessions(stopped_at_ms);
             CREATE TABLE IF NOT EXISTS host (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 alive_at_ms INTEGER NOT NULL
             );",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&conn)
    }

    /// Inserts or replaces a record.
    ///
    /// A record that reached a final status (stopped, expired, error) is never overwritten: a
    /// late write from a racing path (a session finishing its start-up, a lease change) cannot
    /// bring an ended session back.
    pub fn put(&self, r: &SessionRecord) -> Result<(), StoreError> {
        self.with(|c| put(c, r))
    }

    /// Number of retained records per status name.
    pub fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT status, COUNT(*) FROM sessions GROUP BY status")?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// A record by id.
    pub fn get(&self, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
        self.with(|c| {
            let json: Option<String> = c
                .query_row(
                    "SELECT record FROM sessions WHERE id = ?1",
                    params![id.to_string()],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
        })
    }

    /// Records, oldest first: live ones only, or all.
    pub fn list(&self, include_ended: bool) -> Result<Vec<SessionRecord>, StoreError> {
        self.with(|c| list(c, include_ended))
    }

    /// Deletes records of sessions that ended before `cutoff_ms`; returns how many.
    pub fn purge_ended_before(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM sessions WHERE stopped_at_ms IS NOT NULL AND stopped_at_ms < ?1",
                params![cutoff_ms as i64],
            )?)
        })
    }

    /// Records, in one transaction, that the host is alive at `alive_at_ms` and the counters of
    /// the `live` sessions. Only the counters of those records are written, raised and never
    /// lowered, and only while the stored record is still live: a checkpoint that races a status
    /// change (an admission, a stop) cannot undo it.
    ///
    /// The host calls it every few seconds, so a host killed without warning loses at most that
    /// much of its sessions' counters, and [`RecordStore::fail_live`] knows when it stopped.
    pub fn checkpoint<'a>(
        &self,
        live: impl IntoIterator<Item = &'a SessionRecord>,
        alive_at_ms: u64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE sessions SET record = json_set(record,
                         '$.framesSent', MAX(COALESCE(json_extract(record, '$.framesSent'), 0), ?2),
                         '$.modelsLoaded', MAX(COALESCE(json_extract(record, '$.modelsLoaded'), 0), ?3))
                     WHERE id = ?1 AND status IN ('starting', 'ready', 'connected')",
                )?;
                for r in live {
                    stmt.execute(params![
                        r.id.to_string(),
                        r.frames_sent as i64,
                        r.models_loaded as i64
                    ])?;
                }
            }
            tx.execute(
                "INSERT INTO host (id, alive_at_ms) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET alive_at_ms = ?1",
                params![alive_at_ms as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The last time a host recorded that it was alive ([`RecordStore::checkpoint`]), if ever.
    pub fn last_alive_ms(&self) -> Result<Option<u64>, StoreError> {
        self.with(last_alive)
    }

    /// After a host restart: every session that was live is marked `error` with `reason`, as
    /// having stopped when the host was last known alive (the last [`RecordStore::checkpoint`],
    /// never before the session's own creation or readiness; `now_ms` if no host ever recorded
    /// one). The counters are kept as the last checkpoint wrote them. Returns how many.
    pub fn fail_live(&self, reason: &str, now_ms: u64) -> Result<usize, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let alive = last_alive(&tx)?.unwrap_or(now_ms);
            let live = list(&tx, false)?;
            for mut r in live.iter().cloned() {
                r.status = Status::Error;
                r.stopped_at_ms = Some(
                    alive
                        .max(r.created_at_ms)
                        .max(r.ready_at_ms.unwrap_or_default()),
                );
                r.stop_reason = Some(reason.to_owned());
                put(&tx, &r)?;
            }
            tx.commit()?;
            Ok(live.len())
        })
    }
}

fn put(c: &Connection, r: &SessionRecord) -> Result<(), StoreError> {
    let json = serde_json::to_string(r)?;
    c.execute(
        "INSERT INTO sessions (id, status, created_at_ms, stopped_at_ms, record) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(id) DO UPDATE SET status = ?2, stopped_at_ms = ?4, record = ?5
         WHERE sessions.status NOT IN ('stopped', 'expired', 'error')",
        params![r.id.to_string(), r.status.as_str(), r.created_at_ms as i64, r.stopped_at_ms.map(|v| v as i64), json],
    )?;
    Ok(())
}

fn list(c: &Connection, include_ended: bool) -> Result<Vec<SessionRecord>, StoreError> {
    let sql = if include_ended {
        "SELECT record FROM sessions ORDER BY created_at_ms, id"
    } else {
        "SELECT record FROM sessions WHERE status IN ('starting', 'ready', 'connected') ORDER BY created_at_ms, id"
    };
    let mut stmt = c.prepare(sql)?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    let mut out = Vec::new();
    for json in rows {
        out.push(serde_json::from_str(&json?)?);
    }
    Ok(out)
}

fn last_alive(c: &Connection) -> Result<Option<u64>, StoreError> {
    let ms: Option<i64> = c
        .query_row("SELECT alive_at_ms FROM host WHERE id = 1", [], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(ms.map(|v| v as u64))
}
