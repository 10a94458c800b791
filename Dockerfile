# The streamscore app image for docker-compose.yml: the `streamscore` command with the project's pinned
# dependencies; the compose services choose the subcommand. Data lives in /data (a volume).
FROM python:3.11-slim

# libgomp1: XGBoost's OpenMP runtime, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STREAMSCORE_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY stream_app ./stream_app
COPY feature_repo ./feature_repo
COPY models ./models
COPY infra/compose-init.sh ./infra/compose-init.sh
# Editable, as in development: the Feast template configuration in feature_repo/ is read from the source
# tree (stream_app.settings.FEATURE_REPO), which a regular install would not carry.
RUN pip install -c constraints.txt -e . && mkdir -p /data

CMD ["streamscore", "worker"]
