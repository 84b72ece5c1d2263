//! Finds the headless Chromium that the browser tests drive, and the `chromedriver` WebDriver
//! server that drives it for the console's test, installing Debian's packages when missing.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::postgres::{apt_install, is_root, on_path};

/// A program the browser tests need.
struct Tool {
    /// The variable that hands it to the tests (and lets a caller choose one).
    env: &'static str,
    /// Its names on PATH.
    names: &'static [&'static str],
    /// Debian's package.
    package: &'static str,
    /// What to say when it is missing and cannot be installed here.
    how_to_install: &'static str,
}

const CHROMIUM: Tool = Tool {
    env: ENV,
    names: &["chromium", "chromium-browser"],
    package: "chromium",
    how_to_install: "\
no Chromium found: neither `chromium` nor `chromium-browser` is on PATH, and the payment page \
and console tests need a headless browser.
Install it (Debian: `apt-get install chromium`, Ubuntu: `apt-get install chromium-browser`, \
macOS: `brew install --cask chromium`) or point CHROME_BIN at a Chromium or Chrome binary",
};

const CHROMEDRIVER: Tool = Tool {
    env: DRIVER_ENV,
    names: &["chromedriver"],
    package: "chromium-driver",
    how_to_install: "\
no chromedriver found on PATH, and the console's browser test drives Chromium through it.
Install it (Debian: `apt-get install chromium-driver`, macOS: `brew install --cask \
chromedriver`) or point CHROMEDRIVER_BIN at a chromedriver of the same version as Chromium",
};

/// The variable that hands the browser to the tests.
pub const ENV: &str = "CHROME_BIN";
/// The variable that hands the WebDriver server to the tests.
pub const DRIVER_ENV: &str = "CHROMEDRIVER_BIN";

/// The browser for the tests: `CHROME_BIN` when set, else one on PATH, else Debian's package
/// installed when we may (root with apt-get).
pub fn resolve() -> Result<PathBuf> {
    resolve_tool(&CHROMIUM)
}

/// The WebDriver server, found like the browser: `CHROMEDRIVER_BIN`, PATH, or Debian's
/// `chromium-driver` installed.
pub fn resolve_driver() -> Result<PathBuf> {
    resolve_tool(&CHROMEDRIVER)
}

fn resolve_tool(tool: &Tool) -> Result<PathBuf> {
    if let Some(given) = std::env::var_os(tool.env).filter(|v| !v.is_empty()) {
        let given = PathBuf::from(given);
        if !given.is_file() {
            bail!("{}={} is not a file", tool.env, given.display());
        }
        // The tests run in their package's directory, where a relative path means nothing.
        return std::fs::canonicalize(&given)
            .with_context(|| format!("resolving {}={}", tool.env, given.display()));
    }
    let find = || tool.names.iter().copied().find_map(on_path);
    if let Some(found) = find() {
        return Ok(found);
    }
    if is_root() && on_path("apt-get").is_some() {
        println!(
            "xtask: no {} found; installing Debian's {} package",
            tool.names[0], tool.package
        );
        apt_install(tool.package)?;
        return find().with_context(|| {
            format!(
                "apt-get installed {}, but no `{}` is on PATH",
                tool.package, tool.names[0]
            )
        });
    }
    bail!(tool.how_to_install)
}
