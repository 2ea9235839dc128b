"""Named DuckDB queries over rollout logs (`thresher query RUN --named NAME`); one .sql file each."""
