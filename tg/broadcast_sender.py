"""copyMessage for broadcast delivery: one lean JSON POST per recipient.

At 1000 messages per second the general-purpose client (request models, multipart
bodies, response models) cost more CPU than everything else the engine does per
message; this sender speaks the same Bot API method with a plain JSON body and maps
Telegram's answer to the engine's outcomes:

- 200 ok: delivered;
- 429: `RetryLater(parameters.retry_after)` (the engine pauses the whole fleet);
- 403 (blocked, deactivated): `Blocked`;
- other 4xx (chat not found...): `Permanent(description)`: Telegram's text, which
  names no one;
- 5xx, unreadable answers, network errors and timeouts: `Transient`.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from services.broadcasts.engine import Blocked, Permanent, RetryLater, Transient

TELEGRAM_API = "https://api.telegram.org"
TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)


class BotApiSender:
    """`await sender(chat_id, from_chat_id, message_id)`; `await sender.close()` at the end."""

    def __init__(self, token: str, api_url: str | None = None, *, paid: bool = False) -> None:
        self.url = f"{(api_url or TELEGRAM_API).rstrip('/')}/bot{token}/copyMessage"
        self.paid = paid
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=TIMEOUT, connector=aiohttp.TCPConnector(limit=100)
            )
        return self._session

    async def __call__(self, chat_id: int, from_chat_id: int, message_id: int) -> None:
        body: dict[str, Any] = {
            "chat_id": chat_id,
            "from_chat_id": from_chat_id,
            "message_id": message_id,
        }
        if self.paid:
            body["allow_paid_broadcast"] = True
        try:
            async with self._http().post(self.url, json=body) as response:
                status = response.status
                answer = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            raise Transient(type(error).__name__) from None
        if status == 200 and isinstance(answer, dict) and answer.get("ok"):
            return
        answer = answer if isinstance(answer, dict) else {}
        description = str(answer.get("description") or f"HTTP {status}")
        if status == 429:
            parameters = answer.get("parameters") or {}
            raise RetryLater(float(parameters.get("retry_after") or 1))
        if status == 403:
            raise Blocked(description)
        if 400 <= status < 500:
            raise Permanent(description)
        raise Transient(description)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
