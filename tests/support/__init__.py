"""Test support shared by the suite: clocks, registry helpers, the in-process tier."""
