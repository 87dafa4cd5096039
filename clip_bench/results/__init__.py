"""Result rows and their identity, per-sample outcomes, and the tables and leaderboard built from rows."""
