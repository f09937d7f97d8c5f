"""`bansos-bot` / `python -m bot`: the command line."""

from bot.cli import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
