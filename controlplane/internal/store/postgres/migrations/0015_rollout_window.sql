-- 0015: deploy windows (issue 15): when a rollout that a deploy window's
-- end paused resumes by itself (the next window's start), written with the
-- rollout's progress under its fence, so that a control-plane restart or a
-- replica taking the rollout over resumes it on time. Zero (NULL) for a
-- rollout paused by an operator, which waits for ResumeRollout.

ALTER TABLE rollouts ADD COLUMN window_resume_at BIGINT;
