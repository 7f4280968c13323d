//! The `vitune` command line: parses arguments (`cli`), maps errors to exit codes. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if cli.headless() {
        quiet_headless_windowing();
    }
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// On a machine without a desktop session (SSH, containers) `XDG_RUNTIME_DIR` is unset, and the Vulkan loader's
/// Wayland probe prints "error: XDG_RUNTIME_DIR is invalid or not set" twice before any work, which reads as
/// vitune failing. The headless commands never open a window: point it at a private empty folder so the probe finds
/// no display quietly. Called first in `main`, before any thread exists.
fn quiet_headless_windowing() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let valid = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .is_some_and(|p| p.is_dir());
        if valid {
            return;
        }
        let dir = std::env::temp_dir().join(format!(
            "vitune-runtime-{}",
            std::fs::metadata("/proc/self")
                .map(|m| m.uid())
                .unwrap_or(0)
        ));
        let made = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        if made.is_ok() || dir.is_dir() {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}
