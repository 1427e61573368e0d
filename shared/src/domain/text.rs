use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::error::Error;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A control character (Cc) or a format character (Cf): bidi overrides and isolates
/// (`U+202E`), zero-width spaces and joiners (`U+200B`, `U+200D`), the BOM. In a name they make
/// one name look like another (`ad\u{202E}nim` shows as `admin`) or hide text.
pub fn is_hidden(c: char) -> bool {
    c.is_control() || c.general_category() == GeneralCategory::Format
}

/// 3–32 characters of `[A-Za-z0-9_.-]`; unique ignoring case (enforced by the database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: String) -> Result<Self, Error> {
        let s = raw.trim();
        let len = chars(s);
        if !(3..=32).contains(&len) {
            return Err(Error::validation(
                "username",
                "must be 3 to 32 characters long",
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(Error::validation(
                "username",
                "may contain only letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An address of the form `local@domain.tld`, at most 254 characters, stored as given (trimmed)
/// and compared ignoring case. The local part is 1–64 characters, none of them `@`, white space
/// or a control character; the domain is two or more labels of ASCII letters, digits and
/// hyphens (an internationalized domain in its `xn--` form), 1–63 characters each, neither
/// starting nor ending with a hyphen. The OpenAPI document gives the same rule as a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: String) -> Result<Self, Error> {
        let s = raw.trim();
        let invalid = || Error::validation("email", "is not a valid email address");
        if chars(s) > 254 {
            return Err(invalid());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(invalid)?;
        let local_ok = (1..=64).contains(&chars(local))
            && !local
                .chars()
                .any(|c| c == '@' || c.is_whitespace() || c.is_control());
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !local_ok || domain.split('.').count() < 2 || !domain.split('.').all(label_ok) {
            return Err(invalid());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 8–256 characters. Never logged, never echoed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    pub fn parse(raw: String) -> Result<Self, Error> {
        Self::parse_field(raw, "password")
    }

    pub fn parse_field(raw: String, field: &'static str) -> Result<Self, Error> {
        let len = chars(&raw);
        if !(8..=256).contains(&len) {
            return Err(Error::validation(field, "must be 8 to 256 characters long"));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name: 1–64 characters after trimming, no control or format characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: String) -> Result<Self, Error> {
        let s = raw.trim();
        if !(1..=64).contains(&chars(s)) {
            return Err(Error::validation(
                "display_name",
                "must be 1 to 64 characters long",
            ));
        }
        if s.chars().any(is_hidden) {
            return Err(Error::validation(
                "display_name",
                "must not contain control or format characters (bidi controls, zero-width)",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group chat's name: 1–100 characters after trimming, no control or format characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatName(String);

impl ChatName {
    pub fn parse(raw: String) -> Result<Self, Error> {
        let s = raw.trim();
        if !(1..=100).contains(&chars(s)) {
            return Err(Error::validation(
                "name",
                "must be 1 to 100 characters long",
            ));
        }
        if s.chars().any(is_hidden) {
            return Err(Error::validation(
                "name",
                "must not contain control or format characters (bidi controls, zero-width)",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message's text: 1–4,000 characters, not only whitespace. Kept as sent (no trimming: the
/// sender's formatting is theirs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub const MAX_CHARS: usize = 4000;

    pub fn parse(raw: String) -> Result<Self, Error> {
        if raw.trim().is_empty() {
            return Err(Error::validation("content", "must not be empty"));
        }
        if chars(&raw) > Self::MAX_CHARS {
            return Err(Error::validation(
                "content",
                "must be at most 4000 characters long",
            ));
        }
        if raw.contains('\0') {
            return Err(Error::validation(
                "content",
                "must not contain NUL characters",
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The sender's idempotency key: 1–64 printable characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(raw: String) -> Result<Self, Error> {
        let len = chars(&raw);
        if !(1..=64).contains(&len) || raw.chars().any(char::is_control) {
            return Err(Error::validation(
                "client_id",
                "must be 1 to 64 printable characters",
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_contract() {
        assert!(Username::parse("al".into()).is_err());
        assert!(Username::parse("a".repeat(33)).is_err());
        assert!(Username::parse("bad name".into()).is_err());
        assert!(Username::parse("ünï".into()).is_err());
        assert_eq!(
            Username::parse("  Alice_1.x-y ".into())
                .expect("valid")
                .as_str(),
            "Alice_1.x-y"
        );
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "a b@example.com",
            "alice@-x.com",
            "alice@x..com",
            "-@-.-",
            "al\u{1}ice@example.com",
            "alice@b\u{fc}cher.de",
            "alice@example-.com",
        ] {
            assert!(Email::parse(bad.into()).is_err(), "{bad:?} must be refused");
        }
        assert!(Email::parse("z\u{f6}e+tag@xn--bcher-kva.de".into()).is_ok());
        assert!(Email::parse(format!("{}@example.com", "\u{e9}".repeat(64))).is_ok());
        assert_eq!(
            Email::parse(" Alice@Example.com ".into())
                .expect("valid")
                .as_str(),
            "Alice@Example.com"
        );
    }

    #[test]
    fn passwords_are_8_to_256_characters_and_never_printed() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(257)).is_err());
        let p = Password::parse("correct horse".into()).expect("valid");
        assert_eq!(format!("{p:?}"), "Password(..)");
        // Counted in characters, not bytes: eight 3-byte characters are enough.
        assert!(Password::parse("€€€€€€€€".into()).is_ok());
    }

    #[test]
    fn message_bodies_are_bounded_and_not_blank() {
        assert!(MessageBody::parse("   ".into()).is_err());
        assert!(MessageBody::parse("x".repeat(4001)).is_err());
        assert!(MessageBody::parse("x".repeat(4000)).is_ok());
        assert_eq!(
            MessageBody::parse(" hi ".into()).expect("valid").as_str(),
            " hi "
        );
    }

    #[test]
    fn names_refuse_bidi_controls_and_zero_width_characters() {
        for bad in [
            "ad\u{202E}nim",
            "ad\u{2066}min\u{2069}",
            "ad\u{200B}min",
            "ad\u{200D}min",
            "\u{FEFF}admin",
            "ad\u{00AD}min",
            "ad\u{E0041}min",
        ] {
            assert!(Username::parse(bad.into()).is_err(), "{bad:?}");
            assert!(DisplayName::parse(bad.into()).is_err(), "{bad:?}");
            assert!(ChatName::parse(bad.into()).is_err(), "{bad:?}");
        }
        // Letters of every script, marks and emoji stay welcome.
        for good in ["Zoë", "محمد", "日本語", "e\u{0301}", "🙂 team"] {
            assert!(DisplayName::parse(good.into()).is_ok(), "{good:?}");
            assert!(ChatName::parse(good.into()).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn chat_names_and_client_ids_are_bounded() {
        assert!(ChatName::parse(" ".into()).is_err());
        assert!(ChatName::parse("x".repeat(101)).is_err());
        assert!(ClientId::parse(String::new()).is_err());
        assert!(ClientId::parse("x".repeat(65)).is_err());
        assert!(ClientId::parse("b6f0c1e2".into()).is_ok());
    }
}
