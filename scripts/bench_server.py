"""The OpenAI-compatible server under load: one client alone against N clients at once, through HTTP.

Starts `python -m pjudge_core serve` in a process of its own, warms it up, then alternates, for
`--rounds` rounds: one streamed Persona-judge request alone, and N streamed requests sent together
(different seeds). For each it records the time to the first token (from sending the request to the
first chunk that holds text) and the tokens per second (completion tokens from the usage, over the wall
time: all N requests' tokens over the time from the first send to the last answer), and, in this
process while the server idles, the same lone request through the library (`generate`, no HTTP).
Prints the medians, the N-client figures as ratios to the lone client's, and the lone client's
throughput as a ratio to the library's.

    python scripts/bench_server.py --model bundled --clients 8 --tokens 64 --rounds 3

Figures: docs/benchmarks.md, "The server".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the library baseline imports pjudge_core from this checkout, as the server runs it
QUERY = "Describe a sunset over the sea."


def start_server(model: str, port: int, rows: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "pjudge_core", "serve", "--model", model, "--port", str(port), "--rows", str(rows),
               "--name", "bench", "--preset", "vivid + creative"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server stopped: {process.stderr.read()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            return process
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not start within 300 s")


def one(url: str, seed: int, tokens: int) -> dict:
    """One streamed request: its first-token time, completion tokens and wall time."""
    body = {"model": "bench", "messages": [{"role": "user", "content": QUERY}], "max_tokens": tokens, "seed": seed,
            "stream": True, "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    first, usage = None, None
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in chunk.get("choices", [])):
                first = time.perf_counter() - sent
            usage = chunk.get("usage") or usage
    return {"first_s": first, "tokens": usage["completion_tokens"], "wall_s": time.perf_counter() - sent}


def together(url: str, clients: int, tokens: int, seed0: int) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda i: one(url, seed0 + i, tokens), range(clients)))
    wall = time.perf_counter() - started
    firsts = [r["first_s"] for r in runs if r["first_s"] is not None]
    return {"tokens_per_s": sum(r["tokens"] for r in runs) / wall, "first_s": statistics.median(firsts),
            "first_max_s": max(firsts)}


def library(model: str, seed: int, tokens: int) -> dict:
    """The lone request through the library in this process: what the server adds is HTTP and streaming."""
    from pjudge_core import DecodeSettings, generate, load_model
    from pjudge_core.presets import pair

    global _LM
    if _LM is None:
        _LM = load_model(model)
        generate(_LM, "persona-judge", QUERY, list(pair("vivid + creative")), DecodeSettings(seed=10_000,
                                                                                          max_new_tokens=tokens))
    result = generate(_LM, "persona-judge", QUERY, list(pair("vivid + creative")),
                      DecodeSettings(seed=seed, max_new_tokens=tokens))
    return {"tokens_per_s": len(result.token_ids) / result.stats["seconds"], "first_s": None, "first_max_s": None}


_LM = None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled", help="what `serve --model` takes")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    process = start_server(args.model, args.port, max(args.clients, 1))
    url = f"http://127.0.0.1:{args.port}/v1"
    try:
        one(url, 10_000, args.tokens)  # warm: the first requests of a fresh process are slower
        alone, many, direct = [], [], []
        for r in range(args.rounds):
            lone = one(url, r, args.tokens)
            alone.append({"tokens_per_s": lone["tokens"] / lone["wall_s"], "first_s": lone["first_s"],
                          "first_max_s": lone["first_s"]})
            many.append(together(url, args.clients, args.tokens, 1000 * (r + 1)))
            direct.append(library(args.model, r, args.tokens))
    finally:
        process.terminate()
        process.wait(30)
    report = {}
    for name, runs in (("1 client", alone), (f"{args.clients} clients", many)):
        report[name] = {key: statistics.median(run[key] for run in runs)
                        for key in ("tokens_per_s", "first_s", "first_max_s")}
    report["library"] = {"tokens_per_s": statistics.median(run["tokens_per_s"] for run in direct)}
    base, load = report["1 client"], report[f"{args.clients} clients"]
    print(f"{args.model}: Persona-judge, {args.tokens} new tokens, median of {args.rounds} rounds")
    for name, figures in list(report.items())[:2]:
        print(f"  {name:>11}: {figures['tokens_per_s']:7.1f} tok/s in all · first token {figures['first_s']:.2f} s "
              f"(slowest {figures['first_max_s']:.2f} s)")
    print(f"  ratio {args.clients}/1: throughput {load['tokens_per_s'] / base['tokens_per_s']:.2f}x · first token "
          f"{load['first_s'] / base['first_s']:.2f}x (slowest {load['first_max_s'] / base['first_s']:.2f}x)")
    print(f"  one request through the library (generate, no HTTP): {report['library']['tokens_per_s']:.1f} tok/s; "
          f"the server's lone client / the library: {base['tokens_per_s'] / report['library']['tokens_per_s']:.2f}x")
    return report


if __name__ == "__main__":
    main()
