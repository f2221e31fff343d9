"""Only what pyproject.toml cannot say: sql/ stays at the top of the repository (reviewed
as SQL, one folder per store) and ships inside the wheel as the package data of
``gateway.sql``, so `pip install .` then `iotsphere migrate` works without the source tree.
Everything else about the build is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["gateway*", "resolvers*"]), "gateway.sql"],
    package_dir={"gateway.sql": "sql"},
)
