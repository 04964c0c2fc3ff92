//! The one judge of the virtio-pci interrupt chain.
//!
//! Every source of evidence in virq produces [`virq_events::Event`]s: the simulated Windows 7
//! run of `virq check`, the real Linux guest on KVM, and the doctor's parsers of a user's logs.
//! This crate is the only code that turns evidence into verdicts: the checklist's seven steps
//! (section 6) and every row of the failure catalogue, each answered *holds*, *broken* (with the
//! quoted proof and the fix), *cannot tell* (naming the evidence that is missing) or *one of
//! rows A, B, C* (naming what would tell them apart).
//!
//! Evidence is judged per device and per start: a capture that holds three starts of a driver,
//! an `lspci` with many functions, or a `/proc/interrupts` with several virtio devices gives one
//! [`Subject`] each, and nothing seen in one start proves or disproves another. Order is only
//! compared inside one source (one file, or one run); facts from different files are combined
//! as facts. Memory is bounded whatever the input size: what a rule needs is kept wherever it
//! appears, and when a bound let something go the affected rules answer *cannot tell*.
//!
//! ```
//! use virq_events::{Event, EventKind, Origin};
//! let ev = |kind| Event { seq: 0, time_ns: None, device: None, origin: Origin::Run, kind };
//! let judgement = virq_judge::judge(&[ev(EventKind::DeviceReset)]);
//! assert_eq!(judgement.subjects.len(), 1);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod catalogue;
pub mod describe;
mod facts;
mod kept;
mod link;
mod rules;
mod trail;

pub use catalogue::{ROWS, Row, STEPS, row};

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use virq_events::{Event, EventKind, Origin};

use crate::trail::Trail;

/// What a check concluded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Verdict {
    /// The evidence shows this link works (or, for a row, that this failure is not present).
    Holds,
    /// The evidence shows this link is broken.
    Broken,
    /// The evidence needed is not there; `missing` says what to capture.
    CannotTell {
        /// The evidence to capture.
        missing: String,
    },
    /// Something is broken, and it is one of these rows; `tell_apart` says what evidence
    /// would separate them.
    OneOf {
        /// The catalogue rows it can be.
        rows: Vec<u8>,
        /// The evidence that would tell them apart.
        tell_apart: String,
    },
}

impl Verdict {
    /// Something is broken: a definite `Broken`, or one of several rows.
    pub fn is_broken(&self) -> bool {
        matches!(self, Verdict::Broken | Verdict::OneOf { .. })
    }

    /// The evidence shows the link works.
    pub fn is_holds(&self) -> bool {
        matches!(self, Verdict::Holds)
    }

    fn rank(&self) -> u8 {
        match self {
            Verdict::Holds => 0,
            Verdict::CannotTell { .. } => 1,
            Verdict::OneOf { .. } => 2,
            Verdict::Broken => 3,
        }
    }
}

/// Which question an answer is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "number")]
pub enum Check {
    /// A step of the checklist (section 6), 1-7.
    Step(u8),
    /// A failure-catalogue row, 1-30.
    Row(u8),
}

/// One judged question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The step or row asked about.
    pub check: Check,
    /// Its title: the step's link or the row's failure.
    pub title: String,
    /// What the evidence concluded.
    pub verdict: Verdict,
    /// What the evidence shows, in one line.
    pub finding: String,
    /// The events the verdict rests on (bounded).
    pub proof: Vec<Event>,
    /// For a step: the catalogue rows that break it. For a row: itself when broken.
    pub rows: Vec<u8>,
    /// What to change, when something is broken.
    pub fix: Option<String>,
}

/// The judgement of one device during one start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// PCI function (`00:04.0`) or name (`virtio0`) when the evidence says; `None` when no
    /// source named the device.
    pub device: Option<String>,
    /// Which start (1-based) of how many the sources showed for this device.
    pub start: usize,
    /// How many starts the sources showed for this device.
    pub starts: usize,
    /// The line that began this start, when a source marked one.
    pub label: Option<String>,
    /// The seven steps, in order.
    pub steps: Vec<Answer>,
    /// Rows 1-30, in order.
    pub rows: Vec<Answer>,
    /// Evidence a bound let go, per source: the reason some answers are *cannot tell*.
    pub lost: Vec<String>,
    /// How many events the subject's sources gave.
    pub events: u64,
}

/// The overall state of a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Every step holds.
    Holds,
    /// Something is broken.
    Broken,
    /// Nothing is broken, but some step could not be judged.
    Incomplete,
}

impl Subject {
    /// Rows the evidence proves broken.
    pub fn broken_rows(&self) -> BTreeSet<u8> {
        self.rows
            .iter()
            .filter(|a| a.verdict == Verdict::Broken)
            .filter_map(|a| match a.check {
                Check::Row(n) => Some(n),
                Check::Step(_) => None,
            })
            .collect()
    }

    /// Rows named as candidates ("one of").
    pub fn candidate_rows(&self) -> BTreeSet<u8> {
        self.rows
            .iter()
            .filter(|a| matches!(a.verdict, Verdict::OneOf { .. }))
            .filter_map(|a| match a.check {
                Check::Row(n) => Some(n),
                Check::Step(_) => None,
            })
            .collect()
    }

    /// Broken if any answer is, holds if every step holds, otherwise incomplete.
    pub fn overall(&self) -> Overall {
        if self
            .steps
            .iter()
            .chain(&self.rows)
            .any(|a| a.verdict.is_broken())
        {
            Overall::Broken
        } else if self.steps.iter().all(|a| a.verdict.is_holds()) {
            Overall::Holds
        } else {
            Overall::Incomplete
        }
    }

    /// Step `n` (1-7; clamped).
    pub fn step(&self, n: u8) -> &Answer {
        &self.steps[usize::from(n.clamp(1, 7)) - 1]
    }

    /// Row `n` (1-30; clamped).
    pub fn row(&self, n: u8) -> &Answer {
        &self.rows[usize::from(n.clamp(1, 30)) - 1]
    }

    /// How the report names this subject: the device and, with several starts, which one.
    pub fn heading(&self) -> String {
        let device = match &self.device {
            Some(d) => format!("device {d}"),
            None => "the device".to_string(),
        };
        if self.starts > 1 {
            format!("{device}, start {} of {}", self.start, self.starts)
        } else {
            device
        }
    }
}

/// Every subject the evidence held.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// One subject per device and start, in the order the evidence named them.
    pub subjects: Vec<Subject>,
}

impl Judgement {
    /// The worst state over all subjects; `None` when there was nothing to judge.
    pub fn overall(&self) -> Option<Overall> {
        let states: Vec<Overall> = self.subjects.iter().map(Subject::overall).collect();
        if states.is_empty() {
            None
        } else if states.contains(&Overall::Broken) {
            Some(Overall::Broken)
        } else if states.contains(&Overall::Incomplete) {
            Some(Overall::Incomplete)
        } else {
            Some(Overall::Holds)
        }
    }

    /// Broken rows over every subject.
    pub fn broken_rows(&self) -> BTreeSet<u8> {
        self.subjects.iter().flat_map(|s| s.broken_rows()).collect()
    }
}

/// Judges a list of events at once.
pub fn judge(events: &[Event]) -> Judgement {
    let mut j = Judge::new();
    for e in events {
        j.observe(e);
    }
    j.finish()
}

/// A source: a file (by path) or a run.
#[derive(Default)]
struct Stream {
    /// Per start, per device (by its index in [`Judge::devices`]), the trail.
    sessions: Vec<BTreeMap<Option<u32>, Trail>>,
    /// A start that began on a marker and has seen nothing since: another marker joins it.
    fresh_marker: bool,
    /// Position of the next event in this source.
    pos: u64,
}

/// Streams a judge follows at most; beyond, events join the last one (a user does not hand
/// over more files than this).
const MAX_STREAMS: usize = 4096;
/// Starts kept per stream; beyond, later starts are folded into the last one and noted.
const MAX_SESSIONS: usize = 256;

/// The streaming judge: feed it events in each source's order, then [`Judge::finish`].
#[derive(Default)]
pub struct Judge {
    streams: Vec<Stream>,
    names: BTreeMap<String, usize>,
    order: Vec<String>,
    lost: BTreeMap<String, u64>,
    /// Devices as events name them, and their normalised names (interned: an event costs a
    /// look-up, not an allocation).
    device_ids: BTreeMap<String, u32>,
    devices: Vec<String>,
}

/// One source's starts, each a map from device to trail, once devices have their names.
pub(crate) type Starts = Vec<BTreeMap<Option<String>, Trail>>;

impl Judge {
    /// A judge that has seen no event yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the judge that a source let evidence go before it reached the judge (lines cut at
    /// a length limit, say): the subjects of that source report it.
    pub fn note_lost(&mut self, source: &str, what: &str, count: u64) {
        if count > 0 {
            *self.lost.entry(format!("{source}: {what}")).or_insert(0) += count;
        }
    }

    fn stream_key(e: &Event) -> &str {
        match &e.origin {
            Origin::File { path, .. } => path,
            Origin::Run => "run",
        }
    }

    fn device_id(&mut self, raw: &str) -> u32 {
        if let Some(id) = self.device_ids.get(raw) {
            return *id;
        }
        let name = normalize_device(raw);
        let id = match self.devices.iter().position(|d| *d == name) {
            Some(i) => i as u32,
            None => {
                self.devices.push(name);
                self.devices.len() as u32 - 1
            }
        };
        self.device_ids.insert(raw.to_string(), id);
        id
    }

    /// Folds one event into its source's current start.
    pub fn observe(&mut self, e: &Event) {
        let key = Self::stream_key(e);
        let idx = match self.names.get(key) {
            Some(i) => *i,
            None if self.streams.len() < MAX_STREAMS => {
                self.streams.push(Stream::default());
                self.order.push(key.to_string());
                self.names.insert(key.to_string(), self.streams.len() - 1);
                self.streams.len() - 1
            }
            None => self.streams.len() - 1,
        };
        let device = e.device.as_deref().map(|d| self.device_id(d));
        let stream = &mut self.streams[idx];
        // Sources mark where a new start begins (a driver's resource dump after it ran, a
        // kernel's boot banner); a marker with nothing since the last one adds nothing.
        let marker = matches!(e.kind, EventKind::SessionStart { .. });
        let new_start = marker && !stream.fresh_marker && !stream.sessions.is_empty();
        if stream.sessions.is_empty() || (new_start && stream.sessions.len() < MAX_SESSIONS) {
            stream.sessions.push(BTreeMap::new());
        } else if new_start {
            *self
                .lost
                .entry(format!(
                    "{}: starts beyond {MAX_SESSIONS}, judged with the last",
                    self.order[idx]
                ))
                .or_insert(0) += 1;
        }
        stream.fresh_marker = marker;
        let pos = stream.pos;
        stream.pos += 1;
        let session = stream.sessions.last_mut().expect("a start");
        session.entry(device).or_default().observe(e, pos);
    }

    /// Assembles the subjects and judges each.
    pub fn finish(self) -> Judgement {
        let devices = self.devices;
        let mut streams: Vec<Starts> = self
            .streams
            .into_iter()
            .map(|s| {
                s.sessions
                    .into_iter()
                    .map(|m| {
                        m.into_iter()
                            .map(|(d, t)| (d.map(|i| devices[i as usize].clone()), t))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        link::resolve(&mut streams);
        let named: BTreeSet<String> = streams
            .iter()
            .flat_map(|s| s.iter().flat_map(|m| m.keys().flatten().cloned()))
            .collect();
        // Evidence that names no device belongs to the one device the others name; with
        // several, it is judged on its own.
        let only = (named.len() == 1)
            .then(|| named.iter().next().cloned())
            .flatten();
        let mut per_device: BTreeMap<Option<String>, Vec<(usize, Vec<Trail>)>> = BTreeMap::new();
        for (idx, stream) in streams.into_iter().enumerate() {
            let mut by_device: BTreeMap<Option<String>, Vec<Trail>> = BTreeMap::new();
            for session in stream {
                let mut here: BTreeMap<Option<String>, Trail> = BTreeMap::new();
                for (device, trail) in session {
                    let device = device.or_else(|| only.clone());
                    match here.get_mut(&device) {
                        Some(t) => t.absorb(trail),
                        None => {
                            here.insert(device, trail);
                        }
                    }
                }
                for (device, trail) in here {
                    by_device.entry(device).or_default().push(trail);
                }
            }
            for (device, trails) in by_device {
                per_device.entry(device).or_default().push((idx, trails));
            }
        }
        // With several devices named, evidence that names none and says nothing a rule can
        // use (a console's free text) is not a device of its own.
        if per_device.len() > 1
            && per_device
                .get(&None)
                .is_some_and(|s| s.iter().all(|(_, t)| t.iter().all(|t| !t.has_evidence())))
        {
            per_device.remove(&None);
        }
        let mut subjects = Vec::new();
        for (device, streams) in per_device {
            let starts = streams.iter().map(|(_, t)| t.len()).max().unwrap_or(1);
            let mut by_start: Vec<Vec<(usize, Trail)>> = (0..starts).map(|_| Vec::new()).collect();
            for (idx, trails) in streams {
                // A source with fewer starts than another is aligned to the latest ones: a
                // `!pci` dump saved after the capture shows the state of the last start.
                let offset = starts - trails.len();
                for (i, t) in trails.into_iter().enumerate() {
                    by_start[offset + i].push((idx, t));
                }
            }
            for (i, trails) in by_start.into_iter().enumerate() {
                if trails.is_empty() {
                    continue;
                }
                let mut lost: Vec<String> = self
                    .lost
                    .iter()
                    .filter(|(k, _)| {
                        trails
                            .iter()
                            .any(|(idx, _)| k.starts_with(&format!("{}: ", self.order[*idx])))
                    })
                    .map(|(k, n)| format!("{k} ({n})"))
                    .collect();
                let source_lost = !lost.is_empty();
                for (idx, t) in &trails {
                    for (what, n) in t.dropped() {
                        lost.push(format!("{}: {what} ({n} not kept)", self.order[*idx]));
                    }
                }
                let label = trails.iter().find_map(|(_, t)| {
                    t.label.as_ref().and_then(|e| match &e.kind {
                        EventKind::SessionStart { label } => Some(label.clone()),
                        _ => None,
                    })
                });
                let events = trails.iter().map(|(_, t)| t.events).sum();
                let trails: Vec<Trail> = trails.into_iter().map(|(_, t)| t).collect();
                let facts = facts::Facts::new(&trails, source_lost);
                let (steps, rows) = rules::judge(&facts);
                subjects.push(Subject {
                    device: device.clone(),
                    start: i + 1,
                    starts,
                    label,
                    steps,
                    rows,
                    lost,
                    events,
                });
            }
        }
        Judgement { subjects }
    }
}

/// `0000:00:04.0` and `00:04.0` name the same function; names (`virtio0`) stay as they are.
pub fn normalize_device(d: &str) -> String {
    let t = d.trim();
    let lower = t.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split(':').collect();
    let bdf = match parts.as_slice() {
        [domain, bus, devfn]
            if domain.len() == 4 && domain.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            (domain == &"0000").then(|| format!("{bus}:{devfn}"))
        }
        [_, _] => Some(lower.clone()),
        _ => None,
    };
    bdf.unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests;
