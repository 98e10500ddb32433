#!/usr/bin/env python3
"""Prints a schemathesis.toml entry for every operation of an OpenAPI document (read on
stdin) that takes a `cursor` query parameter and is not named in the file given as the first
argument already.

A cursor is minted by the server for one list and one sort: a schema-valid string that is
not such a cursor is answered 400 VALIDATION_ERROR by contract (docs/api/conventions.md), a
rule no JSON schema can state. scripts/schemathesis.sh appends these entries to the repo's
schemathesis.toml, so a new paginated route needs no entry by hand.
"""

import json
import sys

STATUSES = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]


def main() -> None:
    doc = json.load(sys.stdin)
    listed = ""
    if len(sys.argv) > 1:
        with open(sys.argv[1], encoding="utf-8") as f:
            listed = f.read()
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "operationId" not in op:
                continue
            op_id = op["operationId"]
            names = {p.get("name") for p in op.get("parameters", []) if p.get("in") == "query"}
            if "cursor" not in names or f'"{op_id}"' in listed:
                continue
            print()
            print(f"# {op_id}: takes a cursor (added by scripts/schemathesis.sh).")
            print("[[operations]]")
            print(f'include-operation-id = "{op_id}"')
            print(f"checks.positive_data_acceptance.expected-statuses = {json.dumps(STATUSES)}")


if __name__ == "__main__":
    main()
