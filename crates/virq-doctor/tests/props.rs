//! Property tests: every parser survives arbitrary bytes, cut lines and odd chunking; the rules
//! survive whatever the parsers produce.

use proptest::prelude::*;
use std::io::{BufReader, Read};
use virq_doctor::{ParseLimits, parse_to_vec};

/// Hands out at most `chunk` bytes per read, like a pipe or a slow network share.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

const FRAGMENTS: &[&str] = &[
    "INT: MSI/MSI-X Level=11 Vector=177 Affinity=0x3 MessageCount=3 Flags=0x3",
    "INT: INTx Level=11 Vector=11 Affinity=0xf Flags=0x0",
    "WDFINT: MessageSignaled=1 MessageNumber=0 Vector=225 Irql=11 Affinity=0x1",
    "VIRTIO: msix_config write=0x00e1 read=0xffff MessageNumber=0",
    "VIRTIO: queue=1 queue_msix_vector write=0x0001 read=0x0001 MessageNumber=1",
    "VIRTIO: device_status write=0x00",
    "COUNTERS: INTx isr=184467 dpc=3 LastIsrStatus=0x00",
    "COUNTERS: MessageNumber=1 isr=12 dpc=12 LastMessageID=1",
    "queue 2 msix vector 0x00e1 read back 0xffff",
    "0: kd> !pci 100 0 4 0",
    "    98: CapID          11        MSI-X Capability",
    "    9a: MsgCtrl        TableSize:3 FuncMask:0 MSIXEnable:1",
    "MessageControl 8002",
    "Cmd[0407:imb..i.]  Sts[0018:c....]",
    "  TranslatedResourceList at 0xfffff8a0012f5e60",
    "    Entry 1 - Interrupt (0x2) Device Exclusive (0x1)",
    "      Flags (0x03) - LATCHED MESSAGE",
    "  CmResourceList at 0xfffff8a000d7e9b0  Version 1.1  Interface 0x5  Bus #0",
    "DevNode 0xfffffa80024e5d30 for PDO 0xfffffa80024e8060",
    "PCI Configuration Space (Segment:0000 Bus:00 Device:04 Function:00)",
    "PCI Segment 0 Bus 0",
    "04:0  1af4:1042.01  Cmd[0507:imb..s]  Sts[0010:c....]  Device  SCSI controller",
    "    34: CapPtr         98",
    "Device Private:",
    "    90: 00001000 00000000 80048411 00000001",
    "    98: 11 84 04 80",
    "81:\tfffffa8002391a10 Wdf01000!FxInterrupt::_InterruptThunk (KINTERRUPT fffffa8002391980)",
    " MessageControl.TableSize = 4",
    " MessageControl.MSIXEnable = 1",
    " MessageId = 0",
    " InterruptVector = 81",
    " InterruptLevel = 8",
    " InterruptMode = Latched",
    " Queues 4 msix_vectors 0",
    " MessageID = 3",
    " was not serviced ISR status = 0",
    "[1]0004.0040::12/01/2026-22:35:47.533 [netkvm][f] MSIX message0=00004081=>FEE0100C",
    "Using MSIX interrupts (3 messages, irql 8)",
    "Not using MSIX",
    "12   10:35:48 PM   [1180] vblk: queue 1 msix vector read back 0xffff",
    "[Version]",
    "Signature = \"$WINDOWS NT$\"",
    "[vblk_inst.NT$ARCH$.HW]",
    "AddReg = vblk_msi",
    "HKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", MSISupported, %REG_DWORD%, 1",
    "; a comment",
    "--- intx driver.inf ---",
    "==> pci.txt <==",
    "      Message Count 3, Vector 0xb1, Group 0, Affinity 0x3",
    "0: kd> !irp @rdx",
    "Irp is active with 2 stacks 2 is current (= 0xfffffa8004c2a128)",
    ">[ 1b, 0]   0  0 fffffa8004b7e050 00000000 00000000-00000000",
    "\t\t\tArgs: fffff8a001e3c010 fffff8a001e3d320 00000000 00000000",
    "0: kd> dt -r3 nt!_CM_PARTIAL_RESOURCE_DESCRIPTOR fffff8a0`01e3d348",
    "0: kd> dt nt!_CM_RESOURCE_LIST -r2 fffff8a0`01e3c010",
    "   +0x000 Type             : 0x2 ''",
    "   +0x002 Flags            : 3",
    "      +0x000 MessageInterrupt : <unnamed-tag>",
    "         +0x000 Raw              : <unnamed-tag>",
    "            +0x002 MessageCount     : 0",
    "            +0x004 Vector           : 0x91",
    "         +0x008 PartialDescriptors : [1] _CM_PARTIAL_RESOURCE_DESCRIPTOR",
    "[01] @ fffff8a0`00d80ccc",
    "         +0x008 AllocatedResourcesTranslated : 0xfffff8a0`0199d1e0 _CM_RESOURCE_LIST",
    "0: kd> !dd [uc] fe000000 Lc",
    "#fe000000 fee0100c 00000000 00004081 00000000",
    "#fe000800 00000000`00000004",
    "Bus 0x0 (FDO Ext fffffa8001c2b190)",
    "  0100 10421af4 (d=4,  f=0) devext fffffa8001c3e1b0 Mass Storage Controller/SCSI",
    "    20: BAR4           fe00000c",
    "           CPU0       CPU1",
    " 25:       2113        118   PCI-MSI 65537-edge      virtio0-req.0",
    " 11:     186540   IO-APIC  11-fasteoi   uhci_hcd:usb1, virtio0",
    "00:04.0 SCSI storage controller: Red Hat, Inc. Virtio block device",
    "\tControl: I/O+ Mem+ BusMaster+ DisINTx+",
    "\tStatus: Cap+ INTx+",
    "\tInterrupt: pin A routed to IRQ 11",
    "\tCapabilities: [98] MSI-X: Enable+ Count=3 Masked-",
    "[   31.882410] irq 11: nobody cared",
    "1\t0.0001\t[4] ",
    "",
    "[",
    "0x",
    "=",
    "\t",
    "kd>",
    "Vector ",
    "read back",
    "\u{FFFD}",
];

fn parse_bytes(bytes: &[u8], limits: ParseLimits) {
    if let Ok((events, summary)) = parse_to_vec("p.log", bytes, limits) {
        assert!(summary.lines <= bytes.len() as u64 + 1);
        // The judge answers every step and row for every subject, whatever the input.
        let j = virq_judge::judge(&events);
        for s in &j.subjects {
            assert_eq!((s.steps.len(), s.rows.len()), (7, 30));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        parse_bytes(&bytes, ParseLimits::default());
    }

    #[test]
    fn format_shaped_noise_never_panics_and_rules_run(
        parts in proptest::collection::vec((0..FRAGMENTS.len(), 0..4u8, 0..40usize), 0..60),
        max_line in 1usize..120,
    ) {
        let mut text = String::new();
        for (i, sep, cut) in parts {
            let frag = FRAGMENTS[i];
            let mut end = cut.min(frag.len());
            while !frag.is_char_boundary(end) {
                end -= 1;
            }
            text.push_str(if cut >= 30 { frag } else { &frag[..end] });
            text.push_str(["\n", "\r\n", " ", "\t"][sep as usize]);
        }
        let limits = ParseLimits { max_line_bytes: max_line, ..ParseLimits::default() };
        parse_bytes(text.as_bytes(), limits);
        parse_bytes(text.as_bytes(), ParseLimits::default());
    }

    #[test]
    fn truncated_fixture_never_panics(cut in 0usize..4000, max_line in 1usize..200) {
        let all = [
            include_str!("fixtures/windbg-pci-good.txt"),
            include_str!("fixtures/intx-storm.log"),
            include_str!("fixtures/lspci-vvv.txt"),
            include_str!("fixtures/proc-interrupts-pair.txt"),
        ]
        .concat();
        let bytes = &all.as_bytes()[..cut.min(all.len())];
        let limits = ParseLimits { max_line_bytes: max_line, ..ParseLimits::default() };
        parse_bytes(bytes, limits);
    }

    #[test]
    fn chunking_does_not_change_the_result(chunk in 1usize..64, buf in 1usize..64) {
        let text = [
            include_str!("fixtures/good-msix.log"),
            include_str!("fixtures/windbg-pci-good.txt"),
            include_str!("fixtures/intx-storm.log"),
        ]
        .concat();
        let whole = parse_to_vec("c.log", text.as_bytes(), ParseLimits::default()).unwrap();
        let reader = BufReader::with_capacity(buf, Chunked { data: text.as_bytes(), chunk });
        let chunked = parse_to_vec("c.log", reader, ParseLimits::default()).unwrap();
        prop_assert_eq!(whole, chunked);
    }
}
