-- Indexes for pruning history (the retention= storage option): the oldest
-- answers, and the oldest cleared queue rows, found without reading the
-- rest of a table of millions.  InnoDB appends the primary key (id,
-- command_uuid) to each, so the pruning reads no table row.  Indexes only:
-- NanoMDM's own statements keep working on this schema.
ALTER TABLE command_results
    ADD INDEX idx_results_updated_at (updated_at, status);

ALTER TABLE enrollment_queue
    ADD INDEX idx_queue_cleared (active, updated_at);
