//! The scenarios against virq's own device (in-process, fast: part of the default suite).

use virq_qtest::scenarios::{Side, interrupts_off_on};

#[test]
fn intx_interrupts_off_on_with_event_idx_virtio_1_2_2_7_10() {
    interrupts_off_on(Side::Virq, 0, true).unwrap();
}

#[test]
fn intx_interrupts_off_on_without_event_idx_virtio_1_2_2_7_7() {
    interrupts_off_on(Side::Virq, 0, false).unwrap();
}

#[test]
fn msix_interrupts_off_on_with_event_idx_virtio_1_2_2_7_10() {
    interrupts_off_on(Side::Virq, 2, true).unwrap();
}

#[test]
fn msix_interrupts_off_on_without_event_idx_virtio_1_2_2_7_7() {
    interrupts_off_on(Side::Virq, 2, false).unwrap();
}

#[test]
fn every_mode_of_blk_rng_console_on_virqs_device() {
    let outcomes = virq_qtest::scenarios::run_all(Side::Virq).unwrap();
    assert_eq!(outcomes.len(), 12);
}
