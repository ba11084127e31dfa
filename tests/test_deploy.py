"""The Kubernetes manifest of multi-worker training builds a TF_CONFIG the trainer accepts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import yaml

from feseq_tf import distribute

MANIFEST = os.path.join(os.path.dirname(os.path.dirname(__file__)), "deploy", "kubernetes",
                        "feseq-multiworker.yaml")


def _documents():
    with open(MANIFEST) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    return {d["kind"]: d for d in docs}


def _tf_config(script: str, workers: str, index: int) -> str:
    code = re.search(r"python -c '(.*?)'\)", script, re.S).group(1)
    env = dict(os.environ, WORKERS=workers, JOB_COMPLETION_INDEX=str(index))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_every_pod_of_the_indexed_job_gets_its_own_worker_task():
    docs = _documents()
    job, service = docs["Job"], docs["Service"]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    workers = next(e["value"] for e in container["env"] if e["name"] == "WORKERS")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == int(workers)
    assert pod["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert pod["restartPolicy"] == "OnFailure"  # a crashed cluster restarts and resumes
    port = service["spec"]["ports"][0]["port"]
    script = container["args"][0]
    for i in range(int(workers)):
        cluster = distribute.cluster_from_env({"TF_CONFIG": _tf_config(script, workers, i)})
        assert (cluster.task_index, cluster.num_workers) == (i, int(workers))
        assert cluster.is_chief == (i == 0)
    hosts = json.loads(_tf_config(script, workers, 0))["cluster"]["worker"]
    # The pods' DNS names under the headless service.
    assert hosts == [f"{job['metadata']['name']}-{k}.{service['metadata']['name']}:{port}"
                     for k in range(int(workers))]
    assert "--strategy auto" in script and "--output-dir" in script
