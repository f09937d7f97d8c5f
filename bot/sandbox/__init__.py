"""Sandbox tooling: a Telegram Bot API emulator with a control API, and its test client.

``bot.sandbox.emulator.BotApiEmulator`` serves a fake Bot API for one bot;
``bot.sandbox.client.EmulatorClient`` drives it as simulated users;
``bot.sandbox.html`` validates Telegram's HTML parse mode.
"""
