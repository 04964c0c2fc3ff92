//! Without the `fault-injection` feature the catalogue's device faults are compiled out, and
//! with them the tests of `tests/device_faults.rs`: this marker reports them as not run.

#[cfg(not(feature = "fault-injection"))]
#[test]
#[ignore = "device fault tests need `--features fault-injection` (cargo test --workspace enables it)"]
fn device_fault_tests_need_the_fault_injection_feature() {}
