"""Only the package list lives here; everything else is in pyproject.toml.

js_templates/ and static/ sit at the top of the repository (DESIGN.md) but ship inside the
wheel as the packages ``server.js_templates`` and ``server.static``, so an installed server
finds them with ``importlib.resources`` wherever it is installed. pyproject.toml cannot add
mapped folders to a package search, hence this file. Their subfolders are listed as packages
too (``server.js_templates.core``, ``server.static.vendor.swagger-ui``, …): setuptools packages
a data file only with a package of its own folder, and warns about each folder left out.
"""

from setuptools import find_namespace_packages, setup

ASSETS = {"server.js_templates": "js_templates", "server.static": "static"}


def with_subfolders(package: str, folder: str) -> list[str]:
    return [package] + [f"{package}.{sub}" for sub in find_namespace_packages(where=folder, exclude=["*__pycache__"])]


setup(
    packages=find_namespace_packages(include=["server", "server.*"], exclude=["*.__pycache__"])
    + [p for package, folder in ASSETS.items() for p in with_subfolders(package, folder)],
    package_dir=ASSETS,
)
