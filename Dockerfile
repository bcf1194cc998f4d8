# One image for every role: workers per queue, beat, the orchestrator, Flower and run_daily.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app

# CPU-only torch first, so nothing pulls the multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY core ./core
COPY graphs ./graphs
COPY tasks ./tasks
COPY vectorstore ./vectorstore
COPY prompts ./prompts
RUN pip install ".[test]" flower
COPY examples ./examples
COPY langgraph.json ./

# The offline embedder's ONNX export, made once here so no worker makes it (or imports torch).
RUN python -m tasks.onnx_export /app/.data/models/all-MiniLM-L6-v2-onnx

RUN useradd --create-home --uid 1000 aml && mkdir -p /app/out /app/.data \
    && chown -R aml /app/out /app/.data
USER aml

CMD ["python", "-m", "graphs.run_daily"]
