"""Destination manifests, one folder per destination slug; see server/catalog.py."""
