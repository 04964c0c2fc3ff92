//! The Windows 7 model's switches on the command line: `virq faults` lists the driver and OS
//! rows 1-13 and 23-28 and the device rows; `--kmdf`, `--print-filter` and
//! `--msi-interrupt-disable` choose what `virq check` models and the report says which; bad
//! values are one line and exit 2; `virq doctor` names row 25 from the files of a run whose
//! Debug Print Filter was left at Windows 7's default.

use std::process::{Command, Output};

fn virq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virq"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn faults_lists_rows_1_to_28_then_the_device_rows_14_to_22_29_30() {
    let out = virq(&["faults"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let rows: Vec<(u8, bool)> = text
        .lines()
        .map(|l| {
            let n: u8 = l
                .split("row")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (n, l.ends_with("(device)"))
        })
        .collect();
    let driver: Vec<u8> = rows.iter().filter(|r| !r.1).map(|r| r.0).collect();
    let device: Vec<u8> = rows.iter().filter(|r| r.1).map(|r| r.0).collect();
    assert_eq!(driver, (1..=13).chain(23..=28).collect::<Vec<u8>>());
    assert_eq!(device, (14..=22).chain(29..=30).collect::<Vec<u8>>());
    for name in [
        "pre-start-interrupt-info",
        "translated-message-count",
        "prints-filtered",
        "mode-from-inf",
        "vectors-lost-on-d0-entry",
        "platform-msi-disabled",
    ] {
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn check_says_which_windows_7_it_modelled() {
    let out = virq(&[
        "check",
        "--mode",
        "msix-fewer",
        "--kmdf",
        "1.11",
        "--print-filter",
        "0x8",
        "--msi-interrupt-disable",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "model: Windows 7 x64, KMDF 1.11, Debug Print Filter\\IHVDRIVER=0x8, pci.sys Interrupt Disable with messages on (unverified)"
        ),
        "{text}"
    );
    assert!(
        text.contains("grant: exactly one message of 3 requested"),
        "{text}"
    );
    assert!(text.contains("sleep/resume: D0 exit to D3"), "{text}");
}

#[test]
fn bad_model_switches_are_one_line_and_exit_2() {
    for (args, says) in [
        (
            &["check", "--kmdf", "2.0"][..],
            "unknown KMDF version \"2.0\"",
        ),
        (
            &["check", "--print-filter", "0xq"][..],
            "unknown Debug Print Filter \"0xq\"",
        ),
    ] {
        let out = virq(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn an_untuned_debug_print_filter_is_row_25_for_check_and_doctor() {
    let dir = std::env::temp_dir().join(format!("virq-win7-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let check = virq(&[
        "check",
        "--mode",
        "intx",
        "--print-filter",
        "unset",
        "--logs",
        dir.to_str().unwrap(),
    ]);
    let text = stdout(&check);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(text.contains("failure catalogue: rows 25"), "{text}");
    let files: Vec<String> = std::fs::read_dir(dir.join("intx"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    let mut args = vec!["doctor"];
    args.extend(files.iter().map(String::as_str));
    let doctor = virq(&args);
    let out = stdout(&doctor);
    assert_eq!(doctor.status.code(), Some(1), "{out}");
    assert!(
        out.contains("row 25: the driver's prints never reach the capture"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
