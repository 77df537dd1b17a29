"""Deterministic 32-hex tokens, so the same seed writes byte-identical tables.

nuScenes tokens are random UUID hex strings; here each is the MD5 of a readable key
(e.g. "seed0/scene3/sample/12"), which keeps them unique, stable across runs, and debuggable.
"""

from __future__ import annotations

import hashlib


class TokenFactory:
    """Makes tokens under a namespace: `TokenFactory("seed0").make("scene", 3)`."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def make(self, *parts: object) -> str:
        key = "/".join([self.namespace, *map(str, parts)])
        return hashlib.md5(key.encode("utf-8")).hexdigest()
