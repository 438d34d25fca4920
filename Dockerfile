# One image for the gateway, the four services and the sandbox; the command picks the process.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SOCIALSEC_VAR_DIR=/var/lib/socialsec
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
CMD ["uvicorn", "gateway.app:app", "--host", "0.0.0.0", "--port", "8000"]
