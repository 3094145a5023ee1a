"""Accounts: passwords, tokens, sessions."""
