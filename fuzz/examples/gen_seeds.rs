//! Write the seed corpus: `cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds [DIR]`
//! (default `seeds/` beside this crate). The doctor's seeds are mainly its test fixtures, which
//! `scripts/fuzz.sh` passes directly (to `doctor_parse` and `win_text`); `judge` gets their
//! events as JSON lines.

use std::path::PathBuf;

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    let mut files: Vec<(String, String, Vec<u8>)> = Vec::new();
    for (name, bytes) in virq_fuzz::seeds::config_bar() {
        files.push(("config_bar".into(), name, bytes));
    }
    for (target, name, bytes) in virq_fuzz::seeds::rings() {
        files.push((target.into(), name, bytes));
    }
    for (name, bytes) in virq_fuzz::seeds::serve() {
        files.push(("serve_request".into(), name, bytes));
    }
    for (name, bytes) in virq_fuzz::seeds::ring() {
        files.push(("ring".into(), name, bytes));
    }
    for (name, bytes) in virq_fuzz::seeds::judge() {
        files.push(("judge".into(), name, bytes));
    }
    for (name, bytes) in virq_fuzz::seeds::doctor_parse() {
        files.push(("doctor_parse".into(), name, bytes));
    }
    for (name, bytes) in virq_fuzz::seeds::win_text() {
        files.push(("win_text".into(), name, bytes));
    }
    for (target, name, bytes) in &files {
        let harness = virq_fuzz::TARGETS
            .iter()
            .find(|(t, _)| t == target)
            .expect("a known target")
            .1;
        // A seed must itself pass its harness.
        harness(bytes);
        let d = dir.join(target);
        std::fs::create_dir_all(&d).expect("create seed directory");
        std::fs::write(d.join(name), bytes).expect("write seed");
    }
    println!("{} seeds written under {}", files.len(), dir.display());
}
