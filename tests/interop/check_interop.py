#!/usr/bin/env python3
"""Interoperability of ferry with the Python `gguf` package (gguf-py), an independent GGUF reader and writer.

  check_interop.py --ferry PATH/ferry --writer PATH/ferry_interop_writer --workdir DIR

1. gguf-py writes GGUF files (GGUFWriter; tensors through gguf.quants.quantize where gguf-py can quantize the type,
   otherwise random blocks with finite scales) with alignment 32, 64 and 256 and metadata of every value type.
   `ferry info --json` must report exactly what gguf-py's GGUFReader reads (version, alignment, keys in order, values,
   tensor names, types, ne, absolute offsets, byte sizes); `ferry info` (human form) must give the same value types,
   array element types and counts, and tensor table; `ferry dump` must equal gguf.quants.dequantize bit for bit for
   every tensor ferry can dequantize and refuse, naming the type, the others.
2. ferry writes GGUF files (ferry_interop_writer: GgufWriter + ferry::ref::quantize); GGUFReader must read back
   exactly the metadata and tensor bytes the writer meant (its sidecar expected.json), and the checks of 1 run on them;
   the same checks of 1 run on models from `ferry make-model`.
3. GgufWriter::copy_of of a gguf-py file must reproduce that file byte for byte.

Prints one line per check and exits 1 if any failed; exits 77 (CTest: skipped) when gguf or numpy cannot be imported,
or 1 if FERRY_REQUIRE_ORACLE=1 (CI and scripts/test.sh, which install them).
"""
import argparse
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys

try:
    import numpy as np
    import gguf
    import gguf.quants
    from gguf import GGMLQuantizationType as QT
    from gguf import GGUFValueType as VT
except ImportError as error:  # only a missing package skips; any other failure is a failure
    if os.environ.get("FERRY_REQUIRE_ORACLE") == "1":  # CI and scripts/test.sh install the packages
        print(f"FAIL: FERRY_REQUIRE_ORACLE=1 but the gguf/numpy packages cannot be imported ({error})")
        sys.exit(1)
    print(f"SKIP: cannot import the Python gguf/numpy packages ({error}); install them with: pip install gguf numpy")
    sys.exit(77)

# Types ferry dequantizes (ferry/ggml_type.hpp: dequantizable). gguf-py quantizes some of them; the rest get random
# blocks. IQ2_XXS is a type ferry lists but cannot dequantize: dump must refuse it by name.
FERRY_DEQUANTIZABLE = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                       "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]
NOT_DEQUANTIZABLE = ["IQ2_XXS"]

# Byte offsets of the half-precision scale fields in each block (gguf.md block layouts). Random blocks get finite
# random halves there so the dequantized values are ordinary numbers rather than NaN/Inf soup.
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
               "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
               "IQ4_NL": [0], "IQ4_XS": [0], "IQ2_XXS": [0]}

MAX_EXACT = 2 ** 53
TYPE_NAMES = "UINT8|INT8|UINT16|INT16|UINT32|INT32|FLOAT32|BOOL|STRING|ARRAY|UINT64|INT64|FLOAT64"


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {detail}" if detail else ""))
        sys.stdout.flush()
        return ok


def run(cmd, **kwargs):
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, **kwargs)


# ---- gguf-py side ------------------------------------------------------------------------------------------------

def random_halves(rng, n):
    return (rng.standard_normal(n) * 0.02).astype(np.float16).view(np.uint8).reshape(n, 2)


def random_blocks(rng, type_name, n_blocks):
    _, type_size = gguf.GGML_QUANT_SIZES[QT[type_name]]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in HALF_FIELDS[type_name]:
        blocks[:, offset:offset + 2] = random_halves(rng, n_blocks)
    return blocks


def special_floats(dtype):
    """Values where conversions go wrong: signed zero, subnormals, infinities, quiet NaNs with payloads."""
    if dtype == np.float16:
        bits = [0x8000, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x7e01, 0xfe00, 0x7bff]
        return np.array(bits, dtype=np.uint16).view(np.float16)
    bits = [0x80000000, 0x00000001, 0x007fffff, 0x7f800000, 0xff800000, 0x7fc12345, 0xffc00000, 0x7f7fffff]
    return np.array(bits, dtype=np.uint32).view(np.float32)


def shape_for(index, block_size):
    """ne (ne[0] first) with 1 to 4 dimensions and odd row counts; ne[0] a multiple of the block."""
    ne0 = block_size * (1 + index % 3) if block_size > 1 else 7 + 2 * (index % 4)
    return [[ne0, 3], [ne0, 5, 3], [ne0], [ne0, 3, 1, 2]][index % 4]


def add_every_value_type(w, rng):
    w.add_name("gguf-py interop \u2713 \"quoted\"\n")
    w.add_file_type(15)
    w.add_block_count(3)
    w.add_context_length(2048)
    w.add_embedding_length(96)
    w.add_head_count(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 65535)
    w.add_int16("test.i16", -32768)
    w.add_uint32("test.u32", 4294967295)
    w.add_int32("test.i32", -2147483648)
    w.add_float32("test.f32", 0.1)
    w.add_float32("test.f32_negative_zero", -0.0)
    w.add_float32("test.f32_inf", float("inf"))
    w.add_float32("test.f32_nan", float("nan"))
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "h\u00e9llo \u2713 tab\there \\ back")
    w.add_uint64("test.u64_max", 2 ** 64 - 1)
    w.add_uint64("test.u64_2p53", MAX_EXACT)
    w.add_uint64("test.u64_2p53_plus_1", MAX_EXACT + 1)
    w.add_int64("test.i64_min", -2 ** 63)
    w.add_int64("test.i64_minus_2p53", -MAX_EXACT)
    w.add_int64("test.i64_minus_2p53_minus_1", -MAX_EXACT - 1)
    w.add_float64("test.f64", 0.1)
    w.add_float64("test.f64_subnormal", 5e-324)
    arrays = {
        VT.UINT8: [0, 1, 255], VT.INT8: [-128, 0, 127], VT.UINT16: [0, 65535], VT.INT16: [-32768, 32767],
        VT.UINT32: [0, 4294967295], VT.INT32: [-2147483648, 2147483647],
        VT.UINT64: [0, MAX_EXACT, MAX_EXACT + 1, 2 ** 64 - 1], VT.INT64: [-2 ** 63, -MAX_EXACT - 1, -1, 2 ** 63 - 1],
        VT.FLOAT32: [float(x) for x in rng.standard_normal(9).astype(np.float32)],
        VT.FLOAT64: [float(x) for x in rng.standard_normal(5)] + [1e300],
        VT.BOOL: [True, False, True], VT.STRING: ["", "a", "\u00fc", "\u2581tok"],
    }
    for vtype, values in arrays.items():
        w.add_key_value(f"test.array_{vtype.name.lower()}", values, VT.ARRAY, sub_type=vtype)
    # A vocabulary: the long array `info` summarises.
    w.add_token_list([f"tok{i}" if i % 5 else f"\u2581w{i}" for i in range(32000)])


def write_gguf_py_file(path, alignment, seed):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch="llama")
    if alignment != gguf.GGUF_DEFAULT_ALIGNMENT:
        w.add_custom_alignment(alignment)
    add_every_value_type(w, rng)
    how = {}
    for index, type_name in enumerate(FERRY_DEQUANTIZABLE + NOT_DEQUANTIZABLE):
        qtype = QT[type_name]
        block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
        ne = shape_for(index + seed, block_size)
        np_shape = tuple(reversed(ne))
        n = int(np.prod(ne))
        weights = (rng.standard_normal(n) * 0.05 * np.where(rng.random(n) < 0.01, 8.0, 1.0)).astype(np.float32)
        name = f"blk.{index}.{type_name.lower()}.weight"
        if type_name in ("F32", "F16"):
            data = weights.astype(np.float32 if type_name == "F32" else np.float16)
            data[: len(special_floats(data.dtype))] = special_floats(data.dtype)
            w.add_tensor(name, data.reshape(np_shape))
            how[name] = "numpy"
            continue
        if type_name == "BF16":
            weights[:8] = special_floats(np.float32)
        try:
            data = gguf.quants.quantize(weights.reshape(np_shape), qtype)
            how[name] = "gguf.quants.quantize"
        except NotImplementedError:
            data = random_blocks(rng, type_name, n // block_size)
            data = data.reshape(gguf.quant_shape_to_byte_shape(np_shape, qtype))
            how[name] = "random blocks"
        w.add_tensor(name, data, raw_dtype=qtype)
    if seed == 0:
        # Larger than ferry dump's 4 Mi-element chunk, and not a multiple of it: the chunk seams are checked too.
        ne = [4160, 1025]
        weights = (rng.standard_normal(ne[0] * ne[1]) * 0.05).astype(np.float32).reshape(tuple(reversed(ne)))
        w.add_tensor("big.q5_1.weight", gguf.quants.quantize(weights, QT.Q5_1), raw_dtype=QT.Q5_1)
        how["big.q5_1.weight"] = "gguf.quants.quantize"
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return how


# ---- what ferry must report, derived from GGUFReader -------------------------------------------------------------

def element_type(field):
    """Element type of an ARRAY field; read from the raw parts so empty arrays have one too."""
    return VT(int(field.parts[3][0]))


def raw_values(field):
    """The field's values as numpy scalars (or bytes for strings), in order; a scalar field gives one."""
    main = field.types[0]
    sub = element_type(field) if main == VT.ARRAY else main
    if sub == VT.STRING:
        return [bytes(field.parts[i]) for i in field.data]
    return [field.parts[i][0] for i in field.data]


def expected_json_scalar(vtype, raw):
    if vtype == VT.STRING:
        return raw.decode("utf-8", errors="replace")
    if vtype == VT.BOOL:
        return bool(raw)
    if vtype in (VT.FLOAT32, VT.FLOAT64):
        x = float(raw)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    v = int(raw)
    return str(v) if abs(v) > MAX_EXACT else v


def expected_json_value(field):
    main = field.types[0]
    if main == VT.ARRAY:
        sub = element_type(field)
        return [expected_json_scalar(sub, r) for r in raw_values(field)]
    return expected_json_scalar(main, raw_values(field)[0])


def same_json(a, b):
    """Equality that tells 1 from 1.0 from True and -0.0 from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


def first_difference(a, b):
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if not same_json(x, y):
                return f"element {i}: ferry {x!r} ({type(x).__name__}) vs gguf-py {y!r} ({type(y).__name__})"
    return f"ferry {str(a)[:200]!r} ({type(a).__name__}) vs gguf-py {str(b)[:200]!r} ({type(b).__name__})"


def parse_human(text):
    """Metadata rows (key -> (type, value text)) and tensor rows from `ferry info`'s human form."""
    metadata, tensors, section = {}, [], None
    for line in text.splitlines():
        if not line.strip():
            section = None
            continue
        if re.match(r"^metadata \(\d+ keys\)$", line):
            section = "metadata"
            continue
        if re.match(r"^tensors \(\d+\)$", line):
            section = "tensors"
            continue
        if section == "metadata":
            m = re.match(rf"^  (\S+)\s+({TYPE_NAMES})(?:\s+(.*))?$", line)
            if m:
                metadata[m.group(1)] = (m.group(2), m.group(3) or "")
        elif section == "tensors":
            m = re.match(r"^\s+(\d+)\s+(\S+)\s+(\S+)\s+(.+?)\s+(\d+)\s+(\d+)$", line)
            if m:
                ne = [int(x) for x in m.group(4).split(" x ")]
                tensors.append((m.group(2), m.group(3), ne, int(m.group(5)), int(m.group(6))))
    return metadata, tensors


def check_info(ck, ferry, path, reader, label):
    result = run([ferry, "info", "--json", str(path)])
    if not ck.check(result.returncode == 0, f"{label}: ferry info --json exits 0", result.stderr.decode()[-500:]):
        return
    info = json.loads(result.stdout)
    ck.check(list(info.keys()) == ["version", "alignment", "metadata", "tensors"], f"{label}: JSON top-level keys",
             str(list(info.keys())))
    ck.check(info["version"] == int(reader.fields["GGUF.version"].parts[0][0]), f"{label}: version",
             f"{info['version']}")
    ck.check(info["alignment"] == int(reader.alignment), f"{label}: alignment",
             f"ferry {info['alignment']} vs gguf-py {reader.alignment}")

    fields = [f for key, f in reader.fields.items() if not key.startswith("GGUF.")]
    ck.check(list(info["metadata"].keys()) == [f.name for f in fields], f"{label}: metadata keys and their order",
             f"ferry {list(info['metadata'].keys())[:8]}... vs gguf-py {[f.name for f in fields][:8]}...")
    bad = []
    for f in fields:
        expected = expected_json_value(f)
        actual = info["metadata"].get(f.name, "<missing>")
        if not same_json(actual, expected):
            bad.append(f"{f.name}: {first_difference(actual, expected)}")
    ck.check(not bad, f"{label}: {len(fields)} metadata values", "; ".join(bad[:5]))

    tensor_bad = []
    if len(info["tensors"]) != len(reader.tensors):
        tensor_bad.append(f"count {len(info['tensors'])} vs {len(reader.tensors)}")
    for mine, theirs in zip(info["tensors"], reader.tensors):
        want = {"name": theirs.name, "type": theirs.tensor_type.name, "ne": [int(x) for x in theirs.shape],
                "file_offset": int(theirs.data_offset), "n_bytes": int(theirs.n_bytes)}
        if mine != want:
            tensor_bad.append(f"ferry {mine} vs gguf-py {want}")
    ck.check(not tensor_bad, f"{label}: {len(reader.tensors)} tensors (name, type, ne, file_offset, n_bytes)",
             "; ".join(tensor_bad[:3]))

    # The human form: value types and array element types/counts (the JSON form has no types), and the tensor table.
    result = run([ferry, "info", str(path)])
    if not ck.check(result.returncode == 0, f"{label}: ferry info exits 0", result.stderr.decode()[-500:]):
        return
    metadata, tensors = parse_human(result.stdout.decode("utf-8", errors="replace"))
    type_bad = []
    for f in fields:
        got = metadata.get(f.name)
        want_type = VT(f.types[0]).name
        if got is None or got[0] != want_type:
            type_bad.append(f"{f.name}: ferry {got and got[0]} vs gguf-py {want_type}")
            continue
        if f.types[0] == VT.ARRAY:
            prefix = f"[{element_type(f).name} x {int(f.parts[4][0])}]"
            if not got[1].startswith(prefix):
                type_bad.append(f"{f.name}: ferry {got[1][:40]!r} does not start with {prefix!r}")
    ck.check(not type_bad and len(metadata) == len(fields), f"{label}: human form value types of {len(fields)} keys",
             f"{len(metadata)} rows parsed; " + "; ".join(type_bad[:5]))
    want_rows = [(t.name, t.tensor_type.name, [int(x) for x in t.shape], int(t.data_offset), int(t.n_bytes))
                 for t in reader.tensors]
    ck.check(tensors == want_rows, f"{label}: human form tensor table",
             f"first rows ferry {tensors[:2]} vs gguf-py {want_rows[:2]}")
    vocab = reader.fields.get("tokenizer.ggml.tokens")
    if vocab is not None and len(vocab.data) > 8:
        text = metadata.get("tokenizer.ggml.tokens", ("", ""))[1]
        ck.check(text.startswith(f"[STRING x {len(vocab.data)}]") and f"({len(vocab.data) - 5} more)" in text
                 and len(text) < 400, f"{label}: long string array summarised", text[:120])


def check_dumps(ck, ferry, path, reader, workdir, label):
    out = os.path.join(workdir, "dump.f32")
    for t in reader.tensors:
        type_name = t.tensor_type.name
        what = f"{label}: dump {t.name} ({type_name}, ne {[int(x) for x in t.shape]})"
        if os.path.exists(out):
            os.remove(out)
        result = run([ferry, "dump", str(path), t.name, "-o", out])
        if type_name not in FERRY_DEQUANTIZABLE:
            stderr = result.stderr.decode()
            ck.check(result.returncode == 1 and type_name in stderr and t.name in stderr and not os.path.exists(out),
                     f"{what} is refused naming the type", f"exit {result.returncode}, stderr {stderr!r}")
            continue
        if not ck.check(result.returncode == 0, f"{what}: exits 0", result.stderr.decode()[-500:]):
            continue
        got = np.fromfile(out, dtype="<u4")
        want = np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype="<f4").reshape(-1).view("<u4")
        if got.shape != want.shape:
            ck.check(False, f"{what} equals gguf.quants.dequantize bit for bit",
                     f"{got.size} floats written, {want.size} expected")
            continue
        diff = np.nonzero(got != want)[0]
        detail = ""
        if diff.size:
            i = int(diff[0])
            detail = (f"{diff.size} of {got.size} differ; first at element {i}: ferry {got[i:i+1].view('<f4')[0]!r} "
                      f"(0x{int(got[i]):08x}) vs gguf-py {want[i:i+1].view('<f4')[0]!r} (0x{int(want[i]):08x})")
        ck.check(diff.size == 0, f"{what} equals gguf.quants.dequantize bit for bit", detail)


def check_dump_to_stdout(ck, ferry, path, reader, workdir, label):
    t = next(t for t in reader.tensors if t.tensor_type.name == "Q4_K")
    out = os.path.join(workdir, "dump_file.f32")
    a = run([ferry, "dump", str(path), t.name, "-o", out])
    b = run([ferry, "dump", str(path), t.name])
    ck.check(a.returncode == 0 and b.returncode == 0 and open(out, "rb").read() == b.stdout,
             f"{label}: dump to standard output equals dump -o",
             f"exits {a.returncode}/{b.returncode}, {len(b.stdout)} bytes on standard output")


# ---- ferry-written files -----------------------------------------------------------------------------------------

def check_written_by_ferry(ck, ferry, writer, workdir, alignment):
    label = f"ferry-written (alignment {alignment})"
    path = os.path.join(workdir, f"ferry_{alignment}.gguf")
    sidecar = os.path.join(workdir, f"ferry_{alignment}_expected")
    result = run([writer, "write", path, str(alignment), sidecar])
    if not ck.check(result.returncode == 0, f"{label}: ferry_interop_writer exits 0", result.stderr.decode()[-500:]):
        return
    expected = json.load(open(os.path.join(sidecar, "expected.json")))
    try:
        reader = gguf.GGUFReader(path)
    except Exception as error:  # gguf-py's own validation refused the file
        ck.check(False, f"{label}: GGUFReader opens it", repr(error))
        return
    ck.check(True, f"{label}: GGUFReader opens it")
    ck.check(int(reader.alignment) == alignment, f"{label}: GGUFReader alignment", f"{reader.alignment}")

    fields = [f for key, f in reader.fields.items() if not key.startswith("GGUF.")]
    if alignment != gguf.GGUF_DEFAULT_ALIGNMENT:  # the writer adds general.alignment itself
        align_field = reader.fields.get("general.alignment")
        ck.check(align_field is not None and align_field.types == [VT.UINT32]
                 and int(align_field.parts[-1][0]) == alignment, f"{label}: general.alignment is UINT32 {alignment}")
        fields = [f for f in fields if f.name != "general.alignment"]
    want_keys = [m["key"] for m in expected["metadata"]]
    ck.check([f.name for f in fields] == want_keys, f"{label}: metadata keys and their order",
             f"{[f.name for f in fields][:6]} vs {want_keys[:6]}")
    bad = []
    for f, m in zip(fields, expected["metadata"]):
        vtype = VT(f.types[0])
        if vtype.name != m["type"]:
            bad.append(f"{f.name}: type {vtype.name} vs {m['type']}")
            continue
        sub = vtype
        if vtype == VT.ARRAY:
            sub = element_type(f)
            if sub.name != m["element_type"]:
                bad.append(f"{f.name}: element type {sub.name} vs {m['element_type']}")
                continue
        got = [encode_raw(sub, r) for r in raw_values(f)]
        want = m["value"] if vtype == VT.ARRAY else [m["value"]]
        if got != want:
            bad.append(f"{f.name}: {got[:4]} vs {want[:4]}")
    ck.check(not bad, f"{label}: {len(fields)} metadata types and values as written", "; ".join(bad[:5]))

    tensor_bad = []
    if len(reader.tensors) != len(expected["tensors"]):
        tensor_bad.append(f"count {len(reader.tensors)} vs {len(expected['tensors'])}")
    for t, e in zip(reader.tensors, expected["tensors"]):
        data = open(os.path.join(sidecar, e["data"]), "rb").read()
        if t.name != e["name"] or t.tensor_type.name != e["type"] or [int(x) for x in t.shape] != e["ne"]:
            tensor_bad.append(f"{t.name} {t.tensor_type.name} {list(t.shape)} vs {e['name']} {e['type']} {e['ne']}")
        elif t.data.tobytes() != data or int(t.n_bytes) != len(data):
            tensor_bad.append(f"{t.name}: bytes differ from what was written")
        elif t.data_offset % alignment != 0:
            tensor_bad.append(f"{t.name}: offset {t.data_offset} not a multiple of {alignment}")
    ck.check(not tensor_bad, f"{label}: {len(expected['tensors'])} tensors' names, types, ne, aligned bytes",
             "; ".join(tensor_bad[:3]))
    check_info(ck, ferry, path, reader, label)
    check_dumps(ck, ferry, path, reader, workdir, label)


def check_make_model(ck, ferry, workdir, file_type):
    """A model from `ferry make-model` (ferry's own model writer): gguf-py must read it as ferry does."""
    label = f"ferry make-model (tiny, {file_type})"
    path = os.path.join(workdir, f"make_model_{file_type}.gguf")
    result = run([ferry, "make-model", "--arch", "llama", "--preset", "tiny", "--type", file_type, "--seed", "5",
                  "-o", path])
    if not ck.check(result.returncode == 0, f"{label}: exits 0", result.stderr.decode()[-500:]):
        return
    try:
        reader = gguf.GGUFReader(path)
    except Exception as error:  # gguf-py's own validation refused the file
        ck.check(False, f"{label}: GGUFReader opens it", repr(error))
        return
    ck.check(True, f"{label}: GGUFReader opens it")
    check_info(ck, ferry, path, reader, label)
    check_dumps(ck, ferry, path, reader, workdir, label)


def encode_raw(vtype, raw):
    """The sidecar's encoding: integers in decimal, floats as their bit patterns, bools as 0/1, strings as text."""
    if vtype == VT.STRING:
        return raw.decode("utf-8")
    if vtype == VT.FLOAT32:
        return str(int(np.float32(raw).view(np.uint32)))
    if vtype == VT.FLOAT64:
        return str(int(np.float64(raw).view(np.uint64)))
    if vtype == VT.BOOL:
        return "1" if bool(raw) else "0"
    return str(int(raw))


def check_copy(ck, writer, source, workdir):
    out = os.path.join(workdir, "copy_" + os.path.basename(source))
    result = run([writer, "copy", str(source), out])
    if not ck.check(result.returncode == 0, f"copy_of {os.path.basename(source)}: exits 0",
                    result.stderr.decode()[-500:]):
        return
    a, b = open(source, "rb").read(), open(out, "rb").read()
    where = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    ck.check(a == b, f"copy_of {os.path.basename(source)}: byte-identical to the gguf-py original",
             f"sizes {len(a)} vs {len(b)}, first difference at byte {where}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", required=True)
    parser.add_argument("--writer", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    try:
        from importlib.metadata import version
        gguf_version = version("gguf")
    except Exception:  # an uninstalled checkout of gguf-py has no distribution metadata
        gguf_version = "(version unknown)"
    print(f"gguf-py {gguf_version} from {os.path.dirname(gguf.__file__)}, numpy {np.__version__}")
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    ck = Checker()

    for seed, alignment in enumerate([32, 64, 256]):
        label = f"gguf-py-written (alignment {alignment})"
        path = os.path.join(args.workdir, f"gguf_py_{alignment}.gguf")
        how = write_gguf_py_file(path, alignment, seed)
        print(f"wrote {path}: " + ", ".join(f"{name} by {source}" for name, source in how.items()))
        reader = gguf.GGUFReader(path)
        check_info(ck, args.ferry, path, reader, label)
        check_dumps(ck, args.ferry, path, reader, args.workdir, label)
        if seed == 0:
            check_dump_to_stdout(ck, args.ferry, path, reader, args.workdir, label)
        check_copy(ck, args.writer, path, args.workdir)

    for alignment in [32, 256]:
        check_written_by_ferry(ck, args.ferry, args.writer, args.workdir, alignment)
    for file_type in ["q4_k_m", "q4_0"]:
        check_make_model(ck, args.ferry, args.workdir, file_type)

    print(f"{ck.passed + ck.failed} checks: {ck.passed} passed, {ck.failed} failed")
    if ck.failed == 0:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 1 if ck.failed else 0


if __name__ == "__main__":
    sys.exit(main())
