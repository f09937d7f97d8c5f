FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml README.md alembic.ini babel.cfg requirements-runtime.lock ./
# The runtime rooms only: sandbox/ (emulator, web chat, demo data) stays out of the image.
COPY bot ./bot
COPY tg ./tg
COPY services ./services
COPY infra ./infra
COPY models ./models
COPY migrations ./migrations
COPY locales ./locales
COPY data ./data
# The runtime dependencies exactly as locked (hash-checked), then the project itself,
# editable, so locales/, data/ and migrations/ are found beside the code in /app.
RUN pip install --no-cache-dir --require-hashes -r requirements-runtime.lock \
    && pip install --no-cache-dir --no-deps -e . \
    && useradd --create-home --uid 10001 bansos
USER bansos

# Webhook mode by default; `bansos-bot run` for long polling.
EXPOSE 8081
CMD ["bansos-bot", "webhook"]
