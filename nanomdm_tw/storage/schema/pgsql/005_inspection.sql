-- Indexes for the inspection API (GET/POST /v1/enrollments, /v1/queue, /v1/commands):
-- enrollments by user short name and by enabled, in ID order; the enrollment
-- counts over (type, enabled); a command's deliveries in enrollment ID order,
-- an index that also covers the count of pending entries (with active).
-- Extra indexes only: NanoMDM's own statements keep working on this schema.
CREATE INDEX IF NOT EXISTS idx_users_user_short_name ON users (user_short_name);

CREATE INDEX IF NOT EXISTS idx_enrollments_enabled ON enrollments (enabled, id);

CREATE INDEX IF NOT EXISTS idx_enrollments_type_enabled ON enrollments (type, enabled);

CREATE INDEX IF NOT EXISTS idx_enrollment_queue_command_uuid_id
    ON enrollment_queue (command_uuid, id);
