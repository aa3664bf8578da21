#!/bin/sh
# Generates the Python stubs (dlm_pb2.py, dlm_pb2_grpc.py) from proto/dlm.proto with
# Debian's protoc and gRPC plugin:
#   apt-get install protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf
#
#   examples/python/generate.sh [OUT_DIR]     (default: examples/python/gen)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/gen}
plugin=$(command -v grpc_python_plugin) || {
  echo "generate.sh: grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)" >&2
  exit 1
}
command -v protoc >/dev/null || {
  echo "generate.sh: protoc not found (apt-get install protobuf-compiler)" >&2
  exit 1
}
mkdir -p "$out"
protoc -I "$here/../../proto" --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$plugin" dlm.proto
