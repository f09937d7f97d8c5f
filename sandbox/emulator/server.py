"""The emulator itself: :class:`BotApiEmulator` wires the parts together and serves them.

It owns the shared state (:class:`~sandbox.emulator.state.World`, the
:class:`~sandbox.emulator.updates.UpdateQueue`), the rate limiter, fault rules and
call statistics, and the collaborators that act on them: the Bot API
(:class:`~sandbox.emulator.bot_api.BotApi`), the webhook pusher, the user simulator
and the control API. It runs one aiohttp application with all their routes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from sandbox.emulator.bot_api import BotApi
from sandbox.emulator.control import ControlApi
from sandbox.emulator.limits import FaultInjector, RateLimiter, RateLimits
from sandbox.emulator.protocol import Params
from sandbox.emulator.records import CallStats
from sandbox.emulator.state import World
from sandbox.emulator.updates import UpdateQueue, WebhookPusher
from sandbox.emulator.users import UserSimulator

BOT_FIRST_NAME = "Bansos Bot"


class BotApiEmulator:
    """A fake Telegram Bot API server for exactly one bot, with a control API."""

    def __init__(
        self,
        token: str,
        bot_username: str = "bansos_test_bot",
        *,
        bot_first_name: str = BOT_FIRST_NAME,
        rate_limits: bool = True,
        global_rate: float | None = 30.0,
        global_burst: float = 30.0,
        per_chat_rate: float | None = 3.0,
        per_chat_burst: float = 50.0,
        max_long_poll: float = 50.0,
        event_log: bool = True,
        webhook_timeout: float = 10.0,
    ) -> None:
        bot_id, sep, secret = token.partition(":")
        if not (bot_id.isdigit() and sep and secret):
            raise ValueError("token must look like '123456:ABC-DEF...'")
        self.token = token
        self.bot_id = int(bot_id)
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.base_url: str | None = None
        self.limiter = RateLimiter(
            RateLimits(rate_limits, global_rate, global_burst, per_chat_rate, per_chat_burst)
        )
        self.faults = FaultInjector()
        self.stats = CallStats()
        self.world = World(self.bot_id, bot_username, bot_first_name)
        self.updates = UpdateQueue()
        self.pusher = WebhookPusher(self.updates, self.call, webhook_timeout)
        self.api = BotApi(
            token,
            self.world,
            self.updates,
            self.pusher,
            self.limiter,
            self.faults,
            self.stats,
            max_long_poll=max_long_poll,
            event_log=event_log,
        )
        self.simulator = UserSimulator(self.world, self.updates)
        self.control = ControlApi(self)
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        """Create the aiohttp application with the Bot API and control routes."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self.api.handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self.api.handle_file)
        for method, path, handler in self.control.routes():
            app.router.add_route(method, path, handler)
        return app

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (an ephemeral port when 0) and return the base URL."""
        self.updates.closing = False
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.base_url = f"http://{url_host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Wake long polls, stop webhook delivery and shut the server down."""
        self.updates.close()
        await self.pusher.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BotApiEmulator:
        """Start on an ephemeral port."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the server."""
        await self.stop()

    def reset(self) -> None:
        """Forget users, chats, updates, files, commands, events and the webhook."""
        if self.pusher.hook is not None:
            self.pusher.stop()
        self.world.reset()
        self.updates.reset()
        self.api.events.clear()
        self.limiter.configure()
        self.faults.rules.clear()
        self.stats.reset()
        self.updates.notify()
        self.world.publish({"type": "reset"})

    # ----------------------------------------------------------------- in-process use

    async def call(self, method: str, params: Params) -> tuple[int, dict[str, Any]]:
        """Execute one Bot API method and return (HTTP status, response body)."""
        return await self.api.call(method, params)

    def bot_user(self) -> dict[str, Any]:
        """Return the bot's ``User`` object as it appears in messages."""
        return self.world.bot_user()

    def subscribe(self, chat_id: int | None = None) -> asyncio.Queue[dict[str, Any]]:
        """Return a queue that receives chat events as they happen (one chat, or all).

        Events are dicts with a ``type``: ``message`` (a message was sent, edited or
        deleted, by the bot or the user: ``chat_id``, ``message`` as in the chat view,
        the chat's current ``reply_keyboard``), ``callback_answer`` (``chat_id``,
        ``answer``), ``commands`` (setMyCommands/deleteMyCommands) and ``reset``; each
        carries the ``seq`` of the change. The queue is unbounded: call
        :meth:`unsubscribe` when done.
        """
        return self.world.subscribe(chat_id)

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop feeding a queue returned by :meth:`subscribe`."""
        self.world.unsubscribe(queue)
