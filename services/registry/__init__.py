"""The registry as a family meets it: linking an account, activation codes, aid status."""
