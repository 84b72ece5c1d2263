//! Finds the Python interpreter whose libraries check our signatures independently of our own
//! code — the Standard Webhooks reference library (webhooks) and `http-message-signatures`
//! (RFC 9421 agent requests) —, schemathesis, which checks the API against its OpenAPI
//! document, and the document's validator and Python client generator
//! (`openapi-spec-validator`, `openapi-python-client`), installing the packages from PyPI
//! when they are missing.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::postgres::on_path;

/// The variable that hands the interpreter to the tests (and lets a caller choose one).
pub const ENV: &str = "MANDATE_TEST_PYTHON";
/// The PyPI packages the tests need, each with the module it installs.
const PACKAGES: &[Package] = &[
    Package {
        name: "standardwebhooks",
        module: "standardwebhooks",
    },
    Package {
        name: "http-message-signatures",
        module: "http_message_signatures",
    },
    Package {
        name: "schemathesis",
        module: "schemathesis",
    },
    Package {
        name: "openapi-spec-validator",
        module: "openapi_spec_validator",
    },
    Package {
        name: "openapi-python-client",
        module: "openapi_python_client",
    },
];

struct Package {
    /// The name on PyPI.
    name: &'static str,
    /// The module it installs, which the tests import.
    module: &'static str,
}

const NO_PYTHON: &str = "\
no Python found: `python3` is not on PATH, and the tests verify webhook and agent request \
signatures with Python libraries (standardwebhooks, http-message-signatures), check the API \
against its OpenAPI document with schemathesis, and validate the document and generate a client \
from it (openapi-spec-validator, openapi-python-client).
Install Python 3 with pip (Debian: `apt-get install python3 python3-pip`, macOS: \
`brew install python`) or point MANDATE_TEST_PYTHON at a Python 3 interpreter";

/// The interpreter for the tests, as an absolute path: `MANDATE_TEST_PYTHON` when set, else
/// `python3` on PATH; the packages it cannot import are installed with pip.
pub fn resolve() -> Result<PathBuf> {
    let python: OsString = match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        Some(given) => given,
        None => on_path("python3").context(NO_PYTHON)?.into_os_string(),
    };
    let shown = PathBuf::from(&python).display().to_string();
    let missing = missing_packages(&python)?;
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|package| package.name).collect();
        let names = names.join(" ");
        let pip = Command::new(&python)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !pip {
            bail!(
                "{shown} cannot import the Python packages {names} and has no pip to install \
                 them with.\n\
                 Install pip (Debian: `apt-get install python3-pip`) or the packages themselves \
                 (`pip install {names}`), or point {ENV} at a Python that has them"
            );
        }
        println!("xtask: installing the Python packages {names} for {shown}");
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(missing.iter().map(|package| package.name))
            .status()
            .with_context(|| format!("could not run {shown} -m pip"))?;
        if !status.success() {
            bail!(
                "`{shown} -m pip install {names}` failed.\n\
                 Install them yourself (in a virtual environment if this Python is externally \
                 managed) and point {ENV} at that environment's python"
            );
        }
        let still_missing = missing_packages(&python)?;
        if let Some(package) = still_missing.first() {
            bail!(
                "pip installed {}, but {shown} still cannot import `{}`",
                package.name,
                package.module
            );
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

/// The packages whose module `python` cannot import (an error when `python` does not run).
fn missing_packages(python: &OsString) -> Result<Vec<&'static Package>> {
    let mut missing = Vec::new();
    for package in PACKAGES {
        let output = Command::new(python)
            .args(["-c", &format!("import {}", package.module)])
            .output()
            .with_context(|| {
                format!(
                    "could not run {}; point {ENV} at a Python 3 interpreter",
                    PathBuf::from(python).display()
                )
            })?;
        if !output.status.success() {
            missing.push(package);
        }
    }
    Ok(missing)
}
