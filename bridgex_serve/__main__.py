"""`python -m bridgex_serve`: the `bridgex-serve` command (how `bridgex-index eval` starts a child server)."""

from .cli import main

main()
