"""The texts users read, rendered from services' results: one module per feature."""
