-- Indexes for the inspection API (GET/POST /v1/enrollments, /v1/queue, /v1/commands):
-- enrollments by user short name and by enabled; the enrollment counts over
-- (type, enabled); a command's deliveries in enrollment ID order (superseding
-- the index on command_uuid alone); the count of pending entries over the
-- active ones.
CREATE INDEX users_user_short_name ON users (user_short_name);
CREATE INDEX enrollments_enabled ON enrollments (enabled, id);
CREATE INDEX enrollments_type_enabled ON enrollments (type, enabled);
CREATE INDEX enrollment_queue_command_uuid_id ON enrollment_queue (command_uuid, id);
CREATE INDEX enrollment_queue_active ON enrollment_queue (active, id, command_uuid);
DROP INDEX enrollment_queue_command_uuid;
