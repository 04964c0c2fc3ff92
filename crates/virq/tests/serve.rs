//! `virq serve` as a separate process, driven by a small client that does what a driver core
//! does: find the device through mechanism #1, walk its capabilities, size and place its BARs,
//! negotiate features, set a queue up in guest RAM, program and read back vectors, and read a
//! disk sector, completing with an MSI-X message or with INTx.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vm_memory::{Address, Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

fn virq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_virq"))
}

/// Kills the server when a test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A lock-step protocol client: one request, then its `IRQ` lines and its reply.
struct Client<R, W> {
    r: R,
    w: W,
    /// `IRQ` lines that came with the last reply.
    irqs: Vec<String>,
    /// `DMA` lines that came with the last reply.
    dma: Vec<String>,
    /// Every line exchanged, for failure messages.
    transcript: Vec<String>,
}

impl<R: BufRead, W: Write> Client<R, W> {
    fn new(r: R, w: W) -> Self {
        Client {
            r,
            w,
            irqs: Vec::new(),
            dma: Vec::new(),
            transcript: Vec::new(),
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.r.read_line(&mut l).expect("read from server");
        assert!(
            n > 0,
            "server closed; transcript:\n{}",
            self.transcript.join("\n")
        );
        let l = l.trim_end_matches('\n').to_string();
        self.transcript.push(format!("< {l}"));
        l
    }

    /// Send one request; return its reply line, keeping the IRQ lines in `self.irqs`.
    fn cmd(&mut self, req: &str) -> String {
        self.transcript.push(format!("> {req}"));
        writeln!(self.w, "{req}").unwrap();
        self.w.flush().unwrap();
        self.irqs.clear();
        self.dma.clear();
        loop {
            let l = self.line();
            if l.starts_with("IRQ ") {
                self.irqs.push(l);
            } else if l.starts_with("DMA ") {
                self.dma.push(l);
            } else {
                return l;
            }
        }
    }

    fn ok(&mut self, req: &str) {
        let r = self.cmd(req);
        assert_eq!(r, "OK", "{req}");
    }

    fn val(&mut self, req: &str) -> u64 {
        let r = self.cmd(req);
        let hex = r
            .strip_prefix("OK 0x")
            .unwrap_or_else(|| panic!("{req} -> {r}"));
        u64::from_str_radix(hex, 16).unwrap()
    }

    fn bytes(&mut self, addr: u64, len: usize) -> Vec<u8> {
        let r = self.cmd(&format!("read {addr:#x} {len}"));
        let hex = r.strip_prefix("OK 0x").unwrap();
        assert_eq!(hex.len(), 2 * len);
        (0..len)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    fn write_bytes(&mut self, addr: u64, data: &[u8]) {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.ok(&format!("write {addr:#x} {} 0x{hex}", data.len()));
    }

    // Configuration space of 00:01.0 through mechanism #1.
    fn select(&mut self, dev: u8, off: u8) {
        let a = 0x8000_0000u32 | (dev as u32) << 11 | (off as u32 & 0xFC);
        self.ok(&format!("outl 0xcf8 {a:#x}"));
    }
    fn cfg32(&mut self, off: u8) -> u32 {
        self.select(1, off);
        self.val("inl 0xcfc") as u32
    }
    fn cfg16(&mut self, off: u8) -> u16 {
        self.select(1, off);
        self.val(&format!("inw {:#x}", 0xCFC + (off as u16 & 2))) as u16
    }
    fn cfg8(&mut self, off: u8) -> u8 {
        self.select(1, off);
        self.val(&format!("inb {:#x}", 0xCFC + (off as u16 & 3))) as u8
    }
    fn set_cfg32(&mut self, off: u8, v: u32) {
        self.select(1, off);
        self.ok(&format!("outl 0xcfc {v:#x}"));
    }
    fn set_cfg16(&mut self, off: u8, v: u16) {
        self.select(1, off);
        self.ok(&format!("outw {:#x} {v:#x}", 0xCFC + (off as u16 & 2)));
    }
    fn set_cfg8(&mut self, off: u8, v: u8) {
        self.select(1, off);
        self.ok(&format!("outb {:#x} {v:#x}", 0xCFC + (off as u16 & 3)));
    }
}

/// A virtio structure found through a vendor capability.
#[derive(Debug, Clone, Copy, Default)]
struct VirtioCap {
    bar: u8,
    offset: u64,
    length: u32,
    /// notify_off_multiplier (notify capability only).
    multiplier: u32,
}

#[derive(Debug, Default)]
struct Caps {
    common: Option<VirtioCap>,
    notify: Option<VirtioCap>,
    isr: Option<VirtioCap>,
    device: Option<VirtioCap>,
    /// Offset of the MSI-X capability in configuration space.
    msix: Option<u8>,
}

fn walk_caps<R: BufRead, W: Write>(c: &mut Client<R, W>) -> Caps {
    let status = c.cfg16(0x06);
    assert_ne!(status & 0x10, 0, "capability list bit");
    let mut caps = Caps::default();
    let mut at = c.cfg8(0x34) & 0xFC;
    let mut seen = 0;
    while at != 0 {
        seen += 1;
        assert!(seen <= 48, "capability list loops");
        let head = c.cfg32(at);
        let (id, next) = (head as u8, (head >> 8) as u8 & 0xFC);
        match id {
            0x09 => {
                let cfg_type = (head >> 24) as u8;
                let cap = VirtioCap {
                    bar: c.cfg8(at + 4),
                    offset: c.cfg32(at + 8) as u64,
                    length: c.cfg32(at + 12),
                    multiplier: if cfg_type == 2 { c.cfg32(at + 16) } else { 0 },
                };
                match cfg_type {
                    1 => caps.common = Some(cap),
                    2 => caps.notify = Some(cap),
                    3 => caps.isr = Some(cap),
                    4 => caps.device = Some(cap),
                    _ => {}
                }
            }
            0x11 => caps.msix = Some(at),
            _ => {}
        }
        at = next;
    }
    caps
}

/// Size every BAR with the all-ones probe and place it naturally aligned from 0xE000_0000.
/// Returns the address of each BAR index (0 when unimplemented).
fn place_bars<R: BufRead, W: Write>(c: &mut Client<R, W>) -> [u64; 6] {
    let mut addr = [0u64; 6];
    let mut next = 0xE000_0000u64;
    let mut i = 0u8;
    while i < 6 {
        let off = 0x10 + 4 * i;
        let orig = c.cfg32(off);
        c.set_cfg32(off, 0xFFFF_FFFF);
        let probe = c.cfg32(off);
        c.set_cfg32(off, orig);
        if probe == 0 {
            i += 1;
            continue;
        }
        assert_eq!(probe & 1, 0, "no I/O BARs expected");
        let is64 = (probe >> 1) & 3 == 2;
        let mut mask = (probe & !0xF) as u64 | 0xFFFF_FFFF_0000_0000;
        if is64 {
            c.set_cfg32(off + 4, 0xFFFF_FFFF);
            let hi = c.cfg32(off + 4);
            mask = (mask & 0xFFFF_FFFF) | (hi as u64) << 32;
        }
        let size = (!mask).wrapping_add(1);
        let base = next.div_ceil(size) * size;
        next = base + size;
        c.set_cfg32(off, base as u32);
        if is64 {
            c.set_cfg32(off + 4, (base >> 32) as u32);
        }
        // Read the placement back.
        assert_eq!(c.cfg32(off) & !0xF, base as u32);
        addr[i as usize] = base;
        i += if is64 { 2 } else { 1 };
    }
    addr
}

const DESC: u64 = 0x10000;
const AVAIL: u64 = 0x11000;
const USED: u64 = 0x12000;
const HEADER: u64 = 0x20000;
const DATA: u64 = 0x21000;
const STATUS: u64 = 0x22000;
const MSI_CONFIG_ADDR: u64 = 0x9000;
const MSI_QUEUE_ADDR: u64 = 0x9004;
const SECTOR: u64 = 5;

fn disk_byte(offset: u64) -> u8 {
    ((offset >> 9) as u8)
        .wrapping_mul(37)
        .wrapping_add(offset as u8)
}

/// The whole bring-up and one virtio-blk read; `msix` picks the interrupt mode the client
/// expects (the server must have been started accordingly).
fn bring_up_and_read<R: BufRead, W: Write>(c: &mut Client<R, W>, msix: bool) {
    // --- the bus: host bridge at 00:00.0, virtio-blk (modern) at 00:01.0, nothing at 00:02.0
    c.select(0, 0);
    assert_eq!(c.val("inl 0xcfc"), 0x1237_8086);
    assert_eq!(c.cfg32(0x00), 0x1042_1AF4);
    c.select(2, 0);
    assert_eq!(c.val("inl 0xcfc"), 0xFFFF_FFFF);
    assert_eq!(c.cfg8(0x3D), 1, "INTA#");

    // --- capability walk
    let caps = walk_caps(c);
    let common = caps.common.expect("common cfg capability");
    let notify = caps.notify.expect("notify capability");
    let isr = caps.isr.expect("ISR capability");
    assert!(caps.device.is_some());
    assert_eq!(caps.msix.is_some(), msix);
    assert!(common.length >= 0x38);

    // --- BARs: none assigned yet; size, place, enable decoding and bus mastering
    assert_eq!(c.cfg32(0x10) & !0xF, 0);
    let bars = place_bars(c);
    c.set_cfg16(0x04, 0x0006);
    c.set_cfg8(0x3C, 17);
    let cc = bars[common.bar as usize] + common.offset;
    let isr_addr = bars[isr.bar as usize] + isr.offset;

    // --- reset, ACKNOWLEDGE | DRIVER, features (VERSION_1 only), FEATURES_OK
    c.ok(&format!("writeb {:#x} 0", cc + 0x14));
    assert_eq!(c.val(&format!("readb {:#x}", cc + 0x14)), 0);
    c.ok(&format!("writeb {:#x} 3", cc + 0x14));
    c.ok(&format!("writel {:#x} 0", cc));
    let lo = c.val(&format!("readl {:#x}", cc + 4));
    c.ok(&format!("writel {:#x} 1", cc));
    let hi = c.val(&format!("readl {:#x}", cc + 4));
    let offered = hi << 32 | lo;
    assert_ne!(offered & 1 << 32, 0, "VERSION_1 offered");
    c.ok(&format!("writel {:#x} 0", cc + 8));
    c.ok(&format!("writel {:#x} 0", cc + 0xC));
    c.ok(&format!("writel {:#x} 1", cc + 8));
    c.ok(&format!("writel {:#x} 1", cc + 0xC));
    c.ok(&format!("writeb {:#x} 11", cc + 0x14));
    assert_eq!(
        c.val(&format!("readb {:#x}", cc + 0x14)),
        11,
        "FEATURES_OK kept"
    );

    // --- MSI-X table and vectors, each read back
    if let Some(cap) = caps.msix {
        let control = c.cfg16(cap + 2);
        let table_size = (control & 0x7FF) as u64 + 1;
        assert_eq!(table_size, 2);
        let table = c.cfg32(cap + 4);
        let table_addr = bars[(table & 7) as usize] + (table & !7) as u64;
        for (entry, (addr, data)) in [(MSI_CONFIG_ADDR, 0x4021u64), (MSI_QUEUE_ADDR, 0x4022)]
            .into_iter()
            .enumerate()
        {
            let e = table_addr + 16 * entry as u64;
            // Entries come out of reset masked.
            assert_eq!(c.val(&format!("readl {:#x}", e + 12)) & 1, 1);
            c.ok(&format!("writel {e:#x} {addr:#x}"));
            c.ok(&format!("writel {:#x} 0", e + 4));
            c.ok(&format!("writel {:#x} {data:#x}", e + 8));
            c.ok(&format!("writel {:#x} 0", e + 12));
            assert_eq!(c.val(&format!("readq {e:#x}")), addr);
            assert_eq!(c.val(&format!("readl {:#x}", e + 8)), data);
        }
        c.set_cfg16(cap + 2, control | 0x8000);
        assert_ne!(c.cfg16(cap + 2) & 0x8000, 0, "MSI-X enabled");
        // msix_config -> entry 0.
        c.ok(&format!("writew {:#x} 0", cc + 0x10));
        assert_eq!(c.val(&format!("readw {:#x}", cc + 0x10)), 0);
        // queue 0: an index beyond the table is refused (reads back 0xFFFF), entry 1 sticks.
        c.ok(&format!("writew {:#x} 0", cc + 0x16));
        c.ok(&format!("writew {:#x} {table_size}", cc + 0x1A));
        assert_eq!(c.val(&format!("readw {:#x}", cc + 0x1A)), 0xFFFF);
        c.ok(&format!("writew {:#x} 1", cc + 0x1A));
        assert_eq!(c.val(&format!("readw {:#x}", cc + 0x1A)), 1);
    } else {
        // Without MSI-X every vector write is refused: the driver's read-back shows it.
        c.ok(&format!("writew {:#x} 0", cc + 0x10));
        assert_eq!(c.val(&format!("readw {:#x}", cc + 0x10)), 0xFFFF);
        c.ok(&format!("writew {:#x} 0", cc + 0x16));
        c.ok(&format!("writew {:#x} 0", cc + 0x1A));
        assert_eq!(c.val(&format!("readw {:#x}", cc + 0x1A)), 0xFFFF);
    }

    // --- queue 0 in guest RAM
    c.ok(&format!("writew {:#x} 0", cc + 0x16));
    assert_eq!(c.val(&format!("readw {:#x}", cc + 0x12)), 1, "num_queues");
    assert_eq!(c.val(&format!("readw {:#x}", cc + 0x18)), 256, "max size");
    c.ok(&format!("writew {:#x} 8", cc + 0x18));
    assert_eq!(c.val(&format!("readw {:#x}", cc + 0x18)), 8);
    c.ok(&format!("memset {DESC:#x} 0x3000 0"));
    c.ok(&format!("writeq {:#x} {DESC:#x}", cc + 0x20));
    c.ok(&format!("writel {:#x} {AVAIL:#x}", cc + 0x28));
    c.ok(&format!("writel {:#x} 0", cc + 0x2C));
    c.ok(&format!("writeq {:#x} {USED:#x}", cc + 0x30));
    assert_eq!(c.val(&format!("readq {:#x}", cc + 0x20)), DESC);
    assert_eq!(c.val(&format!("readq {:#x}", cc + 0x28)), AVAIL);
    assert_eq!(c.val(&format!("readq {:#x}", cc + 0x30)), USED);
    let notify_off = c.val(&format!("readw {:#x}", cc + 0x1E));
    c.ok(&format!("writew {:#x} 1", cc + 0x1C));
    assert_eq!(c.val(&format!("readw {:#x}", cc + 0x1C)), 1);
    c.ok(&format!("writeb {:#x} 15", cc + 0x14));
    assert_eq!(c.val(&format!("readb {:#x}", cc + 0x14)), 15, "DRIVER_OK");

    // --- VIRTIO_BLK_T_IN of sector 5: header, 512-byte data buffer, status byte
    let mut header = [0u8; 16];
    header[8..].copy_from_slice(&SECTOR.to_le_bytes());
    c.write_bytes(HEADER, &header);
    c.ok(&format!("memset {DATA:#x} 512 0xee"));
    c.ok(&format!("memset {STATUS:#x} 1 0xff"));
    let mut table = Vec::new();
    for (addr, len, flags, next) in [
        (HEADER, 16u32, 1u16, 1u16),
        (DATA, 512, 1 | 2, 2),
        (STATUS, 1, 2, 0),
    ] {
        table.extend_from_slice(&addr.to_le_bytes());
        table.extend_from_slice(&len.to_le_bytes());
        table.extend_from_slice(&flags.to_le_bytes());
        table.extend_from_slice(&next.to_le_bytes());
    }
    c.write_bytes(DESC, &table);
    c.ok(&format!("writew {:#x} 0", AVAIL + 4));
    c.ok(&format!("writew {:#x} 1", AVAIL + 2));

    // --- notify: the device completes the request before the reply, and interrupts
    let notify_addr =
        bars[notify.bar as usize] + notify.offset + notify_off * notify.multiplier as u64;
    c.ok(&format!("writew {notify_addr:#x} 0"));
    if msix {
        assert_eq!(c.irqs, [format!("IRQ msi {MSI_QUEUE_ADDR:#x} 0x4022")]);
        // qtest-style: the message also landed in guest RAM.
        assert_eq!(c.val(&format!("readl {MSI_QUEUE_ADDR:#x}")), 0x4022);
        assert_eq!(c.val(&format!("readl {MSI_CONFIG_ADDR:#x}")), 0);
        // With MSI-X on, the device never raises INTx: Status bit 3 stays clear.
        assert_eq!(c.cfg16(0x06) & 0x8, 0);
    } else {
        assert_eq!(c.irqs, ["IRQ raise 17"]);
        assert_ne!(c.cfg16(0x06) & 0x8, 0, "INTx pending in Status");
        // The ISR reads the ISR status (read-to-clear); the line goes low with that reply.
        assert_eq!(c.val(&format!("readb {isr_addr:#x}")), 1);
        assert_eq!(c.irqs, ["IRQ lower 17"]);
        assert_eq!(c.val(&format!("readb {isr_addr:#x}")), 0);
        assert!(c.irqs.is_empty());
        assert_eq!(c.cfg16(0x06) & 0x8, 0);
    }

    // --- the completion: used ring, status byte, data
    assert_eq!(c.val(&format!("readw {:#x}", USED + 2)), 1, "used idx");
    assert_eq!(c.val(&format!("readl {:#x}", USED + 4)), 0, "used id");
    assert_eq!(c.val(&format!("readl {:#x}", USED + 8)), 513, "used len");
    assert_eq!(c.val(&format!("readb {STATUS:#x}")), 0, "VIRTIO_BLK_S_OK");
    let data = c.bytes(DATA, 512);
    let want: Vec<u8> = (0..512).map(|i| disk_byte(SECTOR * 512 + i)).collect();
    assert_eq!(data, want);

    // --- the evidence agrees
    writeln!(c.w, "virq_events").unwrap();
    c.w.flush().unwrap();
    let mut kinds = Vec::new();
    loop {
        let l = c.line();
        if let Some(n) = l.strip_prefix("OK ") {
            assert_eq!(n.parse::<usize>().unwrap(), kinds.len());
            break;
        }
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        kinds.push(v["event"].as_str().unwrap().to_string());
    }
    let has = |k: &str| kinds.iter().any(|x| x == k);
    assert!(has("vector_written") && has("queue_notify") && has("used_published"));
    if msix {
        assert!(has("message_sent") && has("msix_control"));
        assert!(!has("line_raised"));
    } else {
        assert!(has("line_raised") && has("isr_read") && has("line_lowered"));
        assert!(!has("message_sent"));
    }
}

fn stdio_server(
    args: &[&str],
) -> (
    Server,
    Client<BufReader<std::process::ChildStdout>, std::process::ChildStdin>,
) {
    let mut child = virq()
        .arg("serve")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start virq serve");
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (Server(child), Client::new(stdout, stdin))
}

#[test]
fn msix_bring_up_over_stdio() {
    let (_server, mut c) = stdio_server(&[]);
    bring_up_and_read(&mut c, true);
}

#[test]
fn intx_bring_up_over_stdio() {
    let (_server, mut c) = stdio_server(&["--no-msix"]);
    bring_up_and_read(&mut c, false);
}

#[test]
fn reset_request_allows_a_second_bring_up_in_the_same_session() {
    let (_server, mut c) = stdio_server(&["--device", "blk", "--queues", "1"]);
    bring_up_and_read(&mut c, true);
    c.ok("virq_reset");
    bring_up_and_read(&mut c, true);
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("virq-serve-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn connect(path: &std::path::Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect {}: {e}", path.display()),
        }
    }
}

#[test]
fn msix_and_intx_bring_up_over_a_unix_socket() {
    let dir = temp_dir("sock");
    for (mode, msix) in [(None, true), (Some("--no-msix"), false)] {
        let path = dir.join("virq.sock");
        let mut cmd = virq();
        cmd.arg("serve").arg("--socket").arg(&path);
        cmd.args(mode);
        let _server = Server(cmd.stdin(Stdio::null()).spawn().unwrap());
        let stream = connect(&path);
        let mut c = Client::new(BufReader::new(stream.try_clone().unwrap()), stream);
        bring_up_and_read(&mut c, msix);
        drop(c);
        // The next client gets a fresh machine: RAM zeroed, BARs unassigned.
        let stream = connect(&path);
        let mut c = Client::new(BufReader::new(stream.try_clone().unwrap()), stream);
        assert_eq!(c.val(&format!("readw {:#x}", USED + 2)), 0);
        assert_eq!(c.cfg32(0x10) & !0xF, 0);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_input_gets_fail_lines_and_the_process_survives() {
    let (mut server, mut c) = stdio_server(&[]);
    for bad in [
        "launch missiles",
        "inl",
        "outb 0x80 0x1ff",
        "read 0 0xffffffffffffffff",
        "memset 0 0x1000001 0",
        "write 0 0x1000000 0x00",
        "readq 0xfffffffffffffffc",
        "readl 0x3fffffe",
        "read 0x4000000 1",
        "virq_events -1",
    ] {
        let r = c.cmd(bad);
        assert!(r.starts_with("FAIL "), "{bad} -> {r}");
    }
    // Binary garbage, then a line over the limit (2 * 16 MiB + 256 bytes).
    c.w.write_all(b"\x00\xff\xfe\x1b[31m\x7f\n").unwrap();
    let long = vec![b'7'; 2 * (16 << 20) + 1024];
    c.w.write_all(&long).unwrap();
    c.w.write_all(b"\ninl 0xcf8\n").unwrap();
    c.w.flush().unwrap();
    assert!(c.line().starts_with("FAIL "));
    assert_eq!(c.line(), "FAIL request line longer than 33554688 bytes");
    assert_eq!(c.line(), "OK 0x00000000");
    // The largest legal requests work.
    c.ok("memset 0 0x1000000 0x11");
    let r = c.cmd("read 0 0x1000000");
    assert_eq!(r.len(), "OK 0x".len() + 2 * (16 << 20));
    // End of input ends the server cleanly.
    drop(c);
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_options_exit_2_before_serving() {
    for args in [
        &["serve", "--device", "floppy"][..],
        &["serve", "--device", "rng", "--queues", "2"],
        &["serve", "--msix-table", "4096"],
        &["serve", "--msix-table", "3", "--no-msix"],
        &["serve", "--once"],
        &["serve", "--ready-fd", "0"],
        &["serve", "--ready-fd", "1"],
        &["serve", "--ready-fd", "999"],
        &["serve", "--memory-file", "/nonexistent-dir/ram"],
        &["serve", "--memory-file", "/"],
    ] {
        let out = virq().args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn every_device_type_is_found_and_answers() {
    for (dev, id) in [("blk", 0x1042u64), ("rng", 0x1044), ("console", 0x1043)] {
        let (_server, mut c) = stdio_server(&["--device", dev]);
        assert_eq!(c.cfg32(0) as u64, id << 16 | 0x1AF4, "{dev}");
        let info = c.cmd("virq_info");
        assert!(info.starts_with(&format!("OK device={dev} ")), "{info}");
    }
}

/// Guest RAM as a client maps it: the memory file, shared (vm-memory maps a file region with
/// MAP_SHARED), so what the server's device writes is what this mapping reads.
fn map_guest_ram(path: &std::path::Path) -> GuestMemoryMmap<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len() as usize;
    assert_eq!(len, 64 << 20, "sized to guest RAM");
    GuestMemoryMmap::from_ranges_with_files([(
        GuestAddress(0),
        len,
        Some(FileOffset::new(file, 0)),
    )])
    .unwrap()
}

fn ram_image(ram: &GuestMemoryMmap<()>) -> Vec<u8> {
    let mut v = vec![0u8; 0x30000];
    ram.read_slice(&mut v, GuestAddress(0)).unwrap();
    v
}

/// `--memory-file` for pointer-based clients (docs/serve-protocol.md): the READY line instead
/// of polling for the socket, the rings and buffers written and read through the client's own
/// mapping (no `read`, `write` or `memset` request at all), `DMA` lines naming every byte the
/// device wrote (so a mirror would know what to re-read), and `--once` ending the server.
#[test]
fn a_client_maps_the_memory_file_and_completes_blk_requests_without_bulk_transfers() {
    let dir = temp_dir("memfile");
    let (sock, file) = (dir.join("virq.sock"), dir.join("guest-ram"));
    let mut child = virq()
        .arg("serve")
        .arg("--socket")
        .arg(&sock)
        .arg("--memory-file")
        .arg(&file)
        .arg("--once")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "READY\n");
    let mut server = Server(child);
    // READY: the socket listens and the file exists at its size; no polling.
    let stream = UnixStream::connect(&sock).expect("listening once READY is written");
    let mut c = Client::new(BufReader::new(stream.try_clone().unwrap()), stream);
    let ram = map_guest_ram(&file);
    c.ok("virq_dma_lines on");

    // Bring-up with sized requests only.
    let caps = walk_caps(&mut c);
    let bars = place_bars(&mut c);
    c.set_cfg16(0x04, 0x0006);
    let (common, notify) = (caps.common.unwrap(), caps.notify.unwrap());
    let cc = bars[common.bar as usize] + common.offset;
    for (reg, v) in [(0x14u64, 0u64), (0x14, 3), (0x08, 1), (0x0C, 1), (0x14, 11)] {
        let w = if reg == 0x14 { "writeb" } else { "writel" };
        c.ok(&format!("{w} {:#x} {v}", cc + reg));
    }
    let cap = caps.msix.unwrap();
    let table = c.cfg32(cap + 4);
    let entry1 = bars[(table & 7) as usize] + (table & !7) as u64 + 16;
    c.ok(&format!("writeq {entry1:#x} {MSI_QUEUE_ADDR:#x}"));
    c.ok(&format!("writel {:#x} 0x4022", entry1 + 8));
    c.ok(&format!("writel {:#x} 0", entry1 + 12));
    let control = c.cfg16(cap + 2);
    c.set_cfg16(cap + 2, control | 0x8000);
    c.ok(&format!("writew {:#x} 0", cc + 0x16));
    c.ok(&format!("writew {:#x} 8", cc + 0x18));
    c.ok(&format!("writew {:#x} 1", cc + 0x1A));
    assert_eq!(c.val(&format!("readw {:#x}", cc + 0x1A)), 1);
    c.ok(&format!("writeq {:#x} {DESC:#x}", cc + 0x20));
    c.ok(&format!("writeq {:#x} {AVAIL:#x}", cc + 0x28));
    c.ok(&format!("writeq {:#x} {USED:#x}", cc + 0x30));
    let notify_off = c.val(&format!("readw {:#x}", cc + 0x1E));
    c.ok(&format!("writew {:#x} 1", cc + 0x1C));
    c.ok(&format!("writeb {:#x} 15", cc + 0x14));
    let notify_addr =
        bars[notify.bar as usize] + notify.offset + notify_off * notify.multiplier as u64;

    // Three requests: read sector 5, write sector 9 from the mapping, read sector 9 back.
    let written: Vec<u8> = (0..512u32).map(|i| (i * 7 + 3) as u8).collect();
    for (n, kind, sector) in [(0u16, 0u32, 5u64), (1, 1, 9), (2, 0, 9)] {
        let mut header = kind.to_le_bytes().to_vec();
        header.extend_from_slice(&[0; 4]);
        header.extend_from_slice(&sector.to_le_bytes());
        ram.write_slice(&header, GuestAddress(HEADER)).unwrap();
        ram.write_obj(0xFFu8, GuestAddress(STATUS)).unwrap();
        if kind == 1 {
            ram.write_slice(&written, GuestAddress(DATA)).unwrap();
        }
        let data_flags = if kind == 0 { 2u16 } else { 0 };
        for (i, (addr, len, flags, next)) in [
            (HEADER, 16u32, 1u16, 1u16),
            (DATA, 512, 1 | data_flags, 2),
            (STATUS, 1, 2, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let d = GuestAddress(DESC + 16 * i as u64);
            ram.write_obj(addr, d).unwrap();
            ram.write_obj(len, d.unchecked_add(8)).unwrap();
            ram.write_obj(flags, d.unchecked_add(12)).unwrap();
            ram.write_obj(next, d.unchecked_add(14)).unwrap();
        }
        ram.write_obj(0u16, GuestAddress(AVAIL + 4 + 2 * u64::from(n)))
            .unwrap();
        ram.store(n + 1, GuestAddress(AVAIL + 2), Ordering::Release)
            .unwrap();
        ram.write_obj(0u32, GuestAddress(MSI_QUEUE_ADDR)).unwrap();

        let before = ram_image(&ram);
        c.ok(&format!("writew {notify_addr:#x} 0"));
        let after = ram_image(&ram);
        assert_eq!(c.irqs, [format!("IRQ msi {MSI_QUEUE_ADDR:#x} 0x4022")]);
        assert_eq!(
            ram.read_obj::<u32>(GuestAddress(MSI_QUEUE_ADDR)).unwrap(),
            0x4022
        );
        assert_eq!(
            ram.load::<u16>(GuestAddress(USED + 2), Ordering::Acquire)
                .unwrap(),
            n + 1
        );
        assert_eq!(
            ram.read_obj::<u8>(GuestAddress(STATUS)).unwrap(),
            0,
            "VIRTIO_BLK_S_OK"
        );
        let mut data = vec![0u8; 512];
        ram.read_slice(&mut data, GuestAddress(DATA)).unwrap();
        match (kind, sector) {
            (0, 5) => assert_eq!(
                data,
                (0..512).map(|i| disk_byte(5 * 512 + i)).collect::<Vec<_>>()
            ),
            _ => assert_eq!(data, written, "request {n}"),
        }
        // The DMA lines name every byte that changed.
        let ranges: Vec<(u64, u64)> = c
            .dma
            .iter()
            .map(|l| {
                let mut w = l
                    .split(' ')
                    .skip(1)
                    .map(|x| u64::from_str_radix(&x[2..], 16).unwrap());
                (w.next().unwrap(), w.next().unwrap())
            })
            .collect();
        for (a, (x, y)) in before.iter().zip(&after).enumerate() {
            if x != y {
                let a = a as u64;
                assert!(
                    ranges.iter().any(|&(s, l)| a >= s && a < s + l),
                    "byte {a:#x} changed but no DMA line names it: {:?}",
                    c.dma
                );
            }
        }
        assert!(
            c.dma.contains(&format!("DMA {STATUS:#x} 0x1")),
            "{:?}",
            c.dma
        );
    }
    assert!(
        c.transcript.iter().all(|l| !l.starts_with("> read ")
            && !l.starts_with("> write ")
            && !l.starts_with("> memset ")),
        "no bulk transfer was needed"
    );
    // --once: the server exits after its one client.
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "--once server still running");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--ready-fd` on standard input/output: the READY line goes to the descriptor given (here
/// standard error) once the memory file exists, and bytes move both ways through the mapping.
#[test]
fn ready_fd_announces_a_stdio_server_whose_ram_is_the_memory_file() {
    let dir = temp_dir("readyfd");
    let file = dir.join("guest-ram");
    let mut child = virq()
        .args(["serve", "--ready-fd", "2", "--memory-file"])
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "READY\n");
    let ram = map_guest_ram(&file);
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let _server = Server(child);
    let mut c = Client::new(stdout, stdin);
    ram.write_obj(0x1234_5678u32, GuestAddress(0x100)).unwrap();
    assert_eq!(c.val("readl 0x100"), 0x1234_5678);
    c.ok("writel 0x200 0xcafe");
    assert_eq!(ram.read_obj::<u32>(GuestAddress(0x200)).unwrap(), 0xCAFE);
    // virq_reset zeroes guest RAM, the file included.
    c.ok("virq_reset");
    assert_eq!(ram.read_obj::<u32>(GuestAddress(0x200)).unwrap(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
