"""Only the package list lives here; everything else is in pyproject.toml.

js_templates/ and static/ sit at the top of the repository (DESIGN.md) but ship inside the
wheel as the packages ``server.js_templates`` and ``server.static``, so an installed server
finds them with ``importlib.resources`` wherever it is installed. pyproject.toml cannot add
mapped folders to a package search, hence this file.
"""

from setuptools import find_namespace_packages, setup

ASSETS = {"server.js_templates": "js_templates", "server.static": "static"}

setup(
    packages=find_namespace_packages(include=["server", "server.*"], exclude=["*.__pycache__"]) + list(ASSETS),
    package_dir=ASSETS,
)
