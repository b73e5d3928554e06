"""Installed as ``server.js_templates`` (see setup.py): the bundle's templates and browser core,
read through ``importlib.resources`` (server/cdn/bundles.py)."""
