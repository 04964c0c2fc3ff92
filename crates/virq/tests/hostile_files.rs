//! Hostile files on the command line: `virq check --inf PATH` and `virq doctor FILE...` given
//! missing, empty, binary, truncated, huge or wrongly encoded files. A file virq cannot use
//! gets exactly one line on stderr naming it and exit code 2; one it can use, however odd,
//! gets an answer; nothing panics, not even when the reader of its output goes away early.

use std::path::{Path, PathBuf};
use std::process::Command;

const VIRQ: &str = env!("CARGO_BIN_EXE_virq");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn virq(args: &[&str]) -> Out {
    let out = Command::new(VIRQ).args(args).output().expect("virq runs");
    Out {
        code: out
            .status
            .code()
            .expect("virq exits, not killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch directory of this test binary, one per test.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("virq-hostile-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// Exit 2, nothing on stdout, one line on stderr that names `path` and says `why`.
fn assert_refused(out: &Out, path: &str, why: &str) {
    assert_eq!(out.code, 2, "exit code; stderr: {}", out.stderr);
    assert_eq!(out.stdout, "", "nothing on stdout");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {:?}", out.stderr);
    assert!(lines[0].contains(path), "names {path}: {}", lines[0]);
    assert!(lines[0].contains(why), "says {why:?}: {}", lines[0]);
    assert!(!out.stderr.contains("panicked"));
}

/// An INF that makes the checklist grant MSI-X with enough messages.
const INF: &str = "\
; a minimal INF for virq check --inf
[Version]
Signature = \"$WINDOWS NT$\"

[virqblk_inst.NT]
CopyFiles = virqblk_files

[virqblk_inst.NT.HW]
AddReg = msi_addreg

[msi_addreg]
HKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", MSISupported, 0x00010001, 1
HKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", MessageNumberLimit, 0x00010001, 8
";

fn check_inf(path: &str) -> Out {
    virq(&["check", "--mode", "msix-enough", "--inf", path])
}

fn utf16(text: &str, be: bool) -> Vec<u8> {
    let mut b = if be {
        vec![0xFE, 0xFF]
    } else {
        vec![0xFF, 0xFE]
    };
    for u in text.encode_utf16() {
        b.extend_from_slice(&if be { u.to_be_bytes() } else { u.to_le_bytes() });
    }
    b
}

#[test]
fn check_inf_that_cannot_be_used_is_one_line_and_exit_2() {
    let d = scratch("inf-refused");
    let missing = d.join("missing.inf").display().to_string();
    assert_refused(&check_inf(&missing), &missing, "No such file");
    let dir = d.display().to_string();
    assert_refused(&check_inf(&dir), &dir, "is a directory");
    let mut binary = b"[Version]\n".to_vec();
    binary.extend_from_slice(&[0x7F, b'E', b'L', b'F', 0, 1, 2, 0xFF, 0xFE]);
    let p = write(&d, "binary.inf", &binary);
    assert_refused(&check_inf(&p), &p, "looks binary (NUL byte at offset 14)");
    // UTF-16 cut in the middle of a code unit.
    let mut cut = utf16(INF, false);
    cut.pop();
    let p = write(&d, "truncated-utf16.inf", &cut);
    assert_refused(&check_inf(&p), &p, "odd number of bytes");
    // A lone surrogate is not UTF-16.
    let p = write(
        &d,
        "bad-utf16.inf",
        &[0xFF, 0xFE, b'[', 0, 0x00, 0xD8, b']', 0],
    );
    assert_refused(&check_inf(&p), &p, "not valid UTF-16");
    // Huge: a sparse 17 MiB file is refused before it is read.
    let p = d.join("huge.inf");
    std::fs::File::create(&p)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let p = p.display().to_string();
    assert_refused(&check_inf(&p), &p, "at most 16777216 bytes");
    std::fs::remove_dir_all(&d).unwrap();
}

/// Text that is an INF but not a usable one gets the INF parser's one-line reason.
#[test]
fn check_inf_empty_or_truncated_names_the_problem() {
    let d = scratch("inf-text");
    let p = write(&d, "empty.inf", b"");
    let out = check_inf(&p);
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("no install section"), "{}", out.stderr);
    // Cut inside a section header.
    let cut = &INF[..INF.find("[msi_addreg]").unwrap() + 5];
    let p = write(&d, "truncated.inf", cut.as_bytes());
    let out = check_inf(&p);
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("line 11"), "{}", out.stderr);
    assert!(out.stderr.contains("not closed"), "{}", out.stderr);
    std::fs::remove_dir_all(&d).unwrap();
}

/// Windows writes INF files as UTF-16 with a byte-order mark as often as in ANSI: both
/// byte orders read exactly like the UTF-8 file, and so does one with a UTF-8 BOM or ANSI
/// (Latin-1) bytes in a comment. (Regression: UTF-16 INFs used to fail with "line 1: text
/// outside any section".)
#[test]
fn check_inf_in_utf16_reads_like_utf8() {
    let d = scratch("inf-utf16");
    let reference = check_inf(&write(&d, "utf8.inf", INF.as_bytes()));
    assert_eq!(
        reference.code, 0,
        "{}{}",
        reference.stdout, reference.stderr
    );
    assert!(
        reference.stdout.contains("msix-enough"),
        "{}",
        reference.stdout
    );
    let mut bom8 = vec![0xEF, 0xBB, 0xBF];
    bom8.extend_from_slice(INF.as_bytes());
    let mut latin1 = b"; caf\xe9 \xa9 2024\n".to_vec();
    latin1.extend_from_slice(INF.as_bytes());
    for (name, bytes) in [
        ("utf16le.inf", utf16(INF, false)),
        ("utf16be.inf", utf16(INF, true)),
        ("utf8bom.inf", bom8),
        ("latin1.inf", latin1),
    ] {
        let out = check_inf(&write(&d, name, &bytes));
        assert_eq!(out.code, reference.code, "{name}: {}", out.stderr);
        assert_eq!(out.stdout, reference.stdout, "{name}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn doctor_files_that_cannot_be_used_are_one_line_and_exit_2() {
    let d = scratch("doctor-refused");
    let missing = d.join("missing.log").display().to_string();
    assert_refused(&virq(&["doctor", &missing]), &missing, "no such file");
    let dir = d.display().to_string();
    assert_refused(&virq(&["doctor", &dir]), &dir, "is a directory");
    let p = write(&d, "empty.log", b"");
    assert_refused(&virq(&["doctor", &p]), &p, "the file is empty");
    let p = write(
        &d,
        "binary.log",
        &[0x4D, 0x5A, 0x90, 0, 3, 0, 0, 0, 0xFF, 0xFF],
    );
    assert_refused(&virq(&["doctor", &p]), &p, "looks binary");
    let p = write(&d, "utf16.log", &utf16("virtio: MSI-X vector 1\r\n", false));
    assert_refused(&virq(&["doctor", &p]), &p, "UTF-16");
    let p = write(&d, "noise.log", b"hello\nworld\n");
    assert_refused(&virq(&["doctor", &p]), &p, "not a recognised format");
    std::fs::remove_dir_all(&d).unwrap();
}

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../virq-doctor/tests/fixtures");
    std::fs::read(p.join(name)).unwrap()
}

/// Truncated, huge and wrongly encoded captures the doctor can still read get a report
/// (exit 0, 1, or 3 when not every link can be judged), and a broken file among good ones is still refused by name.
#[test]
fn doctor_reads_truncated_huge_and_latin1_captures() {
    let d = scratch("doctor-odd");
    let good = fixture("lspci-vvv.txt");
    let whole = virq(&["doctor", &write(&d, "whole.txt", &good)]);
    assert!(matches!(whole.code, 0 | 1 | 3), "{}", whole.stderr);
    assert!(!whole.stdout.is_empty());

    // Cut in the middle of a line and of a UTF-8 sequence.
    let mut cut = good[..good.len() / 2].to_vec();
    cut.extend_from_slice("\u{e9}".as_bytes().split_at(1).0);
    let out = virq(&["doctor", &write(&d, "cut.txt", &cut)]);
    assert!(matches!(out.code, 0 | 1 | 3), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"));
    assert!(!out.stdout.is_empty());

    // Latin-1 bytes inside an otherwise good capture.
    let mut latin1 = b"# captur\xe9 le 01/01\n".to_vec();
    latin1.extend_from_slice(&good);
    let out = virq(&["doctor", &write(&d, "latin1.txt", &latin1)]);
    assert_eq!(out.code, whole.code, "{}", out.stderr);

    // Huge: 24 MiB of one unbroken line before the capture. Lines are cut at the parser's
    // limit, memory stays bounded, and the capture after it is still read.
    let mut huge = vec![b'x'; 24 << 20];
    huge.push(b'\n');
    huge.extend_from_slice(&good);
    let out = virq(&["doctor", "--json", &write(&d, "huge.txt", &huge)]);
    assert_eq!(out.code, whole.code, "{}", out.stderr);
    assert!(
        out.stdout.contains("truncated_lines"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );

    // One missing file among good ones: refused, naming only the missing one.
    let missing = d.join("gone.log").display().to_string();
    let p = write(&d, "good.txt", &good);
    let out = virq(&["doctor", &p, &missing]);
    assert_refused(&out, &missing, "no such file");
    std::fs::remove_dir_all(&d).unwrap();
}

/// `virq faults | head -1`, `virq doctor big.log | less` then quit: the reader closes the pipe
/// before virq has printed everything. virq must end quietly with success, like `cat`, instead
/// of panicking with "failed printing to stdout". The pipe's read end is closed before virq
/// starts, so its first write fails every time.
#[test]
fn a_reader_that_closes_the_pipe_early_ends_virq_quietly() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../virq-doctor/tests/fixtures")
        .canonicalize()
        .unwrap();
    let log = std::fs::read_dir(&fixture)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a DbgView fixture");
    let log = log.to_str().unwrap();
    for args in [
        &["faults"][..],
        &["check", "--mode", "intx"],
        &["doctor", log],
        &["doctor", "--events", log],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(VIRQ)
            .args(args)
            .stdout(writer)
            .output()
            .expect("virq runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "virq {args:?}: {stderr}");
        assert_eq!(stderr, "", "virq {args:?} says nothing on stderr");
    }
}
