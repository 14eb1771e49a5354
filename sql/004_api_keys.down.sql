DROP TABLE IF EXISTS claude_data.api_keys;
