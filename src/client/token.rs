//! Bearer tokens a client sends with every call (`authorization: Bearer …`): one given once,
//! or a [`TokenSource`] asked again as each token nears its expiry (a file a platform rotates,
//! such as a Kubernetes projected service-account token, or a program's own OAuth client).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// A token is asked for again this long before it expires.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(30);
/// A token whose expiry is unknown is asked for again this often.
const REFRESH_UNKNOWN: Duration = Duration::from_secs(60);

/// One bearer token, and when it expires, if known.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires: Option<SystemTime>,
}

impl Token {
    /// `value`, its expiry read from its `exp` claim when it is a JWT.
    pub fn new(value: impl Into<String>) -> Token {
        let value: String = value.into();
        let expires = jwt_expiry(&value);
        Token { value, expires }
    }
}

impl std::fmt::Debug for Token {
    /// The token itself stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("expires", &self.expires).finish_non_exhaustive()
    }
}

/// Where a client's tokens come from. Asked on the first call, then whenever the token it gave
/// is within 30 s of its expiry (or a minute old, when its expiry is unknown), on the calling
/// task's thread: it should answer quickly (read a file, return what a refresher of its own
/// holds).
pub trait TokenSource: Send + Sync {
    fn token(&self) -> Result<Token, String>;
}

/// A token read from a file, again whenever it nears its expiry (so a file the platform
/// rotates is followed).
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    pub fn new(path: impl AsRef<Path>) -> TokenFile {
        TokenFile { path: path.as_ref().to_owned() }
    }
}

impl TokenSource for TokenFile {
    fn token(&self) -> Result<Token, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read the token file {}: {e}", self.path.display()))?;
        let value = text.trim();
        if value.is_empty() {
            return Err(format!("the token file {} is empty", self.path.display()));
        }
        Ok(Token::new(value))
    }
}

/// A source and the token it gave last, shared by a client's clones.
#[derive(Clone)]
pub(crate) struct Tokens {
    source: Arc<dyn TokenSource>,
    cached: Arc<Mutex<Option<(Token, SystemTime)>>>,
}

impl Tokens {
    pub(crate) fn new(source: Arc<dyn TokenSource>) -> Self {
        Tokens { source, cached: Arc::default() }
    }

    /// The `authorization` header's value for the next call.
    pub(crate) fn header(&self) -> Result<String, String> {
        let now = SystemTime::now();
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = cached.as_ref().is_some_and(|(token, fetched)| match token.expires {
            Some(expires) => now + REFRESH_BEFORE_EXPIRY < expires,
            None => now.duration_since(*fetched).unwrap_or_default() < REFRESH_UNKNOWN,
        });
        if !fresh {
            *cached = Some((self.source.token()?, now));
        }
        Ok(format!("Bearer {}", cached.as_ref().map_or("", |(t, _)| t.value.as_str())))
    }
}

/// A source that always gives the same token.
pub(crate) struct Fixed(pub(crate) Token);

impl TokenSource for Fixed {
    fn token(&self) -> Result<Token, String> {
        Ok(self.0.clone())
    }
}

/// The `exp` claim of a JWT (`header.payload.signature`, the payload base64url JSON), read
/// without checking anything: the client only needs to know when to ask for the next one.
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwts_expiry_is_read_from_its_payload() {
        // {"alg":"none"}.{"sub":"a","exp":2000000000}.
        let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjoyMDAwMDAwMDAwfQ.";
        assert_eq!(Token::new(token).expires, Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
        assert_eq!(Token::new("not a jwt").expires, None);
    }

    #[test]
    fn a_token_is_asked_for_again_only_near_its_expiry() {
        struct Counting(std::sync::atomic::AtomicU32, Option<SystemTime>);
        impl TokenSource for Counting {
            fn token(&self) -> Result<Token, String> {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Token { value: format!("t{n}"), expires: self.1 })
            }
        }
        let later = Arc::new(Counting(0.into(), Some(SystemTime::now() + Duration::from_secs(3600))));
        let tokens = Tokens::new(later.clone());
        assert_eq!(tokens.header().unwrap(), "Bearer t0");
        assert_eq!(tokens.header().unwrap(), "Bearer t0");
        let soon = Arc::new(Counting(0.into(), Some(SystemTime::now() + Duration::from_secs(10))));
        let tokens = Tokens::new(soon.clone());
        assert_eq!(tokens.header().unwrap(), "Bearer t0");
        assert_eq!(tokens.header().unwrap(), "Bearer t1");
    }
}
