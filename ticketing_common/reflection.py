"""Server reflection that serves the contracts with their comments.

Python's descriptor pool drops source info, so stock reflection makes `grpcurl describe` show
bare fields. This servicer answers file requests for our protos from gen/descriptor.binpb (built
with --include_source_info) and falls back to the stock behaviour for everything else (health,
reflection itself). Every service lists all four public services, so reflection through the
gateway works whichever service answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

DESCRIPTOR_SET = Path(__file__).resolve().parent.parent / "gen" / "descriptor.binpb"


class DocumentedReflectionServicer(reflection.aio.ReflectionServicer):  # type: ignore[misc]
    def __init__(self, service_names: list[str], descriptor_set: Path = DESCRIPTOR_SET) -> None:
        super().__init__(service_names)
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
        self._files = {f.name: f for f in files}
        self._symbols: dict[str, str] = {}
        for f in files:
            prefix = f"{f.package}." if f.package else ""
            for group in (f.message_type, f.enum_type, f.service, f.extension):
                for item in group:
                    self._symbols[prefix + item.name] = f.name
            for service in f.service:
                for method in service.method:
                    self._symbols[f"{prefix}{service.name}.{method.name}"] = f.name

    def _response(self, filename: str, request: Any) -> reflection_pb2.ServerReflectionResponse:
        ordered: list[str] = []

        def visit(name: str) -> None:
            if name in ordered or name not in self._files:
                return
            ordered.append(name)
            for dep in self._files[name].dependency:
                visit(dep)

        visit(filename)
        return reflection_pb2.ServerReflectionResponse(
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=[self._files[n].SerializeToString() for n in ordered]
            ),
            original_request=request,
        )

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        if filename in self._files:
            return self._response(filename, request)
        return super()._file_by_filename(request, filename)

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        name = fully_qualified_name
        while name:
            if name in self._symbols:
                return self._response(self._symbols[name], request)
            name = name.rpartition(".")[0]
        return super()._file_containing_symbol(request, fully_qualified_name)
