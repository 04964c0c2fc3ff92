//! Run inputs through a harness without libFuzzer (any toolchain):
//! `cargo run --manifest-path fuzz/Cargo.toml --release --example replay -- TARGET PATH...`.
//! Exits non-zero on the first input that panics, naming it. Used to re-check crash files and
//! the committed inputs (`scripts/fuzz.sh --replay`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn inputs(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .expect("readable directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            inputs(&e, out);
        }
    } else {
        out.push(p.to_path_buf());
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(target) = args.next() else {
        eprintln!("usage: replay TARGET FILE_OR_DIR...");
        return ExitCode::from(2);
    };
    let Some(&(_, harness)) = virq_fuzz::TARGETS.iter().find(|(t, _)| *t == target) else {
        eprintln!("replay: unknown target {target:?}");
        return ExitCode::from(2);
    };
    let mut files = Vec::new();
    for a in args {
        inputs(Path::new(&a), &mut files);
    }
    for f in &files {
        let data = std::fs::read(f).expect("readable input");
        if std::panic::catch_unwind(|| harness(&data)).is_err() {
            eprintln!("replay: {target} panicked on {}", f.display());
            return ExitCode::from(1);
        }
    }
    println!("replay: {target}: {} inputs ok", files.len());
    ExitCode::SUCCESS
}
