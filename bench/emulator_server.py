"""Serve the Bot API emulator in its own process (so benchmarks do not share a core).

    .venv/bin/python -m bench.emulator_server --port 18090 [--global-rate 1000]
        [--no-limits] [--no-event-log]

Prints `ready <base url>` once listening; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from sandbox.emulator import BotApiEmulator

TOKEN = "123456:BENCH-token"


async def serve(args: argparse.Namespace) -> None:
    emulator = BotApiEmulator(
        token=TOKEN,
        rate_limits=not args.no_limits,
        global_rate=args.global_rate,
        global_burst=args.global_burst,
        per_chat_rate=None,
        max_long_poll=args.max_long_poll,
        event_log=not args.no_event_log,
    )
    url = await emulator.start(args.host, args.port)
    print(f"ready {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--global-rate", type=float, default=1000.0)
    parser.add_argument("--global-burst", type=float, default=30.0)
    parser.add_argument("--max-long-poll", type=float, default=50.0)
    parser.add_argument("--no-limits", action="store_true")
    parser.add_argument(
        "--no-event-log", action="store_true", help="no per-call log (only /control/stats)"
    )
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
