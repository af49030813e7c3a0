# Make xlir's bundled sample: paragraph 0 of each of the 48 XQuAD articles, in six languages,
# with the questions about those paragraphs (en, de) and their qrels.
import json
import pathlib
import sys

src = pathlib.Path(sys.argv[1])
dst = pathlib.Path(sys.argv[2])
LANGS = ["en", "de", "es", "ru", "zh", "ar"]
for lang in LANGS:
    with (
        open(src / "corpus" / f"{lang}.jsonl", encoding="utf-8") as f,
        open(dst / "corpus" / f"{lang}.jsonl", "w", encoding="utf-8") as out,
    ):
        for line in f:
            doc = json.loads(line)
            if doc["id"].endswith("p00"):
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
keep = set()
for lang in LANGS:
    lines = [
        line
        for line in open(src / "qrels" / f"{lang}.txt", encoding="utf-8")
        if line.split()[2].endswith("p00") and line[:3] in ("en-", "de-")
    ]
    (dst / "qrels" / f"{lang}.txt").write_text("".join(lines), encoding="utf-8")
    keep |= {line.split()[0] for line in lines}
for lang in ["en", "de"]:
    lines = [
        line
        for line in open(src / "queries" / f"{lang}.tsv", encoding="utf-8")
        if line.split("\t")[0] in keep
    ]
    (dst / "queries" / f"{lang}.tsv").write_text("".join(lines), encoding="utf-8")
