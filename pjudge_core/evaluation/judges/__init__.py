"""Outside judges: reward models (`reward_model`) and a local model comparing two answers (`pairwise`)."""
