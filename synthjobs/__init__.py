"""synthjobs: train class-conditional VAEs and bulk-generate labelled synthetic data as queued jobs.

This package holds what the API and the worker share: settings, the SQL ledger of jobs and models, the
job state machine, storage, task names and the HTTP client/CLI. It imports no other project package.
"""

__version__ = "0.1.0"
