-- Users, the files they own, the chunks of each file and who a file is shared with.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

-- One row per upload a user made. `seq` orders listings and pages them;
-- `id` is the opaque public file id.
CREATE TABLE files (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    owner_id       INTEGER NOT NULL REFERENCES users(id),
    file_name      TEXT NOT NULL,
    file_size      INTEGER NOT NULL,
    file_type      TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    chunk_size     INTEGER NOT NULL,
    total_chunks   INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('uploading', 'uploaded', 'failed')),
    failure_reason TEXT,
    -- The store's multipart upload while the file is uploading, NULL afterwards.
    upload_id      TEXT UNIQUE,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    completed_at   TEXT
);
CREATE INDEX files_by_owner ON files (owner_id, seq DESC);
CREATE INDEX files_by_owner_fingerprint ON files (owner_id, fingerprint);
CREATE INDEX files_by_fingerprint ON files (fingerprint, status);
CREATE INDEX files_uploading ON files (updated_at) WHERE status = 'uploading';

CREATE TABLE chunks (
    file_id     TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    size        INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'uploaded')),
    etag        TEXT,
    PRIMARY KEY (file_id, idx)
) WITHOUT ROWID;

CREATE TABLE shares (
    file_id    TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    PRIMARY KEY (file_id, user_id)
) WITHOUT ROWID;
CREATE INDEX shares_by_user ON shares (user_id, file_id);
