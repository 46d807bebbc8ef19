//! The run's trace: a hash of everything that happened (for determinism checks) and, when asked
//! for, readable lines, one per message, fault and role change.

/// Accumulates the trace of one run.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
    events: u64,
}

impl Trace {
    /// A trace that keeps readable lines only if `keep_lines`.
    pub fn new(keep_lines: bool) -> Self {
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            lines: keep_lines.then(Vec::new),
            events: 0,
        }
    }

    /// Records one event: `words` feed the hash; `line` is built only when lines are kept.
    pub fn record(&mut self, time: u64, words: &[u64], line: impl FnOnce() -> String) {
        self.events += 1;
        self.mix(time);
        for &w in words {
            self.mix(w);
        }
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{:>10.3}ms {}", time as f64 / 1000.0, line()));
        }
    }

    fn mix(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Number of recorded events.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The readable lines, if kept.
    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }
}

/// A short string for a word of text, hashed into the trace.
pub fn tag(s: &str) -> u64 {
    s.bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)))
}
