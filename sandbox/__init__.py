"""Sandbox tooling: a Telegram Bot API emulator with a control API, and its test client.

``sandbox.emulator.BotApiEmulator`` serves a fake Bot API for one bot;
``sandbox.client.EmulatorClient`` drives it as simulated users;
``sandbox.html`` validates Telegram's HTML parse mode.
"""
