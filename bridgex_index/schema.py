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
            similarity DOUBLE,                 -- Pearson of p_a, p_b over all neurons (NULL: constant)
            cosine DOUBLE                      -- the authors' cosine of p_a, p_b on O_ab (NULL: empty)
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
    # Leg quality: how well the model itself translates source → target, read off the build's own forward
    # pass over the teacher-forced probes (no extra pass). Empty for generate-mode builds.
    "pair_quality": """
        CREATE TABLE pair_quality (
            source VARCHAR NOT NULL,           -- directional: the probes {source}:"w"→{target}:"gold"
            target VARCHAR NOT NULL,
            n_probes INTEGER NOT NULL,
            mean_logprob DOUBLE NOT NULL,      -- mean over probes of the gold word's mean token log-prob
            first_top1 DOUBLE NOT NULL         -- share of probes whose first gold token is the top-1
        )""",
}

# Tables every index has. `pair_quality` came later: an index written before it loads without it (its
# readers cope with its absence); the builder always writes it.
LATER_TABLES = ("pair_quality",)
REQUIRED_TABLES = tuple(t for t in TABLES if t not in LATER_TABLES)

# Optional tables written by `bridgex-index eval` (and `calibrate`) into an existing index (created IF NOT
# EXISTS when it first writes; an index without them is complete; readers cope with their absence).
# Rebuilding the index replaces the file and drops them.
OPTIONAL_TABLES: dict[str, str] = {
    # Every upstream answer of an evaluation, by request: a re-run makes no call it has made before.
    "eval_answers": """
        CREATE TABLE IF NOT EXISTS eval_answers (
            key VARCHAR PRIMARY KEY,           -- sha256 of the canonical request JSON (path and body)
            model VARCHAR NOT NULL,            -- the served model name the request named
            request VARCHAR NOT NULL,          -- the request JSON: path, body (prompt, parameters)
            response VARCHAR NOT NULL,         -- text of the first choice
            finish_reason VARCHAR,
            seconds DOUBLE,                    -- latency of the call that produced it
            created_at TIMESTAMP
        )""",
    # One row per `bridgex-index eval` invocation.
    "evaluation_runs": """
        CREATE TABLE IF NOT EXISTS evaluation_runs (
            run_id VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            model VARCHAR NOT NULL,
            endpoint VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,             -- chain | two-step
            command VARCHAR NOT NULL,          -- the command line as given
            parameters VARCHAR NOT NULL,       -- JSON of every evaluation parameter (no API key)
            upstream_calls INTEGER NOT NULL,   -- calls made (0 when every answer came from eval_answers)
            seconds DOUBLE NOT NULL,           -- wall time
            complete BOOLEAN NOT NULL          -- false: the endpoint failed; only complete cells were written
        )""",
    # BLI accuracy per complete (pair, strategy, bridge) cell of a run.
    "evaluations": """
        CREATE TABLE IF NOT EXISTS evaluations (
            run_id VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            model VARCHAR NOT NULL,
            endpoint VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,             -- chain | two-step (direct cells too: the run's mode)
            shots INTEGER NOT NULL,            -- demonstrations in every prompt of the pair
            strategy VARCHAR NOT NULL,         -- direct | english | bridgex | calibrated | all-bridges
            source VARCHAR NOT NULL,
            target VARCHAR NOT NULL,
            bridge VARCHAR,                    -- NULL for direct
            probability DOUBLE,                -- the index's selection probability of the bridge
            n INTEGER NOT NULL,                -- test words (task word) or sentences (task translate)
            hits INTEGER,                      -- P@1 hits against every gold translation (NULL: translate)
            accuracy DOUBLE,                   -- 100 * hits / n (NULL: translate)
            copies INTEGER NOT NULL,           -- bridge renderings that copied the source word or sentence
            calls INTEGER NOT NULL,            -- upstream requests the cell's answers needed
            seconds DOUBLE NOT NULL,           -- summed latency of those requests
            task VARCHAR DEFAULT 'word',       -- word | translate: what was asked (/v1/translate `task`)
            metric VARCHAR DEFAULT 'p@1',      -- p@1 (word) | chrf++ | bleu (translate), 0-100
            score DOUBLE                       -- the metric's value (p@1: = accuracy)
        )""",
    # The route the server follows per (source, target, task): a bridge only when its paired gain over
    # direct on held-out words (task word) or sentences (task translate: chrF++ / 100) was significant
    # (index_builder.evaluation.decision). One row per pair and task; re-calibrating replaces it.
    # Accuracies are fractions in [0, 1] on the same `n` words or sentences.
    "routing_decisions": """
        CREATE TABLE IF NOT EXISTS routing_decisions (
            source VARCHAR NOT NULL,
            target VARCHAR NOT NULL,
            decision VARCHAR NOT NULL,         -- 'direct' or the bridge code the server uses
            bridge VARCHAR,                    -- the candidate the numbers below describe (NULL: none tested)
            direct_accuracy DOUBLE,
            bridge_accuracy DOUBLE,
            n INTEGER,                         -- paired words or sentences (calibration half)
            gain DOUBLE,                       -- bridge_accuracy - direct_accuracy
            ci_low DOUBLE,                     -- confidence interval of the paired gain (see `test`)
            ci_high DOUBLE,
            p_value DOUBLE,                    -- Holm-adjusted one-sided p-value of the candidate
            test VARCHAR,                      -- e.g. 'mcnemar-exact-one-sided+holm; ci=newcombe-paired-95'
            candidates INTEGER,                -- bridges tested for the pair (the Holm family)
            model VARCHAR,
            endpoint VARCHAR,
            created_at TIMESTAMP,
            task VARCHAR NOT NULL DEFAULT 'word', -- word | translate: the requests the decision routes
            test_set VARCHAR,                  -- what it was measured on: '<name> sha256:<hex>' of a test
                                               -- set, or 'held-out split (<dictionaries>)'; NULL: older row
            PRIMARY KEY (source, target, task)
        )""",
    # The route policy's evidence: one route's paired gain over direct on one pair's calibration items
    # (points: P@1 × 100 for words, sentence chrF++ for sentences), written by `calibrate`.
    "route_evidence": """
        CREATE TABLE IF NOT EXISTS route_evidence (
            source VARCHAR NOT NULL,
            target VARCHAR NOT NULL,
            task VARCHAR NOT NULL,             -- word | translate
            route VARCHAR NOT NULL,            -- the bridge measured against direct
            n INTEGER NOT NULL,                -- paired items
            gain DOUBLE NOT NULL,              -- mean paired difference, points
            se DOUBLE NOT NULL,                -- its standard error, points
            test_set VARCHAR,                  -- what it was measured on (as routing_decisions.test_set)
            model VARCHAR,
            created_at TIMESTAMP,
            PRIMARY KEY (source, target, task, route)
        )""",
    # The route the policy gives every ordered pair of the index's languages and task
    # (index_builder.evaluation.route_policy): from the pair's own evidence pooled with the others', or
    # from the prior alone. Rewritten whole for a task by every `calibrate` of that task.
    "route_policy": """
        CREATE TABLE IF NOT EXISTS route_policy (
            source VARCHAR NOT NULL,
            target VARCHAR NOT NULL,
            task VARCHAR NOT NULL,             -- word | translate
            route VARCHAR NOT NULL,            -- 'direct' or a bridge code
            origin VARCHAR NOT NULL,           -- evidence | prior
            expected_gain DOUBLE NOT NULL,     -- of the route over direct, points (0 for direct)
            sd DOUBLE NOT NULL,
            p_gain DOUBLE NOT NULL,            -- P(gain > 0)
            p_loss DOUBLE NOT NULL,            -- P(gain < -margin)
            n INTEGER NOT NULL,                -- items of the pair's own evidence (0: the prior alone)
            best VARCHAR,                      -- the best-believed candidate, chosen or not
            best_gain DOUBLE,                  -- its expected gain
            created_at TIMESTAMP,
            PRIMARY KEY (source, target, task)
        )""",
    # Distilled demonstrations (`bridgex-index distill`): per pair and task, the (source, target) examples a
    # bridged route made offline from source-side text; the server's `distilled` mode puts them, in
    # `position` order, in front of ONE direct call. Re-distilling a pair and task replaces its rows.
    "distilled_demonstrations": """
        CREATE TABLE IF NOT EXISTS distilled_demonstrations (
            source VARCHAR NOT NULL,
            target VARCHAR NOT NULL,
            task VARCHAR NOT NULL,             -- word | translate
            position INTEGER NOT NULL,         -- 0-based order in the prompt
            source_text VARCHAR NOT NULL,
            target_text VARCHAR NOT NULL,      -- the bridged route's answer (never a reference)
            route VARCHAR NOT NULL,            -- the bridge that made it (e.g. 'en')
            model VARCHAR NOT NULL,            -- the served model that answered
            text_source VARCHAR NOT NULL,      -- where the source text came from (set name, sha256, line)
            created_at TIMESTAMP,
            PRIMARY KEY (source, target, task, position)
        )""",
    # The fitted prior of each task (JSON: features, coefficients, tau², lambda), for `route --explain`.
    "route_policy_models": """
        CREATE TABLE IF NOT EXISTS route_policy_models (
            task VARCHAR PRIMARY KEY,
            model VARCHAR NOT NULL,
            created_at TIMESTAMP
        )""",
}

# What brings an older index's optional tables up to the definitions above, run after them on every write
# (each statement is idempotent): evaluation rows from before `task`/`metric`/`score` are word P@1 rows.
OPTIONAL_MIGRATIONS: tuple[str, ...] = (
    "ALTER TABLE evaluations ALTER COLUMN hits DROP NOT NULL",
    "ALTER TABLE evaluations ALTER COLUMN accuracy DROP NOT NULL",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS task VARCHAR DEFAULT 'word'",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS metric VARCHAR DEFAULT 'p@1'",
    "ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS score DOUBLE",
    "UPDATE evaluations SET score = accuracy WHERE score IS NULL AND metric = 'p@1'",
)
