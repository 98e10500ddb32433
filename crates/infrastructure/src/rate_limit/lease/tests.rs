//! The lease bookkeeping against a model of the Redis script, in simulated time: the limit
//! across instances, how leases grow, shrink and expire, and what the headers say.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// The Redis script in Rust: give back, read, grant (`lease::grant`), count.
#[derive(Debug, Default)]
struct Model {
    counts: HashMap<u64, u64>,
    calls: u64,
}

impl Model {
    fn call(
        &mut self,
        quota: Quota,
        now_ms: u64,
        want: u64,
        give_back: Option<GiveBack>,
        divisor: u64,
    ) -> Grant {
        self.calls += 1;
        let w = window_ms(quota);
        let index = now_ms / w;
        if let Some(back) = give_back
            && (back.index == index || back.index + 1 == index)
            && let Some(count) = self.counts.get_mut(&back.index)
        {
            *count -= back.units.min(*count);
        }
        let state = WindowState {
            previous: index
                .checked_sub(1)
                .and_then(|i| self.counts.get(&i))
                .copied()
                .unwrap_or(0),
            current: self.counts.get(&index).copied().unwrap_or(0),
            elapsed_ms: now_ms - index * w,
        };
        let granted = grant(quota, state, want, divisor);
        if granted > 0 {
            *self.counts.entry(index).or_default() += granted;
        }
        Grant {
            granted,
            state,
            index,
        }
    }
}

const MS: u64 = 1_000;
/// Redis's clock at the simulation's start (ms since the epoch), not on a window boundary.
const REDIS_START_MS: u64 = 1_700_000_000_123;

fn quota(requests: u32, window_ms: u64) -> Quota {
    Quota {
        requests,
        window: Duration::from_millis(window_ms),
    }
}

/// One instance driven by hand, its round trips answered at once by `model`.
struct Solo {
    book: Book,
    model: Model,
    t0: Instant,
    quota: Quota,
    /// The `want` of every leader ask.
    wants: Vec<u64>,
}

impl Solo {
    fn new(quota: Quota) -> Self {
        Self {
            book: Book::new(LeaseSettings::default()),
            model: Model::default(),
            t0: Instant::now(),
            quota,
            wants: Vec::new(),
        }
    }

    fn at(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    /// A request at `us` µs; whether it asked Redis, and the decision.
    fn hit(&mut self, us: u64) -> (bool, RateDecision) {
        let now = self.at(us);
        match self.book.begin("k", self.quota, now) {
            Step::Decided(d) => (false, d),
            Step::Ask(ask) => (true, self.ask(us, ask)),
            Step::Refill(decision, ask) => {
                self.ask(us, ask);
                (true, decision)
            }
        }
    }

    fn ask(&mut self, us: u64, ask: Ask) -> RateDecision {
        let now = self.at(us);
        if ask.leader {
            self.wants.push(ask.want);
        }
        let divisor = self.book.settings().divisor;
        let grant = self.model.call(
            self.quota,
            REDIS_START_MS + us / MS,
            ask.want,
            ask.give_back,
            divisor,
        );
        self.book.settle("k", self.quota, &ask, grant, now, now)
    }

    fn sweep(&mut self, us: u64) {
        let divisor = self.book.settings().divisor;
        for (_, quota, back) in self.book.sweep(self.at(us)) {
            self.model
                .call(quota, REDIS_START_MS + us / MS, 0, Some(back), divisor);
        }
    }

    fn counted(&self) -> u64 {
        self.model.counts.values().sum()
    }
}

#[test]
fn lease_size_is_the_want_within_a_share_of_the_room() {
    assert_eq!(lease_size(0, 5, 8), 0, "no room: refused");
    assert_eq!(lease_size(100, 0, 8), 0, "a give-back alone takes nothing");
    assert_eq!(lease_size(100, 5, 8), 5);
    assert_eq!(lease_size(100, 50, 8), 12, "at most an eighth of the room");
    assert_eq!(lease_size(15, 50, 8), 1, "an eighth below 1 is still 1");
    assert_eq!(lease_size(3, 50, 1), 3, "never more than the room");
}

#[test]
fn a_cold_key_asks_redis_for_one_request_each_time() {
    let mut solo = Solo::new(quota(1_000, 900_000));
    for i in 0..20 {
        let (asked, d) = solo.hit(i * 1_000 * MS);
        assert!(asked && d.allowed, "hit {i}");
        assert_eq!(d.remaining, 999 - u32::try_from(i).unwrap());
    }
    assert!(solo.wants.iter().all(|&w| w == 1), "{:?}", solo.wants);
    assert_eq!(solo.counted(), 20, "nothing leased beyond the requests");
}

#[test]
fn a_hot_key_leases_double_up_to_its_rate_then_shrink_when_it_cools() {
    let mut solo = Solo::new(quota(1_000_000_000, 3_600_000));
    // 10 000 requests/s for 2 s: a lease should last 100 ms, i.e. about 1 000 requests.
    let mut asks = 0;
    for i in 0..20_000 {
        let (asked, d) = solo.hit(i * 100);
        assert!(d.allowed);
        asks += u64::from(asked);
    }
    let growth: Vec<u64> = solo.wants.iter().copied().take(11).collect();
    assert_eq!(growth, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_000]);
    assert!(
        solo.wants[11..].iter().all(|w| (900..=1_100).contains(w)),
        "{:?}",
        solo.wants
    );
    assert!(asks < 40, "{asks} round trips for 20 000 requests");

    // Then one request every 2 s: the unspent budget goes back, leases fall to 1.
    let cooled = 2_000_000 * 100;
    for i in 1..=5 {
        let (asked, d) = solo.hit(cooled + i * 2_000 * MS);
        assert!(asked && d.allowed);
    }
    let last: Vec<u64> = solo.wants.iter().rev().take(4).copied().collect();
    assert_eq!(last, [1, 1, 1, 1], "{:?}", solo.wants);
    assert_eq!(solo.counted(), 20_005, "every unspent request was given back");
}

#[test]
fn tiny_quotas_lease_one_request_at_a_time_however_hot() {
    for limit in [1, 6, 10, 15] {
        let mut solo = Solo::new(quota(limit, 900_000));
        for i in 0..u64::from(limit) {
            let (asked, d) = solo.hit(i * 10);
            assert!(asked, "limit {limit}: request {i} is a round trip");
            assert!(d.allowed);
            assert_eq!(d.remaining, limit - 1 - u32::try_from(i).unwrap());
        }
        let (asked, refused) = solo.hit(u64::from(limit) * 10);
        assert!(asked && !refused.allowed);
        assert_eq!(solo.counted(), u64::from(limit));
    }
    // With more room a hot key leases more.
    let mut solo = Solo::new(quota(40, 900_000));
    let asks: u64 = (0..40).map(|i| u64::from(solo.hit(i * 10).0)).sum();
    assert!(asks < 30, "{asks}");
}

#[test]
fn one_instance_sees_exactly_the_headers_of_the_unleased_limiter() {
    let q = quota(1_000, 3_600_000);
    let mut solo = Solo::new(q);
    let mut exact = WindowState {
        previous: 0,
        current: 0,
        elapsed_ms: 0,
    };
    let mut local = 0;
    for i in 0..1_100_u64 {
        let us = i * 37;
        exact.elapsed_ms = (REDIS_START_MS + us / MS) % 3_600_000;
        let expected = decide(q, exact);
        let (asked, got) = solo.hit(us);
        local += u64::from(!asked);
        assert_eq!(got, expected, "request {i}");
        if expected.allowed {
            exact.current += 1;
        }
    }
    assert!(local > 900, "leases were spent locally: {local}");
}

#[test]
fn an_expired_lease_gives_its_unspent_budget_back() {
    let q = quota(100, 3_600_000);
    let mut solo = Solo::new(q);
    // A burst: 20 requests, 1 ms apart; the last leases hold budget beyond them.
    for i in 0..20 {
        assert!(solo.hit(i * MS).1.allowed);
    }
    assert!(
        solo.counted() > 20,
        "budget held beyond the requests: {}",
        solo.counted()
    );
    // Before its time-to-live the lease is kept; after it the sweeper gives it back.
    solo.sweep(100 * MS);
    assert!(solo.counted() > 20);
    solo.sweep(300 * MS);
    assert_eq!(solo.counted(), 20);
    // So another instance can take the whole rest.
    let mut other = Book::new(LeaseSettings::default());
    let mut admitted = 0;
    for i in 0..200_u64 {
        let now = solo.at(700 * MS + i);
        let step = other.begin("k", q, now);
        let mut ask = |ask: Ask| {
            let grant = solo
                .model
                .call(q, REDIS_START_MS + 700, ask.want, ask.give_back, 8);
            other.settle("k", q, &ask, grant, now, now)
        };
        let d = match step {
            Step::Decided(d) => d,
            Step::Ask(asked) => ask(asked),
            Step::Refill(d, asked) => {
                ask(asked);
                d
            }
        };
        admitted += u64::from(d.allowed);
    }
    assert_eq!(admitted, 80);
}

#[test]
fn a_lease_is_never_spent_after_the_window_it_was_counted_in() {
    let w = 60_000;
    let q = quota(1_000_000, w);
    let mut solo = Solo::new(q);
    // Requests every 10 µs from 30 ms before a window boundary (Redis's clock) to 30 ms after.
    let boundary_us = (REDIS_START_MS / w + 1) * w * MS - REDIS_START_MS * MS;
    let mut before_boundary_local = 0;
    for i in 0..6_000_u64 {
        let us = boundary_us - 30 * MS + i * 10;
        let (asked, _) = solo.hit(us);
        if us >= boundary_us && !asked {
            // Spent from a lease taken after the boundary only.
            assert!(solo.model.counts.contains_key(&((REDIS_START_MS + us / MS) / w)));
        }
        if us < boundary_us && !asked {
            before_boundary_local += 1;
        }
        if us >= boundary_us && us < boundary_us + 10 {
            assert!(asked, "the first request of the new window asks Redis");
        }
    }
    assert!(before_boundary_local > 100);
}

#[test]
fn a_refusal_is_repeated_locally_no_longer_than_its_retry_after_or_a_quarter_second() {
    let q = quota(3, 60_000);
    let mut solo = Solo::new(q);
    for i in 0..3 {
        assert!(solo.hit(i * MS).1.allowed);
    }
    let (asked, refused) = solo.hit(10 * MS);
    assert!(asked && !refused.allowed);
    let (asked, again) = solo.hit(200 * MS);
    assert!(!asked, "repeated without a round trip");
    assert!(!again.allowed && again.remaining == 0);
    assert!(again.retry_after_secs >= 1 && again.retry_after_secs <= refused.retry_after_secs);
    assert!(again.reset_secs >= again.retry_after_secs);
    assert!(solo.hit(270 * MS).0, "after 250 ms Redis is asked again");

    // A refusal whose wait is shorter is repeated only that long.
    let q = quota(2, 1_000);
    let mut solo = Solo::new(q);
    let start = (1_000 - REDIS_START_MS % 1_000) * MS; // a window boundary
    assert!(solo.hit(start).1.allowed);
    assert!(solo.hit(start + 1).1.allowed);
    // 900 ms into the next window the previous one weighs 2 × 0.1 = 0.2: room for one, then
    // refused until the estimate decays — 100 ms.
    let (_, admitted) = solo.hit(start + 1_900 * MS);
    assert!(admitted.allowed);
    let (_, refused) = solo.hit(start + 1_900 * MS + 1);
    assert!(!refused.allowed);
    assert!(!solo.hit(start + 1_990 * MS).0, "repeated locally meanwhile");
    let (asked, admitted) = solo.hit(start + 2_000 * MS + 1);
    assert!(
        asked && admitted.allowed,
        "asked again after its retry-after, and admitted"
    );
}

#[test]
fn concurrent_asks_for_a_key_size_one_lease_and_a_failed_one_frees_the_next() {
    let q = quota(1_000_000, 60_000);
    let mut book = Book::new(LeaseSettings::default());
    let t0 = Instant::now();
    let first = book.begin("k", q, t0);
    let second = book.begin("k", q, t0);
    assert!(matches!(first, Step::Ask(Ask { leader: true, .. })));
    assert_eq!(
        second,
        Step::Ask(Ask {
            want: 1,
            give_back: None,
            leader: false,
            refill: false
        })
    );
    book.abandon("k");
    assert!(matches!(
        book.begin("k", q, t0),
        Step::Ask(Ask { leader: true, .. })
    ));
}

#[test]
fn idle_keys_are_forgotten_and_outstanding_ones_kept() {
    let q = quota(1_000_000, 3_600_000);
    let mut solo = Solo::new(q);
    for i in 0..100 {
        solo.hit(i * 100);
    }
    solo.book.begin("idle", q, solo.at(0));
    solo.book.abandon("idle");
    solo.sweep(500 * MS);
    assert_eq!(solo.book.len(), 2, "not idle for a second yet");
    solo.sweep(1_100 * MS);
    assert!(solo.book.is_empty());
}

#[test]
fn a_flood_of_new_keys_is_bounded_without_a_scan_per_request() {
    let q = quota(100, 900_000);
    let mut book = Book::default();
    let t0 = Instant::now();
    // 30 000 addresses in 3 s, no sweeper: the book forgets the idle ones as it grows.
    let mut largest = 0;
    for i in 0..30_000_u64 {
        let now = t0 + Duration::from_micros(i * 100);
        if let Step::Ask(ask) = book.begin(&format!("ip:{i}"), q, now) {
            book.abandon(&format!("ip:{i}"));
            assert_eq!(ask.want, 1);
        }
        largest = largest.max(book.len());
    }
    assert!(largest <= 20_000, "{largest}");
}

// ---- Several instances, interleaved, with latency: the limit holds ----

#[derive(Debug, Clone, Copy)]
enum Event {
    Hit(usize),
    /// The script runs (`hit`: for a request; else a sweeper's give-back).
    Exec {
        instance: usize,
        ask: Ask,
        sent_us: u64,
        hit: bool,
    },
    Reply {
        instance: usize,
        ask: Ask,
        grant: Grant,
        sent_us: u64,
    },
    Sweep(usize),
}

/// The sweeper's period: half the lease's time-to-live, as in the Redis limiter.
const SWEEP_US: u64 = 125 * MS;

/// Gaps between one instance's requests, in µs, by traffic mode.
const MODES: [u64; 5] = [40, 400, 5_000, 100_000, 700_000];

struct Cluster {
    quota: Quota,
    books: Vec<Book>,
    model: Model,
    t0: Instant,
    rng: StdRng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    seq: u64,
    modes: Vec<usize>,
    /// Requests admitted per fixed window (by Redis's clock at their admission).
    admitted: HashMap<u64, u64>,
    /// (exec µs, units) of every change to the shared count: grants and give-backs.
    changes: Vec<(u64, u64)>,
    hits: u64,
    local: u64,
    refused: u64,
    worst_remaining_gap: u64,
}

impl Cluster {
    fn new(quota: Quota, instances: usize, seed: u64) -> Self {
        let mut cluster = Self {
            quota,
            books: (0..instances)
                .map(|_| Book::new(LeaseSettings::default()))
                .collect(),
            model: Model::default(),
            t0: Instant::now(),
            rng: StdRng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            modes: vec![0; instances],
            admitted: HashMap::new(),
            changes: Vec::new(),
            hits: 0,
            local: 0,
            refused: 0,
            worst_remaining_gap: 0,
        };
        for i in 0..instances {
            cluster.modes[i] = cluster.rng.random_range(0..MODES.len());
            let start = cluster.rng.random_range(0..1_000);
            cluster.push(start, Event::Hit(i));
            cluster.push(SWEEP_US, Event::Sweep(i));
        }
        cluster
    }

    fn push(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((at_us, self.seq)));
    }

    fn latency(&mut self) -> u64 {
        self.rng.random_range(30..2_000)
    }

    fn redis_ms(us: u64) -> u64 {
        REDIS_START_MS + us / MS
    }

    /// Records an admission at `us` and checks the sliding-window estimate of the requests
    /// actually admitted, this one included, against the limit. Returns the exact limiter's
    /// `Remaining` at that moment.
    fn admit(&mut self, us: u64) -> u32 {
        let w = window_ms(self.quota);
        let now = Self::redis_ms(us);
        let index = now / w;
        let state = WindowState {
            previous: self.admitted.get(&(index - 1)).copied().unwrap_or(0),
            current: self.admitted.get(&index).copied().unwrap_or(0),
            elapsed_ms: now - index * w,
        };
        let exact = decide(self.quota, state);
        assert!(
            exact.allowed,
            "over-admission at {us} µs: {state:?}, limit {}",
            self.quota.requests
        );
        *self.admitted.entry(index).or_default() += 1;
        exact.remaining
    }

    /// Checks a decision's `Remaining` against the exact limiter's (adr/0014's bound). It comes
    /// from this instance's latest answer, at most a lease's time-to-live old: it misses what
    /// changed the shared count since (other instances' requests and leases, this instance's
    /// requests still in flight, budget given back), and it counts as used the budget instances
    /// hold unspent (the shared count minus the requests admitted).
    fn check_remaining(&mut self, us: u64, shown: u32, exact: u32) {
        let since = us.saturating_sub(250 * MS + 4 * MS);
        let changed: u64 = self
            .changes
            .iter()
            .filter(|(at, _)| *at > since)
            .map(|(_, units)| units)
            .sum();
        let w = window_ms(self.quota);
        let index = Self::redis_ms(us) / w;
        let unspent: u64 = [index - 1, index]
            .iter()
            .map(|i| {
                let counted = self.model.counts.get(i).copied().unwrap_or(0);
                counted - self.admitted.get(i).copied().unwrap_or(0)
            })
            .sum();
        let bound = 1 + changed + unspent;
        let gap = u64::from(shown.abs_diff(exact));
        assert!(
            gap <= bound,
            "at {us} µs: Remaining {shown}, exact {exact}, bound {bound}"
        );
        self.worst_remaining_gap = self.worst_remaining_gap.max(gap);
    }

    fn run(&mut self, until_us: u64, max_hits: u64) {
        let divisor = LeaseSettings::default().divisor;
        while let Some(Reverse((us, seq))) = self.queue.pop() {
            if us > until_us || self.hits >= max_hits {
                break;
            }
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            let now = self.t0 + Duration::from_micros(us);
            match event {
                Event::Hit(i) => {
                    self.hits += 1;
                    match self.books[i].begin("k", self.quota, now) {
                        Step::Decided(d) if d.allowed => {
                            self.local += 1;
                            let exact = self.admit(us);
                            self.check_remaining(us, d.remaining, exact);
                        }
                        Step::Decided(_) => self.refused += 1,
                        Step::Refill(d, ask) => {
                            self.local += 1;
                            let exact = self.admit(us);
                            self.check_remaining(us, d.remaining, exact);
                            let at = us + self.latency();
                            self.push(
                                at,
                                Event::Exec {
                                    instance: i,
                                    ask,
                                    sent_us: us,
                                    hit: true,
                                },
                            );
                        }
                        Step::Ask(ask) => {
                            let at = us + self.latency();
                            self.push(
                                at,
                                Event::Exec {
                                    instance: i,
                                    ask,
                                    sent_us: us,
                                    hit: true,
                                },
                            );
                        }
                    }
                    if self.rng.random_bool(0.003) {
                        self.modes[i] = self.rng.random_range(0..MODES.len());
                    }
                    let gap = MODES[self.modes[i]];
                    let next = us + self.rng.random_range(gap / 2..=gap * 3 / 2);
                    self.push(next, Event::Hit(i));
                }
                Event::Exec {
                    instance,
                    ask,
                    sent_us,
                    hit,
                } => {
                    let before: u64 = self.model.counts.values().sum();
                    let grant =
                        self.model
                            .call(self.quota, Self::redis_ms(us), ask.want, ask.give_back, divisor);
                    let after: u64 = self.model.counts.values().sum();
                    self.changes
                        .push((us, before.abs_diff(after - grant.granted) + grant.granted));
                    if hit {
                        if grant.granted > 0 && !ask.refill {
                            let exact = self.admit(us);
                            let shown = decide(self.quota, grant.state).remaining;
                            self.check_remaining(us, shown, exact);
                        }
                        let at = us + self.latency();
                        self.push(
                            at,
                            Event::Reply {
                                instance,
                                ask,
                                grant,
                                sent_us,
                            },
                        );
                    }
                }
                Event::Reply {
                    instance,
                    ask,
                    grant,
                    sent_us,
                } => {
                    let sent = self.t0 + Duration::from_micros(sent_us);
                    let d = self.books[instance].settle("k", self.quota, &ask, grant, sent, now);
                    if !ask.refill {
                        assert_eq!(d.allowed, grant.granted > 0);
                        if !d.allowed {
                            self.refused += 1;
                        }
                    }
                }
                Event::Sweep(i) => {
                    for (key, quota, back) in self.books[i].sweep(now) {
                        assert_eq!(key, "k");
                        assert_eq!(quota, self.quota);
                        let ask = Ask {
                            want: 0,
                            give_back: Some(back),
                            leader: false,
                            refill: false,
                        };
                        let at = us + self.latency();
                        self.push(
                            at,
                            Event::Exec {
                                instance: i,
                                ask,
                                sent_us: us,
                                hit: false,
                            },
                        );
                    }
                    self.push(us + SWEEP_US, Event::Sweep(i));
                }
            }
        }
    }
}

#[test]
fn instances_interleaving_never_admit_more_than_the_sliding_window_allows() {
    for (limit, window_ms) in [
        (6, 2_000),
        (10, 5_000),
        (50, 2_000),
        (1_000, 3_000),
        (20_000, 1_000),
    ] {
        let (mut local, mut refused, mut hits, mut asks, mut worst_gap, mut admitted) = (0, 0, 0, 0, 0, 0);
        for instances in [2, 3, 5] {
            for seed in 0..4 {
                // `admit` and `check_remaining` assert as the walk goes.
                let mut cluster = Cluster::new(quota(limit, window_ms), instances, seed);
                cluster.run(8_000 * MS, 60_000);
                local += cluster.local;
                refused += cluster.refused;
                hits += cluster.hits;
                asks += cluster.model.calls;
                worst_gap = worst_gap.max(cluster.worst_remaining_gap);
                admitted += cluster.admitted.values().sum::<u64>();
            }
        }
        eprintln!(
            "limit {limit}/{window_ms} ms: {hits} requests, {admitted} admitted ({local} from leases), \
             {refused} refused, {asks} script calls, Remaining off by at most {worst_gap}"
        );
        if limit < 16 {
            assert_eq!(local, 0, "limit {limit}: no lease beyond one request");
            assert_eq!(worst_gap, 0, "limit {limit}: Remaining is exact");
        } else {
            assert!(
                local > 0,
                "limit {limit}: leases were spent ({local} of {admitted})"
            );
        }
        if limit <= 1_000 {
            assert!(refused > 0, "limit {limit}: the walks reach the limit");
        }
    }
}
