//! Database URLs: which backend they name, and how to show them without their password.

use std::path::PathBuf;

use crate::OpenError;

/// A database URL, split by backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A PostgreSQL URL, passed to the driver unchanged.
    Postgres(String),
    /// The path of an SQLite file.
    Sqlite(PathBuf),
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, OpenError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres(url.to_owned()));
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(OpenError::UnsupportedUrl {
                scheme: scheme_of(url),
            });
        };
        let path = rest.strip_prefix("//").unwrap_or(rest);
        // The store opens more than one connection (migrations, then the pool), so an
        // in-memory database would not be the same database twice.
        if path.is_empty() || path.starts_with(":memory:") || path.contains("mode=memory") {
            return Err(OpenError::InvalidSqlitePath);
        }
        Ok(Target::Sqlite(PathBuf::from(path)))
    }
}

/// The part of `url` before its first `:`, when it looks like a scheme; never more.
fn scheme_of(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    let looks_like_a_scheme = !scheme.is_empty()
        && scheme.len() <= 32
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    looks_like_a_scheme.then(|| scheme.to_owned())
}

/// `url` with the password of its user-info and of any `password=` parameter replaced.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_select_postgres() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u:p@h:5432/db?sslmode=disable",
        ] {
            assert_eq!(
                Target::parse(url).ok(),
                Some(Target::Postgres(url.to_owned()))
            );
        }
    }

    #[test]
    fn sqlite_urls_name_a_path() {
        let cases = [
            ("sqlite://data/mandate.db", "data/mandate.db"),
            ("sqlite:data/mandate.db", "data/mandate.db"),
            ("sqlite:///var/lib/mandate.db", "/var/lib/mandate.db"),
            ("sqlite:/var/lib/mandate.db", "/var/lib/mandate.db"),
            ("sqlite://./mandate.db", "./mandate.db"),
        ];
        for (url, path) in cases {
            assert_eq!(
                Target::parse(url).ok(),
                Some(Target::Sqlite(PathBuf::from(path))),
                "{url}"
            );
        }
    }

    #[test]
    fn other_urls_are_refused_without_echoing_them() {
        for url in [
            "mysql://root:hunter2@h/db",
            "postgre://u:hunter2@h/db",
            "data/mandate.db",
            "",
        ] {
            let error = Target::parse(url)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("unsupported database URL"), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        for url in [
            "sqlite:",
            "sqlite://",
            "sqlite::memory:",
            "sqlite://file:x?mode=memory",
        ] {
            assert!(
                matches!(Target::parse(url), Err(OpenError::InvalidSqlitePath)),
                "{url}"
            );
        }
    }

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            (
                "postgres://app:hunter2@db:5432/mandate",
                "postgres://app:***@db:5432/mandate",
            ),
            ("postgres://app@db/mandate", "postgres://app@db/mandate"),
            (
                "postgres://db/mandate?user=app&password=hunter2",
                "postgres://db/mandate?user=app&password=***",
            ),
            ("postgres://a:b:c@d@host/x", "postgres://a:***@host/x"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown);
        }
    }
}
