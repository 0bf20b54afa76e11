"""Hashing of personal references and secrets: nothing identifying is stored in the clear."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def hash_subject(subject: str, salt: str) -> str:
    """Salted HMAC of a subject reference: lookups work, the reference cannot be read back."""
    return hmac.new(salt.encode(), subject.strip().encode(), hashlib.sha256).hexdigest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> str:
    return "ul_" + secrets.token_urlsafe(32)


def valid_model_name(name: str) -> bool:
    """Model names become folder names: lowercase letters, digits, '.', '_' and '-', no traversal."""
    return bool(_NAME.match(name)) and ".." not in name


def sha256_ids(ids: list[str] | set[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
