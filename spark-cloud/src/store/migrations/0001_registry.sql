-- The registry of a cluster of spark-cloud nodes: what the embedded state directory holds, in tables.
CREATE TABLE users (
    username      text PRIMARY KEY,
    id            text NOT NULL UNIQUE,
    salt          text NOT NULL,
    password_hash text NOT NULL,
    iterations    integer NOT NULL
);

-- Tokens by their SHA-256 (hex); the token itself is never stored.
CREATE TABLE tokens (
    digest     text PRIMARY KEY,
    username   text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    client     text NOT NULL,
    expires_at bigint,
    issued_at  bigint
);
CREATE INDEX tokens_by_user ON tokens (username);

-- One row per device: its RSA key (TCP), its P-256 key (UDP, with the uncompressed point for lookups), name, owner.
CREATE TABLE devices (
    id             text PRIMARY KEY,
    rsa_public_key text,
    udp_public_key text,
    udp_point      bytea UNIQUE,
    name           text,
    owner          text
);
CREATE INDEX devices_by_owner ON devices (owner, name);

-- Pending claim codes by their SHA-256.
CREATE TABLE claim_codes (
    digest     text PRIMARY KEY,
    username   text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    expires_at bigint NOT NULL
);
CREATE INDEX claim_codes_by_user ON claim_codes (username, expires_at);

-- Over-the-air updates: at most one running (no end yet) per device, whichever node started it.
CREATE TABLE flash_jobs (
    id         bigserial PRIMARY KEY,
    device     text NOT NULL,
    node       text NOT NULL,
    started_at bigint NOT NULL,
    ended_at   bigint,
    result     text
);
CREATE UNIQUE INDEX flash_jobs_one_running ON flash_jobs (device) WHERE ended_at IS NULL;

-- The server's key pairs: the current RSA key, the previous one during a migration window, the UDP P-256 key.
CREATE TABLE server_keys (
    role text PRIMARY KEY CHECK (role IN ('current', 'previous', 'udp')),
    pem  text NOT NULL
);

-- One row: the token cut-off, and a generation bumped by every rotation, retirement and cut-off change.
CREATE TABLE server_settings (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation        bigint NOT NULL DEFAULT 0,
    tokens_not_before bigint NOT NULL DEFAULT 0
);
INSERT INTO server_settings DEFAULT VALUES;
