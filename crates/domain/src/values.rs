//! Validated value types: an invalid `Slug`, `Amount`, `Currency` or `Permission` cannot exist.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value was refused; the message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub &'static str);

/// A destination or orchestrator slug: 3–64 characters, `^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    /// Validates a slug.
    ///
    /// ```
    /// use mandate_domain::values::Slug;
    ///
    /// assert_eq!(Slug::parse("acme-shop").unwrap().as_str(), "acme-shop");
    /// assert!(Slug::parse("Acme").is_err()); // upper case
    /// assert!(Slug::parse("-shop").is_err()); // starts with '-'
    /// assert!(Slug::parse("ab").is_err()); // too short
    /// ```
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        const RULE: InvalidValue = InvalidValue(
            "must be 3-64 characters of a-z, 0-9 and '-', starting and ending with a letter or digit",
        );
        let bytes = value.as_bytes();
        let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let inner_ok = |b: &u8| edge_ok(b) || *b == b'-';
        match bytes {
            [first, middle @ .., last]
                if (3..=64).contains(&bytes.len())
                    && edge_ok(first)
                    && edge_ok(last)
                    && middle.iter().all(inner_ok) =>
            {
                Ok(Self(value.to_owned()))
            }
            _ => Err(RULE),
        }
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Slug> for String {
    fn from(slug: Slug) -> String {
        slug.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A currency or asset code: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$` (e.g. `USD`, `USDC-base`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    /// Validates a currency code.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let bytes = value.as_bytes();
        let valid = matches!(bytes, [first, rest @ ..]
            if bytes.len() <= 32
                && first.is_ascii_alphanumeric()
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidValue(
                "must be 1-32 characters of A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter or digit",
            ))
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> String {
        currency.0
    }
}

/// Equality, hashing and ordering by value (the count of units), whatever the fraction
/// digits: `42.50` and `42.5` are the same amount.
macro_rules! compared_by_value {
    ($name:ident) => {
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.units == other.units
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.units.hash(state);
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.units.cmp(&other.units)
            }
        }
    };
}

/// An exact, positive decimal amount: `^\d{1,20}(\.\d{1,18})?$`, greater than zero.
///
/// Held as an integer count of 10⁻¹⁸ units: 20 integer and 18 fractional digits need 38
/// significant digits, more than a 96-bit decimal holds, and `u128` holds them exactly. It
/// keeps the count of fraction digits it was given, so `42.50` is written back as `42.50`;
/// equality, hashing and ordering are by value (`42.50 == 42.5`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Amount {
    units: u128,
    fraction_digits: u8,
}

impl Amount {
    const FRACTION_DIGITS: u8 = 18;
    const SCALE: u128 = 10u128.pow(Self::FRACTION_DIGITS as u32);

    /// Parses a decimal string; refuses signs, exponents, zero and excess digits.
    ///
    /// ```
    /// use mandate_domain::values::Amount;
    ///
    /// // Exact, and written with the fraction digits it was given (leading zeros dropped).
    /// assert_eq!(Amount::parse("0012.500").unwrap().to_string(), "12.500");
    /// assert_eq!(Amount::parse("42.50").unwrap().to_string(), "42.50");
    /// assert_eq!(Amount::parse("42.50"), Amount::parse("42.5"));
    /// assert_eq!(
    ///     Amount::parse("0.000000000000000001").unwrap().to_string(),
    ///     "0.000000000000000001"
    /// );
    /// for refused in ["0", "-1", "1e3", "1.", ".5", "1.0000000000000000001"] {
    ///     assert!(Amount::parse(refused).is_err(), "{refused}");
    /// }
    /// ```
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        const RULE: InvalidValue = InvalidValue(
            "must be a decimal string greater than 0 with at most 20 integer and 18 fractional digits",
        );
        let (units, fraction_digits) = parse_units(value, 20).ok_or(RULE)?;
        if units == 0 {
            return Err(InvalidValue("must be greater than 0"));
        }
        Ok(Self {
            units,
            fraction_digits,
        })
    }

    /// How many fraction digits the amount was given with (`42.50` → 2).
    pub fn fraction_digits(self) -> u8 {
        self.fraction_digits
    }
}

compared_by_value!(Amount);

/// The count of 10⁻¹⁸ units a decimal string spells and its count of fraction digits, with
/// at most `integer_digits` integer and 18 fractional digits (and no sign or exponent);
/// `None` for any other string, or past `u128::MAX`.
fn parse_units(value: &str, integer_digits: usize) -> Option<(u128, u8)> {
    let (integer, fraction) = match value.split_once('.') {
        Some((integer, fraction)) => (integer, fraction),
        None => (value, ""),
    };
    let digits_ok =
        |part: &str, max: usize| part.len() <= max && part.bytes().all(|b| b.is_ascii_digit());
    if integer.is_empty()
        || !digits_ok(integer, integer_digits)
        || !digits_ok(fraction, Amount::FRACTION_DIGITS as usize)
        || (value.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let whole: u128 = integer.parse().ok()?;
    let fraction_units: u128 = format!("{fraction:0<18}").parse().ok()?;
    let units = whole
        .checked_mul(Amount::SCALE)
        .and_then(|units| units.checked_add(fraction_units))?;
    // At most 18, checked above.
    Some((units, u8::try_from(fraction.len()).ok()?))
}

/// A count of 10⁻¹⁸ units with no leading zeros and at least `fraction_digits` fraction
/// digits (more only where the value needs them).
fn write_units(units: u128, fraction_digits: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let integer = units / Amount::SCALE;
    let fraction = format!("{:018}", units % Amount::SCALE);
    let significant = fraction.trim_end_matches('0').len();
    let shown = significant.max(usize::from(fraction_digits));
    if shown == 0 {
        write!(f, "{integer}")
    } else {
        write!(f, "{integer}.{}", &fraction[..shown])
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_units(self.units, self.fraction_digits, f)
    }
}

/// A running total of amounts, which unlike an [`Amount`] may be zero (`amount_paid`), and
/// may pass the 20 integer digits of one amount (two large payments): it holds any count of
/// 10⁻¹⁸ units that fits in 128 bits, at most [`Total::MAX`]. Every total [`Total::plus`]
/// makes is one [`Total::parse`] reads back, so a stored total always reads.
///
/// It is written with at least the fraction digits it started with — a request's total starts
/// with its amount's ([`Total::zero_like`]) — and more only where the value needs them: a
/// request of `42.50` has paid `0.00`, then `42.50` after a payment of `42.5`, and `42.505`
/// after one more of `0.005`. Equality, hashing and ordering are by value.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Total {
    units: u128,
    fraction_digits: u8,
}

impl Total {
    /// Nothing yet.
    pub const ZERO: Total = Total {
        units: 0,
        fraction_digits: 0,
    };

    /// The largest total: 340282366920938463463.374607431768211455.
    pub const MAX: Total = Total {
        units: u128::MAX,
        fraction_digits: 0,
    };

    /// Nothing yet, written with `amount`'s fraction digits (`42.50` → `0.00`).
    pub fn zero_like(amount: Amount) -> Total {
        Total {
            units: 0,
            fraction_digits: amount.fraction_digits,
        }
    }

    /// Parses `0`, or a decimal string with at most 18 fractional digits no greater than
    /// [`Total::MAX`] (so up to 21 integer digits); refuses signs and exponents.
    ///
    /// ```
    /// use mandate_domain::values::{Amount, Total};
    ///
    /// let max = Amount::parse("99999999999999999999.999999999999999999").unwrap();
    /// let twice = Total::ZERO.plus(max).and_then(|total| total.plus(max)).unwrap();
    /// assert_eq!(Total::parse(&twice.to_string()), Ok(twice));
    /// assert_eq!(Total::parse(&Total::MAX.to_string()), Ok(Total::MAX));
    /// let thrice = twice.plus(max).unwrap();
    /// assert!(thrice.plus(max).is_none()); // four times is past Total::MAX
    /// assert!(Total::parse("340282366920938463463.374607431768211456").is_err());
    /// assert_eq!(Total::parse("0.00").unwrap().to_string(), "0.00");
    /// ```
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        const RULE: InvalidValue = InvalidValue(
            "must be a decimal string of at most 340282366920938463463.374607431768211455",
        );
        parse_units(value, 21)
            .map(|(units, fraction_digits)| Self {
                units,
                fraction_digits,
            })
            .ok_or(RULE)
    }

    /// The total after adding `amount` (written with the total's fraction digits, more where
    /// the sum needs them), or `None` past [`Total::MAX`].
    pub fn plus(self, amount: Amount) -> Option<Total> {
        self.units.checked_add(amount.units).map(|units| Total {
            units,
            fraction_digits: self.fraction_digits,
        })
    }

    /// Whether the total has reached `amount`.
    pub fn covers(self, amount: Amount) -> bool {
        self.units >= amount.units
    }

    /// Whether the total is `amount` exactly, neither short of it nor past it.
    pub fn is_exactly(self, amount: Amount) -> bool {
        self.units == amount.units
    }
}

compared_by_value!(Total);

impl fmt::Display for Total {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_units(self.units, self.fraction_digits, f)
    }
}

impl TryFrom<String> for Total {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Total> for String {
    fn from(total: Total) -> String {
        total.to_string()
    }
}

impl FromStr for Amount {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl TryFrom<String> for Amount {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Amount> for String {
    fn from(amount: Amount) -> String {
        amount.to_string()
    }
}

/// One permission a client ID can hold (exact strings of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Permission {
    /// `create:incoming`
    CreateIncoming,
    /// `create:outgoing`
    CreateOutgoing,
    /// `read:incoming`
    ReadIncoming,
    /// `read:outgoing`
    ReadOutgoing,
    /// `customers:read`
    CustomersRead,
    /// `customers:write`
    CustomersWrite,
    /// `payments:report`
    PaymentsReport,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 7] = [
        Permission::CreateIncoming,
        Permission::CreateOutgoing,
        Permission::ReadIncoming,
        Permission::ReadOutgoing,
        Permission::CustomersRead,
        Permission::CustomersWrite,
        Permission::PaymentsReport,
    ];

    /// The permission's API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::CreateIncoming => "create:incoming",
            Permission::CreateOutgoing => "create:outgoing",
            Permission::ReadIncoming => "read:incoming",
            Permission::ReadOutgoing => "read:outgoing",
            Permission::CustomersRead => "customers:read",
            Permission::CustomersWrite => "customers:write",
            Permission::PaymentsReport => "payments:report",
        }
    }

    /// Parses the API spelling.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|permission| permission.as_str() == value)
            .ok_or(InvalidValue("unknown permission"))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Permission {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Permission> for String {
    fn from(permission: Permission) -> String {
        permission.as_str().to_owned()
    }
}

/// A set of permissions, serialized as a sorted array of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PermissionSet(BTreeSet<Permission>);

impl PermissionSet {
    /// What a new client ID holds when its issuer names none.
    pub fn default_for_new_client() -> Self {
        [Permission::CreateIncoming, Permission::CreateOutgoing]
            .into_iter()
            .collect()
    }

    /// Whether the set holds `permission`.
    pub fn contains(&self, permission: Permission) -> bool {
        self.0.contains(&permission)
    }

    /// Adds a permission; `true` when it was not there before.
    pub fn insert(&mut self, permission: Permission) -> bool {
        self.0.insert(permission)
    }

    /// Removes a permission; `true` when it was there.
    pub fn remove(&mut self, permission: Permission) -> bool {
        self.0.remove(&permission)
    }

    /// The permissions in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        self.0.iter().copied()
    }

    /// Whether every permission of `self` is also in `other`.
    pub fn is_subset(&self, other: &PermissionSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The permissions in both sets.
    pub fn intersection(&self, other: &PermissionSet) -> PermissionSet {
        Self(self.0.intersection(&other.0).copied().collect())
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn slug_rule() {
        for good in ["abc", "a-b", "acme-payments-01", &"a".repeat(64)] {
            assert!(Slug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "ABC",
            "a_b",
            "a b",
            "",
            &"a".repeat(65),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currency_rule() {
        for good in ["USD", "USDC-base", "eth.mainnet", "x"] {
            assert!(Currency::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-USD", "US D", "€", &"A".repeat(33)] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_are_exact_and_keep_their_fraction_digits() {
        let max = format!("{}.{}", "9".repeat(20), "9".repeat(18));
        assert_eq!(Amount::parse(&max).map(|a| a.to_string()), Ok(max.clone()));
        for (given, written) in [
            ("42.50", "42.50"),
            ("12.500", "12.500"),
            ("010.500", "10.500"),
            ("7", "7"),
            ("7.0", "7.0"),
            ("0.000000000000000001", "0.000000000000000001"),
        ] {
            let amount = Amount::parse(given).unwrap();
            assert_eq!(amount.to_string(), written, "{given}");
            assert_eq!(Amount::parse(written), Ok(amount), "{given} reads back");
        }
        assert_eq!(Amount::parse("42.50").unwrap().fraction_digits(), 2);
        // By value: the spelling does not make two amounts differ.
        assert_eq!(Amount::parse("42.50"), Amount::parse("42.5"));
        assert!(Amount::parse("12.500").unwrap() < Amount::parse("12.51").unwrap());
        let tenth = Amount::parse("0.1").unwrap();
        let fifth = Amount::parse("0.2").unwrap();
        let sum = Total::ZERO.plus(tenth).and_then(|total| total.plus(fifth));
        assert_eq!(sum, Total::parse("0.3").ok());
        assert!(sum.is_some_and(|total| total.covers(Amount::parse("0.3").unwrap())));
        assert!(!Total::ZERO.plus(tenth).unwrap().covers(fifth));
        assert_eq!(Total::ZERO.to_string(), "0");
    }

    #[test]
    fn totals_keep_the_fraction_digits_they_started_with() {
        let amount = Amount::parse("42.50").unwrap();
        let nothing = Total::zero_like(amount);
        assert_eq!(nothing.to_string(), "0.00");
        assert_eq!(nothing, Total::ZERO);
        assert!(
            nothing
                .plus(amount)
                .is_some_and(|paid| paid.is_exactly(amount))
        );
        assert!(!nothing.is_exactly(amount));
        let paid = nothing.plus(Amount::parse("42.5").unwrap()).unwrap();
        assert_eq!(paid.to_string(), "42.50");
        assert_eq!(
            paid.plus(Amount::parse("1.5000").unwrap())
                .unwrap()
                .to_string(),
            "44.00"
        );
        let finer = paid.plus(Amount::parse("0.005").unwrap()).unwrap();
        assert_eq!(finer.to_string(), "42.505");
        assert_eq!(
            Total::parse(&finer.to_string()).map(|t| t.to_string()),
            Ok("42.505".into())
        );
        assert_eq!(
            Total::parse("12.500").map(|t| t.to_string()),
            Ok("12.500".into())
        );
    }

    #[test]
    fn malformed_amounts_are_refused() {
        let too_long = "1".repeat(21);
        let too_precise = format!("1.{}", "1".repeat(19));
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "+1",
            "1.",
            ".5",
            "1e3",
            "1,5",
            " 1",
            "NaN",
            &too_long,
            &too_precise,
        ] {
            assert!(Amount::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn permissions_round_trip() {
        for permission in Permission::ALL {
            assert_eq!(Permission::parse(permission.as_str()), Ok(permission));
        }
        assert!(Permission::parse("read:everything").is_err());
        let defaults = PermissionSet::default_for_new_client();
        assert!(defaults.contains(Permission::CreateIncoming));
        assert!(defaults.contains(Permission::CreateOutgoing));
        assert_eq!(defaults.iter().count(), 2);
    }

    proptest! {
        #[test]
        fn any_valid_amount_round_trips(integer in 0u128..10u128.pow(20), fraction in 0u128..10u128.pow(18), places in 1usize..=18) {
            let fraction = fraction % 10u128.pow(places as u32);
            let text = format!("{integer}.{fraction:0places$}");
            match Amount::parse(&text) {
                Ok(amount) => {
                    let written = amount.to_string();
                    prop_assert_eq!(written.split_once('.').map_or(0, |(_, f)| f.len()), places);
                    let again = Amount::parse(&written);
                    prop_assert_eq!(again, Ok(amount));
                }
                Err(_) => prop_assert!(integer == 0 && fraction == 0),
            }
        }

        #[test]
        fn slugs_never_panic_and_valid_ones_keep_their_text(text in "\\PC{0,70}") {
            if let Ok(slug) = Slug::parse(&text) {
                prop_assert_eq!(slug.as_str(), text.as_str());
            }
        }
    }
}
