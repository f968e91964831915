"""Encode every case of vectors.json with the Python protobuf runtime and decode it back.

Prints [{"hex": ..., "decoded": {...}}, ...] byte-identical to vectors-go's output when the
results agree (compact JSON, fields in declaration order, doubles as Python's repr).
Run with the setup.sh venv and PYTHONPATH=OUT_DIR/python_gen.
"""
import json
import sys

import greeter_pb2


def run(message, fields):
    cls = getattr(greeter_pb2, message)
    data = cls(**fields).SerializeToString(deterministic=True)
    back = cls.FromString(data)
    decoded = {f.name: getattr(back, f.name) for f in cls.DESCRIPTOR.fields}
    return {"hex": data.hex(), "decoded": decoded}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: vectors.py VECTORS.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        vectors = json.load(f)
    out = []
    for v in vectors:
        try:
            out.append(run(v["message"], v.get("fields", {})))
        except Exception as e:  # name the case, then fail
            print(f"vector {v['name']!r}: {e}", file=sys.stderr)
            sys.exit(1)
    # allow_nan=False: a non-finite double would not be valid JSON for the other side.
    json.dump(out, sys.stdout, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
