"""Evaluation: batch runs over many prompts, and ways to score what they wrote.

`records` (prompt files in, batch records out), `batch` (resumable runs of several run specs),
`stats` (intervals), `logprobs` (the shared teacher-forcing scorer), `alignment` (AlignX
alignment accuracy, the app's judge capacity), `reward_model`, `pairwise` (a local LM as judge),
`report` (Markdown and plotly) and `benchmark` (speed and memory ratios). Functions return plain
data; nothing here prints.
"""
