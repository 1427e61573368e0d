//! Access tokens: JWT, HS256 pinned, with issuer, audience, expiry and type checked.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};

pub const ACCESS_TYPE: &str = "access";

/// The JOSE header `typ` of an access token (RFC 9068 §2.1), checked on the way in so that no
/// other JWT signed with the same key passes for one.
pub const ACCESS_JWT_TYPE: &str = "at+jwt";

/// RFC 9068 §4: `at+jwt`, or the same as a full media type, ignoring case.
fn is_access_jwt_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == ACCESS_JWT_TYPE || t == "application/at+jwt"
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub user_id: i64,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
    pub jti: String,
    pub typ: String,
    /// The session the token was issued for; required on the way in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<i64>,
}

/// Keys and rules for access tokens, built once from [`Config`].
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl JwtKeys {
    pub fn new(config: &Config) -> Self {
        let secret = config.jwt_secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            ttl_secs: config.access_token_ttl.as_secs(),
        }
    }

    /// Lifetime of an access token in seconds (`expires_in`).
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    pub fn issue_access(&self, user_id: i64, session: Option<i64>) -> Result<String> {
        self.issue_access_at(user_id, session, now_secs())
    }

    pub fn issue_access_at(&self, user_id: i64, session: Option<i64>, iat: u64) -> Result<String> {
        let mut jti = [0u8; 16];
        super::random_bytes(&mut jti)?;
        let claims = Claims {
            sub: user_id.to_string(),
            user_id,
            iat,
            exp: iat + self.ttl_secs,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: URL_SAFE_NO_PAD.encode(jti),
            typ: ACCESS_TYPE.into(),
            sid: session,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_JWT_TYPE.into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(Error::internal)
    }

    /// Verifies signature, algorithm, header type, issuer, audience, expiry, type and subject.
    /// Whether its session still lives is the caller's next question (`service::sessions`).
    pub fn verify_access(&self, token: &str) -> Result<Claims> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    Error::Unauthorized("token_expired", "the access token has expired")
                }
                _ => Error::Unauthorized("invalid_token", "the access token is not valid"),
            })?;
        let claims = data.claims;
        if !is_access_jwt_type(data.header.typ.as_deref())
            || claims.typ != ACCESS_TYPE
            || claims.sub != claims.user_id.to_string()
        {
            return Err(Error::Unauthorized(
                "invalid_token",
                "the access token is not valid",
            ));
        }
        Ok(claims)
    }
}

/// The token of an `Authorization: Bearer …` header (HTTP requests and WebSocket connects).
pub fn bearer_token(headers: &http::HeaderMap) -> Result<&str> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(Error::Unauthorized(
            "missing_token",
            "an Authorization: Bearer token is required",
        ))?
        .to_str()
        .map_err(|_| {
            Error::Unauthorized("invalid_token", "the Authorization header is malformed")
        })?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Error::Unauthorized(
        "invalid_token",
        "the Authorization header must be `Bearer <token>`",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::Unauthorized(
            "invalid_token",
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: &str) -> Config {
        let secret = secret.to_owned();
        Config::from_lookup(move |k| match k {
            "DATABASE_URL" => Some("postgres://localhost/x".into()),
            "JWT_SECRET" => Some(secret.clone()),
            _ => None,
        })
        .expect("config")
    }

    fn keys() -> JwtKeys {
        JwtKeys::new(&config("test-secret-that-is-long-enough-000000"))
    }

    fn forge(header: &str, claims: &serde_json::Value, signature: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            signature
        )
    }

    /// Claims for user 1 as the API issues them, valid for ten minutes.
    fn claims(sub: &str, sid: Option<i64>) -> Claims {
        let now = now_secs();
        Claims {
            sub: sub.into(),
            user_id: 1,
            iat: now,
            exp: now + 600,
            iss: "blockchat".into(),
            aud: "blockchat-api".into(),
            jti: "x".into(),
            typ: "access".into(),
            sid,
        }
    }

    /// A token signed with the test key, with the header `typ` given.
    fn signed(claims: &Claims, typ: Option<&str>) -> String {
        let secret = EncodingKey::from_secret(b"test-secret-that-is-long-enough-000000");
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &secret).expect("encode")
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let mut headers = http::HeaderMap::new();
        let header = http::header::AUTHORIZATION;
        headers.insert(header.clone(), "bearer abc".parse().expect("header"));
        assert_eq!(bearer_token(&headers).expect("token"), "abc");
        headers.insert(header, "Basic abc".parse().expect("header"));
        assert_eq!(bearer_token(&headers).expect_err("basic").status(), 401);
    }

    #[test]
    fn issued_token_verifies_with_all_claims() {
        let keys = keys();
        let token = keys.issue_access(42, Some(7)).expect("token");
        let claims = keys.verify_access(&token).expect("valid");
        assert_eq!(claims.user_id, 42);
        assert_eq!(claims.sub, "42");
        assert_eq!(claims.iss, "blockchat");
        assert_eq!(claims.aud, "blockchat-api");
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.typ, "access");
        assert_eq!(claims.sid, Some(7));
    }

    #[test]
    fn access_tokens_are_typed_at_jwt_and_other_types_are_refused() {
        let keys = keys();
        let token = keys.issue_access(42, Some(7)).expect("token");
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let claims = claims("1", Some(7));
        for typ in [Some("JWT"), None, Some("id+jwt")] {
            let token = signed(&claims, typ);
            assert!(
                keys.verify_access(&token).is_err(),
                "typ {typ:?} must be refused"
            );
        }
        let token = signed(&claims, Some("application/AT+JWT"));
        assert!(keys.verify_access(&token).is_ok());
    }

    #[test]
    fn expired_token_is_refused() {
        let keys = keys();
        let token = keys
            .issue_access_at(1, None, now_secs() - 3600)
            .expect("token");
        let err = keys.verify_access(&token).expect_err("expired");
        assert_eq!(err.code(), "token_expired");
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let other = JwtKeys::new(&config("another-secret-that-is-long-enough-111"));
        let token = other.issue_access(1, None).expect("token");
        assert_eq!(
            keys().verify_access(&token).expect_err("forged").status(),
            401
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let keys = keys();
        let now = now_secs();
        let claims = serde_json::json!({
            "sub": "1", "user_id": 1, "iat": now, "exp": now + 600,
            "iss": "blockchat", "aud": "blockchat-api", "jti": "x", "typ": "access"
        });
        let token = forge(r#"{"alg":"none","typ":"JWT"}"#, &claims, "");
        assert_eq!(
            keys.verify_access(&token).expect_err("alg none").status(),
            401
        );
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let keys = keys();
        let mut c = config("test-secret-that-is-long-enough-000000");
        c.jwt_audience = "someone-else".into();
        let token = JwtKeys::new(&c).issue_access(1, None).expect("token");
        assert!(keys.verify_access(&token).is_err());
        let mut c = config("test-secret-that-is-long-enough-000000");
        c.jwt_issuer = "someone-else".into();
        let token = JwtKeys::new(&c).issue_access(1, None).expect("token");
        assert!(keys.verify_access(&token).is_err());
    }

    #[test]
    fn subject_must_match_user_id() {
        let keys = keys();
        let token = signed(&claims("2", None), Some(ACCESS_JWT_TYPE));
        assert!(keys.verify_access(&token).is_err());
    }
}
