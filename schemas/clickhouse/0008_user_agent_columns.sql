-- The user agent as typed columns (processors/user_agents.py: ua-parser's uap-core rules): from
-- context.userAgent when the event has one (analytics.js, server-side relays), else the request's
-- User-Agent header. Empty when unknown; ua_is_bot for what uap-core files as crawlers.
ALTER TABLE events ADD COLUMN IF NOT EXISTS ua_browser LowCardinality(String) AFTER user_agent;
ALTER TABLE events ADD COLUMN IF NOT EXISTS ua_browser_version LowCardinality(String) AFTER ua_browser;
ALTER TABLE events ADD COLUMN IF NOT EXISTS ua_os LowCardinality(String) AFTER ua_browser_version;
ALTER TABLE events ADD COLUMN IF NOT EXISTS ua_os_version LowCardinality(String) AFTER ua_os;
ALTER TABLE events ADD COLUMN IF NOT EXISTS ua_device LowCardinality(String) AFTER ua_os_version;
ALTER TABLE events ADD COLUMN IF NOT EXISTS ua_is_bot Bool AFTER ua_device;
