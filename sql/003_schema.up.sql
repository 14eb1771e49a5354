-- Schema claude_data, owned by the application role, with the helper functions of the runbook.
DO $$
DECLARE
  app_user text := coalesce(nullif(current_setting('runner.app_user', true), ''), 'claude_app');
BEGIN
  EXECUTE format('CREATE SCHEMA IF NOT EXISTS claude_data AUTHORIZATION %I', app_user);
  EXECUTE format('GRANT USAGE, CREATE ON SCHEMA claude_data TO %I', app_user);
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA claude_data GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', app_user);
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA claude_data GRANT USAGE, SELECT ON SEQUENCES TO %I', app_user);
END $$;

-- Symmetric encryption of sensitive values (pgcrypto), base64 text in and out.
CREATE OR REPLACE FUNCTION claude_data.encrypt_sensitive(plain text, passphrase text)
RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT encode(public.pgp_sym_encrypt(plain, passphrase, 'cipher-algo=aes256'), 'base64')
$$;

CREATE OR REPLACE FUNCTION claude_data.decrypt_sensitive(cipher text, passphrase text)
RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT public.pgp_sym_decrypt(decode(cipher, 'base64'), passphrase)
$$;

-- Keeps updated_at current on every UPDATE.
CREATE OR REPLACE FUNCTION claude_data.update_updated_at_column()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;
