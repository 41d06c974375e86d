-- Indexes for the inspection API (GET/POST /v1/enrollments, /v1/queue, /v1/commands):
-- enrollments by user short name and by enabled (InnoDB appends the primary key,
-- so each walks in ID order), and the enrollment counts over (type, enabled).
-- A command's deliveries use the foreign key's index on command_uuid, which
-- InnoDB orders by the enrollment ID after it.  Extra indexes only: NanoMDM's
-- own statements keep working on this schema.
ALTER TABLE users
    ADD INDEX idx_user_short_name (user_short_name);

ALTER TABLE enrollments
    ADD INDEX idx_enabled (enabled),
    ADD INDEX idx_type_enabled (type, enabled);
