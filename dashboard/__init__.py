"""The browser dashboard: Django templates + HTMX over the rules/agents services."""
