"""Commands that prepare data: db upgrade, import, demo."""
