"""Data files installed with the package (the shipped parallel sentence set under `sentences/`)."""
