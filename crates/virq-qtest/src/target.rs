//! The two devices the harness drives through the same protocol: QEMU's virtio-pci modern
//! devices (a passive q35 PC under qtest, TCG halted on a BIOS of HLT bytes) and virq's
//! device behind an in-process `virq serve` session.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thiserror::Error;

use crate::pc::{Bdf, Pc};
use crate::wire::{Wire, WireError};

/// Environment variable naming the QEMU binary (default `qemu-system-x86_64` on PATH).
pub const QEMU_ENV: &str = "VIRQ_QEMU";
/// Where BARs are placed: inside the PCI hole of both machines.
pub const BAR_BASE: u64 = 0xE000_0000;
/// Guest RAM of both machines (64 MiB at 0).
pub const RAM_BYTES: u64 = 64 << 20;
/// Bytes of the virtio-blk disk on both sides, with `virq_serve::disk_byte` contents.
pub const DISK_BYTES: u64 = virq_serve::DEFAULT_DISK_BYTES;

/// Which virtio device type is under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-blk.
    Blk,
    /// virtio-rng.
    Rng,
    /// virtio-console.
    Console,
}

impl DeviceKind {
    /// The device's name (`virtio-blk`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Blk => "virtio-blk",
            DeviceKind::Rng => "virtio-rng",
            DeviceKind::Console => "virtio-console",
        }
    }
}

/// The device a target plugs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The device type.
    pub kind: DeviceKind,
    /// virtio-blk request queues (rng has 1; console's port 0 uses 2).
    pub queues: u16,
    /// MSI-X table size.
    pub msix_table: u16,
}

impl DeviceSpec {
    /// A device of `kind` with `queues` queues and an MSI-X table of `msix_table` entries.
    pub fn new(kind: DeviceKind, queues: u16, msix_table: u16) -> Self {
        DeviceSpec {
            kind,
            queues,
            msix_table,
        }
    }
}

/// Why a target could not be set up.
#[derive(Debug, Error)]
pub enum TargetError {
    #[error(
        "`{binary} --version` does not run: install Debian's qemu-system-x86 (`.ci/run` stage qemu-reference does) or set {QEMU_ENV}"
    )]
    /// No runnable QEMU binary.
    QemuMissing {
        /// The binary tried.
        binary: String,
    },
    /// QEMU exited or did not answer at start.
    #[error("QEMU failed to start: {0}")]
    QemuStart(String),
    /// QMP refused or failed.
    #[error("QMP: {0}")]
    Qmp(String),
    /// virq's served device could not be built.
    #[error("virq serve: {0}")]
    Serve(String),
    /// The qtest wire failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// An I/O error on pipes or files.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The QEMU binary to run.
pub fn qemu_binary() -> String {
    std::env::var(QEMU_ENV).unwrap_or_else(|_| "qemu-system-x86_64".to_string())
}

/// Whether the QEMU binary can be run at all.
pub fn qemu_available() -> bool {
    Command::new(qemu_binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A minimal QMP client (one JSON object per line).
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Qmp, TargetError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(TargetError::Qmp(format!("connect {}: {e}", path.display())));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(TargetError::Qmp(format!("no greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value, TargetError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(TargetError::Qmp("connection closed".into()));
        }
        serde_json::from_str(&line).map_err(|e| TargetError::Qmp(format!("{e}: {line}")))
    }

    fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, TargetError> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}")?;
        loop {
            let v = self.read()?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            return Err(TargetError::Qmp(format!("{command}: {v}")));
        }
    }
}

enum Backend {
    Qemu {
        child: Child,
        qmp: Qmp,
        dir: PathBuf,
    },
    Virq,
}

/// One machine with one device under test.
pub struct Target {
    /// The PC the device is plugged in.
    pub pc: Pc,
    /// Where the device is.
    pub bdf: Bdf,
    /// The device plugged.
    pub spec: DeviceSpec,
    /// Input of the intercepted interrupt controller that INTA# of the function drives.
    pub intx_irq: u32,
    /// BAR addresses as placed.
    pub bars: [u64; 6],
    backend: Backend,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Backend::Qemu { child, dir, .. } = &mut self.backend {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Slot of the device under test on QEMU's q35. ICH9's power-on interrupt routing sends INTA#
/// of slot 4 to PIRQE, which q35 wires to IOAPIC input (GSI) 20.
const QEMU_SLOT: u8 = 4;
const QEMU_INTX_GSI: u32 = 20;

impl Target {
    /// QEMU's device under qtest.
    pub fn qemu(spec: DeviceSpec) -> Result<Target, TargetError> {
        let binary = qemu_binary();
        if !qemu_available() {
            return Err(TargetError::QemuMissing { binary });
        }
        let dir = std::env::temp_dir().join(format!(
            "virq-qtest-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)?;
        // A BIOS of HLT bytes: the CPU halts at the reset vector with interrupts off, so
        // nothing but the harness ever touches the device.
        let bios = dir.join("hlt.bin");
        std::fs::write(&bios, vec![0xF4u8; 64 * 1024])?;
        let disk = dir.join("disk.img");
        std::fs::write(
            &disk,
            (0..DISK_BYTES)
                .map(virq_serve::disk_byte)
                .collect::<Vec<_>>(),
        )?;
        let qmp_path = dir.join("qmp.sock");
        let addr = format!(
            "addr={QEMU_SLOT:#x}.0,disable-legacy=on,vectors={}",
            spec.msix_table
        );
        let mut args: Vec<String> = [
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
            "-m",
            "64",
            "-smp",
            "1",
            "-qtest",
            "stdio",
            "-qtest-log",
            "/dev/null",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["-bios".into(), bios.display().to_string()]);
        args.extend([
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp_path.display()),
        ]);
        match spec.kind {
            DeviceKind::Blk => {
                args.extend([
                    "-drive".into(),
                    format!("if=none,id=d0,format=raw,file={}", disk.display()),
                    "-device".into(),
                    format!("virtio-blk-pci,drive=d0,num-queues={},{addr}", spec.queues),
                ]);
            }
            DeviceKind::Rng => {
                args.extend([
                    "-object".into(),
                    "rng-builtin,id=rng0".into(),
                    "-device".into(),
                    format!("virtio-rng-pci,rng=rng0,{addr}"),
                ]);
            }
            DeviceKind::Console => {
                args.extend([
                    "-chardev".into(),
                    "ringbuf,id=con0,size=4096".into(),
                    "-device".into(),
                    format!("virtio-serial-pci,max_ports=1,{addr}"),
                    "-device".into(),
                    "virtconsole,chardev=con0".into(),
                ]);
            }
        }
        // Standard error goes to a file: an unread pipe could fill up and stall QEMU.
        let stderr_path = dir.join("stderr.txt");
        let mut child = Command::new(&binary)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()
            .map_err(|e| TargetError::QemuStart(format!("{binary}: {e}")))?;
        let wire = Wire::process(&mut child)?;
        let mut pc = Pc::new(wire);
        if let Err(e) = pc.wire.request("endianness") {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(TargetError::QemuStart(format!(
                "{e}; {binary} {}; stderr: {}",
                args.join(" "),
                err.trim()
            )));
        }
        let qmp = match Qmp::connect(&qmp_path) {
            Ok(q) => q,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut t = Target {
            pc,
            bdf: Bdf {
                device: QEMU_SLOT,
                function: 0,
            },
            spec,
            intx_irq: QEMU_INTX_GSI,
            bars: [0; 6],
            backend: Backend::Qemu { child, qmp, dir },
        };
        t.platform_init()?;
        Ok(t)
    }

    /// virq's device, in-process.
    pub fn virq(spec: DeviceSpec) -> Result<Target, TargetError> {
        let options = virq_serve::ServeOptions {
            device: match spec.kind {
                DeviceKind::Blk => virq_serve::DeviceKind::Blk,
                DeviceKind::Rng => virq_serve::DeviceKind::Rng,
                DeviceKind::Console => virq_serve::DeviceKind::Console,
            },
            queues: (spec.kind == DeviceKind::Blk).then_some(spec.queues),
            msix_table: Some(spec.msix_table),
            ram_bytes: RAM_BYTES,
            disk_bytes: DISK_BYTES,
            memory_file: None,
        };
        let session =
            virq_serve::Session::new(&options).map_err(|e| TargetError::Serve(e.to_string()))?;
        let intx_irq = session.intx_gsi();
        let mut pc = Pc::new(Wire::session(session));
        // MSI-X messages land in guest RAM as with QEMU; the harness looks for them there.
        pc.wire.request("virq_msi_lines off")?;
        let mut t = Target {
            pc,
            bdf: Bdf {
                device: virq_serve::DEVICE_SLOT,
                function: 0,
            },
            spec,
            intx_irq,
            bars: [0; 6],
            backend: Backend::Virq,
        };
        t.platform_init()?;
        Ok(t)
    }

    /// What firmware and the OS's interrupt controller set-up would do: BARs placed and
    /// decoded, bus mastering on, the interrupt controller's inputs watched.
    fn platform_init(&mut self) -> Result<(), TargetError> {
        self.pc.wire.request("irq_intercept_in ioapic")?;
        self.bars = self.pc.assign_bars(self.bdf, BAR_BASE)?;
        Ok(())
    }

    /// `qemu` or `virq`.
    pub fn name(&self) -> &'static str {
        match self.backend {
            Backend::Qemu { .. } => "qemu",
            Backend::Virq => "virq",
        }
    }

    /// The device is QEMU's.
    pub fn is_qemu(&self) -> bool {
        matches!(self.backend, Backend::Qemu { .. })
    }

    /// The host changes the device's configuration: QEMU resizes the disk to `blk_bytes`
    /// (QMP `block_resize`); virq's device gets `virq_config_change` (its disk keeps its size).
    /// Returns the capacity in sectors the driver must then read.
    pub fn config_change(&mut self, blk_bytes: u64) -> Result<u64, TargetError> {
        match &mut self.backend {
            Backend::Qemu { qmp, .. } => {
                qmp.execute("block_resize", json!({ "device": "d0", "size": blk_bytes }))?;
                Ok(blk_bytes / 512)
            }
            Backend::Virq => {
                self.pc.wire.request("virq_config_change")?;
                Ok(DISK_BYTES / 512)
            }
        }
    }

    /// Bytes the console device has sent to the host so far (QEMU: QMP `ringbuf-read`).
    pub fn console_output(&mut self) -> Result<Option<Vec<u8>>, TargetError> {
        match &mut self.backend {
            Backend::Qemu { qmp, .. } => {
                let v = qmp.execute(
                    "ringbuf-read",
                    json!({ "device": "con0", "size": 4096, "format": "utf8" }),
                )?;
                Ok(Some(v.as_str().unwrap_or_default().as_bytes().to_vec()))
            }
            Backend::Virq => Ok(None),
        }
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
