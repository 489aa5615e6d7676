"""Rampart console: the Django project (settings, urls, Celery app, accounts, audit, UI)."""

from .celery import app as celery_app

__all__ = ["celery_app"]
