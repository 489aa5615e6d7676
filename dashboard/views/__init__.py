"""Dashboard views, one module per page family: parse the request, call one form, service
or selector, render.

HTMX requests get the partial they swap in; plain requests get the whole page, so every
page also works (slower) without JavaScript. Writes answer HTMX with 204 + HX-Trigger
events (`rules-changed`, `toast`) that the page listens for.
"""
