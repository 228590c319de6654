-- A group call's groupId and an alias call's previousId were stored nowhere, so those rows could not
-- answer "which account" or "which earlier identity". Empty for the other calls.
ALTER TABLE events ADD COLUMN IF NOT EXISTS group_id String AFTER user_id;
ALTER TABLE events ADD COLUMN IF NOT EXISTS previous_id String AFTER group_id;
