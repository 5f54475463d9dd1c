"""Reading a gateway's registry: :func:`list_records` pages through ``RegistryService.List``.

List answers one page at a time (so a reply never exceeds the message limit); every reader in
Tendril goes through here so none stops at the first page.
"""

from __future__ import annotations

from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc

# NOTE: bounds a reader against a gateway that kept answering a next page (a bug or a hostile
# gateway); at the gateway's maximum page this is millions of records.
MAX_PAGES = 100_000


async def list_records(
    stub: gateway_pb2_grpc.RegistryServiceStub, kind: str = "", *, timeout: float, page_size: int = 0
) -> list[gateway_pb2.Record]:
    """Every live record of ``kind`` (all kinds when empty), sorted by kind then id; ``timeout`` per page."""
    records: list[gateway_pb2.Record] = []
    token = ""
    for _ in range(MAX_PAGES):
        reply = await stub.List(
            gateway_pb2.ListRequest(kind=kind, page_size=page_size, page_token=token), timeout=timeout
        )
        records.extend(reply.records)
        token = reply.next_page_token
        if not token:
            return records
    raise RuntimeError(f"the gateway's List of kind {kind!r} did not end within {MAX_PAGES} pages")
