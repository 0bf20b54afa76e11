FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY unlearn ./unlearn
COPY workers ./workers
COPY api ./api
COPY cli ./cli
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir .
ENV UNLEARN_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000
CMD ["unlearn", "serve", "--host", "0.0.0.0", "--port", "8000"]
