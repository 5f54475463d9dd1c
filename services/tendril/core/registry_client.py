"""Reading a gateway's registry: :func:`list_records` pages through ``RegistryService.List``.

List answers one page at a time (so a reply never exceeds the message limit); every reader in
Tendril goes through here so none stops at the first page.

Given :class:`~tendril.core.gateways.Gateways` rather than one stub, each page goes through
:meth:`Gateways.call`, so a gateway that dies mid-List is left for the next and the List goes
on from the same page: a page token names only the last record listed, and any gateway takes it.
"""

from __future__ import annotations

import grpc

from tendril.core.gateways import FAILOVER_CODES, Gateways
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc

# NOTE: bounds a reader against a gateway that kept answering a next page (a bug or a hostile
# gateway); at the gateway's maximum page this is millions of records.
MAX_PAGES = 100_000


# List only reads, so a page that timed out may be asked again of another gateway.
RETRY_CODES = FAILOVER_CODES | {grpc.StatusCode.DEADLINE_EXCEEDED}


async def list_records(
    source: gateway_pb2_grpc.RegistryServiceStub | Gateways,
    kind: str = "",
    *,
    timeout: float,
    page_size: int = 0,
) -> list[gateway_pb2.Record]:
    """Every live record of ``kind`` (all kinds when empty), sorted by kind then id; ``timeout`` per page.

    ``source`` is one gateway's stub, or the gateways of the network (failover page by page).
    """
    records: list[gateway_pb2.Record] = []
    token = ""
    for _ in range(MAX_PAGES):
        request = gateway_pb2.ListRequest(kind=kind, page_size=page_size, page_token=token)
        if isinstance(source, Gateways):
            reply = await source.call(
                lambda channel, request=request: gateway_pb2_grpc.RegistryServiceStub(channel).List(
                    request, timeout=timeout
                ),
                codes=RETRY_CODES,
            )
        else:
            reply = await source.List(request, timeout=timeout)
        records.extend(reply.records)
        token = reply.next_page_token
        if not token:
            return records
    raise RuntimeError(f"the gateway's List of kind {kind!r} did not end within {MAX_PAGES} pages")
