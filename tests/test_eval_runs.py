"""``xlir eval``: runs, scores, fusion, comparison, grids and pools over the bundled sample with real BM25."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from xlir.eval.cli import app
from xlir.eval.compare import compare_runs, fuse_runs
from xlir.eval.grid import language_bias
from xlir.eval.metrics import paired_ttest
from xlir.eval.runner import latency_stats, run_index
from xlir.eval.trec import read_qrels, read_run, read_topics
from xlir.indexing.ranking import Hit, Ranking
from xlir.retrieval.fusion import normalized_fusion, rrf

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "xlir" / "data" / "sample"
runner = CliRunner()


def invoke(*args: str) -> str:
    """Run ``xlir.eval.cli.app`` with ``args``; assert it succeeded and return its stdout."""
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


@pytest.fixture(scope="module")
def runs(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three run files of the English questions: English documents only, German only, all six languages."""
    folder = tmp_path_factory.mktemp("runs")
    paths = {}
    for name, langs in {"en": ["-l", "en"], "de": ["-l", "de"], "all": []}.items():
        paths[name] = folder / f"{name}.trec"
        invoke(
            "run", sample_index, "--topics", SAMPLE / "queries" / "en.tsv", *langs, "-k", "100",
            "--out", paths[name], "--tag", f"en-{name}",
        )  # fmt: skip
    return paths


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval-cache")


def test_run_then_score_round_trip(sample_index: Path, runs: dict[str, Path], tmp_path: Path) -> None:
    lines = runs["en"].read_text().splitlines()
    first = lines[0].split()
    assert first[0] == "en-56beb4343aeaaa14008c925b" and first[1] == "Q0" and first[3] == "1"
    assert first[2] == "en-a00p00"  # "How many points did the Panthers defense surrender?" -> its paragraph
    assert {line.split()[5] for line in lines} == {"en-en"}
    assert all(line.split()[2].startswith("en-") for line in lines)  # --lang en: English documents only

    report = json.loads(
        invoke("score", runs["en"], "--qrels", SAMPLE / "qrels" / "en.txt", "--per-query", "--json")
    )
    assert report["num_queries"] == 271
    assert report["aggregates"]["nDCG@10"] > 0.8  # monolingual English BM25 over 48 paragraphs
    per_query = report["per_query"]["nDCG@10"]
    assert len(per_query) == 271 and per_query["en-56beb4343aeaaa14008c925b"] == 1.0
    assert math.isclose(sum(per_query.values()) / 271, report["aggregates"]["nDCG@10"])
    assert set(report["aggregates"]) == {"nDCG@10", "RR@10", "R@100", "AP"}

    # The run file holds what the Python API returns for the same topics.
    topics = read_topics(SAMPLE / "queries" / "en.tsv")
    direct = run_index(sample_index, topics, k=100, langs=["en"])
    assert {qid: r.docids for qid, r in read_run(runs["en"]).items()} == {
        qid: r.docids for qid, r in direct.rankings.items() if r.hits
    }
    assert direct.latency.queries == 271 and 0 < direct.latency.p50_ms <= direct.latency.p95_ms

    table = invoke("score", runs["en"], "--qrels", SAMPLE / "qrels" / "en.txt", "-m", "nDCG@10", "-m", "P@1")
    assert "nDCG@10" in table and "P@1" in table and "271" in table


def test_run_reports_latency(sample_index: Path, tmp_path: Path) -> None:
    report = json.loads(
        invoke(
            "run",
            sample_index,
            "--topics",
            SAMPLE / "queries" / "de.tsv",
            "-c",
            "bm25",
            "-k",
            "5",
            "--out",
            tmp_path / "de.trec",
            "--json",
        )  # fmt: skip
    )
    latency = report["latency"]
    assert report["queries"] == 271 and 271 * 4 < report["hits"] <= 271 * 5
    assert report["tag"] == f"{sample_index.name}-bm25"
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["max_ms"]
    assert latency["amortized"] is False
    stats = latency_stats([0.001, 0.002, 0.003, 0.004])
    assert stats.p50_ms == pytest.approx(2.5) and stats.queries_per_second == pytest.approx(400.0)


def test_fuse_equals_rrf_of_the_same_rankings(runs: dict[str, Path], tmp_path: Path) -> None:
    fused_path = tmp_path / "fused.trec"
    invoke(
        "fuse", runs["en"], runs["de"], "--method", "rrf", "--rrf-k", "60", "--out", fused_path, "--tag", "fz"
    )
    fused = read_run(fused_path)
    en, de = read_run(runs["en"]), read_run(runs["de"])
    assert set(fused) == set(en) | set(de)
    for qid in fused:
        inputs = [run[qid] for run in (en, de) if qid in run]
        expected = rrf(inputs, k=60, limit=1000)
        assert fused[qid].docids == expected.docids
        assert [hit.score for hit in fused[qid]] == [hit.score for hit in expected]
    both = next(qid for qid in fused if qid in en and qid in de)
    top = fused[both][0]
    assert top.score == pytest.approx(1 / 61 + 1 / 61) or top.score <= 2 / 61  # best possible: 1st in both

    # Weighted min-max fusion of the same files equals normalized_fusion with the runs' tags as names.
    invoke(
        "fuse", runs["en"], runs["all"], "--method", "minmax", "--weight", "en-en=2", "--weight", "en-all=0.5",
        "--out", tmp_path / "mm.trec",
    )  # fmt: skip
    mm = read_run(tmp_path / "mm.trec")
    all_ = read_run(runs["all"])
    for qid in list(mm)[:20]:
        inputs = [
            replace(run[qid], source=tag) for tag, run in (("en-en", en), ("en-all", all_)) if qid in run
        ]
        expected = normalized_fusion(
            inputs, weights={"en-en": 2.0, "en-all": 0.5}, method="minmax", limit=1000
        )
        assert mm[qid].docids == expected.docids


def test_compare_reports_paired_p_values(runs: dict[str, Path]) -> None:
    qrels_path = SAMPLE / "qrels" / "en.txt"
    report = json.loads(
        invoke(
            "compare",
            runs["all"],
            runs["en"],
            "--qrels",
            qrels_path,
            "-m",
            "nDCG@10",
            "--trials",
            "2000",
            "--json",
        )
    )
    assert report["baseline"] == "en-all" and report["num_queries"] == 271
    system = report["systems"][1]
    assert system["name"] == "en-en"
    assert 0.0 <= system["ttest_p"]["nDCG@10"] <= 1.0 and 0.0 < system["randomization_p"]["nDCG@10"] <= 1.0
    # Judged on English documents, restricting to English cannot lose: it wins, significantly.
    assert system["delta"]["nDCG@10"] > 0
    assert system["ttest_p"]["nDCG@10"] < 0.05 and system["randomization_p"]["nDCG@10"] < 0.05

    # The p-value is the paired t-test over the two systems' per-query values.
    loaded = {"all": read_run(runs["all"]), "en": read_run(runs["en"])}
    qrels = {q: d for q, d in read_qrels(qrels_path).items() if q.startswith("en-")}
    comparison = compare_runs(loaded, qrels, ["nDCG@10"], trials=500)
    a, b = (s.result.per_query["nDCG@10"] for s in comparison.systems)
    assert comparison.systems[1].ttest_p["nDCG@10"] == pytest.approx(paired_ttest(b, a))
    assert comparison.systems[1].ttest_p["nDCG@10"] == pytest.approx(system["ttest_p"]["nDCG@10"])

    table = invoke(
        "compare", runs["all"], runs["en"], "--qrels", qrels_path, "--baseline", str(runs["en"]), "--markdown"
    )
    assert table.startswith("| system | nDCG@10 | RR@10 | R@100 | AP |")
    assert "en-en (baseline)" in table and "t p" in table and "rand p" in table


def test_grid_diagonal_beats_off_diagonal_and_plots(cache: Path, tmp_path: Path) -> None:
    plot, out_dir = tmp_path / "grid.png", tmp_path / "grid"
    report = json.loads(
        invoke(
            "grid",
            SAMPLE,
            "--queries",
            "en,de",
            "--docs",
            "en",
            "--docs",
            "de",
            "--channel",
            "bm25",
            "--work-dir",
            cache,
            "--out-dir",
            out_dir,
            "--plot",
            plot,
            "--json",
        )  # fmt: skip
    )
    cells = {(c["query_lang"], c["doc_lang"]): c["nDCG@10"] for c in report["cells"]}
    assert set(cells) == {("en", "en"), ("en", "de"), ("de", "en"), ("de", "de")}
    for x, y in (("en", "de"), ("de", "en")):
        assert cells[(x, x)] > cells[(x, y)]  # same row: own-language documents win
        assert cells[(y, y)] > cells[(x, y)]  # same column: own-language queries win
    assert cells[("en", "en")] > 0.8
    assert all(c["queries"] == 271 and c["latency"]["p50_ms"] > 0 for c in report["cells"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 1000
    assert (out_dir / "grid.md").read_text().startswith("| nDCG@10: queries \\ documents | en | de |")
    assert len(read_run(out_dir / "sample.de-en.bm25.trec")) > 100

    # One index per document language, reused by a second grid.
    built = sorted(path.name for path in cache.iterdir() if path.name.startswith("sample-"))
    table = invoke("grid", SAMPLE, "--queries", "de", "--docs", "de", "--work-dir", cache)
    assert sorted(path.name for path in cache.iterdir() if path.name.startswith("sample-")) == built
    assert len([name for name in built if "pool" not in name]) == 2
    assert f"{cells[('de', 'de')]:.3f}" in table


def test_pool_reports_language_bias(cache: Path) -> None:
    report = json.loads(invoke("pool", SAMPLE, "-c", "bm25", "--work-dir", cache, "--json"))
    assert report["documents"] == {lang: 48 for lang in ("ar", "de", "en", "es", "ru", "zh")}
    rows = {row["query_lang"]: row for row in report["rows"]}
    assert set(rows) == {"en", "de"}
    for lang, row in rows.items():
        bias = row["language_bias"]
        assert row["queries"] == 271 and 0.0 < row["nDCG@10"] <= 1.0
        assert 0.0 <= bias["top_own_share"] <= 1.0 and 0.0 <= bias["rel_own_share"] <= 1.0
        assert bias["rel_own_share"] == pytest.approx(1 / 6)  # one relevant paragraph per language
        # BM25 matches words, so the query's own language dominates its top 10: bias towards it.
        assert bias["top_own_share"] > 0.5, lang
        assert 0.0 < bias["bias"] <= 1.0
        assert bias["excess"] == pytest.approx(bias["top_own_share"] - 1 / 6)
        assert bias["bias"] == pytest.approx(bias["excess"] / (1 - 1 / 6))
        assert row["latency"]["p95_ms"] >= row["latency"]["p50_ms"] > 0

    only = json.loads(
        invoke("pool", SAMPLE, "--langs", "en,de", "--queries", "de", "--work-dir", cache, "--json")
    )
    assert only["corpora"] == ["de", "en"] and [r["query_lang"] for r in only["rows"]] == ["de"]
    assert only["rows"][0]["language_bias"]["rel_own_share"] == pytest.approx(0.5)
    markdown = invoke(
        "pool", SAMPLE, "--langs", "en,de", "--queries", "de", "--work-dir", cache, "--markdown"
    )
    assert "relevant own-language share" in markdown and "bias = the excess divided by" in markdown


def test_language_bias_by_hand() -> None:
    def ranking(*docs: tuple[str, str | None]) -> Ranking:
        return Ranking(
            "t", tuple(Hit(docid=d, score=10.0 - i, lang=lang) for i, (d, lang) in enumerate(docs))
        )

    langs = {"en1": "en", "de1": "de", "zh1": "zh", "en2": "en"}
    qrels = {"q1": {"en1": 1, "de1": 1, "zh1": 1, "en2": 0}, "q2": {"de1": 1}}
    run = {
        "q1": ranking(("en1", "en"), ("en2", None), ("de1", "de"), ("zh1", "zh")),
        "q2": ranking(("de1", "de")),
    }
    bias = language_bias(run, qrels, "en", langs)
    # top-10 own share: q1 2/4 (en2's language comes from the map), q2 0/1 -> 0.25; relevant: q1 1/3, q2 0.
    assert bias.top_own_share == pytest.approx(0.25) and bias.rel_own_share == pytest.approx(1 / 6)
    assert bias.excess == pytest.approx(1 / 12) and bias.bias == pytest.approx((1 / 12) / (5 / 6))
    assert bias.queries == 2 and bias.ratio == pytest.approx(1.5)
    under = language_bias({"q2": ranking(("en1", "en"))}, {"q2": {"de1": 1, "en1": 1}}, "de", langs)
    assert under.top_own_share == 0.0 and under.bias == pytest.approx(
        -1.0
    )  # nothing in German, half relevant


def test_fuse_runs_rejects_bad_input() -> None:
    one = {"q": Ranking.from_scores("a", [("d", 1.0)])}
    with pytest.raises(ValueError, match="at least 2 runs"):
        fuse_runs({"a": one})
    with pytest.raises(ValueError, match="unknown run"):
        fuse_runs({"a": one, "b": one}, "minmax", weights={"c": 1.0})
    fused = fuse_runs({"a": one, "b": {"q": Ranking.from_scores("x", [("e", 1.0)])}}, "zscore")
    assert sorted(fused["q"].docids) == ["d", "e"]


def test_user_errors_are_one_clear_line(sample_index: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", str(sample_index), "--topics", str(tmp_path / "nope.tsv"), "--out", "x"]
    )
    assert result.exit_code == 2 and "topics file" in result.output and "does not exist" in result.output
    result = runner.invoke(
        app, ["grid", str(SAMPLE), "--queries", "en", "--docs", "fr", "--work-dir", str(tmp_path)]
    )
    assert result.exit_code == 2 and "no 'fr' corpus" in result.output and "ar, de, en" in result.output
    result = runner.invoke(app, ["grid", str(SAMPLE), "--queries", "en", "--docs", "en", "--plot", "g.svg"])
    assert result.exit_code == 2 and ".png" in result.output
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1\n")
    result = runner.invoke(app, ["score", str(bad), "--qrels", str(SAMPLE / "qrels" / "en.txt")])
    assert result.exit_code == 2 and "bad.trec:1: expected 6 fields" in result.output


def test_mounted_and_as_a_real_process(runs: dict[str, Path]) -> None:
    root = typer.Typer()
    root.add_typer(app, name="eval")

    @root.command()
    def version() -> None:  # a second command, so that "eval" is a sub-command as in xlir
        typer.echo("0")

    result = runner.invoke(root, ["eval", "--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in ("run", "score", "fuse", "compare", "grid", "pool"))

    command = [sys.executable, "-c", "from xlir.eval.cli import app; app()"]
    args = ["score", str(runs["en"]), "--qrels", str(SAMPLE / "qrels" / "en.txt"), "-m", "nDCG@10", "--json"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["aggregates"]["nDCG@10"] > 0.8
    done = subprocess.run(
        [*command, "fuse", str(runs["en"]), "--out", "x"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 2 and "at least 2 runs" in done.stderr
