#!/usr/bin/env python3
"""Turns `ferry bench` reports (bench.json, tests/data/bench.schema.json) into one markdown page: docs/results.md.

  scripts/results-md.py [-o docs/results.md] [--title TITLE] RESULTS/llama-13b/bench.json RESULTS/smollm2/bench.json ...

Each report becomes a section named after its folder (or its model when the file is not called bench.json): the model,
the parameters and whether the host link was simulated, one table row per arm with each test's figure (mean ± standard
deviation) in its unit: tokens/s of a llama model's pp<N> and tg<N>, seconds per step of a Flux model's `step`, the plan and the peak device memory against the budget, then the pictures that `ferry bench
--out-dir` wrote beside the report (bench-phases.svg, bench-timeline.svg), linked relative to the output file. The
page starts with the card, driver, host, build and date of the reports (each named once; differences are listed).
Python 3 standard library only. Exits 1 naming the file for a file that is not a ferry bench report.
"""
import argparse
import json
import os
import sys
from datetime import datetime, timezone

FORMAT = "ferry-bench"
FORMAT_VERSION = 1


class BadReport(Exception):
    pass


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        raise BadReport(f"{path}: cannot read a JSON report ({e})")
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise BadReport(f"{path}: not a ferry bench report (\"format\" is not \"{FORMAT}\")")
    if report.get("format_version") != FORMAT_VERSION:
        raise BadReport(f"{path}: format_version {report.get('format_version')!r}; this script reads {FORMAT_VERSION}")
    for key in ("device", "build", "model", "parameters", "arms"):
        if key not in report:
            raise BadReport(f"{path}: the report has no \"{key}\"")
    return report


def gib(n):
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def is_step(test):
    return test.get("kind") == "step"


def unit(test):
    return "s/step" if is_step(test) else "t/s"


def figure(test):
    """The test's figure as ferry bench's markdown prints it: t/s to two decimals, s/step to four."""
    if is_step(test):
        return f"{test['mean_s']:.4f} ± {test['stddev_s']:.4f}"
    return f"{test['mean_tps']:.2f} ± {test['stddev_tps']:.2f}"


def device_line(r):
    d = r["device"]
    if not d["gpu"]:
        return f"cpu (no GPU: {d['no_gpu_reason']})"
    return d["name"] + (f", driver {d['driver']}" if d.get("driver") else "")


def build_line(r):
    b = r["build"]
    return f"ferry {b['ferry_version']}, git {b['git_sha'][:12]}" + (" (dirty)" if b["dirty"] else "")


def section_name(path, r):
    base = os.path.basename(path)
    if base == "bench.json":
        return os.path.basename(os.path.dirname(os.path.abspath(path))) or r["model"]["name"]
    return os.path.splitext(base)[0]


def memory_text(arm):
    m = arm["memory"]
    if not m["uses_device"]:
        return "none (CPU)"
    text = f"{gib(m['device_peak_bytes'])} / {gib(m['budget_bytes'])}"
    if m.get("process_device_bytes") is not None:
        text += f" (process {gib(m['process_device_bytes'])})"
    return text


def section(path, r, out_dir):
    p = r["parameters"]
    tests, units = [], {}
    for arm in r["arms"]:
        for t in arm["tests"]:
            if t["name"] not in tests:
                tests.append(t["name"])
                units[t["name"]] = unit(t)
    flux = r.get("architecture") == "flux"
    link = r.get("simulated_link_gbps")
    lines = [f"## {section_name(path, r)}", ""]
    m = r["model"]
    if flux:
        lines.append(f"- model: `{m['name']}` (flux, {m['n_double']} double + {m['n_single']} single blocks, width "
                     f"{m['n_embd']}, {gib(m['file_bytes'])})")
    else:
        lines.append(f"- model: `{m['name']}` ({m['n_layer']} blocks, width {m['n_embd']}, {gib(m['file_bytes'])})")
    lines.append(f"- device: {device_line(r)}; build {build_line(r)}; measured {r['started_at']}")
    order = f"arms {p['order']}" + (f" ({p['order_note']})" if p.get("order_note") else "")
    if flux:
        lines.append(f"- method: one denoising step of a {p['image']['width']}x{p['image']['height']} image "
                     f"({p['image_tokens']} image + {p['text_tokens']} text tokens), {p['reps']} repetitions after "
                     f"{p['warmups']} warm-up, {order}; seconds per step as mean ± sample standard deviation")
    else:
        lines.append(f"- method: prompt {p['prompt']} tokens, generation {p['gen']} tokens, {p['reps']} repetitions "
                     f"after {p['warmups']} warm-up, {order}; tokens/s as mean ± sample standard deviation")
    engine = r.get("engine")  # reports from 2026-12-05 on
    if engine and r["device"]["gpu"]:
        lines.append("- engine: decode steps " + ("replayed as CUDA graphs" if engine["decode_graphs"] else
                                                  "kernel by kernel (FERRY_DECODE_GRAPHS=off)") +
                     ", activations up " + ("by kernel" if engine["activation_upload"] == "kernel" else
                                            "by the copy engine") +
                     ("" if "fused_ops" not in engine else ", fused ops " + ("on" if engine["fused_ops"] else "off")))
    if link:
        lines.append(f"- **simulated link: {link:g} GB/s** (host-to-device copies of streamed layers paced to it; rows "
                     "marked \"simulated\" are figures for that link, not this card's)")
    lines.append("")
    header = ["budget", "policy", "plan"] + [f"{t} {units[t]}" for t in tests] + ["device peak / budget"]
    if link:
        header.append("link")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(["---:", "---", "---"] + ["---:"] * len(tests) + ["---:"] + (["---"] if link else []))
                 + " |")
    for arm in r["arms"]:
        row = [arm["vram"], arm["policy"]]
        if arm["status"] != "ok":
            row += [f"{arm['status']}: {arm['reason']}"] + [""] * len(tests) + [""] + ([""] if link else [])
        else:
            by_name = {t["name"]: t for t in arm["tests"]}
            row += [arm["plan"]["summary"]] + [figure(by_name[t]) if t in by_name else "" for t in tests]
            row.append(memory_text(arm))
            if link:
                row.append("simulated" if arm.get("simulated_link_gbps") else "no effect")
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    lines.append("")
    here = os.path.dirname(os.path.abspath(path))
    for picture, what in (("bench-phases.svg", "time per test against the VRAM budget"),
                          ("bench-timeline.svg", "copy, compute and CPU lanes of one denoising step" if flux
                           else "copy, compute and CPU lanes of one prefill and one decode step")):
        full = os.path.join(here, picture)
        if os.path.exists(full):
            lines.append(f"![{section_name(path, r)}: {what}]({os.path.relpath(full, out_dir)})")
            lines.append("")
    return lines


def page(paths, reports, out_dir, title):
    lines = [f"# {title}", ""]
    devices = sorted({device_line(r) for r in reports})
    builds = sorted({build_line(r) for r in reports})
    hosts = sorted({f"{r['host']['cpu_model']}, {r['host']['hardware_threads']} threads" for r in reports})
    dates = sorted(r["started_at"] for r in reports)
    lines.append(f"Generated by `scripts/results-md.py` from {len(reports)} `ferry bench` report(s) on "
                 f"{datetime.now(timezone.utc).strftime('%Y-%m-%d')}.")
    lines.append("")
    lines.append(f"- card: {'; '.join(devices)}")
    lines.append(f"- host: {'; '.join(hosts)}")
    lines.append(f"- build: {'; '.join(builds)}")
    lines.append(f"- measured: {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else ""))
    if any(r.get("simulated_link_gbps") for r in reports):
        lines.append("- sections marked **simulated link** pace host-to-device copies to a slower link's rate "
                     "(`--link-gbps`): their figures stand for that link, not for this card's")
    lines.append("")
    for path, r in zip(paths, reports):
        lines += section(path, r, out_dir)
    return "\n".join(lines).rstrip("\n") + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="bench.json files written by ferry bench")
    parser.add_argument("-o", "--output", help="the markdown file (default: standard output)")
    parser.add_argument("--title", default="ferry: measured results")
    args = parser.parse_args()
    try:
        reports = [load(p) for p in args.reports]
    except BadReport as e:
        print(f"results-md.py: {e}", file=sys.stderr)
        return 1
    out_dir = os.path.dirname(os.path.abspath(args.output)) if args.output else os.getcwd()
    text = page(args.reports, reports, out_dir, args.title)
    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, args.output)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
