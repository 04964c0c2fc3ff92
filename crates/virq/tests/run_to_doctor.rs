//! A run handed to the doctor directly: `virq check --events-dir` writes each mode's evidence
//! as JSON lines and `virq doctor` judges them with the same rules as a user's text logs.

use std::path::PathBuf;
use std::process::Command;

fn virq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_virq"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("virq-run-to-doctor-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_faulty_run_is_diagnosed_from_its_events_alone() {
    let dir = scratch("apic");
    let check = virq()
        .args([
            "check",
            "--inject",
            "apic-vector",
            "--mode",
            "msix-enough",
            "--events-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "check names a broken link");
    let file = dir.join("msix-enough.jsonl");
    let doctor = virq().arg("doctor").arg(&file).output().unwrap();
    let out = String::from_utf8_lossy(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(1), "{out}");
    assert!(out.contains("virq events (JSON lines)"), "{out}");
    assert!(
        out.contains("row 3: APIC/IDT Vector written instead of MessageNumber"),
        "{out}"
    );
}

#[test]
fn a_good_run_holds_in_the_doctor_too() {
    let dir = scratch("good");
    let check = virq()
        .args(["check", "--events-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0));
    for mode in ["msix-enough", "msix-fewer", "intx"] {
        let doctor = virq()
            .arg("doctor")
            .arg(dir.join(format!("{mode}.jsonl")))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&doctor.stdout);
        assert_eq!(doctor.status.code(), Some(0), "{mode}: {out}");
    }
}
