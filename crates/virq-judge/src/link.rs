//! Tying evidence to the device it is about when its source did not say: a Linux handler
//! name (`virtio0`) is the PCI function whose line or messages it serves, and a kernel report
//! about IRQ N belongs to every device whose interrupt is IRQ N. Done once, before subjects are
//! assembled, so a `/proc/interrupts` slice, a `dmesg` and an `lspci` of the same machine judge
//! each device once, under its PCI address.

use std::collections::{BTreeMap, BTreeSet};

use virq_events::EventKind;

use crate::Starts;
use crate::trail::Trail;

/// Whether a device key is a PCI address (`00:04.0`).
fn is_bdf(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 7 && b[2] == b':' && b[5] == b'.'
}

/// The `virtioN` names a handler name mentions (`virtio0-req.0`, `virtio3`).
pub(crate) fn virtio_names(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in name.split([',', ' ']) {
        let part = part.trim();
        if let Some(rest) = part.strip_prefix("virtio") {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if !digits.is_empty() {
                out.push(format!("virtio{digits}"));
            }
        }
    }
    out
}

pub(crate) fn resolve(streams: &mut [Starts]) {
    // Who owns which IRQ, and which handler names belong to which PCI function.
    let mut irq_owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut alias: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for stream in streams.iter() {
        for session in stream.iter() {
            for (device, trail) in session {
                let Some(d) = device else { continue };
                for e in trail.intx_routes.iter() {
                    if let EventKind::IntxRouted { irq, .. } = e.kind {
                        irq_owners
                            .entry(irq.to_string())
                            .or_default()
                            .insert(d.clone());
                    }
                }
                for row in trail.irq_rows.values() {
                    if is_bdf(d) {
                        for n in virtio_names(&row.name) {
                            alias.entry(n).or_default().insert(d.clone());
                        }
                    }
                }
            }
        }
    }
    // A handler name on a line IRQ that exactly one PCI function is routed to.
    for stream in streams.iter() {
        for session in stream.iter() {
            for (device, trail) in session {
                for row in trail.irq_rows.values() {
                    let owners: Vec<&String> = irq_owners
                        .get(&row.irq)
                        .map(|o| o.iter().filter(|d| is_bdf(d)).collect())
                        .unwrap_or_default();
                    let names = virtio_names(&row.name);
                    if let ([owner], [name]) = (owners.as_slice(), names.as_slice()) {
                        alias
                            .entry(name.clone())
                            .or_default()
                            .insert((*owner).clone());
                    }
                    let _ = device;
                }
            }
        }
    }
    let alias: BTreeMap<String, String> = alias
        .into_iter()
        .filter(|(_, to)| to.len() == 1)
        .map(|(from, to)| (from, to.into_iter().next().expect("one")))
        .collect();
    for stream in streams.iter_mut() {
        for session in stream.iter_mut() {
            // Rename aliased devices.
            let renamed: Vec<String> = session
                .keys()
                .flatten()
                .filter(|d| alias.contains_key(*d))
                .cloned()
                .collect();
            for from in renamed {
                if let Some(t) = session.remove(&Some(from.clone())) {
                    let to = Some(alias[&from].clone());
                    match session.get_mut(&to) {
                        Some(existing) => existing.absorb(t),
                        None => {
                            session.insert(to, t);
                        }
                    }
                }
            }
            // Hand IRQ evidence that names no device to the devices that own the IRQ.
            let Some(unnamed) = session.get_mut(&None) else {
                continue;
            };
            let moved = unnamed.take_irq_evidence(|irq, name| {
                let mut to: BTreeSet<String> = irq_owners.get(irq).cloned().unwrap_or_default();
                if let Some(name) = name {
                    for n in virtio_names(name) {
                        to.insert(alias.get(&n).cloned().unwrap_or(n));
                    }
                }
                to.into_iter().collect()
            });
            for (device, t) in moved {
                match session.get_mut(&Some(device.clone())) {
                    Some(existing) => existing.absorb(t),
                    None => {
                        session.insert(Some(device), t);
                    }
                }
            }
            if session.get(&None).is_some_and(Trail::is_empty) {
                session.remove(&None);
            }
        }
    }
}
