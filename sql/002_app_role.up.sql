-- The application's login role. Its name and password come from the sql step's settings
-- (runner.app_user, default claude_app; runner.app_password, from a secret): never a literal.
DO $$
DECLARE
  app_user text := coalesce(nullif(current_setting('runner.app_user', true), ''), 'claude_app');
  app_password text := current_setting('runner.app_password', true);
BEGIN
  IF app_password IS NULL OR app_password = '' THEN
    RAISE EXCEPTION 'runner.app_password is not set: give it in the sql step''s settings, from a secret';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app_user) THEN
    EXECUTE format('ALTER ROLE %I WITH LOGIN PASSWORD %L', app_user, app_password);
  ELSE
    EXECUTE format('CREATE ROLE %I WITH LOGIN PASSWORD %L', app_user, app_password);
  END IF;
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), app_user);
END $$;
