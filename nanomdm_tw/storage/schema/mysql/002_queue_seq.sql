-- Our one addition to NanoMDM's schema: enrollment_queue.seq, the enqueue
-- order.  created_at has one-second resolution, so commands queued within
-- the same second would otherwise come back in command UUID order.  The
-- column fills itself (AUTO_INCREMENT), so NanoMDM's INSERTs, which do not
-- name it, keep working; its next-command query ignores it.
ALTER TABLE enrollment_queue
    ADD COLUMN seq BIGINT NOT NULL AUTO_INCREMENT UNIQUE,
    ADD INDEX idx_queue_next (id, active, priority DESC, created_at, seq);
