"""The build: dictionaries and probes → model capture → language neurons → HSIC → ranked bridges → the index
file (`pipeline.build_index`; `config`, `pair_scores`, `tables` hold its parts; written through
`bridgex_index.store`). Modules needing torch import it."""
