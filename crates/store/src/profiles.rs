//! Learnt profiles in the store's `profiles` table: one row per (client, server, port,
//! slot length, slot) with the statistics as JSON, and one row of facts about the whole
//! set (slot = -1, empty client: the cycle and the observed weight per slot). The
//! store does not interpret the statistics; it keeps them, replaces them as one
//! transaction, and refuses to mix profiles learnt with another slot length.

use std::net::IpAddr;

use rusqlite::params;

use crate::addr::{addr_from_blob, addr_to_blob};
use crate::{Store, StoreError};

/// One stored profile.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRow {
    /// The client.
    pub client: IpAddr,
    /// The server (pair profiles).
    pub server: Option<IpAddr>,
    /// The server port (pair profiles).
    pub port: Option<u16>,
    /// The slot of the cycle.
    pub slot: u32,
    /// The statistics, JSON.
    pub stats: String,
}

/// Profiles as loaded: the set's facts (JSON, absent when nothing was learnt) and rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredProfiles {
    /// The row of facts about the set.
    pub meta: Option<String>,
    /// The profiles.
    pub rows: Vec<ProfileRow>,
}

impl Store {
    /// The profiles learnt with `period_secs`-second slots. Profiles learnt with
    /// another slot length are refused (never mixed): the error says how to rebuild.
    pub fn load_profiles(&self, period_secs: u32) -> Result<StoredProfiles, StoreError> {
        let other: Option<i64> = self
            .conn
            .query_row(
                "SELECT period_secs FROM profiles WHERE period_secs != ?1 LIMIT 1",
                params![period_secs],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(self.sql("reading profiles", e)),
            })?;
        if let Some(found) = other {
            return Err(StoreError::Profiles {
                path: self.path.clone(),
                detail: format!(
                    "its profiles were learnt with {found}-second slots and the configuration asks for {period_secs}-second slots; they cannot be compared — run `tunnelwatch learn --reset` to rebuild them, or set baseline.slot_seconds = {found}"
                ),
            });
        }
        let mut out = StoredProfiles::default();
        let mut q = self
            .conn
            .prepare("SELECT client, server, port, slot, stats FROM profiles WHERE period_secs = ?1 ORDER BY id")
            .map_err(|e| self.sql("reading profiles", e))?;
        let rows = q
            .query_map(params![period_secs], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| self.sql("reading profiles", e))?;
        for row in rows {
            let (client, server, port, slot, stats) =
                row.map_err(|e| self.sql("reading profiles", e))?;
            if slot < 0 {
                out.meta = Some(stats);
                continue;
            }
            let bad = |what: &str| StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("a profile row has {what}"),
            };
            out.rows.push(ProfileRow {
                client: addr_from_blob(&client).ok_or_else(|| bad("a bad client address"))?,
                server: match server {
                    Some(s) => Some(addr_from_blob(&s).ok_or_else(|| bad("a bad server address"))?),
                    None => None,
                },
                port: port
                    .map(|p| u16::try_from(p).map_err(|_| bad("a bad port")))
                    .transpose()?,
                slot: u32::try_from(slot).map_err(|_| bad("a bad slot"))?,
                stats,
            });
        }
        Ok(out)
    }

    /// Replaces every profile with `rows` and the set's facts `meta`, in one
    /// transaction; `updated` is the packet time of the newest data learnt (ns).
    pub fn save_profiles(
        &mut self,
        period_secs: u32,
        meta: &str,
        rows: &[ProfileRow],
        updated: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| StoreError::from_sql(&path, "writing profiles", e);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM profiles", []).map_err(err)?;
        {
            let mut ins = tx
                .prepare(
                    "INSERT INTO profiles (client, server, port, period_secs, slot, stats, updated_ts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            ins.execute(params![
                Vec::<u8>::new(),
                None::<Vec<u8>>,
                None::<i64>,
                period_secs,
                -1,
                meta,
                updated
            ])
            .map_err(err)?;
            for r in rows {
                ins.execute(params![
                    addr_to_blob(r.client).to_vec(),
                    r.server.map(|s| addr_to_blob(s).to_vec()),
                    r.port.map(i64::from),
                    period_secs,
                    i64::from(r.slot),
                    r.stats,
                    updated
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Forgets every profile (`tunnelwatch learn --reset`).
    pub fn reset_profiles(&mut self) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM profiles", [])
            .map_err(|e| self.sql("deleting profiles", e))?;
        Ok(n as u64)
    }
}
