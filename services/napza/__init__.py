"""Napza (drug-abuse) help requests: partners, routing, the relay chat, retention."""
