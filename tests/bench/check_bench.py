#!/usr/bin/env python3
"""`ferry bench`'s machine-readable outputs, read by independent parsers.

  check_bench.py --ferry PATH/ferry --schema tests/data/bench.schema.json

1. On the built-in default model (FERRY_DEFAULT_MODEL=synthetic, a private cache), with three budgets, three policies
   (cpu-all first, so the timeline's arm runs on any machine), --timeline and --out-dir: the JSON on standard output
   and bench.json validate against the checked-in schema (the `jsonschema` package), and the schema itself rejects
   broken reports (so passing it means something). bench-phases.svg and bench-timeline.svg parse as XML
   (xml.etree) and hold the expected series: one per (policy that ran, test) with one point per arm that ran, one
   legend entry per policy; the timeline one lane per (phase, track), the decode step's CPU lane one span per layer
   when that arm runs on the CPU. bench-trace.json is Chrome trace JSON.
2. A model file whose name holds XML's markup characters (< & " ' >) and a simulated link: the SVGs still parse and
   their titles read back the name exactly; the JSON carries the link rate; the CSV parses (csv module) with one
   record per (arm, test).
3. A Flux model (make-model --preset flux-tiny) with --timeline: its report (test `step`, seconds per step) validates,
   the schema rejects llama tests in it and a step test in a llama report, the phase chart has a series per policy
   that ran and the timeline one panel of four lanes (one denoising step).

Exits 1 on any failure, 77 when `jsonschema` cannot be imported (1 under FERRY_REQUIRE_ORACLE=1, set by CI and
scripts/test.sh, which install it: apt python3-jsonschema).
"""
import argparse
import copy
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

try:
    import jsonschema
except ImportError as error:
    if os.environ.get("FERRY_REQUIRE_ORACLE") == "1":
        print(f"FAIL: FERRY_REQUIRE_ORACLE=1 but jsonschema cannot be imported ({error})")
        sys.exit(1)
    print(f"SKIP: cannot import jsonschema ({error}); install it with: apt-get install python3-jsonschema")
    sys.exit(77)

SVG = "{http://www.w3.org/2000/svg}"
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print(f"FAIL: {what}")
    return condition


def run(ferry, args, env, cwd):
    result = subprocess.run([ferry] + args, env=env, cwd=cwd, capture_output=True, timeout=600)
    if result.returncode != 0:
        print(result.stderr.decode(errors="replace"))
        raise SystemExit(f"FAIL: ferry {' '.join(args)} exited {result.returncode}")
    return result.stdout.decode()


def validator(schema_path):
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def check_schema(v, report, label):
    errors = sorted(v.iter_errors(report), key=lambda e: list(e.path))
    for e in errors[:10]:
        check(False, f"{label}: schema: {'/'.join(map(str, e.path))}: {e.message}")
    return not errors


def check_schema_rejects(v, report):
    """Broken reports must fail: the schema is not vacuous."""
    def broken(mutate):
        r = copy.deepcopy(report)
        mutate(r)
        return not v.is_valid(r)

    ok_arm = next(i for i, a in enumerate(report["arms"]) if a["status"] == "ok")
    cases = {
        "no device": lambda r: r.pop("device"),
        "an unknown top-level field": lambda r: r.update(extra=1),
        "a negative mean": lambda r: r["arms"][ok_arm]["tests"][0].update(
            **{"mean_s" if report["architecture"] == "flux" else "mean_tps": -1.0}),
        "a status that does not exist": lambda r: r["arms"][ok_arm].update(status="fine"),
        "a ran arm without tests": lambda r: r["arms"][ok_arm].update(tests=[]),
        "an unknown policy": lambda r: r["arms"][ok_arm].update(policy="gpu-magic"),
        "a zero link rate": lambda r: r.update(simulated_link_gbps=0),
        "a sha that is not one": lambda r: r["build"].update(git_sha="main"),
        "a test name of another kind": lambda r: r["arms"][ok_arm]["tests"][0].update(name="step512"),
        "no samples": lambda r: r["arms"][ok_arm]["tests"][0].update(samples_s=[]),
        "no architecture": lambda r: r.pop("architecture"),
    }
    if report["architecture"] == "flux":
        cases.update({
            "a step test in tokens per second": lambda r: r["arms"][ok_arm]["tests"][0].update(unit="t/s"),
            "a step test with a rate": lambda r: r["arms"][ok_arm]["tests"][0].update(mean_tps=1.0),
            "a flux report with a prompt": lambda r: r["parameters"].update(prompt=512),
            "a flux report without its image": lambda r: r["parameters"].pop("image"),
            "a flux report with a llama test": lambda r: r["arms"][ok_arm]["tests"].__setitem__(0, {
                "name": "pp8", "kind": "pp", "unit": "t/s", "tokens": 8, "mean_tps": 1.0, "stddev_tps": 0.0,
                "median_tps": 1.0, "mean_s": 8.0, "stddev_s": 0.0, "samples_s": [8.0], "samples_tps": [1.0],
                "samples_sequence": [0]}),
        })
    else:
        cases.update({
            "a llama report with a step test": lambda r: r["arms"][ok_arm]["tests"].__setitem__(0, {
                "name": "step", "kind": "step", "unit": "s/step", "tokens": 8, "mean_s": 1.0, "stddev_s": 0.0,
                "median_s": 1.0, "samples_s": [1.0], "samples_sequence": [0]}),
            "a llama report without its prompt": lambda r: r["parameters"].pop("prompt"),
        })
    for what, mutate in cases.items():
        check(broken(mutate), f"the schema accepts a report with {what}")


def svg_root(path):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        check(False, f"{path}: not well-formed XML: {e}")
        return None
    check(root.tag == SVG + "svg", f"{path}: the root is {root.tag}, not svg")
    return root


def with_class(root, cls):
    return [e for e in root.iter() if e.get("class") == cls]


def check_phase_chart(path, report):
    root = svg_root(path)
    if root is None:
        return
    tests = [t["name"] for t in next(a for a in report["arms"] if a["status"] == "ok")["tests"]]
    ran = {}
    for arm in report["arms"]:
        if arm["status"] == "ok":
            ran.setdefault(arm["policy"], []).append(arm)
    series = with_class(root, "series")
    check(len(series) == len(ran) * len(tests),
          f"{path}: {len(series)} series, expected {len(ran)} policies that ran x {len(tests)} tests")
    for s in series:
        policy, test = s.get("data-policy"), s.get("data-test")
        check(policy in ran, f"{path}: a series for {policy}, which did not run")
        check(test in tests, f"{path}: a series for the test {test}")
        points = s.findall(SVG + "circle")
        check(len(points) == len(ran.get(policy, [])),
              f"{path}: {policy} {test}: {len(points)} points, expected {len(ran.get(policy, []))}")
        for p in points:
            check(p.find(SVG + "title") is not None, f"{path}: a point without its tooltip")
    legend = with_class(root, "legend")
    policies = list(dict.fromkeys(a["policy"] for a in report["arms"]))
    check(len(legend) == 1 and len(legend[0].findall(SVG + "text")) == len(policies),
          f"{path}: the legend does not name the {len(policies)} policies")
    return root


def check_timeline(path, report):
    root = svg_root(path)
    if root is None:
        return
    params = report["parameters"]
    phases = ["step"] if report["architecture"] == "flux" else [p for p in (params["prompt"], params["gen"]) if p > 0]
    lanes = with_class(root, "lane")
    check(len(lanes) == 4 * len(phases), f"{path}: {len(lanes)} lanes, expected 4 per phase x {len(phases)}")
    tracks = sorted({lane.get("data-lane") for lane in lanes})
    check(tracks == ["CPU pool", "compute stream", "copy stream", "host"], f"{path}: lanes {tracks}")
    spans = with_class(root, "span")
    check(len(spans) > 0, f"{path}: no spans")
    first = next(a for a in report["arms"] if a["status"] == "ok")
    if report["architecture"] == "llama" and first["plan"]["cpu"] == report["model"]["n_layer"] + 1:  # all on the CPU
        decode = [lane for lane in lanes if lane.get("data-lane") == "CPU pool" and "decode" in lane.get("data-phase")]
        n = len(with_class(decode[0], "span")) if decode else -1
        check(n == report["model"]["n_layer"] + 1,
              f"{path}: the decode step's CPU lane has {n} spans, expected one per layer ({report['model']['n_layer'] + 1})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ferry", required=True)
    parser.add_argument("--schema", required=True)
    args = parser.parse_args()
    args.ferry = os.path.abspath(args.ferry)
    v = validator(args.schema)
    with tempfile.TemporaryDirectory(prefix="ferry-bench-check-") as work:
        env = dict(os.environ, FERRY_CACHE_DIR=os.path.join(work, "cache"), FERRY_DEFAULT_MODEL="synthetic")

        # 1. The default model, three budgets and policies, the timeline.
        out = os.path.join(work, "one")
        stdout = run(args.ferry, ["bench", "-p", "24", "-n", "6", "-r", "2", "--vram", "1GiB,2GiB,4GiB",
                                  "--policy", "cpu-all,resident-stream,stream-all", "--timeline",
                                  "--out-dir", out, "-o", "json"], env, work)
        report = json.loads(stdout)
        check_schema(v, report, "stdout")
        with open(os.path.join(out, "bench.json"), encoding="utf-8") as f:
            check_schema(v, json.load(f), "bench.json")
        check_schema_rejects(v, report)
        check(len(report["arms"]) == 9, f"{len(report['arms'])} arms, expected 3 budgets x 3 policies")
        check_phase_chart(os.path.join(out, "bench-phases.svg"), report)
        check_timeline(os.path.join(out, "bench-timeline.svg"), report)
        with open(os.path.join(out, "bench-trace.json"), encoding="utf-8") as f:
            check("traceEvents" in json.load(f), "bench-trace.json has no traceEvents")

        # 2. Markup characters in the model's name, a simulated link, CSV on standard output.
        name = "we<ird> & \"q'uote\", too.gguf"
        model = os.path.join(work, name)
        run(args.ferry, ["make-model", "--preset", "tiny", "--type", "q8_0", "--seed", "5", "-o", model], env, work)
        out = os.path.join(work, "two")
        stdout = run(args.ferry, ["bench", model, "-p", "16", "-n", "4", "-r", "1", "--policy", "cpu-all,stream-all",
                                  "--link-gbps", "25", "--out-dir", out, "-o", "csv"], env, work)
        with open(os.path.join(out, "bench.json"), encoding="utf-8") as f:
            report = json.load(f)
        check_schema(v, report, "bench.json (markup in the name)")
        check(report["simulated_link_gbps"] == 25, "simulated_link_gbps is not 25")
        check(report["model"]["name"] == name, "the JSON does not carry the model's name as it is")
        root = check_phase_chart(os.path.join(out, "bench-phases.svg"), report)
        if root is not None:
            title = next(root.iter(SVG + "text")).text or ""
            check(title.startswith(name + " on "), f"the chart's title does not read back the name: {title!r}")
            check("simulated link: 25 GB/s" in title, f"the chart's title does not name the simulated link: {title!r}")
        records = list(csv.reader(io.StringIO(stdout)))
        check(len(records) == 1 + 2 * 2, f"the CSV has {len(records)} records, expected a header and 4")
        check(all(len(r) == len(records[0]) for r in records), "CSV records of different lengths")
        check(all(r[0] == name for r in records[1:]), "the CSV does not carry the model's name as it is")

        # 3. A Flux model: the step test, its chart and timeline.
        flux = os.path.join(work, "flux-tiny.gguf")
        run(args.ferry, ["make-model", "--arch", "flux", "--preset", "flux-tiny", "--type", "q8_0", "--seed", "5",
                         "-o", flux], env, work)
        out = os.path.join(work, "three")
        stdout = run(args.ferry, ["bench", flux, "--image", "128x128", "--txt", "16", "-r", "2", "--vram", "1GiB,2GiB",
                                  "--policy", "cpu-all,resident-stream,auto", "--timeline", "--out-dir", out,
                                  "-o", "json"], env, work)
        report = json.loads(stdout)
        check_schema(v, report, "stdout (flux)")
        check_schema_rejects(v, report)
        check(report["architecture"] == "flux", "the Flux report's architecture is not flux")
        tests = {t["name"] for a in report["arms"] for t in a["tests"]}
        check(tests == {"step"}, f"the Flux report's tests are {tests}, expected step")
        check_phase_chart(os.path.join(out, "bench-phases.svg"), report)
        check_timeline(os.path.join(out, "bench-timeline.svg"), report)
        with open(os.path.join(out, "bench.csv"), encoding="utf-8") as f:
            records = list(csv.DictReader(f))
        check(len(records) == 6, f"the Flux CSV has {len(records)} records, expected 2 budgets x 3 policies")
        check(all(r["unit"] == "s/step" and r["mean_tps"] == "" for r in records),
              "the Flux CSV has a rate or another unit")
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("bench outputs: schema, SVG and CSV checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
