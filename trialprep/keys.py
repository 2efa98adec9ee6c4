"""The study's pseudonymization key and the keyed derivations made from it.

The key comes from an environment variable or a key file named in the config; it is never
logged or written. Everything derived from it is a one-way HMAC-SHA256.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

MIN_KEY_BYTES = 16


class StudyKeyError(RuntimeError):
    """No usable study key."""


class StudyKey:
    """Keyed one-way derivations (pseudonyms, date shifts, UIDs, path ids)."""

    def __init__(self, secret: bytes):
        if len(secret) < MIN_KEY_BYTES:
            raise StudyKeyError(f"the study key must be at least {MIN_KEY_BYTES} bytes long")
        self._secret = secret

    def __repr__(self) -> str:  # never show the secret
        return "StudyKey(<hidden>)"

    def digest(self, purpose: str, *parts: str) -> bytes:
        msg = "\x1f".join((purpose, *parts)).encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    def label(self, purpose: str, *parts: str, length: int = 8) -> str:
        """An alphanumeric (BIDS-safe) label, upper-case base32."""
        return base64.b32encode(self.digest(purpose, *parts)).decode()[:length]

    def integer(self, purpose: str, *parts: str) -> int:
        return int.from_bytes(self.digest(purpose, *parts)[:8], "big")

    def uid(self, uid: str) -> str:
        """A consistent replacement UID under the 2.25 (UUID-derived) root."""
        return "2.25." + str(int.from_bytes(self.digest("uid", uid)[:16], "big"))


def load_study_key(env: str | None = "TRIALPREP_STUDY_KEY",
                   file: str | Path | None = None) -> StudyKey:
    """Read the key from ``$env`` or, failing that, from ``file``."""
    value = os.environ.get(env) if env else None
    if value:
        return StudyKey(value.encode())
    if file:
        path = Path(file)
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise StudyKeyError(f"cannot read the study key file {path}: {exc.strerror}") from None
        return StudyKey(secret)
    raise StudyKeyError(f"no study key: set {env} or name a key file in the config (key.file)")
