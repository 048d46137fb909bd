//! Tokens: HMAC-SHA256-signed claims (who, which session, which role, until when) and the server secret that
//! signs them.
//!
//! Format: `cc1.<base64url(JSON claims)>.<base64url(HMAC-SHA256 of the first two parts)>`. Three kinds:
//! - `host`: may create sessions (minted by `codecollab-server token`);
//! - `invite`: joins one session with one role; the guest picks the name it is shown under;
//! - `peer`: a personal token for one named peer of one session, handed out on joining and used to reconnect.
//!
//! Tokens never appear in logs: [`Claims`] is what gets logged, and only its non-secret fields.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use codecollab_protocol::wire::Role;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "cc1";
/// The secret's file in the data directory.
pub const SECRET_FILE: &str = "secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Host,
    Invite,
    Peer,
}

/// What a token says. Signed, so a client cannot change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub kind: TokenKind,
    /// The session (invite and peer tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The peer's name (host and peer tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// A peer token of the session's host: may remove peers.
    #[serde(default)]
    pub host: bool,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Random id, so two tokens with the same claims differ.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
}

/// The key that signs and verifies tokens.
pub struct Secret {
    key: hmac::Key,
    random: SystemRandom,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from raw key material.
    pub fn from_bytes(bytes: &[u8]) -> Secret {
        Secret { key: hmac::Key::new(hmac::HMAC_SHA256, bytes), random: SystemRandom::new() }
    }

    /// `CODECOLLAB_SECRET`, if set.
    pub fn from_environment() -> anyhow::Result<Option<Secret>> {
        match std::env::var("CODECOLLAB_SECRET") {
            Ok(value) => {
                anyhow::ensure!(value.len() >= 32, "CODECOLLAB_SECRET must be at least 32 characters");
                Ok(Some(Secret::from_bytes(value.as_bytes())))
            }
            Err(_) => Ok(None),
        }
    }

    /// Fresh random key material, as 64 hex digits.
    pub fn fresh_hex() -> anyhow::Result<String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("no system randomness"))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// `CODECOLLAB_SECRET` if set; else the data directory's secret file, created on first start (mode 0600).
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Secret> {
        if let Some(secret) = Self::from_environment()? {
            return Ok(secret);
        }
        let path = data_dir.join(SECRET_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                anyhow::ensure!(bytes.len() >= 32, "{} is too short to be a secret", path.display());
                return Ok(Secret::from_bytes(&bytes));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let hex = Self::fresh_hex()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = match options.open(&path) {
            Ok(file) => file,
            // Another process created it between our read and our create: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Give the other writer a moment to finish writing it.
                for _ in 0..50 {
                    if let Ok(bytes) = std::fs::read(&path) {
                        if bytes.len() >= 32 {
                            return Ok(Secret::from_bytes(&bytes));
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                anyhow::bail!("{} exists but holds no secret", path.display());
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        };
        file.write_all(hex.as_bytes())?;
        file.sync_all()?;
        Ok(Secret::from_bytes(hex.as_bytes()))
    }

    /// `n` random bytes as lowercase hex (session and token ids).
    pub fn random_hex(&self, n: usize) -> String {
        let mut bytes = vec![0u8; n];
        // SystemRandom only fails if the OS has no randomness source, which would make the server unusable.
        self.random.fill(&mut bytes).expect("the operating system provides randomness");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A random `u64` (peer ids).
    pub fn random_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        self.random.fill(&mut bytes).expect("the operating system provides randomness");
        u64::from_le_bytes(bytes)
    }

    /// Signs `claims` into a token string.
    pub fn sign(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        let payload = format!("{PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Mints claims of `kind` valid for `ttl` from now.
    pub fn claims(&self, kind: TokenKind, ttl: Duration) -> Claims {
        Claims {
            kind,
            session: None,
            name: None,
            role: None,
            host: false,
            exp: unix_now().saturating_add(ttl.as_secs()),
            id: self.random_hex(8),
        }
    }

    /// A peer token's claims for `name` in `session`, valid for `ttl`: what the host of a new session connects
    /// with (`host` set), and what every peer reconnects with.
    pub fn peer_claims(&self, session: &str, name: &str, role: Role, host: bool, ttl: Duration) -> Claims {
        let mut claims = self.claims(TokenKind::Peer, ttl);
        claims.session = Some(session.to_owned());
        claims.name = Some(name.to_owned());
        claims.role = Some(role);
        claims.host = host;
        claims
    }

    /// A signed invite into `session` with `role`, valid for `ttl`.
    pub fn invite(&self, session: &str, role: Role, ttl: Duration) -> String {
        let mut claims = self.claims(TokenKind::Invite, ttl);
        claims.session = Some(session.to_owned());
        claims.role = Some(role);
        self.sign(&claims)
    }

    /// The personal token a peer joining with `claims` (an invite or peer token) reconnects with: same session,
    /// role and host right, under `name`, and never longer-lived than `claims`.
    pub fn personal_token(&self, claims: &Claims, session: &str, name: &str, role: Role) -> String {
        let mut personal =
            self.peer_claims(session, name, role, claims.kind == TokenKind::Peer && claims.host, Duration::ZERO);
        personal.exp = claims.exp;
        self.sign(&personal)
    }

    /// Checks the signature (in constant time) and the expiry, and returns the claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let (payload, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (prefix, body) = payload.split_once('.').ok_or(TokenError::Malformed)?;
        if prefix != PREFIX {
            return Err(TokenError::Malformed);
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, payload.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_refusals() {
        let secret = Secret::from_bytes(b"0123456789abcdef0123456789abcdef");
        let mut claims = secret.claims(TokenKind::Peer, Duration::from_secs(60));
        claims.session = Some("s".into());
        claims.name = Some("Ada".into());
        claims.role = Some(Role::Edit);
        let token = secret.sign(&claims);
        assert_eq!(secret.verify(&token, unix_now()), Ok(claims.clone()));
        assert_eq!(secret.verify(&token, claims.exp), Err(TokenError::Expired));
        let other = Secret::from_bytes(b"another secret of thirty-two chars!");
        assert_eq!(other.verify(&token, unix_now()), Err(TokenError::BadSignature));
        // Changing the claims (say, the role) breaks the signature.
        let (_, body_and_tag) = token.split_once('.').expect("prefix");
        let (_, tag) = body_and_tag.split_once('.').expect("tag");
        let mut forged = claims;
        forged.role = Some(Role::View);
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(secret.verify(&format!("cc1.{forged_body}.{tag}"), unix_now()), Err(TokenError::BadSignature));
        assert_eq!(secret.verify("garbage", unix_now()), Err(TokenError::Malformed));
        assert_eq!(secret.verify("cc1.!!.??", unix_now()), Err(TokenError::Malformed));
    }

    #[test]
    fn secret_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("codecollab-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = Secret::load_or_create(&dir).expect("created");
        let token = first.sign(&first.claims(TokenKind::Host, Duration::from_secs(60)));
        let second = Secret::load_or_create(&dir).expect("reused");
        assert!(second.verify(&token, unix_now()).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(SECRET_FILE)).expect("exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
