"""The ceiling for the intake benchmark: a FastAPI endpoint that accepts and does nothing."""

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/v1/deletion-requests", status_code=202)
def accept(body: dict[str, Any]) -> dict[str, str]:
    return {"status": "received"}
