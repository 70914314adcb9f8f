#!/usr/bin/env python3
"""`ferry serve` driven by an unmodified OpenAI client (the `openai` package from PyPI), on loopback.

  check_serve.py --ferry PATH/ferry --workdir DIR

A tiny model with F32 weights (`ferry make-model --preset tiny --type f32`: batched and lone steps then differ by
float summation order only, so greedy answers are the same token for token) served with --parallel 4 on a free port:
1. /v1/models lists the model; /health answers without the key.
2. chat and completions, plain and streamed: the streamed deltas join to the plain answer, with the same finish_reason
   and usage counts (stream_options.include_usage).
3. stop sequences: the answer ends right before the first match, finish_reason "stop".
4. concurrency: 8 different greedy requests sent together get the answers they got one at a time.
5. refusals: malformed JSON, a field of the wrong type, max_tokens beyond the server's bound, a prompt longer than the
   context -> 400 with {"error": {"message", "type", "code"}}; no or a wrong API key -> 401 (openai's
   AuthenticationError); a body over the limit -> 413.
6. a client that disconnects mid-stream: its request is cancelled (ferry_requests_cancelled_total in /metrics) and the
   server goes on serving.
7. load: 200 requests (chat and completions, plain and streamed) from 8 clients, zero failures, and the server's
   resident memory (/proc/PID/status VmRSS) after them within MEMORY_SLACK of what it was after a warm-up round.
8. SIGTERM during a streamed answer: the answer is delivered to its end ([DONE]) and the server exits 0; before it,
   every thread of the server but the one waiting for the signal blocks SIGTERM and SIGINT.
9. the real default model, SmolLM2-135M-Instruct (tests/pysupport/smollm2_file.py finds or fetches it; skipped when it
   cannot be had), with the ChatML template from its file: a question with one right answer, plain and streamed, and
   a completion.

Exits 1 on any failure, 77 when `openai` cannot be imported (1 under FERRY_REQUIRE_ORACLE=1, set by CI and
scripts/test.sh, which install it).
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pysupport"))
from smollm2_file import find_smollm2  # noqa: E402

try:
    import openai
except ImportError as error:
    if os.environ.get("FERRY_REQUIRE_ORACLE") == "1":
        print(f"FAIL: FERRY_REQUIRE_ORACLE=1 but the openai package cannot be imported ({error})")
        sys.exit(1)
    print(f"SKIP: the openai package cannot be imported ({error}); pip install openai")
    sys.exit(77)

KEY = "test-key-7c1f"
# Resident memory may grow this much over the load run (allocator caches settling, a page or two of bookkeeping);
# a leak of one response per request (200 x a few KB) or of a KV cache would exceed it.
MEMORY_SLACK = 4 << 20

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)
    return condition


class Server:
    """`ferry serve` on a free loopback port; its stderr is collected by a thread."""

    def __init__(self, ferry, model, extra, chat_format="llama2"):
        args = [ferry, "serve", model, "--port", "0", "--policy", "cpu-all", "--api-key", KEY] + extra
        if chat_format:
            args += ["--chat-format", chat_format]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines = []
        self.port = None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.search(r"on http://127\.0\.0\.1:(\d+)/v1", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        ready.wait(120)
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("ferry serve did not start:\n" + "".join(self.lines))

    def client(self, key=KEY):
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key, max_retries=0, timeout=120)

    def raw(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def metric(self, name):
        _, text = self.raw("GET", "/metrics")
        m = re.search(rf"^{name} (\S+)$", text.decode(), re.M)
        return float(m.group(1)) if m else None

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)


def chat(client, text, max_tokens, **kw):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": text}],
                                          max_tokens=max_tokens, temperature=0, **kw)


def test_real_model(ferry, workdir):
    """The real default model (SmolLM2-135M-Instruct, its own ChatML template from the file): a question with one
    right answer, plain and streamed, and a raw completion. Skipped when the file cannot be had."""
    path = find_smollm2(workdir)
    if path is None:
        print("SKIP: SmolLM2-135M-Instruct cannot be had (set FERRY_SMOLLM2_GGUF); the real-model checks did not run")
        return
    server = Server(ferry, path, ["--parallel", "2", "--ctx", "512"], chat_format=None)
    try:
        client = server.client()
        ids = [m.id for m in client.models.list().data]
        check(ids == [os.path.basename(path)], f"real model: /v1/models lists {ids}")
        check(any("chat format chatml" in line for line in server.lines),
              "real model: the server did not take the file's ChatML template")
        # Greedy, on the CPU (fixed weights, fixed activation rounding): SmolLM2-135M-Instruct answers "The answer is
        # 4." and ends its turn (<|im_end|>, finish_reason "stop"). A wrong template, BOS or tokenizer gives neither.
        plain = chat(client, "What is 2 + 2?", 32)
        text = plain.choices[0].message.content
        check("4" in text and plain.choices[0].finish_reason == "stop",
              f"real model: {text!r}, finish_reason {plain.choices[0].finish_reason} (expected a 4 and 'stop')")
        check(0 < plain.usage.completion_tokens < 32 and plain.usage.prompt_tokens > 20, f"real model: {plain.usage}")
        s_text, s_finish, s_usage = streamed_chat(client, "What is 2 + 2?", 32)
        check(s_text == text and s_finish == "stop", f"real model: streamed {s_text!r} ({s_finish}) != plain {text!r}")
        check(s_usage is not None and s_usage.completion_tokens == plain.usage.completion_tokens,
              "real model: streamed usage")
        comp = client.completions.create(model="m", prompt="The capital of France is", max_tokens=8, temperature=0)
        check(comp.choices[0].finish_reason in ("stop", "length") and comp.usage.completion_tokens > 0,
              f"real model: completion {comp.choices[0].text!r}, {comp.choices[0].finish_reason}")
        check(server.proc.poll() is None, "real model: the server died")
    finally:
        server.stop()
    if failures:
        print("real model server log:\n" + "".join(server.lines[-20:]))


def streamed_chat(client, text, max_tokens, **kw):
    parts, finish, usage = [], None, None
    for chunk in chat(client, text, max_tokens, stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return "".join(parts), finish, usage


def test_basics(server):
    client = server.client()
    models = client.models.list()
    check([m.id for m in models.data] == ["tiny.gguf"], f"/v1/models lists {[m.id for m in models.data]}")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/health")
    check(conn.getresponse().status == 200, "/health without a key is not 200")

    plain = chat(client, "Tell me a story", 20)
    text = plain.choices[0].message.content
    check(isinstance(text, str) and plain.choices[0].message.role == "assistant", "chat: no assistant message")
    check(plain.choices[0].finish_reason in ("stop", "length"), f"finish_reason {plain.choices[0].finish_reason}")
    check(plain.usage.prompt_tokens > 0 and 0 < plain.usage.completion_tokens <= 20, f"usage {plain.usage}")
    check(plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens, "total_tokens")
    s_text, s_finish, s_usage = streamed_chat(client, "Tell me a story", 20)
    check(s_text == text, f"streamed chat {s_text!r} != plain {text!r}")
    check(s_finish == plain.choices[0].finish_reason, "streamed finish_reason differs")
    check(s_usage is not None and s_usage.completion_tokens == plain.usage.completion_tokens, "streamed usage")

    comp = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=12, temperature=0)
    check(comp.choices[0].finish_reason in ("stop", "length"), "completion finish_reason")
    parts = [c.choices[0].text for c in client.completions.create(model="tiny", prompt="Once upon a time",
                                                                    max_tokens=12, temperature=0, stream=True)
             if c.choices]
    check("".join(parts) == comp.choices[0].text, "streamed completion differs from plain")

    # Stop sequences, from the middle of a long greedy answer.
    long = chat(client, "Write a long answer", 60).choices[0].message.content
    if check(len(long) >= 12, f"the long answer is too short to cut: {long!r}"):
        stop = long[len(long) // 2:len(long) // 2 + 3]
        cut = chat(client, "Write a long answer", 60, stop=["\u0001", stop])
        check(cut.choices[0].message.content == long[:long.find(stop)],
              f"stop {stop!r}: {cut.choices[0].message.content!r}, expected {long[:long.find(stop)]!r}")
        check(cut.choices[0].finish_reason == "stop", "stop sequence: finish_reason is not 'stop'")
        s_cut, s_finish, _ = streamed_chat(client, "Write a long answer", 60, stop=stop)
        check(s_cut == long[:long.find(stop)], f"streamed stop: {s_cut!r}")
        check(s_finish == "stop", "streamed stop: finish_reason")


def test_concurrency(server):
    client = server.client()
    prompts = [f"Question number {i}: {'why ' * i}?" for i in range(8)]
    alone = [chat(client, p, 24).choices[0].message.content for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: chat(server.client(), p, 24).choices[0].message.content, prompts))
    for i, (a, t) in enumerate(zip(alone, together)):
        check(a == t, f"concurrent request {i}: {t!r} != alone {a!r}")


def test_refusals(server):
    def error_of(status, data, expected_status, code=None):
        check(status == expected_status, f"status {status}, expected {expected_status}: {data[:200]!r}")
        try:
            err = json.loads(data)["error"]
        except (ValueError, KeyError):
            check(False, f"no OpenAI error object: {data[:200]!r}")
            return
        check(all(k in err for k in ("message", "type", "code")), f"error object {err}")
        if code:
            check(err["code"] == code, f"error code {err['code']}, expected {code}")

    error_of(*server.raw("POST", "/v1/chat/completions", b'{"messages": [{"role": "user"'), 400, "invalid_json")
    error_of(*server.raw("POST", "/v1/chat/completions", b"\xff\xfe garbage"), 400, "invalid_json")
    error_of(*server.raw("POST", "/v1/chat/completions",
                         json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "9"})), 400,
             "invalid_type")
    error_of(*server.raw("POST", "/v1/completions", json.dumps({"prompt": {"text": "hi"}})), 400, "invalid_type")
    error_of(*server.raw("POST", "/v1/completions", json.dumps({"prompt": "word " * 2000})), 400,
             "context_length_exceeded")
    error_of(*server.raw("POST", "/v1/completions", b"x" * (5 << 20)), 413)
    error_of(*server.raw("POST", "/v1/chat/completions", json.dumps({"messages": []}),
                         headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key")
    error_of(*server.raw("GET", "/v1/models", headers={"Authorization": ""}), 401, "invalid_api_key")
    error_of(*server.raw("GET", "/v1/nothing"), 404)
    try:
        chat(server.client(), "hi", 1 << 20)
        check(False, "max_tokens beyond the bound was accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400, "max_tokens: not 400")
    try:
        chat(server.client(key="wrong"), "hi", 4)
        check(False, "a wrong API key was accepted")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "wrong key: not 401")


def stream_request(server, max_tokens):
    """A streamed chat request on a raw socket, returning the socket after the headers were sent."""
    body = json.dumps({"messages": [{"role": "user", "content": "Go on and on"}], "max_tokens": max_tokens,
                       "temperature": 0, "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def read_until(sock, marker):
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_disconnect(server):
    before = server.metric("ferry_requests_cancelled_total")
    sock = stream_request(server, 400)
    first = read_until(sock, b"data: ")
    check(b"200 OK" in first, f"stream did not start: {first[:200]!r}")
    sock.close()
    deadline = time.time() + 30
    while time.time() < deadline and server.metric("ferry_requests_cancelled_total") == before:
        time.sleep(0.05)
    check(server.metric("ferry_requests_cancelled_total") == before + 1,
          "a client that disconnected mid-stream was not cancelled")
    check(server.metric("ferry_requests_active") == 0, "the cancelled request still holds a slot")
    check(any("cancelled" in line for line in server.lines), "no log line for the cancelled request")
    check(chat(server.client(), "still there?", 4).usage.completion_tokens > 0, "the server stopped answering")


def test_load(server):
    def one(i):
        with server.client() as client:
            return one_with(client, i)

    def one_with(client, i):
        kind = i % 4
        if kind == 0:
            return chat(client, f"load {i}", 16).usage.completion_tokens > 0
        if kind == 1:
            return streamed_chat(client, f"load {i}", 16)[1] in ("stop", "length")
        if kind == 2:
            return client.completions.create(model="tiny", prompt=f"load {i}", max_tokens=16).choices[0].text \
                is not None
        chunks = list(client.completions.create(model="tiny", prompt=f"load {i}", max_tokens=16, stream=True))
        return chunks[-1].choices[0].finish_reason in ("stop", "length")

    def run(n):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: _safe(one, i), range(n)))
        return [r for r in results if r is not True]

    warm = run(100)
    check(not warm, f"warm-up failures: {warm[:3]}")
    rss_before = server.rss()
    finished_before = server.metric("ferry_requests_finished_total")
    start = time.time()
    bad = run(200)
    seconds = time.time() - start
    rss_after = server.rss()
    check(not bad, f"{len(bad)} of 200 load requests failed: {bad[:3]}")
    check(server.metric("ferry_requests_finished_total") - finished_before == 200, "the server did not finish 200")
    print(f"load: 200 requests from 8 clients in {seconds:.1f} s; RSS {rss_before / 2**20:.1f} MiB -> "
          f"{rss_after / 2**20:.1f} MiB", flush=True)
    if "ASAN_OPTIONS" in os.environ:  # AddressSanitizer's quarantine holds freed memory on purpose
        print("load: memory growth not checked under AddressSanitizer", flush=True)
        return
    check(rss_after - rss_before <= MEMORY_SLACK,
          f"resident memory grew by {(rss_after - rss_before) / 2**20:.1f} MiB over 200 requests")


def _safe(fn, i):
    try:
        return fn(i) or f"request {i}: a wrong answer"
    except Exception as e:  # noqa: BLE001 -- every failure counts, whatever its type
        return f"request {i}: {type(e).__name__}: {e}"


def threads_taking_stop_signals(pid):
    """The server's threads that do not block SIGTERM or SIGINT, less the one waiting for them ("ferry-signals":
    sigwait unblocks the signals it waits for while it waits). Any other such thread would take a SIGTERM with the
    default action and end the server mid-answer (on a GPU, the CUDA driver's threads did, when the mask came after
    the runner had started them)."""
    stop_bits = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))
    takers = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        name = status["Name"].strip()
        if int(status["SigBlk"].strip(), 16) & stop_bits != stop_bits and name != "ferry-signals":
            takers.append(f"{tid} ({name})")
    return takers


def test_sigterm(ferry, model):
    server = Server(ferry, model, ["--parallel", "2", "--ctx", "512", "--max-tokens", "400"])
    try:
        takers = threads_taking_stop_signals(server.proc.pid)
        check(not takers, f"threads of ferry serve that would take SIGTERM with the default action: {takers}")
        sock = stream_request(server, 400)
        first = read_until(sock, b"data: ")
        check(b"200 OK" in first, "stream did not start before SIGTERM")
        server.proc.send_signal(signal.SIGTERM)
        rest = read_until(sock, b"data: [DONE]")
        sock.close()
        check(b"data: [DONE]" in rest, "the answer in flight was cut by SIGTERM")
        check(b'"finish_reason":"length"' in rest or b'"finish_reason":"stop"' in rest, "no finish_reason after SIGTERM")
        code = server.proc.wait(60)
        check(code == 0, f"ferry serve exited {code} after SIGTERM")
        server.reader.join(5)
        check(any("stopped" in line for line in server.lines), "no 'stopped' line")
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ferry", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    model = os.path.join(args.workdir, "tiny.gguf")
    subprocess.run([args.ferry, "make-model", "--preset", "tiny", "--type", "f32", "--seed", "3", "-o", model],
                   check=True, stdout=subprocess.DEVNULL)
    server = Server(args.ferry, model, ["--parallel", "4", "--ctx", "512", "--max-tokens", "400", "--batch", "16"])
    try:
        for test in (test_basics, test_concurrency, test_refusals, test_disconnect, test_load):
            print(f"== {test.__name__}", flush=True)
            try:
                test(server)
            except Exception as e:  # noqa: BLE001 -- report and go on with the next part
                check(False, f"{test.__name__}: {type(e).__name__}: {e}")
        check(server.proc.poll() is None, "the server died")
    finally:
        server.stop()
    print("== test_sigterm", flush=True)
    test_sigterm(args.ferry, model)
    print("== test_real_model", flush=True)
    try:
        test_real_model(args.ferry, args.workdir)
    except Exception as e:  # noqa: BLE001
        check(False, f"test_real_model: {type(e).__name__}: {e}")
    if failures:
        print(f"{len(failures)} failures; server log:\n" + "".join(server.lines[-40:]))
        sys.exit(1)
    print("all serve checks passed")


if __name__ == "__main__":
    main()
