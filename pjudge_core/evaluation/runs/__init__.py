"""Batch runs: prompt files and records (`records`), resumable runs of several run specs (`batch`), seeded samples scored by fit (`compare`), and scoring split across processes (`sharding`)."""
