-- Indexes for pruning history (the retention= storage option): the oldest
-- answers, and the oldest cleared queue rows, found without reading the
-- rest of a table of millions.
CREATE INDEX command_results_updated_at ON command_results (updated_at, status);
CREATE INDEX enrollment_queue_cleared ON enrollment_queue (active, updated_at);
