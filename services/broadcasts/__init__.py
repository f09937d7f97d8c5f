"""Announcements to many families: planning, chunks with leases, the delivery engine."""
