"""The document endpoints: read one (``GET``), and add, replace or remove them (API key required)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from xlir.server.schemas import (
    ERROR_RESPONSES,
    NO_DOCUMENT_RESPONSE,
    WRITE_ERROR_RESPONSES,
    DocumentBatch,
    DocumentOut,
    UpdateResponse,
)
from xlir.server.service import ServedIndex, served_index

Index = Annotated[ServedIndex, Depends(served_index)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")


def require_key(
    index: Index,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """Let the request through only with the server's API key (:class:`xlir.server.auth.AuthError` if not)."""
    index.auth.check(bearer.credentials if bearer else None, header_key)


router = APIRouter(tags=["documents"])


@router.get(
    "/documents/{doc_id:path}",
    response_model=DocumentOut,
    responses={**ERROR_RESPONSES, **NO_DOCUMENT_RESPONSE},
)
def get_document(index: Index, doc_id: str) -> DocumentOut:
    """One stored document by id."""
    return DocumentOut.from_document(index.document(doc_id))


@router.post(
    "/documents",
    response_model=UpdateResponse,
    responses=WRITE_ERROR_RESPONSES,
    dependencies=[Depends(require_key)],
)
def post_documents(index: Index, batch: DocumentBatch) -> UpdateResponse:
    """Add documents or replace those with the same ids, in every channel; visible to the next search."""
    started = time.perf_counter()
    report = index.upsert([doc.to_document() for doc in batch.documents])
    return UpdateResponse.from_report(report, time.perf_counter() - started)


@router.delete(
    "/documents/{doc_id:path}",
    response_model=UpdateResponse,
    responses={**WRITE_ERROR_RESPONSES, **NO_DOCUMENT_RESPONSE},
    dependencies=[Depends(require_key)],
)
def delete_document(index: Index, doc_id: str) -> UpdateResponse:
    """Remove a document from every channel; gone for the next search."""
    started = time.perf_counter()
    report = index.delete(doc_id)
    return UpdateResponse.from_report(report, time.perf_counter() - started)
