"""Pixel2ISDF pipeline: one module per stage, run through ``python -m pipeline <stage>``."""

__version__ = "0.1.0"
