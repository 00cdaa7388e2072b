"""File names from input values: a channel, geo, market or test id becomes one safe path component,
and no path built under a root may resolve outside it (``..``, absolute parts, symlinks)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MAX_NAME = 60
_SAFE = re.compile(r"[a-z0-9._-]+")
_UNSAFE_CHAR = re.compile(r"[^a-z0-9._-]")


def safe_name(text: str) -> str:
    """One file-name component for `text`: unchanged when it already is a plain lower-case name
    (`[a-z0-9._-]`, no leading dot, 1-60 characters), so normal names keep today's files; else the
    cleaned, lower-cased text plus `-` and 8 hex digits of its sha256, so names that clean alike
    (case, `/` vs `_`, long prefixes) still get distinct files."""
    text = str(text)
    if len(text) <= MAX_NAME and _SAFE.fullmatch(text) and not text.startswith("."):
        return text
    cleaned = _UNSAFE_CHAR.sub("_", text.lower()).lstrip(".")[:MAX_NAME] or "_"
    return f"{cleaned}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def path_inside(root: str | Path, *parts: str | Path) -> Path:
    """`root` joined with `parts`, resolved; ValueError when a part is absolute or holds a NUL, or when
    the result (symlinks followed) is not inside `root`."""
    base = Path(root).resolve()
    for part in parts:
        if "\x00" in str(part):
            raise ValueError(f"path part {str(part)!r} holds a NUL byte (root {base})")
        if Path(part).is_absolute():
            raise ValueError(f"path part {str(part)!r} is absolute: refusing to leave the root {base}")
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base):
        raise ValueError(f"path {target} (from {'/'.join(map(str, parts))!r}) is outside the root {base}")
    return target
