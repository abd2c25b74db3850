//! Learnt profiles between the baseline detector and the store: loaded before a run,
//! saved after it. Profiles learnt with another slot length or cycle are refused with
//! a message saying how to rebuild them — never mixed with the configuration's.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tunnelwatch_detect::baseline::{BaselineConfig, Cycle, ProfileKey, Profiles, SlotProfile};
use tunnelwatch_store::{Mode, ProfileRow, Store};

/// The row of facts about a profile set.
#[derive(Serialize, Deserialize)]
struct Meta {
    cycle: Cycle,
    /// Weight of the observed hours per slot.
    slots: BTreeMap<u32, f64>,
}

/// The profiles stored in `db` for `cfg`'s slots (empty when none were learnt).
pub fn load(db: &Path, cfg: &BaselineConfig) -> Result<Profiles> {
    let store = Store::open(db, Mode::ReadWrite)?;
    let stored = store.load_profiles(cfg.slot_seconds)?;
    let mut p = Profiles::default();
    let Some(meta) = stored.meta else {
        return Ok(p);
    };
    let meta: Meta = serde_json::from_str(&meta)
        .with_context(|| format!("{}: the profiles' facts do not parse", db.display()))?;
    if meta.cycle != cfg.cycle {
        anyhow::bail!(
            "{}: its profiles were learnt over a {:?} cycle and the configuration asks for {:?}; they cannot be compared — run `tunnelwatch learn --reset` to rebuild them",
            db.display(),
            meta.cycle,
            cfg.cycle
        );
    }
    p.slots = meta.slots.into_iter().collect();
    for row in stored.rows {
        let stats: SlotProfile = serde_json::from_str(&row.stats).with_context(|| {
            format!(
                "{}: the profile of {} slot {} does not parse",
                db.display(),
                row.client,
                row.slot
            )
        })?;
        let key = ProfileKey {
            client: row.client,
            server: row.server,
            port: row.port,
        };
        p.keys.entry(key).or_default().insert(row.slot, stats);
    }
    Ok(p)
}

/// Replaces the profiles in `db` with `p`; returns how many were written.
pub fn save(db: &Path, cfg: &BaselineConfig, p: &Profiles) -> Result<usize> {
    if p.slots.is_empty() {
        return Ok(0); // nothing observed: what is stored stays
    }
    let mut rows: Vec<ProfileRow> = Vec::new();
    for (key, slots) in &p.keys {
        for (slot, s) in slots {
            rows.push(ProfileRow {
                client: key.client,
                server: key.server,
                port: key.port,
                slot: *slot,
                stats: serde_json::to_string(s)?,
            });
        }
    }
    rows.sort_by(|a, b| {
        (a.client, a.server, a.port, a.slot).cmp(&(b.client, b.server, b.port, b.slot))
    });
    let meta = Meta {
        cycle: cfg.cycle,
        slots: p.slots.iter().map(|(k, v)| (*k, *v)).collect(),
    };
    let mut store = Store::open(db, Mode::ReadWrite)?;
    store.save_profiles(cfg.slot_seconds, &serde_json::to_string(&meta)?, &rows, 0)?;
    Ok(rows.len())
}

/// Forgets the stored profiles (`learn --reset`).
pub fn reset(db: &Path) -> Result<u64> {
    Ok(Store::open(db, Mode::ReadWrite)?.reset_profiles()?)
}
