-- NanoMDM's current PostgreSQL schema keeps the unlock token as BYTEA, its raw
-- bytes.  Databases made from our version 1 (an older NanoMDM schema) hold it as
-- TEXT with base64 in it: convert those, decoding what is there.  A NanoMDM
-- database is BYTEA already and stays as it is.  (One line: the DO body holds
-- semicolons, and statements end at a semicolon ending a line.)
DO $$ BEGIN IF (SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'devices' AND column_name = 'unlock_token') = 'text' THEN ALTER TABLE devices ALTER COLUMN unlock_token TYPE BYTEA USING decode(unlock_token, 'base64'); END IF; END $$;
