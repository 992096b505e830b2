"""Signed manifests: Ed25519 through `cryptography`, optional per store, off by default.

With `store.signing-key` (the path of a private key PEM) every manifest is committed with a
detached signature beside it, `manifest.json.<first 16 hex of the manifest's sha256>.sig` (the raw
64 bytes), written before the manifest: a committed manifest always has its signature, and two
builds racing to commit one key each sign their own bytes under their own name. With
`store.verify-key` (the public key PEM) reading a manifest checks it. The private key is read from
its file when a manifest is signed and held nowhere else: no message ever shows it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SUFFIX = ".sig"


def signature_name(body: bytes) -> str:
    """The name of the signature of these manifest bytes, beside the manifest."""
    return f"manifest.json.{hashlib.sha256(body).hexdigest()[:16]}{SUFFIX}"


def is_signature(name: str) -> bool:
    return name.startswith("manifest.json.") and name.endswith(SUFFIX)


def private_key(path: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file at `path`; a ConfigError names the file, never its bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(path).expanduser().read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"store.signing-key {path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except (ValueError, TypeError):
        raise ConfigError(f"store.signing-key {path}: not an unencrypted private key PEM "
                          "(make one with `python -m preprocess keygen`)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"store.signing-key {path}: not an Ed25519 key")
    return key


def public_key(path: str) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM file at `path`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(Path(path).expanduser().read_bytes())
    except OSError as exc:
        raise ConfigError(f"store.verify-key {path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except (ValueError, TypeError):
        raise ConfigError(f"store.verify-key {path}: not a public key PEM "
                          "(`python -m preprocess keygen` writes one beside the private key)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"store.verify-key {path}: not an Ed25519 key")
    return key


def sign(path: str, body: bytes) -> bytes:
    """The signature of `body` with the private key at `path`."""
    return private_key(path).sign(body)


def verifies(key: Ed25519PublicKey, body: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, body)
    except InvalidSignature:
        return False
    return True


def keygen(path: Path) -> tuple[Path, Path]:
    """Write a new key pair: the private key at `path` (mode 0600, created only if absent) and the
    public key at `path`.pub; return both paths. ConfigError when either exists."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = path.with_name(path.name + ".pub")
    for target in (path, public):
        if target.exists():
            raise ConfigError(f"{target} exists: keygen never replaces a key (move it away first)")
    key = Ed25519PrivateKey.generate()
    secret = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written ({exc.strerror or type(exc).__name__})") from None
    with os.fdopen(fd, "wb") as stream:
        stream.write(secret)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return path, public
