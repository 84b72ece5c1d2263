//! Server secrets: taken from the configuration, or generated into the data directory on
//! first start (readable by the owner only) and reused afterwards. Never logged.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use rand::RngCore;

/// The configured secret, or the one stored under `data_dir/name`, created when missing.
pub fn load_or_generate(
    configured: Option<&str>,
    data_dir: &Path,
    name: &str,
) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured {
        anyhow::ensure!(
            secret.len() >= 32,
            "the configured secret {name} must be at least 32 characters"
        );
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .with_context(|| format!("{} is not valid base64", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(data_dir)?;
            let mut secret = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            write_private(
                &path,
                &base64::engine::general_purpose::STANDARD.encode(&secret),
            )?;
            tracing::info!(file = %path.display(), "generated a new secret");
            Ok(secret)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates `dir` (and its parents) readable by its owner only: it holds the server's secrets
/// and, by default, the SQLite database.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_is_kept_and_reused() {
        let dir = std::env::temp_dir().join(format!("mandate-secrets-{}", ulid_like()));
        let first = load_or_generate(None, &dir, "key_hash_secret").unwrap();
        let second = load_or_generate(None, &dir, "key_hash_secret").unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(first, second);
        assert!(load_or_generate(Some("short"), &dir, "key_hash_secret").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn ulid_like() -> String {
        let mut bytes = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
