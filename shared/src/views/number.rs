//! Integers in query strings, read as JSON Schema reads an integer: `5` and `5.0` alike.

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

/// The largest magnitude below which every integer has an exact `f64`.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Reads an integer parameter: `5`, or a number with a zero fraction (`5.0`); `5.5` and `abc`
/// are refused. For `Option<i64>` fields with `#[serde(default, deserialize_with = ...)]`.
pub fn query_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
    integer(&text)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("`{text}` is not an integer")))
}

fn integer(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(n);
    }
    let f = text.parse::<f64>().ok()?;
    // In range and integral: the conversion is exact.
    (f.fract() == 0.0 && f.abs() < EXACT).then_some(f as i64)
}

#[cfg(test)]
mod tests {
    use super::integer;

    #[test]
    fn integral_numbers_are_integers_and_others_are_not() {
        assert_eq!(integer("5"), Some(5));
        assert_eq!(integer("-3"), Some(-3));
        assert_eq!(integer("5.0"), Some(5));
        assert_eq!(integer("6845187.00"), Some(6_845_187));
        assert_eq!(integer("5.5"), None);
        assert_eq!(integer("abc"), None);
        assert_eq!(integer(""), None);
        assert_eq!(integer("inf"), None);
        assert_eq!(integer("NaN"), None);
        assert_eq!(integer("1e300"), None);
    }
}
