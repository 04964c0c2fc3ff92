//! Facts derived once from the evidence that several rules share: the interrupt mode, the
//! grant, the connected objects, the last state of every vector selector.

use std::collections::{BTreeMap, BTreeSet};
use virq_events::{Event, EventKind, InterruptMode, NO_VECTOR, Selector};

/// A write or read of a vector selector.
#[derive(Clone, Copy, Debug)]
pub struct SelectorAccess<'a> {
    pub idx: usize,
    pub event: &'a Event,
    pub selector: Selector,
    /// What the driver wrote (`None` for a plain read).
    pub written: Option<u16>,
    /// What the register held afterwards.
    pub value: u16,
}

impl SelectorAccess<'_> {
    /// The driver meant to route this source to a vector.
    pub fn intended(&self) -> bool {
        self.written.is_some_and(|w| w != NO_VECTOR)
    }
}

/// The latest known state of one selector.
#[derive(Clone, Copy, Debug)]
pub struct SelectorState<'a> {
    pub last: SelectorAccess<'a>,
    /// The last write that meant a vector, if any.
    pub last_intended: Option<SelectorAccess<'a>>,
    /// A reset that came after the last access (so the register is 0xFFFF now).
    pub reset_after: Option<&'a Event>,
}

impl SelectorState<'_> {
    /// The value the selector holds now, as far as the evidence shows.
    pub fn current(&self) -> u16 {
        if self.reset_after.is_some() {
            NO_VECTOR
        } else {
            self.last.value
        }
    }
}

pub fn selector_name(s: Selector) -> String {
    match s {
        Selector::MsixConfig => "msix_config".to_string(),
        Selector::Queue(q) => format!("queue {q} queue_msix_vector"),
    }
}

/// The mode a `/proc/interrupts` action name implies: `virtio0-config` / `virtio0-req.0`
/// are per-vector MSI-X handlers; a bare `virtio0` is the shared line handler.
pub fn linux_irq_mode(name: &str) -> Option<InterruptMode> {
    name.split(',').find_map(|part| {
        let rest = part.trim().strip_prefix("virtio")?;
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        if rest.is_empty() {
            Some(InterruptMode::Intx)
        } else if rest.starts_with('-') {
            Some(InterruptMode::Message)
        } else {
            None
        }
    })
}

pub struct Facts<'a> {
    pub resources: Vec<&'a Event>,
    pub connected: Vec<&'a Event>,
    pub accesses: Vec<SelectorAccess<'a>>,
    pub resets: Vec<(usize, &'a Event)>,
    /// Any `device_status` write or reset was logged (so the absence of a reset means something).
    pub status_logged: bool,
    pub caps: Vec<&'a Event>,
    pub counters: Vec<&'a Event>,
    pub irqs: Vec<&'a Event>,
    pub logs: Vec<&'a Event>,
    pub budget: Vec<&'a Event>,
    pub isr_reads: Vec<&'a Event>,
    pub isr_runs: Vec<&'a Event>,
    pub intx_pending: Vec<&'a Event>,
    /// Every INTx pending-state reading (PCI Status bit 3), pending or not.
    pub intx_status: Vec<&'a Event>,
    pub pci_commands: Vec<&'a Event>,
    pub msix_entries: Vec<&'a Event>,
    pub queue_enables: Vec<(usize, &'a Event)>,
    pub intx_routes: Vec<&'a Event>,
}

impl<'a> Facts<'a> {
    pub fn new(events: &'a [Event]) -> Self {
        let mut f = Facts {
            resources: Vec::new(),
            connected: Vec::new(),
            accesses: Vec::new(),
            resets: Vec::new(),
            status_logged: false,
            caps: Vec::new(),
            counters: Vec::new(),
            irqs: Vec::new(),
            logs: Vec::new(),
            budget: Vec::new(),
            isr_reads: Vec::new(),
            isr_runs: Vec::new(),
            intx_pending: Vec::new(),
            intx_status: Vec::new(),
            pci_commands: Vec::new(),
            msix_entries: Vec::new(),
            queue_enables: Vec::new(),
            intx_routes: Vec::new(),
        };
        for (idx, e) in events.iter().enumerate() {
            match &e.kind {
                EventKind::ResourceAssigned { .. } => f.resources.push(e),
                EventKind::InterruptConnected { .. } => f.connected.push(e),
                EventKind::VectorWritten {
                    selector,
                    written,
                    read_back,
                } => f.accesses.push(SelectorAccess {
                    idx,
                    event: e,
                    selector: *selector,
                    written: Some(*written),
                    value: *read_back,
                }),
                EventKind::VectorRead { selector, value } => f.accesses.push(SelectorAccess {
                    idx,
                    event: e,
                    selector: *selector,
                    written: None,
                    value: *value,
                }),
                EventKind::DeviceReset => {
                    f.status_logged = true;
                    f.resets.push((idx, e));
                }
                EventKind::DeviceStatus { value } => {
                    f.status_logged = true;
                    let next_is_reset = events
                        .get(idx + 1)
                        .is_some_and(|n| matches!(n.kind, EventKind::DeviceReset));
                    if *value == 0 && !next_is_reset {
                        f.resets.push((idx, e));
                    }
                }
                EventKind::MsixCapabilitySeen { .. } => f.caps.push(e),
                EventKind::CounterSummary { .. } => f.counters.push(e),
                EventKind::IrqCount { .. } => f.irqs.push(e),
                EventKind::LogLine { .. } => f.logs.push(e),
                EventKind::InterruptBudgetExhausted { .. } => f.budget.push(e),
                EventKind::IsrRead { .. } => f.isr_reads.push(e),
                EventKind::IsrRan { .. } => f.isr_runs.push(e),
                EventKind::IntxStatus { pending } => {
                    if *pending {
                        f.intx_pending.push(e);
                    }
                    f.intx_status.push(e);
                }
                EventKind::PciCommand { .. } => f.pci_commands.push(e),
                EventKind::MsixEntry { .. } | EventKind::PendingSet { .. } => {
                    f.msix_entries.push(e)
                }
                EventKind::QueueEnabled { .. } => f.queue_enables.push((idx, e)),
                EventKind::IntxRouted { .. } => f.intx_routes.push(e),
                _ => {}
            }
        }
        f
    }

    pub fn message_resources(&self) -> Vec<&'a Event> {
        self.resources
            .iter()
            .copied()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::ResourceAssigned {
                        mode: InterruptMode::Message,
                        ..
                    }
                )
            })
            .collect()
    }

    pub fn intx_resources(&self) -> Vec<&'a Event> {
        self.resources
            .iter()
            .copied()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::ResourceAssigned {
                        mode: InterruptMode::Intx,
                        ..
                    }
                )
            })
            .collect()
    }

    /// Linux per-vector or line handlers seen in `/proc/interrupts`.
    pub fn linux_irqs(&self, mode: InterruptMode) -> Vec<&'a Event> {
        self.irqs
            .iter()
            .copied()
            .filter(|e| match &e.kind {
                EventKind::IrqCount { name, .. } => linux_irq_mode(name) == Some(mode),
                _ => false,
            })
            .collect()
    }

    /// The mode the OS assigned, from resources, connected objects or Linux handler names (in
    /// that order of authority), with the events that show it. The MSI-X capability is left
    /// out on purpose: step 4 compares the two.
    pub fn assigned_mode(&self) -> Option<(InterruptMode, Vec<&'a Event>)> {
        if !self.resources.is_empty() {
            let msg = self.message_resources();
            return Some(if msg.is_empty() {
                (InterruptMode::Intx, self.intx_resources())
            } else {
                (InterruptMode::Message, msg)
            });
        }
        if !self.connected.is_empty() {
            let msg: Vec<&Event> = self
                .connected
                .iter()
                .copied()
                .filter(|e| {
                    matches!(
                        e.kind,
                        EventKind::InterruptConnected {
                            message_signaled: true,
                            ..
                        }
                    )
                })
                .collect();
            return Some(if msg.is_empty() {
                (InterruptMode::Intx, self.connected.clone())
            } else {
                (InterruptMode::Message, msg)
            });
        }
        let msg = self.linux_irqs(InterruptMode::Message);
        if !msg.is_empty() {
            return Some((InterruptMode::Message, msg));
        }
        let line = self.linux_irqs(InterruptMode::Intx);
        if !line.is_empty() {
            return Some((InterruptMode::Intx, line));
        }
        None
    }

    /// The mode, also accepting an enabled MSI-X capability as a sign of message mode.
    pub fn mode(&self) -> Option<InterruptMode> {
        self.assigned_mode().map(|(m, _)| m).or_else(|| {
            self.last_cap()
                .filter(|(en, _, _, _)| *en)
                .map(|_| InterruptMode::Message)
        })
    }

    /// Messages granted: the largest `MessageCount`, or the number of distinct message
    /// descriptors when each carries one message.
    pub fn granted(&self) -> Option<u32> {
        let msg = self.message_resources();
        if msg.is_empty() {
            return None;
        }
        let mut vectors = BTreeSet::new();
        let mut max_count = 0;
        for e in &msg {
            if let EventKind::ResourceAssigned {
                message_count,
                vector,
                ..
            } = e.kind
            {
                max_count = max_count.max(message_count);
                vectors.insert(vector);
            }
        }
        Some(max_count.max(vectors.len() as u32))
    }

    /// Queues the driver programmed (or read) a vector for.
    pub fn queues(&self) -> BTreeSet<u16> {
        self.accesses
            .iter()
            .filter_map(|a| match a.selector {
                Selector::Queue(q) => Some(q),
                Selector::MsixConfig => None,
            })
            .collect()
    }

    /// The last MSI-X capability seen: (enabled, function masked, table size, event).
    pub fn last_cap(&self) -> Option<(bool, bool, u16, &'a Event)> {
        self.caps.last().and_then(|e| match e.kind {
            EventKind::MsixCapabilitySeen {
                enabled,
                function_masked,
                table_size,
            } => Some((enabled, function_masked, table_size, *e)),
            _ => None,
        })
    }

    pub fn table_size(&self) -> Option<(u16, &'a Event)> {
        self.caps.iter().rev().find_map(|e| match e.kind {
            EventKind::MsixCapabilitySeen { table_size, .. } if table_size > 0 => {
                Some((table_size, *e))
            }
            _ => None,
        })
    }

    /// (message_signaled, message_number, vector, event) of every connected object.
    pub fn connections(&self) -> Vec<(bool, u32, u32, &'a Event)> {
        self.connected
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::InterruptConnected {
                    message_signaled,
                    message_number,
                    vector,
                    ..
                } => Some((message_signaled, message_number, vector, *e)),
                _ => None,
            })
            .collect()
    }

    /// The latest state of every selector, with any reset that followed it.
    pub fn selector_states(&self) -> BTreeMap<Selector, SelectorState<'a>> {
        let mut out: BTreeMap<Selector, SelectorState<'a>> = BTreeMap::new();
        for a in &self.accesses {
            let prev_intended = out.get(&a.selector).and_then(|s| s.last_intended);
            out.insert(
                a.selector,
                SelectorState {
                    last: *a,
                    last_intended: if a.intended() {
                        Some(*a)
                    } else {
                        prev_intended
                    },
                    reset_after: None,
                },
            );
        }
        for state in out.values_mut() {
            state.reset_after = self
                .resets
                .iter()
                .find(|(i, _)| *i > state.last.idx)
                .map(|(_, e)| *e);
        }
        out
    }

    /// Whether the driver wanted message interrupts: it programmed a real vector. An MSI-X
    /// capability alone does not count (a driver may choose INTx on purpose); when the driver
    /// did want messages, the capability is added as supporting proof.
    pub fn message_wanted(&self) -> Vec<&'a Event> {
        let mut v: Vec<&Event> = self
            .accesses
            .iter()
            .filter(|a| a.intended())
            .map(|a| a.event)
            .take(3)
            .collect();
        if let (false, Some((_, _, _, cap))) = (v.is_empty(), self.last_cap()) {
            v.push(cap);
        }
        v
    }

    /// When no access to `msix_config` was logged but a reset was, and queue selectors were
    /// programmed after it: the reset set `msix_config` to 0xFFFF and nothing changed it since.
    /// Returns that reset.
    pub fn config_never_written_since_reset(&self) -> Option<&'a Event> {
        if self
            .accesses
            .iter()
            .any(|a| a.selector == Selector::MsixConfig)
        {
            return None;
        }
        let first_queue = self.accesses.iter().map(|a| a.idx).min()?;
        self.resets
            .iter()
            .rev()
            .find(|(i, _)| *i < first_queue)
            .map(|(_, e)| *e)
    }
}
