"""Liên Thông Hub core. Knows no external system by name: adapters are plug-ins."""

__version__ = "0.1.0"
