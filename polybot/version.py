"""polybot's version, in a module of its own so the package's modules can read it without
importing the package's public API (polybot/__init__.py), which imports them."""

__version__ = "0.1.0"
