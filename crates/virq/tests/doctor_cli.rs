//! `virq doctor` as a user runs it: unreadable inputs give exactly one line naming the file and
//! the reason and exit 2; readable ones give the report, the exit code of the verdict, and an
//! HTML page with `--html`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn virq(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virq"))
        .arg("doctor")
        .args(args)
        .output()
        .expect("virq runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virq-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../virq-doctor/tests/fixtures")
        .join(name)
}

/// Exit 2, nothing on stdout, exactly one stderr line that names the file and says `reason`.
fn assert_one_line(out: &Output, file: &Path, reason: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(&file.display().to_string()), "{stderr}");
    assert!(lines[0].contains(reason), "{stderr}");
}

#[test]
fn unreadable_inputs_say_which_file_and_why_on_one_line() {
    let dir = scratch("unreadable");
    let missing = dir.join("no-such-capture.log");
    assert_one_line(&virq(&[&missing]), &missing, "no such file");

    let empty = dir.join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    assert_one_line(&virq(&[&empty]), &empty, "the file is empty");

    let binary = dir.join("dump.bin");
    std::fs::write(&binary, b"MZ\x90\x00\x03\x00\x00\x00\x04\x00").unwrap();
    assert_one_line(
        &virq(&[&binary]),
        &binary,
        "looks binary (NUL byte at offset 3)",
    );

    let utf16 = dir.join("dbgview-unicode.log");
    let mut bytes = vec![0xFF, 0xFE];
    for u in "INT: INTx Level=11 Vector=11\r\n".encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    std::fs::write(&utf16, bytes).unwrap();
    assert_one_line(&virq(&[&utf16]), &utf16, "looks like UTF-16 text");

    let sub = dir.join("a-directory");
    std::fs::create_dir_all(&sub).unwrap();
    assert_one_line(&virq(&[&sub]), &sub, "is a directory");

    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn two_bad_files_give_one_line_each_and_a_good_one_is_not_enough() {
    let dir = scratch("two-bad");
    let missing = dir.join("gone.log");
    let empty = dir.join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    let good = fixture("good-msix.log");
    let out = virq(&[&good, &missing, &empty]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("gone.log") && lines[0].contains("no such file"));
    assert!(lines[1].contains("empty.log") && lines[1].contains("empty"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn html_flag_writes_the_page_and_the_exit_code_follows_the_verdict() {
    let dir = scratch("html");
    let page = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_virq"))
        .arg("doctor")
        .arg(fixture("apic-vector.log"))
        .arg("--html")
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("row 3:"));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("id=\"link-0-selectors\" data-verdict=\"broken\""),
        "{html}"
    );

    let out = virq(&[&fixture("good-msix.log"), &fixture("windbg-pci-good.txt")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_dir_all(&dir).ok();
}
