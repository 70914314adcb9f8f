#!/usr/bin/env python3
"""scripts/results-md.py on reports that `ferry bench` wrote on this machine (the built-in synthetic model, CPU arms
wherever there is no GPU, and a tiny Flux model): one section per report, named after its folder; each arm's row with
the report's figures (tokens/s to two decimals; a Flux step's seconds to four, its column headed `step s/step`); the simulated link marked in its section and the page's header; the card and the date
named; every picture link resolving to the SVG beside its report, relative to the page; a file that is not a report
refused (exit 1) by name.

  check_results_md.py --ferry PATH/ferry --script scripts/results-md.py
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print(f"FAIL: {what}")
    return condition


def run(cmd, env=None, expect=0):
    r = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    if r.returncode != expect:
        print(r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {r.returncode}, expected {expect}")
    return r


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ferry", required=True)
    parser.add_argument("--script", required=True)
    args = parser.parse_args()
    ferry, script = os.path.abspath(args.ferry), os.path.abspath(args.script)
    with tempfile.TemporaryDirectory(prefix="ferry-results-md-") as work:
        env = dict(os.environ, FERRY_CACHE_DIR=os.path.join(work, "cache"), FERRY_DEFAULT_MODEL="synthetic")
        runs = {"plain-workload": [], "link-12": ["--link-gbps", "12"]}
        flux = os.path.join(work, "flux-tiny.gguf")
        run([ferry, "make-model", "--arch", "flux", "--preset", "flux-tiny", "--type", "q8_0", "--seed", "5", "-o", flux])
        runs["flux-step"] = ["--image", "128x128", "--txt", "16"]
        reports = {}
        for name, extra in runs.items():
            out = os.path.join(work, "results", name)
            workload = [flux] if name == "flux-step" else ["-p", "16", "-n", "4"]
            run([ferry, "bench"] + workload + ["-r", "2", "--vram", "1GiB,2GiB",
                 "--policy", "cpu-all,stream-all", "--out-dir", out] + extra, env)
            with open(os.path.join(out, "bench.json"), encoding="utf-8") as f:
                reports[name] = json.load(f)
        page_path = os.path.join(work, "docs", "results.md")
        os.makedirs(os.path.dirname(page_path))
        run([sys.executable, script, "-o", page_path] +
            [os.path.join(work, "results", n, "bench.json") for n in runs])
        with open(page_path, encoding="utf-8") as f:
            page = f.read()

        device = reports["plain-workload"]["device"]["name"]
        check(device in page, f"the page does not name the card ({device})")
        check(re.search(r"\b20\d\d-\d\d-\d\d\b", page) is not None, "the page has no date")
        sections = re.split(r"^## ", page, flags=re.M)[1:]
        names = [s.splitlines()[0] for s in sections]
        check(names == list(runs), f"sections {names}, expected {list(runs)}")
        for text, (name, report) in zip(sections, reports.items()):
            rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| budget")
                    and not line.startswith("| ---")]
            check(len(rows) == len(report["arms"]), f"{name}: {len(rows)} rows for {len(report['arms'])} arms")
            for row, arm in zip(rows, report["arms"]):
                cells = [c.strip() for c in row.strip("|").split(" | ")]
                check(cells[0] == arm["vram"] and cells[1] == arm["policy"], f"{name}: row {cells[:2]} for {arm['vram']} {arm['policy']}")
                if arm["status"] == "ok":
                    for i, t in enumerate(arm["tests"]):
                        if name == "flux-step":
                            check(t["name"] == "step", f"{name}: a test {t['name']}")
                            want = f"{t['mean_s']:.4f} ± {t['stddev_s']:.4f}"
                        else:
                            want = f"{t['mean_tps']:.2f} ± {t['stddev_tps']:.2f}"
                        check(cells[3 + i] == want, f"{name}: {arm['vram']} {arm['policy']} {t['name']}: {cells[3 + i]!r}, "
                              f"the report says {want!r}")
                else:
                    check(cells[2].startswith(arm["status"]), f"{name}: a {arm['status']} arm reads {cells[2]!r}")
            check(("| step s/step |" in text) == (name == "flux-step"), f"{name}: the step column's header")
            simulated = "**simulated link: 12 GB/s**" in text
            check(simulated == (name == "link-12"), f"{name}: the simulated link is {'not ' if not simulated else ''}marked")
            for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
                check(os.path.exists(os.path.join(os.path.dirname(page_path), target)),
                      f"{name}: the picture link {target} does not resolve from the page")
            check("bench-phases.svg" in text, f"{name}: no phase chart")
        check("simulated link" in page.split("## ")[0], "the page's header does not say some results are simulated")

        bad = os.path.join(work, "not-a-report.json")
        with open(bad, "w", encoding="utf-8") as f:
            json.dump({"format": "something-else"}, f)
        r = run([sys.executable, script, bad], expect=1)
        check(bad in r.stderr.decode(), "a file that is not a report is refused without its name")
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("results-md.py: sections, rows, links and refusals as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
