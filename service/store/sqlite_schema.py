"""The SQLite schema: `MIGRATIONS[i]` takes a database from version i to i+1.

The version is PRAGMA user_version; migrations are forward-only and run in one BEGIN
IMMEDIATE transaction (`SqliteRepository._migrate`). `postgres_schema.py` holds the same
numbered steps in PostgreSQL's dialect: a change here needs its twin there.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: models, and the per-name version counter (versions are never reused).
        """CREATE TABLE models (
            id          INTEGER PRIMARY KEY,
            name        TEXT    NOT NULL,
            version     INTEGER NOT NULL CHECK (version >= 1),
            format      TEXT    NOT NULL,
            sha256      TEXT    NOT NULL CHECK (length(sha256) = 64),
            size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
            description TEXT    NOT NULL DEFAULT '',
            labels      TEXT    NOT NULL DEFAULT '{}',
            inputs      TEXT    NOT NULL,
            outputs     TEXT    NOT NULL,
            created_at  TEXT    NOT NULL,
            UNIQUE (name, version)
        )""",
        "CREATE INDEX models_sha256 ON models (sha256)",
        """CREATE TABLE model_names (
            name         TEXT PRIMARY KEY,
            last_version INTEGER NOT NULL
        )""",
    ),
    (  # 2: the compression engine. `seq` orders rows (insertion order) in every table.
        """CREATE TABLE datasets (
            seq         INTEGER PRIMARY KEY,
            name        TEXT    NOT NULL UNIQUE,
            sha256      TEXT    NOT NULL CHECK (length(sha256) = 64),
            size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
            arrays      TEXT    NOT NULL,
            num_samples INTEGER NOT NULL CHECK (num_samples >= 0),
            has_labels  INTEGER NOT NULL CHECK (has_labels IN (0, 1)),
            description TEXT    NOT NULL DEFAULT '',
            created_at  TEXT    NOT NULL
        )""",
        "CREATE INDEX datasets_sha256 ON datasets (sha256)",
        """CREATE TABLE jobs (
            seq            INTEGER PRIMARY KEY,
            id             TEXT    NOT NULL UNIQUE,
            model          TEXT    NOT NULL,
            model_version  INTEGER NOT NULL CHECK (model_version >= 1),
            recipes        TEXT    NOT NULL,
            datasets       TEXT    NOT NULL DEFAULT '{}',
            quality_budget TEXT    NOT NULL DEFAULT '{}',
            evaluation     TEXT    NOT NULL DEFAULT '{}',
            state          TEXT    NOT NULL CHECK (
                state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
            reason         TEXT    NOT NULL DEFAULT '',
            percent        REAL    NOT NULL DEFAULT 0,
            variant_ids    TEXT    NOT NULL DEFAULT '[]',
            attempts       INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            created_at     TEXT    NOT NULL,
            started_at     TEXT,
            finished_at    TEXT
        )""",
        "CREATE INDEX jobs_state ON jobs (state, seq)",
        "CREATE INDEX jobs_model ON jobs (model, seq)",
        """CREATE TABLE job_events (
            job_id   TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            sequence INTEGER NOT NULL CHECK (sequence >= 1),
            state    TEXT    NOT NULL,
            step     TEXT    NOT NULL DEFAULT '',
            percent  REAL    NOT NULL DEFAULT 0,
            message  TEXT    NOT NULL DEFAULT '',
            metrics  TEXT    NOT NULL DEFAULT '{}',
            time     TEXT    NOT NULL,
            PRIMARY KEY (job_id, sequence)
        )""",
        """CREATE TABLE variants (
            seq            INTEGER PRIMARY KEY,
            id             TEXT    NOT NULL UNIQUE,
            parent_model   TEXT    NOT NULL,
            parent_version INTEGER NOT NULL,
            job_id         TEXT    NOT NULL,
            recipe         TEXT    NOT NULL,
            format         TEXT    NOT NULL,
            sha256         TEXT    NOT NULL CHECK (length(sha256) = 64),
            size_bytes     INTEGER NOT NULL CHECK (size_bytes >= 0),
            inputs         TEXT    NOT NULL,
            outputs        TEXT    NOT NULL,
            metrics        TEXT    NOT NULL DEFAULT '{}',
            parent_metrics TEXT    NOT NULL DEFAULT '{}',
            budget_ok      INTEGER NOT NULL CHECK (budget_ok IN (0, 1)),
            budget_reason  TEXT    NOT NULL DEFAULT '',
            report         TEXT    NOT NULL DEFAULT '{}',
            created_at     TEXT    NOT NULL
        )""",
        "CREATE INDEX variants_parent ON variants (parent_model, seq)",
        "CREATE INDEX variants_sha256 ON variants (sha256)",
        "CREATE INDEX variants_job ON variants (job_id)",
    ),
    (  # 3: deployments (endpoint -> targets, weights, canary plan and status as JSON).
        """CREATE TABLE deployments (
            name       TEXT    PRIMARY KEY,
            model      TEXT    NOT NULL,
            spec       TEXT    NOT NULL,
            revision   INTEGER NOT NULL CHECK (revision >= 1),
            created_at TEXT    NOT NULL,
            updated_at TEXT    NOT NULL
        )""",
        "CREATE INDEX deployments_model ON deployments (model)",
    ),
    (  # 4: jobs are claimed by a replica (`owner`) that renews a lease (`heartbeat_at`).
        "ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN heartbeat_at TEXT",
    ),
    (  # 5: search jobs: the spec (written before the job row) and the latest result.
        """CREATE TABLE searches (
            job_id     TEXT    PRIMARY KEY,
            spec       TEXT    NOT NULL,
            result     TEXT    NOT NULL DEFAULT '{}',
            updated_at TEXT    NOT NULL
        )""",
    ),
    (  # 6: how a model is served (batching, warm-up), by model name, as JSON.
        """CREATE TABLE serving_configs (
            name       TEXT    PRIMARY KEY,
            config     TEXT    NOT NULL,
            updated_at TEXT    NOT NULL
        )""",
    ),
    (  # 7: a model exported at upload keeps its source (a Hugging Face folder) as a blob too.
        "ALTER TABLE models ADD COLUMN source_sha256 TEXT",
        "ALTER TABLE models ADD COLUMN source TEXT NOT NULL DEFAULT '{}'",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
