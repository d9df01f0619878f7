"""Operations over the ledger and the broker: the reconciler, the schedule tick, the metrics collector."""
