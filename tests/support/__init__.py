"""What the test layers share, importable as `support` (pyproject.toml's pytest `pythonpath`, and
installed into the development venv from tests/support/pyproject.toml for the scripts of bench/).

- fixtures: every shared fixture, defined once (a pytest plugin: tests/conftest.py's pytest_plugins).
- harness: the end-to-end Harness (the operator as its own process, the cluster's objects, the sandbox).
- orgs: seed organisations for the sandbox.
- kube: small Kubernetes helpers (fresh namespaces, "is it gone").
- sandbox: reading the sandbox's own state and counters; the operator's adapters built against it.
- chart: the Helm chart (the `helm` fixture's Helm, installing a release, ServiceAccount kubeconfigs).
- controller: the controller functions the in-process tests drive, imported in one place.
"""
