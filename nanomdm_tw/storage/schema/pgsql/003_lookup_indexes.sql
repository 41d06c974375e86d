-- Indexes for the lookups NanoMDM's PostgreSQL schema leaves to a Seq Scan
-- (MySQL has them already: InnoDB indexes every foreign key).  Without them
-- the cost of a request grows with the tables: a device's user channels
-- (Authenticate, CheckOut), whether a command is still referenced (delete=1,
-- and the ON DELETE CASCADE of a collected command), certificate hashes.
-- Extra indexes only: NanoMDM's own statements keep working on this schema.
CREATE INDEX IF NOT EXISTS idx_enrollments_device_id ON enrollments (device_id);

CREATE INDEX IF NOT EXISTS idx_enrollment_queue_command_uuid
    ON enrollment_queue (command_uuid);

CREATE INDEX IF NOT EXISTS idx_command_results_command_uuid
    ON command_results (command_uuid);

CREATE INDEX IF NOT EXISTS idx_sha256 ON cert_auth_associations (sha256);
