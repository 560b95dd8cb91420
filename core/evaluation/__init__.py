"""Judging outputs: a diagram's structure read without PlantUML (analyse), the strict per-type scores
(metrics), their 95% intervals and sign tests (stats), the checklist in words (quality), the compare
report (report), and the evaluate / compare commands that run them over a checkpoint (evaluate)."""
