"""NeuroDigits: a reproducible pipeline for handwritten digit recognition."""

__version__ = "0.1.0"


class NeuroDigitsError(Exception):
    """A problem the user can fix (bad params, data, images or arguments); printed as one line."""
