"""The engine: loading a model once, building prompts, and decoding with every method.

Bottom up:
  * `settings` (DecodeSettings), `personas` (the labels A-D), `loading` and `hub` (a model once),
    `prompting` (where a preference goes), `sampling` (warping and the accept/reject step as tensor
    functions), `trace` (Step, Result, Stream, and the Trace a run's decisions build);
  * `methods/`: one module per decoding method (Persona-judge and its official variant, direct
    prompting, fusion), each declaring itself once in the registry (`methods.registry.Method`);
  * the batched engine, nano-vllm's way: `job` (one request's state), `scheduler` (who runs, and
    which rows share a forward), `kv` (the KV pool) and `runner` (one forward over any rows, the
    head policy), composed by `engine.Engine.step`; `attention` (grouped attention on CPU) and
    `packing` (a float32 CPU model's linear layers in oneDNN's layout);
  * `api` (generate, streams: a lone run is a batch of one), `specs` (run specs naming a method, its
    options and its personas) and `requests` (many runs decoded together).
Nothing here prints, and nothing here knows about the app.
"""
