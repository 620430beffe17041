"""The engine: loading a model once, building prompts, and decoding with every method.

Modules, bottom up: `settings` (DecodeSettings), `loading`, `prompting`, `sampling` (warping and
the accept/reject step as tensor functions), `caches` (one KV cache per prompt), `trace` (Step,
Result, Stream), the decoders `persona_judge`, `direct` and `fusion`, `methods` (one API over
them), `specs` (run specs naming a method, its options and its personas) and `reference` (slow
decoders that check the fast ones). Nothing here prints, and nothing here knows about the app.
"""
