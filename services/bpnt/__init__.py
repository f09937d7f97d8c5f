"""BPNT/Sembako food aid: e-Warongs, shopping codes, redemptions, disputes, the ledger."""
