"""Log-probabilities of responses by teacher forcing: flat batches (`logprobs`) and a prefix tree that feeds each shared run of tokens once (`prefix_tree`)."""
