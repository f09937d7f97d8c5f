"""Plumbing every room shares: settings, the database, key-value store, rate limits, metrics.

Imports nothing from `tg`, `services` or `bot`; never imports aiogram.
"""
