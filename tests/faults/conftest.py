"""Fixtures of the fault-injection suite: one migrated database file and the console's key."""

from tests.faults.stack import console_key, fault_db

__all__ = ["console_key", "fault_db"]
