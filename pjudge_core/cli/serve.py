"""`python -m pjudge_core serve`: the OpenAI-compatible server (`server.app`), on one model.

A separate process for your machine or a GPU host (a Space runs the Gradio app, not this). It
loads the model once, warms it up, and serves ``/v1/chat/completions`` and ``/v1/models`` until
interrupted. ``--public`` applies the app's public limits on top of what the environment decides
(a Space's environment already makes them apply).
"""

from __future__ import annotations

import sys

from ..engine.requests import check_rows
from ..server import protocol
from ..server.app import MAX_BODY, build_app
from ..ui.deployment import Deployment, public_access
from ..ui.models import warm_up
from .args import add_model_arguments, add_preference_arguments, load_from_args, preferences_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible chat-completions server (docs/server.md)")
    add_model_arguments(p)
    p.add_argument("--name", default=None,
                   help="the model name clients send and answers carry (default: the model's own name; its --model "
                        "value is accepted too)")
    p.add_argument("--spec", default=None,
                   help="the run spec of requests that send none (default persona-judge)")
    add_preference_arguments(p)  # the personas of requests that send none
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="(default 8000)")
    p.add_argument("--rows", type=int, default=None,
                   help="requests decoding together (default: the hardware's, as in the app: 16 on a CPU, 48 on a GPU)")
    p.add_argument("--public", action="store_true",
                   help="apply the app's public limits (characters, new tokens, seconds per run, waiting requests)")
    p.add_argument("--max-body", type=int, default=MAX_BODY,
                   help=f"the largest request body, in bytes (default {MAX_BODY:,})")
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn  # comes with gradio

    deployment = Deployment.from_env()
    access = deployment.access
    if args.public and not access.public:
        access = public_access(deployment.hardware, listed=(args.model,))
    rows = check_rows(args.rows if args.rows is not None else access.engine_rows)
    defaults = _defaults(args)  # checked before the slow load
    lm = load_from_args(args)
    warm_up(lm)
    app = build_app(lm, names=(args.name or lm.name, args.model), rows=rows, access=access, max_body=args.max_body,
                    defaults=defaults)
    print(f"Serving {lm.describe()} at http://{args.host}:{args.port}/v1 as model {app.state.service.names[0]!r} "
          f"({rows} requests decoding together{', public limits' if access.public else ''}); Ctrl+C stops.",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _defaults(args) -> dict:
    """The personas and run spec of requests that send none, checked like a request's own."""
    personas = preferences_from_args(args)
    defaults = {**({"personas": personas} if personas else {}), **({"spec": args.spec} if args.spec else {})}
    call = protocol.read_chat({"messages": [{"role": "user", "content": "check"}], **defaults}, ("",))
    if personas:
        call.spec.check(personas, call.settings)
    return defaults
