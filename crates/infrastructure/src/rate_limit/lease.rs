//! Leases (adr/0014): an instance takes a share of a key's remaining budget from Redis in one
//! atomic script and spends it locally, so a hot key asks Redis once per lease instead of once
//! per request. This module is one instance's bookkeeping, pure and on explicit instants: the
//! Redis limiter does the I/O around it, and the tests drive several books against a model of
//! the script in simulated time.
//!
//! What keeps the limit across instances:
//! - **A lease is counted in full when it is granted.** The script admits it with the same test
//!   as one request (the room of [`window::room`](super::window::room) must hold it) and adds it
//!   to the current fixed window's counter, so leased but unspent budget counts as used until it
//!   is given back. The shared estimate `previous × (w − e)/w + current`, leases included, stays
//!   within the limit at every instant, and the requests actually admitted are part of it.
//! - **A lease is spent only inside the fixed window it was counted in.** Its deadline starts
//!   from the instant its request was *sent* and uses the `elapsed` the script saw, so it can
//!   only end early. A request spent in the next window but counted in this one would weigh less
//!   than it should there.
//! - **Unspent budget is given back to the window it was counted in**, never below zero and only
//!   while that window still counts: with the key's next request to Redis, or by the sweeper once
//!   the lease has lived [`LeaseSettings::ttl`]. A budget that is never given back (a crashed
//!   instance, a failed call) stays counted until its window slides out: the safe side.
//!
//! How much a lease takes ([`Book::begin`]): what lasts [`LeaseSettings::target`] at the rate
//! this instance sees for the key, at most twice the previous lease (a burst of two does not
//! take a large share), and in the script at most `1/divisor` of the room left — but always 1
//! when that share is below one, so a cold key or a small quota (under `2 × divisor`: the
//! login limit) leases exactly one request per request, as without leases. When a lease of 4
//! or more is down to a quarter, the request that spends it there also asks for the next one,
//! so concurrent requests find budget instead of all asking Redis at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use keel_domain::rate_limit::{Quota, RateDecision};

use super::window::{Precise, WindowState, decide, decide_precisely, room, window_ms};

/// The knobs of the lease limiter (adr/0014 explains the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a lease should last at the key's rate on this instance.
    pub target: Duration,
    /// The longest a lease is spent; what is left then goes back to Redis.
    pub ttl: Duration,
    /// A lease takes at most `1/divisor` of the room left (at least 1).
    pub divisor: u64,
    /// No lease is larger than this.
    pub max_lease: u64,
    /// How long a refusal from Redis is repeated locally (never past its `Retry-After`).
    pub refusal_ttl: Duration,
    /// A key with nothing outstanding is forgotten after this long without a request (its
    /// rate would size a lease of 1 anyway).
    pub idle: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            target: Duration::from_millis(100),
            ttl: Duration::from_millis(250),
            divisor: 8,
            max_lease: 100_000,
            refusal_ttl: Duration::from_millis(250),
            idle: Duration::from_secs(1),
        }
    }
}

/// How much the script grants for `want` with `room` left: at least 1 and at most `want`, at
/// most `room / divisor` unless that is below 1, never more than `room`; 0 without room or
/// when nothing is asked (a give-back alone).
pub fn lease_size(room: u64, want: u64, divisor: u64) -> u64 {
    if room == 0 || want == 0 {
        return 0;
    }
    want.min((room / divisor.max(1)).max(1)).min(room)
}

/// What the script grants at the key's counters: [`lease_size`] of [`room`].
pub fn grant(quota: Quota, state: WindowState, want: u64, divisor: u64) -> u64 {
    lease_size(room(quota, state), want, divisor)
}

/// Unspent budget to hand back to the counter of fixed window `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveBack {
    pub index: u64,
    pub units: u64,
}

/// The script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Requests granted (0: refused), the asking one included.
    pub granted: u64,
    /// The counters before the grant, after the give-back, and the time into the window.
    pub state: WindowState,
    /// The fixed window (time / window length) the grant is counted in.
    pub index: u64,
}

/// A request to Redis: `want` requests for the key, and budget to give back on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub want: u64,
    pub give_back: Option<GiveBack>,
    /// One ask at a time per key sizes the lease; concurrent ones ask for themselves only.
    pub leader: bool,
    /// Asked ahead by a request already admitted from the lease: everything granted is lease.
    pub refill: bool,
}

/// What [`Book::begin`] decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Spent from a lease, or a refusal repeated: no round trip.
    Decided(RateDecision),
    /// Ask Redis, then [`Book::settle`].
    Ask(Ask),
    /// Spent from a lease that is running out: the request is admitted, and asks Redis for
    /// the next lease (then [`Book::settle`]) while concurrent requests spend what is left.
    Refill(RateDecision, Ask),
}

/// Budget leased in one fixed window, and what the last answer said about the key.
#[derive(Debug, Clone, Copy)]
struct Lease {
    index: u64,
    previous: u64,
    /// The window's shared count after the latest grant (other instances' leases included).
    seen: u64,
    /// This instance's part of `seen` not spent yet.
    unspent: u64,
    /// `elapsed_ms` of the latest answer, and when it arrived.
    elapsed_ms: u64,
    seen_at: Instant,
    /// Before the end of `index` on any reading (see the module's rules).
    deadline: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Refusal {
    precise: Precise,
    at: Instant,
    until: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    quota: Quota,
    lease: Option<Lease>,
    refusal: Option<Refusal>,
    give_back: Option<GiveBack>,
    /// When the last leader ask was sent, the requests since, and what it was granted.
    asked_at: Option<Instant>,
    hits_since_ask: u64,
    last_grant: u64,
    asking: bool,
    last_hit: Instant,
}

impl Entry {
    fn new(quota: Quota, now: Instant) -> Self {
        Self {
            quota,
            lease: None,
            refusal: None,
            give_back: None,
            asked_at: None,
            hits_since_ask: 0,
            last_grant: 0,
            asking: false,
            last_hit: now,
        }
    }

    /// Ends the lease if its time is up.
    fn expire(&mut self, now: Instant) {
        if self.lease.is_some_and(|lease| now >= lease.deadline) {
            self.end_lease();
        }
    }

    /// Ends the lease, keeping what is unspent to give back.
    fn end_lease(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.hold_back(GiveBack {
                index: lease.index,
                units: lease.unspent,
            });
        }
    }

    /// Keeps `back` to give back. One window's give-back is kept per key: an older one is
    /// dropped (it stays counted until its window slides out).
    fn hold_back(&mut self, back: GiveBack) {
        if back.units == 0 {
            return;
        }
        self.give_back = match self.give_back {
            Some(held) if held.index == back.index => Some(GiveBack {
                index: held.index,
                units: held.units.saturating_add(back.units),
            }),
            Some(held) if held.index > back.index => Some(held),
            _ => Some(back),
        };
    }

    fn outstanding(&self) -> bool {
        self.lease.is_some() || self.give_back.is_some() || self.refusal.is_some() || self.asking
    }
}

/// Forget idle keys on a request once the book holds this many (the sweeper forgets them
/// sooner); then again only once it has doubled, so a flood of new keys costs no scan per
/// request.
const FORGET_AT: usize = 10_000;

/// One instance's leases, refusals and rates, per key.
#[derive(Debug)]
pub struct Book {
    settings: LeaseSettings,
    entries: HashMap<String, Entry>,
    forget_at: usize,
}

impl Default for Book {
    fn default() -> Self {
        Self::new(LeaseSettings::default())
    }
}

impl Book {
    pub fn new(settings: LeaseSettings) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
            forget_at: FORGET_AT,
        }
    }

    pub fn settings(&self) -> LeaseSettings {
        self.settings
    }

    /// Decides a request locally when this instance holds budget for the key (or a fresh
    /// refusal), else says what to ask Redis for.
    pub fn begin(&mut self, key: &str, quota: Quota, now: Instant) -> Step {
        if self.entries.len() >= self.forget_at {
            self.forget_idle(now);
        }
        // Looked up by `&str`: no allocation for a key already in the book.
        if !self.entries.contains_key(key) {
            self.entries.insert(key.to_owned(), Entry::new(quota, now));
        }
        let settings = self.settings;
        let Some(entry) = self.entries.get_mut(key) else {
            // Just inserted; unreachable, and harmless: ask for this request alone.
            return Step::Ask(Ask {
                want: 1,
                give_back: None,
                leader: false,
                refill: false,
            });
        };
        if entry.quota != quota {
            // Another quota on the same key (a configuration change): start over.
            entry.end_lease();
            entry.quota = quota;
            entry.refusal = None;
        }
        entry.last_hit = now;
        entry.hits_since_ask = entry.hits_since_ask.saturating_add(1);
        entry.expire(now);

        if let Some(lease) = entry.lease.as_mut().filter(|lease| lease.unspent > 0) {
            let decision = spend(lease, quota, now);
            let unspent = lease.unspent;
            if unspent == 0 {
                entry.lease = None;
            }
            // A quarter of the last grant left (and it was worth a lease): ask for the next.
            if unspent > 0 && !entry.asking && unspent.saturating_mul(4) <= entry.last_grant {
                let ask = Ask {
                    want: want(&settings, entry, now),
                    give_back: entry.give_back.take(),
                    leader: true,
                    refill: true,
                };
                entry.asking = true;
                entry.asked_at = Some(now);
                entry.hits_since_ask = 0;
                return Step::Refill(decision, ask);
            }
            return Step::Decided(decision);
        }
        if let Some(refusal) = entry.refusal {
            if now < refusal.until {
                return Step::Decided(repeat(refusal, now));
            }
            entry.refusal = None;
        }

        let give_back = entry.give_back.take();
        if entry.asking {
            return Step::Ask(Ask {
                want: 1,
                give_back,
                leader: false,
                refill: false,
            });
        }
        let want = want(&settings, entry, now);
        entry.asking = true;
        entry.asked_at = Some(now);
        entry.hits_since_ask = 0;
        Step::Ask(Ask {
            want,
            give_back,
            leader: true,
            refill: false,
        })
    }

    /// Takes Redis's answer to `ask` (sent at `sent`, answered at `now`): the decision for the
    /// request that asked (meaningless for a refill), and the rest of the grant kept as this
    /// instance's lease.
    pub fn settle(
        &mut self,
        key: &str,
        quota: Quota,
        ask: &Ask,
        grant: Grant,
        sent: Instant,
        now: Instant,
    ) -> RateDecision {
        let precise = decide_precisely(quota, grant.state);
        let mut decision = precise.decision;
        // The script counted (or not) already: its admission stands. Both compute it with the
        // same integer arithmetic, so they agree (the integration tests check it).
        decision.allowed = grant.granted >= 1;
        if ask.want == 0 {
            return decision;
        }
        if !self.entries.contains_key(key) {
            // Forgotten meanwhile (the book was cleared): a fresh entry holds the grant.
            self.entries.insert(key.to_owned(), Entry::new(quota, now));
        }
        let ttl = self.settings.ttl;
        let refusal_ttl = self.settings.refusal_ttl;
        let Some(entry) = self.entries.get_mut(key) else {
            return decision;
        };
        if ask.leader {
            entry.asking = false;
            entry.last_grant = grant.granted;
        }
        if entry.quota != quota {
            return decision;
        }
        if grant.granted == 0 {
            if entry.lease.is_none() && !ask.refill {
                entry.refusal = Some(Refusal {
                    precise,
                    at: now,
                    until: now + Duration::from_millis(precise.retry_after_ms).min(refusal_ttl),
                });
            }
            return decision;
        }
        entry.refusal = None;
        // The script's clock is whole milliseconds, up to 1 ms behind the true time: 1 ms less.
        let to_window_end = Duration::from_millis(
            window_ms(quota)
                .saturating_sub(grant.state.elapsed_ms)
                .saturating_sub(1),
        );
        let fresh = Lease {
            index: grant.index,
            previous: grant.state.previous,
            seen: grant.state.current.saturating_add(grant.granted),
            unspent: grant.granted - u64::from(!ask.refill),
            elapsed_ms: grant.state.elapsed_ms,
            seen_at: now,
            deadline: sent + ttl.min(to_window_end),
        };
        match entry.lease.as_mut() {
            None if fresh.unspent > 0 => entry.lease = Some(fresh),
            None => {}
            Some(held) if held.index == fresh.index => {
                held.unspent = held.unspent.saturating_add(fresh.unspent);
                // Both deadlines are before the window's end: the later one is safe.
                held.deadline = held.deadline.max(fresh.deadline);
                // The latest answer is the freshest view (give-backs can lower the count).
                held.previous = fresh.previous;
                held.seen = fresh.seen;
                held.elapsed_ms = fresh.elapsed_ms;
                held.seen_at = fresh.seen_at;
            }
            Some(held) if held.index < fresh.index => {
                let old = *held;
                entry.lease = (fresh.unspent > 0).then_some(fresh);
                entry.hold_back(GiveBack {
                    index: old.index,
                    units: old.unspent,
                });
            }
            Some(_) => entry.hold_back(GiveBack {
                // An answer from a window that has already ended here: nothing to spend.
                index: fresh.index,
                units: fresh.unspent,
            }),
        }
        decision
    }

    /// The ask of a leader failed or was dropped: the next request may size a lease again.
    pub fn abandon(&mut self, key: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.asking = false;
        }
    }

    /// Ends the leases whose time is up and hands out every pending give-back (with the key's
    /// quota); forgets keys idle with nothing outstanding.
    pub fn sweep(&mut self, now: Instant) -> Vec<(String, Quota, GiveBack)> {
        let mut out = Vec::new();
        for (key, entry) in &mut self.entries {
            entry.expire(now);
            if let Some(back) = entry.give_back.take() {
                out.push((key.clone(), entry.quota, back));
            }
            if entry.refusal.is_some_and(|r| now >= r.until) {
                entry.refusal = None;
            }
        }
        self.forget_idle(now);
        out
    }

    /// Forgets everything: after Redis failed, what it holds is unknown (leases stay counted
    /// there until their windows slide out).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Keys in the book.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn forget_idle(&mut self, now: Instant) {
        let idle = self.settings.idle;
        self.entries
            .retain(|_, e| e.outstanding() || now.saturating_duration_since(e.last_hit) < idle);
        self.forget_at = FORGET_AT.max(self.entries.len().saturating_mul(2));
    }
}

/// The size of the next lease: what lasts `target` at the rate seen since the last ask, at
/// least 1, at most twice the last grant and `max_lease`. A key's first ask takes 1.
fn want(settings: &LeaseSettings, entry: &Entry, now: Instant) -> u64 {
    let Some(asked_at) = entry.asked_at else {
        return 1;
    };
    let elapsed_us = now.saturating_duration_since(asked_at).as_micros().max(1_000);
    let by_rate = (u128::from(entry.hits_since_ask) * settings.target.as_micros()).div_ceil(elapsed_us);
    let by_rate = u64::try_from(by_rate).unwrap_or(u64::MAX);
    by_rate
        .max(1)
        .min(entry.last_grant.max(1).saturating_mul(2))
        .min(settings.max_lease.max(1))
}

/// Spends one request of `lease`: admitted, with the headers the shared count implies as last
/// seen, this instance's unspent budget left out.
fn spend(lease: &mut Lease, quota: Quota, now: Instant) -> RateDecision {
    let w = window_ms(quota);
    let since = u64::try_from(now.saturating_duration_since(lease.seen_at).as_millis()).unwrap_or(u64::MAX);
    let state = WindowState {
        previous: lease.previous,
        current: lease.seen.saturating_sub(lease.unspent),
        elapsed_ms: lease.elapsed_ms.saturating_add(since).min(w.saturating_sub(1)),
    };
    lease.unspent = lease.unspent.saturating_sub(1);
    let mut decision = decide(quota, state);
    // Reserved in Redis: admitted whatever the local estimate says (it agrees; see the tests).
    decision.allowed = true;
    decision.retry_after_secs = 0;
    decision
}

/// A refusal repeated `now`: its waits shortened by the time since Redis gave it.
fn repeat(refusal: Refusal, now: Instant) -> RateDecision {
    let passed = u64::try_from(now.saturating_duration_since(refusal.at).as_millis()).unwrap_or(u64::MAX);
    let retry_ms = refusal.precise.retry_after_ms.saturating_sub(passed).max(1);
    let retry_after_secs = retry_ms.div_ceil(1000);
    let reset_secs = refusal
        .precise
        .reset_ms
        .saturating_sub(passed)
        .div_ceil(1000)
        .max(retry_after_secs);
    RateDecision {
        retry_after_secs,
        reset_secs,
        ..refusal.precise.decision
    }
}

#[cfg(test)]
mod tests;
