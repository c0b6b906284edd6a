# One image for every service and worker of the platform; the compose file picks the command.
FROM python:3.11-slim
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PATH="/app/.venv/bin:$PATH"
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY . .
RUN uv sync --frozen --no-dev
EXPOSE 8000
