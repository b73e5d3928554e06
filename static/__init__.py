"""Installed as ``server.static`` (see setup.py): the web app's CSS, JS and icons."""
