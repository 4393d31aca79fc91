-- Placeholder on branch bk-cp for the migration 0009 another branch adds;
-- delete this file when merging (0011_backups.sql follows it).
SELECT 1;
