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
    "(notebook 10,", "(notebook 11,", "issue 19", "Table 5", "`cms_periods[l]`",
    "5 seeds for the main arms",  # the reference comparison's design; its seeds are generated in the block
)
WORDS = {1: "one", 2: "two", 3: "three"}


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(HEADING) + len(HEADING)
    end = min(i for i in (text.find("\n## ", start), text.find(R.README_BEGIN, start)) if i >= 0)
    return " ".join(text[start:end].split())


def _experiment(name: str) -> R.Experiment:
    exp = R.load_experiment(RESULTS_ROOT / name)
    assert exp is not None, f"results/{name} is gone: update the README's measured section and this test"
    return exp


def _rows(name: str) -> dict[str, dict]:
    return {r["model"]: r for r in R.longctx_rows(_experiment(name))}


def _per_seed(name: str, model: str, length: int) -> list[float]:
    return [p["accuracy"][str(length)] for p in _experiment(name).runs[model]["per_seed"]]


def _mean(row: dict, length: int) -> str:
    return f"{row['acc'][length]['mean']:.2f}"


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
    out.append(f"its {100 * CONFIDENCE:.0f}% interval and verdict, is generated under the forgetting table")
    # long context
    niah, mqar = _rows("longctx_s-niah_laptop"), _rows("longctx_mqar_laptop")
    lc = [e for e in R.load_all() if e.kind == "longctx" and e.name.endswith("_laptop")]  # the bullet's runs
    lseeds = sorted({s for e in lc for r in R.longctx_rows(e) for s in r["seeds"]})
    out.append(f"(notebook 11, seeds {lseeds[0]}-{lseeds[-1]};")
    static = [r for e in lc for name, r in e.runs.items() if name.startswith("hope-static-cms_steps")]
    periods = {tuple(r["config"]["cms_periods"]) for r in static}
    assert len(periods) == 1
    out.append("periods of " + ", ".join(map(str, periods.pop())) + " optimizer steps")
    params = {r["config"]["params"] for e in lc for r in e.runs.values()}
    assert len(params) == 1 and abs(params.pop() - 60_000) <= 5_000
    out.append("at ~60k parameters")
    t = niah["transformer"]
    assert t["acc"][t["at_train"]]["mean"] >= 0.95 and niah["hope-attention-static-cms_steps1-4-16"]["acc"][32]["mean"] >= 0.95
    assert all(r["acc"][r["at_train"]]["mean"] < 0.2 for m, r in niah.items() if m.startswith(("titans", "hope-static")))
    out.append(f"at the training length ({t['train_max']}) and all models fall towards chance at {t['longest']}")
    m = mqar  # per-query recall at the training length (32 tokens)
    out.append(f"per-query recall at {m['transformer']['train_max']} tokens: Transformer {_mean(m['transformer'], 32)}, "
               f"Hope-Attention {_mean(m['hope-attention-static-cms_steps1-4-16'], 32)}, "
               f"HOPE {_mean(m['hope-static-cms_steps1-4-16'], 32)}, Titans {_mean(m['titans'], 32)}")
    chance = _experiment("longctx_mqar_laptop").runs["transformer"]["summary"]["chance"]
    out.append(f"chance {chance:.2f}; all near chance at {m['transformer']['longest']}")
    assert all(r["acc"][r["longest"]]["mean"] < 2 * chance for r in m.values())
    levels = _rows("longctx_s-niah_cms_laptop")
    n_levels = sorted(len(r["model"].split("steps")[1].split("-")) for r in levels.values())
    out.append(f"The number of CMS levels ({n_levels[0]}-{n_levels[-1]})")
    exp = _experiment("longctx_s-niah_cms_laptop")
    short = [name for name, r in exp.runs.items() if sum(p["accuracy"]["32"] < 0.9 for p in r["per_seed"]) == 1]
    assert all(sum(p["accuracy"]["32"] < 0.9 for p in r["per_seed"]) <= 1 for r in exp.runs.values())
    out.append(f"at the training length, {len(short)} of the {len(exp.runs)} variants lose one seed")
    # formal languages (per seed, at the training length 16 and at 4x)
    tr, hope = "transformer", "hope-static-cms_steps1-4-16"
    learned = {lang: sum(a >= 0.9 for a in _per_seed(f"longctx_{lang}_laptop", tr, 16)) for lang in ("anbn", "anbncn", "abab")}
    assert learned["anbn"] == learned["anbncn"] == 3
    out.append(f"the Transformer learns a^n b^n and a^n b^n c^n at the training length on every seed, and (abab)* on "
               f"{WORDS[learned['abab']]} seed")
    partly = {lang: sum(a >= 0.8 for a in _per_seed(f"longctx_{lang}_laptop", hope, 16)) for lang in ("anbn", "anbncn")}
    out.append(f"HOPE partly learns a^n b^n on {WORDS[partly['anbn']]} seeds and a^n b^n c^n on {WORDS[partly['anbncn']]};")
    for lang in ("aa", "parity", "shuffle2"):
        assert all(a < 0.6 for m_ in (tr, hope) for a in _per_seed(f"longctx_{lang}_laptop", m_, 16)), lang
    assert all(a < 0.6 for a in _per_seed("longctx_abab_laptop", hope, 16))
    row = _rows("longctx_anbn_laptop")[tr]
    out.append(f"At {row['longest'] // row['train_max']}x longer strings")
    kept = [sum(a >= 0.8 for a in _per_seed(f"longctx_{lang}_laptop", tr, 64)) for lang in ("anbn", "abab")]
    assert kept == [1, 1]
    out.append("one Transformer seed keeps most of its accuracy on a^n b^n and on (abab)*")
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
