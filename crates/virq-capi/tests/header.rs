//! `include/virq.h` is what cbindgen generates from the crate today: the header cannot drift
//! from the library. `VIRQ_BLESS=1 cargo test -p virq-capi --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_the_generated_one() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses the crate")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("include/virq.h");
    if std::env::var_os("VIRQ_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/virq.h differs from what cbindgen generates from src/lib.rs; run \
         `VIRQ_BLESS=1 cargo test -p virq-capi --test header` and commit the header"
    );
    // Every exported function is in it.
    for f in [
        "virq_abi_version",
        "virq_strerror",
        "virq_last_error",
        "virq_device_config_default",
        "virq_device_create",
        "virq_device_destroy",
        "virq_config_read",
        "virq_config_write",
        "virq_mmio_read",
        "virq_mmio_write",
        "virq_bar_info",
        "virq_bar_read",
        "virq_bar_write",
        "virq_config_change",
        "virq_device_reset",
        "virq_snapshot",
        "virq_restore",
        "virq_events_drain",
        "virq_events_dropped",
        "virq_disk_read",
    ] {
        assert!(
            generated.contains(&format!(" {f}(")) || generated.contains(&format!("*{f}(")),
            "{f} missing from the header"
        );
    }
}
