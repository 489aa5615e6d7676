"""Reads the dashboard's pages need beyond rules.selectors, one module per page family.

Every function returns data (querysets, dataclasses, dicts); the HTML is built by the
templates and `dashboard.templatetags`. Nothing here writes.
"""
