"""The thin HTTP API: validate, write the job row, commit, enqueue by task name."""
