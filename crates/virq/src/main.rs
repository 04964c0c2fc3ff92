//! `virq`: run the interrupt bring-up checklist, diagnose logs, serve the device.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use virq_check::{
    CheckOptions, DebugPrintFilter, DeviceKind, Fault, InfChoice, KmdfVersion, Mode, VectorPolicy,
};

#[derive(Parser)]
#[command(
    name = "virq",
    version,
    about = "virtio-pci modern interrupts (MSI-X and INTx), made correct, observable and provable"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the checklist's seven steps on the simulated Windows 7 machine, in every interrupt mode.
    Check(Box<CheckArgs>),
    /// Read logs (DbgView captures; WinDbg !pcitree, !pci, !dd, !devnode, !cmreslist, !irp, dt;
    /// /proc/interrupts, lspci -vvv, kernel logs) and say which link of the interrupt chain broke.
    Doctor(DoctorArgs),
    /// List the faults `check --inject` can reproduce.
    Faults,
    /// Serve the device behind a qtest-style line protocol (docs/serve-protocol.md) on
    /// standard input/output or a Unix socket.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Device type: blk, rng or console.
    #[arg(long, default_value = "blk")]
    device: String,
    /// Request queues (virtio-blk; default 1).
    #[arg(long)]
    queues: Option<u16>,
    /// MSI-X table size (default 1 + queues).
    #[arg(long, conflicts_with = "no_msix")]
    msix_table: Option<u16>,
    /// No MSI-X capability: the device interrupts through INTx only.
    #[arg(long)]
    no_msix: bool,
    /// Listen on this Unix socket (one client at a time, each on a fresh machine) instead
    /// of serving standard input/output. Prints `READY` on standard output once listening.
    #[arg(long)]
    socket: Option<std::path::PathBuf>,
    /// Back guest RAM with this file (created if missing, zeroed, sized to guest RAM) so the
    /// client can map it shared and reach guest RAM through pointers.
    #[arg(long, value_name = "PATH")]
    memory_file: Option<std::path::PathBuf>,
    /// Write the `READY` line to this inherited file descriptor (a pipe or file) instead of
    /// standard output; with standard input/output serving, the only way to get one.
    #[arg(long, value_name = "N")]
    ready_fd: Option<u32>,
    /// With --socket: serve one client, then exit.
    #[arg(long, requires = "socket")]
    once: bool,
}

#[derive(clap::Args)]
struct DoctorArgs {
    /// Files of any supported kind; the format is detected, several combine into one diagnosis.
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
    /// Machine-readable report.
    #[arg(long)]
    json: bool,
    /// Also print every event read, one JSON object per line.
    #[arg(long)]
    events: bool,
    /// Also write the report as one self-contained HTML page (the chain, coloured by verdict).
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Device type: blk, rng or console.
    #[arg(long, default_value = "blk")]
    device: String,
    /// Request queues (virtio-blk).
    #[arg(long, default_value_t = 2)]
    queues: u16,
    /// MSI-X table size (default 1 + queues; 0 removes MSI-X).
    #[arg(long)]
    msix_table: Option<u16>,
    /// INF policy: auto, msi, msi-limit=N, line, or a path to an INF file (with --inf-install).
    #[arg(long, default_value = "auto")]
    inf: String,
    /// Install section of the INF given with --inf.
    #[arg(long, default_value = "virqblk_inst")]
    inf_install: String,
    /// Messages the platform can give at once (default: all in msix-enough, 1 in msix-fewer).
    /// Windows grants all the messages requested or exactly one: N below the request means
    /// one message, never N.
    #[arg(long)]
    granted: Option<u32>,
    /// The reference driver's framework: 1.9 (Windows 7's inbox KMDF: interrupt objects in
    /// EvtDriverDeviceAdd, zeros from WdfInterruptGetInfo before start) or 1.11 (objects in
    /// EvtDevicePrepareHardware).
    #[arg(long, default_value = "1.9")]
    kmdf: String,
    /// The Debug Print Filter\IHVDRIVER mask: a number such as 0xf (the checklist's
    /// assumption), `unset` (Windows 7's default: only error-level lines reach DbgView) or
    /// `verbose` (DbgView's "Enable Verbose Kernel Output").
    #[arg(long, default_value = "0xf")]
    print_filter: String,
    /// pci.sys sets PCI Command bit 10 (Interrupt Disable) when message interrupts are
    /// granted (seen in a published !pci dump; unverified on Windows 7).
    #[arg(long)]
    msi_interrupt_disable: bool,
    /// Only these modes (msix-enough, msix-fewer, intx); repeatable.
    #[arg(long = "mode")]
    modes: Vec<String>,
    /// Inject a fault by name (see `virq faults`).
    #[arg(long)]
    inject: Option<String>,
    /// Block reads per queue.
    #[arg(long, default_value_t = 8)]
    requests: u16,
    /// Interrupts a run may take before it is called a storm.
    #[arg(long, default_value_t = 10_000)]
    budget: u64,
    /// Vector plan of the reference driver: checklist (per-queue or all on message 0) or
    /// linux-ladder (per-queue, shared, INTx).
    #[arg(long, default_value = "checklist")]
    policy: String,
    /// Where to run: `sim` (the simulated Windows 7 machine) or `linux-kvm` (a real Linux
    /// kernel on KVM; modes msix-per-queue, msix-small-table, intx).
    #[arg(long, default_value = "sim")]
    guest: String,
    /// Write each mode's evidence as JSON lines to DIR/MODE.jsonl, for `virq doctor`.
    #[arg(long, value_name = "DIR")]
    events_dir: Option<std::path::PathBuf>,
    /// With --guest linux-kvm: send the kernel log through virtio-console (console=hvc0).
    #[arg(long)]
    hvc: bool,
    /// The files a user would have after each mode (dbgview.log; WinDbg's pcitree.txt, irp.txt
    /// with the start IRP, dt.txt with its resource lists, pci.txt with the MSI-X table,
    /// devnode.txt; driver.inf; device.jsonl, the device's record): written to DIR/MODE/ for
    /// `virq doctor`, or printed before the report when no DIR is given.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "-")]
    logs: Option<std::path::PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `print!` that hands a write error back: `virq faults | head` closes the pipe early, which
/// must end the command quietly (see `main`), not panic.
macro_rules! out {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// `println!` that hands a write error back (see `out!`).
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): what it wanted was printed, as with any Unix tool.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virq: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check(*args),
        Command::Doctor(args) => doctor(args),
        Command::Serve(args) => serve(args),
        Command::Faults => {
            // Driver and OS rows first, in row order, then the device rows.
            let mut faults = Fault::ALL.to_vec();
            faults.sort_by_key(|f| (f.is_device(), f.catalogue_row()));
            for f in faults {
                outln!(
                    "{:<36} failure catalogue row {:>2}{}",
                    f.name(),
                    f.catalogue_row(),
                    if f.is_device() { " (device)" } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Exit code when the real guest cannot run here (no usable /dev/kvm): not a pass.
const EXIT_SKIPPED: u8 = 3;

fn check(args: CheckArgs) -> Result<ExitCode> {
    match args.guest.as_str() {
        "sim" => {}
        "linux-kvm" => return check_linux_kvm(&args),
        other => bail!("unknown guest {other:?} (sim, linux-kvm)"),
    }
    let device = DeviceKind::from_name(&args.device)
        .with_context(|| format!("unknown device {:?} (blk, rng, console)", args.device))?;
    let inf = match args.inf.as_str() {
        "auto" => InfChoice::Auto,
        "msi" => InfChoice::Msi { limit: None },
        "line" => InfChoice::LineOnly,
        s if s.starts_with("msi-limit=") => InfChoice::Msi {
            limit: Some(
                s["msi-limit=".len()..]
                    .parse()
                    .context("msi-limit=N needs a number")?,
            ),
        },
        path => {
            let text = read_inf(std::path::Path::new(path))?;
            InfChoice::Text {
                text,
                install: args.inf_install.clone(),
            }
        }
    };
    let modes = if args.modes.is_empty() {
        Mode::ALL.to_vec()
    } else {
        args.modes
            .iter()
            .map(|m| {
                Mode::from_name(m)
                    .with_context(|| format!("unknown mode {m:?} (msix-enough, msix-fewer, intx)"))
            })
            .collect::<Result<Vec<_>>>()?
    };
    let inject = match &args.inject {
        None => None,
        Some(name) => match Fault::from_name(name) {
            Some(f) => Some(f),
            None => bail!("unknown fault {name:?}; `virq faults` lists them"),
        },
    };
    let kmdf = KmdfVersion::from_name(&args.kmdf)
        .with_context(|| format!("unknown KMDF version {:?} (1.9, 1.11)", args.kmdf))?;
    let print_filter = DebugPrintFilter::parse(&args.print_filter).with_context(|| {
        format!(
            "unknown Debug Print Filter {:?} (a mask such as 0xf, unset, verbose)",
            args.print_filter
        )
    })?;
    let options = CheckOptions {
        kmdf,
        print_filter,
        msi_interrupt_disable: args.msi_interrupt_disable,
        device,
        queues: args.queues,
        msix_table: args.msix_table,
        inf,
        granted: args.granted,
        modes,
        inject,
        requests_per_queue: args.requests,
        interrupt_budget: args.budget,
        policy: match args.policy.as_str() {
            "checklist" => VectorPolicy::Checklist,
            "linux-ladder" => VectorPolicy::LinuxLadder,
            other => bail!("unknown policy {other:?} (checklist, linux-ladder)"),
        },
    };
    let report = virq_check::run_check(&options)?;
    if let Some(dir) = &args.events_dir {
        for m in &report.modes {
            write_events(dir, m.mode.name(), &m.events)?;
        }
    }
    let print_logs = match &args.logs {
        Some(dir) if dir.as_os_str() != "-" => {
            for m in &report.modes {
                let dir = dir.join(m.mode.name());
                let written = m.logs.write_to(&dir)?;
                if !args.json {
                    let names: Vec<String> =
                        written.iter().map(|p| p.display().to_string()).collect();
                    eprintln!("{}: {}", m.mode.name(), names.join(" "));
                }
            }
            false
        }
        Some(_) => true,
        None => false,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if print_logs {
            for m in &report.modes {
                for (name, text) in m.logs.texts() {
                    outln!(
                        "--- {} {name} ---\n{}",
                        m.mode.name(),
                        text.replace("\r\n", "\n")
                    );
                }
            }
        }
        out!("{}", virq_check::render_text(&report));
    }
    Ok(if report.all_hold() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Largest INF file `--inf PATH` reads; real ones are a few KiB.
const MAX_INF_BYTES: u64 = 16 << 20;

/// Read an INF file as text. Windows writes INF files in the ANSI code page, UTF-8 or
/// UTF-16 with a byte-order mark, so UTF-16 is decoded; anything with NUL bytes otherwise is
/// not an INF file. Every refusal is one line naming the file.
fn read_inf(path: &std::path::Path) -> Result<String> {
    let name = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read INF {name}"))?;
    if meta.is_dir() {
        bail!("cannot read INF {name}: is a directory");
    }
    if meta.len() > MAX_INF_BYTES {
        bail!(
            "INF {name} is {} bytes; an INF file is text of at most {MAX_INF_BYTES} bytes",
            meta.len()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read INF {name}"))?;
    let utf16 = |be: bool| -> Result<String> {
        let body = &bytes[2..];
        if body.len() % 2 != 0 {
            bail!("INF {name} is UTF-16 with an odd number of bytes (truncated?)");
        }
        let units = body.chunks_exact(2).map(|c| {
            if be {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| anyhow::anyhow!("INF {name} is not valid UTF-16: {e}"))
    };
    match bytes.as_slice() {
        [0xFF, 0xFE, ..] => utf16(false),
        [0xFE, 0xFF, ..] => utf16(true),
        _ => {
            if let Some(at) = bytes.iter().position(|&b| b == 0) {
                bail!("INF {name} looks binary (NUL byte at offset {at}); expected INF text");
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    let show = args.events;
    let mut doctor = virq_doctor::Doctor::new().watch(move |e| {
        if show {
            // A closed pipe is noticed (and ends the command quietly) at the report's print.
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string(e).expect("events serialise")
            );
        }
    });
    let mut errors = Vec::new();
    for f in &args.files {
        if let Err(e) = doctor.read_file(f) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        for err in &errors {
            eprintln!("virq doctor: {err}");
        }
        return Ok(ExitCode::from(2));
    }
    let report = doctor.finish();
    if let Some(path) = &args.html {
        std::fs::write(path, report.render_html())
            .with_context(|| format!("cannot write the HTML report to {}", path.display()))?;
    }
    if args.json {
        outln!("{}", report.to_json());
    } else {
        out!("{}", report.render_text());
    }
    Ok(ExitCode::from(report.exit_code() as u8))
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    let device = virq_serve::DeviceKind::from_name(&args.device)
        .with_context(|| format!("unknown device {:?} (blk, rng, console)", args.device))?;
    let options = virq_serve::ServeOptions {
        device,
        queues: args.queues,
        msix_table: if args.no_msix {
            Some(0)
        } else {
            args.msix_table
        },
        memory_file: args.memory_file.clone(),
        ..virq_serve::ServeOptions::default()
    };
    let mut ready_fd = match args.ready_fd {
        Some(fd) => Some(open_ready_fd(fd, args.socket.is_none())?),
        None => None,
    };
    let ready_fd = ready_fd.as_mut().map(|f| f as &mut dyn std::io::Write);
    match &args.socket {
        Some(path) => {
            let mut stdout = std::io::stdout();
            let ready = ready_fd.unwrap_or(&mut stdout);
            let max_clients = args.once.then_some(1);
            virq_serve::serve_unix(path, &options, max_clients, Some(ready))?
        }
        None => {
            virq_serve::serve_stdio(&options, ready_fd)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The descriptor `--ready-fd` names, reopened through /proc (no unsafe `from_raw_fd`): a
/// pipe or a file the parent handed down. Standard input, and standard output while it
/// carries the protocol, are refused.
fn open_ready_fd(fd: u32, stdio: bool) -> Result<std::fs::File> {
    if fd == 0 || (stdio && fd == 1) {
        anyhow::bail!("--ready-fd {fd}: that descriptor carries the protocol");
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("--ready-fd {fd}: not an open descriptor this process can write"))
}

/// `virq check --guest linux-kvm`: boot the real kernel once per mode and judge what Linux's
/// own virtio_pci driver did.
fn check_linux_kvm(args: &CheckArgs) -> Result<ExitCode> {
    use virq_kvm::{GuestConfig, GuestMode};
    let modes: Vec<GuestMode> = if args.modes.is_empty() {
        vec![
            GuestMode::MsixPerQueue,
            GuestMode::MsixSmallTable,
            GuestMode::Intx,
        ]
    } else {
        args.modes
            .iter()
            .map(|m| {
                let name = match m.as_str() {
                    "msix-enough" => "msix-per-queue",
                    "msix-fewer" => "msix-small-table",
                    other => other,
                };
                GuestMode::from_name(name).with_context(|| {
                    format!("unknown mode {m:?} (msix-per-queue, msix-small-table, intx)")
                })
            })
            .collect::<Result<_>>()?
    };
    // --inject FAULT[@DEVICE]: a device-side fault (a `virq faults` device-* name) on one of
    // the guest's devices (blk, rng or console; rng by default).
    let fault = match &args.inject {
        None => None,
        Some(spec) => {
            let (name, device) = spec.split_once('@').unwrap_or((spec.as_str(), "rng"));
            let faults = Fault::from_name(name)
                .map(Fault::device_faults)
                .filter(|f| *f != Default::default())
                .or_else(|| virq_kvm::device_fault(name))
                .with_context(|| {
                    format!("{name:?} is not a device-side fault (see `virq faults`, device-*)")
                })?;
            let device = virq_kvm::GuestDevice::from_name(device)
                .with_context(|| format!("unknown device {device:?} (blk, rng, console)"))?;
            Some((device, faults))
        }
    };
    if let Err(e) = virq_kvm::kvm_available() {
        eprintln!("SKIP: virq check --guest linux-kvm: {e}");
        return Ok(ExitCode::from(EXIT_SKIPPED));
    }
    let kernel = virq_kvm::guest_kernel(true).context("the guest kernel")?;
    let mut runs = Vec::new();
    for mode in modes {
        eprintln!(
            "booting Linux ({}) ... this KVM takes about half a minute",
            mode.name()
        );
        let mut config = GuestConfig::new(&kernel, mode);
        config.hvc_console = args.hvc;
        config.faults = fault;
        let run = virq_kvm::run_linux_guest(&config)?;
        if let Some(dir) = &args.events_dir {
            write_events(dir, mode.name(), &run.events)?;
        }
        runs.push(run);
    }
    let mut verdicts = Vec::new();
    for run in &runs {
        let v = virq_check::judge_run(run)?;
        if let Some(dir) = args.logs.as_ref().filter(|d| d.as_os_str() != "-") {
            let written = v.logs.write_to(&dir.join(run.mode.name()))?;
            let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            eprintln!("{}: {}", run.mode.name(), names.join(" "));
        }
        verdicts.push(v);
    }
    let holds = verdicts.iter().all(virq_check::GuestVerdict::holds);
    if args.json {
        let out: Vec<_> = runs
            .iter()
            .zip(&verdicts)
            .map(|(r, v)| serde_json::json!({ "run": r, "workload": v.workload, "judgement": v.judgement, "holds": v.holds() }))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (r, v) in runs.iter().zip(&verdicts) {
            outln!("{}", r.summary());
            for w in &v.workload {
                outln!(
                    "  [{}] workload: {}",
                    if w.done { " OK " } else { "FAIL" },
                    w.what
                );
            }
            for s in &v.judgement.subjects {
                outln!("  -- {} --", s.heading());
                let mut text = String::new();
                for (i, a) in s.steps.iter().enumerate() {
                    virq_check::render_answer_text(&mut text, a, i as u8 + 1);
                }
                for line in text.lines() {
                    outln!("  {line}");
                }
                let rows = s.broken_rows();
                if !rows.is_empty() {
                    outln!("  failure catalogue rows: {rows:?}");
                }
            }
            outln!();
        }
        outln!(
            "verdict: {}",
            if holds {
                "no link is broken in any mode, and every workload ran"
            } else {
                "a link is broken, or a workload did not run"
            }
        );
    }
    Ok(if holds {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One run's events as JSON lines in `dir/<name>.jsonl`.
fn write_events(dir: &std::path::Path, name: &str, events: &[virq_events::Event]) -> Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.jsonl"));
    let file =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for e in events {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
