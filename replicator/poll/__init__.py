"""The polling source: changes found by an ``updated_at``/incrementing column, deletes by
comparing keys with the target (see :mod:`replicator.poll.source`)."""
