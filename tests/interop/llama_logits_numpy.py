#!/usr/bin/env python3
"""Recompute the logits in a ferry --logits-out file with an independent llama forward pass: numpy in float64 over
weights dequantized by the `gguf` package, and report how far ferry's logits are from it, and the perplexity both
give by llama.cpp's method when the file came from `ferry perplexity`.

    python3 tests/interop/llama_logits_numpy.py MODEL.gguf LOGITS_FILE [--sequences N]

The file's layout is in runtime/include/ferry/text/logits_file.hpp. A sequence starts at each row whose position is 0;
each one is recomputed from an empty cache. Only the 'llama' architecture (no biases, RMSNorm, SwiGLU, RoPE on
adjacent pairs as llama.cpp's NORM mode) is handled. Exit status 0 when every sequence's relative RMS error is at most
--tolerance.
"""
import argparse
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def read_logits_file(path):
    raw = np.fromfile(path, dtype=np.uint8)
    if raw[:8].tobytes() != b"FERRYLGT":
        sys.exit(f"{path}: not a ferry logits file (magic {raw[:8].tobytes()!r})")
    version, n_vocab = np.frombuffer(raw[8:16].tobytes(), dtype="<u4")
    if version != 1:
        sys.exit(f"{path}: version {version}, this script reads 1")
    rows = np.frombuffer(raw[16:].tobytes(),
                         dtype=[("position", "<i4"), ("token", "<i4"), ("logits", "<f4", int(n_vocab))])
    return rows


class Llama:
    def __init__(self, path):
        r = GGUFReader(path)
        arch = field(r, "general.architecture")
        if arch != "llama":
            sys.exit(f"{path}: architecture {arch!r}; this script computes 'llama' only")
        self.n_layer = int(field(r, "llama.block_count"))
        self.n_embd = int(field(r, "llama.embedding_length"))
        self.n_head = int(field(r, "llama.attention.head_count"))
        self.n_head_kv = int(field(r, "llama.attention.head_count_kv", self.n_head))
        self.eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.rope_base = float(field(r, "llama.rope.freq_base", 10000.0))
        self.head_dim = self.n_embd // self.n_head
        self.t = {}
        for t in r.tensors:
            w = dequantize(t.data, t.tensor_type).astype(np.float64)
            self.t[t.name] = w.reshape([int(x) for x in reversed(t.shape)]) if w.ndim == 1 and len(t.shape) > 1 else w
        if "output.weight" not in self.t:  # tied embeddings
            self.t["output.weight"] = self.t["token_embd.weight"]

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, positions):
        # x: [T, heads, head_dim]; pairs (2i, 2i+1) rotated by pos * base^(-2i/head_dim).
        half = self.head_dim // 2
        freq = self.rope_base ** (-np.arange(half, dtype=np.float64) * 2.0 / self.head_dim)
        angle = positions[:, None] * freq[None, :]
        cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def logits(self, tokens):
        T = len(tokens)
        pos = np.arange(T, dtype=np.float64)
        x = self.t["token_embd.weight"][tokens]
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        group = self.n_head // self.n_head_kv
        for i in range(self.n_layer):
            p = f"blk.{i}."
            h = self.rms(x, self.t[p + "attn_norm.weight"])
            q = (h @ self.t[p + "attn_q.weight"].T).reshape(T, self.n_head, self.head_dim)
            k = (h @ self.t[p + "attn_k.weight"].T).reshape(T, self.n_head_kv, self.head_dim)
            v = (h @ self.t[p + "attn_v.weight"].T).reshape(T, self.n_head_kv, self.head_dim)
            q, k = self.rope(q, pos), self.rope(k, pos)
            k = np.repeat(k, group, axis=1)
            v = np.repeat(v, group, axis=1)
            scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(self.head_dim) + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            att = np.einsum("hts,shd->thd", scores, v).reshape(T, self.n_embd)
            x = x + att @ self.t[p + "attn_output.weight"].T
            h = self.rms(x, self.t[p + "ffn_norm.weight"])
            g = h @ self.t[p + "ffn_gate.weight"].T
            u = h @ self.t[p + "ffn_up.weight"].T
            x = x + ((g / (1.0 + np.exp(-g))) * u) @ self.t[p + "ffn_down.weight"].T
        return self.rms(x, self.t["output_norm.weight"]) @ self.t["output.weight"].T


def nll(logits, targets):
    m = logits.max(axis=-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1))
    return lse - logits[np.arange(len(targets)), targets]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("logits")
    ap.add_argument("--sequences", type=int, default=0, help="recompute only the first N sequences (0: all)")
    ap.add_argument("--tolerance", type=float, default=3e-2, help="largest relative RMS error accepted")
    a = ap.parse_args()
    rows = read_logits_file(a.logits)
    starts = list(np.flatnonzero(rows["position"] == 0)) + [len(rows)]
    model = Llama(a.model)
    worst = 0.0
    v_ferry, v_ref = [], []
    n = len(starts) - 1 if a.sequences <= 0 else min(a.sequences, len(starts) - 1)
    for s in range(n):
        seq = rows[starts[s]:starts[s + 1]]
        ref = model.logits(seq["token"].astype(np.int64))
        got = seq["logits"].astype(np.float64)
        err = np.sqrt(np.sum((got - ref) ** 2) / np.sum(ref ** 2))
        worst = max(worst, err)
        T = len(seq)
        first = T // 2  # llama.cpp's scored rows: first .. T - 2, predicting the next row's token
        targets = seq["token"][first + 1:T].astype(np.int64)
        v_ferry.append(nll(got[first:T - 1], targets))
        v_ref.append(nll(ref[first:T - 1], targets))
        top = np.mean(np.argmax(got, axis=-1) == np.argmax(ref, axis=-1))
        print(f"sequence {s + 1}: {T} rows, relative RMS error {err:.3e}, same argmax in {top:.1%} of rows, "
              f"PPL of its second half: ferry {np.exp(v_ferry[-1].mean()):.4f}, numpy {np.exp(v_ref[-1].mean()):.4f}")
    print(f"PPL over {n} sequences: ferry {np.exp(np.concatenate(v_ferry).mean()):.4f}, "
          f"numpy float64 {np.exp(np.concatenate(v_ref).mean()):.4f}; worst relative RMS error {worst:.3e}")
    return 0 if worst <= a.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
