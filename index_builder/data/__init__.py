"""Data files installed with the package: the shipped parallel sentence set under `sentences/` and the
shipped MUSE word test set under `words/` (both from Django's catalogs, `scripts/make_sentence_set.py`)."""
