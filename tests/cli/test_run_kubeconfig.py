"""`synapse-scim run` without a usable Kubernetes configuration: one line on stderr that says what is
missing and how to fix it, and a non-zero exit at once; no traceback, no retrying every 60 s.

A configuration that exists but whose cluster cannot be reached is another matter: kopf keeps
retrying then, as it should for a cluster that is down for a while. No cluster is needed here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# Importing the operator takes a second or two; retrying would take a minute.
AT_ONCE = 15.0
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "HOME")
    }
    return {**env, "HOME": str(home), "SYNAPSE_SCIM_METRICS_PORT": "0", **extra}


def _run(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "synapse_scim.cli", "run", "--liveness", "", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, time.monotonic() - started


def _assert_one_line(proc: subprocess.CompletedProcess[str], took: float) -> str:
    assert proc.returncode not in (0, None), proc.stderr
    assert took < AT_ONCE, f"took {took:.1f}s:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.stdout == ""
    return lines[0]


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Config
            clusters: [{{name: c, cluster: {{server: "{server}", insecure-skip-tls-verify: true}}}}]
            users: [{{name: u, user: {{token: not-a-secret}}}}]
            contexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]
            current-context: ctx
            """
        )
    )
    return path


@pytest.mark.parametrize("election", ["off", "on"])
def test_a_kubeconfig_path_that_does_not_exist_is_one_line_and_an_exit(tmp_path, election):
    missing = tmp_path / "no" / "such" / "kubeconfig"
    env = _env(tmp_path, KUBECONFIG=str(missing), SYNAPSE_SCIM_LEADER_ELECTION=election)
    line = _assert_one_line(*_run(env))
    assert f"KUBECONFIG={missing} does not exist" in line, line
    assert "set KUBECONFIG" in line and "run in a cluster" in line, line


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_kubeconfig_at_all_names_the_default_file(tmp_path, log_format):
    line = _assert_one_line(*_run(_env(tmp_path), "--log-format", log_format))
    if log_format == "json":
        record = json.loads(line)
        assert record["level"] == "error"
        line = record["message"]
    assert "KUBECONFIG is not set" in line and "~/.kube/config" in line and "does not exist" in line, line


def test_several_kubeconfig_paths_none_of_which_exists(tmp_path):
    paths = f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}"
    line = _assert_one_line(*_run(_env(tmp_path, KUBECONFIG=paths)))
    assert f"KUBECONFIG={paths}" in line and "none of" in line, line


def test_a_kubeconfig_that_is_not_usable_names_the_file_and_the_problem(tmp_path):
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")  # no context at all
    line = _assert_one_line(*_run(_env(tmp_path, KUBECONFIG=str(broken))))
    assert f"KUBECONFIG={broken}" in line and "current-context" in line, line


@pytest.mark.skipif(Path(SERVICE_ACCOUNT_TOKEN).exists(), reason="this machine is a pod with a ServiceAccount token")
def test_in_a_pod_without_its_token_says_so_too(tmp_path):
    # What a pod with automountServiceAccountToken: false and no kubeconfig looks like.
    env = _env(tmp_path, KUBERNETES_SERVICE_HOST="10.0.0.1", KUBERNETES_SERVICE_PORT="443")
    line = _assert_one_line(*_run(env))
    assert "in the cluster: " in line and "ServiceAccount token" in line, line


def test_an_unreachable_cluster_is_retried_not_an_exit(tmp_path):
    # A configuration that exists, for an API server that does not answer (nothing listens on port 1).
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "synapse_scim.cli", "run", "--liveness", ""],
        env=_env(tmp_path, KUBECONFIG=str(kubeconfig)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(6)
        assert proc.poll() is None, f"exited ({proc.returncode}) instead of retrying:\n{proc.communicate()[0]}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


AGREE = """
import json, logging
import kopf, kubernetes
from synapse_scim.adapters.kube import KubeConfigMissing, api_client, check_config

out = {}
try:
    check_config()
    out["check"] = "ok"
except KubeConfigMissing as exc:
    out["check"] = str(exc)
try:
    info = kopf.login_via_client(logger=logging.getLogger("login"), settings=kopf.OperatorSettings())
    out["kopf"] = info.server
except kopf.LoginError as exc:
    out["kopf"] = None
try:
    out["client"] = api_client().configuration.host
except kubernetes.config.ConfigException:
    out["client"] = None
print(json.dumps(out))
"""


def _agree(env: dict[str, str]) -> dict[str, str | None]:
    proc = subprocess.run([sys.executable, "-c", AGREE], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_check_kopf_and_the_client_agree_on_the_configuration(tmp_path):
    """kopf logs in by itself (kopf.login_via_client), and the operator builds its own client
    (adapters/kube.py: api_client): the check must pass exactly when both find a configuration, and
    they must find the same one."""
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:6443")
    found = _agree(_env(tmp_path, KUBECONFIG=str(kubeconfig)))
    assert found == {"check": "ok", "kopf": "https://127.0.0.1:6443", "client": "https://127.0.0.1:6443"}

    found = _agree(_env(tmp_path, KUBECONFIG=str(tmp_path / "missing")))
    assert found["kopf"] is None and found["client"] is None
    assert found["check"] and "does not exist" in found["check"]
