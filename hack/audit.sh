#!/usr/bin/env bash
# Known vulnerabilities in the installed environment (pip-audit), and an honest answer when that
# cannot be known. Exit codes: 0 audited, nothing found; 1 vulnerabilities found; 2 NOT AUDITED.
#
# --strict: a dependency the service cannot answer for is an error, not a silent skip. Without it,
# pip-audit prints "could not be audited" for every package and still exits 0, which is a fake pass.
# AUDIT_SERVICE picks the vulnerability service: pypi (default; pypi.org/pypi/<name>/<version>/json)
# or osv (api.osv.dev).
set -uo pipefail
cd "$(dirname "$0")/.."
service="${AUDIT_SERVICE:-pypi}"
out="$(.venv/bin/pip-audit --vulnerability-service "$service" --strict --skip-editable --progress-spinner off \
       --desc off 2>&1)"
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ] && grep -qE "could not be audited|ConnectionError|NameResolutionError|Max retries exceeded" <<<"$out"; then
  cat >&2 <<MSG

NOT AUDITED: the vulnerability service ($service) did not answer for the installed packages (see the
error above: no network path to it, or a proxy that serves only part of PyPI's JSON API). This is not
a pass. Run \`make audit\` where pypi.org's per-version JSON API or api.osv.dev (AUDIT_SERVICE=osv)
is reachable.
MSG
  exit 2
fi
exit $rc
