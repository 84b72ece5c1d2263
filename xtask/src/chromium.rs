//! Finds the headless Chromium that the browser tests drive, installing Debian's package when
//! none is present.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::postgres::{apt_install, is_root, on_path};

/// The variable that hands the browser to the tests (and lets a caller choose one).
pub const ENV: &str = "CHROME_BIN";
const NAMES: [&str; 2] = ["chromium", "chromium-browser"];

const HOW_TO_INSTALL: &str = "\
no Chromium found: neither `chromium` nor `chromium-browser` is on PATH, and the payment page \
tests need a headless browser.
Install it (Debian: `apt-get install chromium`, Ubuntu: `apt-get install chromium-browser`, \
macOS: `brew install --cask chromium`) or point CHROME_BIN at a Chromium or Chrome binary";

/// The browser for the tests: `CHROME_BIN` when set, else one on PATH, else Debian's package
/// installed when we may (root with apt-get).
pub fn resolve() -> Result<PathBuf> {
    if let Some(given) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let given = PathBuf::from(given);
        if !given.is_file() {
            bail!("{ENV}={} is not a file", given.display());
        }
        // The tests run in their package's directory, where a relative path means nothing.
        return std::fs::canonicalize(&given)
            .with_context(|| format!("resolving {ENV}={}", given.display()));
    }
    if let Some(found) = find() {
        return Ok(found);
    }
    if is_root() && on_path("apt-get").is_some() {
        println!("xtask: no Chromium found; installing Debian's chromium package");
        apt_install("chromium")?;
        return find().context("apt-get installed chromium, but no `chromium` is on PATH");
    }
    bail!(HOW_TO_INSTALL)
}

fn find() -> Option<PathBuf> {
    NAMES.into_iter().find_map(on_path)
}
