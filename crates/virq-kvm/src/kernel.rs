//! Finding (and if asked, building) the guest kernel that `scripts/build-guest-kernel.sh`
//! caches under `~/.cache/virq/kernel-<sha256 of guest/kernel.config>/vmlinux`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::KvmError;

/// Environment variable naming a vmlinux to use instead of the cached one.
pub const KERNEL_ENV: &str = "VIRQ_GUEST_KERNEL";

/// The workspace root (where `scripts/` and `guest/` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The build script.
pub fn build_script() -> PathBuf {
    workspace_root().join("scripts/build-guest-kernel.sh")
}

fn run_script(args: &[&str]) -> Result<PathBuf, KvmError> {
    let script = build_script();
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| KvmError::Kernel(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        return Err(KvmError::Kernel(format!(
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| KvmError::Kernel(format!("{} printed no path", script.display())))?;
    Ok(PathBuf::from(path))
}

/// The guest kernel: `$VIRQ_GUEST_KERNEL` if set, else the cached build for the checked-in
/// config fragment. With `build`, a missing cache entry is built (about 2-3 minutes on two
/// cores); without it, a missing kernel is an error naming the command to run.
pub fn guest_kernel(build: bool) -> Result<PathBuf, KvmError> {
    if let Some(p) = std::env::var_os(KERNEL_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(KvmError::Kernel(format!(
                "{KERNEL_ENV}={} is not a file",
                p.display()
            )))
        };
    }
    let cached = run_script(&["--path"])?;
    if cached.is_file() {
        return Ok(cached);
    }
    if !build {
        return Err(KvmError::Kernel(format!(
            "no guest kernel at {}; run {}",
            cached.display(),
            build_script().display()
        )));
    }
    run_script(&[])
}
