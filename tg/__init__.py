"""Everything Telegram: the only package that imports aiogram.

Routers (thin: read the update, call a service, render a view), FSM states, callback
data, keyboards, the texts users read (`views/`) and outbound notices (`notify/`).
"""
