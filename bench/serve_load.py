#!/usr/bin/env python3
"""Concurrent streams against a running `ferry serve`: aggregate generation tokens/s and time to first token at each
concurrency, against the single-stream figure (issue 16's table). Standard library only.

  build/ferry serve MODEL --parallel 8 --vram 4GiB &        # wait for its "on http://..." line
  python3 bench/serve_load.py --url http://127.0.0.1:8080 --streams 1,2,4,8 --max-tokens 128 [--json out.json]

Each round starts N streamed /v1/completions requests at once (the same prompt of about --prompt-words words,
greedy, max_tokens --max-tokens) and waits for all of them; a round's aggregate rate is the sum of the generated
tokens (each stream's usage) over the time from the first token of the first stream to the end of the last one, so
prompt processing is not counted as generation. Time to first token is measured per stream from the start of the
round. Rounds repeat --repeat times after one warm-up; the table gives medians. The server's --parallel must be at
least the largest N, or streams queue and the figure measures the queue.
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse


def one_stream(url, key, body, start, out):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=3600)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request("POST", "/v1/completions", body=body, headers=headers)
    r = conn.getresponse()
    if r.status != 200:
        out["error"] = f"HTTP {r.status}: {r.read()[:200]!r}"
        return
    first = None
    tokens = 0
    for raw in r:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        if first is None and event.get("choices") and event["choices"][0].get("text"):
            first = time.perf_counter()
    out.update(first=first if first is not None else time.perf_counter(), end=time.perf_counter(), tokens=tokens)
    conn.close()


def round_once(url, key, n, body):
    results = [{} for _ in range(n)]
    start = time.perf_counter()
    threads = [threading.Thread(target=one_stream, args=(url, key, body, start, results[i])) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(errors[0])
    first = min(r["first"] for r in results)
    end = max(r["end"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    return {"tokens": tokens, "aggregate_tps": tokens / (end - first) if end > first else 0.0,
            "ttft_s": statistics.mean(r["first"] - start for r in results)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--api-key", default="")
    p.add_argument("--streams", default="1,2,4,8")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--prompt-words", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", help="write the results here too")
    a = p.parse_args()
    # ignore_eos: every stream generates max_tokens, so rounds compare (ferry's and llama.cpp's extension).
    body = json.dumps({"prompt": " ".join(["word"] * a.prompt_words), "max_tokens": a.max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True})
    rows = []
    for n in [int(s) for s in a.streams.split(",")]:
        round_once(a.url, a.api_key, n, body)  # warm-up
        runs = [round_once(a.url, a.api_key, n, body) for _ in range(a.repeat)]
        rows.append({"streams": n, "aggregate_tps": statistics.median(r["aggregate_tps"] for r in runs),
                     "aggregate_tps_spread": [min(r["aggregate_tps"] for r in runs),
                                              max(r["aggregate_tps"] for r in runs)],
                     "ttft_s": statistics.median(r["ttft_s"] for r in runs),
                     "tokens_per_round": statistics.median(r["tokens"] for r in runs)})
    single = rows[0]["aggregate_tps"] if rows and rows[0]["streams"] == 1 else None
    print("| streams | aggregate tok/s (min..max) | vs 1 stream | time to first token (s) |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['aggregate_tps'] / single:.2f}x" if single else "-"
        lo, hi = r["aggregate_tps_spread"]
        print(f"| {r['streams']} | {r['aggregate_tps']:.1f} ({lo:.1f}..{hi:.1f}) | {ratio} | {r['ttft_s']:.3f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"url": a.url, "max_tokens": a.max_tokens, "prompt_words": a.prompt_words,
                       "repeat": a.repeat, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
