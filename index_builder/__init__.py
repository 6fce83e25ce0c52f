"""BridgeX index builder: language neurons, overlaps and HSIC bridge scores, written to one DuckDB file.

Importing this package is cheap and torch-free; the modules that need torch (`models`, `capture`,
`pipeline`) import it themselves.
"""

__version__ = "0.1.0"
