"""`ml-assets check` judges the recorded outcomes against the current materializations: a check that
never ran, failed, or ran before the asset's latest materialization is not a pass."""

import xml.etree.ElementTree as ET

import dagster as dg

from ml_assets.asset_checks import CheckOutcome, junit_xml, recorded_outcomes


@dg.asset(check_specs=[dg.AssetCheckSpec("rows_positive", asset="numbers", blocking=True)])
def numbers():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="rows_positive", passed=True)


@dg.asset(check_specs=[dg.AssetCheckSpec("never_run", asset="other")])
def other():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="never_run", passed=False, description="3 rows below the minimum")


def outcomes(defs, instance) -> dict[str, CheckOutcome]:
    return {f"{o.suite}.{o.name}": o for o in recorded_outcomes(defs, instance)}


def test_recorded_outcomes_pass_only_when_current_and_passed():
    defs = dg.Definitions(assets=[numbers, other])
    with dg.instance_for_test() as instance:
        judged = outcomes(defs, instance)
        assert not judged["numbers.rows_positive"].passed and "never evaluated" in judged["numbers.rows_positive"].message

        assert dg.materialize([numbers, other], instance=instance).success
        judged = outcomes(defs, instance)
        assert judged["numbers.rows_positive"].passed
        failed = judged["other.never_run"]
        assert not failed.passed and not failed.blocking and "3 rows below the minimum" in failed.message

        # The asset changes after its check ran (here: a materialization reported from outside a run).
        instance.report_runless_asset_event(dg.AssetMaterialization("numbers"))
        stale = outcomes(defs, instance)["numbers.rows_positive"]
        assert not stale.passed and stale.blocking and "materialized after this check last ran" in stale.message


def test_junit_report_marks_blocking_failures_and_warnings():
    xml = junit_xml([CheckOutcome("a", "c1", True, True, "ok"), CheckOutcome("a", "c2", False, True, "broke"),
                     CheckOutcome("b", "c3", False, False, "drifted")], 1.5)
    root = ET.fromstring(xml)
    assert root.get("tests") == "3" and root.get("failures") == "2"
    failures = {c.get("name"): c.find("failure") for c in root.iter("testcase") if c.find("failure") is not None}
    assert failures["c2"].get("type") == "blocking" and failures["c2"].text == "broke"
    assert failures["c3"].get("type") == "warning"
