"""Turn a job row into calls to training/ and objects in storage."""
