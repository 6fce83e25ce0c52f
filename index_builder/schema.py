"""The DuckDB index schema: one place for table definitions, shared by the builder and the proxy.

Torch-free and I/O-free: only SQL text and constants. `docs/schema.md` documents every column.
"""

SCHEMA_VERSION = 1

TABLES: dict[str, str] = {
    # Key/value provenance: schema_version, created_at, package_version, model, model_config_hash,
    # dtype, device, and `parameters` (JSON of every build parameter).
    "provenance": """
        CREATE TABLE provenance (
            key VARCHAR PRIMARY KEY,
            value VARCHAR NOT NULL
        )""",
    "languages": """
        CREATE TABLE languages (
            code VARCHAR PRIMARY KEY,          -- ISO 639-1
            prompt_name VARCHAR NOT NULL,      -- name used in probe and serving prompts
            english_name VARCHAR NOT NULL,
            low_resource BOOLEAN NOT NULL,
            n_tokens BIGINT NOT NULL,          -- word-span tokens seen in probes
            n_neurons INTEGER NOT NULL         -- |N_a|
        )""",
    "language_neurons": """
        CREATE TABLE language_neurons (
            language VARCHAR NOT NULL,
            layer INTEGER NOT NULL,
            neuron INTEGER NOT NULL,
            probability DOUBLE NOT NULL        -- p_a(layer, neuron)
        )""",
    "language_similarity": """
        CREATE TABLE language_similarity (
            lang_a VARCHAR NOT NULL,           -- lang_a < lang_b
            lang_b VARCHAR NOT NULL,
            n_overlap INTEGER NOT NULL,        -- |O_ab|
            jaccard DOUBLE NOT NULL,
            similarity DOUBLE                  -- cosine of p_a, p_b on O_ab; NULL when O_ab is empty
        )""",
    "overlap_layers": """
        CREATE TABLE overlap_layers (
            lang_a VARCHAR NOT NULL,
            lang_b VARCHAR NOT NULL,
            layer INTEGER NOT NULL,
            n_overlap INTEGER NOT NULL
        )""",
    "layer_hsic": """
        CREATE TABLE layer_hsic (
            source VARCHAR NOT NULL,           -- source < target (scores are symmetric in the pair)
            target VARCHAR NOT NULL,
            bridge VARCHAR NOT NULL,
            layer INTEGER NOT NULL,
            n_overlap INTEGER NOT NULL,        -- n1: rows of X (O_st in this layer)
            n_bridge INTEGER NOT NULL,         -- n2: rows of Y (S_c in this layer)
            score DOUBLE NOT NULL,             -- (mean_i max_j + mean_j max_i) / 2
            in_band BOOLEAN NOT NULL           -- layer inside the middle band
        )""",
    "bridges": """
        CREATE TABLE bridges (
            source VARCHAR NOT NULL,           -- both orders are stored
            target VARCHAR NOT NULL,
            bridge VARCHAR NOT NULL,
            score DOUBLE NOT NULL,
            probability DOUBLE NOT NULL,       -- softmax over candidates of z(score) / temperature
            rank INTEGER NOT NULL              -- 1 = best
        )""",
    "dictionary_entries": """
        CREATE TABLE dictionary_entries (
            source VARCHAR NOT NULL,
            target VARCHAR NOT NULL,
            source_word VARCHAR NOT NULL,
            target_word VARCHAR NOT NULL,
            concept VARCHAR,                   -- alignment key across languages (CLDR), NULL for MUSE
            category VARCHAR,                  -- e.g. CLDR 'territory', 'unit', 'month'; NULL for MUSE
            split VARCHAR NOT NULL             -- 'probe' or 'test'
        )""",
}

REQUIRED_TABLES = tuple(TABLES)
