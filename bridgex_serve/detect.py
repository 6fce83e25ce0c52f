"""Source-language detection: the one lingua detector, shared with evaluation (`bridgex_index.detect`)."""

from bridgex_index.detect import make_detector

__all__ = ["make_detector"]
