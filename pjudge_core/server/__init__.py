"""Persona-judge behind OpenAI's chat-completions API (`python -m pjudge_core serve`).

`protocol` reads a request body into the library's objects and writes answers and stream chunks
back in OpenAI's shapes (pure functions); `app` is the FastAPI app over one started engine. The
server is a layer beside the command line and the app's UI helpers: it uses the app's public
limits (`ui.access`), and the command line starts it.
"""
