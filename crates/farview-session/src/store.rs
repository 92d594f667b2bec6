//! Durable session records in an embedded SQLite file (WAL, synchronous=FULL): written before the
//! API answers, kept after a session ends until the retention purges them.

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
             CREATE INDEX IF NOT EXISTS sessions_stopped ON sessions(stopped_at_ms);",
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
        let json = serde_json::to_string(r)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO sessions (id, status, created_at_ms, stopped_at_ms, record) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET status = ?2, stopped_at_ms = ?4, record = ?5
                 WHERE sessions.status NOT IN ('stopped', 'expired', 'error')",
                params![r.id.to_string(), r.status.as_str(), r.created_at_ms as i64, r.stopped_at_ms.map(|v| v as i64), json],
            )?;
            Ok(())
        })
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
        self.with(|c| {
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
        })
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

    /// After a host restart: every session that was live is marked `error` with `reason`.
    pub fn fail_live(&self, reason: &str, now_ms: u64) -> Result<usize, StoreError> {
        let live = self.list(false)?;
        for mut r in live.iter().cloned() {
            r.status = Status::Error;
            r.stopped_at_ms = Some(now_ms);
            r.stop_reason = Some(reason.to_owned());
            self.put(&r)?;
        }
        Ok(live.len())
    }
}
