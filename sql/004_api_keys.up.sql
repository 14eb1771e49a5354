-- API keys, with every field the relay writes (src/services/apiKeyService.js, v1.1.156 to
-- 1.1.314). Where the published design disagreed with the real data, the real data wins:
--   permissions is a JSON array ([] = all; old plain words and comma lists are normalized),
--   binding columns are text and keep their `group:`, `api:` and `responses:` prefixes,
--   rate_limit_window is in minutes.
CREATE TABLE claude_data.api_keys (
  id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name                    text NOT NULL,
  description             text NOT NULL DEFAULT '',
  api_key_hash            text NOT NULL,
  token_limit             bigint NOT NULL DEFAULT 0,
  concurrency_limit       integer NOT NULL DEFAULT 0,
  rate_limit_window_minutes integer NOT NULL DEFAULT 0,
  rate_limit_requests     integer NOT NULL DEFAULT 0,
  rate_limit_cost         numeric(18, 6) NOT NULL DEFAULT 0,
  daily_cost_limit        numeric(18, 6) NOT NULL DEFAULT 0,
  total_cost_limit        numeric(18, 6) NOT NULL DEFAULT 0,
  weekly_opus_cost_limit  numeric(18, 6) NOT NULL DEFAULT 0,
  weekly_reset_day        smallint,
  weekly_reset_hour       smallint,
  permissions             jsonb NOT NULL DEFAULT '[]',
  is_active               boolean NOT NULL DEFAULT true,
  expiration_mode         text NOT NULL DEFAULT 'fixed',
  activation_days         integer NOT NULL DEFAULT 0,
  activation_unit         text,
  is_activated            boolean NOT NULL DEFAULT true,
  activated_at            timestamptz,
  expires_at              timestamptz,
  claude_account_id       text,
  claude_console_account_id text,
  gemini_account_id       text,
  openai_account_id       text,
  azure_openai_account_id text,
  bedrock_account_id      text,
  droid_account_id        text,
  ccr_account_id          text,
  enable_model_restriction boolean NOT NULL DEFAULT false,
  restricted_models       jsonb NOT NULL DEFAULT '[]',
  enable_client_restriction boolean NOT NULL DEFAULT false,
  allowed_clients         jsonb NOT NULL DEFAULT '[]',
  tags                    jsonb NOT NULL DEFAULT '[]',
  service_rates           jsonb NOT NULL DEFAULT '{}',
  openai_responses_payload_rules jsonb NOT NULL DEFAULT '[]',
  enable_openai_responses_codex_adaptation boolean NOT NULL DEFAULT false,
  enable_openai_responses_payload_rules boolean NOT NULL DEFAULT false,
  created_by              text,
  user_id                 text,
  user_username           text,
  icon                    text NOT NULL DEFAULT '',
  is_deleted              boolean NOT NULL DEFAULT false,
  deleted_at              timestamptz,
  deleted_by              text,
  deleted_by_type         text,
  restored_at             timestamptz,
  restored_by             text,
  restored_by_type        text,
  created_at              timestamptz NOT NULL DEFAULT now(),
  updated_at              timestamptz NOT NULL DEFAULT now(),
  last_used_at            timestamptz,
  -- The Redis key and its complete value: nothing is lost where no column fits.
  source_key              text NOT NULL,
  source                  jsonb NOT NULL,
  -- The migration run that wrote the row (for its rollback).
  migrated_run            text,
  CONSTRAINT api_keys_api_key_hash_key UNIQUE (api_key_hash),
  CONSTRAINT api_keys_source_key_key UNIQUE (source_key),
  CONSTRAINT api_keys_permissions_check CHECK (jsonb_typeof(permissions) = 'array'),
  CONSTRAINT api_keys_expiration_mode_check CHECK (expiration_mode IN ('fixed', 'activation')),
  CONSTRAINT api_keys_token_limit_check CHECK (token_limit >= 0),
  CONSTRAINT api_keys_weekly_reset_check CHECK (
    (weekly_reset_day IS NULL OR weekly_reset_day BETWEEN 1 AND 7)
    AND (weekly_reset_hour IS NULL OR weekly_reset_hour BETWEEN 0 AND 23))
);

CREATE INDEX idx_api_keys_active ON claude_data.api_keys (id) WHERE is_active;
CREATE INDEX idx_api_keys_expires_at ON claude_data.api_keys (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX idx_api_keys_created_at ON claude_data.api_keys (created_at);
CREATE INDEX idx_api_keys_permissions ON claude_data.api_keys USING gin (permissions);
CREATE INDEX idx_api_keys_tags ON claude_data.api_keys USING gin (tags);
CREATE INDEX idx_api_keys_user_id ON claude_data.api_keys (user_id) WHERE user_id IS NOT NULL;

CREATE TRIGGER update_api_keys_updated_at
  BEFORE UPDATE ON claude_data.api_keys
  FOR EACH ROW EXECUTE FUNCTION claude_data.update_updated_at_column();
