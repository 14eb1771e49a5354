DROP TABLE claude_data.migration_undo;
