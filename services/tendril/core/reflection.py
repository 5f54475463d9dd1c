"""Server reflection that serves the .proto comments.

Generated Python modules keep no source info, and grpcio-reflection re-serialises descriptors
with ``CopyToProto`` (which drops it), so operators would see bare messages. `make proto` also
writes a descriptor set with source info (clients/python/tendril_proto/descriptors.binpb); the
servicer here answers file requests with those original bytes, so `grpcurl describe` shows
the comment of every service, RPC and field. Files not in the set (grpc.health.v1,
reflection itself) are served from their generated modules as usual.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import _async, reflection, reflection_pb2, reflection_pb2_grpc

DESCRIPTOR_SET = "descriptors.binpb"


@functools.cache
def commented_files() -> dict[str, bytes]:
    """Serialized FileDescriptorProto (with source info) of every Tendril proto, by file name."""
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(resources.files("tendril_proto").joinpath(DESCRIPTOR_SET).read_bytes())
    return {file.name: file.SerializeToString() for file in files.file}


@functools.cache
def commented_pool() -> descriptor_pool.DescriptorPool:
    """A pool of every Tendril proto file, for symbols this process never imported.

    NOTE: a gateway, say, never imports common.proto, yet a registry record's Any holds a
    tendril.common.v1.WorkerRecord; grpcurl asks reflection for it to print the record.
    """
    pool = descriptor_pool.DescriptorPool()
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(resources.files("tendril_proto").joinpath(DESCRIPTOR_SET).read_bytes())
    for file in files.file:
        pool.Add(file)
    return pool


def _find(lookup: str, key: str) -> Any:
    """Look ``key`` up in the process's pool, then in the pool of all Tendril files."""
    try:
        return getattr(descriptor_pool.Default(), lookup)(key)
    except KeyError:
        return getattr(commented_pool(), lookup)(key)


class CommentedReflectionServicer(_async.ReflectionServicer):
    """grpc.reflection.v1alpha that serves Tendril's files with their comments.

    NOTE: it overrides two hooks of grpcio-reflection's base class (pinned version); the
    default pool still resolves every symbol and dependency.
    """

    def _response(self, file: Any, request: Any) -> reflection_pb2.ServerReflectionResponse:
        raw = commented_files()
        seen: dict[str, Any] = {}
        stack = [file]
        while stack:
            current = stack.pop()
            if current.name in seen:
                continue
            seen[current.name] = current
            stack.extend(current.dependencies)
        serialized = []
        for name, descriptor in seen.items():
            if name in raw:
                serialized.append(raw[name])
            else:
                proto = descriptor_pb2.FileDescriptorProto()
                descriptor.CopyToProto(proto)
                serialized.append(proto.SerializeToString())
        return reflection_pb2.ServerReflectionResponse(
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(file_descriptor_proto=serialized),
            original_request=request,
        )

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        try:
            return self._response(_find("FindFileByName", filename), request)
        except KeyError:
            return super()._file_by_filename(request, filename)

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        try:
            return self._response(_find("FindFileContainingSymbol", fully_qualified_name), request)
        except KeyError:
            return super()._file_containing_symbol(request, fully_qualified_name)


def enable(service_names: list[str], server: grpc.aio.Server) -> None:
    """Serve reflection for ``service_names`` (and reflection itself), comments included."""
    servicer = CommentedReflectionServicer([*service_names, reflection.SERVICE_NAME])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
