//! Counters for `GET /metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Routes counted, in the order of `ROUTES`; anything else is `other`.
pub(crate) const ROUTES: [&str; 8] = [
    "/peers/{username}",
    "/peers/",
    "/healthz",
    "/info",
    "/relay",
    "/metrics",
    "/openapi.json",
    "other",
];
/// Status codes counted one by one; any other is counted as 0.
const STATUSES: [u16; 16] =
    [200, 201, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 500, 503, 0, 0];

/// Request and outcome counters. Labels come from fixed sets (routes, status codes, error
/// codes), never from input, so nothing here grows with traffic. Requests are counted with
/// atomics: every request passes here, and a lock would be contended.
pub(crate) struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; ROUTES.len()],
    rejections: Mutex<BTreeMap<&'static str, u64>>,
    registrations: Mutex<BTreeMap<&'static str, u64>>,
    /// Lookups that found the name, and that did not.
    lookups: [AtomicU64; 2],
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            rejections: Mutex::default(),
            registrations: Mutex::default(),
            lookups: Default::default(),
        }
    }
}

impl Metrics {
    pub(crate) fn request(&self, route: usize, status: u16) {
        let s = STATUSES[..14].iter().position(|&c| c == status).unwrap_or(14);
        if let Some(row) = self.requests.get(route) {
            row[s].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn lookup(&self, found: bool) {
        self.lookups[usize::from(found)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejection(&self, code: &'static str) {
        *self.rejections.lock().unwrap_or_else(|e| e.into_inner()).entry(code).or_default() += 1;
    }

    pub(crate) fn registration(&self, kind: &'static str) {
        *self.registrations.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default() += 1;
    }

    pub(crate) fn render(&self, bindings: usize, online: usize) -> String {
        let mut out = String::with_capacity(2048);
        let _ = writeln!(
            out,
            "# HELP tincan_phonebook_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE tincan_phonebook_requests_total counter");
        for (route, row) in ROUTES.iter().zip(&self.requests) {
            for (status, n) in STATUSES.iter().zip(row) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let status = if *status == 0 { "other".to_owned() } else { status.to_string() };
                    let _ = writeln!(
                        out,
                        "tincan_phonebook_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP tincan_phonebook_rejections_total Refused requests by error code."
        );
        let _ = writeln!(out, "# TYPE tincan_phonebook_rejections_total counter");
        for (code, n) in self.rejections.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "tincan_phonebook_rejections_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP tincan_phonebook_registrations_total Accepted records: new bindings and refreshes."
        );
        let _ = writeln!(out, "# TYPE tincan_phonebook_registrations_total counter");
        for (kind, n) in self.registrations.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "tincan_phonebook_registrations_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP tincan_phonebook_lookups_total Lookups of one username.");
        let _ = writeln!(out, "# TYPE tincan_phonebook_lookups_total counter");
        for (outcome, n) in ["not-found", "found"].iter().zip(&self.lookups) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "tincan_phonebook_lookups_total{{outcome=\"{outcome}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP tincan_phonebook_bindings Usernames bound to a key.");
        let _ = writeln!(out, "# TYPE tincan_phonebook_bindings gauge");
        let _ = writeln!(out, "tincan_phonebook_bindings {bindings}");
        let _ =
            writeln!(out, "# HELP tincan_phonebook_online Users whose presence has not expired.");
        let _ = writeln!(out, "# TYPE tincan_phonebook_online gauge");
        let _ = writeln!(out, "tincan_phonebook_online {online}");
        out
    }
}
