"""Text typed by users, as the database can keep it."""

from __future__ import annotations

NUL = "\x00"


def storable(text: str) -> str:
    """`text` without NUL characters, everything else exactly as typed.

    PostgreSQL's text types cannot hold U+0000 (it refuses the whole statement), and
    nobody means to type one; a NUL in a query parameter would otherwise fail the update.
    """
    return text.replace(NUL, "")
