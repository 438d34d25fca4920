# One image for the gateway, the four services and the sandbox; the command picks the process.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SOCIALSEC_VAR_DIR=/var/lib/socialsec
# Workers per process: `auto` = the CPUs the container may use; set a number to override.
ENV GATEWAY_WORKERS=auto REGISTRATION_WORKERS=auto CONTRIBUTION_WORKERS=auto CARD_WORKERS=auto \
    REVIEW_WORKERS=auto
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app socialsec && mkdir -p /var/lib/socialsec \
    && chown socialsec /var/lib/socialsec
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY sandbox ./sandbox
COPY devtools ./devtools
COPY openapi ./openapi
RUN pip install --no-cache-dir .
USER socialsec
EXPOSE 8000
# `python -m services.common.serve NAME` runs uvicorn with `<NAME>_WORKERS` workers.
CMD ["python", "-m", "services.common.serve", "gateway", "--host", "0.0.0.0", "--port", "8000"]
