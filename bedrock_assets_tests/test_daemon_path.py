"""The path a UI user takes: ``dg dev`` with its daemon, one "Materialize" click on raw_dataset (the GraphQL
mutation the button sends), and the automation and completion sensors carry the pipeline, a retry round
included, to a materialized merged_dataset with no other click. (Its speed is measured by bench.daemon_path,
not here.)"""

from __future__ import annotations

import os

import pytest

from bench.daemon_path import measure, prepared


@pytest.mark.subprocess
@pytest.mark.local_stack  # its own, started by the measurement
def test_one_click_on_raw_dataset_ends_in_a_materialized_merged_dataset_under_the_daemon(tmp_path):
    environment = dict(os.environ)
    try:
        m = measure(*prepared(["--rows", "300", "--time-scale", "0.2", "--timeout", "400", "--home", str(tmp_path)]))
    finally:
        os.environ.clear()
        os.environ.update(environment)
    assert m.t_result is not None, m.gave_up
    runs = [r for r in m.runs if r.pipeline == "cot_answers"]
    stages = [r.stage for r in runs]
    assert "retry" in stages and stages.count("merge") >= 2, stages  # the 1% emulated errors: a retry round
    assert stages[-1] == "publish" and all(r.status == "SUCCESS" for r in runs), [(r.stage, r.status) for r in runs]
    failed = [t for t in m.ticks if t.status == "FAILURE"]
    assert failed == [], [t.error for t in failed]  # every tick's requests were taken by the daemon
