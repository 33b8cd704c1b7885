"""DPoP (RFC 9449): the hub proving it holds the key its upstream tokens are bound to.

Owns one P-256 key per upstream credential (kept, encrypted, with the tokens: a DPoP-bound
token is useless without it), the public JWK that goes in each proof's header, and the proofs:
a fresh `dpop+jwt` per HTTP request with `htm`, `htu` (no query or fragment), `iat`, a unique
`jti`, the server's `nonce` when it asked for one, and `ath` (the access token's hash) on
requests to the resource. Used only when the authorization server advertises DPoP.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def supported(metadata: dict[str, Any]) -> bool:
    """Does the authorization server issue DPoP-bound tokens with our algorithm?"""
    algs = metadata.get("dpop_signing_alg_values_supported")
    return isinstance(algs, list) and ALGORITHM in algs


class DpopKey:
    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
        self.nonces: dict[str, str] = {}  # endpoint or resource URL -> the nonce it asked for last

    @classmethod
    def from_pem(cls, pem: str) -> DpopKey:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the stored DPoP key is not an EC key")
        return cls(key)

    def to_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def proof(self, method: str, url: str, *, nonce: str | None = None, access_token: str | None = None) -> str:
        parts = urlsplit(url)
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
            "iat": int(time.time()),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["ath"] = _b64(hashlib.sha256(access_token.encode("ascii")).digest())
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"typ": "dpop+jwt", "jwk": self.jwk})
