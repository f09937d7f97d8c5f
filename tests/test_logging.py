"""LOG_FORMAT=json: one JSON object per log line, for log collectors."""

from __future__ import annotations

import json
import logging

import pytest

from bot.runtime import configure_logging


def test_json_log_lines(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setenv("LOG_FORMAT", "json")
    try:
        configure_logging()
        logging.getLogger("bansos.broadcast").info("broadcast %s done", 7)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("bansos.worker").exception("tick failed")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "broadcast 7 done" and lines[0]["logger"] == "bansos.broadcast"
    assert lines[0]["level"] == "INFO" and lines[0]["time"].endswith("+00:00")
    assert lines[1]["error"] == "ValueError" and "Traceback" in lines[1]["traceback"]
