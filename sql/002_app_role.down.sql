DO $$
DECLARE
  app_user text := coalesce(nullif(current_setting('runner.app_user', true), ''), 'claude_app');
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app_user) THEN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), app_user);
    EXECUTE format('DROP OWNED BY %I', app_user);
    EXECUTE format('DROP ROLE %I', app_user);
  END IF;
END $$;
