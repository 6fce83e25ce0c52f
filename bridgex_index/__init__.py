"""The BridgeX index contract: the DuckDB file both halves share (schema, validation, atomic write, reads).

Torch-free and free of both halves: `index_builder` writes the file through it, `bridgex_serve` reads it
through it, and neither imports the other.
"""
