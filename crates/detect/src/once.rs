//! "Once per flow": rules that read interim records alert at the first record that
//! crosses, not again at the next interim or the final one. The memory of which flows
//! alerted is dropped with their final record and bounded (overflow counted).

use std::collections::BTreeSet;

use tunnelwatch_model::{Cause, FlowRecord};

/// Flows remembered as having alerted while still live.
const MAX_LIVE: usize = 1 << 20;

/// Which (flow, rule) pairs already alerted.
#[derive(Default)]
pub struct OncePerFlow {
    alerted: BTreeSet<(String, &'static str)>,
    untracked: u64,
}

impl OncePerFlow {
    /// True the first time `rule` fires for `r`'s flow.
    pub fn first(&mut self, r: &FlowRecord, rule: &'static str) -> bool {
        let key = (r.uid.clone(), rule);
        if self.alerted.contains(&key) {
            return false;
        }
        if r.cause == Cause::Status {
            if self.alerted.len() >= MAX_LIVE {
                self.untracked += 1;
            } else {
                self.alerted.insert(key);
            }
        }
        true
    }

    /// Forgets `r`'s flow when `r` is its final record.
    pub fn done(&mut self, r: &FlowRecord) {
        // Most runs have no interim records: nothing to forget, nothing to allocate.
        if r.cause != Cause::Status && !self.alerted.is_empty() {
            let from = (r.uid.clone(), "");
            let gone: Vec<_> = self
                .alerted
                .range(from..)
                .take_while(|(u, _)| *u == r.uid)
                .cloned()
                .collect();
            for k in gone {
                self.alerted.remove(&k);
            }
        }
    }

    /// Alerts that could not be remembered (state full).
    pub fn untracked(&self) -> u64 {
        self.untracked
    }
}
