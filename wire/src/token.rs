//! The access token: a JWT signed with Ed25519 (EdDSA) by the api role and verified
//! by every role (api, gateway, SFU) with the public key alone.

use ed25519_dalek::pkcs8::{
    DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::Id;

/// Issuer written into and required from every access token.
pub const ISSUER: &str = "copains";

/// What an access token says: who, which session, until when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Id,
    /// The session (refresh-token family) id: revoking it invalidates the token at the api.
    pub sid: Id,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issuer, always [`ISSUER`].
    pub iss: String,
}

/// Why a token or key was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token has expired.
    #[error("the access token has expired")]
    Expired,
    /// Bad signature, wrong algorithm, malformed, or wrong issuer.
    #[error("the access token is invalid")]
    Invalid,
    /// The key material could not be read.
    #[error("bad signing key: {0}")]
    Key(String),
}

/// Signs access tokens. Holds the Ed25519 private key.
#[derive(Clone)]
pub struct TokenSigner {
    key: EncodingKey,
    public_pem: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A fresh random Ed25519 key, as PKCS#8 PEM (what [`TokenSigner::from_pem`] reads).
    pub fn generate_pem() -> Result<String, TokenError> {
        let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        sk.to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// Reads a PKCS#8 PEM Ed25519 private key.
    pub fn from_pem(pem: &str) -> Result<Self, TokenError> {
        let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let public_pem = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let key =
            EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self { key, public_pem })
    }

    /// The public key as SPKI PEM, for [`TokenVerifier::from_public_pem`].
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// A verifier for the tokens this signer makes.
    pub fn verifier(&self) -> Result<TokenVerifier, TokenError> {
        TokenVerifier::from_public_pem(&self.public_pem)
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.key)
            .map_err(|e| TokenError::Key(e.to_string()))
    }
}

/// Verifies access tokens with the public key alone.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Reads an SPKI PEM Ed25519 public key.
    pub fn from_public_pem(pem: &str) -> Result<Self, TokenError> {
        let key =
            DecodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| TokenError::Key(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 5;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Ok(Self { key, validation })
    }

    /// Checks the signature, algorithm, issuer and expiry; returns the claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Invalid);
        }
        jsonwebtoken::decode::<AccessClaims>(token, &self.key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64) -> AccessClaims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        AccessClaims {
            sub: Id(42),
            sid: Id(7),
            iat: now,
            exp: now + exp_in,
            iss: ISSUER.into(),
        }
    }

    #[test]
    fn sign_and_verify_with_public_key_only() {
        let signer = TokenSigner::from_pem(&TokenSigner::generate_pem().unwrap()).unwrap();
        let verifier = TokenVerifier::from_public_pem(signer.public_pem()).unwrap();
        let t = signer.sign(&claims(900)).unwrap();
        assert_eq!(verifier.verify(&t).unwrap(), claims(900));
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let signer = TokenSigner::from_pem(&TokenSigner::generate_pem().unwrap()).unwrap();
        let other = TokenSigner::from_pem(&TokenSigner::generate_pem().unwrap()).unwrap();
        let v = signer.verifier().unwrap();
        assert!(matches!(
            v.verify(&signer.sign(&claims(-60)).unwrap()),
            Err(TokenError::Expired)
        ));
        assert!(matches!(
            v.verify(&other.sign(&claims(900)).unwrap()),
            Err(TokenError::Invalid)
        ));
        assert!(matches!(v.verify("a.b.c"), Err(TokenError::Invalid)));
        // alg=none token with the same claims
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiJ9.";
        assert!(matches!(v.verify(none), Err(TokenError::Invalid)));
    }
}
