"""Every number in the README's "Measured so far" section comes from a committed results file
(issue 19 item 5): each is either generated into the results block by ``nlteach.results`` or
checked here against the file that holds it. A number that is neither fails the test; numbers that
are not measurements (notebook, issue and equation numbers, the paper's table, the machine) are
listed in NOT_MEASURED; digits inside names (fp32, CLINC150, shuffle2) are not numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nlteach import results as R
from nlteach.experiments import lm_reference
from nlteach.models import ModelConfig
from nlteach.runs import RESULTS_ROOT
from nlteach.runs.stats import CONFIDENCE

README = Path(__file__).resolve().parent.parent / "README.md"
HEADING = "## Measured so far (honest status)"

# Phrases whose numbers name something rather than measure it (whitespace normalised).
NOT_MEASURED = (
    "2-core CPU", "arXiv v1", "notebook 03", "(issue 17)", "Eq. 71", "notebooks 09 and 11", "notebook 09, section 5", "notebook 09's",
    "issues 18 and 19", "(notebooks 08-09)", "(issue 18, notebook 09)", "(notebook 06)", "(notebook 07)",
    "(notebook 10,", "(notebook 11)", "issue 19", "Table 5", "`cms_periods[l]`",
    "5 seeds for the main arms",  # the reference comparison's design; its seeds are generated in the block
)


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(HEADING) + len(HEADING)
    end = min(i for i in (text.find("\n## ", start), text.find(R.README_BEGIN, start)) if i >= 0)
    return " ".join(text[start:end].split())


def _experiment(name: str) -> R.Experiment:
    exp = R.load_experiment(RESULTS_ROOT / name)
    assert exp is not None, f"results/{name} is gone: update the README's measured section and this test"
    return exp


def _expected_phrases() -> list[str]:
    """The section's measured phrases, written from the committed files."""
    out = []
    # HOPE's bullets (the lead's): defaults, the paired comparison's seeds, the reference budget's rule
    out.append("default " + ", ".join(map(str, ModelConfig().cms_periods)))
    cms = _experiment("lm_hope_cms_laptop")
    per_seed = next(iter(cms.runs.values()))["per_seed"]
    seeds = {lab: {p["seed"] for p in per_seed if p.get("label") == lab} for lab in ("hope", "hope-static-cms")}
    out.append(f"{len(seeds['hope'] & seeds['hope-static-cms'])} paired seeds")
    out.append(f"within {100 * lm_reference.PARAM_TOLERANCE:.0f}% of")
    out.append(f"paired {100 * CONFIDENCE:.0f}% intervals")
    # forgetting: seeds of every continual file; the numbers themselves are generated in the block
    cont = [e for e in R.load_all() if e.kind == "continual"]
    cseeds = sorted({p["seed"] for e in cont for r in e.runs.values() for p in r["per_seed"]})
    out.append(f"(notebook 10, seeds {cseeds[0]}-{cseeds[-1]})")
    assert cseeds == list(range(cseeds[0], cseeds[-1] + 1))
    out.append(f"its {100 * CONFIDENCE:.0f}% interval and verdict, are generated under the")
    return out


def test_every_number_in_the_measured_section_is_generated_or_checked():
    section = _section()
    rest = section
    try:
        expected = _expected_phrases()
    except KeyError as e:  # a rerun renamed a run or a length: the sentences and their checks need updating
        raise AssertionError(f"the results the README's measured section quotes changed ({e!r} is gone): update "
                             "the section and tests/test_readme_measured.py") from e
    for phrase in expected:
        assert phrase in section, (f"README's measured section does not say {phrase!r}, which the committed results "
                                   "give: update the sentence (or its check in tests/test_readme_measured.py)")
        rest = rest.replace(phrase, " ")
    for phrase in NOT_MEASURED:
        rest = rest.replace(phrase, " ")
    left = [rest[max(0, m.start() - 40):m.end() + 40] for m in re.finditer(r"(?<![A-Za-z_\d])\d+", rest)]
    assert not left, ("numbers in README's measured section that are neither generated from nor checked against "
                      f"a results file (remove them, or check them here): {left}")


def test_the_forgetting_claims_are_generated_into_the_block():
    block = R.readme_section()
    if not [e for e in R.load_all() if e.kind == "continual"]:
        pytest.skip("no continual results committed")
    assert "Each learner minus plain fine-tuning (finetune), paired by seed" in block
    assert "| method | measure |" in block


def test_paired_differences_against_fine_tuning(tmp_path):
    def write(method, mats, dataset="split-digits"):
        f = tmp_path / f"continual_{dataset}_laptop" / method / "results.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"config": {"dataset": dataset, "method": method},
                                 "per_seed": [{"seed": s, "acc_matrix": m} for s, m in enumerate(mats)]}))

    write("finetune", [[[0.9, 0.0], [0.5, 0.8]], [[0.9, 0.0], [0.4, 0.8]], [[0.9, 0.0], [0.6, 0.8]]])
    write("replay", [[[0.9, 0.0], [0.8, 0.8]], [[0.9, 0.0], [0.7, 0.8]], [[0.9, 0.0], [0.85, 0.8]]])  # +0.3, +0.3, +0.25
    write("joint", [[[0.9, 0.9], [0.9, 0.9]]])  # the upper bound: not paired
    rows = R.continual_paired_rows(R.load_all(tmp_path))
    assert [r["method"] for r in rows] == ["replay"] and rows[0]["seeds"] == [0, 1, 2]
    assert rows[0]["bwt"]["mean"] == pytest.approx((0.3 + 0.3 + 0.25) / 3)
    assert rows[0]["avg_acc"]["mean"] == pytest.approx((0.3 + 0.3 + 0.25) / 6)
    assert rows[0]["bwt"]["sign"] == 1
    text = "\n".join(R.continual_paired_lines(R.load_all(tmp_path)))
    assert "| replay | BWT | +0.283 [" in text and "] better † |" in text  # no provenance: marked
    assert R.continual_paired_lines([]) == []
