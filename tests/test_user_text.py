"""What users read speaks of the tool, not of the project's issue tracker."""

from __future__ import annotations

import re

from analysis.benchmarks import bench_markdown, evaluate_targets, targets_text
from analysis.benchmarks.codec import codec_rows, make_datasets, reference_bits
from analysis.cli import build_parser

ISSUE = re.compile(r"\bissues?\b", re.IGNORECASE)


def _subparsers(parser):
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]  # noqa: SLF001
    return action.choices


def test_no_help_text_speaks_of_issues():
    parser = build_parser()
    texts = {"huffquant": parser.format_help()}
    texts.update({name: p.format_help() for name, p in _subparsers(parser).items()})
    assert len(texts) >= 10
    for name, text in texts.items():
        assert not ISSUE.search(text), (name, ISSUE.search(text))


def test_bench_report_states_its_targets_without_issue_numbers():
    datasets = make_datasets(2000)
    refs = {k: reference_bits(v) for k, v in datasets.items()}
    rows = codec_rows(datasets, 1)
    result = {"rows": rows, "references": refs, "targets": evaluate_targets(rows, refs), "quant_rows": [],
              "pipeline_rows": [], "setup": {"size": 2000, "repeats": 1, "threads": "single thread", "machine": "m",
                                             "python": "3", "numpy": "2", "date": "d"}}
    text = bench_markdown(result)
    assert "## Targets\n" in text and targets_text() in text
    assert not ISSUE.search(text)
