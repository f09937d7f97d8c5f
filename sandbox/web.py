"""The sandbox's web chat: a Telegram-like page and the small JSON and SSE API behind it.

Routes (all served by aiohttp from this package; no CDN, no build step):

- ``GET /`` the page; ``GET /static/...`` its script and style sheet;
- ``GET /api/personas``, ``/api/identities``, ``/api/places``: who you can be,
  identities to type in, places to share;
- ``GET /api/chats/{persona}``: the persona's chat (messages, reply keyboard,
  command menu in the persona's language);
- ``POST /api/chats/{persona}/messages`` ``{"text"}`` | ``{"contact": true}`` |
  ``{"location": {"latitude", "longitude"}}`` | ``{"sticker": {"emoji"}}``;
- ``POST /api/chats/{persona}/callbacks`` ``{"message_id", "data"}``: an inline button;
- ``GET /api/chats/{persona}/files/{message_id}``: a document the bot sent, as a download;
- ``GET /api/events?persona=KEY``: Server-Sent Events with every change in that chat;
- ``POST /api/reset``: back to the demo data.
- ``POST /api/clock`` ``{"minutes": N}``: fast-forward the sandbox's clock; the
  worker's checks (Napza SLA expiry, escalation) run at the new time.

User actions go through the emulator's control API, like any test client; live
updates come from the emulator's in-process listener (``BotApiEmulator.subscribe``).
Messages reach the page as plain text plus entities (never the bot's HTML), and the
page builds DOM nodes from them.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from sandbox.client import EmulatorClient, EmulatorError
from sandbox.net import is_loopback
from sandbox.personas import Persona
from services.regions import zone_abbreviation

if TYPE_CHECKING:
    from sandbox.runner import Sandbox

STATIC_DIR = Path(__file__).resolve().parent / "static"
KEEPALIVE_SECONDS = 15.0
MAX_TEXT = 4096
MAX_BODY = 64 * 1024
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
INLINE_BUTTON_FIELDS = ("text", "callback_data", "url")
REPLY_BUTTON_FIELDS = ("text", "request_contact", "request_location")
REPLY_KEYBOARD_OPTIONS = ("one_time_keyboard", "input_field_placeholder", "is_persistent")


class BadInput(Exception):
    """A request the page should not have made; answered with 400 and the reason."""


# --------------------------------------------------------------------------- views


def _inline_keyboard(markup: dict[str, Any] | None) -> list[list[dict[str, Any]]] | None:
    """The inline keyboard of a message, with only what the page uses."""
    rows = (markup or {}).get("inline_keyboard")
    if not rows:
        return None
    return [
        [{key: button[key] for key in INLINE_BUTTON_FIELDS if key in button} for button in row]
        for row in rows
    ]


def public_keyboard(keyboard: dict[str, Any] | None) -> dict[str, Any] | None:
    """The chat's reply keyboard, with only what the page uses."""
    if not keyboard or "keyboard" not in keyboard:
        return None
    view: dict[str, Any] = {
        "keyboard": [
            [{key: button[key] for key in REPLY_BUTTON_FIELDS if key in button} for button in row]
            for row in keyboard["keyboard"]
        ]
    }
    for option in REPLY_KEYBOARD_OPTIONS:
        if keyboard.get(option) is not None:
            view[option] = keyboard[option]
    return view


def public_message(view: dict[str, Any]) -> dict[str, Any]:
    """A message for the page: text and entities, never the bot's raw HTML or file ids."""
    markup = view.get("reply_markup") or {}
    document = view.get("document")
    sticker = view.get("sticker")
    contact = view.get("contact")
    return {
        "message_id": view["message_id"],
        "from_bot": view["from_bot"],
        "kind": view["kind"],
        "text": view.get("text") or "",
        "entities": view.get("entities") or [],
        "inline_keyboard": _inline_keyboard(markup) if view["from_bot"] else None,
        "sets_keyboard": "keyboard" in markup or "remove_keyboard" in markup,
        "document": {
            "file_name": document.get("file_name"),
            "mime_type": document.get("mime_type"),
            "size": document.get("size"),
        }
        if document
        else None,
        "location": view.get("location"),
        "venue": view.get("venue"),
        "contact": {
            "first_name": contact.get("first_name"),
            "last_name": contact.get("last_name"),
            "phone_number": contact.get("phone_number"),
        }
        if contact
        else None,
        "sticker": {"emoji": sticker.get("emoji")} if sticker else None,
        "photo": bool(view.get("photo")),
        "edited": view.get("edited", False),
        "deleted": view.get("deleted", False),
        "date": view.get("date"),
        "seq": view.get("seq", 0),
    }


def public_event(event: dict[str, Any]) -> dict[str, Any]:
    """An emulator listener event, as the page receives it."""
    kind = event.get("type")
    if kind == "message":
        return {
            "type": "message",
            "seq": event["seq"],
            "message": public_message(event["message"]),
            "reply_keyboard": public_keyboard(event.get("reply_keyboard")),
        }
    if kind == "callback_answer":
        answer = event["answer"]
        return {
            "type": "callback_answer",
            "seq": event["seq"],
            "answer": {
                "message_id": answer.get("message_id"),
                "text": answer.get("text"),
                "show_alert": bool(answer.get("show_alert")),
            },
        }
    return {key: value for key, value in event.items() if key in ("type", "seq")}


def persona_view(persona: Persona) -> dict[str, Any]:
    return {
        "key": persona.key,
        "telegram_id": persona.telegram_id,
        "name": persona.name,
        "first_name": persona.first_name,
        "language_code": persona.language_code,
        "phone_number": persona.phone_number,
        "role": persona.role,
        "description": {"id": persona.description_id, "en": persona.description_en},
    }


def _number(value: Any, low: float, high: float, what: str) -> float:
    """A finite number within [low, high], or BadInput."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise BadInput(f"{what} must be between {low:g} and {high:g}")
    return number


def _attachment(file_name: str) -> str:
    """A Content-Disposition header offering ``file_name`` as a download."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in file_name
    )
    return f"attachment; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(file_name)}"


# --------------------------------------------------------------------------- the app


class WebChat:
    """The web chat of one running :class:`~sandbox.runner.Sandbox`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._streams: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.on_response_prepare.append(self._headers)
        router = app.router
        router.add_get("/", self._index)
        router.add_static("/static/", STATIC_DIR)
        router.add_get("/api/personas", self._personas)
        router.add_get("/api/identities", self._identities)
        router.add_get("/api/places", self._places)
        router.add_get("/api/chats/{persona}", self._chat)
        router.add_post("/api/chats/{persona}/messages", self._send)
        router.add_post("/api/chats/{persona}/callbacks", self._callback)
        router.add_get("/api/chats/{persona}/files/{message_id}", self._file)
        router.add_get("/api/events", self._events)
        router.add_post("/api/reset", self._reset)
        router.add_post("/api/clock", self._clock)
        return app

    # ----------------------------------------------------------------- live streams

    def broadcast(self, event: dict[str, Any]) -> None:
        """Send an event to every open event stream."""
        for queue in self._streams:
            queue.put_nowait(event)

    def close_streams(self) -> None:
        """End every open event stream (on shutdown)."""
        for queue in self._streams:
            queue.put_nowait(None)

    # ----------------------------------------------------------------- plumbing

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Loopback Host only (unless remote is allowed); JSON, same-origin POSTs only.

        The Host check stops DNS-rebinding pages; requiring a JSON body and a
        matching Origin stops other web pages from pressing buttons or resetting.
        """
        if not self.sandbox.allow_remote and not _loopback_host(request.host):
            return _error(403, "this sandbox only answers on its loopback address")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                return _error(403, "cross-origin requests are not allowed")
            if request.content_type != "application/json":
                return _error(415, "send JSON")
        try:
            return await handler(request)
        except BadInput as error:
            return _error(400, str(error))
        except EmulatorError as error:
            return _error(400, str(error))

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-cache")

    def _control(self) -> EmulatorClient:
        control = self.sandbox.control
        if control is None:
            raise web.HTTPServiceUnavailable(text="the sandbox is stopping")
        return control

    def _persona(self, key: str | None) -> Persona:
        persona = self.sandbox.persona(key or "")
        if persona is None:
            raise web.HTTPNotFound(
                text=json.dumps({"ok": False, "error": "unknown persona"}),
                content_type="application/json",
            )
        return persona

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise BadInput("the body must be JSON") from None
        if not isinstance(body, dict):
            raise BadInput("the body must be a JSON object")
        return body

    # ----------------------------------------------------------------- page and data

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def _personas(self, request: web.Request) -> web.Response:
        emulator = self.sandbox.emulator
        bot = emulator.bot_user() if emulator is not None else {}
        return web.json_response(
            {
                "ok": True,
                "bot": {"first_name": bot.get("first_name"), "username": bot.get("username")},
                "personas": [persona_view(persona) for persona in self.sandbox.personas],
            }
        )

    async def _identities(self, request: web.Request) -> web.Response:
        identities = [
            {
                "nik": person.nik,
                "name": person.name,
                "birth_date": person.birth_date.strftime("%d-%m-%Y"),
                "phone": person.phone,
                "activation_code": person.activation_code,
                "programs": list(person.programs),
                "village": person.village_name,
                "zone": zone_abbreviation(person.village_code),
            }
            for person in self.sandbox.identities
        ]
        return web.json_response({"ok": True, "identities": identities})

    async def _places(self, request: web.Request) -> web.Response:
        places = [
            {
                "key": place.key,
                "name": place.name,
                "note": {"id": place.note_id, "en": place.note_en},
                "latitude": place.latitude,
                "longitude": place.longitude,
            }
            for place in self.sandbox.places
        ]
        return web.json_response({"ok": True, "places": places})

    async def _chat(self, request: web.Request) -> web.Response:
        persona = self._persona(request.match_info["persona"])
        await self.sandbox.idle()
        view = await self._control().chat(persona.telegram_id)
        return web.json_response(
            {
                "ok": True,
                "persona": persona.key,
                "seq": view["last_seq"],
                "messages": [public_message(message) for message in view["messages"]],
                "reply_keyboard": public_keyboard(view["reply_keyboard"]),
                "commands": view["commands"],
            }
        )

    # ----------------------------------------------------------------- actions

    async def _send(self, request: web.Request) -> web.Response:
        """The persona sends text, their own contact, a location or a sticker."""
        persona = self._persona(request.match_info["persona"])
        body = await self._body(request)
        if isinstance(body.get("text"), str):
            text = body["text"].strip()
            if not text:
                raise BadInput("the message is empty")
            if len(text) > MAX_TEXT:
                raise BadInput(f"a message has at most {MAX_TEXT} characters")
            payload: dict[str, Any] = {"text": text}
        elif body.get("contact") is True:
            payload = {
                "contact": {
                    "phone_number": persona.phone_number,
                    "first_name": persona.first_name,
                    "last_name": persona.last_name,
                    "user_id": persona.telegram_id,
                }
            }
        elif isinstance(body.get("location"), dict):
            location = body["location"]
            payload = {
                "location": {
                    "latitude": _number(location.get("latitude"), -90, 90, "latitude"),
                    "longitude": _number(location.get("longitude"), -180, 180, "longitude"),
                }
            }
        elif isinstance(body.get("sticker"), dict):
            emoji = str(body["sticker"].get("emoji") or "👍")[:8]
            payload = {"sticker": {"emoji": emoji}}
        else:
            raise BadInput('give one of "text", "contact", "location" or "sticker"')
        await self.sandbox.idle()
        sent = await self._control().request(
            "POST", f"/users/{persona.telegram_id}/messages", json=payload
        )
        return web.json_response(
            {"ok": True, "message_id": sent["message_id"], "update_id": sent["update_id"]}
        )

    async def _callback(self, request: web.Request) -> web.Response:
        """The persona presses an inline button."""
        persona = self._persona(request.match_info["persona"])
        body = await self._body(request)
        message_id, data = body.get("message_id"), body.get("data")
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise BadInput("message_id must be an integer")
        if not isinstance(data, str) or not data:
            raise BadInput("data must be a non-empty string")
        await self.sandbox.idle()
        sent = await self._control().request(
            "POST",
            f"/users/{persona.telegram_id}/callbacks",
            json={"message_id": message_id, "data": data},
        )
        return web.json_response({"ok": True, "update_id": sent["update_id"]})

    async def _file(self, request: web.Request) -> web.Response:
        """A document the bot sent to this persona, offered as a download."""
        persona = self._persona(request.match_info["persona"])
        try:
            message_id = int(request.match_info["message_id"])
        except ValueError:
            raise web.HTTPNotFound() from None
        control = self._control()
        view = await control.chat(persona.telegram_id)
        message = next(
            (
                m
                for m in view["messages"]
                if m["message_id"] == message_id and m["from_bot"] and not m["deleted"]
            ),
            None,
        )
        document = (message or {}).get("document")
        if not document:
            raise web.HTTPNotFound()
        data = await control.file(document["file_id"])
        return web.Response(
            body=data,
            content_type=document.get("mime_type") or "application/octet-stream",
            headers={"Content-Disposition": _attachment(document.get("file_name") or "file")},
        )

    async def _clock(self, request: web.Request) -> web.Response:
        """Move the sandbox's clock ahead (at most 7 days a press) and run the worker."""
        body = await self._body(request)
        minutes = body.get("minutes")
        if not isinstance(minutes, int) or not 1 <= minutes <= 7 * 24 * 60:
            raise BadInput("minutes must be a whole number from 1 to 10080")
        now = await self.sandbox.advance_clock(minutes)
        return web.json_response({"ok": True, "now": now.strftime("%Y-%m-%d %H:%M UTC")})

    async def _reset(self, request: web.Request) -> web.Response:
        await self.sandbox.reset()
        self.broadcast({"type": "ready"})
        return web.json_response({"ok": True})

    # ----------------------------------------------------------------- events

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: every change in the persona's chat, as it happens."""
        persona = self._persona(request.query.get("persona"))
        emulator = self.sandbox.emulator
        if emulator is None:
            raise web.HTTPServiceUnavailable(text="the sandbox is stopping")
        queue: asyncio.Queue[dict[str, Any] | None] = emulator.subscribe(persona.telegram_id)
        self._streams.add(queue)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 1500\n: connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if event is None:
                    break
                data = json.dumps(public_event(event), ensure_ascii=False)
                await response.write(f"data: {data}\n\n".encode())
        except ConnectionResetError:
            pass
        finally:
            emulator.unsubscribe(queue)
            self._streams.discard(queue)
        return response


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


def _loopback_host(host: str) -> bool:
    """Whether a Host header names this machine (127.x, ::1 or localhost), any port."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    return is_loopback(name)
