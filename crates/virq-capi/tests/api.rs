//! The C API through its exported functions: what a C caller links. Each test pins an
//! observable result (read-backs, callbacks, status codes, guest RAM, the disk).
// Calling the exported `extern "C"` functions is unsafe, as it is for a C caller.
#![allow(unsafe_code)]

mod common;

use std::ffi::CStr;

use common::*;
use virq_capi::*;
use virq_spec::common_cfg as cc;
use virq_spec::{NO_VECTOR, pci};

fn strerror(code: i32) -> String {
    // SAFETY: the library returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(virq_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn create_refuses_what_it_cannot_build_and_says_why() {
    let blk = config(VirqDeviceType::Blk);
    let cases: Vec<(VirqDeviceConfig, VirqStatus, &str)> = vec![
        (
            VirqDeviceConfig {
                device_type: 99,
                ..blk
            },
            VirqStatus::InvalidArgument,
            "unknown device type 99",
        ),
        (
            VirqDeviceConfig {
                num_queues: 2,
                ..config(VirqDeviceType::Rng)
            },
            VirqStatus::InvalidArgument,
            "virtio-rng has exactly 1 queue",
        ),
        (
            VirqDeviceConfig {
                num_queues: 3,
                ..config(VirqDeviceType::Console)
            },
            VirqStatus::InvalidArgument,
            "virtio-console has exactly 2 queue",
        ),
        (
            VirqDeviceConfig {
                num_queues: 65,
                ..blk
            },
            VirqStatus::InvalidArgument,
            "num_queues must be 1..=64",
        ),
        (
            VirqDeviceConfig {
                msix_table_size: 2049,
                ..blk
            },
            VirqStatus::InvalidArgument,
            "msix_table_size 2049",
        ),
        (
            VirqDeviceConfig {
                msix_table_size: -2,
                ..blk
            },
            VirqStatus::InvalidArgument,
            "msix_table_size -2",
        ),
        (
            VirqDeviceConfig {
                flags: 1 << 9,
                ..blk
            },
            VirqStatus::InvalidArgument,
            "unknown flags 0x200",
        ),
        (
            VirqDeviceConfig {
                disk_sectors: VIRQ_MAX_DISK_SECTORS + 1,
                ..blk
            },
            VirqStatus::InvalidArgument,
            "disk_sectors",
        ),
    ];
    for (cfg, status, message) in cases {
        assert_eq!(Dev::new(&cfg).err(), Some(status), "{message}");
        assert!(
            last_error().contains(message),
            "{message}: {}",
            last_error()
        );
    }
    // The RAM description.
    let mut raw = std::ptr::null_mut();
    let mut ram = vec![0u64; 64];
    let base = ram.as_mut_ptr().cast::<std::ffi::c_void>();
    let create = |ram: *mut std::ffi::c_void, len: usize, gpa: u64, out: *mut *mut VirqDevice| {
        // SAFETY: `ram` is NULL or points into `ram` (512 bytes, alive for the call); `out` is
        // NULL or valid; a created device would be leaked, but every case here fails.
        unsafe { virq_device_create(&blk, ram, len, gpa, std::ptr::null(), out) }
    };
    assert_eq!(
        create(std::ptr::null_mut(), 512, 0, &mut raw),
        VirqStatus::BadRam
    );
    assert_eq!(create(base, 0, 0, &mut raw), VirqStatus::BadRam);
    assert_eq!(create(base, 512, 4, &mut raw), VirqStatus::BadRam);
    assert!(last_error().contains("8-byte aligned"), "{}", last_error());
    assert_eq!(
        create(base, 512, u64::MAX - 256, &mut raw),
        VirqStatus::BadRam
    );
    assert_eq!(
        create(base, 512, 0, std::ptr::null_mut()),
        VirqStatus::NullPointer
    );
    assert!(raw.is_null());
    // SAFETY: `config` NULL is refused before anything else is read.
    let s =
        unsafe { virq_device_create(std::ptr::null(), base, 512, 0, std::ptr::null(), &mut raw) };
    assert_eq!(s, VirqStatus::NullPointer);
    drop(ram);
}

#[test]
fn every_status_has_a_name_and_unknown_codes_say_so() {
    for code in 0..=VirqStatus::SnapshotDeferredNotify as i32 {
        let text = strerror(code);
        assert!(text.starts_with("VIRQ_STATUS_"), "{code}: {text}");
    }
    assert!(strerror(VirqStatus::BadWidth as i32).starts_with("VIRQ_STATUS_BAD_WIDTH:"));
    assert_eq!(strerror(-1), "unknown virq_status");
    assert_eq!(strerror(29), "unknown virq_status");
    assert_eq!(virq_abi_version(), VIRQ_ABI_VERSION);
}

/// PCI 3.0, 6.1: identity registers; the access rules of the C API's configuration calls.
#[test]
fn configuration_space_reads_identity_and_refuses_bad_accesses() {
    let dev = Dev::new(&config(VirqDeviceType::Blk)).unwrap();
    assert_eq!(dev.cfg_read(0, 4), 0x1042_1AF4);
    assert_eq!(dev.cfg_read(pci::INTERRUPT_PIN, 1), 1);
    assert_eq!(dev.cfg_read(0x100, 4), 0, "extended space reads 0");
    let mut v = 0;
    // SAFETY: a live device and valid or NULL outputs.
    let s = unsafe { virq_config_read(dev.raw, 0, 3, &mut v) };
    assert_eq!(s, VirqStatus::BadWidth);
    // SAFETY: as above.
    let s = unsafe { virq_config_read(dev.raw, 0xFFE, 4, &mut v) };
    assert_eq!(s, VirqStatus::OutOfRange);
    // SAFETY: as above.
    let s = unsafe { virq_config_read(dev.raw, 0, 4, std::ptr::null_mut()) };
    assert_eq!(s, VirqStatus::NullPointer);
    // SAFETY: as above.
    let s = unsafe { virq_config_write(dev.raw, pci::COMMAND, 1, 0x1FF) };
    assert_eq!(s, VirqStatus::InvalidArgument);
    assert!(last_error().contains("does not fit in 1 bytes"));
    assert_eq!(
        dev.cfg_read(pci::COMMAND, 2),
        0,
        "the refused write changed nothing"
    );
    // SAFETY: a NULL device is refused, never dereferenced.
    let s = unsafe { virq_config_read(std::ptr::null_mut(), 0, 4, &mut v) };
    assert_eq!(s, VirqStatus::NullPointer);
}

/// PCI 3.0, 6.2.2 and 6.2.5: memory decoding needs a placed BAR and Memory Space; an access
/// nobody decodes is a master abort (all ones).
#[test]
fn mmio_is_unmapped_until_the_bars_are_placed_and_bar_calls_bypass_decoding() {
    let dev = Dev::new(&config(VirqDeviceType::Blk)).unwrap();
    assert_eq!(
        dev.try_read(COMMON + cc::MSIX_CONFIG, 2),
        (VirqStatus::Unmapped, 0xFFFF)
    );
    assert_eq!(dev.try_write(COMMON, 4, 0), VirqStatus::Unmapped);
    let (mut size, mut at) = (0u64, 1u64);
    // SAFETY: a live device and valid outputs.
    let s = unsafe { virq_bar_info(dev.raw, 0, &mut size, &mut at) };
    assert_eq!((s, size, at), (VirqStatus::Ok, 0x4000, 0));
    // SAFETY: as above.
    let s = unsafe { virq_bar_info(dev.raw, 2, &mut size, std::ptr::null_mut()) };
    assert_eq!((s, size), (VirqStatus::Ok, 0x10000));
    // SAFETY: as above.
    let s = unsafe { virq_bar_info(dev.raw, 1, &mut size, std::ptr::null_mut()) };
    assert_eq!(s, VirqStatus::NoSuchBar);
    // BAR-relative accesses need no decoding: msix_config reads NO_VECTOR after power-on.
    let mut v = 0u64;
    // SAFETY: as above.
    let s = unsafe { virq_bar_read(dev.raw, 0, cc::MSIX_CONFIG, 2, &mut v) };
    assert_eq!((s, v), (VirqStatus::Ok, u64::from(NO_VECTOR)));
    // SAFETY: as above.
    let s = unsafe { virq_bar_read(dev.raw, 0, 0x3FFE, 4, &mut v) };
    assert_eq!(s, VirqStatus::OutOfRange);
    // SAFETY: as above.
    let s = unsafe { virq_bar_read(dev.raw, 0, 0, 16, &mut v) };
    assert_eq!(s, VirqStatus::BadWidth);
    dev.place_bars();
    assert_eq!(dev.read(COMMON + cc::MSIX_CONFIG, 2), u64::from(NO_VECTOR));
    // SAFETY: as above.
    let s = unsafe { virq_bar_info(dev.raw, 0, &mut size, &mut at) };
    assert_eq!((s, at), (VirqStatus::Ok, BAR0));
    assert_eq!(dev.try_read(BAR0 + 0x4000, 4).0, VirqStatus::Unmapped);
}

/// virtio 1.2, 5.2.6 (blk requests) and 4.1.5.1.2 (MSI-X vectors): a read completes into
/// the caller's RAM with a message on the queue's vector; a write reaches the disk.
#[test]
fn blk_io_completes_in_the_callers_ram_with_one_msix_message_per_request() {
    let image = disk_image(64);
    let cfg = VirqDeviceConfig {
        disk_sectors: 64,
        disk_image: image.as_ptr(),
        ..config(VirqDeviceType::Blk)
    };
    let dev = Dev::new(&cfg).unwrap();
    drop(image); // copied at creation
    dev.place_bars();
    dev.program_entry(0, 0xFEE0_0000, 0x4021);
    dev.program_entry(1, 0xFEE0_0000, 0x4022);
    dev.enable_msix();
    let mut drv = BlkDriver::bring_up(&dev, Some((0, 1)));
    assert_eq!(dev.read(COMMON + cc::QUEUE_MSIX_VECTOR, 2), 1);
    assert_eq!(dev.read(DEVICE_CFG, 8), 64, "capacity in sectors");
    dev.take_irqs();

    drv.post(&dev, 0, 5);
    drv.kick(&dev);
    assert_eq!(dev.take_irqs(), vec![Irq::Msi(0xFEE0_0000, 0x4022)]);
    assert_eq!(BlkDriver::used_idx(&dev), 1);
    assert_eq!(dev.ram_read(STATUS, 1), [0], "VIRTIO_BLK_S_OK");
    let want: Vec<u8> = (5 * 512..6 * 512).map(disk_byte).collect();
    assert_eq!(dev.ram_read(DATA, 512), want);

    dev.ram_write(DATA, &[0xA5; 512]);
    drv.post(&dev, 1, 9);
    drv.kick(&dev);
    assert_eq!(dev.take_irqs(), vec![Irq::Msi(0xFEE0_0000, 0x4022)]);
    let mut sector = [0u8; 512];
    // SAFETY: a live device; `sector` is writable for 512 bytes.
    let s = unsafe { virq_disk_read(dev.raw, 9 * 512, sector.as_mut_ptr(), 512) };
    assert_eq!(s, VirqStatus::Ok);
    assert_eq!(sector, [0xA5; 512]);
    // SAFETY: as above.
    let s = unsafe { virq_disk_read(dev.raw, 63 * 512 + 1, sector.as_mut_ptr(), 512) };
    assert_eq!(s, VirqStatus::OutOfRange);

    // The configuration interrupt goes to msix_config's entry.
    // SAFETY: a live device.
    assert_eq!(unsafe { virq_config_change(dev.raw) }, VirqStatus::Ok);
    assert_eq!(dev.take_irqs(), vec![Irq::Msi(0xFEE0_0000, 0x4021)]);
    assert_eq!(dev.read(COMMON + cc::CONFIG_GENERATION, 1), 1);

    // A host-side reset returns the selectors to NO_VECTOR (virtio 1.2, 4.1.4.3.1).
    // SAFETY: a live device.
    assert_eq!(unsafe { virq_device_reset(dev.raw) }, VirqStatus::Ok);
    assert_eq!(dev.read(COMMON + cc::DEVICE_STATUS, 1), 0);
    assert_eq!(dev.read(COMMON + cc::MSIX_CONFIG, 2), u64::from(NO_VECTOR));
}

#[test]
fn disk_calls_on_other_device_types_are_refused() {
    let dev = Dev::new(&config(VirqDeviceType::Rng)).unwrap();
    let mut b = [0u8; 4];
    // SAFETY: a live device and a 4-byte buffer.
    let s = unsafe { virq_disk_read(dev.raw, 0, b.as_mut_ptr(), 4) };
    assert_eq!(s, VirqStatus::NotBlock);
    assert_eq!(dev.cfg_read(0, 4), 0x1044_1AF4);
}

/// virtio 1.2, 4.1.4.5 and PCI 3.0, 6.2.3: without MSI-X the device raises INTA#, and the
/// driver's read of ISR status returns the cause and lowers the line.
#[test]
fn intx_mode_raises_the_line_and_the_isr_read_lowers_it() {
    let dev = Dev::new(&VirqDeviceConfig {
        msix_table_size: 0,
        ..config(VirqDeviceType::Blk)
    })
    .unwrap();
    assert_eq!(dev.find_cap(pci::CAP_ID_MSIX), None);
    dev.place_bars();
    let mut drv = BlkDriver::bring_up(&dev, None);
    drv.post(&dev, 0, 0);
    drv.kick(&dev);
    assert_eq!(dev.take_irqs(), vec![Irq::Intx(true)]);
    assert_ne!(
        dev.cfg_read(pci::STATUS, 2) & u32::from(pci::STATUS_INTERRUPT),
        0
    );
    assert_eq!(dev.read(ISR, 1), 1, "queue interrupt");
    assert_eq!(dev.take_irqs(), vec![Irq::Intx(false)]);
    assert_eq!(dev.read(ISR, 1), 0, "read to clear");
    assert_eq!(dev.take_irqs(), vec![]);
}

#[test]
fn snapshot_reports_its_size_and_restores_into_a_twin_but_not_a_stranger() {
    let dev = Dev::new(&config(VirqDeviceType::Blk)).unwrap();
    dev.place_bars();
    dev.program_entry(1, 0xFEE0_0000, 0x77);
    dev.enable_msix();
    let _drv = BlkDriver::bring_up(&dev, Some((0, 1)));

    let mut len = 0usize;
    // SAFETY: a live device; buffers valid for their stated capacity.
    let s = unsafe { virq_snapshot(dev.raw, std::ptr::null_mut(), 0, &mut len) };
    assert_eq!(s, VirqStatus::BufferTooSmall);
    assert!(len > 100, "{len}");
    let mut buf = vec![0 as std::ffi::c_char; len + 1];
    let mut got = 0usize;
    // SAFETY: as above.
    let s = unsafe { virq_snapshot(dev.raw, buf.as_mut_ptr(), len + 1, &mut got) };
    assert_eq!((s, got), (VirqStatus::Ok, len));
    assert_eq!(buf[len], 0, "NUL-terminated");
    let json: Vec<u8> = buf[..len].iter().map(|&c| c as u8).collect();
    let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(doc["queues"][0]["msix_vector"], 1);

    let restore = |d: &Dev, text: &[u8]| {
        // SAFETY: a live device and `text.len()` readable bytes.
        unsafe { virq_restore(d.raw, text.as_ptr().cast(), text.len()) }
    };
    let twin = Dev::new(&config(VirqDeviceType::Blk)).unwrap();
    assert_eq!(restore(&twin, &json), VirqStatus::Ok, "{}", last_error());
    twin.place_bars(); // already placed by the restore; rewriting the same values is a no-op
    assert_eq!(twin.read(COMMON + cc::QUEUE_MSIX_VECTOR, 2), 1);
    assert_eq!(twin.read(MSIX_TABLE + 16 + 8, 4), 0x77);

    let two_queues = Dev::new(&VirqDeviceConfig {
        num_queues: 2,
        ..config(VirqDeviceType::Blk)
    })
    .unwrap();
    assert_eq!(restore(&two_queues, &json), VirqStatus::SnapshotQueueCount);
    assert!(last_error().contains("1 queues in the snapshot, 2 in the device"));
    let small = Dev::new(&VirqDeviceConfig {
        msix_table_size: 1,
        ..config(VirqDeviceType::Blk)
    })
    .unwrap();
    // Its MSI-X capability's Table Size field (read-only) is the first difference.
    assert_eq!(restore(&small, &json), VirqStatus::SnapshotReadOnlyConfig);
    assert_eq!(restore(&twin, b"{not json"), VirqStatus::SnapshotJson);

    // Field-level refusals: each edit names its own code, and nothing changes.
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut d = doc.clone();
        f(&mut d);
        serde_json::to_vec(&d).unwrap()
    };
    let fresh = Dev::new(&config(VirqDeviceType::Blk)).unwrap();
    for (text, status) in [
        (
            edit(&|d| d["isr_status"] = 4.into()),
            VirqStatus::SnapshotIsrStatus,
        ),
        (
            edit(&|d| d["queues"][0]["msix_vector"] = 9.into()),
            VirqStatus::SnapshotVector,
        ),
        (
            edit(&|d| d["device_status"] = 4.into()),
            VirqStatus::SnapshotDeviceStatus,
        ),
        (
            edit(&|d| d["queues"][0]["max_size"] = 128.into()),
            VirqStatus::SnapshotQueueMaxSize,
        ),
        (
            edit(&|d| d["queues"][0]["size"] = 3.into()),
            VirqStatus::SnapshotQueueSize,
        ),
        (
            edit(&|d| d["queues"][0]["desc_table"] = 0x7FFF_FFF0u64.into()),
            VirqStatus::SnapshotQueueRings,
        ),
        (
            edit(&|d| d["config_space"][0] = 0.into()),
            VirqStatus::SnapshotReadOnlyConfig,
        ),
        (
            edit(&|d| d["config_space"].as_array_mut().unwrap().truncate(64)),
            VirqStatus::SnapshotConfigSpaceLength,
        ),
        (
            edit(&|d| d["driver_features"] = (1u64 << 63).into()),
            VirqStatus::SnapshotFeatures,
        ),
        (
            edit(&|d| d["msix"]["table"].as_array_mut().unwrap().truncate(1)),
            VirqStatus::SnapshotMsixTableSize,
        ),
        (
            edit(&|d| d["msix"]["pba"] = serde_json::json!([1, 2])),
            VirqStatus::SnapshotPbaShape,
        ),
        (
            edit(&|d| d["backend"] = serde_json::json!({"device": "nonsense"})),
            VirqStatus::SnapshotBackend,
        ),
        (
            edit(&|d| d["queues"][0]["notify_deferred"] = true.into()),
            VirqStatus::SnapshotDeferredNotify,
        ),
        (
            edit(&|d| d["msix"]["pba"][0] = 2.into()),
            VirqStatus::SnapshotDeliverablePending,
        ),
    ] {
        assert_eq!(restore(&fresh, &text), status, "{}", last_error());
        assert_eq!(
            fresh.cfg_read(pci::COMMAND, 2),
            0,
            "a refused restore changed nothing"
        );
    }
}

#[test]
fn events_drain_as_whole_json_lines_and_report_the_size_a_line_needs() {
    let dev = Dev::new(&VirqDeviceConfig {
        flags: VIRQ_FLAG_RECORD_EVENTS,
        name: c"00:01.0".as_ptr(),
        ..config(VirqDeviceType::Blk)
    })
    .unwrap();
    dev.place_bars();
    dev.write(COMMON + cc::MSIX_CONFIG, 2, 0);
    dev.write(COMMON + cc::MSIX_CONFIG, 2, 7); // past the table: reads back NO_VECTOR

    let (mut written, mut remaining) = (0usize, 0usize);
    let mut tiny = [0 as std::ffi::c_char; 8];
    // SAFETY: a live device; buffers valid for their capacity.
    let s =
        unsafe { virq_events_drain(dev.raw, tiny.as_mut_ptr(), 8, &mut written, &mut remaining) };
    assert_eq!(s, VirqStatus::BufferTooSmall);
    assert!(written > 8 && remaining >= 2, "{written} {remaining}");
    let mut buf = vec![0 as std::ffi::c_char; 1 << 16];
    // SAFETY: as above.
    let s = unsafe {
        virq_events_drain(
            dev.raw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut written,
            &mut remaining,
        )
    };
    assert_eq!((s, remaining), (VirqStatus::Ok, 0));
    let text: String = buf[..written].iter().map(|&c| c as u8 as char).collect();
    assert!(text.ends_with('\n'));
    let events: Vec<virq_events::Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let vectors: Vec<(u16, u16)> = events
        .iter()
        .filter_map(|e| match e.kind {
            virq_events::EventKind::VectorWritten {
                written, read_back, ..
            } => Some((written, read_back)),
            _ => None,
        })
        .collect();
    assert_eq!(vectors, vec![(0, 0), (7, NO_VECTOR)]);
    assert!(
        events
            .iter()
            .all(|e| e.device.as_deref() == Some("00:01.0"))
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    // Drained means gone.
    // SAFETY: as above.
    let s = unsafe {
        virq_events_drain(
            dev.raw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut written,
            &mut remaining,
        )
    };
    assert_eq!((s, written, remaining), (VirqStatus::Ok, 0, 0));
    let mut dropped = 1u64;
    // SAFETY: a live device and a valid output.
    let s = unsafe { virq_events_dropped(dev.raw, &mut dropped) };
    assert_eq!(s, VirqStatus::Ok);
    assert_eq!(dropped, 0);
}

#[test]
fn the_event_callback_gets_each_event_at_the_end_of_the_call_that_made_it() {
    let dev = Dev::with(
        &config(VirqDeviceType::Blk),
        Wants {
            irqs: true,
            events_callback: true,
        },
    )
    .unwrap();
    assert!(
        dev.seen.events.lock().unwrap().is_empty(),
        "nothing happened yet"
    );
    dev.place_bars();
    dev.seen.events.lock().unwrap().clear();
    dev.write(COMMON + cc::MSIX_CONFIG, 2, 1);
    let lines = std::mem::take(&mut *dev.seen.events.lock().unwrap());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("\"event\":\"vector_written\""),
        "{}",
        lines[0]
    );
    // The callback took them: nothing is left to drain.
    let (mut written, mut remaining) = (0usize, 0usize);
    let mut buf = [0 as std::ffi::c_char; 256];
    // SAFETY: a live device; a 256-byte buffer.
    let s =
        unsafe { virq_events_drain(dev.raw, buf.as_mut_ptr(), 256, &mut written, &mut remaining) };
    assert_eq!((s, written, remaining), (VirqStatus::Ok, 0, 0));
}

#[test]
fn a_callback_calling_back_into_its_own_device_is_refused_busy() {
    let dev = Dev::new(&config(VirqDeviceType::Blk)).unwrap();
    dev.place_bars();
    dev.program_entry(1, 0xFEE0_0000, 0x31);
    dev.enable_msix();
    let mut drv = BlkDriver::bring_up(&dev, Some((0, 1)));
    *dev.seen.reenter.lock().unwrap() = Some(dev.raw as usize);
    drv.post(&dev, 0, 0);
    drv.kick(&dev);
    assert_eq!(
        *dev.seen.reentry_status.lock().unwrap(),
        vec![VirqStatus::Busy, VirqStatus::Busy],
        "a read and a destroy from inside the msi callback"
    );
    *dev.seen.reenter.lock().unwrap() = None;
    // The device still works afterwards.
    assert_eq!(BlkDriver::used_idx(&dev), 1);
    assert_eq!(dev.read(COMMON + cc::QUEUE_MSIX_VECTOR, 2), 1);
}

#[test]
fn calls_from_several_threads_are_serialised() {
    let dev = Dev::new(&config(VirqDeviceType::Blk)).unwrap();
    dev.place_bars();
    let raw = dev.raw as usize;
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for i in 0..2000u64 {
                    let at = COMMON + cc::QUEUE_DESC;
                    // SAFETY: the device outlives the scope; calls block each other.
                    let st = unsafe { virq_mmio_write(raw as *mut VirqDevice, at, 8, t << 32 | i) };
                    assert_eq!(st, VirqStatus::Ok);
                }
            });
        }
    });
    let last = dev.read(COMMON + cc::QUEUE_DESC, 8);
    assert_eq!(last & 0xFFFF_FFFF, 1999, "{last:#x}");
}
