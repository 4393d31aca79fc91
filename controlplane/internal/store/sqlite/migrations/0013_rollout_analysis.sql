-- 0013: a rollout's analysis gates and bake (issue 15): the end of its
-- bake and its analysis in progress (a serialized flotilla.v1.AnalysisStatus:
-- consecutive results, next measurement, latest result of each query),
-- written with the rollout's progress under its fence, so that a restart or
-- a replica taking the rollout over goes on where it stood.

ALTER TABLE rollouts ADD COLUMN bake_until INTEGER;
ALTER TABLE rollouts ADD COLUMN analysis BLOB;
