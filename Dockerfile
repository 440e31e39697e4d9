# synapse-scim operator image.
#
#   hack/build-image.sh        builds it here with buildah (no Docker engine, no registry): the base
#                              `debian:bookworm-slim` is made locally with debootstrap.
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t synapse-scim:0.1.0 .
#                              works as well where a Docker engine and Docker Hub exist.
#
# The build reaches PyPI through the machine's certificate authority: it is handed to the pip steps
# as the build secret `ca` (mounted at /run/secrets/ca for that one RUN, never stored in a layer).
# Without the secret pip uses its own trust store. apt needs nothing: the Debian mirror is http and
# apt checks the archive's signatures.
#
# Runs as uid/gid 10001 with a read-only root filesystem: all bytecode is compiled at build time and
# HOME=/tmp (give it an emptyDir in Kubernetes).
ARG BASE_IMAGE=debian:bookworm-slim

# ---- python: Debian's python3, an empty virtual environment for the image, a pip outside of it ---------
FROM ${BASE_IMAGE} AS python
ARG DEBIAN_FRONTEND=noninteractive
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_COMPILE=1 \
    PYTHONDONTWRITEBYTECODE=1
# /opt/venv gets neither pip nor setuptools: they are only needed to install, so they live in /opt/pip
# (`pip --python /opt/venv/bin/python` installs into the image's environment).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/pip \
 && python3 -m venv --without-pip /opt/venv \
 && rm -f /opt/venv/bin/activate* /opt/venv/bin/Activate.ps1

# ---- deps: the dependencies, from pyproject.toml alone (a code change does not reinstall them) ------
FROM python AS deps
COPY pyproject.toml /src/pyproject.toml
# Wheels only: the image has no compilers, and the build says so loudly if a dependency ever needs one.
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && /opt/pip/bin/pip --python /opt/venv/bin/python install --only-binary=:all: -r /tmp/requirements.txt
# Every module compiled once, in `unchecked-hash` mode: the .pyc is used as is, whatever the sources'
# timestamps after the copy into the image, and nothing is ever written at run time (read-only root).
RUN python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# ---- app: the operator itself, on top; its files alone are gathered under /out for the image ------
FROM deps AS app
COPY README.md /src/README.md
COPY operator/ /src/operator/
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && /opt/pip/bin/pip --python /opt/venv/bin/python install --no-deps /src \
 && /opt/pip/bin/pip --python /opt/venv/bin/python check \
 && site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash "$site/synapse_scim" \
 && mkdir -p "/out$site" /out/opt/venv/bin \
 && cp -a "$site/synapse_scim" "$site"/synapse_scim-*.dist-info "/out$site/" \
 && cp -a /opt/venv/bin/synapse-scim /out/opt/venv/bin/

# ---- the image: bookworm-slim + Debian's python3 (the same 3.11 as above: the venv links to it) -------
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --gid 10001 synapse \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin synapse

COPY --from=deps /opt/venv /opt/venv
COPY --from=app /out/ /

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp

# `synapse-scim run` by default; the arguments after the image name (docker run / podman run) or a
# pod's `args:` replace CMD, so they name the subcommand: `args: [run, --namespace, prod]`,
# `docker run IMAGE --help`, `docker run IMAGE sandbox ...`.
ENTRYPOINT ["/opt/venv/bin/synapse-scim"]
CMD ["run"]

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="synapse-scim" \
      org.opencontainers.image.description="Kubernetes operator that keeps Azure Synapse workspace RBAC in step with Microsoft Entra ID groups" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
