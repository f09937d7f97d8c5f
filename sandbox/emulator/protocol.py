"""The Bot API wire protocol: Telegram's error bodies and typed request parameters.

:class:`ApiError` is an ``ok: false`` answer with Telegram's code and description
(:func:`bad_request`, :func:`too_many_requests` build the common ones);
:class:`ControlError` is the control API's equivalent. :func:`read_request_params`
collects a method's parameters from the query string and a JSON, form or multipart
body into :class:`Params`, with file parts as :class:`Upload`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import MultipartReader, hdrs, web

JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "commands",
        "scope",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "allowed_updates",
    }
)


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A Bot API failure (``ok: false``) carrying Telegram's code and description."""

    def __init__(
        self, error_code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        """Return the JSON body Telegram sends for this error."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class ControlError(Exception):
    """A control-API failure, answered as ``{"ok": false, "error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def bad_request(detail: str) -> ApiError:
    """Return a 400 error with Telegram's ``Bad Request:`` prefix."""
    return ApiError(400, f"Bad Request: {detail}")


def too_many_requests(seconds: float) -> ApiError:
    """Return a 429 error whose retry_after is the whole seconds until a retry can succeed."""
    retry_after = max(1, math.ceil(seconds)) if math.isfinite(seconds) else 3600
    return ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


UNAUTHORIZED = ApiError(401, "Unauthorized")
METHOD_NOT_FOUND = ApiError(404, "Not Found: method not found")


# --------------------------------------------------------------------------- parameters


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str | None
    data: bytes


class Params:
    """Typed access to Bot API parameters, whichever transport they came in."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def raw(self, name: str) -> Any:
        """Return the value of ``name``, treating an empty string as absent."""
        value = self.values.get(name)
        return None if value is None or (isinstance(value, str) and value == "") else value

    def get_str(self, name: str) -> str | None:
        """Return ``name`` as a string (numbers are accepted like Telegram does)."""
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return str(value).lower() if isinstance(value, bool) else str(value)
        raise bad_request(f"field {name!r} must be a string")

    def get_int(self, name: str) -> int | None:
        """Return ``name`` as an integer, or raise a Bad Request for garbage."""
        value = self.raw(name)
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def get_float(self, name: str) -> float | None:
        """Return ``name`` as a float, or raise a Bad Request for garbage."""
        value = self.raw(name)
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def get_bool(self, name: str) -> bool:
        """Return ``name`` as a boolean; absent means False."""
        value = self.raw(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)

    def get_json(self, name: str) -> Any:
        """Return ``name`` decoded from JSON when it arrived as a string (form transports)."""
        value = self.raw(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name} JSON object") from None

    def get_file(self, name: str) -> Upload | str | None:
        """Return an uploaded file (direct or ``attach://`` reference) or a file_id/URL string."""
        value = self.raw(name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = self.values.get(value.removeprefix("attach://"))
            if not isinstance(value, Upload):
                raise bad_request(f"file {name} must be uploaded as a multipart part")
        if value is None or isinstance(value, Upload | str):
            return value
        raise bad_request(f"wrong type of the {name} field")

    def loggable(self) -> dict[str, Any]:
        """Return the parameters for the event log: JSON decoded, file bytes summarised."""
        logged: dict[str, Any] = {}
        for name, value in self.values.items():
            if isinstance(value, Upload):
                value = {"filename": value.filename, "size": len(value.data)}
            elif isinstance(value, str) and name in JSON_PARAMS:
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            logged[name] = value
        return logged


async def read_multipart(reader: MultipartReader) -> dict[str, Any]:
    """Read every part of a multipart body: file parts become :class:`Upload`."""
    values: dict[str, Any] = {}
    while (part := await reader.next()) is not None:
        if isinstance(part, MultipartReader) or part.name is None:
            continue
        if part.filename is not None:
            data = bytes(await part.read(decode=True))
            values[part.name] = Upload(part.filename, part.headers.get(hdrs.CONTENT_TYPE), data)
        else:
            values[part.name] = await part.text()
    return values


async def read_request_params(request: web.Request) -> Params:
    """Collect Bot API parameters from the query string and a JSON, form or multipart body."""
    values: dict[str, Any] = dict(request.query)
    if request.body_exists:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("JSON body must be an object")
            values.update(body)
        elif ctype.startswith("multipart/"):
            values.update(await read_multipart(await request.multipart()))
        else:
            values.update((await request.post()).items())
    return Params(values)


def maybe_int(value: Any) -> int | None:
    """Return ``value`` as an int when it is one, else None."""
    try:
        return int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
