"""The browser pages at ``/``: sign in with an API key, scenarios, plans and what-if sessions.

Server-rendered HTML (Jinja2, autoescaped), charts as SVG drawn on the server and one small
script served from ``static/``: nothing is fetched from another site. Every page acts through
the REST routes' own functions with the signed-in key's ``Caller``, so tenants and scopes are
checked exactly as the API checks them.
"""
