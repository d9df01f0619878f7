"""Pure rules: no SQL, queue, storage or HTTP library (cron, sharding, sampling plan, promotion, checks)."""
