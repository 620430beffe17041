"""The engine: loading a model once, building prompts, and decoding with every method.

Modules, bottom up: `settings` (DecodeSettings), `loading`, `prompting`, `sampling` (warping and
the accept/reject step as tensor functions), `trace` (Step, Result, Stream), `kv` (the KV pool:
every row's keys and values, and one forward over any rows), `scheduler` (which rows share a
forward), `engine` (requests decoding together, one step at a time), the decoders
`persona_judge`, `direct` and `fusion` (generators that yield where they need logits), `methods`
(one API over them; a lone run is a batch of one), `specs` (run specs naming a method, its options
and its personas), `requests` (many runs decoded together) and `reference` (slow decoders that
check the fast ones). Nothing here prints, and nothing here knows about the app.
"""
