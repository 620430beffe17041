"""Evaluation: batch runs over many prompts, and ways to score what they wrote.

`records` (prompt files in, batch records out), `batch` (resumable runs of several run specs),
`stats` (intervals), `logprobs` (the shared teacher-forcing scorers: summed, per token, and with
a shared prefix), `alignment` (AlignX alignment accuracy, the app's judge capacity), `fit`
(persona fit of an answer: the model's per-token implicit reward under each persona), `compare`
(seeded samples of several run specs scored by fit), `inference` (which persona a user's pairs
reveal), `sharding` (those scorers split across processes, resumable), `reward_model`,
`pairwise` (a local LM as judge), `meters` (reading grade, words, VADER sentiment: no model) and
`meter_eval` (`eval meters` and their validity), `wins` (win rates against a baseline) and
`table2` (the paper's layout), `report` and `fit_report` (Markdown and plotly) and `benchmark`
(speed and memory ratios). Functions return plain data; nothing here prints.
"""
