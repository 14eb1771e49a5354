-- The tables the Redis migration fills with the relay's persistent data. Every row carries its
-- Redis key (source_key, unique) and the complete source value (source: a hash as an object of
-- strings, a string as text or parsed JSON, a set or list as an array), plus typed columns for
-- what is queried, and the migration run that wrote it.

-- Upstream accounts of every type; secrets stay the application's ciphertexts, copied verbatim.
CREATE TABLE claude_data.accounts (
  type          text NOT NULL CHECK (type IN ('claude', 'claude-console', 'gemini', 'gemini-api', 'openai',
                  'openai-responses', 'azure-openai', 'bedrock', 'ccr', 'droid')),
  id            text NOT NULL,
  name          text,
  description   text,
  platform      text,
  account_type  text,
  status        text,          -- free text: the relay writes created, active, temp_error, unauthorized, ...
  is_active     boolean,
  schedulable   boolean,
  priority      integer,
  created_at    timestamptz,
  last_used_at  timestamptz,
  source_key    text NOT NULL UNIQUE,
  source        jsonb NOT NULL,
  migrated_run  text,
  PRIMARY KEY (type, id)
);
CREATE INDEX idx_accounts_status ON claude_data.accounts (type, status);

CREATE TABLE claude_data.account_groups (
  id           text PRIMARY KEY,
  name         text,
  platform     text,
  description  text,
  created_at   timestamptz,
  updated_at   timestamptz,
  source_key   text NOT NULL UNIQUE,
  source       jsonb NOT NULL,
  migrated_run text
);

-- One row per group: the member set as an array (source), unnested by the view below.
CREATE TABLE claude_data.account_group_members (
  group_id     text PRIMARY KEY,
  members      jsonb NOT NULL CHECK (jsonb_typeof(members) = 'array'),
  source_key   text NOT NULL UNIQUE,
  source       jsonb NOT NULL,
  migrated_run text
);
CREATE VIEW claude_data.account_group_member_rows AS
  SELECT m.group_id, member.value AS account_id
  FROM claude_data.account_group_members m, jsonb_array_elements_text(m.members) AS member(value);

-- LDAP / user-management users (user:{id}, a JSON string).
CREATE TABLE claude_data.users (
  id            text PRIMARY KEY,
  username      text,
  email         text,
  display_name  text,
  role          text,
  is_active     boolean,
  created_at    timestamptz,
  updated_at    timestamptz,
  last_login_at timestamptz,
  source_key    text NOT NULL UNIQUE,
  source        jsonb NOT NULL,
  migrated_run  text
);
CREATE INDEX idx_users_username ON claude_data.users (username);

-- Token and request counters: totals and hourly/daily/monthly buckets, per API key, per model,
-- per key and model, global, and per account. Buckets overlap (hours sum to days): never add
-- rows of different periods together.
CREATE TABLE claude_data.usage_rollups (
  dimension      text NOT NULL CHECK (dimension IN ('api_key', 'model', 'api_key_model', 'global', 'account', 'account_model')),
  period         text NOT NULL CHECK (period IN ('all', 'month', 'day', 'hour')),
  bucket         text NOT NULL DEFAULT '',       -- the key's own label, in the relay's timezone
  period_start   timestamptz,                    -- the bucket's start in UTC (NULL for 'all')
  api_key_id     text NOT NULL DEFAULT '',
  account_id     text NOT NULL DEFAULT '',
  model          text NOT NULL DEFAULT '',
  requests       bigint,
  input_tokens   bigint,
  output_tokens  bigint,
  cache_create_tokens bigint,
  cache_read_tokens   bigint,
  all_tokens     bigint,
  ephemeral_5m_tokens bigint,
  ephemeral_1h_tokens bigint,
  long_context_input_tokens  bigint,
  long_context_output_tokens bigint,
  long_context_requests      bigint,
  rated_cost_micro bigint,
  real_cost_micro  bigint,
  source_key     text PRIMARY KEY,
  source         jsonb NOT NULL,
  migrated_run   text
);
CREATE INDEX idx_usage_rollups_key ON claude_data.usage_rollups (api_key_id, period, period_start) WHERE api_key_id <> '';
CREATE INDEX idx_usage_rollups_model ON claude_data.usage_rollups (model, period, period_start) WHERE model <> '';

-- Cost and Opus accumulators (INCRBYFLOAT strings, USD): exact decimals, float noise kept.
CREATE TABLE claude_data.cost_counters (
  metric       text NOT NULL CHECK (metric IN ('cost', 'cost_real', 'opus', 'opus_real')),
  period       text NOT NULL CHECK (period IN ('total', 'month', 'week', 'day', 'hour')),
  api_key_id   text NOT NULL,
  bucket       text NOT NULL DEFAULT '',
  amount_usd   numeric NOT NULL,
  source_key   text PRIMARY KEY,
  source       jsonb NOT NULL,
  migrated_run text
);
CREATE INDEX idx_cost_counters_key ON claude_data.cost_counters (api_key_id, metric, period);

-- JSON configuration singletons (webhook_config:default, claude_relay_config, ...).
CREATE TABLE claude_data.config_singletons (
  key          text PRIMARY KEY,
  value        jsonb NOT NULL,
  source_key   text NOT NULL UNIQUE,
  source       jsonb NOT NULL,
  migrated_run text
);

CREATE TABLE claude_data.quota_cards (
  id           text PRIMARY KEY,
  code         text,
  status       text,
  created_at   timestamptz,
  source_key   text NOT NULL UNIQUE,
  source       jsonb NOT NULL,
  migrated_run text
);

CREATE TABLE claude_data.redemptions (
  id           text PRIMARY KEY,
  card_id      text,
  api_key_id   text,
  user_id      text,
  redeemed_at  timestamptz,
  source_key   text NOT NULL UNIQUE,
  source       jsonb NOT NULL,
  migrated_run text
);

-- Migration bookkeeping: runs with their counts and checkpoint, and rejected records.
CREATE TABLE claude_data.migration_runs (
  run_id       text PRIMARY KEY,
  mode         text NOT NULL CHECK (mode IN ('full', 'incremental')),
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  status       text NOT NULL DEFAULT 'running',
  checkpoint   jsonb,
  counts       jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE claude_data.migration_rejects (
  run_id       text NOT NULL,
  source_key   text NOT NULL,
  entity       text,
  reason       text NOT NULL,
  rejected_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, source_key)
);

DO $$
DECLARE
  app_user text := coalesce(nullif(current_setting('runner.app_user', true), ''), 'claude_app');
BEGIN
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA claude_data TO %I', app_user);
END $$;
