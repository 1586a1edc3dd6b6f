"""Token ids from OpenAI's own CLIP tokenizer, for cross-checking sightline's.

Usage: reference.py CLIP_DIR STRINGS_JSON
CLIP_DIR holds `simple_tokenizer.py` and `bpe_simple_vocab_16e6.txt.gz` from the
`openai-clip` source package on PyPI (scripts/setup --test puts them under
~/.cache/sightline/clip-ref). It needs `ftfy` and `regex`, nothing else: the
module is loaded by path so torch is never imported. Prints one JSON list of
id lists, each `[start] + ids + [end]` cut to 77 the way `clip.tokenize(...,
truncate=True)` does.
"""
import importlib.util
import json
import sys

clip_dir, strings_path = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("simple_tokenizer", f"{clip_dir}/simple_tokenizer.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
tok = module.SimpleTokenizer(f"{clip_dir}/bpe_simple_vocab_16e6.txt.gz")
sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
context = 77
out = []
for text in json.load(open(strings_path, encoding="utf-8")):
    ids = [sot] + tok.encode(text) + [eot]
    if len(ids) > context:
        ids = ids[:context]
        ids[-1] = eot
    out.append(ids)
json.dump(out, sys.stdout)
