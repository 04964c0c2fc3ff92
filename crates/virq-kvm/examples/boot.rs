//! Boot the guest kernel once and print what happened.
//!
//! `cargo run --release -p virq-kvm --example boot -- [msix-per-queue|msix-small-table|intx] [--hvc] [--log] [--events FILE]
//! [--fault NAME@DEVICE] [--cpus N] [--blk-queues N] [--cmdline EXTRA] [--sample-ms MS] [--limit SECONDS]`

use virq_kvm::{GuestConfig, GuestMode, guest_kernel, kvm_available, run_linux_guest};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = kvm_available() {
        // Not a success: exit 3 as `virq check --guest linux-kvm` does where KVM is unusable.
        eprintln!("SKIP: {e}");
        std::process::exit(3);
    }
    let mode = args
        .iter()
        .find_map(|a| GuestMode::from_name(a))
        .unwrap_or(GuestMode::MsixPerQueue);
    let kernel = match guest_kernel(true) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut config = GuestConfig::new(kernel, mode);
    config.hvc_console = args.iter().any(|a| a == "--hvc");
    if let Some(i) = args.iter().position(|a| a == "--fault") {
        // --fault NAME@DEVICE, for example isr-not-cleared-on-read@rng
        let spec = args.get(i + 1).expect("--fault NAME@DEVICE");
        let (name, dev) = spec.split_once('@').expect("--fault NAME@DEVICE");
        let faults = virq_kvm::device_fault(name).expect("unknown fault");
        let dev = virq_kvm::GuestDevice::from_name(dev).expect("unknown device");
        config.faults = Some((dev, faults));
    }
    if let Some(i) = args.iter().position(|a| a == "--cpus") {
        config.cpus = args[i + 1].parse().expect("--cpus N");
    }
    if let Some(i) = args.iter().position(|a| a == "--blk-queues") {
        config.blk_queues = args[i + 1].parse().expect("--blk-queues N");
    }
    if let Some(i) = args.iter().position(|a| a == "--sample-ms") {
        let ms: u64 = args[i + 1].parse().expect("--sample-ms MILLISECONDS");
        config.rip_sample_interval = Some(std::time::Duration::from_millis(ms));
    }
    if let Some(i) = args.iter().position(|a| a == "--cmdline") {
        config.extra_cmdline = args[i + 1].clone();
    }
    if let Some(i) = args.iter().position(|a| a == "--limit") {
        let s: u64 = args[i + 1].parse().expect("--limit SECONDS");
        config.time_limit = std::time::Duration::from_secs(s);
    }
    match run_linux_guest(&config) {
        Ok(run) => {
            if args.iter().any(|a| a == "--log") {
                print!("{}", run.serial_log);
                println!("---- hvc0 ----");
                print!("{}", run.hvc_log);
                println!("--------------");
            }
            if let Some(i) = args.iter().position(|a| a == "--events") {
                let path = args.get(i + 1).expect("--events FILE");
                let mut out = String::new();
                for e in &run.events {
                    out.push_str(&serde_json::to_string(e).expect("events serialize"));
                    out.push('\n');
                }
                std::fs::write(path, out).expect("write events");
            }
            print!("{}", run.summary());
            println!("exits: {:?}", run.exits);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
