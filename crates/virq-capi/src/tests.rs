//! What only the crate itself can provoke: a panic inside an entry point (a virq bug) and the
//! poisoned device it leaves behind.

use super::*;

fn blk(ram: &mut [u64]) -> *mut VirqDevice {
    let cfg = virq_device_config_default(VirqDeviceType::Blk as u32);
    let mut dev = std::ptr::null_mut();
    // SAFETY: `ram` outlives the device (each test destroys it first); `cfg` and `dev` are
    // valid for the call.
    let s = unsafe {
        virq_device_create(
            &cfg,
            ram.as_mut_ptr().cast(),
            ram.len() * 8,
            0,
            std::ptr::null(),
            &mut dev,
        )
    };
    assert_eq!(s, VirqStatus::Ok);
    dev
}

fn last() -> String {
    // SAFETY: a NUL-terminated string valid until the next call on this thread.
    unsafe { CStr::from_ptr(virq_last_error()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_panic_inside_a_call_is_caught_reported_and_poisons_the_device() {
    let mut ram = vec![0u64; 4096];
    let dev = blk(&mut ram);
    let s = with_device(dev, |_| panic!("injected for the test"));
    assert_eq!(s, VirqStatus::Panicked);
    assert!(last().contains("injected for the test"), "{}", last());
    let mut v = 0;
    // SAFETY: a live (poisoned) device and a valid output.
    let s = unsafe { virq_config_read(dev, 0, 4, &mut v) };
    assert_eq!(s, VirqStatus::Poisoned);
    assert!(last().contains("only virq_device_destroy works"));
    // SAFETY: the device from `blk`, not used again.
    assert_eq!(unsafe { virq_device_destroy(dev) }, VirqStatus::Ok);
}

#[test]
fn a_panic_in_a_call_without_a_device_is_caught_too() {
    assert_eq!(guarded(|| panic!("no device here")), VirqStatus::Panicked);
    assert!(last().contains("no device here"));
}

#[test]
fn header_constants_match_the_device_crate() {
    assert_eq!(VIRQ_MSIX_MAX, i32::from(virq_device::msix::MAX_TABLE_SIZE));
    assert_eq!(VIRQ_DEVICE_TYPE_IDS, [2, 3, 4]);
    assert_eq!(
        VirqDeviceType::Blk as u32,
        u32::from(virq_backends::VIRTIO_ID_BLOCK)
    );
    assert_eq!(
        VirqDeviceType::Console as u32,
        u32::from(virq_backends::VIRTIO_ID_CONSOLE)
    );
    assert_eq!(
        VirqDeviceType::Rng as u32,
        u32::from(virq_backends::VIRTIO_ID_ENTROPY)
    );
}

const VIRQ_DEVICE_TYPE_IDS: [u32; 3] = [
    VirqDeviceType::Blk as u32,
    VirqDeviceType::Console as u32,
    VirqDeviceType::Rng as u32,
];

#[test]
fn last_error_is_per_thread_and_empty_until_a_refusal() {
    std::thread::spawn(|| {
        assert_eq!(last(), "");
        // SAFETY: a NULL device is refused before use.
        let s = unsafe { virq_device_reset(std::ptr::null_mut()) };
        assert_eq!(s, VirqStatus::NullPointer);
        assert_eq!(last(), "the device pointer is NULL");
    })
    .join()
    .unwrap();
}
