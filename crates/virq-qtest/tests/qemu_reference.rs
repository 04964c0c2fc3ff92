//! The same scenarios against QEMU's virtio-pci devices. Slow and needs QEMU: run by the
//! `.ci/run` stage qemu-reference with `--ignored`.

use virq_qtest::scenarios::{Side, interrupts_off_on};

#[test]
#[ignore = "needs qemu-system-x86_64; run by .ci/run stage qemu-reference"]
fn intx_interrupts_off_on_with_event_idx_virtio_1_2_2_7_10() {
    interrupts_off_on(Side::Qemu, 0, true).unwrap();
}

#[test]
#[ignore = "needs qemu-system-x86_64; run by .ci/run stage qemu-reference"]
fn intx_interrupts_off_on_without_event_idx_virtio_1_2_2_7_7() {
    interrupts_off_on(Side::Qemu, 0, false).unwrap();
}

#[test]
#[ignore = "needs qemu-system-x86_64; run by .ci/run stage qemu-reference"]
fn msix_interrupts_off_on_with_event_idx_virtio_1_2_2_7_10() {
    interrupts_off_on(Side::Qemu, 2, true).unwrap();
}

#[test]
#[ignore = "needs qemu-system-x86_64; run by .ci/run stage qemu-reference"]
fn msix_interrupts_off_on_without_event_idx_virtio_1_2_2_7_7() {
    interrupts_off_on(Side::Qemu, 2, false).unwrap();
}

#[test]
#[ignore = "needs qemu-system-x86_64; run by .ci/run stage qemu-reference"]
fn every_mode_of_blk_rng_console_on_qemu() {
    let outcomes = virq_qtest::scenarios::run_all(Side::Qemu).unwrap();
    assert_eq!(outcomes.len(), 12);
}
