//! A real Linux kernel (`scripts/build-guest-kernel.sh`) drives virq's devices on KVM.
//!
//! Each test boots the kernel once (kernel-only: it probes virtio-blk, virtio-rng and
//! virtio-console, reads the partition table, takes entropy, writes its log to hvc0, then
//! panics for want of a root file system and reboots). Boots run one at a time: on hosts whose
//! KVM emulates instructions, two at once are each twice as slow.
//!
//! Each boot is judged as `virq check --guest linux-kvm` judges it: the kernel's console log and
//! the devices' records, read as the doctor reads them, handed to the one judge; the test adds
//! what it knows of the scenario (which plan Linux must choose in each mode).
//!
//! Every test here is ignored (`#[ignore = "why"]`): five boots (one with two vCPUs) cost minutes, too much for the default
//! `cargo test --workspace`. `.ci/run`'s real-guest stage builds the kernel and runs them
//! (`cargo test --test real_guest -- --ignored`). Run that way, a missing prerequisite
//! (`/dev/kvm`, the kernel) fails the test and names what is missing; `.ci/run` skips the
//! stage, and says so, where `/dev/kvm` is absent.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use virq_events::{NO_VECTOR, Selector};
use virq_kvm::{
    DeviceReport, GuestConfig, GuestDevice, GuestExit, GuestMode, GuestRun, device_fault,
    guest_kernel, kvm_available, run_linux_guest,
};

/// One boot at a time.
static BOOT: Mutex<()> = Mutex::new(());
static KERNEL: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The kernel; panics naming the missing prerequisite (`/dev/kvm` or the kernel) otherwise.
fn kernel(test: &str) -> PathBuf {
    if let Err(e) = kvm_available() {
        panic!("{test}: /dev/kvm is required and not usable here: {e}");
    }
    // Not built here: a build takes minutes; scripts/build-guest-kernel.sh (or .ci/run) does it.
    let k = KERNEL.get_or_init(|| guest_kernel(false).map_err(|e| e.to_string()));
    match k {
        Ok(p) => p.clone(),
        Err(e) => panic!("{test}: the guest kernel is required and missing: {e}"),
    }
}

fn boot(test: &str, mode: GuestMode, hvc: bool, tweak: impl FnOnce(&mut GuestConfig)) -> GuestRun {
    let kernel = kernel(test);
    let _one = BOOT.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = GuestConfig::new(kernel, mode);
    config.hvc_console = hvc;
    // A limit, not a target: a boot takes 20-60 s on a quiet machine, several times that
    // when the machine is loaded (the emulated guest shares the two cores).
    config.time_limit = Duration::from_secs(480);
    tweak(&mut config);
    let run = run_linux_guest(&config).unwrap_or_else(|e| panic!("{test}: {e}"));
    println!("{}", run.summary());
    for d in &run.devices {
        println!(
            "  timing {}: KVM_SIGNAL_MSI mean {:?} ns, KVM_IRQ_LINE mean {:?} ns, INTx raise->lower mean {:?} ns median {:?} ns",
            d.device.name(),
            d.msi_ioctl_mean_ns,
            d.line_ioctl_mean_ns,
            d.line_high_mean_ns,
            d.line_high_median_ns
        );
    }
    println!("  exits {:?}", run.exits);
    if !matches!(run.exit, GuestExit::Reboot | GuestExit::Shutdown) {
        println!("---- serial ----\n{}", run.serial_log);
        panic!("{test}: the guest did not stop cleanly: {:?}", run.exit);
    }
    // Every device reported, each with its queues: the per-device loops below cannot pass
    // over an empty list.
    let reported: Vec<GuestDevice> = run.devices.iter().map(|d| d.device).collect();
    assert_eq!(reported, GuestDevice::ALL, "{test}: devices reported");
    for d in &run.devices {
        assert!(!d.queue_vectors.is_empty(), "{test}: {}: no queues", d.bdf);
    }
    run
}

/// The judgement `virq check --guest linux-kvm` prints: the workload ran, no device has a
/// broken link, and for every device the links the run can show (MSI-X state, selectors,
/// interrupts for its completions) hold.
fn assert_judged_healthy(run: &GuestRun) -> virq_check::GuestVerdict {
    let v = virq_check::judge_run(run).expect("the run's files read back");
    let workload: Vec<_> = v.workload.iter().filter(|w| !w.done).collect();
    assert!(workload.is_empty(), "workload: {workload:#?}");
    let bdfs: Vec<Option<String>> = v
        .judgement
        .subjects
        .iter()
        .map(|s| s.device.clone())
        .collect();
    for d in &run.devices {
        assert!(
            bdfs.contains(&Some(d.bdf.clone())),
            "{} not judged: {bdfs:?}",
            d.bdf
        );
    }
    for s in &v.judgement.subjects {
        assert!(
            s.broken_rows().is_empty() && s.candidate_rows().is_empty(),
            "{}: {:#?}",
            s.heading(),
            s.rows
                .iter()
                .filter(|a| a.verdict.is_broken())
                .collect::<Vec<_>>()
        );
        for n in [1, 4, 6, 7] {
            assert!(
                s.step(n).verdict.is_holds(),
                "{} step {n}: {:?}",
                s.heading(),
                s.step(n)
            );
        }
    }
    assert!(v.holds());
    v
}

fn assert_readbacks_match(d: &DeviceReport) {
    for w in &d.vector_writes {
        assert_eq!(
            w.written, w.read_back,
            "{}: {:?} written {} read back {}",
            d.bdf, w.selector, w.written, w.read_back
        );
    }
}

fn assert_got_data(run: &GuestRun) {
    assert!(
        run.data.partition_table_read,
        "no ' vda: vda1' in the log:\n{}",
        run.serial_log
    );
    assert!(run.data.blk_reads > 0, "virtio-blk served no reads");
    assert!(run.data.rng_bytes > 0, "virtio-rng handed out no entropy");
}

/// KVM delivered every message the device signalled while the guest's local APIC was on.
/// The one exception is the kernel's end: an SMP kernel's panic stops the other CPUs and
/// software-disables its own local APIC (Linux 6.1 `native_stop_other_cpus`), so the console
/// completions of the last panic lines reach no APIC and `KVM_SIGNAL_MSI` reports 0.
fn assert_delivered_until_panic(run: &GuestRun, d: &DeviceReport) {
    if d.msi_not_delivered == 0 {
        return;
    }
    let panic = run
        .milestones
        .panic_s
        .expect("messages refused and no kernel panic");
    let first = d
        .msi_first_not_delivered_s
        .expect("a refused message has a time");
    assert!(
        first >= panic,
        "{}: KVM refused a message at {first:.3} s, before the panic at {panic:.3} s ({} refused)",
        d.bdf,
        d.msi_not_delivered
    );
}

fn assert_hvc_lines(run: &GuestRun) {
    assert!(
        run.data.hvc_lines >= 5,
        "hvc0 carried {} lines:\n{}",
        run.data.hvc_lines,
        run.hvc_log
    );
    assert!(run.hvc_log.contains("Kernel panic") || run.hvc_log.contains("vda"));
}

#[test]
#[ignore = "boots Linux under KVM (~25 s each); run by .ci/run stage real-guest"]
fn msix_with_a_vector_per_queue() {
    let run = boot(
        "msix_with_a_vector_per_queue",
        GuestMode::MsixPerQueue,
        true,
        |_| {},
    );
    assert_judged_healthy(&run);
    for d in &run.devices {
        let table = d.msix_table_size;
        assert!(d.msix_enabled, "{}: MSI-X not enabled", d.bdf);
        assert!(
            d.msix_config < table,
            "{}: msix_config {}",
            d.bdf,
            d.msix_config
        );
        let mut seen = vec![d.msix_config];
        for (q, v) in d.queue_vectors.iter().enumerate() {
            assert!(
                *v < table,
                "{} queue {q}: vector {v} >= table {table}",
                d.bdf
            );
            assert!(!seen.contains(v), "{} queue {q}: vector {v} shared", d.bdf);
            seen.push(*v);
            assert_eq!(d.last_read_back(Selector::Queue(q as u16)), Some(*v));
        }
        assert_eq!(d.last_read_back(Selector::MsixConfig), Some(d.msix_config));
        assert_readbacks_match(d);
        assert_eq!(d.line_raised, 0, "{}: INTx raised with MSI-X on", d.bdf);
        assert!(d.messages_sent() > 0, "{}: no MSI-X message", d.bdf);
        assert_delivered_until_panic(&run, d);
        // Every message went to a queue's own entry.
        for entry in d.messages_per_entry.keys() {
            assert!(d.queue_vectors.contains(entry), "{}: entry {entry}", d.bdf);
        }
    }
    let console = run.device(GuestDevice::Console);
    assert!(
        console.messages_sent() >= 10,
        "console: {console:?} messages"
    );
    assert_got_data(&run);
    assert_hvc_lines(&run);
    assert!(!run.data.nobody_cared);
}

#[test]
#[ignore = "boots Linux under KVM (~25 s each); run by .ci/run stage real-guest"]
fn msix_table_too_small_falls_back() {
    let run = boot(
        "msix_table_too_small_falls_back",
        GuestMode::MsixSmallTable,
        true,
        |_| {},
    );
    assert_judged_healthy(&run);
    // virtio-console: 2 queues, 2 entries: config on one vector, both queues share the other.
    let c = run.device(GuestDevice::Console);
    assert_eq!(c.msix_table_size, 2);
    assert!(c.msix_enabled, "console: MSI-X not enabled");
    assert!(c.msix_config < 2);
    assert_eq!(c.queue_vectors.len(), 2);
    assert_eq!(
        c.queue_vectors[0], c.queue_vectors[1],
        "console: not shared"
    );
    assert_ne!(c.queue_vectors[0], c.msix_config);
    assert!(c.queue_vectors[0] < 2);
    assert_readbacks_match(c);
    assert!(c.messages_sent() >= 10, "console: too few messages");
    assert_eq!(
        c.messages_per_entry.keys().copied().collect::<Vec<_>>(),
        vec![c.queue_vectors[0]]
    );
    // virtio-blk and virtio-rng: a 1-entry table fits neither per-queue nor shared vectors
    // (config + queues needs 2), so Linux gives MSI-X up and uses INTx.
    for dev in [GuestDevice::Blk, GuestDevice::Rng] {
        let d = run.device(dev);
        assert_eq!(d.msix_table_size, 1);
        assert!(!d.msix_enabled, "{}: MSI-X left enabled", d.bdf);
        assert_eq!(d.msix_config, NO_VECTOR);
        assert!(d.queue_vectors.iter().all(|v| *v == NO_VECTOR));
        assert_eq!(d.messages_sent(), 0);
        assert!(
            d.line_raised > 0 && d.line_lowered > 0,
            "{}: no INTx",
            d.bdf
        );
        assert!(d.isr_reads > 0);
    }
    assert_got_data(&run);
    assert_hvc_lines(&run);
    assert!(!run.data.nobody_cared);
}

#[test]
#[ignore = "boots Linux under KVM (~25 s each); run by .ci/run stage real-guest"]
fn intx_with_pci_nomsi() {
    let run = boot("intx_with_pci_nomsi", GuestMode::Intx, true, |_| {});
    assert_judged_healthy(&run);
    for d in &run.devices {
        assert!(!d.msix_enabled, "{}: MSI-X enabled under pci=nomsi", d.bdf);
        assert_eq!(d.msix_config, NO_VECTOR, "{}", d.bdf);
        assert!(d.queue_vectors.iter().all(|v| *v == NO_VECTOR), "{}", d.bdf);
        assert!(
            d.vector_writes.iter().all(|w| w.written == NO_VECTOR),
            "{}: {:?}",
            d.bdf,
            d.vector_writes
        );
        assert_eq!(
            d.messages_sent(),
            0,
            "{}: MSI-X message in INTx mode",
            d.bdf
        );
        assert!(d.line_raised > 0, "{}: line never raised", d.bdf);
        // Lowered as often as raised (the last raise may still be pending at the panic).
        assert!(d.line_lowered + 1 >= d.line_raised, "{}", d.bdf);
        assert!(d.isr_reads >= d.line_lowered, "{}", d.bdf);
    }
    assert_got_data(&run);
    assert_hvc_lines(&run);
    assert!(
        !run.data.nobody_cared,
        "nobody cared:\n{}",
        run.data.error_lines.join("\n")
    );
}

/// virq-device's catalogue fault "reading ISR status does not clear it" on virtio-rng, INTx:
/// the line never drops, so the IOAPIC re-delivers after every EOI. Records what Linux does.
#[test]
#[ignore = "boots Linux under KVM (~25 s each); run by .ci/run stage real-guest"]
fn fault_isr_not_cleared_storms_intx() {
    let faults = device_fault("isr-not-cleared-on-read").expect("known fault");
    let run = boot(
        "fault_isr_not_cleared_storms_intx",
        GuestMode::Intx,
        false,
        |c| {
            c.faults = Some((GuestDevice::Rng, faults));
        },
    );
    let rng = run.device(GuestDevice::Rng);
    assert!(rng.faults.is_some());
    // The judge names the device's fault from its record: row 22, ISR status not cleared.
    let v = virq_check::judge_run(&run).expect("the run's files read back");
    let judged = v
        .judgement
        .subjects
        .iter()
        .find(|s| s.device.as_deref() == Some(rng.bdf.as_str()))
        .expect("rng judged");
    assert!(
        judged.broken_rows().contains(&22),
        "{:?}",
        judged.broken_rows()
    );
    assert!(!v.holds());
    assert!(rng.line_raised >= 1);
    assert_eq!(rng.line_lowered, 0, "the line must stay high");
    assert_eq!(rng.isr_reads_zero, 0, "ISR must never read 0");
    assert!(
        rng.isr_reads > 10 * rng.line_raised,
        "expected a storm of handler runs: {} ISR reads for {} raises",
        rng.isr_reads,
        rng.line_raised
    );
    println!(
        "  Linux under the storm: {} handler runs (ISR reads) in {:.1} s, nobody cared: {}, rng bytes {}",
        rng.isr_reads, run.milestones.stopped_s, run.data.nobody_cared, run.data.rng_bytes
    );
    // The healthy devices still did their work.
    assert!(run.data.partition_table_read);
}

/// Two vCPUs (MP table with two processors; the second started by Linux with INIT/SIPI
/// through KVM's in-kernel local APIC) and virtio-blk with two request queues: Linux's
/// virtio-blk takes one queue per CPU (virtio 1.2, 5.2.3: VIRTIO_BLK_F_MQ) and, with MSI-X
/// per queue, gives each its own vector (virtio 1.2, 4.1.5.1.2), read back as written.
#[test]
#[ignore = "boots Linux under KVM with two vCPUs (~1-3 min); run by .ci/run stage real-guest"]
fn two_vcpus_give_blk_a_vector_per_request_queue() {
    let run = boot(
        "two_vcpus_give_blk_a_vector_per_request_queue",
        GuestMode::MsixPerQueue,
        true,
        |c| {
            c.cpus = 2;
            c.blk_queues = 2;
        },
    );
    assert!(
        run.serial_log.contains("smp: Brought up 1 node, 2 CPUs"),
        "the second CPU did not come up:\n{}",
        run.serial_log
    );
    assert_eq!(run.vcpus.len(), 2);
    assert!(run.vcpus.iter().all(|v| v.exits > 0), "{:?}", run.vcpus);
    assert_judged_healthy(&run);
    let blk = run.device(GuestDevice::Blk);
    assert_eq!(blk.msix_table_size, 3, "1 + 2 queues");
    assert!(blk.msix_enabled);
    assert_eq!(blk.queue_vectors.len(), 2);
    let (q0, q1) = (blk.queue_vectors[0], blk.queue_vectors[1]);
    assert!(q0 < 3 && q1 < 3, "{:?}", blk.queue_vectors);
    assert_ne!(q0, q1, "blk: the request queues share a vector");
    assert!(
        ![q0, q1].contains(&blk.msix_config),
        "blk: a queue on msix_config"
    );
    for q in 0..2u16 {
        assert_eq!(
            blk.last_read_back(Selector::Queue(q)),
            Some(blk.queue_vectors[q as usize])
        );
    }
    assert_readbacks_match(blk);
    assert_eq!(blk.line_raised, 0);
    assert!(blk.messages_sent() > 0, "blk: no MSI-X message");
    for entry in blk.messages_per_entry.keys() {
        assert!(
            blk.queue_vectors.contains(entry),
            "blk: message on entry {entry}"
        );
    }
    for d in &run.devices {
        assert_delivered_until_panic(&run, d);
    }
    assert_got_data(&run);
    assert_hvc_lines(&run);
    assert!(!run.data.nobody_cared);
}
