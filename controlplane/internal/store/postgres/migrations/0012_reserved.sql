-- Placeholder (uncommitted): 0012 is reserved for the notifications branch.
SELECT 1;
