"""Leaderboard evaluations (lm-eval, lighteval) offline, with Open LLM Leaderboard normalization."""
