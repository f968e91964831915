"""Calls SayHello knowing nothing but the server's address: the service, its method and
the message classes all come from server reflection (grpcio-reflection's v1alpha client).

    python reflection_client.py --addr 127.0.0.1:50051

Prints `Response: Hello Python reflection`; exits 1 with a reason on any mismatch.
"""

import argparse
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def fail(reason):
    print(f"MISMATCH {reason}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", default="localhost:50051")
    args = parser.parse_args()

    with grpc.insecure_channel(args.addr) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        if "greeter.Greeter" not in services:
            fail(f"greeter.Greeter not among the reflected services {services}")

        pool = DescriptorPool(database)
        method = pool.FindServiceByName("greeter.Greeter").FindMethodByName("SayHello")
        request_class = GetMessageClass(method.input_type)
        reply_class = GetMessageClass(method.output_type)

        say_hello = channel.unary_unary(
            "/greeter.Greeter/SayHello",
            request_serializer=request_class.SerializeToString,
            response_deserializer=reply_class.FromString,
        )
        reply = say_hello(request_class(name="Python reflection"), timeout=30)
        print(f"Response: {reply.message}")
        if reply.message != "Hello Python reflection":
            fail(f'SayHello: want "Hello Python reflection", got "{reply.message}"')


if __name__ == "__main__":
    main()
