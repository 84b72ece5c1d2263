//! Property tests of the value parsers that read what the network sends: amounts, currencies,
//! slugs, permissions, agent keys and prefixed ids. Arbitrary and mutated inputs never panic;
//! valid ones round-trip through their text and their JSON form. Each test prints how many
//! cases it ran, for the record in `docs/security.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use mandate_domain::agents::AgentKey;
use mandate_domain::ids::{
    ClaimId, ClientId, CustomerId, DestinationId, OrganizationId, RequestId,
};
use mandate_domain::values::{Amount, Currency, Permission, Slug, Total};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Runs `test` on `cases` values of `strategy`, fails on the first (shrunk) counterexample,
/// and prints how many cases ran.
fn fuzz<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let ran = AtomicU32::new(0);
    let outcome = runner.run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    if let Err(failure) = outcome {
        panic!("{name}: {failure}");
    }
    println!("fuzz {name}: {} cases", ran.load(Ordering::Relaxed));
}

/// Text a client could send where a value is expected: anything printable, digits and dots,
/// or the shape of the value with a stray character.
fn noisy_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,80}",
        "[0-9.]{0,45}",
        "[-+ 0-9.eE,_]{0,45}",
        "[A-Za-z0-9_.-]{0,40}",
        "[a-z0-9-]{0,70}",
        any::<String>(),
    ]
}

/// The reference rule for amounts (SPEC §5): `^\d{1,20}(\.\d{1,18})?$` and greater than 0.
fn amount_rule(text: &str) -> bool {
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (text, None),
    };
    let digits = |part: &str, max: usize| {
        (1..=max).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
    };
    digits(integer, 20)
        && fraction.is_none_or(|fraction| digits(fraction, 18))
        && text.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

#[test]
fn amounts_follow_the_rule_and_round_trip() {
    fuzz("amount parsing", 4000, noisy_text(), |text| {
        let parsed = Amount::parse(&text);
        prop_assert_eq!(parsed.is_ok(), amount_rule(&text), "{:?}", text);
        if let Ok(amount) = parsed {
            let canonical = amount.to_string();
            prop_assert_eq!(Amount::parse(&canonical), Ok(amount));
            prop_assert_eq!(canonical.parse::<Amount>(), Ok(amount));
            let json = serde_json::to_string(&amount).unwrap();
            prop_assert_eq!(serde_json::from_str::<Amount>(&json).unwrap(), amount);
            // Sums never overflow silently: either exact or refused.
            let total = Total::ZERO
                .plus(amount)
                .and_then(|total| total.plus(amount));
            prop_assert!(total.is_some_and(|total| total.covers(amount)));
        }
        Ok(())
    });
}

#[test]
fn valid_amounts_are_exact() {
    let strategy = (
        "[0-9]{1,20}",
        proptest::option::of("[0-9]{1,18}"),
        "[0-9]{1,20}",
        proptest::option::of("[0-9]{1,18}"),
    );
    fuzz(
        "amount exactness",
        2000,
        strategy,
        |(a, a_frac, b, b_frac)| {
            let text = |integer: &str, fraction: &Option<String>| match fraction {
                Some(fraction) => format!("{integer}.{fraction}"),
                None => integer.to_owned(),
            };
            let (a_text, b_text) = (text(&a, &a_frac), text(&b, &b_frac));
            // Compare as scaled integers, which is what "exact" means.
            let units = |integer: &str, fraction: &Option<String>| {
                let fraction = format!("{:0<18}", fraction.as_deref().unwrap_or(""));
                integer.parse::<u128>().unwrap() * 10u128.pow(18)
                    + fraction.parse::<u128>().unwrap()
            };
            match (Amount::parse(&a_text), Amount::parse(&b_text)) {
                (Ok(x), Ok(y)) => {
                    prop_assert_eq!(x.cmp(&y), units(&a, &a_frac).cmp(&units(&b, &b_frac)));
                    let sum = Total::ZERO.plus(x).and_then(|total| total.plus(y));
                    let expected = units(&a, &a_frac) + units(&b, &b_frac);
                    let expected_text = {
                        let (integer, fraction) =
                            (expected / 10u128.pow(18), expected % 10u128.pow(18));
                        if fraction == 0 {
                            integer.to_string()
                        } else {
                            let fraction = format!("{fraction:018}");
                            format!("{integer}.{}", fraction.trim_end_matches('0'))
                        }
                    };
                    prop_assert_eq!(sum.map(|total| total.to_string()), Some(expected_text));
                    // What is stored reads back: a total past 20 integer digits too.
                    if let Some(sum) = sum {
                        prop_assert_eq!(Total::parse(&sum.to_string()), Ok(sum));
                    }
                }
                (x, y) => {
                    prop_assert!(x.is_err() == (units(&a, &a_frac) == 0));
                    prop_assert!(y.is_err() == (units(&b, &b_frac) == 0));
                }
            }
            Ok(())
        },
    );
}

/// The reference rule for currencies: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`.
fn currency_rule(text: &str) -> bool {
    let bytes = text.as_bytes();
    matches!(bytes, [first, rest @ ..]
        if bytes.len() <= 32
            && first.is_ascii_alphanumeric()
            && rest.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
}

#[test]
fn currencies_follow_the_rule_and_round_trip() {
    let strategy = prop_oneof![noisy_text(), "[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"];
    fuzz("currency parsing", 3000, strategy, |text| {
        let parsed = Currency::parse(&text);
        prop_assert_eq!(parsed.is_ok(), currency_rule(&text), "{:?}", text);
        if let Ok(currency) = parsed {
            prop_assert_eq!(currency.as_str(), text.as_str());
            let json = serde_json::to_string(&currency).unwrap();
            prop_assert_eq!(serde_json::from_str::<Currency>(&json).unwrap(), currency);
        }
        Ok(())
    });
}

/// The reference rule for slugs: `^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$`.
fn slug_rule(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    matches!(bytes, [first, middle @ .., last]
        if (3..=64).contains(&bytes.len())
            && edge(first)
            && edge(last)
            && middle.iter().all(|b| edge(b) || *b == b'-'))
}

#[test]
fn slugs_follow_the_rule_and_round_trip() {
    let strategy = prop_oneof![noisy_text(), "[a-z0-9][a-z0-9-]{1,62}[a-z0-9]"];
    fuzz("slug parsing", 3000, strategy, |text| {
        let parsed = Slug::parse(&text);
        prop_assert_eq!(parsed.is_ok(), slug_rule(&text), "{:?}", text);
        if let Ok(slug) = parsed {
            prop_assert_eq!(slug.as_str(), text.as_str());
            let json = serde_json::to_string(&slug).unwrap();
            prop_assert_eq!(serde_json::from_str::<Slug>(&json).unwrap(), slug);
        }
        Ok(())
    });
}

#[test]
fn permissions_are_exact_strings() {
    let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
    let strategy = prop_oneof![
        noisy_text(),
        "(create|read|customers|payments):(incoming|outgoing|read|write|report)",
    ];
    fuzz("permission parsing", 1000, strategy, |text| {
        match Permission::parse(&text) {
            Ok(permission) => prop_assert_eq!(permission.as_str(), text.as_str()),
            Err(_) => prop_assert!(!known.contains(&text.as_str())),
        }
        Ok(())
    });
}

#[test]
fn agent_keys_parse_only_ed25519_points() {
    let strategy = prop_oneof![
        noisy_text(),
        "ed25519:[A-Za-z0-9+/]{0,50}={0,2}",
        any::<[u8; 32]>().prop_map(|bytes| {
            use base64::Engine;
            format!(
                "ed25519:{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )
        }),
    ];
    fuzz("agent key parsing", 2000, strategy, |text| {
        if let Ok(key) = AgentKey::parse(&text) {
            prop_assert_eq!(key.as_str(), text.as_str());
            prop_assert_eq!(AgentKey::from_bytes(&key.to_bytes()), Ok(key.clone()));
        }
        Ok(())
    });
}

/// Parses `text` as each id kind: never panics, and an accepted id is the canonical
/// (upper-case) spelling of the text with the right prefix.
fn check_id<T>(
    text: &str,
    prefix: &str,
    parse: impl Fn(&str) -> Result<T, mandate_domain::ids::InvalidId>,
    as_str: impl Fn(&T) -> String,
) -> Result<(), TestCaseError> {
    if let Ok(id) = parse(text) {
        let canonical = as_str(&id);
        let expected_start = format!("{prefix}_");
        prop_assert!(canonical.starts_with(&expected_start));
        prop_assert_eq!(canonical.len(), prefix.len() + 1 + 26);
        prop_assert_eq!(canonical.to_ascii_uppercase(), text.to_ascii_uppercase());
        prop_assert!(parse(&canonical).is_ok());
    }
    Ok(())
}

#[test]
fn ids_parse_only_their_own_prefix_and_a_ulid() {
    let generated = prop_oneof![
        Just(DestinationId::generate().to_string()),
        Just(ClientId::generate().to_string()),
        Just(RequestId::generate().to_string()),
    ];
    // A real id with one character replaced, inserted or removed.
    let mutated = (
        generated.clone(),
        any::<prop::sample::Index>(),
        any::<char>(),
        0..3u8,
    )
        .prop_map(|(id, at, c, how)| {
            let mut chars: Vec<char> = id.chars().collect();
            let at = at.index(chars.len());
            match how {
                0 => chars[at] = c,
                1 => chars.insert(at, c),
                _ => {
                    chars.remove(at);
                }
            }
            chars.into_iter().collect::<String>()
        });
    let strategy = prop_oneof![
        noisy_text(),
        "(dst|cli|req|org|cus|clm)_[0-9A-Za-z]{24,28}",
        generated,
        mutated,
    ];
    fuzz("id parsing", 4000, strategy, |text| {
        check_id(&text, "dst", DestinationId::parse, ToString::to_string)?;
        check_id(&text, "cli", ClientId::parse, ToString::to_string)?;
        check_id(&text, "req", RequestId::parse, ToString::to_string)?;
        check_id(&text, "org", OrganizationId::parse, ToString::to_string)?;
        check_id(&text, "cus", CustomerId::parse, ToString::to_string)?;
        check_id(&text, "clm", ClaimId::parse, ToString::to_string)?;
        Ok(())
    });
}
