"""Prometheus metrics of the console (docs/metrics.md).

The fleet's state is read from the database at each scrape (collector.py), so every
gunicorn worker answers the same numbers and nothing is lost when a process restarts;
only the request latency histogram (middleware.py) is counted per process.
"""
