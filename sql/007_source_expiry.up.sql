-- When each migrated key expires in Redis, read with its value (PEXPIRETIME): the relay sets
-- TTLs on most keys (API keys 365 days, daily usage 32 days, hourly 7 days), and the expiry is
-- part of the value. NULL: the key has none. The app's write-through rows (migrated_run =
-- 'app') are of keys without one. migration_undo keeps whole rows as jsonb, so it needs no
-- column.
ALTER TABLE claude_data.api_keys ADD COLUMN source_expires_at timestamptz;
ALTER TABLE claude_data.accounts ADD COLUMN source_expires_at timestamptz;
ALTER TABLE claude_data.account_groups ADD COLUMN source_expires_at timestamptz;
ALTER TABLE claude_data.account_group_members ADD COLUMN source_expires_at timestamptz;
ALTER TABLE claude_data.users ADD COLUMN source_expires_at timestamptz;
ALTER TABLE claude_data.usage_rollups ADD COLUMN source_expires_at timestamptz;
ALTER TABLE claude_data.cost_counters ADD COLUMN source_expires_at timestamptz;
ALTER TABLE claude_data.config_singletons ADD COLUMN source_expires_at timestamptz;
ALTER TABLE claude_data.quota_cards ADD COLUMN source_expires_at timestamptz;
ALTER TABLE claude_data.redemptions ADD COLUMN source_expires_at timestamptz;
