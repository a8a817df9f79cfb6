"""AAHR: ambiguity-aware and high-order relation learning for image-text matching, as a workflow."""

__version__ = "0.1.0"
