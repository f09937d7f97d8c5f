"""Telegram's published Bot API (../shared/data/telegram-bot-api/api.min.json, MIT):
which methods exist and which of their fields are required."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parents[3] / "shared/data/telegram-bot-api/api.min.json"


@cache
def methods() -> dict[str, dict[str, Any]]:
    return json.loads(SPEC.read_text())["methods"]


def problems(method: str, params: dict[str, Any]) -> list[str]:
    """What Telegram would refuse in a call of `method` with `params` (by the spec's
    field names and required flags): an unknown method or field, a missing field."""
    spec = methods().get(method)
    if spec is None:
        return [f"{method}: no such Bot API method"]
    fields = {field["name"]: field for field in spec.get("fields", [])}
    found = [f"{method}: unknown field {name!r}" for name in params if name not in fields]
    found += [
        f"{method}: required field {name!r} missing"
        for name, field in fields.items()
        if field["required"] and params.get(name) is None
    ]
    return found
