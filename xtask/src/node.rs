//! The npm packages the tests check generated TypeScript with — `openapi-typescript` (types
//! from the served OpenAPI document), `typescript` (`tsc --strict`) and `openapi-fetch` (the
//! typed client our program uses) — installed with npm under `target/` when missing, once.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::target_dir;
use crate::postgres::on_path;

/// The variable that hands the tools' directory to the tests (and lets a caller choose one).
pub const ENV: &str = "MANDATE_TEST_NODE_TOOLS";
/// The packages, pinned so that every machine checks against the same generator.
const PACKAGES: &[&str] = &[
    "openapi-typescript@7.13.0",
    "typescript@5.9.3",
    "openapi-fetch@0.17.0",
];
/// The programs the tests run from `node_modules/.bin`.
const PROGRAMS: &[&str] = &["openapi-typescript", "tsc"];
/// Written after a complete install: the package list it installed.
const STAMP: &str = "installed-packages.txt";

const NO_NPM: &str = "\
npm is not on PATH, and the tests check the TypeScript types generated from the OpenAPI \
document with openapi-typescript and tsc (npm packages).
Install Node.js with npm (Debian: `apt-get install nodejs npm`, macOS: `brew install node`), or \
point MANDATE_TEST_NODE_TOOLS at a directory whose node_modules holds openapi-typescript, \
typescript and openapi-fetch";

/// The directory whose `node_modules` holds the tools: `MANDATE_TEST_NODE_TOOLS` when set,
/// else `target/node-tools`, installed there when it lacks them.
pub fn resolve() -> Result<PathBuf> {
    if let Some(given) = std::env::var_os(ENV).filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(given));
    }
    let dir = target_dir(&crate::workspace_root()?).join("node-tools");
    let wanted = PACKAGES.join("\n");
    let stamp = dir.join(STAMP);
    let installed = std::fs::read_to_string(&stamp).is_ok_and(|text| text == wanted)
        && PROGRAMS
            .iter()
            .all(|program| dir.join("node_modules/.bin").join(program).is_file());
    if installed {
        return Ok(dir);
    }
    let npm = on_path("npm").context(NO_NPM)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!(
        "xtask: installing the npm packages {} into {}",
        PACKAGES.join(" "),
        dir.display()
    );
    let status = Command::new(&npm)
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--save-exact",
            "--prefix",
        ])
        .arg(&dir)
        .args(PACKAGES)
        .status()
        .with_context(|| format!("could not run {}", npm.display()))?;
    if !status.success() {
        bail!(
            "`npm install {}` failed; install them yourself into a directory and point {ENV} \
             at it",
            PACKAGES.join(" ")
        );
    }
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(dir)
}
