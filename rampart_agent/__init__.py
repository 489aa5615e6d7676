"""Rampart's on-host agent: applies signed bundles to iptables/ipset, all or nothing."""

__version__ = "0.1.0"
