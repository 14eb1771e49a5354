-- The rows a migration run overwrote, as they were, so that its rollback can put them back
-- (the rows it inserted carry its run id in migrated_run and are simply removed).
CREATE TABLE claude_data.migration_undo (
  run_id      text NOT NULL,
  table_name  text NOT NULL,
  source_key  text NOT NULL,
  previous    jsonb NOT NULL,
  PRIMARY KEY (run_id, table_name, source_key)
);
