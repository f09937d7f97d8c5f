"""bansos-bot: Telegram service bot for Indonesia's social-assistance programmes."""

__version__ = "0.1.0"
