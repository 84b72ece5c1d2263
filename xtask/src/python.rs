//! Finds the Python interpreter whose Standard Webhooks reference library checks our webhook
//! signatures, installing the `standardwebhooks` package from PyPI when it is missing.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::postgres::on_path;

/// The variable that hands the interpreter to the tests (and lets a caller choose one).
pub const ENV: &str = "MANDATE_TEST_PYTHON";
/// The PyPI package, and the module it installs.
const PACKAGE: &str = "standardwebhooks";
const MODULE: &str = "standardwebhooks";

const NO_PYTHON: &str = "\
no Python found: `python3` is not on PATH, and the webhook tests verify signatures with the \
Standard Webhooks reference library for Python.
Install Python 3 with pip (Debian: `apt-get install python3 python3-pip`, macOS: \
`brew install python`) or point MANDATE_TEST_PYTHON at a Python 3 interpreter";

/// The interpreter for the tests, as an absolute path: `MANDATE_TEST_PYTHON` when set, else
/// `python3` on PATH; `standardwebhooks` is installed with pip when it cannot be imported.
pub fn resolve() -> Result<PathBuf> {
    let python: OsString = match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        Some(given) => given,
        None => on_path("python3").context(NO_PYTHON)?.into_os_string(),
    };
    let shown = PathBuf::from(&python).display().to_string();
    if !imports(&python)? {
        let pip = Command::new(&python)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !pip {
            bail!(
                "{shown} cannot import `{MODULE}` and has no pip to install it with.\n\
                 Install pip (Debian: `apt-get install python3-pip`) or the package itself \
                 (`pip install {PACKAGE}`), or point {ENV} at a Python that has it"
            );
        }
        println!("xtask: installing the Python package {PACKAGE} for {shown}");
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", PACKAGE])
            .status()
            .with_context(|| format!("could not run {shown} -m pip"))?;
        if !status.success() {
            bail!(
                "`{shown} -m pip install {PACKAGE}` failed.\n\
                 Install it yourself (in a virtual environment if this Python is externally \
                 managed) and point {ENV} at that environment's python"
            );
        }
        if !imports(&python)? {
            bail!("pip installed {PACKAGE}, but {shown} still cannot import `{MODULE}`");
        }
    }
    // The tests run in their package's directory and may clear PATH: hand them a full path.
    let output = Command::new(&python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .with_context(|| format!("could not run {shown}"))?;
    let executable = String::from_utf8(output.stdout)
        .context("the interpreter's path is not UTF-8")?
        .trim()
        .to_owned();
    if !output.status.success() || executable.is_empty() {
        bail!("{shown} did not say where its interpreter is (sys.executable)");
    }
    Ok(PathBuf::from(executable))
}

/// Whether `python` runs and can import the module.
fn imports(python: &OsString) -> Result<bool> {
    let output = Command::new(python)
        .args(["-c", &format!("import {MODULE}")])
        .output()
        .with_context(|| {
            format!(
                "could not run {}; point {ENV} at a Python 3 interpreter",
                PathBuf::from(python).display()
            )
        })?;
    Ok(output.status.success())
}
