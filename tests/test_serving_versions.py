"""The development server's versions: a new version swapped in under load, a corrupt one
refused while the served one keeps serving, pinned versions, rollback, the poll flag."""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import threading
import time
import urllib.parse

import pytest

from export import archive, devserver
from export.contract import CONTRACT_FILE

# How long a test waits for the polling thread to act (it polls every 0.1 s here).
WAIT_S = 120


def _request(url: str, method: str, path: str, body: bytes | None = None):
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _status(url: str, version: int | None = None):
    path = "/v1/models/feseq" + (f"/versions/{version}" if version else "")
    return _request(url, "GET", path)


def _entry(version: int, state: str, code: str = "OK", message: str = "") -> dict:
    return {
        "version": str(version),
        "state": state,
        "status": {"error_code": code, "error_message": message},
    }


def _add_version(base: str, version: int, source: str) -> str:
    """Copy the version directory ``source`` as ``version`` under ``base``, atomically."""
    export_dir, name = os.path.split(base)
    return archive.write_version(
        export_dir, name, version, lambda path: shutil.copytree(source, path, dirs_exist_ok=True)
    )


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def base(tiny_exported_model, tmp_path) -> str:
    """A model base path of its own holding version 1 (a copy of the tiny export)."""
    base = str(tmp_path / "models" / "feseq")
    _add_version(base, 1, tiny_exported_model)
    return base


@pytest.fixture(scope="module")
def body(tiny_exported_model) -> bytes:
    with open(os.path.join(tiny_exported_model, CONTRACT_FILE)) as fh:
        return json.dumps(json.load(fh)["example_request"]).encode()


@pytest.mark.slow
def test_new_version_swaps_in_while_clients_send_requests(base, body, tiny_exported_model):
    with devserver.BackgroundServer(base, "feseq", batching=True, poll_wait_s=0) as server:
        url, versions = server.url, server.model_server.versions["feseq"]
        _, first = _request(url, "POST", "/v1/models/feseq:predict", body)
        results: list[tuple[int, int, dict]] = []  # (served version before, HTTP status, reply)
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                before = versions.current.version
                try:
                    status, reply = _request(url, "POST", "/v1/models/feseq:predict", body)
                except OSError as err:  # a dropped connection is a failed request too
                    status, reply = 0, {"error": repr(err)}
                results.append((before, status, reply))

        clients = [threading.Thread(target=client) for _ in range(3)]
        for thread in clients:
            thread.start()
        try:
            _wait_until(lambda: len(results) >= 6, "requests on version 1")
            _add_version(base, 2, tiny_exported_model)
            versions.poll()  # loads and warms up version 2 while the clients send
            swapped_at = len(results)
            _wait_until(lambda: len(results) >= swapped_at + 6, "requests on version 2")
        finally:
            stop.set()
            for thread in clients:
                thread.join()

        failed = [(status, reply) for _, status, reply in results if status != 200]
        assert failed == []
        assert all(reply == first for _, _, reply in results)
        assert {before for before, _, _ in results} == {1, 2}
        assert versions.current.version == 2
        assert _status(url) == (
            200,
            {"model_version_status": [_entry(2, "AVAILABLE"), _entry(1, "END")]},
        )
        _, metadata = _request(url, "GET", "/v1/models/feseq/metadata")
        assert metadata["model_spec"]["version"] == "2"
        # Only the latest version stays loaded (TF Serving's default policy).
        assert _request(url, "POST", "/v1/models/feseq/versions/2:predict", body) == (200, first)
        status, reply = _request(url, "POST", "/v1/models/feseq/versions/1:predict", body)
        assert (status, reply) == (
            404,
            {"error": "Servable not found for request: Specific(feseq, 1)"},
        )
        assert _status(url, 1) == (200, {"model_version_status": [_entry(1, "END")]})
        assert _request(url, "GET", "/v1/models/feseq/versions/1/metadata")[0] == 404
        assert _status(url, 5)[0] == 404


def test_corrupt_version_leaves_the_served_one_serving_and_shows_the_error(
    base, body, tiny_exported_model, caplog
):
    caplog.set_level(logging.INFO, logger="export.devserver")
    _add_version(base, 2, tiny_exported_model)
    with devserver.BackgroundServer(base, "feseq", poll_wait_s=0.1) as server:
        url = server.url
        assert _status(url)[1]["model_version_status"] == [_entry(2, "AVAILABLE")]
        export_dir, name = os.path.split(base)
        archive.write_version(
            export_dir,
            name,
            3,
            lambda path: open(os.path.join(path, "saved_model.pb"), "wb").close(),
        )
        _wait_until(
            lambda: _status(url)[1]["model_version_status"][0]["state"] == "END",
            "version 3 to fail",
        )
        statuses = _status(url)[1]["model_version_status"]
        assert [(s["version"], s["state"]) for s in statuses] == [("3", "END"), ("2", "AVAILABLE")]
        error = statuses[0]["status"]
        assert error["error_code"] not in ("", "OK")
        assert error["error_message"]
        assert _status(url, 3)[1]["model_version_status"][0] == statuses[0]
        assert server.model_server.models["feseq"].version == 2
        assert _request(url, "POST", "/v1/models/feseq:predict", body)[0] == 200
        assert _request(url, "POST", "/v1/models/feseq/versions/3:predict", body)[0] == 404
        time.sleep(0.5)  # a few more polls: a failed version is not loaded again as it is
    assert caplog.text.count("version 3 failed to load, still serving version 2") == 1


def test_removing_the_served_version_rolls_back_to_the_previous_one(
    base, body, tiny_exported_model
):
    _add_version(base, 2, tiny_exported_model)
    with devserver.BackgroundServer(base, "feseq", poll_wait_s=0.1) as server:
        assert server.model_server.models["feseq"].version == 2
        os.rename(os.path.join(base, "2"), os.path.join(base, ".removed-2"))
        _wait_until(lambda: server.model_server.models["feseq"].version == 1, "version 1")
        assert _status(server.url)[1] == {
            "model_version_status": [_entry(2, "END"), _entry(1, "AVAILABLE")]
        }
        assert _request(server.url, "POST", "/v1/models/feseq/versions/1:predict", body)[0] == 200


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_negative_poll_wait_is_refused_on_the_command_line(base, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        devserver.main(["--model-base-path", base, "--file-system-poll-wait-seconds", value])
    assert exit_info.value.code == 2
    assert "--file-system-poll-wait-seconds must be >= 0" in capsys.readouterr().err
