"""`score --engine ray` on a simulated two-node cluster (`ray.cluster_utils.Cluster`, 2 nodes x 1 CPU): the rows
come out as on one machine, and the actor pool runs on both nodes."""

from __future__ import annotations

import os

import pytest

from scoring_inputs import bad_rows, check_scores, read_output, write_inputs
from tnews_deploy.predictor import Predictor
from tnews_deploy.scoring import ScoreConfig, score_ray

ray = pytest.importorskip("ray", reason="the scale extra (ray[data]) is not installed")

pytestmark = pytest.mark.slow  # starts a simulated two-node Ray cluster


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_worker_niceness", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def scorer_nodes() -> set[str]:
    """The nodes that ran the scoring actors (from the GCS actor table; no dashboard needed)."""
    from ray._private import state

    return {
        actor["Address"]["NodeID"]
        for actor in state.actors().values()
        if "RayScorer" in actor.get("ActorClassName", "")
    }


def test_two_node_cluster_scores_every_row_with_actors_on_both_nodes(two_nodes, exported, tmp_path):
    expected = write_inputs(tmp_path / "in", n=30)
    out = tmp_path / "out"
    summary = score_ray(
        ScoreConfig(
            exported.output, (str(tmp_path / "in"),), out, engine="ray", actors=2, threads_per_actor=1, chunk_rows=16
        )
    )
    assert (summary.rows, summary.errors) == (len(expected), bad_rows(expected))
    check_scores(read_output(out), expected, Predictor(exported.output, threads=1))
    assert len({node["NodeID"] for node in ray.nodes() if node["Alive"]}) == 2
    assert len(scorer_nodes()) == 2
