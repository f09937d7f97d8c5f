"""Loading the ministry's CSV files: the registry, disbursements, partners and e-Warongs."""
