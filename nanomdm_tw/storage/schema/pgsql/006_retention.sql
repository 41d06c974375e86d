-- Indexes for pruning history (the retention= storage option): the oldest
-- answers, and the oldest cleared queue rows (a partial index: pending rows
-- stay out of it), found without reading the rest of a table of millions.
-- Indexes only: NanoMDM's own statements keep working on this schema.
CREATE INDEX IF NOT EXISTS idx_command_results_updated_at
    ON command_results (updated_at, status);

CREATE INDEX IF NOT EXISTS idx_enrollment_queue_cleared
    ON enrollment_queue (updated_at) WHERE active = FALSE;
