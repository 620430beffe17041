"""Speed and exactness of the engine, measured in one process (the ``bench*`` and ``check-batch`` commands).

`measure` (runs interleaved, medians, peak memory, forwards counted), `decoding` (Persona-judge
against transformers' generate, float32 against 4-bit), `batched` (requests together against one
at a time), `scoring` (the shared-prefix scorer against flat batches) and `batch_check` (requests
decoded together against alone, token for token). Functions return plain data; the command line
prints it (`cli.bench`). Numbers they produced are in docs/benchmarks.md.
"""
