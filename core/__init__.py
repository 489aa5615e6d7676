"""The platform layer: audit log, accounts and roles, API plumbing, bulk rows.

It imports no domain code (rules, agents, dashboard); the domain builds on it.
"""
