"""prebake's C extension (src/prebake/native.py): two byte loops of a photo build. Optional: an install without a
C compiler goes on without it, and prebake does the same work with numpy and Pillow. Everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("prebake._native", ["src/prebake/_native.c"], optional=True)])
