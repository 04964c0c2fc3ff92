//! QEMU's device against virq's on the same interrupt-relevant access sequences.

use virq_qtest::differential::{compare, observe};
use virq_qtest::scenarios::Side;

#[test]
fn virqs_own_observations_are_the_spec_values() {
    let v = observe(Side::Virq).unwrap();
    // Read-back in range, at and past the table size (virtio 1.2, 4.1.5.1.2.1).
    assert_eq!(v["vectors/msix-off/msix_config-write-0x2"], 2);
    assert_eq!(v["vectors/msix-off/msix_config-write-0x3"], 0xFFFF);
    assert_eq!(v["vectors/msix-on/queue1-write-0x1234"], 0xFFFF);
    // Reset returns every selector to NO_VECTOR (4.1.4.3.1 / checklist 3.3).
    assert_eq!(v["vectors/after-reset/queue0"], 0xFFFF);
    // A masked entry sets its pending bit and delivers on unmask (PCI 3.0, 6.8.3.5).
    assert_eq!(v["msix/config-change-entry-masked/message0"], 0);
    assert_eq!(v["msix/config-change-entry-masked/pba"], 1);
    assert_eq!(v["msix/config-change-entry-masked/unmask/message0"], 1);
    assert_eq!(v["msix/config-change-entry-masked/unmask/pba"], 0);
    // INTx: ISR read-to-clear lowers the line; Interrupt Disable holds it low (4.1.4.5.1).
    assert_eq!(v["intx/config-change/line"], 1);
    assert_eq!(v["intx/config-change/after-read/line"], 0);
    assert_eq!(v["intx/config-change/after-read/isr-read-again"], 0);
    assert_eq!(v["intx/interrupt-disable/line"], 0);
    assert_eq!(v["intx/interrupt-disable/status-bit3"], 1);
    assert_eq!(v["intx/interrupt-disable/enabled-again/line"], 1);
}

#[test]
#[ignore = "needs qemu-system-x86_64; run by .ci/run stage qemu-reference"]
fn qemu_and_virq_differ_only_where_listed() {
    let q = observe(Side::Qemu).unwrap();
    let v = observe(Side::Virq).unwrap();
    let c = compare(&q, &v);
    println!("{c}");
    assert!(
        c.unexplained.is_empty() && c.stale.is_empty(),
        "differential:\n{c}"
    );
    assert!(c.same > 50, "{} identical observations", c.same);
}
