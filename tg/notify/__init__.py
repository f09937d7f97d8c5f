"""Messages the bot sends on its own (not as a reply): one module per feature."""
