"""Evaluation: batch runs over many prompts, and ways to score what they wrote.

  * `scoring/`      log-probabilities by teacher forcing (flat, and the prefix tree that shares the
                    engine's head policy)
  * `self_judge/`   the model as its own judge: persona fit, persona inference, alignment accuracy
  * `judges/`       outside judges: reward models, a pairwise judge model
  * `meters/`       numbers no language model computes (reading grade, words, sentiment, loops),
                    over batch runs, and the evidence they measure what they claim
  * `runs/`         prompt files and records, resumable batch runs, seeded comparisons, sharding
  * `reports/`      win rates, the paper's Table 2 layout, Markdown and plotly reports
  * `stats`         intervals shared by all of them
Functions return plain data; nothing here prints. The engine's own benchmarks are in `bench`.
"""
