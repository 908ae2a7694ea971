# syntax=docker/dockerfile:1
#
# tfscache's two images, built from this repository (the build context is the repository's root):
#
#   docker build --target daemon -t tfscache-daemon:0.1.0.dev0 .   # tfscachectl serve: no TensorFlow
#   docker build --target agent  -t tfscache-agent:0.1.0.dev0 .    # tfscachectl agent: TensorFlow (CPU)
#
# compose/docker-compose.yaml builds both. Their sizes, and how they were estimated: compose/README.md.
# The package is installed as a wheel (not editable), so Envoy's files (envoy/bootstrap.yaml, the gRPC
# descriptor set) are copied to /opt/tfscache/envoy and found through TFSCACHE_ENVOY_DIR.
# Images are linux/amd64: tensorflow-cpu and tensorflow/serving are published for it.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- the tfscache wheel (pure Python) -------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tfscachectl ./tfscachectl
COPY xds ./xds
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- what both images share: a user, its directories, Envoy's files ------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TFSCACHE_ENVOY_DIR=/opt/tfscache/envoy
# /var/cache/tfscache: the agent's disk cache; /srv/models: a model store directory (the demo's generated
# models); /var/lib/tfscache/envoy: a rendered Envoy bootstrap. Volumes mounted there start owned by tfscache.
RUN groupadd --system --gid 10001 tfscache \
 && useradd --system --uid 10001 --gid tfscache --home-dir /var/lib/tfscache --create-home tfscache \
 && install -d -o tfscache -g tfscache /var/cache/tfscache /srv/models /var/lib/tfscache/envoy
COPY envoy/bootstrap.yaml envoy/tfserving_descriptors.pb /opt/tfscache/envoy/

# ---- the control daemon: no TensorFlow ------------------------------------------------------------------
FROM base AS daemon
RUN --mount=type=bind,source=compose/requirements-daemon.txt,target=/tmp/requirements.txt \
    pip install -r /tmp/requirements.txt
RUN --mount=type=bind,from=wheel,source=/wheels,target=/tmp/wheels \
    pip install --no-deps /tmp/wheels/*.whl
USER tfscache
# xDS, ext_proc, admin API, metrics
EXPOSE 18000 18001 18002 8700
ENTRYPOINT ["tfscachectl"]
CMD ["serve", "--config", "/etc/tfscache/daemon.yaml"]

# ---- the node agent: TensorFlow for TF Serving's gRPC stubs (and for generating the demo models) ---------
FROM base AS agent
# tensorflow-cpu is the `tensorflow` module without CUDA (half the size); tensorflow-serving-api is installed
# without its dependencies, which would add the full `tensorflow` distribution. Same version for both.
ARG TF_VERSION=2.21.0
RUN --mount=type=bind,source=compose/requirements-agent.txt,target=/tmp/requirements.txt \
    pip install -r /tmp/requirements.txt "tensorflow-cpu==${TF_VERSION}" \
 && pip install --no-deps "tensorflow-serving-api==${TF_VERSION}"
RUN --mount=type=bind,from=wheel,source=/wheels,target=/tmp/wheels \
    pip install --no-deps /tmp/wheels/*.whl
USER tfscache
# the agent's gRPC API, metrics
EXPOSE 8600 9600
ENTRYPOINT ["tfscachectl"]
CMD ["agent", "--config", "/etc/tfscache/agent.yaml"]
