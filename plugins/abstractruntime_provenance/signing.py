"""Optional Ed25519 signatures over record hashes (``cryptography``, imported only when a key is used)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional, Union

from abstractruntime.errors import ConfigurationError

SIGNING_KEY_ENV = "ABSTRACTRUNTIME_SIGNING_KEY"
SIGNING_KEY_PASSWORD_ENV = "ABSTRACTRUNTIME_SIGNING_KEY_PASSWORD"
INSTALL_HINT = "pip install abstractruntime[signing]"

KeySource = Union[str, bytes, os.PathLike, Any]


def _crypto() -> Any:
    """The pieces of ``cryptography`` we use, or a ConfigurationError saying how to install it."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise ConfigurationError(
            f"Ledger signatures need the 'cryptography' package, which is not installed ({exc}). "
            f"Install it with `{INSTALL_HINT}`, or remove the provenance signing key "
            f"(plugin_options.provenance.signing_key_path / ${SIGNING_KEY_ENV})."
        ) from None

    return SimpleNamespace(InvalidSignature=InvalidSignature, serialization=serialization, ed25519=ed25519)


def _read_pem(source: Union[str, bytes, os.PathLike], what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode("ascii")
    path = Path(source).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"Cannot read the {what} PEM file {path}: {exc.strerror or exc}") from None


def load_signing_key(source: KeySource, *, password: Optional[bytes] = None) -> Any:
    """An ``Ed25519PrivateKey`` from a PEM path, PEM text/bytes, or a key object (returned as is)."""
    pem = _read_pem(source, "signing key") if isinstance(source, (str, bytes, os.PathLike)) else None
    c = _crypto()
    if isinstance(source, c.ed25519.Ed25519PrivateKey):
        return source
    if pem is None:
        raise ConfigurationError(
            f"A ledger signing key must be a PEM path, PEM text/bytes or an Ed25519PrivateKey, "
            f"got {type(source).__name__}"
        )
    try:
        key = c.serialization.load_pem_private_key(pem, password=password)
    except TypeError as exc:  # encrypted without password, or password for an unencrypted key
        raise ConfigurationError(
            f"Cannot load the ledger signing key: {exc} (an encrypted key needs ${SIGNING_KEY_PASSWORD_ENV})"
        ) from None
    except ValueError as exc:
        raise ConfigurationError(f"The ledger signing key is not a valid PEM private key: {exc}") from None
    if not isinstance(key, c.ed25519.Ed25519PrivateKey):
        raise ConfigurationError(
            f"The ledger signing key must be an Ed25519 private key, got {type(key).__name__} "
            f"(create one with `openssl genpkey -algorithm ed25519 -out ledger-key.pem`)"
        )
    return key


def load_public_key(source: KeySource) -> Any:
    """An ``Ed25519PublicKey`` from a PEM path, PEM text/bytes, a public key, or a private key (its public half)."""
    pem = _read_pem(source, "public key") if isinstance(source, (str, bytes, os.PathLike)) else None
    c = _crypto()
    if isinstance(source, c.ed25519.Ed25519PublicKey):
        return source
    if isinstance(source, c.ed25519.Ed25519PrivateKey):
        return source.public_key()
    if pem is None:
        raise ConfigurationError(
            f"A verification key must be a PEM path, PEM text/bytes or an Ed25519 key, got {type(source).__name__}"
        )
    try:
        key = c.serialization.load_pem_public_key(pem)
    except ValueError:
        try:  # a private key PEM: verify with its public half
            key = c.serialization.load_pem_private_key(pem, password=None).public_key()
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"Not a PEM Ed25519 public key: {exc}") from None
    if not isinstance(key, c.ed25519.Ed25519PublicKey):
        raise ConfigurationError(f"The verification key must be an Ed25519 public key, got {type(key).__name__}")
    return key


def key_fingerprint(key: Any) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key bytes (to tell keys apart in logs)."""
    c = _crypto()
    pub = key.public_key() if isinstance(key, c.ed25519.Ed25519PrivateKey) else load_public_key(key)
    raw = pub.public_bytes(c.serialization.Encoding.Raw, c.serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signer_for(key: Any) -> Callable[[str], str]:
    """``sign(record_hash) -> base64 signature`` with an Ed25519 private key."""

    def sign(record_hash: str) -> str:
        return base64.b64encode(key.sign(record_hash.encode("utf-8"))).decode("ascii")

    return sign


def verifier_for(public_key: Any) -> Callable[[str, str], bool]:
    """``verify(record_hash, signature) -> bool`` with an Ed25519 public key (from any :func:`load_public_key`
    source)."""
    c = _crypto()
    pub = load_public_key(public_key)

    def verify(record_hash: str, signature: str) -> bool:
        try:
            raw = base64.b64decode(signature.encode("ascii"), validate=True)
            pub.verify(raw, record_hash.encode("utf-8"))
        except (c.InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError, AttributeError):
            return False
        return True

    return verify


def configured_signing_key(path_option: Any, environ: Optional[dict] = None) -> Optional[Any]:
    """The signing key named by the option (a path; empty string: signing off) or else ``$ABSTRACTRUNTIME_SIGNING_KEY``.

    Returns None when no key is configured.
    """
    env = os.environ if environ is None else environ
    source = path_option if path_option is not None else env.get(SIGNING_KEY_ENV)
    if source is None or (isinstance(source, str) and not source.strip()):
        return None
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigurationError(
            f"plugin_options.provenance.signing_key_path must be a path string, got {type(source).__name__}"
        )
    password = env.get(SIGNING_KEY_PASSWORD_ENV)
    return load_signing_key(source, password=password.encode("utf-8") if password else None)


__all__ = [
    "INSTALL_HINT",
    "SIGNING_KEY_ENV",
    "SIGNING_KEY_PASSWORD_ENV",
    "configured_signing_key",
    "key_fingerprint",
    "load_public_key",
    "load_signing_key",
    "signer_for",
    "verifier_for",
]
