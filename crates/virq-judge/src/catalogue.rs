//! The failure catalogue (`shared/failure-catalogue.md`) as data: each row's title, the
//! checklist step whose link it breaks, and its fix. Rules refer to rows by number; the text
//! lives here once.

/// One catalogue row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// The row's number, 1-30.
    pub number: u8,
    /// The checklist step (section 6) whose link this row breaks.
    pub step: u8,
    /// What goes wrong, as the catalogue's title says it.
    pub title: &'static str,
    /// What to change to fix it.
    pub fix: &'static str,
}

/// Rows 1-30 in order.
pub const ROWS: [Row; 30] = [
    Row {
        number: 1,
        step: 7,
        title: "INTx ISR never reads the virtio ISR status register",
        fix: "read ISR status first thing in the INTx ISR; return FALSE when it reads 0",
    },
    Row {
        number: 2,
        step: 6,
        title: "vectors programmed before the last reset (or never re-programmed after one)",
        fix: "program msix_config and every queue_msix_vector after every reset, before DRIVER_OK, and read them back",
    },
    Row {
        number: 3,
        step: 5,
        title: "APIC/IDT Vector written instead of MessageNumber",
        fix: "program the MSI-X table entry index (MessageNumber from WdfInterruptGetInfo), not the IDT Vector",
    },
    Row {
        number: 4,
        step: 5,
        title: "fewer messages granted than 1 + queues, driver assumes per-queue vectors",
        fix: "fall back when fewer messages are granted: config and all queues on message 0 (or Linux's ladder: per-queue, shared, INTx)",
    },
    Row {
        number: 5,
        step: 6,
        title: "config vector never set (left 0xFFFF) while queues use MSI-X",
        fix: "route the config interrupt to a message (share message 0)",
    },
    Row {
        number: 6,
        step: 5,
        title: "message number lost or changed after a resource rebalance",
        fix: "cache each interrupt object's MessageNumber at creation and program that after every rebalance",
    },
    Row {
        number: 7,
        step: 3,
        title: "an interrupt object created beyond the messages granted",
        fix: "create one interrupt object per granted message; fold extra work into message 0",
    },
    Row {
        number: 8,
        step: 7,
        title: "ISR indexes per-message state with an unmapped message ID",
        fix: "size per-message state by the granted message count and bound-check the message ID",
    },
    Row {
        number: 9,
        step: 7,
        title: "message ID 0 treated as \"not a message interrupt\"",
        fix: "test MessageSignaled, not the message ID, to tell message interrupts apart",
    },
    Row {
        number: 10,
        step: 6,
        title: "queue enabled before all vectors succeed, then setup retried without reset",
        fix: "enable queues only after the whole vector plan read back right; reset before retrying",
    },
    Row {
        number: 11,
        step: 7,
        title: "shared INTx line: one device's ISR status never read",
        fix: "every INTx handler on a shared line must read its own ISR status",
    },
    Row {
        number: 12,
        step: 7,
        title: "surprise removal: ISR reads 0xFF, config reads all ones",
        fix: "treat an ISR status of 0xFF as not ours and stop the device",
    },
    Row {
        number: 13,
        step: 1,
        title: "message interrupts wanted but INF keys missing or in the wrong section",
        fix: "put MSISupported=1 (and MessageNumberLimit) under \"Interrupt Management\\MessageSignaledInterruptProperties\" in an AddReg of the .HW section",
    },
    Row {
        number: 14,
        step: 4,
        title: "MSI-X enabled but the device still raises INTx",
        fix: "when MSI-X is enabled, never assert INTx",
    },
    Row {
        number: 15,
        step: 7,
        title: "MSI-X message sent while Enable is clear or a mask is set",
        fix: "honour Enable, the function mask and the entry mask; set the PBA bit and deliver on unmask",
    },
    Row {
        number: 16,
        step: 4,
        title: "MSI-X Message Control write ignored: MSI-X never enables",
        fix: "decode every access width and offset into the MSI-X capability",
    },
    Row {
        number: 17,
        step: 6,
        title: "vector selectors not 0xFFFF after reset",
        fix: "the device must reset every vector selector to 0xFFFF",
    },
    Row {
        number: 18,
        step: 6,
        title: "out-of-range vector accepted instead of read back as 0xFFFF",
        fix: "store 0xFFFF for indices >= the MSI-X table size",
    },
    Row {
        number: 19,
        step: 7,
        title: "INTx left asserted (across reset) with nothing pending",
        fix: "the device must lower INTx on reset and whenever ISR status is 0",
    },
    Row {
        number: 20,
        step: 7,
        title: "INTx raised while Command.InterruptDisable is set",
        fix: "gate the INTx pin on Command bit 10 and report the pending state in Status bit 3",
    },
    Row {
        number: 21,
        step: 4,
        title: "MSI-X table smaller than 1 + queues",
        fix: "size the MSI-X table for the config vector plus every queue",
    },
    Row {
        number: 22,
        step: 7,
        title: "ISR status not cleared by the read",
        fix: "the device must clear ISR status on read and ignore writes",
    },
    Row {
        number: 23,
        step: 3,
        title: "interrupt information queried before start (KMDF 1.9 reports zeros)",
        fix: "query WdfInterruptGetInfo in EvtDevicePrepareHardware or EvtInterruptEnable, after start",
    },
    Row {
        number: 24,
        step: 2,
        title: "message count read from the translated descriptor (x64: it is the Group, 0)",
        fix: "count the message descriptors, or read MessageCount from the raw list",
    },
    Row {
        number: 25,
        step: 2,
        title: "the driver's prints never reach the capture (Debug Print Filter)",
        fix: "set HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Debug Print Filter\\IHVDRIVER (or DEFAULT) to 0xF and reboot, or enable verbose kernel output in DbgView",
    },
    Row {
        number: 26,
        step: 5,
        title: "interrupt mode chosen from the INF or the capability instead of the resources",
        fix: "decide the mode and the vector plan from the translated resources at every start",
    },
    Row {
        number: 27,
        step: 6,
        title: "vectors lost across a power transition (device reset on D0 entry)",
        fix: "program and read back the vectors in EvtDeviceD0Entry, after every reset",
    },
    Row {
        number: 28,
        step: 1,
        title: "message interrupts disabled platform-wide although the INF is right",
        fix: "nothing to fix in the driver: make the INTx path correct (rows 1, 11); MSI needs a platform that allows it",
    },
    Row {
        number: 29,
        step: 7,
        title: "device uses the rings (DMA) while Bus Master Enable is clear",
        fix: "gate every device-initiated memory access, not only MSI-X, on Bus Master Enable",
    },
    Row {
        number: 30,
        step: 7,
        title: "stale pending bit delivered after a reset or a re-route",
        fix: "clear the pending bit when the device resets and when its source stops using the entry (PCIe 6.1.4.5; virtio 1.2 2.4.1)",
    },
];

/// The row with this number.
pub fn row(number: u8) -> &'static Row {
    &ROWS[usize::from(number.clamp(1, 30)) - 1]
}

/// The checklist's seven steps (section 6), as `virq check` prints them.
pub const STEPS: [&str; 7] = [
    "Device Manager -> Resources: message interrupts or INTx?",
    "Translated resources: CM_RESOURCE_INTERRUPT_MESSAGE and MessageCount",
    "WdfInterruptGetInfo: MessageNumber of every interrupt object",
    "WinDbg !pci: MSI-X capability present and Enable as expected",
    "Program virtio: msix_config and each queue_msix_vector = MessageNumber",
    "Read back every vector selector while running: no unexpected 0xFFFF",
    "ISR/DPC counters move with known I/O",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_numbered_in_order_and_point_at_a_step() {
        for (i, r) in ROWS.iter().enumerate() {
            assert_eq!(usize::from(r.number), i + 1);
            assert!((1..=7).contains(&r.step), "row {}", r.number);
            assert!(!r.fix.is_empty() && !r.title.is_empty());
        }
        assert_eq!(row(13).step, 1);
    }
}
