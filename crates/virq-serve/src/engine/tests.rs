use super::*;

fn session(o: ServeOptions) -> Session {
    Session::new(&o).unwrap()
}

fn ok_value(reply: &str) -> u64 {
    let v = reply
        .trim_end()
        .strip_prefix("OK 0x")
        .unwrap_or_else(|| panic!("not a value reply: {reply:?}"));
    u64::from_str_radix(v, 16).unwrap()
}

/// Thin helpers so the tests read like a driver.
trait Drive {
    fn ok(&mut self, line: &str);
    fn val(&mut self, line: &str) -> u64;
    fn cfg_read(&mut self, off: u8) -> u32;
    fn cfg_write(&mut self, off: u8, v: u32);
}

impl Drive for Session {
    fn ok(&mut self, line: &str) {
        assert_eq!(self.request(line), "OK\n", "{line}");
    }
    fn val(&mut self, line: &str) -> u64 {
        ok_value(&self.request(line))
    }
    fn cfg_read(&mut self, off: u8) -> u32 {
        self.ok(&format!("outl 0xcf8 {:#x}", 0x8000_0800u32 | off as u32));
        self.val("inl 0xcfc") as u32
    }
    fn cfg_write(&mut self, off: u8, v: u32) {
        self.ok(&format!("outl 0xcf8 {:#x}", 0x8000_0800u32 | off as u32));
        self.ok(&format!("outl 0xcfc {v:#x}"));
    }
}

const BAR0: u64 = 0xE000_0000;
const BAR2: u64 = 0xE001_0000;

/// Place BAR0 and BAR2 (64-bit) and enable memory decoding and bus mastering.
fn place_bars(s: &mut Session, msix: bool) {
    s.cfg_write(0x10, BAR0 as u32);
    s.cfg_write(0x14, 0);
    if msix {
        s.cfg_write(0x18, BAR2 as u32);
        s.cfg_write(0x1C, 0);
    }
    s.cfg_write(0x04, 0x0006);
}

/// Status, features and DRIVER_OK for a device whose queues stay disabled.
fn go_live(s: &mut Session) {
    s.ok(&format!("writeb {:#x} 0", BAR0 + 0x14));
    s.ok(&format!("writeb {:#x} 3", BAR0 + 0x14));
    s.ok(&format!("writel {:#x} 1", BAR0 + 0x08));
    s.ok(&format!("writel {:#x} 1", BAR0 + 0x0C));
    s.ok(&format!("writeb {:#x} 11", BAR0 + 0x14));
    assert_eq!(s.val(&format!("readb {:#x}", BAR0 + 0x14)), 11);
    s.ok(&format!("writeb {:#x} 15", BAR0 + 0x14));
}

#[test]
fn port_io_reaches_mechanism_1_and_the_host_bridge() {
    let mut s = session(ServeOptions::default());
    assert_eq!(s.cfg_read(0x00), 0x1042_1AF4);
    s.ok("outl 0xcf8 0x80000000");
    assert_eq!(s.request("inl 0xcfc"), "OK 0x12378086\n");
    assert_eq!(s.request("inw 0xcfe"), "OK 0x1237\n");
    assert_eq!(s.request("inb 0xcfc"), "OK 0x86\n");
    assert_eq!(s.request("inl 0xcf8"), "OK 0x80000000\n");
    // An empty slot reads all ones; so do ports nobody decodes.
    s.ok("outl 0xcf8 0x80001000");
    assert_eq!(s.request("inl 0xcfc"), "OK 0xffffffff\n");
    assert_eq!(s.request("inb 0x61"), "OK 0xff\n");
    s.ok("outb 0x80 0x12");
    s.ok("outw 0x80 0x1234");
    // Interrupt Pin = INTA#; the line register is the client's to fill in.
    assert_eq!(s.cfg_read(0x3C) >> 8 & 0xFF, 1);
}

#[test]
fn bars_stay_unassigned_until_the_client_sizes_and_places_them() {
    let mut s = session(ServeOptions::default());
    assert_eq!(s.cfg_read(0x10), 0x4); // 64-bit memory BAR at 0
    assert!(s.device().bar_address(0).is_none_or(|a| a == 0));
    s.cfg_write(0x10, 0xFFFF_FFFF);
    assert_eq!(s.cfg_read(0x10), 0xFFFF_C004); // 16 KiB
    s.cfg_write(0x14, 0xFFFF_FFFF);
    assert_eq!(s.cfg_read(0x14), 0xFFFF_FFFF);
    // Nothing decodes until BARs are placed and memory decoding is on.
    assert_eq!(
        s.request(&format!("readw {:#x}", BAR0 + 0x10)),
        "OK 0xffff\n"
    );
    place_bars(&mut s, true);
    assert_eq!(s.device().bar_address(0), Some(BAR0));
    assert_eq!(s.device().bar_address(2), Some(BAR2));
    // msix_config reads 0xFFFF after power-on; num_queues is 1.
    assert_eq!(s.val(&format!("readw {:#x}", BAR0 + 0x10)), 0xFFFF);
    assert_eq!(s.val(&format!("readw {:#x}", BAR0 + 0x12)), 1);
    assert_eq!(s.val(&format!("readq {:#x}", BAR0 + 0x20)), 0);
}

#[test]
fn memory_requests_reach_ram_with_every_width() {
    let mut s = session(ServeOptions::default());
    s.ok("writeq 0x1000 0x1122334455667788");
    assert_eq!(s.request("readq 0x1000"), "OK 0x1122334455667788\n");
    assert_eq!(s.request("readl 0x1000"), "OK 0x55667788\n");
    assert_eq!(s.request("readw 0x1006"), "OK 0x1122\n");
    assert_eq!(s.request("readb 0x1007"), "OK 0x11\n");
    s.ok("writeb 0x1000 0xaa");
    s.ok("writew 0x1002 0xbbcc");
    s.ok("writel 4100 0");
    assert_eq!(s.request("read 0x1000 8"), "OK 0xaa77ccbb00000000\n");
    s.ok("write 0x2000 4 0xDEADbeef");
    assert_eq!(s.request("readl 0x2000"), "OK 0xefbeadde\n");
    s.ok("memset 0x2001 2 0x5a");
    assert_eq!(s.request("read 0x2000 4"), "OK 0xde5a5aef\n");
    assert_eq!(s.request("read 0x2000 0"), "OK 0x\n");
    s.ok("memset 0x2000 0 1");
    s.ok("write 0x2000 0 0x");
    // The last bytes of RAM are RAM.
    s.ok("writel 0x3fffffc 0x01020304");
    assert_eq!(s.request("readl 0x3fffffc"), "OK 0x01020304\n");
    s.ok("memset 0 0x1000000 0xff");
    assert_eq!(s.request("readq 0xfffff8"), "OK 0xffffffffffffffff\n");
}

#[test]
fn out_of_ram_and_wrapping_accesses_fail_and_the_session_goes_on() {
    let mut s = session(ServeOptions::default());
    let fail = |r: String| assert!(r.starts_with("FAIL "), "{r}");
    fail(s.request("readl 0x3fffffe")); // straddles the end of RAM
    fail(s.request("writeq 0x3fffffc 0"));
    fail(s.request("readq 0xfffffffffffffffc"));
    fail(s.request("read 0x3ffff00 0x101"));
    fail(s.request("read 0xffffffffffffffff 2"));
    fail(s.request("write 0x4000000 1 0x00"));
    fail(s.request("memset 0xc0000000 16 0"));
    fail(s.request("memset 0 0x1000001 0"));
    fail(s.request("read 0 0xffffffffffffffff"));
    // Unclaimed MMIO reads all ones and drops writes, like a master abort.
    s.ok("writel 0xd0000000 5");
    assert_eq!(s.request("readl 0xd0000000"), "OK 0xffffffff\n");
    assert_eq!(
        s.request("readq 0xfffffffffffffff8"),
        "OK 0xffffffffffffffff\n"
    );
    assert_eq!(s.request("readb 0"), "OK 0x00\n");
    assert_eq!(s.requests(), 13);
}

#[test]
fn bulk_requests_at_the_size_limit_work() {
    let mut s = session(ServeOptions::default());
    s.ok("memset 0x100000 0x1000000 0x3c");
    let r = s.request("read 0x100000 0x1000000");
    assert_eq!(r.len(), "OK 0x".len() + 2 * (16 << 20) + 1);
    assert!(r[5..r.len() - 1].bytes().all(|b| b == b'3' || b == b'c'));
    let line = format!("write 0x100000 0x1000000 0x{}", "a5".repeat(16 << 20));
    s.ok(&line);
    assert_eq!(s.request("readb 0x10fffff"), "OK 0xa5\n");
}

#[test]
fn garbage_never_panics() {
    let mut s = session(ServeOptions::default());
    let lines: Vec<Vec<u8>> = vec![
        b"\x00".to_vec(),
        b"inl".to_vec(),
        b"inl 0xcf8 0xcfc".to_vec(),
        b"outl 0xcf8 -1".to_vec(),
        b"write 0 1 0x".to_vec(),
        b"write 0 99999999999999999999999 0x00".to_vec(),
        b"read 0 1 2".to_vec(),
        b"memset".to_vec(),
        b"virq_events x".to_vec(),
        b"virq_info please".to_vec(),
        "r\u{e9}adl 0".as_bytes().to_vec(),
        vec![0xFF; 300],
        (0..=255u8).collect(),
    ];
    for l in &lines {
        let mut out = Vec::new();
        s.handle_line(l, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("FAIL ") && out.ends_with('\n'), "{out:?}");
        assert_eq!(out.lines().count(), 1, "{out:?}");
    }
    assert_eq!(s.request("inw 0xcfc"), "OK 0xffff\n");
}

#[test]
fn info_describes_the_machine() {
    let mut s = session(ServeOptions {
        queues: Some(2),
        ..ServeOptions::default()
    });
    assert_eq!(
        s.request("virq_info"),
        "OK device=blk bdf=00:01.0 vendor=0x1af4 device_id=0x1042 queues=2 msix_table=3 \
         intx_gsi=17 ram_base=0x0 ram_size=0x4000000 disk_sectors=2048\n"
    );
    let mut s = session(ServeOptions {
        device: DeviceKind::Rng,
        msix_table: Some(0),
        ..ServeOptions::default()
    });
    assert_eq!(
        s.request("virq_info"),
        "OK device=rng bdf=00:01.0 vendor=0x1af4 device_id=0x1044 queues=1 msix_table=0 \
         intx_gsi=17 ram_base=0x0 ram_size=0x4000000\n"
    );
    let mut s = session(ServeOptions {
        device: DeviceKind::Console,
        msix_table: Some(1),
        ..ServeOptions::default()
    });
    assert!(
        s.request("virq_info")
            .contains("device_id=0x1043 queues=2 msix_table=1")
    );
}

#[test]
fn options_the_device_cannot_honour_are_refused() {
    let bad = [
        ServeOptions {
            device: DeviceKind::Rng,
            queues: Some(2),
            ..ServeOptions::default()
        },
        ServeOptions {
            device: DeviceKind::Console,
            queues: Some(1),
            ..ServeOptions::default()
        },
        ServeOptions {
            queues: Some(0),
            ..ServeOptions::default()
        },
        ServeOptions {
            queues: Some(65),
            ..ServeOptions::default()
        },
        ServeOptions {
            msix_table: Some(2049),
            ..ServeOptions::default()
        },
        ServeOptions {
            ram_bytes: 0xC000_1000,
            ..ServeOptions::default()
        },
        ServeOptions {
            ram_bytes: 1000,
            ..ServeOptions::default()
        },
        ServeOptions {
            disk_bytes: 511,
            ..ServeOptions::default()
        },
    ];
    for o in bad {
        assert!(Session::new(&o).is_err(), "{o:?}");
    }
    assert!(
        Session::new(&ServeOptions {
            device: DeviceKind::Console,
            queues: Some(2),
            ..ServeOptions::default()
        })
        .is_ok()
    );
}

/// MSI-X on with table entry 0 = (`address`, data 0x4041) unmasked, the device live and
/// `msix_config` routed to entry 0: `virq_config_change` then sends that message.
fn config_interrupt_on_entry_0(s: &mut Session, address: u32) {
    place_bars(s, true);
    s.ok(&format!("writel {:#x} {address:#x}", BAR2));
    s.ok(&format!("writel {:#x} 0", BAR2 + 4));
    s.ok(&format!("writel {:#x} 0x4041", BAR2 + 8));
    s.ok(&format!("writel {:#x} 0", BAR2 + 12));
    // MSI-X cap: find it and set Enable.
    let mut cap = s.cfg_read(0x34) as u8;
    while s.cfg_read(cap) & 0xFF != 0x11 {
        cap = (s.cfg_read(cap) >> 8) as u8;
    }
    let ctl = s.cfg_read(cap) | 0x8000_0000;
    s.cfg_write(cap, ctl);
    go_live(s);
    s.ok(&format!("writew {:#x} 0", BAR0 + 0x10));
    assert_eq!(s.val(&format!("readw {:#x}", BAR0 + 0x10)), 0);
}

#[test]
fn msix_messages_are_reported_before_the_reply_and_written_to_ram() {
    let mut s = session(ServeOptions::default());
    // Entry 0 -> guest RAM 0x9000.
    config_interrupt_on_entry_0(&mut s, 0x9000);
    assert_eq!(
        s.request("virq_config_change"),
        "IRQ msi 0x9000 0x4041\nOK\n"
    );
    assert_eq!(s.request("readl 0x9000"), "OK 0x00004041\n");
    // With MSI lines off the message still lands in RAM, silently.
    s.ok("writel 0x9000 0");
    s.ok("virq_msi_lines off");
    s.ok("virq_config_change");
    assert_eq!(s.request("readl 0x9000"), "OK 0x00004041\n");
    s.ok("virq_msi_lines on");
    // A message to the APIC window is reported and nothing is written to RAM.
    s.ok(&format!("writel {:#x} 0xfee00000", BAR2));
    assert_eq!(
        s.request("virq_config_change"),
        "IRQ msi 0xfee00000 0x4041\nOK\n"
    );
    // Masking the entry holds the message in the PBA; unmasking delivers it in the reply of
    // the unmasking write.
    s.ok(&format!("writel {:#x} 1", BAR2 + 12));
    s.ok("virq_config_change");
    assert_eq!(s.val(&format!("readq {:#x}", BAR2 + 0x8000)), 1);
    assert_eq!(
        s.request(&format!("writel {:#x} 0", BAR2 + 12)),
        "IRQ msi 0xfee00000 0x4041\nOK\n"
    );
}

#[test]
fn intx_line_changes_are_reported_with_the_gsi() {
    let mut s = session(ServeOptions {
        msix_table: Some(0),
        ..ServeOptions::default()
    });
    place_bars(&mut s, false);
    go_live(&mut s);
    assert_eq!(s.request("virq_config_change"), "IRQ raise 17\nOK\n");
    // Status bit 3 shows the pending interrupt.
    assert_ne!(s.cfg_read(0x04) >> 16 & 0x8, 0);
    assert_eq!(
        s.request(&format!("readb {:#x}", BAR0 + 0x2000)),
        "IRQ lower 17\nOK 0x02\n"
    );
    assert_eq!(s.val(&format!("readb {:#x}", BAR0 + 0x2000)), 0);
    // Interrupt Disable keeps the line low; clearing it raises the pending line at once.
    s.cfg_write(0x04, 0x0406);
    assert_eq!(s.request("virq_config_change"), "OK\n");
    s.ok("outl 0xcf8 0x80000804");
    assert_eq!(s.request("outw 0xcfc 0x0006"), "IRQ raise 17\nOK\n");
    // A device reset lowers the line.
    assert_eq!(
        s.request(&format!("writeb {:#x} 0", BAR0 + 0x14)),
        "IRQ lower 17\nOK\n"
    );
}

#[test]
fn events_dump_the_evidence_as_json_lines() {
    let mut s = session(ServeOptions::default());
    place_bars(&mut s, true);
    s.ok(&format!("writew {:#x} 7", BAR0 + 0x10)); // beyond the table: refused
    let out = s.request("virq_events");
    let lines: Vec<&str> = out.lines().collect();
    let n: usize = lines
        .last()
        .unwrap()
        .strip_prefix("OK ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(n, lines.len() - 1);
    let events: Vec<virq_events::Event> = lines[..n]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().any(|e| e.kind
        == virq_events::EventKind::VectorWritten {
            selector: virq_events::Selector::MsixConfig,
            written: 7,
            read_back: 0xFFFF
        }));
    // FROM skips what the client has already seen.
    let last = events.last().unwrap().seq;
    assert_eq!(s.request(&format!("virq_events {}", last + 1)), "OK 0\n");
    assert_eq!(s.request(&format!("virq_events {last}")).lines().count(), 2);
}

#[test]
fn reset_gives_a_fresh_machine_and_keeps_the_session_settings() {
    let mut s = session(ServeOptions::default());
    place_bars(&mut s, true);
    s.ok("writel 0x100 0x55");
    s.ok("virq_msi_lines off");
    s.ok("virq_reset");
    assert_eq!(s.request("readl 0x100"), "OK 0x00000000\n");
    assert!(s.device().bar_address(0).is_none_or(|a| a == 0));
    assert_eq!(s.request("virq_events"), "OK 0\n");
    assert!(!s.msi_lines);
    assert_eq!(s.cfg_read(0), 0x1042_1AF4);
}

/// qtest clients send `irq_intercept_in` / `irq_intercept_out` before anything else; virq
/// always reports interrupts (docs/serve-protocol.md), so the requests change nothing: they
/// report no `IRQ` line of their own, and afterwards the line's changes (with its GSI) and
/// MSI-X messages (with their address and data) come with the requests that cause them.
#[test]
fn intercept_requests_of_qtest_clients_are_accepted() {
    // INTx, the device live first so that a line change would show in the intercept replies.
    let mut s = session(ServeOptions {
        msix_table: Some(0),
        ..ServeOptions::default()
    });
    place_bars(&mut s, false);
    go_live(&mut s);
    assert_eq!(s.request("irq_intercept_in ioapic"), "OK\n");
    assert_eq!(s.intx_gsi(), 17);
    assert_eq!(s.request("virq_config_change"), "IRQ raise 17\nOK\n");
    // Intercepting while the line is high neither reports nor drops it.
    assert_eq!(
        s.request("irq_intercept_out /machine/unattached/device[0]"),
        "OK\n"
    );
    assert_ne!(
        s.cfg_read(0x04) >> 16 & 0x8,
        0,
        "Interrupt Status still set"
    );
    assert_eq!(
        s.request(&format!("readb {:#x}", BAR0 + 0x2000)),
        "IRQ lower 17\nOK 0x02\n"
    );

    // MSI-X: the message is still a line of its own, before the reply.
    let mut s = session(ServeOptions::default());
    assert_eq!(s.request("irq_intercept_in ioapic"), "OK\n");
    assert_eq!(
        s.request("irq_intercept_out /machine/unattached/device[0]"),
        "OK\n"
    );
    config_interrupt_on_entry_0(&mut s, 0xFEE0_0000);
    assert_eq!(
        s.request("virq_config_change"),
        "IRQ msi 0xfee00000 0x4041\nOK\n"
    );
    assert_eq!(s.request("endianness"), "OK little\n");
}

#[test]
fn the_disk_pattern_is_what_virtio_blk_serves() {
    assert_eq!(disk_byte(0), 0);
    assert_eq!(disk_byte(1), 1);
    assert_eq!(disk_byte(512), 37);
    assert_eq!(disk_byte(5 * 512 + 3), (5u8 * 37).wrapping_add(3));
}

const DESC: u64 = 0x1_0000;
const AVAIL: u64 = 0x1_1000;
const USED: u64 = 0x1_2000;
const HEADER: u64 = 0x2_0000;
const DATA: u64 = 0x2_1000;
const STATUS: u64 = 0x2_2000;
const MSI_RAM: u64 = 0x9000;

/// MSI-X table entry 1 -> `MSI_RAM` (data 0x4022), queue 0 (size 8) on entry 1, live.
fn live_queue(s: &mut Session) {
    config_interrupt_on_entry_0(s, 0xFEE0_0000);
    s.ok(&format!("writel {:#x} {MSI_RAM:#x}", BAR2 + 16));
    s.ok(&format!("writel {:#x} 0", BAR2 + 16 + 4));
    s.ok(&format!("writel {:#x} 0x4022", BAR2 + 16 + 8));
    s.ok(&format!("writel {:#x} 0", BAR2 + 16 + 12));
    // Back to FEATURES_OK to set the queue up, then DRIVER_OK again.
    s.ok(&format!("writeb {:#x} 0", BAR0 + 0x14));
    s.ok(&format!("writeb {:#x} 3", BAR0 + 0x14));
    s.ok(&format!("writel {:#x} 1", BAR0 + 0x08));
    s.ok(&format!("writel {:#x} 1", BAR0 + 0x0C));
    s.ok(&format!("writeb {:#x} 11", BAR0 + 0x14));
    s.ok(&format!("writew {:#x} 0", BAR0 + 0x10));
    s.ok(&format!("writew {:#x} 0", BAR0 + 0x16));
    s.ok(&format!("writew {:#x} 8", BAR0 + 0x18));
    s.ok(&format!("writew {:#x} 1", BAR0 + 0x1A));
    s.ok(&format!("writeq {:#x} {DESC:#x}", BAR0 + 0x20));
    s.ok(&format!("writeq {:#x} {AVAIL:#x}", BAR0 + 0x28));
    s.ok(&format!("writeq {:#x} {USED:#x}", BAR0 + 0x30));
    s.ok(&format!("writew {:#x} 1", BAR0 + 0x1C));
    s.ok(&format!("writeb {:#x} 15", BAR0 + 0x14));
}

/// Post request number `n` (0-based) of `kind` (0 read, 1 write) for `sector`.
fn post(s: &mut Session, n: u16, kind: u32, sector: u64) {
    let ram = s.ram();
    let mut header = kind.to_le_bytes().to_vec();
    header.extend_from_slice(&[0; 4]);
    header.extend_from_slice(&sector.to_le_bytes());
    ram.write(HEADER, &header).unwrap();
    ram.write(STATUS, &[0xFF]).unwrap();
    let data_flags = if kind == 0 { 2 } else { 0 };
    for (i, (addr, len, flags, next)) in [
        (HEADER, 16u32, 1u16, 1u16),
        (DATA, 512, 1 | data_flags, 2),
        (STATUS, 1, 2, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = addr.to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        ram.write(DESC + 16 * i as u64, &d).unwrap();
    }
    ram.write_u16(AVAIL + 4 + 2 * u64::from(n % 8), 0).unwrap();
    ram.write_u16(AVAIL + 2, n + 1).unwrap();
}

fn ram_copy(s: &Session) -> Vec<u8> {
    let mut v = vec![0u8; 0x30000];
    s.ram().read(0, &mut v).unwrap();
    v
}

/// `DMA ADDR LEN` lines of a reply, as (addr, len).
fn dma_ranges(reply: &str) -> Vec<(u64, u64)> {
    reply
        .lines()
        .filter_map(|l| l.strip_prefix("DMA "))
        .map(|r| {
            let (a, l) = r.split_once(' ').unwrap();
            let hex = |x: &str| u64::from_str_radix(x.strip_prefix("0x").unwrap(), 16).unwrap();
            (hex(a), hex(l))
        })
        .collect()
}

/// virtio 1.2, 2.7.8 and 2.7.14: the device writes the data buffer, the status byte and the
/// used ring (entry, then index); the MSI-X message (PCI 3.0, 6.8.3.3) is a write too. Every
/// byte that changed is inside a `DMA` range, every range lies where the device may write,
/// and all of it comes before the `IRQ` line and the reply.
#[test]
fn dma_lines_name_every_range_the_device_wrote_before_the_irq_and_the_reply() {
    let mut s = session(ServeOptions::default());
    live_queue(&mut s);
    let notify = format!("writew {:#x} 0", BAR0 + 0x1000);

    // Off (the default): the same completion, no DMA line.
    post(&mut s, 0, 0, 5);
    assert_eq!(s.request(&notify), "IRQ msi 0x9000 0x4022\nOK\n");

    s.ok("virq_dma_lines on");
    assert!(s.dma_lines());
    for (n, kind, sector) in [(1u16, 0u32, 7u64), (2, 1, 9)] {
        post(&mut s, n, kind, sector);
        if kind == 1 {
            s.ram().write(DATA, &[0x5A; 512]).unwrap();
        }
        let before = ram_copy(&s);
        let reply = s.request(&notify);
        let after = ram_copy(&s);
        let ranges = dma_ranges(&reply);
        let inside = |a: u64, r: &[(u64, u64)]| r.iter().any(|&(s, l)| a >= s && a < s + l);
        for (a, (x, y)) in before.iter().zip(&after).enumerate() {
            if x != y {
                assert!(
                    inside(a as u64, &ranges),
                    "byte {a:#x} changed outside {reply}"
                );
            }
        }
        let allowed = [
            (DATA, 512),
            (STATUS, 1),
            (USED, 4 + 8 * 8 + 2),
            (MSI_RAM, 4),
        ];
        for &(a, l) in &ranges {
            assert!(
                (a..a + l).all(|x| inside(x, &allowed)),
                "{a:#x}+{l:#x} is not device-writable: {reply}"
            );
            if kind == 1 {
                assert!(
                    !(DATA..DATA + 512).contains(&a),
                    "a write request's data is read"
                );
            }
        }
        // The used entry and index, the status byte and (for a read) the data are named.
        let used_elem = USED + 4 + 8 * u64::from(n % 8);
        for byte in [STATUS, used_elem, USED + 2, MSI_RAM] {
            assert!(inside(byte, &ranges), "{byte:#x} not named: {reply}");
        }
        assert_eq!(kind == 0, inside(DATA, &ranges), "{reply}");
        let lines: Vec<&str> = reply.lines().collect();
        let n_lines = lines.len();
        assert_eq!(lines[n_lines - 1], "OK");
        assert_eq!(lines[n_lines - 2], "IRQ msi 0x9000 0x4022");
        assert_eq!(
            lines[n_lines - 3],
            "DMA 0x9000 0x4",
            "the message's own write"
        );
        assert!(lines[..n_lines - 2].iter().all(|l| l.starts_with("DMA 0x")));
    }
    let mut sector9 = [0u8; 512];
    s.ok("virq_dma_lines off");
    post(&mut s, 3, 0, 9);
    assert_eq!(s.request(&notify), "IRQ msi 0x9000 0x4022\nOK\n");
    s.ram().read(DATA, &mut sector9).unwrap();
    assert_eq!(sector9, [0x5A; 512], "the write reached the disk");
}

#[test]
fn dma_lines_survive_a_reset_and_requests_that_write_nothing_have_none() {
    let mut s = session(ServeOptions::default());
    s.ok("virq_dma_lines on");
    s.ok("virq_reset");
    assert!(s.dma_lines());
    // Client writes to RAM are not device writes.
    assert_eq!(s.request("writel 0x100 7"), "OK\n");
    assert_eq!(s.request("write 0x200 2 0xabcd"), "OK\n");
    live_queue(&mut s);
    assert_eq!(
        s.request("virq_config_change"),
        "IRQ msi 0xfee00000 0x4041\nOK\n"
    );
}
