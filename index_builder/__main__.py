"""`python -m index_builder` (also under `torchrun`) runs the `bridgex-index` CLI."""

from .cli import main

main()
