"""Updates on their way to the bot: the queue getUpdates reads and the webhook pusher.

:class:`UpdateQueue` numbers updates like Telegram, keeps them until the bot confirms
them (a getUpdates offset or a successful webhook delivery) and owns the signal that
wakes long polls, the pusher and ``/control/wait``. :class:`WebhookPusher` POSTs the
queued updates, in order and one at a time, to the URL set with setWebhook, retrying
with backoff, and runs a Bot API method the bot answers a delivery with.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import MultipartReader, hdrs

from sandbox.emulator.protocol import Params, read_multipart
from sandbox.emulator.records import ChangeSignal, QueuedUpdate, Webhook

WEBHOOK_BACKOFF = (0.05, 2.0)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

Dispatch = Callable[[str, Params], Awaitable[tuple[int, dict[str, Any]]]]


class UpdateQueue:
    """Pending updates, the ids handed out so far and the signal for every change."""

    def __init__(self) -> None:
        self.signal = ChangeSignal()
        self.closing = False
        self.reset()

    def reset(self) -> None:
        """Forget every update and start numbering at 1 again."""
        self.pending: list[QueuedUpdate] = []
        self.issued: set[int] = set()
        self.next_update_id = 1

    def notify(self) -> None:
        """Wake everyone waiting on the queue (or on the webhook, or on shutdown)."""
        self.signal.notify()

    def close(self) -> None:
        """Mark the emulator as shutting down and wake every waiter."""
        self.closing = True
        self.signal.notify()

    async def wait_for(self, predicate: Callable[[], bool], seconds: float | None) -> bool:
        """Wait until ``predicate()`` holds or ``seconds`` pass (None: forever); return it."""
        return await self.signal.wait_for(predicate, seconds)

    def enqueue(self, payload: dict[str, Any], update_id: int | None = None) -> int:
        """Queue an update (a re-used id is delivered once more) and wake the consumers."""
        replay = update_id is not None and update_id < self.next_update_id
        if update_id is None:
            update_id = self.next_update_id
        self.next_update_id = max(self.next_update_id, update_id + 1)
        self.pending.append(QueuedUpdate({"update_id": update_id, **payload}, replay=replay))
        self.issued.add(update_id)
        self.signal.notify()
        return update_id

    def confirm_offset(self, offset: int) -> None:
        """Drop updates confirmed by ``offset`` (replays only once they were delivered)."""
        if offset == 0:
            return
        if offset < 0:
            kept = self.pending[offset:]
        else:
            kept = [
                entry
                for entry in self.pending
                if entry.update_id >= offset or (entry.replay and not entry.delivered)
            ]
        if len(kept) != len(self.pending):
            self.pending = kept
            self.signal.notify()

    def take(self, limit: int) -> list[dict[str, Any]]:
        """Return (copies of) the first ``limit`` pending updates, marking them delivered."""
        batch = self.pending[:limit]
        for entry in batch:
            entry.delivered = True
        return [copy.deepcopy(entry.update) for entry in batch]

    def remove(self, entry: QueuedUpdate) -> None:
        """Drop one delivered update (the webhook accepted it)."""
        self.pending = [queued for queued in self.pending if queued is not entry]
        self.signal.notify()

    def is_confirmed(self, update_id: int) -> bool:
        """Say whether no copy of ``update_id`` is still waiting for confirmation."""
        return all(entry.update_id != update_id for entry in self.pending)

    def drop_pending(self) -> None:
        """Forget every pending update (drop_pending_updates)."""
        self.pending = []
        self.signal.notify()


class WebhookPusher:
    """Delivers the queue to the registered webhook; ``dispatch`` runs reply methods."""

    def __init__(self, updates: UpdateQueue, dispatch: Dispatch, timeout: float) -> None:
        self.updates = updates
        self.dispatch = dispatch
        self.timeout = timeout
        self.hook: Webhook | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    def start(self, hook: Webhook) -> None:
        """Register ``hook`` and start delivering to it."""
        self.hook = hook
        hook.task = asyncio.get_running_loop().create_task(self._loop(hook))
        self._tasks.add(hook.task)
        hook.task.add_done_callback(self._tasks.discard)
        self.updates.notify()

    def stop(self) -> None:
        """Remove the webhook and cancel its delivery task."""
        hook, self.hook = self.hook, None
        if hook is not None and hook.task is not None and hook.task is not asyncio.current_task():
            hook.task.cancel()
        self.updates.notify()

    async def close(self) -> None:
        """Stop delivering, wait for the delivery tasks and close the HTTP session."""
        self.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _http_session(self) -> aiohttp.ClientSession:
        """Return the client session used for webhook deliveries."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._http

    async def _loop(self, hook: Webhook) -> None:
        """Deliver queued updates to the webhook one at a time, in order, retrying failures."""
        updates = self.updates
        backoff = WEBHOOK_BACKOFF[0]
        while True:
            await updates.wait_for(
                lambda: bool(updates.pending) or self.hook is not hook or updates.closing, None
            )
            if self.hook is not hook or updates.closing:
                return
            entry = updates.pending[0]
            error = await self._deliver(hook, entry)
            if error is None:
                updates.remove(entry)
                backoff = WEBHOOK_BACKOFF[0]
                continue
            hook.last_error_date = int(time.time())
            hook.last_error_message = error
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, WEBHOOK_BACKOFF[1])

    async def _deliver(self, hook: Webhook, entry: QueuedUpdate) -> str | None:
        """POST one update to the webhook and run a method returned in the reply."""
        headers = {hdrs.CONTENT_TYPE: "application/json"}
        if hook.secret_token:
            headers[SECRET_HEADER] = hook.secret_token
        entry.delivered = True
        try:
            async with self._http_session().post(
                hook.url, data=json.dumps(entry.update), headers=headers
            ) as response:
                if not 200 <= response.status < 300:
                    return f"Wrong response from the webhook: {response.status} {response.reason}"
                reply = await self._reply(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"Connection failed: {exc.__class__.__name__}: {exc}"
        if reply is not None:
            await self.dispatch(*reply)
        return None

    @staticmethod
    async def _reply(response: aiohttp.ClientResponse) -> tuple[str, Params] | None:
        """Return the Bot API call a webhook answered with (JSON or multipart), if any."""
        if response.content_type == "application/json":
            try:
                values = await response.json()
            except ValueError:
                return None
        elif response.content_type.startswith("multipart/"):
            values = await read_multipart(MultipartReader(response.headers, response.content))
        else:
            return None
        if not isinstance(values, dict) or not isinstance(values.get("method"), str):
            return None
        method = values.pop("method")
        return method, Params(values)
