#!/usr/bin/env python3
"""A dlm client in Python, over stubs generated from proto/dlm.proto (generate.sh).

Opens a session, keeps it alive from a background thread, takes a lock (waiting up to
--wait-ms in the lock's queue), prints the fencing token, holds the lock for --hold-ms,
releases it and closes the session:

    examples/python/generate.sh
    python3 examples/python/lock.py --address 127.0.0.1:7101 --wait-ms 10000 orders/42

Any node's client address works: a follower forwards writes to the leader. Every
mutation carries a random request_id; UNAVAILABLE (no leader yet, a leader change) is
retried with the same request_id, which the cluster deduplicates, so a retry never
applies twice (proto/dlm.proto, "What a caller may assume after an error").
"""

import argparse
import os
import secrets
import sys
import threading
import time

import grpc

sys.path.insert(0, os.environ.get("DLM_PY_STUBS", os.path.join(os.path.dirname(__file__), "gen")))
import dlm_pb2  # noqa: E402  (generated)
import dlm_pb2_grpc  # noqa: E402  (generated)

RETRIES_MAX = 20
RETRY_DELAY_S = 0.2
CALL_DEADLINE_S = 5.0
# The TypeScript client keeps alive at TTL / 3: two keepalives may fail before the lease ends.
KEEPALIVES_PER_TTL = 3


def request_id():
    """Random and never 0 (0 is the proto3 default, refused as a forgotten id)."""
    return secrets.randbits(63) + 1


def call(method, request, deadline_s=CALL_DEADLINE_S):
    """Calls `method`, retrying UNAVAILABLE with the same request (same request_id)."""
    for attempt in range(RETRIES_MAX):
        try:
            return method(request, timeout=deadline_s)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == RETRIES_MAX - 1:
                raise
            time.sleep(RETRY_DELAY_S)
    raise AssertionError("unreachable")


class KeepAlive(threading.Thread):
    """Refreshes the session every TTL / 3 until stopped; `lost` says the lease ended."""

    def __init__(self, stub, session_id, ttl_ms):
        super().__init__(daemon=True)
        self.stub = stub
        self.session_id = session_id
        self.interval_s = ttl_ms / 1000 / KEEPALIVES_PER_TTL
        self.stopped = threading.Event()
        self.lost = None

    def run(self):
        while not self.stopped.wait(self.interval_s):
            try:
                call(
                    self.stub.KeepAlive,
                    dlm_pb2.KeepAliveRequest(session_id=self.session_id),
                    deadline_s=self.interval_s,
                )
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    self.lost = f"session {self.session_id} expired: {error.details()}"
                    return
                # Anything else: try again next round; the lease still has time.


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock")
    parser.add_argument("--address", default="127.0.0.1:7101")
    parser.add_argument("--ttl-ms", type=int, default=10_000)
    parser.add_argument("--wait-ms", type=int, default=10_000)
    parser.add_argument("--hold-ms", type=int, default=1_000)
    parser.add_argument("--owner", default="python-example")
    args = parser.parse_args()

    with grpc.insecure_channel(args.address) as channel:
        stub = dlm_pb2_grpc.LockStub(channel)
        opened = call(
            stub.OpenSession,
            dlm_pb2.OpenSessionRequest(
                ttl_ms=args.ttl_ms, client_name=args.owner, request_id=request_id()
            ),
        )
        session_id = opened.session_id
        print(f"session {session_id} opened (TTL {opened.ttl_ms} ms)", flush=True)
        keepalive = KeepAlive(stub, session_id, opened.ttl_ms)
        keepalive.start()
        try:
            acquired = call(
                stub.Acquire,
                dlm_pb2.AcquireRequest(
                    lock=args.lock,
                    session_id=session_id,
                    mode=dlm_pb2.EXCLUSIVE,
                    wait_ms=args.wait_ms,
                    request_id=request_id(),
                    owner=args.owner,
                ),
                # The deadline must cover the wait in the lock's queue.
                deadline_s=args.wait_ms / 1000 + CALL_DEADLINE_S,
            )
            if not acquired.acquired:
                holders = ", ".join(h.owner or f"session {h.session_id}" for h in acquired.holders)
                print(f"{args.lock} not acquired within {args.wait_ms} ms: held by {holders}")
                return 3
            token = acquired.fencing_token
            print(f"acquired {args.lock} with fencing token {token}", flush=True)
            time.sleep(args.hold_ms / 1000)
            if keepalive.lost is not None:
                print(f"lost the lock while holding it: {keepalive.lost}", file=sys.stderr)
                return 4
            try:
                released = call(
                    stub.Release,
                    dlm_pb2.ReleaseRequest(
                        lock=args.lock,
                        session_id=session_id,
                        fencing_token=token,
                        request_id=request_id(),
                    ),
                )
            except grpc.RpcError as error:
                # NOT_FOUND: the session expired; FAILED_PRECONDITION: the grant ended.
                lost = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
                if error.code() not in lost:
                    raise
                print(f"lost the lock while holding it: {error.details()}", file=sys.stderr)
                return 4
            print(f"released {args.lock} (released={released.released})", flush=True)
        finally:
            keepalive.stopped.set()
            keepalive.join()
            try:
                call(
                    stub.CloseSession,
                    dlm_pb2.CloseSessionRequest(session_id=session_id, request_id=request_id()),
                )
                print(f"session {session_id} closed", flush=True)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                print(f"session {session_id} had already ended", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
