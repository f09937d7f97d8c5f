"""Commands that run the bot: run, webhook, worker, sandbox."""
