-- 0005: the public key an agent registered with (SQLite's 0005): SHA-256 of
-- its SubjectPublicKeyInfo, hex, so that a Register retried after its answer
-- was lost finds the agent it created instead of creating a second one. At
-- most one registered agent per token and key; '' for agents registered
-- before this migration.

ALTER TABLE agents ADD COLUMN public_key_sha256 TEXT NOT NULL DEFAULT '';

CREATE UNIQUE INDEX agents_registration_key ON agents (join_token_id, public_key_sha256)
    WHERE public_key_sha256 <> '' AND deregistered_at IS NULL;
