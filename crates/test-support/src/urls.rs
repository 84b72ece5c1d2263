//! PostgreSQL URLs pointed at another database or another address.

use anyhow::{Context, Result, bail};
use url::Url;

const DEFAULT_PORT: u16 = 5432;

fn parse(url: &str) -> Result<Url> {
    let parsed = Url::parse(url).context("not a URL")?;
    if parsed.host_str().is_none() {
        bail!("the URL names no host");
    }
    Ok(parsed)
}

/// `url` naming the database `name` on the same server, with the same user and parameters.
pub fn with_database(url: &str, name: &str) -> Result<String> {
    let mut parsed = parse(url)?;
    parsed.set_path(name);
    Ok(parsed.into())
}

/// `url` with its host and port replaced by `address` (`host:port`), e.g. a proxy's.
pub fn with_address(url: &str, address: &str) -> Result<String> {
    let (host, port) = address
        .rsplit_once(':')
        .context("an address is host:port")?;
    let port: u16 = port.parse().context("an address's port is a number")?;
    let mut parsed = parse(url)?;
    parsed.set_host(Some(host)).context("not a host")?;
    parsed
        .set_port(Some(port))
        .map_err(|()| anyhow::anyhow!("the URL cannot have a port"))?;
    Ok(parsed.into())
}

/// The `host:port` a URL points at (PostgreSQL's default port when it names none).
pub fn address_of(url: &str) -> Result<String> {
    let parsed = parse(url)?;
    let host = parsed.host_str().context("the URL names no host")?;
    Ok(format!("{host}:{}", parsed.port().unwrap_or(DEFAULT_PORT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_user_and_parameters() -> Result<()> {
        let url = "postgres://alice:secret@db.example:6543/postgres?sslmode=require";
        assert_eq!(
            with_database(url, "mandate_test_1")?,
            "postgres://alice:secret@db.example:6543/mandate_test_1?sslmode=require"
        );
        assert_eq!(
            with_address(url, "127.0.0.1:4000")?,
            "postgres://alice:secret@127.0.0.1:4000/postgres?sslmode=require"
        );
        assert_eq!(address_of(url)?, "db.example:6543");
        assert_eq!(
            address_of("postgres://postgres@localhost/postgres")?,
            "localhost:5432"
        );
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432", "other")?,
            "postgres://postgres@127.0.0.1:5432/other"
        );
        assert!(with_database("127.0.0.1:5432/postgres", "other").is_err());
        Ok(())
    }
}
